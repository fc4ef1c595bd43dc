//! virtio-vsock packets in guest memory: the 44-byte header (virtio 1.2, 5.10.6) and the
//! gather/scatter of a packet over a descriptor chain. Our own parser rather than the
//! virtio-vsock crate's: Linux may split a packet over any number of descriptors (header and
//! data together since 6.2, data in fragments with MSG_ZEROCOPY), and every guest-controlled
//! length here is checked before it is used and capped before anything is allocated.

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// Size of the packet header.
pub const HDR_LEN: usize = 44;
/// The largest payload a packet may carry, either way (the Linux driver's own limit).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest descriptor chain accepted; Linux uses at most a header, a linear part and
/// MAX_SKB_FRAGS (17) fragments.
pub const MAX_CHAIN_DESCRIPTORS: usize = 64;

pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flags: the sender will receive no more / send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

/// A descriptor chain the device cannot use: the driver broke the virtqueue protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChainError {
    #[error("descriptor chain longer than {MAX_CHAIN_DESCRIPTORS} descriptors")]
    TooLong,
    #[error("descriptor chain cut short (a loop, or a next index past the table)")]
    Broken,
    #[error("device-writable descriptor in a tx chain")]
    WritableInTx,
    #[error("device-readable descriptor in an rx chain")]
    ReadableInRx,
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("rx buffer of {0} bytes cannot hold a packet header")]
    RxTooSmall(usize),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn parse(b: &[u8; HDR_LEN]) -> Self {
        let u64_at =
            |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// What a well-formed tx chain held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxPacket {
    /// A header and exactly `header.len` payload bytes.
    Packet(Header, Vec<u8>),
    /// The header's `len` is over `MAX_PAYLOAD` or more than the chain holds: the packet's
    /// connection is reset, the queue goes on.
    BadLen(Header),
    /// Fewer than `HDR_LEN` bytes: nothing to answer, the chain is just returned.
    NoHeader,
}

type Chain<'m> = DescriptorChain<&'m GuestMemoryMmap>;

/// Walks a chain, checking each descriptor: at most `MAX_CHAIN_DESCRIPTORS`, all inside guest
/// memory, all of the direction `writable`. A chain that stops while its last descriptor
/// still says NEXT was cut by virtio-queue's loop guard or an index past the table.
fn checked_descriptors(
    mem: &GuestMemoryMmap,
    chain: Chain<'_>,
    writable: bool,
) -> Result<Vec<(GuestAddress, u32)>, ChainError> {
    let mut out = Vec::new();
    let mut last_has_next = false;
    for desc in chain {
        if out.len() == MAX_CHAIN_DESCRIPTORS {
            return Err(ChainError::TooLong);
        }
        match (desc.is_write_only(), writable) {
            (true, false) => return Err(ChainError::WritableInTx),
            (false, true) => return Err(ChainError::ReadableInRx),
            _ => {}
        }
        let (addr, len) = (desc.addr(), desc.len());
        let access = if writable { Permissions::Write } else { Permissions::Read };
        if len > 0 && !mem.check_range(addr, len as usize, access) {
            return Err(ChainError::OutsideMemory { addr: addr.raw_value(), len });
        }
        last_has_next = desc.has_next();
        out.push((addr, len));
    }
    if last_has_next {
        return Err(ChainError::Broken);
    }
    Ok(out)
}

/// Gathers a packet from a tx (driver-to-device) chain.
pub(crate) fn read_tx(mem: &GuestMemoryMmap, chain: Chain<'_>) -> Result<TxPacket, ChainError> {
    let descs = checked_descriptors(mem, chain, false)?;
    let total: u64 = descs.iter().map(|&(_, len)| u64::from(len)).sum();
    if total < HDR_LEN as u64 {
        return Ok(TxPacket::NoHeader);
    }
    let mut hdr = [0u8; HDR_LEN];
    gather(mem, &descs, 0, &mut hdr)?;
    let header = Header::parse(&hdr);
    let len = header.len as usize;
    if len > MAX_PAYLOAD || (HDR_LEN + len) as u64 > total {
        return Ok(TxPacket::BadLen(header));
    }
    // Capped above: at most MAX_PAYLOAD bytes, and only as many as the chain really holds.
    let mut payload = vec![0u8; len];
    gather(mem, &descs, HDR_LEN, &mut payload)?;
    Ok(TxPacket::Packet(header, payload))
}

