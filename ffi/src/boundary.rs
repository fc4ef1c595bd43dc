//! The one way into the library from C: [`guard`] runs an export's body, catches any panic, turns
//! an error into a [`clove_status`] and records its message as this thread's last error. The
//! argument readers here check every pointer for NULL before it is used.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use clove_core::protocol::ErrorCode;
use clove_core::runtime::RuntimeError;

/// What every call returns. `CLOVE_STATUS_OK` is 0; the other numbers are the runtime's error codes
/// (also sent to agents on the wire) and never change.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clove_status {
    Ok = 0,
    /// Bytes that are not a frame.
    BadFrame = 1,
    UnknownOpcode = 2,
    BadPayload = 3,
    PermissionDenied = 4,
    /// No agent has this id (it never existed, or it ended and was forgotten).
    NotFound = 5,
    /// The wait ended before the agent or the event did.
    Timeout = 6,
    LimitExceeded = 7,
    Io = 8,
    Unsupported = 9,
    /// A NULL pointer, a string that is not UTF-8, an unknown name or an index out of range.
    InvalidArgument = 10,
    /// The request conflicts with the agent's state (e.g. pausing a paused agent).
    Conflict = 11,
    /// A bug in Clove (a caught panic) or a runtime that has stopped.
    Internal = 12,
}

impl From<ErrorCode> for clove_status {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::BadFrame => clove_status::BadFrame,
            ErrorCode::UnknownOpcode => clove_status::UnknownOpcode,
            ErrorCode::BadPayload => clove_status::BadPayload,
            ErrorCode::PermissionDenied => clove_status::PermissionDenied,
            ErrorCode::NotFound => clove_status::NotFound,
            ErrorCode::Timeout => clove_status::Timeout,
            ErrorCode::LimitExceeded => clove_status::LimitExceeded,
            ErrorCode::Io => clove_status::Io,
            ErrorCode::Unsupported => clove_status::Unsupported,
            ErrorCode::InvalidArgument => clove_status::InvalidArgument,
            ErrorCode::Conflict => clove_status::Conflict,
            ErrorCode::Internal => clove_status::Internal,
        }
    }
}

/// A failed call: its status and the message `clove_last_error` will show.
#[derive(Debug)]
pub(crate) struct Error {
    status: clove_status,
    message: String,
}

impl Error {
    pub(crate) fn new(status: clove_status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(clove_status::InvalidArgument, message)
    }

    pub(crate) fn null(arg: &str) -> Self {
        Error::invalid(format!("argument `{arg}` is NULL"))
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        Error::new(e.code().into(), e.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: String) {
    // A message is ours and never holds a NUL, but a name from C echoed into it might.
    let bytes: Vec<u8> = message.into_bytes().into_iter().filter(|&b| b != 0).collect();
    let message = CString::new(bytes).unwrap_or_default();
    // Fails only while the thread is being torn down, when nobody can read the message anyway.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// The message of this thread's last failed call, or `""`.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR.try_with(|last| last.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// Runs the body of the export `function`: a panic becomes `CLOVE_STATUS_INTERNAL`, an error its
/// status, and either one's message this thread's last error.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<()>) -> clove_status {
    let error = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return clove_status::Ok,
        Ok(Err(e)) => e,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Error::new(clove_status::Internal, format!("panicked: {what}"))
        }
    };
    set_last_error(format!("{function}: {}", error.message));
    error.status
}

/// Reads a required string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::null(arg));
    }
    // SAFETY: `ptr` is not NULL (checked above) and the caller promises a NUL-terminated string
    // that outlives `'a` and is not written meanwhile.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|_| Error::invalid(format!("argument `{arg}` is not UTF-8")))
}

/// Reads an optional string argument: NULL is `None`.
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from this function's own contract.
    unsafe { str_arg(ptr, arg) }.map(Some)
}

/// Checks an out-pointer, so the call can fail before it does any work.
///
/// # Safety
/// `ptr` is NULL or valid for writing one properly aligned `T` during `'a`, with no other
/// reference to that memory meanwhile.
pub(crate) unsafe fn out_arg<'a, T>(ptr: *mut T, arg: &str) -> Result<&'a mut MaybeUninit<T>> {
    // SAFETY: the caller promises `ptr` is NULL or valid, aligned and unaliased for `'a`;
    // `MaybeUninit` asks nothing of the bytes already there.
    unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }.ok_or_else(|| Error::null(arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_error_codes() {
        for code in ErrorCode::ALL {
            assert_eq!(clove_status::from(code) as u32, u32::from(code as u16));
        }
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard("clove_test", || panic!("boom"));
        assert_eq!(status, clove_status::Internal);
        // SAFETY: `last_error` returns this thread's NUL-terminated message, unchanged until the
        // next call on this thread.
        let message = unsafe { CStr::from_ptr(last_error()) };
        assert_eq!(message.to_str(), Ok("clove_test: panicked: boom"));
    }

    #[test]
    fn null_arguments_are_named() {
        let status = guard("clove_test", || {
            // SAFETY: a NULL pointer is always an accepted input.
            unsafe { str_arg(std::ptr::null(), "path") }.map(|_| ())
        });
        assert_eq!(status, clove_status::InvalidArgument);
        // SAFETY: as above.
        let message = unsafe { CStr::from_ptr(last_error()) };
        assert_eq!(message.to_str(), Ok("clove_test: argument `path` is NULL"));
    }
}
