use std::os::windows::io::AsRawHandle;
use std::sync::atomic::{AtomicU32, Ordering};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Diagnostics::Debug::ReadProcessMemory;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualAlloc, VirtualFree,
    FILE_MAP_ALL_ACCESS, MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT, MEM_RELEASE, MEM_RESERVE,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    CreateSemaphoreW, GetCurrentProcess, ReleaseSemaphore, WaitForSingleObject,
};

/// An address that was committed and then released by this process just now.
pub fn unmapped_page() -> usize {
    // SAFETY: a fresh allocation, released straight away; only its address is kept.
    unsafe {
        let p = VirtualAlloc(
            std::ptr::null(),
            4096,
            MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE,
        );
        if p.is_null() {
            return 0x0000_7FFF_DEAD_0000;
        }
        VirtualFree(p, 0, MEM_RELEASE);
        p as usize
    }
}

pub const KERNEL_HALF: usize = 0xFFFF_8000_0000_1000;
pub const NON_CANONICAL: usize = 0x0123_4567_89AB_CDE0;

/// Whether `len` bytes at `addr` can be read, asked of the kernel so that nothing faults.
pub fn copy_if_readable(addr: usize, out: &mut [u8]) -> bool {
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

/// A page of memory shared between the supervisor and its worker through a file.
pub struct SharedPage {
    ptr: *mut u8,
}

// SAFETY: the page is only accessed through atomics.
unsafe impl Send for SharedPage {}
unsafe impl Sync for SharedPage {}

impl SharedPage {
    pub const SIZE: usize = 4096;

    /// Maps `file`, which must be at least `SIZE` bytes long.
    pub fn map(file: &std::fs::File) -> std::io::Result<SharedPage> {
        // SAFETY: a view of a file we hold open; the mapping handle can close once the view
        // exists (the view keeps the section alive).
        unsafe {
            let mapping = CreateFileMappingW(
                file.as_raw_handle(),
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                Self::SIZE as u32,
                std::ptr::null(),
            );
            if mapping.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let view = MapViewOfFile(mapping, FILE_MAP_ALL_ACCESS, 0, 0, Self::SIZE);
            let err = std::io::Error::last_os_error();
            CloseHandle(mapping);
            if view.Value.is_null() {
                return Err(err);
            }
            Ok(SharedPage {
                ptr: view.Value.cast(),
            })
        }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: mapped in `map`.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.cast(),
            })
        };
    }
}
