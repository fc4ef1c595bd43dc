//! The devices a guest sees: the serial console, the virtio-mmio transport and the userspace
//! virtio-vsock device. A device is reached through the bus (a register read or write from a
//! vCPU exit) and signals the guest through its interrupt line.

pub mod i8042;
pub mod serial;
pub mod virtio;
pub mod vsock;

/// A device whose registers sit in a window of guest-physical MMIO (or port I/O) space. `offset`
/// is from the start of the window; a read fills all of `data` (unknown registers read as zero).
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// An interrupt line into the guest (on KVM: an eventfd registered as an irqfd for a GSI).
pub trait IrqLine: Send + Sync {
    fn trigger(&self) -> std::io::Result<()>;
}
