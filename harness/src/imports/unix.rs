//! ELF: the library's GOT entries for the C runtime's allocation, handle, thread and I/O
//! functions point at counting wrappers (plthook). Each wrapper calls the function the dynamic
//! linker would have bound, found with `dlsym(RTLD_DEFAULT)`: under lazy binding the GOT still
//! holds the resolver's stub, which would bind over the wrapper on its first call.
use super::fault::{self, Class};
use super::paged::{dup, paged, release, resize, size_of, zeroed};
use super::table::{route_object, wrappers, Bound, Entry, Routed};
use super::RouteError;
use crate::pageheap::{self, MIN_ALIGN};
use libc::{c_char, c_int, c_uint, c_void, mode_t, off_t, size_t, ssize_t};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

fn set_error(e: c_int) {
    if e != 0 {
        // SAFETY: the calling thread's errno.
        unsafe { *libc::__errno_location() = e };
    }
}

fn usable(p: *mut c_void) -> i64 {
    if p.is_null() {
        0
    } else {
        // SAFETY: p is a live block of the C allocator (the library got it from the wrappers).
        unsafe { libc::malloc_usable_size(p) as i64 }
    }
}

/// A block the allocator gave the library.
fn gained(p: *mut c_void) {
    if !p.is_null() {
        fault::held_add(usable(p), 1);
    }
}

/// A mapping the library made: a block of its own, whose bytes are not heap bytes.
fn mapped(p: *mut c_void) {
    if p != libc::MAP_FAILED {
        fault::held_add(0, 1);
    }
}

use libc::{EAGAIN, EIO, EMFILE, ENOMEM};
use std::ptr::null_mut as null;

// open and openat are variadic in C; on x86-64 and AArch64 the mode travels in the register
// of a third (fourth) fixed argument, which is read whether or not the caller set it.
wrappers! {
    "C" malloc(n: size_t) -> *mut c_void, Alloc(null(), ENOMEM) {
        if pageheap::enabled() {
            return paged(n, MIN_ALIGN);
        }
    } |r| { gained(r); };
    "C" calloc(n: size_t, size: size_t) -> *mut c_void, Alloc(null(), ENOMEM) {
        if pageheap::enabled() {
            return zeroed(n, size, || set_error(ENOMEM));
        }
    } |r| { gained(r); };
    "C" realloc(p: *mut c_void, n: size_t) -> *mut c_void, Alloc(null(), ENOMEM) {
        if let Some(q) = resize("realloc", p, n) {
            return q;
        }
        let old = usable(p);
    } |r| { fault::realloc_held(p, r, n, old, usable); };
    "C" free(p: *mut c_void) -> (), Never((), 0) {
        if p.is_null() {
            return;
        }
        if pageheap::enabled() {
            // SAFETY: the C runtime's free, for a block some other allocator gave the
            // library (strndup inside the C runtime, say).
            release("free", p, || unsafe { libc::free(p) });
            return;
        }
        fault::held_add(-usable(p), -1);
    } |r| {};
    "C" strdup(s: *const c_char) -> *mut c_char, Alloc(null(), ENOMEM) {
        if pageheap::enabled() {
            // SAFETY: strdup's contract: s is a NUL-terminated string.
            return unsafe { dup(s.cast()) }.cast();
        }
    } |r| { gained(r.cast()); };
    "C" posix_memalign(out: *mut *mut c_void, align: size_t, n: size_t) -> c_int, Alloc(ENOMEM, 0) {
        if pageheap::enabled() {
            if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<usize>()) {
                return libc::EINVAL;
            }
            let q = paged(n, align);
            if q.is_null() {
                return ENOMEM;
            }
            // SAFETY: posix_memalign's contract: out is writable.
            unsafe { *out = q };
            return 0;
        }
    } |r| {
        if r == 0 && !out.is_null() {
            // SAFETY: on success posix_memalign wrote the block to `out`.
            gained(unsafe { *out });
        }
    };
    "C" aligned_alloc(align: size_t, n: size_t) -> *mut c_void, Alloc(null(), ENOMEM) {
        if pageheap::enabled() {
            if !align.is_power_of_two() {
                set_error(libc::EINVAL);
                return null();
            }
            return paged(n, align);
        }
    } |r| { gained(r); };
    "C" malloc_usable_size(p: *mut c_void) -> size_t, Never(0, 0) {
        if pageheap::enabled() {
            if let Some(size) = size_of("malloc_usable_size", p) {
                return size;
            }
        }
    } |r| {};
    "C" open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" openat(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" openat64(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" pipe(fds: *mut c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" pipe2(fds: *mut c_int, flags: c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" socketpair(domain: c_int, kind: c_int, protocol: c_int, fds: *mut c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" dup(fd: c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" dup2(fd: c_int, to: c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" eventfd(initial: c_uint, flags: c_int) -> c_int, Handle(-1, EMFILE) {} |r| {};
    "C" pthread_create(t: *mut libc::pthread_t, attr: *const libc::pthread_attr_t, start: *mut c_void, arg: *mut c_void) -> c_int, Thread(EAGAIN, 0) {} |r| {};
    "C" mmap(addr: *mut c_void, n: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void, Never(null(), 0) {} |r| { mapped(r); };
    "C" mmap64(addr: *mut c_void, n: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void, Never(null(), 0) {} |r| { mapped(r); };
    "C" munmap(addr: *mut c_void, n: size_t) -> c_int, Never(0, 0) {} |r| {
        if r == 0 {
            fault::held_add(0, -1);
        }
    };
    "C" read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t, Io(-1, EIO) {} |r| {};
    "C" write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t, Io(-1, EIO) {} |r| {};
    "C" recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t, Io(-1, EIO) {} |r| {};
    "C" send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t, Io(-1, EIO) {} |r| {};
}

/// Routes the imports of the loaded library that holds `any_export`. Routing stays for the
/// life of the process: the library is never unloaded by the worker.
///
/// # Safety
///
/// `any_export` is an address inside a loaded library that stays loaded for the life of the
/// process: its import table is written, and its calls come back through the wrappers.
pub unsafe fn route(any_export: *const c_void) -> Result<Routed, RouteError> {
    // SAFETY: dladdr only reads the loader's tables; the name it gives lives as long as
    // the library stays loaded.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(any_export, &mut info) == 0 || info.dli_fname.is_null() {
            return Err(RouteError::NoModule(any_export as usize));
        }
        std::ffi::CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned()
    };
    // A library without a PLT (linked with -nostdlib, say) has no imports to route.
    let object = plthook::ObjectFile::open_file(&path);
    route_object(
        path,
        object,
        |e| {
            let cname = std::ffi::CString::new(e.name).expect("no NUL in a C name");
            // SAFETY: looks up a C runtime function by name in the default scope.
            let original = unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) };
            if original.is_null() {
                Bound::Absent
            } else {
                Bound::At(original as usize)
            }
        },
        |_, _| {},
    )
}
