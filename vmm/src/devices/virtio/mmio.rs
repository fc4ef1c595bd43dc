//! The virtio-mmio register file (virtio 1.2, 4.2.2), version 2 only. Everything the driver
//! writes is checked: a driver that breaks the protocol (an illegal status transition, a feature
//! that was not offered, a queue size that is not a power of two, a ring outside guest memory)
//! puts the device into `DEVICE_NEEDS_RESET`, where it stays until the driver writes status 0.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{status, DeviceSignals, FailureHook, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::{BusDevice, IrqLine};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// "CLOV": the vendor id is informational only; Linux does not match on it.
const VENDOR_ID: u32 = u32::from_le_bytes(*b"CLOV");
/// Device config space starts here; everything below is the transport's.
pub const CONFIG_OFFSET: u64 = 0x100;

// Register offsets (virtio 1.2, table 4.1).
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_AVAIL_LOW: u64 = 0x090;
const REG_QUEUE_AVAIL_HIGH: u64 = 0x094;
const REG_QUEUE_USED_LOW: u64 = 0x0a0;
const REG_QUEUE_USED_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;

/// One virtio device at one MMIO slot. It is the `BusDevice` the boot code maps.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    signals: Arc<DeviceSignals>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    /// The queue configuration while the driver sets it up; handed to the device (and replaced
    /// by fresh queues) at `DRIVER_OK`.
    queues: Vec<Queue>,
    active: bool,
}

