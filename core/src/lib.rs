//! Clove's core.
//!
//! Without the `std` feature this crate is `#![no_std]` + `alloc` and holds only sans-IO logic: the
//! wire protocol ([`protocol`]), policy evaluation ([`policy`]), restart backoff ([`backoff`]), the
//! audit log ([`audit`]) and the state store's rules ([`state`]). None of it reads a clock or touches
//! a file descriptor; time comes in as an argument.
//!
//! With `std` (the default) it also holds [`runtime`]: the embedded runtime a host program starts. One
//! reactor thread owns every socket, child process and agent record; host threads talk to it through
//! [`runtime::Runtime`], agents through frames on a socket.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod audit;
pub mod backoff;
pub mod fair;
pub mod policy;
pub mod protocol;
pub mod state;

#[cfg(feature = "std")]
pub mod runtime;
