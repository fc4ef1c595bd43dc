//! One builder for a microVM, in boot order:
//!
//! [`MicroVm::new`]:
//! 1. check the config (vCPU count, memory size);
//! 2. the VM and its guest memory, registered first (the cheap order on nested KVM);
//! 3. the in-kernel interrupt controllers and timer;
//! 4. the vCPUs, each with CPUID and then the boot MSRs;
//! 5. the legacy devices on the port bus: the serial console (COM1, IRQ 4) and the i8042, whose
//!    reset line powers the VM off.
//!
//! [`MicroVm::attach_mmio`] (any number of times, before start): a virtio-mmio device in the next
//! slot, with its interrupt line.
//!
//! [`MicroVm::start`]:
//! 1. the kernel, then the initramfs (base and appended archive) at the top of low memory;
//! 2. the command line (base, console, one `virtio_mmio.device=` per slot, the config's extra);
//! 3. the boot parameters with the e820 map, the MP table, the GDT and page tables;
//! 4. each vCPU's registers; then one thread per vCPU.

use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linux_loader::cmdline::Cmdline;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::{
    CMDLINE_MAX_SIZE, I8042_PORT, I8042_PORT_LEN, MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB, MMIO_FIRST_GSI,
    MMIO_MAX_SLOTS, MMIO_SLOT_SIZE, MMIO_START, SERIAL_GSI, SERIAL_PORT, SERIAL_PORT_LEN,
};
use crate::arch::{self, ArchError};
use crate::bus::{Bus, BusError, SharedDevice};
use crate::devices::i8042::I8042;
use crate::devices::serial::{SerialConsole, SerialLog};
use crate::devices::virtio::REG_QUEUE_NOTIFY;
use crate::devices::vsock::{Vsock, VsockError, KICKED_QUEUES};
use crate::devices::IrqLine;
use crate::initramfs;
use crate::vstate::{Vcpu, Vm, VmError, VmExit, VmRun};

/// The command line every guest gets (see the contract's fixed layout). `no_timer_check`: the
/// I/O APIC timer routing is KVM's and known good, so the kernel need not spin for several timer
/// ticks to prove it (`timer_irq_works`, tens of milliseconds of guest time per boot).
pub const BASE_CMDLINE: &str =
    "reboot=k panic=-1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd no_timer_check rdinit=/init";
const CONSOLE_ON: &str = "console=ttyS0";
/// Each console byte is an exit: without a log, the kernel registers no UART and says little.
const CONSOLE_OFF: &str = "8250.nr_uarts=0 quiet";
/// How much of the guest's console a serial log keeps (the newest bytes).
pub const SERIAL_LOG_CAPACITY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} vCPUs: a VM has 1 to {MAX_VCPUS}")]
    Vcpus(u8),
    #[error("{0} MiB of memory: a VM has {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB")]
    Memory(u32),
    #[error("all {MMIO_MAX_SLOTS} virtio-mmio slots are taken")]
    NoMmioSlot,
    #[error("initramfs {path}: {source}")]
    Initramfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("vsock: {0}")]
    Vsock(#[from] VsockError),
}

/// What to boot and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub vcpus: u8,
    pub memory_mib: u32,
    /// An ELF vmlinux (PVH entry if it has the note) or a bzImage.
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    /// A cpio archive unpacked after the base initramfs (see [`crate::initramfs::CpioWriter`]).
    pub extra_initramfs: Vec<u8>,
    /// Appended to the command line.
    pub cmdline_extra: String,
    /// Keep the last [`SERIAL_LOG_CAPACITY`] bytes of the console (and turn the console on).
    pub serial_log: bool,
}

impl VmConfig {
    /// One vCPU, 256 MiB, no initramfs, console off.
    pub fn new(kernel: impl Into<PathBuf>) -> VmConfig {
        VmConfig {
            vcpus: 1,
            memory_mib: 256,
            kernel: kernel.into(),
            initramfs: None,
            extra_initramfs: Vec::new(),
            cmdline_extra: String::new(),
            serial_log: false,
        }
    }