impl MmioTransport {
    /// Fails only if the device reports a queue size virtio-queue rejects (a device bug).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: Arc<dyn IrqLine>,
    ) -> Result<Self, virtio_queue::Error> {
        let queues = fresh_queues(device.queue_max_sizes())?;
        Ok(Self {
            device,
            mem,
            signals: Arc::new(DeviceSignals::new(irq)),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            active: false,
        })
    }

    /// Runs `hook` the first time the driver breaks the protocol (the VMM stops the VM: a guest
    /// that lies to its devices loses them all). Without one, the device just fails.
    pub fn on_failure(&self, hook: FailureHook) {
        let _ = self.signals.on_failure.set(hook);
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    /// The driver broke the protocol.
    fn fail(&mut self) {
        self.signals.fail();
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.active = false;
        self.signals.clear();
    }

    /// The selected queue, if the driver may still configure it: features negotiated, not yet
    /// live, and not marked ready (a ready queue's registers are frozen).
    fn configurable_queue(&mut self) -> Option<&mut Queue> {
        let setup = self.status & status::FEATURES_OK != 0 && !self.active;
        let q = self.queues.get_mut(self.queue_sel as usize)?;
        (setup && !q.ready()).then_some(q)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let sel_queue = self.queues.get(self.queue_sel as usize);
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => sel_queue.map_or(0, |q| u32::from(q.max_size())),
            // Once live, every queue was ready (activation requires it).
            REG_QUEUE_READY => sel_queue.map_or(0, |q| u32::from(self.active || q.ready())),
            REG_INTERRUPT_STATUS => self.signals.interrupt_status(),
            REG_STATUS => {
                let failed = self.signals.has_failed();
                self.status | if failed { status::DEVICE_NEEDS_RESET } else { 0 }
            }
            // The config space (the vsock CID) never changes after creation.
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        if offset == REG_STATUS {
            return self.write_status(value);
        }
        if self.signals.has_failed() {
            return; // Only a reset brings a failed device back.
        }
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_DRIVER_FEATURES => self.write_driver_features(value),
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM => self.with_queue(|q| q.try_set_size(value_u16(value)?)),
            REG_QUEUE_READY => self.write_queue_ready(value),
            REG_QUEUE_DESC_LOW | REG_QUEUE_DESC_HIGH => self.with_queue(|q| {
                let addr = merge_half(q.desc_table(), offset == REG_QUEUE_DESC_HIGH, value);
                q.try_set_desc_table_address(GuestAddress(addr))
            }),
            REG_QUEUE_AVAIL_LOW | REG_QUEUE_AVAIL_HIGH => self.with_queue(|q| {
                let addr = merge_half(q.avail_ring(), offset == REG_QUEUE_AVAIL_HIGH, value);
                q.try_set_avail_ring_address(GuestAddress(addr))
            }),
            REG_QUEUE_USED_LOW | REG_QUEUE_USED_HIGH => self.with_queue(|q| {
                let addr = merge_half(q.used_ring(), offset == REG_QUEUE_USED_HIGH, value);
                q.try_set_used_ring_address(GuestAddress(addr))
            }),
            // Old Linux kernels kick the rx queue before DRIVER_OK; the device looks at every
            // queue when it goes live, so an early kick (ignored here) loses nothing.
            REG_QUEUE_NOTIFY if self.active && (value as usize) < self.queues.len() => {
                self.device.queue_notify(value as u16);
            }
            REG_INTERRUPT_ACK => self.signals.ack(value),
            // Read-only registers; a write there changes nothing.
            _ => {}
        }
    }

    /// Applies a queue register write, failing the device if the queue may not be configured
    /// now or the value is illegal.
    fn with_queue(&mut self, set: impl FnOnce(&mut Queue) -> Result<(), virtio_queue::Error>) {
        let ok = match self.configurable_queue() {
            Some(q) => set(q).is_ok(),
            None => false,
        };
        if !ok {
            self.fail();
        }
    }

    fn write_queue_ready(&mut self, value: u32) {
        let mem = self.mem.clone();
        self.with_queue(|q| {
            if value == 0 {
                return Ok(());
            }
            q.set_ready(true);
            // The rings must lie in guest memory before the device may ever touch them.
            if q.is_valid(&mem) {
                Ok(())
            } else {
                q.set_ready(false);
                Err(virtio_queue::Error::QueueNotReady)
            }
        });
    }

    fn write_driver_features(&mut self, value: u32) {
        let negotiating = self.status & status::DRIVER != 0 && self.status & status::FEATURES_OK == 0;
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            _ if value == 0 => return,
            _ => return self.fail(),
        };
        let mask = 0xffff_ffffu64 << shift;
        let features = (self.driver_features & !mask) | (u64::from(value) << shift);
        if !negotiating || features & !self.offered_features() != 0 {
            return self.fail();
        }
        self.driver_features = features;
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            return self.reset();
        }
        if self.signals.has_failed() || value & status::FAILED != 0 {
            // The driver gave up, or we did: remember it, do nothing else until a reset.
            self.status |= value & status::FAILED;
            return;
        }
        let added = value & !self.status;
        let legal = value & self.status == self.status // bits are only ever added
            && value & !(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK) == 0
            && (value & status::DRIVER == 0 || value & status::ACKNOWLEDGE != 0)
            && (value & status::FEATURES_OK == 0 || value & status::DRIVER != 0)
            && (value & status::DRIVER_OK == 0 || value & status::FEATURES_OK != 0);
        if !legal {
            return self.fail();
        }
        let mut accepted = value;
        if added & status::FEATURES_OK != 0 && self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            // A legacy driver: FEATURES_OK stays clear, which tells it we refuse (3.1.1).
            accepted &= !status::FEATURES_OK;
        }
        if added & status::DRIVER_OK != 0 {
            if !self.queues.iter().all(|q| q.ready()) {
                return self.fail();
            }
            let queues = match fresh_queues(self.device.queue_max_sizes()) {
                Ok(fresh) => std::mem::replace(&mut self.queues, fresh),
                Err(_) => return self.fail(),
            };
            self.active = true;
            self.device.activate(queues, self.signals.clone());
        }
        self.status = accepted;
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG_OFFSET {
            return self.device.read_config(offset - CONFIG_OFFSET, data);
        }
        // Transport registers are 32 bits wide and aligned (4.2.2.2); other accesses read 0.
        if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Config space is read-only for vsock; narrow or unaligned register writes are ignored.
        if offset >= CONFIG_OFFSET || !offset.is_multiple_of(4) {
            return;
        }
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

fn fresh_queues(max_sizes: &[u16]) -> Result<Vec<Queue>, virtio_queue::Error> {
    max_sizes.iter().map(|&max| Queue::new(max)).collect()
}

fn value_u16(value: u32) -> Result<u16, virtio_queue::Error> {
    u16::try_from(value).map_err(|_| virtio_queue::Error::InvalidSize)
}

/// Replaces the low or the high 32 bits of a ring address.
fn merge_half(current: u64, high: bool, value: u32) -> u64 {
    if high {
        (current & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (current & !0xffff_ffff) | u64::from(value)
    }
}
