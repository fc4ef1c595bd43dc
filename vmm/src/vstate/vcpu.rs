//! A vCPU and what makes it stop: every exit comes back as an [`Exit`] value for its owner to
//! handle; nothing a guest does makes the host panic.

use kvm_bindings::kvm_regs;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::VmError;

/// Why the guest stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `out`: the bytes written to an I/O port.
    IoOut { port: u16, data: Vec<u8> },
    /// `in`: the guest reads `len` bytes from a port (they read as zero).
    IoIn { port: u16, len: usize },
    /// A store to guest-physical memory with no RAM behind it: a device register.
    MmioWrite { addr: u64, data: Vec<u8> },
    /// A load from such an address (it reads as zero).
    MmioRead { addr: u64, len: usize },
    /// `hlt`.
    Halt,
    /// A triple fault or a reset: the guest is done.
    Shutdown,
    /// Any other exit, by KVM's name for it.
    Other(String),
}

pub struct Vcpu {
    fd: VcpuFd,
}

impl Vcpu {
    pub(super) fn new(fd: VcpuFd) -> Vcpu {
        Vcpu { fd }
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

    /// Runs the guest until it exits.
    pub fn run(&mut self) -> Result<Exit, VmError> {
        let exit = match self.fd.run().map_err(VmError::ioctl("KVM_RUN"))? {
            VcpuExit::IoOut(port, data) => Exit::IoOut { port, data: data.to_vec() },
            VcpuExit::IoIn(port, data) => {
                data.fill(0);
                Exit::IoIn { port, len: data.len() }
            }
            VcpuExit::MmioWrite(addr, data) => Exit::MmioWrite { addr, data: data.to_vec() },
            VcpuExit::MmioRead(addr, data) => {
                data.fill(0);
                Exit::MmioRead { addr, len: data.len() }
            }
            VcpuExit::Hlt => Exit::Halt,
            VcpuExit::Shutdown => Exit::Shutdown,
            other => Exit::Other(format!("{other:?}")),
        };
        Ok(exit)
    }
}
