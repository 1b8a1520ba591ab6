//! The platform layer measured against what this test does to its own process: the probes
//! must see handles, threads and heap bytes come and go, and the memory helpers must tell
//! readable from unreadable memory. Runs on Linux under `cargo test` and on Windows (in CI
//! under Wine, from .ci/wine). One test, so that no other test's thread moves the counts.

use ntdsbcli_harness::{probe, sys};
use std::time::{Duration, Instant};

/// Polls until `f` gives `want` (a thread that has been joined may take a moment to leave the
/// OS's lists), at most a second; returns the last reading.
fn settle(want: i64, f: impl Fn() -> i64) -> i64 {
    let start = Instant::now();
    loop {
        let v = f();
        if v == want || start.elapsed() > Duration::from_secs(1) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn probes_and_memory_helpers() {
    // Handles: eight open files are eight more, and closing them gives them back.
    let exe = std::env::current_exe().unwrap();
    let before = probe::read();
    assert!(before.handles > 0, "no handle count: {before:?}");
    let files: Vec<_> = (0..8).map(|_| std::fs::File::open(&exe).unwrap()).collect();
    assert_eq!(probe::read().handles - before.handles, 8);
    drop(files);
    assert_eq!(probe::read().handles, before.handles);

    // Threads: three parked threads are three more; joined, they are gone.
    let t0 = probe::threads();
    assert!(t0 >= 1, "no thread count: {t0}");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let _ = rx.lock().unwrap().recv();
            })
        })
        .collect();
    assert_eq!(settle(t0 + 3, probe::threads), t0 + 3);
    drop(tx);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(settle(t0, probe::threads), t0);

    // Heap: a 100,000-byte block is seen, to within the allocator's bookkeeping.
    let h0 = probe::read().heap_bytes;
    assert!(h0 > 0, "no heap reading");
    let block = std::hint::black_box(vec![7u8; 100_000]);
    let grown = probe::read().heap_bytes - h0;
    assert!(
        (100_000..100_000 + 4096).contains(&grown),
        "a 100,000-byte block read as {grown} bytes"
    );
    drop(block);
    let back = probe::read().heap_bytes - h0;
    assert!(
        back.abs() < 4096,
        "freed, the heap still reads {back} bytes more"
    );

    // Memory helpers: our own buffer is readable; a released page and the kernel half are not.
    let mine = [0x5Au8; 64];
    let mut out = [0u8; 64];
    assert!(sys::copy_if_readable(mine.as_ptr() as usize, &mut out));
    assert_eq!(out, mine);
    assert!(!sys::copy_if_readable(sys::unmapped_page(), &mut out));
    assert!(!sys::copy_if_readable(sys::KERNEL_HALF, &mut out));

    // A sentinel is intact while nobody touches it.
    let s = sys::Sentinel::open().expect("a sentinel");
    assert!(s.intact());
}
