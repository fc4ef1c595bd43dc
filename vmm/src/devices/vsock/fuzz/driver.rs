//! A simulated guest driver: split virtqueues laid out in guest memory and the MMIO registers
//! driven in the order Linux's virtio_mmio and virtio_vsock drivers use. The tests and the fuzz
//! bodies share it; its raw helpers let a test play a hostile driver too.

use std::collections::HashMap;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::{status, VIRTIO_F_VERSION_1};
use crate::devices::vsock::packet::{Header, HDR_LEN};
use crate::devices::BusDevice;

pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;

/// Where the three queues live: desc table, avail ring and used ring a page apart each.
pub const QUEUE_BASE: u64 = 0x1_0000;
const QUEUE_STRIDE: u64 = 0x4000;
/// Packet buffers are carved from here, round-robin.
pub const BUF_BASE: u64 = 0x2_0000;
pub const BUF_END: u64 = 0x12_0000;
/// Guest memory the simulated driver expects.
pub const MEM_SIZE: usize = 0x20_0000;

pub const RX: u16 = 0;
pub const TX: u16 = 1;

pub struct SimQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    free: Vec<u16>,
    avail_idx: u16,
    used_seen: u16,
    /// Head index -> the chain's descriptors, returned to `free` once used.
    chains: HashMap<u16, Vec<u16>>,
}

/// A guest's view of one vsock device: its memory and its register window.
pub struct SimDriver<'a> {
    pub mmio: &'a mut dyn BusDevice,
    pub mem: GuestMemoryMmap,
    pub queues: Vec<SimQueue>,
    next_buf: u64,
    /// rx chain head -> buffer address.
    rx_bufs: HashMap<u16, u64>,
    /// Where kicks of rx and tx go instead of the QueueNotify register, as KVM's ioeventfds
    /// would take them.
    kicks: Option<[EventFd; 2]>,
}

impl<'a> SimDriver<'a> {
    pub fn new(mmio: &'a mut dyn BusDevice, mem: GuestMemoryMmap) -> Self {
        Self { mmio, mem, queues: Vec::new(), next_buf: BUF_BASE, rx_bufs: HashMap::new(), kicks: None }
    }

    /// Kicks rx and tx through these eventfds from now on, as a VMM's ioeventfds deliver them.
    pub fn kick_through(&mut self, kicks: [EventFd; 2]) {
        self.kicks = Some(kicks);
    }

    pub fn read32(&mut self, offset: u64) -> u32 {
        let mut b = [0xa5u8; 4];
        self.mmio.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn write32(&mut self, offset: u64, value: u32) {
        self.mmio.write(offset, &value.to_le_bytes());
    }

    pub fn status(&mut self) -> u32 {
        self.read32(0x70)
    }

    pub fn failed(&mut self) -> bool {
        self.status() & status::DEVICE_NEEDS_RESET != 0
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 only), FEATURES_OK, three queues of
    /// `queue_size`, DRIVER_OK. Returns the status read back at the end.
    pub fn init(&mut self, queue_size: u16) -> u32 {
        self.write32(0x70, 0);
        self.write32(0x70, status::ACKNOWLEDGE);
        self.write32(0x70, status::ACKNOWLEDGE | status::DRIVER);
        self.write32(0x14, 1);
        let high = self.read32(0x10);
        self.write32(0x24, 1);
        self.write32(0x20, high & (VIRTIO_F_VERSION_1 >> 32) as u32);
        self.write32(0x24, 0);
        self.write32(0x20, 0);
        let features_ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.write32(0x70, features_ok);
        self.queues.clear();
        self.rx_bufs.clear();
        for i in 0..3u16 {
            let base = QUEUE_BASE + u64::from(i) * QUEUE_STRIDE;
            let q = SimQueue {
                size: queue_size,
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                free: (0..queue_size).rev().collect(),
                avail_idx: 0,
                used_seen: 0,
                chains: HashMap::new(),
            };
            // Rings start zeroed, as a fresh guest allocation would be.
            let zero = vec![0u8; 0x3000];
            let _ = self.mem.write_slice(&zero, GuestAddress(base));
            self.write32(0x30, u32::from(i));
            self.write32(0x38, u32::from(queue_size));
            self.write32(0x80, q.desc as u32);
            self.write32(0x84, (q.desc >> 32) as u32);
            self.write32(0x90, q.avail as u32);
            self.write32(0x94, (q.avail >> 32) as u32);
            self.write32(0xa0, q.used as u32);
            self.write32(0xa4, (q.used >> 32) as u32);
            self.write32(0x44, 1);
            self.queues.push(q);
        }
        self.write32(0x70, features_ok | status::DRIVER_OK);
        self.status()
    }

    pub fn notify(&mut self, queue: u16) {
        match self.kicks.as_ref().and_then(|kicks| kicks.get(usize::from(queue))) {
            Some(kick) => kick.write(1).expect("kick eventfd"),
            None => self.write32(0x50, u32::from(queue)),
        }
    }

    /// Writes one raw descriptor.
    pub fn write_desc(&mut self, queue: u16, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let Some(q) = self.queues.get(usize::from(queue)) else { return };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        let at = q.desc + u64::from(index) * 16;
        let _ = self.mem.write_slice(&raw, GuestAddress(at));
    }

    /// Publishes `head` in the avail ring (and bumps its index).
    pub fn push_avail(&mut self, queue: u16, head: u16) {
        let Some(q) = self.queues.get_mut(usize::from(queue)) else { return };
        let slot = q.avail + 4 + u64::from(q.avail_idx % q.size) * 2;
        q.avail_idx = q.avail_idx.wrapping_add(1);
        let idx = q.avail_idx;
        let avail = q.avail;
        let _ = self.mem.write_obj(head, GuestAddress(slot));
        let _ = self.mem.write_obj(idx, GuestAddress(avail + 2));
    }

    /// Builds a chain from (addr, len, device-writable) buffers and makes it available.
    /// Returns its head, or None when the queue has too few free descriptors.
    pub fn add_chain(&mut self, queue: u16, bufs: &[(u64, u32, bool)]) -> Option<u16> {
        let q = self.queues.get_mut(usize::from(queue))?;
        if q.free.len() < bufs.len() || bufs.is_empty() {
            return None;
        }
        let ids: Vec<u16> = (0..bufs.len()).filter_map(|_| q.free.pop()).collect();
        let head = ids[0];
        q.chains.insert(head, ids.clone());
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < ids.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.write_desc(queue, ids[i], addr, len, flags, next);
        }
        self.push_avail(queue, head);
        Some(head)
    }

