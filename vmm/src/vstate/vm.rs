//! A VM: its guest memory (registered with KVM before anything else), the in-kernel interrupt
//! controllers and timer, interrupt lines, and vCPUs.

use std::sync::Arc;

use std::os::fd::AsRawFd;

use kvm_bindings::{
    kvm_ioeventfd, kvm_ioeventfd_flag_nr_datamatch, kvm_irqfd, kvm_pit_config, kvm_userspace_memory_region, KVMIO,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestUsize};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use super::{Vcpu, VmError};
use crate::arch::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};
use crate::devices::IrqLine;

ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);

pub struct Vm {
    // Dropped before `memory`, so KVM never holds a mapping that is gone (vCPUs, which keep
    // the VM alive, hold the mapping too).
    fd: VmFd,
    memory: GuestMemoryMmap,
    kvm: Kvm,
}

impl Vm {
    /// A VM with `memory_bytes` of guest memory from guest address 0, registered with KVM at once:
    /// before any interrupt controller or vCPU, the order that keeps the registration cheap (an
    /// interrupt controller created first makes the first memory slot cost 6-8 ms on nested KVM).
    pub fn new(memory_bytes: usize) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        let fd = kvm.create_vm().map_err(VmError::ioctl("KVM_CREATE_VM"))?;
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), memory_bytes)])
            .map_err(|e| VmError::Memory(e.to_string()))?;
        for (slot, region) in memory.iter().enumerate() {
            let host = memory.get_host_address(region.start_addr()).map_err(|e| VmError::Memory(e.to_string()))?;
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len() as GuestUsize,
                userspace_addr: host as u64,
            };
            // SAFETY: the region is the mapping `memory` owns, which lives as long as this Vm and so
            // as long as KVM may touch it (the VM fd is dropped first).
            unsafe { fd.set_user_memory_region(region) }.map_err(VmError::ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(Vm { fd, memory, kvm })
    }

    /// What a PC has in the chipset, emulated by KVM: the TSS and identity-map pages Intel's VMX
    /// needs, the 8259 PICs, the I/O APIC and the local APICs, and the 8254 timer (its speaker
    /// port a dummy, so the guest's timer calibration reads it without exits). Before any vCPU.
    pub fn create_interrupt_controllers(&self) -> Result<(), VmError> {
        self.fd.set_tss_address(KVM_TSS_ADDRESS as usize).map_err(VmError::ioctl("KVM_SET_TSS_ADDR"))?;
        self.fd
            .set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
            .map_err(VmError::ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
        self.fd.create_irq_chip().map_err(VmError::ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        self.fd.create_pit2(pit).map_err(VmError::ioctl("KVM_CREATE_PIT2"))
    }

    /// An interrupt line into the guest at `gsi`: an eventfd KVM turns into an interrupt
    /// (an irqfd). Needs the interrupt controllers.
    pub fn irq_line(&self, gsi: u32) -> Result<Arc<IrqFd>, VmError> {
        let fd = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(VmError::EventFd)?;
        // kvm-ioctls' register_irqfd takes the EventFd of an older vmm-sys-util than ours; the
        // ioctl itself only needs the two numbers.
        let irqfd = kvm_irqfd { fd: fd.as_raw_fd() as u32, gsi, ..Default::default() };
        // SAFETY: KVM_IRQFD on a VM fd reads one kvm_irqfd, which `irqfd` is; KVM takes its own
        // reference to the eventfd, so closing ours later is fine.
        let ret = unsafe { ioctl_with_ref(&self.fd, KVM_IRQFD(), &irqfd) };
        if ret < 0 {
            return Err(VmError::Ioctl { what: "KVM_IRQFD", source: kvm_ioctls::Error::last() });
        }
        Ok(Arc::new(IrqFd { fd }))
    }

    /// An eventfd KVM signals, in the kernel and without a VM exit to us, whenever the guest writes
    /// the 4-byte value `value` to guest-physical `addr` (an ioeventfd). Such a write no longer
    /// reaches the bus: a virtio queue kick, served by the device's own thread.
    pub fn write_notifier(&self, addr: u64, value: u32) -> Result<EventFd, VmError> {
        let fd = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(VmError::EventFd)?;
        let ioeventfd = kvm_ioeventfd {
            datamatch: u64::from(value),
            addr,
            len: 4,
            fd: fd.as_raw_fd(),
            flags: 1 << kvm_ioeventfd_flag_nr_datamatch,
            ..Default::default()
        };
        // SAFETY: KVM_IOEVENTFD on a VM fd reads one kvm_ioeventfd, which `ioeventfd` is; KVM
        // takes its own reference to the eventfd.
        let ret = unsafe { ioctl_with_ref(&self.fd, KVM_IOEVENTFD(), &ioeventfd) };
        if ret < 0 {
            return Err(VmError::Ioctl { what: "KVM_IOEVENTFD", source: kvm_ioctls::Error::last() });
        }
        Ok(fd)
    }

    /// The guest's memory, for loading code and data.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// The /dev/kvm handle the VM came from, for what KVM supports (CPUID).
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// A vCPU with this id (its local APIC id); its registers are set with
    /// [`Vcpu::enter_real_mode`] or the boot code.
    pub fn create_vcpu(&self, id: u64) -> Result<Vcpu, VmError> {
        let fd = self.fd.create_vcpu(id).map_err(VmError::ioctl("KVM_CREATE_VCPU"))?;
        Ok(Vcpu::new(fd, self.memory.clone()))
    }
}

/// An interrupt line backed by an irqfd. Triggering it after the VM is gone does nothing.
pub struct IrqFd {
    fd: EventFd,
}

impl IrqLine for IrqFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.fd.write(1)
    }
}