    pub fn vcpus(mut self, vcpus: u8) -> Self {
        self.vcpus = vcpus;
        self
    }

    pub fn memory_mib(mut self, memory_mib: u32) -> Self {
        self.memory_mib = memory_mib;
        self
    }

    pub fn initramfs(mut self, path: impl Into<PathBuf>) -> Self {
        self.initramfs = Some(path.into());
        self
    }

    pub fn extra_initramfs(mut self, archive: Vec<u8>) -> Self {
        self.extra_initramfs = archive;
        self
    }

    pub fn cmdline_extra(mut self, extra: impl Into<String>) -> Self {
        self.cmdline_extra = extra.into();
        self
    }

    pub fn serial_log(mut self, on: bool) -> Self {
        self.serial_log = on;
        self
    }
}

/// What a virtio-mmio device gets from the VM for its slot.
pub struct MmioSlot {
    pub index: u32,
    /// Guest-physical base of its 4 KiB register window.
    pub addr: u64,
    pub gsi: u32,
    /// Raises the device's interrupt (an irqfd on `gsi`).
    pub irq: Arc<dyn IrqLine>,
    /// The guest's memory, where its virtqueues are.
    pub memory: GuestMemoryMmap,
}

/// A microVM: built by [`MicroVm::new`], started by [`MicroVm::start`], stopped by the guest or by
/// [`MicroVm::kill`]; dropping it kills it and frees everything (threads, fds, guest memory).
pub struct MicroVm {
    config: VmConfig,
    run: Arc<VmRun>,
    /// Until start; then the vCPU threads own them.
    vcpus: Vec<Vcpu>,
    bus: Bus,
    mmio_slots: Vec<(u64, u32)>,
    serial_log: Option<SerialLog>,
    vm: Vm,
}

