//! The x86_64 Linux boot: where things go in guest memory (`layout`), loading the kernel, the
//! initramfs and the command line and writing the boot parameters (`loader`), the MP table
//! (`mptable`), and each vCPU's boot state: CPUID (`cpuid`), MSRs (`msr`), registers, segments,
//! page tables and the local APIC (`regs`).

pub mod cpuid;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod msr;
pub mod regs;

pub use loader::{BootEntry, BootProtocol};

/// Why the guest could not be set up to boot.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("kernel {path}: {source}")]
    KernelFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel is neither an ELF vmlinux nor a bzImage: {0}")]
    KernelLoad(linux_loader::loader::Error),
    #[error("bzImage (boot protocol {0:#x}) has no 64-bit entry point (needs 2.12 and XLF_KERNEL_64)")]
    No64BitEntry(u16),
    #[error("initramfs of {size} bytes does not fit between the kernel's end {kernel_end:#x} and {limit:#x}")]
    InitramfsTooBig { size: usize, kernel_end: u64, limit: u64 },
    #[error("kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("writing the command line: {0}")]
    CmdlineLoad(linux_loader::loader::Error),
    #[error("writing the boot parameters: {0}")]
    BootParams(linux_loader::configurator::Error),
    #[error("writing {what} to guest memory: {source}")]
    GuestMemory {
        what: &'static str,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    #[error("{what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("KVM set {set} of the {wanted} boot MSRs")]
    Msrs { set: usize, wanted: usize },
    #[error("{0} vCPUs do not fit in the MP table")]
    TooManyVcpus(u8),
}

impl ArchError {
    fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ArchError {
        move |source| ArchError::Ioctl { what, source }
    }

    fn memory(what: &'static str) -> impl FnOnce(vm_memory::GuestMemoryError) -> ArchError {
        move |source| ArchError::GuestMemory { what, source }
    }
}
