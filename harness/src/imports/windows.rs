//! PE: the library's import address table entries for the heap, the C runtime's allocator,
//! handle creation, threads and file I/O point at counting wrappers (plthook). The loader
//! binds a PE's imports when it loads it, so the entry each wrapper replaces is the function
//! it calls.
use super::fault::{self, Class};
use super::paged::{dup, paged, release, resize, size_of, zeroed};
use super::table::{route_object, wrappers, Bound, Entry, Routed};
use super::RouteError;
use crate::pageheap::{self, MIN_ALIGN};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{SetLastError, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleFileNameW, GetModuleHandleExW, GetProcAddress, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
    GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
};
use windows_sys::Win32::System::Memory::HeapSize;

const ERROR_NOT_ENOUGH_MEMORY: u32 = 8;
const ERROR_TOO_MANY_OPEN_FILES: u32 = 4;
const ERROR_IO_DEVICE: u32 = 1117;
const HEAP_REALLOC_IN_PLACE_ONLY: u32 = 0x10;

fn set_error(e: u32) {
    if e != 0 {
        // SAFETY: the calling thread's last error.
        unsafe { SetLastError(e) };
    }
}

/// The C runtime's `_msize`, for counting its blocks with the page heap off.
static MSIZE: AtomicUsize = AtomicUsize::new(0);

fn crt_size(p: *mut c_void) -> i64 {
    let f = MSIZE.load(Ordering::Relaxed);
    if p.is_null() || f == 0 {
        return 0;
    }
    // SAFETY: `_msize` of the runtime that gave the library the block.
    let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { std::mem::transmute(f) };
    // SAFETY: a block that runtime handed out, still live (the caller frees it next).
    let n = unsafe { f(p) };
    if n == usize::MAX {
        0
    } else {
        n as i64
    }
}

fn heap_size(heap: HANDLE, p: *const c_void) -> i64 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: HeapSize only reads the heap's metadata for a block the library holds.
    let n = unsafe { HeapSize(heap, 0, p) };
    if n == usize::MAX {
        0
    } else {
        n as i64
    }
}

fn gained(bytes: i64) {
    if bytes > 0 {
        fault::held_add(bytes, 1);
    }
}

use std::ptr::null_mut as null;
type Sa = *const c_void;