impl MicroVm {
    pub fn new(config: VmConfig) -> Result<MicroVm, BuildError> {
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(BuildError::Vcpus(config.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&config.memory_mib) {
            return Err(BuildError::Memory(config.memory_mib));
        }
        let vm = Vm::new((config.memory_mib as usize) << 20)?;
        vm.create_interrupt_controllers()?;
        let cpuid = arch::cpuid::supported(vm.kvm())?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for id in 0..config.vcpus {
            let vcpu = vm.create_vcpu(u64::from(id))?;
            arch::cpuid::set(vcpu.fd(), &cpuid, id, config.vcpus)?;
            arch::msr::set(vcpu.fd())?;
            vcpus.push(vcpu);
        }
        let run = VmRun::new(vcpus.len())?;
        let serial_log = config.serial_log.then(|| SerialLog::new(SERIAL_LOG_CAPACITY));
        let mut bus = Bus::default();
        let serial = SerialConsole::new(vm.irq_line(SERIAL_GSI)?, serial_log.clone());
        bus.pio.insert(SERIAL_PORT.into(), SERIAL_PORT_LEN.into(), Arc::new(Mutex::new(serial)))?;
        let on_reset = Arc::downgrade(&run);
        let i8042 = I8042::new(move || {
            if let Some(run) = on_reset.upgrade() {
                run.stop(VmExit::PoweredOff);
            }
        });
        bus.pio.insert(I8042_PORT.into(), I8042_PORT_LEN.into(), Arc::new(Mutex::new(i8042)))?;
        Ok(MicroVm { config, run, vcpus, bus, mmio_slots: Vec::new(), serial_log, vm })
    }

    /// Puts the device `make` returns in the next virtio-mmio slot (0, 1, ...), and names it on
    /// the kernel command line. Before [`MicroVm::start`]; returns the slot.
    pub fn attach_mmio<T>(
        &mut self,
        make: impl FnOnce(&MmioSlot) -> Result<(SharedDevice, T), BuildError>,
    ) -> Result<(MmioSlot, T), BuildError> {
        let index = self.mmio_slots.len() as u32;
        if index >= MMIO_MAX_SLOTS {
            return Err(BuildError::NoMmioSlot);
        }
        let (addr, gsi) = (MMIO_START + u64::from(index) * MMIO_SLOT_SIZE, MMIO_FIRST_GSI + index);
        let irq: Arc<dyn IrqLine> = self.vm.irq_line(gsi)?;
        let slot = MmioSlot { index, addr, gsi, irq, memory: self.vm.memory().clone() };
        let (device, host_side) = make(&slot)?;
        self.bus.mmio.insert(addr, MMIO_SLOT_SIZE, device)?;
        self.mmio_slots.push((addr, gsi));
        Ok((slot, host_side))
    }

    /// Puts a virtio-vsock device for guest CID `guest_cid` in the next virtio-mmio slot and returns
    /// its host side. Before [`MicroVm::start`]. A guest that breaks the virtio protocol on it (a
    /// corrupt virtqueue) loses its VM: it stops as crashed. The guest's kicks of its rx and tx
    /// queues reach the device's thread through ioeventfds: no exit to this process for them.
    pub fn attach_vsock(&mut self, guest_cid: u64) -> Result<Vsock, BuildError> {
        let run = Arc::downgrade(&self.run);
        let (slot, vsock) = self.attach_mmio(|slot| {
            let (vsock, transport) = Vsock::new(guest_cid, slot.memory.clone(), slot.irq.clone())?;
            transport.on_failure(Box::new(move || {
                if let Some(run) = run.upgrade() {
                    run.stop(VmExit::Crashed("the guest broke the virtio protocol on its vsock device".into()));
                }
            }));
            Ok((Arc::new(Mutex::new(transport)) as SharedDevice, vsock))
        })?;
        let notify = slot.addr + REG_QUEUE_NOTIFY;
        let [rx, tx] = KICKED_QUEUES.map(|queue| self.vm.write_notifier(notify, u32::from(queue)));
        vsock.take_kicks([rx?, tx?])?;
        Ok(vsock)
    }

    /// Loads the kernel and what it boots with, and starts the vCPUs. Once.
    pub fn start(&mut self) -> Result<(), BuildError> {
        if self.vcpus.is_empty() {
            return Err(VmError::AlreadyStarted.into());
        }
        let memory = self.vm.memory();
        let kernel = arch::loader::load_kernel(memory, &self.config.kernel)?;
        let initramfs = self.load_initramfs(&kernel)?;
        let cmdline_len = arch::loader::load_cmdline(memory, &self.cmdline()?)?;
        arch::loader::write_boot_params(memory, &kernel, cmdline_len, initramfs)?;
        arch::mptable::write(memory, self.config.vcpus)?;
        arch::regs::write_boot_tables(memory, kernel.entry.protocol)?;
        for vcpu in &self.vcpus {
            arch::regs::setup_vcpu(vcpu.fd(), kernel.entry)?;
        }
        let bus = Arc::new(std::mem::take(&mut self.bus));
        self.run.start(std::mem::take(&mut self.vcpus), bus)?;
        Ok(())
    }

    /// Blocks until the VM has stopped: all its vCPUs are out of guest mode. Before
    /// [`MicroVm::start`] only a [`MicroVm::kill`] (from another thread) ends the wait.
    pub fn wait(&self) -> VmExit {
        self.run.wait()
    }

    /// How the VM ended, if it has.
    pub fn try_exit(&self) -> Option<VmExit> {
        self.run.try_exit()
    }

    /// An eventfd that becomes readable (once) when the VM has stopped, for a reactor to watch.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.run.exit_fd()
    }

