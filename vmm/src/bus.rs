//! Where a vCPU's port and MMIO accesses go: devices by address range, one bus for port I/O and
//! one for MMIO. An access no device claims reads as all ones and writes nowhere, as on a PC.
//! Built before the vCPUs start and shared by them read-only; each device has its own lock.

use std::sync::{Arc, Mutex};

use crate::devices::BusDevice;

/// A device shared between the bus and whoever else drives it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} is empty or overlaps another device")]
    Overlap { base: u64, len: u64 },
    #[error("the device at {base:#x} panicked in an earlier access")]
    Poisoned { base: u64 },
}

struct Range {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// One address space (ports or MMIO): non-overlapping ranges sorted by base.
#[derive(Default)]
pub struct AddressSpace {
    ranges: Vec<Range>,
}

impl AddressSpace {
    /// Claims `[base, base + len)` for `device`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(BusError::Overlap { base, len })?;
        let at = self.ranges.partition_point(|r| r.base < base);
        let clear_before = at == 0 || self.ranges[at - 1].base + self.ranges[at - 1].len <= base;
        let clear_after = self.ranges.get(at).is_none_or(|next| end <= next.base);
        if !(clear_before && clear_after) {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(at, Range { base, len, device });
        Ok(())
    }

    /// Reads `data.len()` bytes at `addr` from the device there (all ones if none).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        match self.find(addr) {
            Some(range) => {
                let mut device = range.device.lock().map_err(|_| BusError::Poisoned { base: range.base })?;
                device.read(addr - range.base, data);
            }
            None => data.fill(0xff),
        }
        Ok(())
    }

    /// Writes `data` at `addr` to the device there, if any.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        if let Some(range) = self.find(addr) {
            let mut device = range.device.lock().map_err(|_| BusError::Poisoned { base: range.base })?;
            device.write(addr - range.base, data);
        }
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&Range> {
        let at = self.ranges.partition_point(|r| r.base <= addr);
        let range = self.ranges.get(at.checked_sub(1)?)?;
        (addr - range.base < range.len).then_some(range)
    }
}

/// Both address spaces of a VM.
#[derive(Default)]
pub struct Bus {
    pub pio: AddressSpace,
    pub mmio: AddressSpace,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its offset.
    struct Echo(Vec<(u64, Vec<u8>)>);

    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_by_offset_and_misses_read_all_ones() {
        let mut space = AddressSpace::default();
        let device = Arc::new(Mutex::new(Echo(Vec::new())));
        space.insert(0x100, 8, device.clone()).unwrap();
        space.insert(0x108, 8, Arc::new(Mutex::new(Echo(Vec::new())))).unwrap();
        let mut data = [0u8; 2];
        space.read(0x103, &mut data).unwrap();
        assert_eq!(data, [3, 3]);
        space.read(0x110, &mut data).unwrap();
        assert_eq!(data, [0xff, 0xff]);
        space.read(0xff, &mut data).unwrap();
        assert_eq!(data, [0xff, 0xff]);
        space.write(0x107, &[9]).unwrap();
        space.write(0x10f, &[7]).unwrap();
        assert_eq!(device.lock().unwrap().0, vec![(7, vec![9])]);
    }

    #[test]
    fn overlapping_or_empty_ranges_are_refused() {
        let mut space = AddressSpace::default();
        let device = || Arc::new(Mutex::new(Echo(Vec::new())));
        space.insert(0x100, 0x10, device()).unwrap();
        for (base, len) in [(0xf8, 0x10), (0x10f, 1), (0x100, 0x10), (0x200, 0), (u64::MAX, 2)] {
            assert!(space.insert(base, len, device()).is_err(), "{base:#x}+{len:#x}");
        }
        space.insert(0xf0, 0x10, device()).unwrap();
        space.insert(0x110, 0x10, device()).unwrap();
    }
}
