//! A vCPU and what makes it stop. Port and MMIO accesses go to the bus and the guest carries on;
//! every other exit comes back as an [`Exit`] value for the owner to handle. Nothing a guest does
//! makes the host panic.

use kvm_bindings::kvm_regs;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use super::VmError;
use crate::bus::Bus;

/// Why `KVM_RUN` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A port or MMIO access, done by the bus.
    Io,
    /// `hlt` (only without an in-kernel interrupt controller, which handles it itself).
    Halt,
    /// A triple fault: the guest cannot go on.
    Shutdown,
    /// A signal or `immediate_exit` kicked the vCPU out.
    Interrupted,
    /// Any other exit, by KVM's name for it.
    Other(String),
}

pub struct Vcpu {
    fd: VcpuFd,
    // The VM lives as long as any of its vCPU fds, so each vCPU keeps the guest memory mapped
    // until its fd is closed (fields drop in order): KVM never sees the mapping go away.
    _memory: GuestMemoryMmap,
}

impl Vcpu {
    pub(super) fn new(fd: VcpuFd, memory: GuestMemoryMmap) -> Vcpu {
        Vcpu { fd, _memory: memory }
    }

    /// The KVM vCPU, for the boot code to set its registers.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    pub(super) fn fd_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    /// Points the vCPU at real-mode code at guest address `entry` (below 64 KiB), code and data
    /// segments at 0.
    pub fn enter_real_mode(&self, entry: u16) -> Result<(), VmError> {
        let mut sregs = self.fd.get_sregs().map_err(VmError::ioctl("KVM_GET_SREGS"))?;
        for segment in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
            segment.base = 0;
            segment.selector = 0;
        }
        self.fd.set_sregs(&sregs).map_err(VmError::ioctl("KVM_SET_SREGS"))?;
        // Bit 1 of RFLAGS is reserved and always set.
        let regs = kvm_regs { rip: u64::from(entry), rflags: 0x2, ..Default::default() };
        self.fd.set_regs(&regs).map_err(VmError::ioctl("KVM_SET_REGS"))
    }

    /// Runs the guest until it exits; port and MMIO accesses are served from `bus`.
    pub fn run(&mut self, bus: &Bus) -> Result<Exit, VmError> {
        let exit = match self.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => bus.pio.write(u64::from(port), data).map(|()| Exit::Io)?,
            Ok(VcpuExit::IoIn(port, data)) => bus.pio.read(u64::from(port), data).map(|()| Exit::Io)?,
            Ok(VcpuExit::MmioWrite(addr, data)) => bus.mmio.write(addr, data).map(|()| Exit::Io)?,
            Ok(VcpuExit::MmioRead(addr, data)) => bus.mmio.read(addr, data).map(|()| Exit::Io)?,
            Ok(VcpuExit::Hlt) => Exit::Halt,
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::Intr) => Exit::Interrupted,
            Ok(other) => Exit::Other(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
            Err(e) => return Err(VmError::Ioctl { what: "KVM_RUN", source: e }),
        };
        Ok(exit)
    }
}