wrappers! {
    "system" HeapAlloc(heap: HANDLE, flags: u32, n: usize) -> *mut c_void, Alloc(null(), ERROR_NOT_ENOUGH_MEMORY) {
        // Fresh pages are zeroed, as HEAP_ZERO_MEMORY asks.
        if pageheap::enabled() {
            return paged(n, MIN_ALIGN);
        }
    } |r| { gained(heap_size(heap, r)); };
    "system" HeapReAlloc(heap: HANDLE, flags: u32, p: *mut c_void, n: usize) -> *mut c_void, Alloc(null(), ERROR_NOT_ENOUGH_MEMORY) {
        if pageheap::enabled() {
            if flags & HEAP_REALLOC_IN_PLACE_ONLY != 0 && size_of("HeapReAlloc", p).is_some() {
                // A block on pages of its own cannot grow or shrink where it is.
                crate::sys::no_memory();
                return null();
            }
            if let Some(q) = resize("HeapReAlloc", p, n) {
                return q;
            }
        }
        let old = heap_size(heap, p);
    } |r| {
        if !pageheap::enabled() && !r.is_null() {
            fault::held_add(heap_size(heap, r) - old, 0);
        }
    };
    "system" HeapFree(heap: HANDLE, flags: u32, p: *mut c_void) -> BOOL, Never(0, 0) {
        if pageheap::enabled() && !p.is_null() {
            let mut foreign = false;
            release("HeapFree", p, || foreign = true);
            if !foreign {
                return 1;
            }
        }
        let size = if pageheap::enabled() { 0 } else { heap_size(heap, p) };
    } |r| {
        if r != 0 && size > 0 {
            fault::held_add(-size, -1);
        }
    };
    "system" HeapSize(heap: HANDLE, flags: u32, p: *const c_void) -> usize, Never(0, 0) {
        if pageheap::enabled() {
            if let Some(size) = size_of("HeapSize", p as *mut c_void) {
                return size;
            }
        }
    } |r| {};
    "C" malloc(n: usize) -> *mut c_void, Alloc(null(), 0) {
        if pageheap::enabled() {
            return paged(n, MIN_ALIGN);
        }
    } |r| { gained(crt_size(r)); };
    "C" calloc(n: usize, size: usize) -> *mut c_void, Alloc(null(), 0) {
        if pageheap::enabled() {
            return zeroed(n, size, || {});
        }
    } |r| { gained(crt_size(r)); };
    "C" realloc(p: *mut c_void, n: usize) -> *mut c_void, Alloc(null(), 0) {
        if let Some(q) = resize("realloc", p, n) {
            return q;
        }
        let old = crt_size(p);
    } |r| { fault::realloc_held(p, r, n, old, crt_size); };
    "C" free(p: *mut c_void) -> (), Never((), 0) {
        if p.is_null() {
            return;
        }
        if pageheap::enabled() {
            let mut foreign = false;
            release("free", p, || foreign = true);
            if !foreign {
                return;
            }
        } else {
            fault::held_add(-crt_size(p), -1);
        }
    } |r| {};
    "C" _strdup(s: *const u8) -> *mut c_void, Alloc(null(), 0) {
        if pageheap::enabled() {
            // SAFETY: _strdup's contract: s is a NUL-terminated string.
            return unsafe { dup(s) };
        }
    } |r| { gained(crt_size(r)); };
    "C" strdup(s: *const u8) -> *mut c_void, Alloc(null(), 0) {
        if pageheap::enabled() {
            // SAFETY: strdup's contract: s is a NUL-terminated string.
            return unsafe { dup(s) };
        }
    } |r| { gained(crt_size(r)); };
    "C" _msize(p: *mut c_void) -> usize, Never(0, 0) {
        if pageheap::enabled() {
            if let Some(size) = size_of("_msize", p) {
                return size;
            }
        }
    } |r| {};
    "system" CreateFileW(name: *const u16, access: u32, share: u32, sa: Sa, disposition: u32, flags: u32, template: HANDLE) -> HANDLE, Handle(INVALID_HANDLE_VALUE, ERROR_TOO_MANY_OPEN_FILES) {} |r| {};
    "system" CreateFileA(name: *const u8, access: u32, share: u32, sa: Sa, disposition: u32, flags: u32, template: HANDLE) -> HANDLE, Handle(INVALID_HANDLE_VALUE, ERROR_TOO_MANY_OPEN_FILES) {} |r| {};
    "system" CreatePipe(read: *mut HANDLE, write: *mut HANDLE, sa: Sa, size: u32) -> BOOL, Handle(0, ERROR_TOO_MANY_OPEN_FILES) {} |r| {};
    "system" CreateEventW(sa: Sa, manual: BOOL, initial: BOOL, name: *const u16) -> HANDLE, Handle(null(), ERROR_TOO_MANY_OPEN_FILES) {} |r| {};
    "system" CreateThread(sa: Sa, stack: usize, start: *const c_void, param: *const c_void, flags: u32, id: *mut u32) -> HANDLE, Thread(null(), ERROR_NOT_ENOUGH_MEMORY) {} |r| {};
    "system" DuplicateHandle(from: HANDLE, h: HANDLE, to: HANDLE, out: *mut HANDLE, access: u32, inherit: BOOL, options: u32) -> BOOL, Handle(0, ERROR_TOO_MANY_OPEN_FILES) {} |r| {};
    "system" ReadFile(h: HANDLE, buf: *mut c_void, n: u32, done: *mut u32, overlapped: *mut c_void) -> BOOL, Io(0, ERROR_IO_DEVICE) {} |r| {};
    "system" WriteFile(h: HANDLE, buf: *const c_void, n: u32, done: *mut u32, overlapped: *mut c_void) -> BOOL, Io(0, ERROR_IO_DEVICE) {} |r| {};
}

/// The module holding `addr`, without changing its reference count.
pub fn module_of(addr: *const c_void) -> Option<*mut c_void> {
    let mut m = std::ptr::null_mut();
    // SAFETY: looks up the module containing an address.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            addr.cast(),
            &mut m,
        )
    };
    (ok != 0).then_some(m)
}

fn module_path(module: *mut c_void) -> String {
    let mut buf = [0u16; 1024];
    // SAFETY: fills at most buf.len() units.
    let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) } as usize;
    String::from_utf16_lossy(&buf[..n.min(buf.len())])
}

/// `_msize` of the C runtime that holds the library's `malloc`.
fn find_msize(malloc: usize) {
    let Some(crt) = module_of(malloc as *const c_void) else {
        return;
    };
    // SAFETY: looks up an export by name in a loaded module.
    if let Some(f) = unsafe { GetProcAddress(crt, c"_msize".as_ptr().cast()) } {
        MSIZE.store(f as usize, Ordering::Relaxed);
    }
}

/// Routes the imports of the loaded library that holds `any_export`. Routing stays for the
/// life of the process: the library is never unloaded by the worker.
///
/// # Safety
///
/// `any_export` is an address inside a loaded library that stays loaded for the life of the
/// process: its import table is written, and its calls come back through the wrappers.
pub unsafe fn route(any_export: *const c_void) -> Result<Routed, RouteError> {
    let module = module_of(any_export).ok_or(RouteError::NoModule(any_export as usize))?;
    let path = module_path(module);
    // SAFETY: the module is loaded and stays loaded.
    let object = unsafe { plthook::ObjectFile::open_by_handle(module) };
    route_object(
        path,
        object,
        |_| Bound::InEntry,
        |e, original| {
            if e.name == "malloc" {
                find_msize(original);
            }
        },
    )
}
