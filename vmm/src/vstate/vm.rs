//! A VM and its guest memory.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestUsize};

use super::{Vcpu, VmError};

pub struct Vm {
    // Dropped before `memory`, so KVM never holds a mapping that is gone.
    fd: VmFd,
    memory: GuestMemoryMmap,
}

impl Vm {
    /// A VM with `memory_bytes` of guest memory from guest address 0, registered with KVM at once:
    /// before any interrupt controller or vCPU, the order that keeps the registration cheap.
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
        Ok(Vm { fd, memory })
    }

    /// The guest's memory, for loading code and data.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// A vCPU with this id; its registers are set with [`Vcpu::enter_real_mode`] or the boot code.
    pub fn create_vcpu(&self, id: u64) -> Result<Vcpu, VmError> {
        let fd = self.fd.create_vcpu(id).map_err(VmError::ioctl("KVM_CREATE_VCPU"))?;
        Ok(Vcpu::new(fd))
    }
}
