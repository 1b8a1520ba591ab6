//! Correct libraries designed differently from the reference (fixtures/c DESIGN_* variants and
//! the C++ library of fixtures/cpp). Each test first proves that the fixture really has the
//! property it stands for, loading it in a child process of its own (thread and fd counts of a
//! test process change as other tests run); then the verifier must call it conformant with
//! exit 0. A verifier that blames any of them has mistaken one design for the contract.

mod common;

use common::assert_line;

use libloading::{Library, Symbol};
use std::ffi::c_void;
use std::path::Path;
use std::process::Command;

type Hbc = *mut c_void;
type PrepareA = unsafe extern "C" fn(
    *const std::ffi::c_char,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> i32;
type EndFn = unsafe extern "C" fn(Hbc) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// Set in the child process that proves one fixture's property.
const CHILD: &str = "NTDSBCLI_AWKWARD_PROPERTY";

/// Runs `check` in a child process that runs this one test alone, and says whether the
/// caller is the parent (which then goes on to verify the fixture).
fn proven(check: impl FnOnce()) -> bool {
    if std::env::var_os(CHILD).is_some() {
        check();
        return false;
    }
    common::pass_alone(&[(CHILD, "1".as_ref())]);
    true
}

/// The fixture loaded in this process, with the three calls the property tests need. It is
/// never unloaded: pool threads and thread-local destructors run its code.
struct Loaded {
    lib: &'static Library,
}

impl Loaded {
    fn new(path: &Path) -> Loaded {
        // SAFETY: the fixtures are correct libraries with no load-time side effects.
        let lib = unsafe { Library::new(path) }.expect("the fixture loads");
        Loaded {
            lib: Box::leak(Box::new(lib)),
        }
    }

    /// A Prepare with backup type `bt`: (rc, handle).
    fn prepare_type(&self, bt: u32) -> (i32, usize) {
        // SAFETY: a fixture loaded for the life of the test, called with its exports' C
        // signatures and live arguments.
        unsafe {
            let f: Symbol<PrepareA> = self.lib.get(b"DsBackupPrepareA").unwrap();
            let (mut tok, mut cb, mut h): (*mut c_void, u32, Hbc) =
                (std::ptr::null_mut(), 0, std::ptr::null_mut());
            let rc = f(c"\\\\localhost".as_ptr(), 0, bt, &mut tok, &mut cb, &mut h);
            if !tok.is_null() {
                let free: Symbol<FreeFn> = self.lib.get(b"DsBackupFree").unwrap();
                free(tok);
            }
            (rc, h as usize)
        }
    }

    fn prepare(&self) -> usize {
        let (rc, h) = self.prepare_type(1);
        assert_eq!(rc, 0, "a valid Prepare fails");
        h
    }

    fn end(&self, h: usize) -> i32 {
        // SAFETY: a fixture loaded for the life of the test, called with its exports' C
        // signatures and live arguments.
        unsafe {
            let f: Symbol<EndFn> = self.lib.get(b"DsBackupEnd").unwrap();
            f(h as Hbc)
        }
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits up to a second for this process to be back to `n` threads.
fn wait_for_threads(n: usize) {
    let t0 = std::time::Instant::now();
    while count("/proc/self/task") > n && t0.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether `addr` starts a mapping of this process.
fn mapping_starts_at(addr: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|l| usize::from_str_radix(l.split('-').next().unwrap_or(""), 16) == Ok(addr))
}

/// The verifier's default run (one seed) on the library: exit code and output.
fn verify(lib: &Path, seed: u64) -> (i32, String) {
    let out = Command::new(common::worker_exe())
        .args(["run", "--seed", &seed.to_string(), "--lib"])
        .arg(lib)
        // The debug build is slower: a time budget keeps the run short, every check runs.
        .args(["--sequence-budget-ms", "1500"])
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn assert_conformant(lib: &Path) -> String {
    let (code, out) = verify(lib, 1);
    assert_eq!(
        code,
        0,
        "{} is correct but was blamed:\n{out}",
        lib.display()
    );
    assert!(out.contains("verdict: conformant"), "{out}");
    out
}

/// Proves the fixture's property in a child process (`property` on the fixture loaded there),
/// then verifies it: the verifier's output in the parent, None in the child.
fn conformant_with(lib: &Path, property: impl FnOnce(&Loaded)) -> Option<String> {
    if !proven(|| property(&Loaded::new(lib))) {
        return None;
    }
    Some(assert_conformant(lib))
}

#[test]
fn index_handles_reuse_the_lowest_free_index() {
    let lib = common::c_design("INDEX");
    // Small integers 1 and 2 are live handles here: end.garbage replaces them and says so.
    let Some(out) = conformant_with(&lib, |l| {
        let (a, b) = (l.prepare(), l.prepare());
        assert_eq!((a, b), (1, 2));
        assert_eq!(l.end(a), 0);
        assert_eq!(l.prepare(), 1, "index 1 is reused at once");
        assert_eq!(l.end(1), 0);
        assert_eq!(l.end(2), 0);
    }) else {
        return;
    };
    assert_line(&out, "end.garbage", "pass", "");
    let (code, report) = common::json_run(&lib, "end.garbage");
    assert_eq!(code, 0);
    assert!(
        report.contains("small integer 0x1 is a live handle of this library; used 0x2"),
        "{report}"
    );
}

#[test]
fn pointer_handles_come_back_from_the_allocator() {
    let lib = common::c_design("POINTER");
    conformant_with(&lib, |l| {
        let a = l.prepare();
        assert!(
            a > 0x10000 && a.is_multiple_of(8),
            "a heap address: 0x{a:X}"
        );
        assert_eq!(l.end(a), 0);
        let b = l.prepare();
        assert_eq!(a, b, "the next Prepare gets the same address");
        assert_eq!(l.end(b), 0);
        assert_eq!(l.end(b), 87);
    });
}

#[test]
fn encoded_handles_are_a_counter_xor_a_secret() {
    let lib = common::c_design("ENCODED");
    conformant_with(&lib, |l| {
        let (a, b) = (l.prepare(), l.prepare());
        assert_eq!(a ^ b, 1 ^ 2, "consecutive counters under one secret");
        assert!(a > 0xFFFF_FFFF, "no small value: 0x{a:X}");
        assert_eq!(l.end(a), 0);
        assert_eq!(l.end(b), 0);
    });
}

#[test]
fn high_handles_start_at_the_kernel_half() {
    let lib = common::c_design("HIGH");
    let Some(out) = conformant_with(&lib, |l| {
        let a = l.prepare();
        assert_eq!(
            a as u64, 0xFFFF_8000_0000_1000,
            "the garbage class kernel-half is live"
        );
        assert_eq!(l.end(a), 0);
    }) else {
        return;
    };
    assert_line(&out, "end.garbage", "pass", "");
}

#[test]
fn pool_threads_start_on_the_first_prepare_and_stay() {
    let lib = common::c_design("POOL");
    conformant_with(&lib, |l| {
        let before = count("/proc/self/task");
        let h = l.prepare();
        assert_eq!(count("/proc/self/task"), before + 2, "two pool threads");
        assert_eq!(l.end(h), 0);
        assert_eq!(count("/proc/self/task"), before + 2, "kept after End");
    });
}

#[test]
fn log_fd_opens_on_the_first_call_and_stays() {
    let lib = common::c_design("LOGFD");
    conformant_with(&lib, |l| {
        let before = count("/proc/self/fd");
        assert_eq!(l.end(0), 87);
        assert_eq!(count("/proc/self/fd"), before + 1, "the log descriptor");
        let h = l.prepare();
        assert_eq!(l.end(h), 0);
        assert_eq!(count("/proc/self/fd"), before + 1, "kept after End");
    });
}

#[test]
fn cached_contexts_are_reused() {
    let lib = common::c_design("CACHE");
    conformant_with(&lib, |l| {
        let hs: Vec<usize> = (0..3).map(|_| l.prepare()).collect();
        for &h in &hs {
            assert_eq!(l.end(h), 0);
        }
        // The cache hands back the last context freed first.
        assert_eq!(l.prepare(), hs[2]);
        assert_eq!(l.end(hs[2]), 0);
    });
}

#[test]
fn thread_local_state_is_freed_by_its_destructor() {
    let lib = common::c_design("TLS");
    conformant_with(&lib, |l| {
        let live: Symbol<unsafe extern "C" fn() -> i32> =
            // SAFETY: the fixture's counter, a C function of no arguments.
            unsafe { l.lib.get(b"ntdsb_tls_buffers") }.unwrap();
        // SAFETY: the fixture stays loaded for the test.
        let before = unsafe { live() };
        std::thread::scope(|s| {
            s.spawn(|| {
                let h = l.prepare();
                // SAFETY: the fixture stays loaded for the test.
                assert_eq!(unsafe { live() }, before + 1, "a buffer for this thread");
                assert_eq!(l.end(h), 0);
            });
        });
        // The scope ends when the closure has returned; the thread's TLS destructors run just
        // after, as it exits.
        let t0 = std::time::Instant::now();
        // SAFETY: the fixture stays loaded for the test.
        while unsafe { live() } != before && t0.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: the fixture stays loaded for the test.
        assert_eq!(unsafe { live() }, before, "the destructor freed it");
    });
}

#[test]
fn contexts_live_in_pages_of_their_own() {
    let lib = common::c_design("MMAP");
    conformant_with(&lib, |l| {
        let h = l.prepare();
        assert!(h.is_multiple_of(4096));
        assert!(mapping_starts_at(h), "0x{h:X} is a mapping of its own");
        assert_eq!(l.end(h), 0);
        assert!(!mapping_starts_at(h), "End unmapped it");
    });
}

#[test]
fn logs_only_is_accepted_with_a_warning() {
    let lib = common::c_design("LOGS_ONLY");
    let Some(out) = conformant_with(&lib, |l| {
        let (rc, h) = l.prepare_type(2);
        assert_eq!(rc, 0, "BACKUP_TYPE_LOGS_ONLY accepted");
        assert_eq!(l.end(h), 0);
    }) else {
        return;
    };
    assert_line(
        &out,
        "prepare.bad-args",
        "warn",
        "documented as not supported",
    );
}

#[test]
fn cpp_library_counts_handles_from_one() {
    let lib = common::cpp_library();
    conformant_with(&lib, |l| {
        let (a, b) = (l.prepare(), l.prepare());
        assert_eq!(b, a + 1, "consecutive handles");
        assert!(a < 0x10000, "small integers are live handles here");
        // A value that is no session: the lookup throws inside, and End returns 87.
        assert_eq!(l.end(0xDEAD_BEEF), 87);
        assert_eq!(l.end(a), 0);
        assert_eq!(l.end(b), 0);
    });
}

#[test]
fn slow_exiting_session_threads_are_no_leak() {
    // Each thread lingers 50 ms after End, as threads do on a loaded machine: the readings
    // must wait for them, and end.release must see what they give back on the way out.
    let lib = common::c_design("DETACHED_SLOW");
    conformant_with(&lib, |l| {
        let before = count("/proc/self/task");
        let h = l.prepare();
        assert_eq!(l.end(h), 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            count("/proc/self/task"),
            before + 1,
            "still there 20 ms after End"
        );
        wait_for_threads(before);
        assert_eq!(count("/proc/self/task"), before, "it exits in the end");
    });
}

#[test]
fn detached_session_threads_exit_just_after_end() {
    let lib = common::c_design("DETACHED");
    conformant_with(&lib, |l| {
        let before = count("/proc/self/task");
        let h = l.prepare();
        assert_eq!(count("/proc/self/task"), before + 1, "a thread per session");
        assert_eq!(l.end(h), 0);
        assert_eq!(
            count("/proc/self/task"),
            before + 1,
            "End does not wait for it"
        );
        wait_for_threads(before);
        assert_eq!(count("/proc/self/task"), before, "it exits a moment later");
    });
}

#[test]
fn one_session_at_a_time_refuses_the_second_with_backup_in_progress() {
    let lib = common::c_design("ONE_SESSION");
    let Some(out) = conformant_with(&lib, |l| {
        let a = l.prepare();
        let (rc, h) = l.prepare_type(1);
        assert_eq!(rc as u32, 0xC800_01F9, "hrBackupInProgress");
        assert_eq!(h, 0, "no handle for the refused Prepare");
        assert_eq!(l.end(a), 0);
        let b = l.prepare();
        assert_eq!(l.end(b), 0, "a new session once the first has ended");
    }) else {
        return;
    };
    assert_line(&out, "prepare.distinct", "skip", "one session at a time");
}

#[test]
fn end_that_does_io_reports_its_failure_and_still_releases() {
    let lib = common::c_design("END_IO");
    let Some(out) = conformant_with(&lib, |l| {
        let before = count("/proc/self/fd");
        let h = l.prepare();
        assert_eq!(count("/proc/self/fd"), before + 2, "a binding pipe");
        assert_eq!(l.end(h), 0);
        assert_eq!(count("/proc/self/fd"), before);
    }) else {
        return;
    };
    // End's own write and read are failed in turn: End returns 1722 then, and that is allowed.
    assert_line(&out, "fault.cleanup", "pass", "");
}

#[test]
fn restore_refused_by_an_online_server_is_skipped_not_blamed() {
    let lib = common::c_design("RESTORE_REFUSED");
    let Some(out) = conformant_with(
        &lib,
        // SAFETY: a fixture loaded for the life of the test, called with its exports' C
        // signatures and live arguments.
        |l| unsafe {
            type RestorePrepareA = unsafe extern "C" fn(
                *const std::ffi::c_char,
                u32,
                *mut c_void,
                u32,
                *mut Hbc,
            ) -> i32;
            let f: Symbol<RestorePrepareA> = l.lib.get(b"DsRestorePrepareA").unwrap();
            let mut h: Hbc = 1 as Hbc;
            let rc = f(
                c"\\\\localhost".as_ptr(),
                0,
                std::ptr::null_mut(),
                0,
                &mut h,
            );
            assert_eq!(rc, 5, "ERROR_ACCESS_DENIED");
            assert!(h.is_null(), "*phbc left NULL");
        },
    ) else {
        return;
    };
    assert_line(&out, "end.restore-handle", "skip", "");
    assert_line(&out, "end.release", "pass", "");
}

#[test]
fn names_listed_per_session_open_only_on_their_session() {
    let lib = common::c_design("SESSION_NAMES");
    conformant_with(
        &lib,
        // SAFETY: a fixture loaded for the life of the test, called with its exports' C
        // signatures and live arguments.
        |l| unsafe {
            type NamesA = unsafe extern "C" fn(Hbc, *mut *mut std::ffi::c_char, *mut u32) -> i32;
            type OpenA = unsafe extern "C" fn(Hbc, *const std::ffi::c_char, u32, *mut i64) -> i32;
            let names: Symbol<NamesA> = l.lib.get(b"DsBackupGetDatabaseNamesA").unwrap();
            let open: Symbol<OpenA> = l.lib.get(b"DsBackupOpenFileA").unwrap();
            let (a, b) = (l.prepare(), l.prepare());
            let (mut list, mut cb) = (std::ptr::null_mut(), 0u32);
            assert_eq!(names(a as Hbc, &mut list, &mut cb), 0);
            // The name after the BFT character.
            let name = list.add(1);
            let mut size = 0i64;
            assert_ne!(open(b as Hbc, name, 24576, &mut size), 0, "not b's name");
            assert_eq!(open(a as Hbc, name, 24576, &mut size), 0, "a's own name");
            assert_eq!(l.end(a), 0);
            assert_eq!(l.end(b), 0);
        },
    );
}

#[test]
fn a_helper_process_forked_per_session_is_reaped_at_end() {
    let lib = common::c_design("FORK_HELPER");
    conformant_with(&lib, |l| {
        // Children of every thread of this process (the forking thread is the test's).
        let children = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .map(|t| {
                    std::fs::read_to_string(t.path().join("children"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .count()
                })
                .sum::<usize>()
        };
        let before = children();
        let h = l.prepare();
        assert_eq!(children(), before + 1, "a helper per session");
        assert_eq!(l.end(h), 0);
        assert_eq!(children(), before, "reaped by End");
    });
}

#[test]
fn handles_equal_to_the_sessions_descriptor_number() {
    let lib = common::c_design("FD_HANDLE");
    conformant_with(&lib, |l| {
        let h = l.prepare();
        assert!(h < 1024, "a descriptor number: {h}");
        assert!(
            std::path::Path::new(&format!("/proc/self/fd/{h}")).exists(),
            "{h} is an open descriptor"
        );
        assert_eq!(l.end(h), 0);
        let again = l.prepare();
        assert_eq!(again, h, "the number comes back with the next session");
        assert_eq!(l.end(again), 0);
    });
}

#[test]
fn an_arena_of_its_own_instead_of_the_heap() {
    let lib = common::c_design("ARENA");
    conformant_with(&lib, |l| {
        let blocks: Symbol<unsafe extern "C" fn() -> i32> =
            // SAFETY: the fixture's counter, a C function of no arguments.
            unsafe { l.lib.get(b"ntdsb_arena_blocks") }.unwrap();
        // SAFETY: the fixture stays loaded for the test.
        let before = unsafe { blocks() };
        let h = l.prepare();
        // The session (the token was freed by prepare()).
        // SAFETY: the fixture stays loaded for the test.
        assert_eq!(unsafe { blocks() }, before + 1);
        assert_eq!(l.end(h), 0);
        // SAFETY: as above.
        assert_eq!(unsafe { blocks() }, before);
    });
}