    /// Stops the VM ([`VmExit::Killed`] unless it already stopped), without waiting: its vCPUs are
    /// kicked out of guest mode with the signal [`crate::kick_signal`].
    pub fn kill(&self) {
        self.run.stop(VmExit::Killed);
    }

    /// Takes every vCPU out of guest mode and keeps it there until [`MicroVm::resume`]: the guest's
    /// clock stops with it. Returns once no vCPU runs guest code; fails if the VM has stopped or a
    /// vCPU did not leave within `timeout` (the VM then runs on).
    pub fn pause(&self, timeout: Duration) -> Result<(), VmError> {
        self.run.pause(timeout)
    }

    /// Lets a paused VM run again.
    pub fn resume(&self) {
        self.run.resume();
    }

    /// The newest bytes of the guest's console (empty without `serial_log`).
    pub fn serial_log(&self) -> Vec<u8> {
        self.serial_log.as_ref().map(SerialLog::contents).unwrap_or_default()
    }

    /// The kernel thread ids of the running vCPU threads (for the embedder's cgroup).
    pub fn thread_ids(&self) -> Vec<libc::pid_t> {
        self.run.thread_ids()
    }

    /// The guest's memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        self.vm.memory()
    }

    /// The base initramfs, read from its file straight into guest memory (no copy on the heap:
    /// megabytes, and under nested virtualization every copy and page fault counts), and then the
    /// appended archive, 4-byte aligned after it. `None` when both are empty.
    fn load_initramfs(&self, kernel: &arch::loader::Kernel) -> Result<Option<arch::loader::Initramfs>, BuildError> {
        let extra = &self.config.extra_initramfs;
        let mut base = None;
        if let Some(path) = &self.config.initramfs {
            let error = |source| BuildError::Initramfs { path: path.clone(), source };
            let file = std::fs::File::open(path).map_err(error)?;
            let len =
                usize::try_from(file.metadata().map_err(error)?.len()).map_err(|e| error(std::io::Error::other(e)))?;
            base = Some((file, len, path));
        }
        let base_len = base.as_ref().map_or(0, |&(_, len, _)| len);
        let extra_at = if extra.is_empty() { base_len } else { initramfs::extra_offset(base_len) };
        let size = extra_at + extra.len();
        if size == 0 {
            return Ok(None);
        }
        let memory = self.vm.memory();
        let placed = arch::loader::place_initramfs(memory, kernel, size)?;
        if let Some((mut file, len, path)) = base {
            memory
                .read_exact_volatile_from(placed.addr, &mut file, len)
                .map_err(|e| BuildError::Initramfs { path: path.clone(), source: std::io::Error::other(e) })?;
        }
        let write = |bytes: &[u8], at: usize| {
            memory
                .write_slice(bytes, placed.addr.unchecked_add(at as u64))
                .map_err(|source| BuildError::Arch(ArchError::GuestMemory { what: "the initramfs", source }))
        };
        write(&[0; 3][..extra_at - base_len], base_len)?;
        write(extra, extra_at)?;
        Ok(Some(placed))
    }

    fn cmdline(&self) -> Result<Cmdline, BuildError> {
        let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(BuildError::Cmdline)?;
        let console = if self.config.serial_log { CONSOLE_ON } else { CONSOLE_OFF };
        cmdline.insert_str(format!("{BASE_CMDLINE} {console}")).map_err(BuildError::Cmdline)?;
        for &(addr, gsi) in &self.mmio_slots {
            cmdline
                .add_virtio_mmio_device(MMIO_SLOT_SIZE, GuestAddress(addr), gsi, None)
                .map_err(BuildError::Cmdline)?;
        }
        if !self.config.cmdline_extra.trim().is_empty() {
            cmdline.insert_str(self.config.cmdline_extra.trim()).map_err(BuildError::Cmdline)?;
        }
        Ok(cmdline)
    }
}

impl Drop for MicroVm {
    fn drop(&mut self) {
        self.run.kill_and_join();
    }
}
