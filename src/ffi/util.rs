//! Small checked conversions from C pointers to Rust references and slices.

use std::ffi::{c_char, CStr};

use crate::error::{Error, Status};

/// # Safety
/// A non-NULL `p` must point to a valid, live `T`.
pub(super) unsafe fn check_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: forwarded to the caller.
    unsafe { p.as_ref() }.ok_or_else(|| Error::new(Status::NullArgument, format!("{name} must not be NULL")))
}

/// # Safety
/// A non-NULL `p` must point to a valid, writable `T` not aliased elsewhere.
pub(super) unsafe fn check_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: forwarded to the caller.
    unsafe { p.as_mut() }.ok_or_else(|| Error::new(Status::NullArgument, format!("{name} must not be NULL")))
}

/// # Safety
/// A non-NULL `p` must point to a valid `T`.
pub(super) unsafe fn opt_ref<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: forwarded to the caller.
    unsafe { p.as_ref() }
}

fn check_len<T>(len: usize, name: &str) -> Result<(), Error> {
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::new(Status::InvalidArgument, format!("{name}: {len} elements is larger than any buffer can be")));
    }
    Ok(())
}

/// # Safety
/// Non-NULL `p` must point to `len` readable, initialized `T`s that live for `'a`.
pub(super) unsafe fn slice_from<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T], Error> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{name} must not be NULL")));
    }
    check_len::<T>(len, name)?;
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::new(Status::InvalidArgument, format!("{name} is not aligned for its element type")));
    }
    // SAFETY: non-NULL, aligned, size fits isize; validity and lifetime are the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// # Safety
/// Non-NULL `p` must point to `len` writable `T`s, not aliased, living for `'a`.
pub(super) unsafe fn slice_from_mut<'a, T>(p: *mut T, len: usize, name: &str) -> Result<&'a mut [T], Error> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{name} must not be NULL")));
    }
    check_len::<T>(len, name)?;
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::new(Status::InvalidArgument, format!("{name} is not aligned for its element type")));
    }
    // SAFETY: as above, plus exclusive access per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

pub(super) fn static_cstr(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}
