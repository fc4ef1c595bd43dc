//! The VM state: the VM and its guest memory (`vm`), and its vCPUs (`vcpu`).

mod vcpu;
mod vm;

pub use vcpu::{Exit, Vcpu};
pub use vm::Vm;

/// Why a VM or a vCPU could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("/dev/kvm: {0}")]
    Kvm(kvm_ioctls::Error),
    #[error("{what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("guest memory: {0}")]
    Memory(String),
}

impl VmError {
    fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Ioctl { what, source }
    }
}
