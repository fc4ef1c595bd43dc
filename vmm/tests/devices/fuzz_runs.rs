//! The fuzz bodies on stable: a few thousand inputs from a fixed seed. Half are raw bytes; half
//! are well-formed queues of plausible packets with a few bytes flipped, which is what reaches
//! the connection logic (random bytes rarely get past the descriptor checks).

use clove_vmm::devices::vsock::fuzz::{mmio_bytes, process_tx_bytes, FUZZ_BUF, FUZZ_PORT};
use clove_vmm::devices::vsock::packet::{HDR_LEN, TYPE_STREAM};
use clove_vmm::devices::vsock::Header;

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A tx queue of `n` chains (header and payload in one or two descriptors), laid out as
/// `process_tx_bytes` reads its input.
fn plausible_queue(rng: &mut Rng) -> Vec<u8> {
    let size_sel = rng.below(9) as u8;
    let size = 1usize << size_sel;
    let chains = (rng.below(size as u64) + 1).min(8) as usize;
    let mut table = vec![0u8; size * 16];
    let mut ring = vec![0u8; size * 2];
    let mut buffers = Vec::new();
    let mut next_desc = 0usize;
    for c in 0..chains {
        let len = rng.pick(&[0u32, 1, 5, 100, 4096, 70_000]);
        let header = Header {
            src_cid: rng.pick(&[3, 3, 3, 4]),
            dst_cid: rng.pick(&[2, 2, 2, 7]),
            src_port: rng.pick(&[77, 78, 5000]),
            dst_port: rng.pick(&[FUZZ_PORT, FUZZ_PORT, 1 << 30, 9]),
            len,
            type_: rng.pick(&[TYPE_STREAM, TYPE_STREAM, 2]),
            op: rng.below(9) as u16,
            flags: rng.below(4) as u32,
            buf_alloc: rng.pick(&[0, 100, 65_536, u32::MAX]),
            fwd_cnt: rng.pick(&[0, 50, u32::MAX]),
        };
        let payload_len = (len as usize).min(4096) + rng.below(3) as usize;
        let at = FUZZ_BUF + buffers.len() as u64;
        buffers.extend_from_slice(&header.to_bytes());
        buffers.extend(rng.bytes(payload_len));
        let split = rng.below(2) == 0 && next_desc + 1 < size;
        let descs: Vec<(u64, u32)> = if split {
            vec![(at, HDR_LEN as u32), (at + HDR_LEN as u64, payload_len as u32)]
        } else {
            vec![(at, (HDR_LEN + payload_len) as u32)]
        };
        if next_desc + descs.len() > size {
            break;
        }
        ring[c * 2..c * 2 + 2].copy_from_slice(&(next_desc as u16).to_le_bytes());
        for (i, (addr, dlen)) in descs.iter().enumerate() {
            let idx = next_desc + i;
            let last = i + 1 == descs.len();
            let entry = &mut table[idx * 16..idx * 16 + 16];
            entry[0..8].copy_from_slice(&addr.to_le_bytes());
            entry[8..12].copy_from_slice(&dlen.to_le_bytes());
            entry[12..14].copy_from_slice(&(if last { 0u16 } else { 1 }).to_le_bytes());
            entry[14..16].copy_from_slice(&((idx + 1) as u16).to_le_bytes());
        }
        next_desc += descs.len();
    }
    let published = ring.chunks(2).take(chains).count() as u16;
    let mut input = vec![size_sel];
    input.extend_from_slice(&published.to_le_bytes());
    input.extend(table);
    input.extend(ring);
    input.extend(buffers);
    for _ in 0..rng.below(4) {
        let at = rng.below(input.len() as u64) as usize;
        input[at] = rng.next() as u8;
    }
    input
}

#[test]
fn process_tx_survives_seeded_inputs() {
    let mut rng = Rng(0x5eed_c10e_0000_0001);
    for round in 0..2000 {
        let input = if round % 2 == 0 {
            let n = rng.below(600) as usize;
            rng.bytes(n)
        } else {
            plausible_queue(&mut rng)
        };
        process_tx_bytes(&input);
    }
}

#[test]
fn mmio_survives_seeded_register_sequences() {
    let mut rng = Rng(0x5eed_c10e_0000_0002);
    for _ in 0..3000 {
        let n = rng.below(40) as usize;
        let mut input = Vec::with_capacity(n * 9);
        for _ in 0..n {
            input.push(rng.next() as u8);
            // Offsets mostly on real registers, values mostly small.
            let offset = rng
                .pick(&[0x14u32, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64, 0x70, 0x80, 0x84, 0x90, 0xa0])
                .wrapping_add(if rng.below(8) == 0 { rng.next() as u32 } else { 0 });
            input.extend_from_slice(&offset.to_le_bytes());
            let value = if rng.below(2) == 0 { rng.below(16) as u32 } else { rng.next() as u32 };
            input.extend_from_slice(&value.to_le_bytes());
        }
        mmio_bytes(&input);
    }
}
