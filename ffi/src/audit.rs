//! The audit log, handed to C as JSON text.

use std::ffi::{c_char, CString};

use clove_core::protocol::AuditQuery;

use crate::boundary::{clove_status, guard, opt_str_arg, out_arg, Error};
use crate::handle::BoxHandle;
use crate::runtime::clove_runtime;

/// Writes to `out_json` a JSON array of audit entries, oldest first: those of `category`
/// ("security", "lifecycle"; NULL: any), of agent `agent_id` (0: any), with an id above
/// `since_id`, the newest `limit` of them (0: 100; at most 1 000). Each entry is an object with
/// `id`, `timestamp_ms`, `category`, `event`, `agent_id`, `agent_name`, `success` and
/// `details_json` (a JSON object as text). Free the string with `clove_string_free`.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `category` is NULL or NUL-terminated; `out_json` is NULL or
/// valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_audit_log_json(
    rt: *mut clove_runtime,
    category: *const c_char,
    agent_id: u64,
    since_id: u64,
    limit: u32,
    out_json: *mut *mut c_char,
) -> clove_status {
    guard("clove_runtime_audit_log_json", || {
        // SAFETY: the caller's contract on `rt`, `category` and `out_json`.
        let (rt, category, out) = unsafe {
            (clove_runtime::borrow(rt, "rt")?, opt_str_arg(category, "category")?, out_arg(out_json, "out_json")?)
        };
        let entries = rt.audit_log(AuditQuery {
            category: category.map(str::to_string),
            agent_id: (agent_id != 0).then_some(agent_id),
            since_id: (since_id != 0).then_some(since_id),
            limit,
        })?;
        let internal = |what: String| Error::new(clove_status::Internal, what);
        let json = serde_json::to_string(&entries).map_err(|e| internal(format!("encoding the audit log: {e}")))?;
        // JSON escapes every control character, so the text holds no NUL.
        let json = CString::new(json).map_err(|e| internal(e.to_string()))?;
        out.write(json.into_raw());
        Ok(())
    })
}

/// Frees a string the library returned; NULL does nothing.
///
/// Thread-safety: any thread, once nothing else reads the string.
///
/// # Safety
/// `s` is NULL or a string returned by a `clove_*` function for the caller to free, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn clove_string_free(s: *mut c_char) {
    guard("clove_string_free", || {
        if !s.is_null() {
            // SAFETY: a non-NULL `s` came from `CString::into_raw` in this library (the caller's
            // contract) and is freed only here, once.
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    });
}
