//! The page heap's side of the allocation wrappers, the same on every platform: blocks on
//! pages of their own, counted as held, and a free judged before anything is released.
use super::fault;
use crate::pageheap::{self, MIN_ALIGN};
use std::ffi::c_void;

/// A block of the page heap, counted as held; null, with the platform's out-of-memory error,
/// when there are no pages left.
pub(super) fn paged(n: usize, align: usize) -> *mut c_void {
    let p = pageheap::alloc(n, align);
    if p.is_null() {
        crate::sys::no_memory();
    } else {
        fault::held_add(n as i64, 1);
    }
    p.cast()
}

/// Frees a block under the page heap: its own, another allocator's (`foreign` frees it), or a
/// defect that ends the worker at this call.
pub(super) fn release(call: &str, p: *mut c_void, foreign: impl FnOnce()) {
    match pageheap::free(p.cast()) {
        pageheap::Freed::Block(size) => fault::held_add(-(size as i64), -1),
        pageheap::Freed::Foreign => foreign(),
        pageheap::Freed::Invalid(m) => invalid_free(call, m),
    }
}

/// `n` blocks of `size` bytes, zeroed as fresh pages are; null, after `overflow`, when the
/// product does not fit.
pub(super) fn zeroed(n: usize, size: usize, overflow: impl FnOnce()) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => paged(total, MIN_ALIGN),
        None => {
            overflow();
            std::ptr::null_mut()
        }
    }
}

/// Resizes `p` under the page heap when it is a block of its own: Some(the new block, or null
/// when `n` is 0 or there are no pages); None for another allocator's block, or with the page
/// heap off.
pub(super) fn resize(call: &str, p: *mut c_void, n: usize) -> Option<*mut c_void> {
    if !pageheap::enabled() {
        return None;
    }
    if p.is_null() {
        return Some(paged(n, MIN_ALIGN));
    }
    let old = match pageheap::owner(p.cast()) {
        Ok(Some(old)) => old,
        Ok(None) => return None,
        Err(m) => invalid_free(call, m),
    };
    if n == 0 {
        release(call, p, || {});
        return Some(std::ptr::null_mut());
    }
    let q = paged(n, MIN_ALIGN);
    if !q.is_null() {
        // SAFETY: both blocks are live and at least min(old, n) bytes long.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, q.cast(), old.min(n)) };
        release(call, p, || {});
    }
    Some(q)
}

/// The size of a block of the page heap; None for another allocator's.
pub(super) fn size_of(call: &str, p: *mut c_void) -> Option<usize> {
    if p.is_null() {
        return None;
    }
    match pageheap::owner(p.cast()) {
        Ok(size) => size,
        Err(m) => invalid_free(call, m),
    }
}

/// A copy of the NUL-terminated string `s` in a block of the page heap.
///
/// # Safety
///
/// `s` is a NUL-terminated string (strdup's contract).
pub(super) unsafe fn dup(s: *const u8) -> *mut c_void {
    // SAFETY: the caller's contract.
    let len = unsafe { std::ffi::CStr::from_ptr(s.cast()) }
        .to_bytes()
        .len()
        + 1;
    let q = paged(len, 1);
    if !q.is_null() {
        // SAFETY: q has len bytes; s has len bytes with its NUL.
        unsafe { std::ptr::copy_nonoverlapping(s, q.cast(), len) };
    }
    q
}

/// Ends the worker at the faulty call, as a checking allocator does, with the reason on stderr.
pub(super) fn invalid_free(call: &str, m: pageheap::Misuse) -> ! {
    pageheap::named();
    eprintln!("page heap: invalid free: {call} of {m}");
    crate::sys::heap_misuse_exit()
}