    /// New used-ring entries (head, len) since the last call; their descriptors become free.
    pub fn take_used(&mut self, queue: u16) -> Vec<(u16, u32)> {
        let Some(q) = self.queues.get_mut(usize::from(queue)) else { return Vec::new() };
        let idx: u16 = self.mem.read_obj(GuestAddress(q.used + 2)).unwrap_or(q.used_seen);
        let mut out = Vec::new();
        while q.used_seen != idx {
            let at = q.used + 4 + u64::from(q.used_seen % q.size) * 8;
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap_or(0);
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap_or(0);
            q.used_seen = q.used_seen.wrapping_add(1);
            let head = id as u16;
            if let Some(ids) = q.chains.remove(&head) {
                q.free.extend(ids);
            }
            out.push((head, len));
        }
        out
    }

    /// Carves `len` bytes of packet buffer space.
    pub fn alloc(&mut self, len: u64) -> u64 {
        if self.next_buf + len > BUF_END {
            self.next_buf = BUF_BASE;
        }
        let at = self.next_buf;
        self.next_buf += len.next_multiple_of(16);
        at
    }

    /// Offers `count` rx buffers of `len` bytes each (header and data in one descriptor, as
    /// Linux 6.2+ does) and notifies.
    pub fn give_rx(&mut self, count: usize, len: u32) {
        for _ in 0..count {
            let addr = self.alloc(u64::from(len));
            if let Some(head) = self.add_chain(RX, &[(addr, len, true)]) {
                self.rx_bufs.insert(head, addr);
            }
        }
        self.notify(RX);
    }

    /// Sends a packet (header and payload in two descriptors, as Linux does) and notifies.
    pub fn send(&mut self, header: Header, payload: &[u8]) -> Option<u16> {
        // The device consumes tx chains as soon as it is notified: reclaim their descriptors.
        self.take_used(TX);
        let hdr_at = self.alloc(HDR_LEN as u64);
        let _ = self.mem.write_slice(&header.to_bytes(), GuestAddress(hdr_at));
        let head = if payload.is_empty() {
            self.add_chain(TX, &[(hdr_at, HDR_LEN as u32, false)])
        } else {
            let data_at = self.alloc(payload.len() as u64);
            let _ = self.mem.write_slice(payload, GuestAddress(data_at));
            self.add_chain(TX, &[(hdr_at, HDR_LEN as u32, false), (data_at, payload.len() as u32, false)])
        };
        self.notify(TX);
        head
    }

    /// Packets the device has put in rx buffers since the last call.
    pub fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for (head, len) in self.take_used(RX) {
            let Some(addr) = self.rx_bufs.remove(&head) else { continue };
            let mut hdr = [0u8; HDR_LEN];
            if (len as usize) < HDR_LEN || self.mem.read_slice(&mut hdr, GuestAddress(addr)).is_err() {
                continue;
            }
            let header = Header::parse(&hdr);
            let mut data = vec![0u8; len as usize - HDR_LEN];
            let _ = self.mem.read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64));
            out.push((header, data));
        }
        out
    }
}
