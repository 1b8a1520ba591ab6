//! Windows readings: the process's handle count, a thread snapshot, a heap walk and the
//! thread's times. Reads only; calls nothing of the library.

use super::reading::{Probe, ThreadClock};
use std::sync::atomic::{AtomicUsize, Ordering};
use windows_sys::Win32::Foundation::{
    CloseHandle, GetHandleInformation, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Memory::{
    GetProcessHeaps, HeapLock, HeapUnlock, HeapWalk, PROCESS_HEAP_ENTRY,
};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetCurrentThread, GetProcessHandleCount, GetThreadTimes,
};

/// `PROCESS_HEAP_ENTRY_BUSY`: an allocated block.
const ENTRY_BUSY: u16 = 4;

/// Nothing to set: Windows heaps keep no per-thread cache that reads as use.
pub fn worker_env() -> Vec<(String, String)> {
    Vec::new()
}

#[link(name = "ntdll")]
extern "system" {
    // Documented in the WDK (ntddk.h); present since Vista and in Wine.
    fn NtGetNextThread(
        process: HANDLE,
        thread: HANDLE,
        access: u32,
        attributes: u32,
        flags: u32,
        next: *mut HANDLE,
    ) -> i32;
}

const THREAD_QUERY_LIMITED_INFORMATION: u32 = 0x0800;

/// Threads of this process, walked with NtGetNextThread: a few system calls, where a Toolhelp
/// snapshot lists every thread of the system.
pub fn threads() -> i64 {
    let mut n = 0i64;
    let mut current: HANDLE = std::ptr::null_mut();
    loop {
        let mut next: HANDLE = std::ptr::null_mut();
        // SAFETY: each handle returned is closed once the walk has moved past it.
        let status = unsafe {
            NtGetNextThread(
                GetCurrentProcess(),
                current,
                THREAD_QUERY_LIMITED_INFORMATION,
                0,
                0,
                &mut next,
            )
        };
        if !current.is_null() {
            // SAFETY: a handle from the walk.
            unsafe { CloseHandle(current) };
        }
        if status < 0 {
            // Not even this thread was found: the call is missing, ask Toolhelp instead.
            return if n == 0 { snapshot_threads() } else { n };
        }
        n += 1;
        current = next;
    }
}

fn snapshot_threads() -> i64 {
    // SAFETY: takes a snapshot of the system's threads; it only allocates a handle.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return -1;
    }
    // SAFETY: no arguments; reads this process's id.
    let me = unsafe { GetCurrentProcessId() };
    // SAFETY: a plain C struct, for which all zeroes is a valid value.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut n = 0;
    // SAFETY: the snapshot above, walked with an entry whose size is set as the walk asks.
    let mut more = unsafe { Thread32First(snap, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == me {
            n += 1;
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(snap, &mut entry) } != 0;
    }
    // SAFETY: the snapshot's handle, this function's own.
    unsafe { CloseHandle(snap) };
    n
}

/// Highest handle value ever seen live by the scan.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// Live handles. GetProcessHandleCount answers 0 under Wine 8; then the handle table is probed
/// value by value with GetHandleInformation. The scan always reaches the highest value ever
/// seen live, so holes left by closed handles cannot end it early; past that, new handles are
/// handed out next to each other, so a short run of unused values means the table has ended.
fn handles() -> i64 {
    let mut n = 0u32;
    // SAFETY: writes one u32.
    if unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut n) } != 0 && n > 0 {
        return n as i64;
    }
    const END_RUN: usize = 32;
    let high = HIGH_WATER.load(Ordering::Relaxed);
    let (mut live, mut misses, mut value, mut top) = (0i64, 0usize, 4usize, high);
    while value <= high || misses < END_RUN {
        let mut flags = 0u32;
        // SAFETY: only asks about the value; an unused one fails with an error code.
        if unsafe { GetHandleInformation(value as HANDLE, &mut flags) } != 0 {
            live += 1;
            misses = 0;
            top = top.max(value);
        } else {
            misses += 1;
        }
        value += 4;
    }
    HIGH_WATER.fetch_max(top, Ordering::Relaxed);
    live
}

/// Bytes in allocated blocks across all of the process's heaps (the C runtime's included).
fn heap_in_use() -> i64 {
    let mut heaps: Vec<HANDLE> = vec![std::ptr::null_mut(); 64];
    // SAFETY: the buffer holds `len` handles; a larger count asks for a larger buffer.
    let n = unsafe { GetProcessHeaps(heaps.len() as u32, heaps.as_mut_ptr()) } as usize;
    if n > heaps.len() {
        heaps.resize(n, std::ptr::null_mut());
        // SAFETY: as above.
        let again = unsafe { GetProcessHeaps(heaps.len() as u32, heaps.as_mut_ptr()) } as usize;
        heaps.truncate(again.min(heaps.len()));
    } else {
        heaps.truncate(n);
    }
    let mut total = 0i64;
    for heap in heaps {
        // SAFETY: a heap of this process, from GetProcessHeaps.
        if unsafe { HeapLock(heap) } == 0 {
            continue;
        }
        // SAFETY: a plain C struct; all zeroes starts a walk, as HeapWalk asks.
        let mut entry: PROCESS_HEAP_ENTRY = unsafe { std::mem::zeroed() };
        // SAFETY: the heap is locked while walked, and `entry` is only advanced by the walk.
        while unsafe { HeapWalk(heap, &mut entry) } != 0 {
            if entry.wFlags & ENTRY_BUSY != 0 {
                total += entry.cbData as i64;
            }
        }
        // SAFETY: the lock taken above.
        unsafe { HeapUnlock(heap) };
    }
    total
}

/// Private committed bytes.
fn mapped() -> i64 {
    // SAFETY: a correctly sized counters struct.
    unsafe {
        let mut pmc: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        pmc.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        if K32GetProcessMemoryInfo(GetCurrentProcess(), &mut pmc, pmc.cb) == 0 {
            return -1;
        }
        pmc.PagefileUsage as i64
    }
}

/// Open handles, threads, heap bytes in use and mapped bytes.
pub fn read() -> Probe {
    // The page heap's blocks are heap, not mappings: its guards and quarantine are its own
    // cost, not the library's.
    let paged = crate::pageheap::usage();
    Probe {
        handles: handles(),
        threads: threads(),
        heap_bytes: heap_in_use() + paged.live_bytes as i64,
        mapped_bytes: mapped() - paged.mapped as i64,
        resident_bytes: -1,
        clock: clock(),
    }
}

/// The calling thread's clock: its kernel and user time; Windows does not say how long a
/// thread waited for a core.
fn clock() -> ThreadClock {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let at_ns = BASE
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as i64;
    let zero = windows_sys::Win32::Foundation::FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: GetCurrentThread is a pseudo-handle; the four FILETIMEs are ours to write.
    let ok = unsafe {
        GetThreadTimes(
            GetCurrentThread(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    let ticks = |f: windows_sys::Win32::Foundation::FILETIME| {
        ((f.dwHighDateTime as i64) << 32 | f.dwLowDateTime as i64) * 100
    };
    ThreadClock {
        at_ns,
        cpu_ns: if ok != 0 {
            ticks(kernel) + ticks(user)
        } else {
            0
        },
        queued_ns: 0,
    }
}
