//! Opaque handles. Each C handle type names the Rust value behind it, which C owns through a `Box`
//! from its `_new` to its `_free`; every cast between the two is written here, once.

use crate::boundary::{Error, Result};

/// A C handle type that stands for a boxed `Self::Rust`.
pub(crate) trait BoxHandle: Sized {
    type Rust;

    /// Moves `value` to the heap and hands C the pointer; [`BoxHandle::free`] takes it back.
    fn into_handle(value: Self::Rust) -> *mut Self {
        Box::into_raw(Box::new(value)).cast()
    }

    /// Borrows the value behind a handle, or fails naming `arg` when the handle is NULL.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`BoxHandle::into_handle`] on this type and was not freed; no
    /// `&mut` to the value exists during `'a`.
    unsafe fn borrow<'a>(ptr: *const Self, arg: &str) -> Result<&'a Self::Rust> {
        // SAFETY: a non-NULL `ptr` is a live `Box<Self::Rust>` (the caller's contract), so it is
        // aligned and initialised, and only shared borrows of it exist during `'a`.
        unsafe { ptr.cast::<Self::Rust>().as_ref() }.ok_or_else(|| Error::null(arg))
    }

    /// Borrows the value behind a handle mutably.
    ///
    /// # Safety
    /// As for [`BoxHandle::borrow`], and no other borrow of the value exists during `'a`.
    unsafe fn borrow_mut<'a>(ptr: *mut Self, arg: &str) -> Result<&'a mut Self::Rust> {
        // SAFETY: a non-NULL `ptr` is a live `Box<Self::Rust>` (the caller's contract) and nothing
        // else borrows it during `'a`.
        unsafe { ptr.cast::<Self::Rust>().as_mut() }.ok_or_else(|| Error::null(arg))
    }

    /// Drops the value behind a handle; NULL does nothing.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`BoxHandle::into_handle`] on this type and was not freed, and
    /// nothing uses it after this call.
    unsafe fn free(ptr: *mut Self) {
        if !ptr.is_null() {
            // SAFETY: `ptr` is the pointer of a `Box<Self::Rust>` that is still live and, by the
            // caller's contract, no longer used by anyone else.
            drop(unsafe { Box::from_raw(ptr.cast::<Self::Rust>()) });
        }
    }
}
