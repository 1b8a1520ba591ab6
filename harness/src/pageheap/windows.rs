//! Pages for the page heap (VirtualAlloc), and naming a fault on them: a vectored exception
//! handler that says which block an access violation touched and lets the exception go on
//! to end the process as it would have.
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use windows_sys::Win32::Foundation::{EXCEPTION_ACCESS_VIOLATION, HANDLE};
use windows_sys::Win32::Storage::FileSystem::WriteFile;
use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
use windows_sys::Win32::System::Diagnostics::Debug::{
    AddVectoredExceptionHandler, EXCEPTION_POINTERS,
};
use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, VirtualProtect, MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE,
    PAGE_NOACCESS, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

pub const AVAILABLE: bool = true;

pub fn page() -> usize {
    // SAFETY: fills a correctly sized struct.
    let size = unsafe {
        let mut info: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut info);
        info.dwPageSize as usize
    };
    if size > 0 {
        size
    } else {
        4096
    }
}

/// Fresh zeroed, readable and writable pages, or None when the system has none.
pub fn map(len: usize) -> Option<usize> {
    // SAFETY: a new private allocation touches nothing that exists.
    let p = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_RESERVE | MEM_COMMIT,
            PAGE_READWRITE,
        )
    };
    (!p.is_null()).then_some(p as usize)
}

/// Makes pages of a block inaccessible: its guard.
pub fn seal(addr: usize, len: usize) {
    let mut old = 0u32;
    // SAFETY: the pages belong to an allocation of the page heap.
    unsafe { VirtualProtect(addr as *const c_void, len, PAGE_NOACCESS, &mut old) };
}

/// A freed block: its pages are decommitted, giving their memory back, and committed again
/// inaccessible, so a use after free faults and the quarantine counts as committed the same
/// way on Windows and Wine (the probe takes the page heap's mappings out again).
pub fn retire(addr: usize, len: usize) {
    // SAFETY: decommits and recommits pages of an allocation of the page heap.
    unsafe {
        VirtualFree(addr as *mut c_void, len, MEM_DECOMMIT);
        VirtualAlloc(addr as *const c_void, len, MEM_COMMIT, PAGE_NOACCESS);
    }
}

/// Opens a retired allocation's first `len` bytes again, readable and writable; `retire`
/// recommitted them zero-filled.
pub fn reopen(addr: usize, len: usize) {
    let mut old = 0u32;
    // SAFETY: the pages belong to a spare allocation of the page heap that nothing refers to.
    unsafe { VirtualProtect(addr as *const c_void, len, PAGE_READWRITE, &mut old) };
}

pub fn unmap(addr: usize, _len: usize) {
    // SAFETY: the allocation belongs to the page heap and nothing refers to it any more;
    // MEM_RELEASE takes its base and a length of 0.
    unsafe { VirtualFree(addr as *mut c_void, 0, MEM_RELEASE) };
}

static NAMED: AtomicBool = AtomicBool::new(false);

unsafe extern "system" fn on_fault(info: *mut EXCEPTION_POINTERS) -> i32 {
    const CONTINUE_SEARCH: i32 = 0;
    // SAFETY: the system passes a valid record to a vectored handler.
    let record = unsafe { &*(*info).ExceptionRecord };
    if record.ExceptionCode != EXCEPTION_ACCESS_VIOLATION || record.NumberParameters < 2 {
        return CONTINUE_SEARCH;
    }
    let what = match record.ExceptionInformation[0] {
        0 => "read of",
        1 => "write to",
        _ => "access to",
    };
    let mut line = [0u8; 256];
    let n = DESCRIBE.get().map_or(0, |describe| {
        describe(record.ExceptionInformation[1], what, &mut line)
    });
    // The first fault only: a library that handles its own faults is not named twice.
    if n > 0 && !NAMED.swap(true, Ordering::Relaxed) {
        let bytes = &line[..n];
        let mut written = 0u32;
        // SAFETY: writes one line to the supervisor's stderr pipe.
        unsafe {
            let err: HANDLE = GetStdHandle(STD_ERROR_HANDLE);
            WriteFile(
                err,
                bytes.as_ptr(),
                bytes.len() as u32,
                &mut written,
                std::ptr::null_mut(),
            );
        }
    }
    CONTINUE_SEARCH
}

/// What the fault handler asks the page heap: the words for a fault at an address and the
/// kind of access, written into the buffer (their length; 0 when it is none of its pages).
pub type Describe = fn(usize, &str, &mut [u8]) -> usize;

static DESCRIBE: OnceLock<Describe> = OnceLock::new();

/// Registers the handler first in line, once; it writes what `describe` says of an access
/// violation, then lets the exception go on.
pub fn name_faults(describe: Describe) {
    let _ = DESCRIBE.set(describe);
    // SAFETY: registers a handler that only reads the page heap's book and writes one line.
    unsafe { AddVectoredExceptionHandler(1, Some(on_fault)) };
}
