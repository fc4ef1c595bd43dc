//! The virtio-mmio transport (version 2, "modern") and the interface a virtio device implements
//! behind it. The transport owns the register file, feature negotiation and the queue
//! configuration; a device sees its queues only once the driver has set `DRIVER_OK`, and from
//! then on only through `queue_notify`.

mod mmio;

pub use mmio::{MmioTransport, REG_QUEUE_NOTIFY};

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use virtio_queue::Queue;

use super::IrqLine;

/// `VIRTIO_F_VERSION_1`: the only transport feature offered; a driver that does not accept it
/// is a legacy driver, which this transport does not speak.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Interrupt status bits (the InterruptStatus register).
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

/// A virtio device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (19 for vsock).
    fn device_type(&self) -> u32;
    /// Device-specific feature bits offered (the transport adds `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// The maximum size of each queue, in queue order; each a power of two.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads device config space; `offset` is from the start of config space. Bytes past the end
    /// are left as they are (the transport zeroes `data` first).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Starts the device: the driver has set `DRIVER_OK` and every queue is valid.
    fn activate(&mut self, queues: Vec<Queue>, signals: Arc<DeviceSignals>);
    /// The driver notified queue `index` (already checked to be in range).
    fn queue_notify(&mut self, index: u16);
    /// The driver wrote 0 to the status register: drop the queues and all device state.
    fn reset(&mut self);
}

/// How a device tells the driver something: the interrupt status bits the transport reports,
/// the interrupt line, and the device's own failure flag (reported as `DEVICE_NEEDS_RESET`).
pub struct DeviceSignals {
    interrupt_status: AtomicU32,
    needs_reset: AtomicBool,
    irq: Arc<dyn IrqLine>,
    /// What the VMM does about a driver that broke the protocol (see [`MmioTransport::on_failure`]).
    on_failure: OnceLock<FailureHook>,
}

/// Called once, on the thread that found the violation, when a driver breaks the virtio protocol.
pub type FailureHook = Box<dyn Fn() + Send + Sync>;

impl DeviceSignals {
    pub fn new(irq: Arc<dyn IrqLine>) -> Self {
        Self {
            interrupt_status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            irq,
            on_failure: OnceLock::new(),
        }
    }

    /// The device put buffers in a used ring.
    pub fn signal_used(&self) {
        self.raise(INT_USED_RING);
    }

    /// The driver broke the protocol: the device stops until the driver resets it. The
    /// config-change interrupt is how virtio tells a driver to look at the status register.
    pub fn fail(&self) {
        if !self.needs_reset.swap(true, Ordering::AcqRel) {
            self.raise(INT_CONFIG_CHANGE);
            if let Some(hook) = self.on_failure.get() {
                hook();
            }
        }
    }

    pub fn has_failed(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }

    fn raise(&self, bit: u32) {
        self.interrupt_status.fetch_or(bit, Ordering::AcqRel);
        // A failed trigger (an irqfd write on a dying VM) cannot be reported to the guest, and
        // the next interrupt retries it; the status bit stays set either way.
        let _ = self.irq.trigger();
    }

    pub(crate) fn interrupt_status(&self) -> u32 {
        self.interrupt_status.load(Ordering::Acquire)
    }

    pub(crate) fn ack(&self, bits: u32) {
        self.interrupt_status.fetch_and(!bits, Ordering::AcqRel);
    }

    pub(crate) fn clear(&self) {
        self.interrupt_status.store(0, Ordering::Release);
        self.needs_reset.store(false, Ordering::Release);
    }
}
