//! Linux readings: /proc for handles, threads and mapped bytes, mallinfo2 for the heap, the
//! thread's clock from its schedstat. Reads only; calls nothing of the library.

use super::reading::{Probe, ThreadClock};

/// Environment for worker processes that makes the heap reading exact: glibc counts chunks
/// parked in its per-thread cache (up to 7 per size) as in use, which read as a slow "leak"
/// that stops once a cache bin is full. With the cache off, a freed chunk is free.
pub fn worker_env() -> Vec<(String, String)> {
    const TCACHE_OFF: &str = "glibc.malloc.tcache_count=0";
    let tunables = match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() => format!("{t}:{TCACHE_OFF}"),
        _ => TCACHE_OFF.to_string(),
    };
    vec![("GLIBC_TUNABLES".to_string(), tunables)]
}

fn count_dir(path: &str) -> i64 {
    std::fs::read_dir(path)
        .map(|d| d.count() as i64)
        .unwrap_or(-1)
}

/// Threads listed for this process.
pub fn threads() -> i64 {
    count_dir("/proc/self/task")
}

/// Open fds (less the one used to list them), threads, heap bytes in use and mapped bytes.
pub fn read() -> Probe {
    let handles = count_dir("/proc/self/fd") - 1;
    let threads = threads();
    // The page heap's blocks are heap, not mappings: its guards and quarantine are its own
    // cost, not the library's.
    let paged = crate::pageheap::usage();
    Probe {
        handles,
        threads,
        heap_bytes: heap_in_use() + paged.live_bytes as i64,
        mapped_bytes: mapped() - paged.mapped as i64,
        resident_bytes: resident(),
        clock: clock(),
    }
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(id, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// The calling thread's clock. Linux's schedstat gives run time and run-queue wait; elsewhere
/// the thread's CPU clock, with no queue time.
fn clock() -> ThreadClock {
    let at_ns = clock_ns(libc::CLOCK_MONOTONIC);
    let sched = std::fs::read_to_string("/proc/thread-self/schedstat").ok();
    let mut fields = sched.iter().flat_map(|s| s.split_whitespace());
    let mut next = || fields.next().and_then(|f| f.parse::<i64>().ok());
    match (next(), next()) {
        (Some(cpu_ns), Some(queued_ns)) => ThreadClock {
            at_ns,
            cpu_ns,
            queued_ns,
        },
        _ => ThreadClock {
            at_ns,
            cpu_ns: clock_ns(libc::CLOCK_THREAD_CPUTIME_ID),
            queued_ns: 0,
        },
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> i64 {
    // SAFETY: mallinfo2 only reads allocator statistics. Large blocks are mmapped outside the
    // heap (hblkhd), so both parts count.
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as i64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> i64 {
    -1
}

/// Field `i` of /proc/self/statm, in bytes (0: the size of the mappings, 1: resident).
fn statm(i: usize) -> i64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(i)?.parse::<i64>().ok())
        .map(|p| p * page)
        .unwrap_or(-1)
}

fn mapped() -> i64 {
    statm(0)
}

fn resident() -> i64 {
    statm(1)
}
