//! Clove's own KVM monitor, the microVM tier's core: a VM with its guest memory and vCPUs inside the
//! host process, on the rust-vmm crates. `vstate` is the KVM plumbing (guest memory registered
//! before anything else: an interrupt controller first makes the first memory slot cost 6-8 ms on
//! nested KVM), `arch` the x86_64 Linux boot, `devices` what the guest sees.

pub mod devices;
pub mod vstate;

pub use vstate::{Exit, Vcpu, Vm, VmError};
