//! The VM state: the VM, its guest memory and interrupt controllers (`vm`), its vCPUs (`vcpu`),
//! how a host thread kicks a vCPU out of guest mode (`kick`), and the vCPU threads with what
//! stops them (`run`).

mod kick;
mod run;
mod vcpu;
mod vm;

pub use kick::kick_signal;
pub use run::{VmExit, VmRun};
pub use vcpu::{Exit, Vcpu};
pub use vm::{IrqFd, Vm};

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
    #[error("an interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("a device on the bus: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error("signal {signal} (the vCPU kick) already has a handler in this process")]
    SignalInUse { signal: i32 },
    #[error("installing the handler of signal {signal}: {source}")]
    Signal {
        signal: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("starting a vCPU thread: {0}")]
    Thread(std::io::Error),
    #[error("the VM was already started or stopped")]
    AlreadyStarted,
    #[error("the VM has stopped")]
    Stopped,
    #[error("a vCPU did not leave guest mode within {0:?} of being kicked; the VM runs on")]
    PauseTimeout(std::time::Duration),
}

impl VmError {
    fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Ioctl { what, source }
    }
}