/// An rx (device-to-driver) chain's buffers, checked and ready to be written.
pub(crate) struct RxBuffers {
    descs: Vec<(GuestAddress, u32)>,
    /// Payload bytes the chain can hold beyond the header, capped at `MAX_PAYLOAD`.
    pub(crate) payload_room: usize,
}

pub(crate) fn rx_buffers(mem: &GuestMemoryMmap, chain: Chain<'_>) -> Result<RxBuffers, ChainError> {
    let descs = checked_descriptors(mem, chain, true)?;
    let total: u64 = descs.iter().map(|&(_, len)| u64::from(len)).sum();
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    if total < HDR_LEN {
        return Err(ChainError::RxTooSmall(total));
    }
    Ok(RxBuffers { descs, payload_room: (total - HDR_LEN).min(MAX_PAYLOAD) })
}

impl RxBuffers {
    /// Writes the header (with `len` set to the payload's length) and the payload; returns the
    /// byte count for the used ring. The payload must fit `payload_room`.
    pub(crate) fn write(&self, mem: &GuestMemoryMmap, mut header: Header, payload: &[u8]) -> Result<u32, ChainError> {
        let payload = &payload[..payload.len().min(self.payload_room)];
        // Fits in u32: capped at MAX_PAYLOAD.
        header.len = payload.len() as u32;
        scatter(mem, &self.descs, 0, &header.to_bytes())?;
        scatter(mem, &self.descs, HDR_LEN, payload)?;
        Ok((HDR_LEN + payload.len()) as u32)
    }
}

/// Visits the pieces of `descs` that hold bytes `[skip, skip + len)` of the chain's
/// concatenated buffers, as (guest address, offset into the caller's buffer, length).
fn pieces(
    descs: &[(GuestAddress, u32)],
    mut skip: usize,
    len: usize,
    mut visit: impl FnMut(GuestAddress, usize, usize) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    let mut done = 0;
    for &(addr, dlen) in descs {
        if done == len {
            break;
        }
        let dlen = dlen as usize;
        if skip >= dlen {
            skip -= dlen;
            continue;
        }
        let n = (dlen - skip).min(len - done);
        // In range: checked_descriptors verified addr..addr+dlen lies in guest memory.
        let at = addr
            .checked_add(skip as u64)
            .ok_or(ChainError::OutsideMemory { addr: addr.raw_value(), len: dlen as u32 })?;
        visit(at, done, n)?;
        done += n;
        skip = 0;
    }
    Ok(())
}

fn gather(mem: &GuestMemoryMmap, descs: &[(GuestAddress, u32)], skip: usize, out: &mut [u8]) -> Result<(), ChainError> {
    let len = out.len();
    pieces(descs, skip, len, |at, off, n| mem.read_slice(&mut out[off..off + n], at).map_err(|_| outside(at, n)))
}

fn scatter(mem: &GuestMemoryMmap, descs: &[(GuestAddress, u32)], skip: usize, data: &[u8]) -> Result<(), ChainError> {
    pieces(descs, skip, data.len(), |at, off, n| mem.write_slice(&data[off..off + n], at).map_err(|_| outside(at, n)))
}

fn outside(at: GuestAddress, n: usize) -> ChainError {
    ChainError::OutsideMemory { addr: at.raw_value(), len: n as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_its_wire_layout() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1122_3344,
            dst_port: 1024,
            len: 5,
            type_: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 0x4_0000,
            fwd_cnt: 7,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[16..20], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[30..32], &[5, 0]);
        assert_eq!(Header::parse(&b), h);
    }
}
