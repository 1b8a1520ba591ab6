//! Windows memory and handle helpers: unmapped pages, readable-memory tests, sentinel
//! handles, the last error for out of memory, a heap-corruption exception.

use std::os::windows::io::AsRawHandle;
use std::sync::atomic::{AtomicU32, Ordering};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Diagnostics::Debug::ReadProcessMemory;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualAlloc, VirtualFree, VirtualQuery,
    FILE_MAP_ALL_ACCESS, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT,
    MEM_RELEASE, MEM_RESERVE, PAGE_GUARD, PAGE_NOACCESS, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    CreateSemaphoreW, GetCurrentProcess, ReleaseSemaphore, WaitForSingleObject,
};

/// Release C runtimes a library may use: their stdio descriptors, abort() and free() are
/// what the worker adjusts.
pub(crate) const C_RUNTIMES: [&str; 9] = [
    "msvcrt.dll",
    "ucrtbase.dll",
    "msvcr120.dll",
    "msvcr110.dll",
    "msvcr100.dll",
    "msvcr90.dll",
    "msvcr80.dll",
    "msvcr71.dll",
    "msvcr70.dll",
];

/// A NUL-terminated UTF-16 copy, as the W functions take.
pub(crate) fn wide(s: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

/// An address that was committed and then released by this process just now.
pub fn unmapped_page() -> usize {
    // SAFETY: a fresh allocation touches nothing that exists.
    let p = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            4096,
            MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE,
        )
    };
    if p.is_null() {
        return 0x0000_7FFF_DEAD_0000;
    }
    // SAFETY: the allocation just made, which nothing refers to; only its address is kept.
    unsafe { VirtualFree(p, 0, MEM_RELEASE) };
    p as usize
}

pub const KERNEL_HALF: usize = 0xFFFF_8000_0000_1000;
pub const NON_CANONICAL: usize = 0x0123_4567_89AB_CDE0;

/// Whether every page of the range is committed and readable, as the process's own view of its
/// memory says. Asked first because under Wine ReadProcessMemory reads a released page that
/// Wine keeps reserved.
fn readable(addr: usize, len: usize) -> bool {
    let end = addr.saturating_add(len);
    let mut at = addr;
    while at < end {
        // SAFETY: a plain C struct, for which all zeroes is a valid value.
        let mut mbi: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: VirtualQuery only describes the address space, into `mbi`.
        let got = unsafe { VirtualQuery(at as *const _, &mut mbi, std::mem::size_of_val(&mbi)) };
        let ok = got != 0
            && mbi.State == MEM_COMMIT
            && mbi.Protect != 0
            && mbi.Protect & (PAGE_NOACCESS | PAGE_GUARD) == 0;
        if !ok {
            return false;
        }
        at = (mbi.BaseAddress as usize).saturating_add(mbi.RegionSize.max(1));
    }
    true
}

/// Whether `len` bytes at `addr` can be read, asked of the kernel so that nothing faults.
pub fn copy_if_readable(addr: usize, out: &mut [u8]) -> bool {
    if !readable(addr, out.len()) {
        return false;
    }
    let mut n = 0usize;
    // SAFETY: the kernel checks the source range; the destination is our buffer.
    let ok = unsafe {
        ReadProcessMemory(
            GetCurrentProcess(),
            addr as *const _,
            out.as_mut_ptr().cast(),
            out.len(),
            &mut n,
        )
    };
    ok != 0 && n == out.len()
}

/// A harness-owned OS handle with an identity, to see whether a library closed it. A semaphore
/// whose count is unique to it: a closed handle value that the system hands out again belongs
/// to some other object, whose count will not match.
pub struct Sentinel {
    handle: HANDLE,
    count: i32,
}

// SAFETY: a kernel handle, usable from any thread.
unsafe impl Send for Sentinel {}

impl Sentinel {
    pub fn open() -> Option<Sentinel> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let count = 0x3EA7_0000 | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xFFFF) as i32;
        // SAFETY: an unnamed semaphore with default security.
        let handle =
            unsafe { CreateSemaphoreW(std::ptr::null(), count, i32::MAX, std::ptr::null()) };
        (!handle.is_null()).then_some(Sentinel { handle, count })
    }

    /// Still open and still our semaphore: raise the count by one, see the old count, take
    /// the one back.
    pub fn intact(&self) -> bool {
        let mut prev = 0i32;
        // SAFETY: on a stale value these calls fail or act on another semaphore, whose count
        // is restored by the wait straight after.
        unsafe {
            if ReleaseSemaphore(self.handle, 1, &mut prev) == 0 {
                return false;
            }
            WaitForSingleObject(self.handle, 0);
        }
        prev == self.count
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        // Close only what is still ours: a reused value belongs to someone else now.
        if self.intact() {
            // SAFETY: the handle is ours (checked just now).
            unsafe { CloseHandle(self.handle) };
        }
    }
}

/// Maps `len` bytes of `file` shared, read and write.
pub(super) fn map_shared(file: &std::fs::File, len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a section over a file the caller holds open, with default security and no name.
    let mapping = unsafe {
        CreateFileMappingW(
            file.as_raw_handle(),
            std::ptr::null(),
            PAGE_READWRITE,
            0,
            len as u32,
            std::ptr::null(),
        )
    };
    if mapping.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a view of the section just made.
    let view = unsafe { MapViewOfFile(mapping, FILE_MAP_ALL_ACCESS, 0, 0, len) };
    let err = std::io::Error::last_os_error();
    // SAFETY: the section's handle, this function's own; the view keeps the section alive.
    unsafe { CloseHandle(mapping) };
    if view.Value.is_null() {
        return Err(err);
    }
    Ok(view.Value.cast())
}

/// Undoes `map_shared`.
pub(super) fn unmap_shared(ptr: *mut u8, _len: usize) {
    // SAFETY: a view mapped by `map_shared`.
    unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: ptr.cast() }) };
}

/// Handles on Windows are limited by memory, not by a small table: never exhausted here.
pub fn descriptors_exhausted() -> bool {
    false
}

/// Out of memory, as Windows says it.
pub fn no_memory() {
    // SAFETY: the calling thread's last error.
    unsafe {
        windows_sys::Win32::Foundation::SetLastError(
            windows_sys::Win32::Foundation::ERROR_NOT_ENOUGH_MEMORY,
        )
    };
}

/// Ends the worker with STATUS_HEAP_CORRUPTION, as Windows's own heap checks do.
pub fn heap_misuse_exit() -> ! {
    const EXCEPTION_NONCONTINUABLE: u32 = 1;
    // SAFETY: raises a noncontinuable exception; nothing returns from it.
    unsafe {
        windows_sys::Win32::System::Diagnostics::Debug::RaiseException(
            windows_sys::Win32::Foundation::STATUS_HEAP_CORRUPTION as u32,
            EXCEPTION_NONCONTINUABLE,
            0,
            std::ptr::null(),
        )
    };
    std::process::abort()
}
