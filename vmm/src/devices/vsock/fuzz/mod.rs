//! Fuzz bodies for the virtqueue and vsock parsers, and the simulated driver they use. They
//! live in the library so that `fuzz/` (cargo-fuzz, nightly) and an ordinary stable test
//! (seeded pseudo-random inputs) run the same code. Each returns normally on any input; a
//! panic or a broken invariant is the finding.

mod driver;

pub use driver::*;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::IrqLine;

struct NoIrq;

impl IrqLine for NoIrq {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Host port the fuzzed guest may connect to.
pub const FUZZ_PORT: u32 = 1024;
/// Where `process_tx_bytes` copies its packet bytes: past the rx buffers the driver offers.
pub const FUZZ_BUF: u64 = BUF_BASE + 0x8_0000;

fn memory() -> Option<GuestMemoryMmap> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).ok()
}

/// Input layout: byte 0 picks the queue size (a power of two, 1 to 256); bytes 1-2 are the tx
/// avail index the guest publishes; then the tx descriptor table (16 bytes each), the tx avail
/// ring entries (2 bytes each), and the rest lands in the packet buffer area at `BUF_BASE`.
/// The device has a host port registered, a host-initiated connection pending and rx buffers
/// offered. Afterwards the device has either consumed every published chain or failed.
pub fn process_tx_bytes(data: &[u8]) {
    let Some(mem) = memory() else { return };
    let Ok((shared, mut mmio)) = super::build(3, mem.clone(), Arc::new(NoIrq)) else { return };
    let Ok((host, listener_end)) = UnixStream::pair() else { return };
    let _ = shared.lock().add_listener(FUZZ_PORT, listener_end);
    let _ = host.set_nonblocking(true);

    let mut driver = SimDriver::new(&mut mmio, mem.clone());
    let size = 1u16 << (data.first().copied().unwrap_or(0) % 9);
    driver.init(size);
    let _ = shared.lock().connect(5000);
    driver.give_rx(usize::from(size.min(8)), 4096);

    let avail_idx = match data.get(1..3) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    };
    let rest = data.get(3..).unwrap_or(&[]);
    let table_len = usize::from(size) * 16;
    let (table, rest) = rest.split_at(rest.len().min(table_len));
    let ring_len = usize::from(size) * 2;
    let (ring, buffers) = rest.split_at(rest.len().min(ring_len));
    let tx = &driver.queues[usize::from(TX)];
    let (desc, avail) = (tx.desc, tx.avail);
    let _ = mem.write_slice(table, GuestAddress(desc));
    let _ = mem.write_slice(ring, GuestAddress(avail + 4));
    let buffers = &buffers[..buffers.len().min((BUF_END - FUZZ_BUF) as usize)];
    let _ = mem.write_slice(buffers, GuestAddress(FUZZ_BUF));
    let _ = mem.write_obj(avail_idx, GuestAddress(avail + 2));
    driver.notify(TX);
    driver.notify(RX);
    let _ = driver.recv();

    let used_idx: u16 = mem.read_obj(GuestAddress(driver.queues[usize::from(TX)].used + 2)).unwrap_or(0);
    assert!(
        driver.failed() || used_idx == avail_idx,
        "a live device must consume every published chain ({used_idx} of {avail_idx})"
    );
    // Drain what reached the host so the socket pair's buffers are not what limits the run.
    let mut sink = vec![0u8; 4096];
    while let Ok(1..) = (&host).read(&mut sink) {}
}

/// Input: a sequence of 9-byte register accesses (1 byte: bit 0 write/read, bits 1-7 ignored;
/// 4 bytes offset; 4 bytes value) against a fresh transport, then a tx and rx notify. The
/// transport must never panic, whatever order or values the driver uses.
pub fn mmio_bytes(data: &[u8]) {
    let Some(mem) = memory() else { return };
    let Ok((_shared, mut mmio)) = super::build(3, mem, Arc::new(NoIrq)) else { return };
    let mut driver = SimDriver::new(&mut mmio, GuestMemoryMmap::default());
    for access in data.chunks_exact(9) {
        let offset = u64::from(u32::from_le_bytes([access[1], access[2], access[3], access[4]]) % 0x200);
        let value = u32::from_le_bytes([access[5], access[6], access[7], access[8]]);
        if access[0] & 1 == 1 {
            driver.write32(offset, value);
        } else {
            let _ = driver.read32(offset);
        }
    }
    driver.notify(TX);
    driver.notify(RX);
}
