//! Clove's own KVM monitor, the microVM tier's core: a VM with its guest memory and vCPUs inside
//! the host process, on the rust-vmm crates.
//!
//! - `builder`: [`MicroVm`] from a [`VmConfig`], in boot order (its docs list the steps).
//! - `vstate`: the KVM plumbing: guest memory registered before anything else (an interrupt
//!   controller first makes the first memory slot cost 6-8 ms on nested KVM), vCPUs, their
//!   threads, and the kick that stops them (the signal [`kick_signal`], `SIGRTMIN()+3`).
//! - `arch`: the x86_64 Linux boot (layout, kernel and initramfs, boot parameters, MP table,
//!   CPUID, MSRs, registers).
//! - `bus` and `devices`: what the guest sees (serial console, i8042, virtio-mmio slots).
//! - `initramfs`: a newc cpio writer for the archive the host appends.
//!
//! The host never panics because of what a guest does: a guest that misbehaves stops its VM with
//! [`VmExit::Crashed`].

pub mod arch;
pub mod builder;
pub mod bus;
pub mod devices;
pub mod initramfs;
pub mod vstate;

pub use builder::{BuildError, MicroVm, MmioSlot, VmConfig};
pub use vstate::{kick_signal, Exit, Vcpu, Vm, VmError, VmExit};
