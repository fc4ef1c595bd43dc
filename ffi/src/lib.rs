//! Clove's C ABI, built as `libclove.so` and `libclove.a` and described by `include/clove.h`
//! (generated from this crate by cbindgen; `tests/header.rs` fails when the two differ).
//!
//! Call order: `clove_runtime_new` → optionally `clove_runtime_listen` → build
//! `clove_spawn_options` and `clove_runtime_spawn` agents → `clove_runtime_wait`,
//! `clove_runtime_next_event` or an event callback → `clove_runtime_free`.
//!
//! Every export returns a `clove_status` (or is a `_free`, a length or a version) and goes through
//! [`boundary::guard`]: pointers are checked for NULL, panics are caught, and a failure leaves its
//! message for `clove_last_error`. Every handle is a `Box` owned by C between its `_new` and its
//! `_free` ([`handle::BoxHandle`]). `docs/c-api.md` gives the rules for C programs.
#![allow(non_camel_case_types)]

// The boundary every export goes through, and the handle mapping.
mod boundary;
mod handle;

// The exports, in the order the header lists them: cbindgen keeps source order, and the blank lines
// keep rustfmt from sorting them.
mod runtime;

mod spawn;

mod agents;

mod events;

mod audit;

mod metrics;

mod think;

use std::ffi::{c_char, CStr};

pub use agents::*;
pub use audit::*;
pub use boundary::clove_status;
pub use events::*;
pub use metrics::*;
pub use runtime::*;
pub use spawn::*;
pub use think::*;

/// The version of the ABI this header describes. It changes only when a function, type or value
/// changes in a way that breaks a program built against an older header.
pub const CLOVE_ABI_VERSION: u32 = 1;

const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(version) => version,
    Err(_) => panic!("the crate version holds a NUL"),
};

/// The ABI version of the loaded library; compare it with `CLOVE_ABI_VERSION`.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn clove_abi_version() -> u32 {
    CLOVE_ABI_VERSION
}

/// The library's version, e.g. "0.1.0": a static string, never freed.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn clove_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The message of the last failed call on this thread, or "" if none failed. Valid until the next
/// `clove_*` call on the same thread; never NULL, never freed by the caller.
///
/// Thread-safety: any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn clove_last_error() -> *const c_char {
    boundary::last_error()
}
