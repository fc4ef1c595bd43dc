//! Clove's own KVM monitor, the microVM tier's core: a VM with its guest memory and vCPUs inside the
//! host process, on the rust-vmm crates. So far the plumbing (`vstate`): guest memory registered
//! before anything else (an interrupt controller first makes the first memory slot cost 6-8 ms on
//! nested KVM), vCPUs set up to run code, and their exits reported as values. Booting Linux, the
//! devices and the guest agent come next (see README.md).

pub mod vstate;

pub use vstate::{Exit, Vcpu, Vm, VmError};
