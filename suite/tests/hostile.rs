//! Libraries that attack the process hosting them (fixtures/c HOSTILE_* variants, each
//! otherwise correct). The verifier runs untrusted code on machines that hold secrets: each
//! attack must be contained (the run goes on, nothing is left running or on disk, the secret
//! never reaches the library) and named for what it is.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The C library built with `-DHOSTILE_<name>`.
fn hostile(name: &str) -> PathBuf {
    common::c_build_with(&format!("HOSTILE_{name}"))
}

/// One CLI run: exit code, stdout and the JSON report; checks that the verifier left no
/// temporary file of its own behind.
fn run(lib: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, serde_json::Value) {
    let json = common::scratch(
        "hostile",
        &format!("{}.json", lib.file_name().unwrap().to_string_lossy()),
    );
    let _ = std::fs::remove_file(&json);
    let mut cmd = Command::new(common::worker_exe());
    cmd.args([
        "run",
        "--seed",
        "1",
        "--sequence-budget-ms",
        "4000",
        "--lib",
    ])
    .arg(lib)
    .arg("--json")
    .arg(&json)
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("the CLI runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no report:\n{stdout}")),
    )
    .unwrap();
    assert_eq!(report["complete"], true, "{stdout}");
    let tmp = PathBuf::from(format!("{}.tmp", json.display()));
    assert!(!tmp.exists(), "{} left behind", tmp.display());
    let pulses: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("ntdsbcli-conform-{pid}-"))
        })
        .collect();
    assert!(pulses.is_empty(), "pulse files left behind: {pulses:?}");
    (out.status.code().unwrap_or(-1), stdout, report)
}

/// The report's entry of check `id`.
fn entry<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

fn check<'a>(report: &'a serde_json::Value, id: &str) -> (&'a str, &'a str) {
    let c = entry(report, id);
    (
        c["outcome"].as_str().unwrap(),
        c["detail"].as_str().unwrap(),
    )
}

/// Check `id` had `outcome` and its detail says each of `says`.
fn assert_check(report: &serde_json::Value, id: &str, outcome: &str, says: &[&str]) {
    let (o, d) = check(report, id);
    assert_eq!(o, outcome, "{id}: {d}");
    for s in says {
        assert!(d.contains(s), "{id}: no {s:?} in: {d}");
    }
}

/// Processes whose name is `comm`, anywhere on the machine.
fn processes_named(comm: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .count()
}

#[test]
fn a_library_that_kills_its_parent_ends_only_its_worker() {
    let (code, out, r) = run(&hostile("KILL_PARENT"), &[], &[]);
    assert_eq!(code, 1, "{out}");
    // The 3rd End of each worker kills its parent: the keeper dies, the worker with it, and
    // the run goes on in fresh workers.
    let killed = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "crash")
        .filter(|c| c["detail"].as_str().unwrap().contains("SIGKILL"))
        .count();
    assert!(killed > 0, "{out}");
    assert_eq!(r["verdict"], "nonconformant");
}

#[test]
fn a_library_that_kills_its_process_group_ends_only_its_worker() {
    let (code, out, r) = run(&hostile("KILL_GROUP"), &[], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(" crash "), "{out}");
    assert_eq!(r["verdict"], "nonconformant");
}

#[test]
fn a_daemon_that_left_the_process_group_is_ended_with_the_run() {
    let lib = hostile("SETSID_DAEMON");
    let (code, out, _) = run(
        &lib,
        &["--check", "prepare.ok", "--check", "end.release"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    // The daemon called setsid and was re-parented: its keeper adopted it and ended it.
    let t0 = std::time::Instant::now();
    while processes_named("ntdsb-daemon") > 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        processes_named("ntdsb-daemon"),
        0,
        "a daemon survived the run"
    );
}

#[test]
fn the_library_never_sees_the_verifiers_environment() {
    let lib = hostile("ENV_DUMP");
    let dump = common::scratch("hostile", "environ.txt");
    let _ = std::fs::remove_file(&dump);
    let dump_s = dump.display().to_string();
    let passed = format!("NTDSB_DUMP={dump_s}");
    let (code, out, _) = run(
        &lib,
        &["--check", "prepare.ok", "--worker-env", &passed],
        &[("NTDSB_TEST_SECRET", "hunter2-canary")],
    );
    assert_eq!(code, 0, "{out}");
    let seen = std::fs::read_to_string(&dump).expect("the library wrote what it saw");
    assert!(seen.contains("environ: NTDSB_DUMP="), "{seen}");
    assert!(seen.contains("proc: "), "{seen}");
    assert!(
        !seen.contains("hunter2-canary"),
        "the secret reached the library:\n{seen}"
    );
    assert!(!seen.contains("NTDSB_TEST_SECRET"), "{seen}");
    // The password's variable can never be passed on.
    let refused = common::cli_with(
        &[
            "run",
            "--user",
            "u",
            "--password-env",
            "NTDSB_TEST_SECRET",
            "--worker-env",
            "NTDSB_TEST_SECRET",
        ],
        |c| c.env("NTDSB_TEST_SECRET", "hunter2-canary"),
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("never reaches the library"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_big_leak_meets_the_memory_limit_and_end_release() {
    let lib = hostile("BIG_LEAK");
    // 64 MiB per End, up to 1 GiB: past the default limit of 1024 MiB resident.
    let (code, out, r) = run(&lib, &["--check", "end.release"], &[]);
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "end.release", "crash", &["memory limit"]);
    // Without the limit: the leak stops growing during the warm-up, and is still caught.
    let (code, out, r) = run(
        &lib,
        &["--check", "end.release", "--worker-memory-mb", "0"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "end.release", "fail", &["a leak that stopped growing"]);
}

/// Whether the page heap found a crash is read from the worker's pulse page, never from
/// stderr: a library that writes the page heap's words and then crashes by itself gets a repro
/// without the C page heap, while a real use after free gets one with it.
#[test]
fn a_library_that_writes_the_page_heaps_words_is_not_taken_for_it() {
    for (lib, page_heap) in [
        (hostile("FAKE_PAGE_HEAP"), false),
        (common::c_library(Some("UAF_END")), true),
    ] {
        let (code, out, r) = run(&lib, &[], &[]);
        assert_eq!(code, 1, "{out}");
        let seq = entry(&r, "seq.model");
        assert_eq!(seq["outcome"], "crash", "{seq}");
        let repro = seq["repro"].as_str().expect("a repro");
        assert_eq!(repro.contains("page_heap_on();"), page_heap, "{seq}");
    }
}

#[test]
fn an_abort_at_unload_is_a_teardown_finding() {
    let (code, out, r) = run(&hostile("ABORT_AT_EXIT"), &[], &[]);
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "library.teardown", "crash", &["SIGABRT", "unloaded"]);
    // Every API call was right: the teardown is the only finding.
    let failures = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !matches!(c["outcome"].as_str(), Some("pass" | "skip")))
        .count();
    assert_eq!(failures, 1, "{out}");
}

#[test]
fn descriptor_exhaustion_is_named_as_the_librarys() {
    let (code, out, r) = run(&hostile("FD_EXHAUST"), &["--check", "prepare.ok"], &[]);
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "prepare.ok", "fail", &["no descriptor left"]);
}

#[test]
fn closing_the_workers_pipe_is_not_taken_for_exit() {
    let (code, out, r) = run(&hostile("CLOSE_ALL_FDS"), &["--check", "prepare.ok"], &[]);
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "prepare.ok", "crash", &["descriptor it does not own"]);
    let (_, d) = check(&r, "prepare.ok");
    assert!(!d.contains("called exit"), "{d}");
}

#[test]
fn a_flood_on_stdout_changes_nothing() {
    let (code, out, _) = run(
        &hostile("STDOUT_FLOOD"),
        &[
            "--check",
            "prepare.ok",
            "--check",
            "end.ok",
            "--check",
            "end.null",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_swallowed_segv_is_still_a_crash() {
    let (code, out, r) = run(&hostile("SWALLOW_SEGV"), &["--check", "end.garbage"], &[]);
    assert_eq!(code, 1, "{out}");
    let (o, d) = check(&r, "end.garbage");
    assert!(o == "crash" || o == "timeout", "{o}: {d}");
}

/// A worker that crashes while a child it started still holds the protocol pipe: the crash is
/// seen from the wait status at once, named as a crash (not a hang of the call timeout), and
/// the child is ended with it.
#[test]
fn a_crash_beside_a_child_holding_the_pipe_is_a_crash_at_once() {
    let t0 = std::time::Instant::now();
    let (code, out, r) = run(
        &hostile("CRASH_WITH_CHILD"),
        &["--check", "end.null", "--call-timeout-ms", "60000"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_check(&r, "end.null", "crash", &["SIGSEGV"]);
    // Far below the call timeout: the crash was not waited out as a hang.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
    let t1 = std::time::Instant::now();
    while processes_named("ntdsb-orphan") > 0 && t1.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(processes_named("ntdsb-orphan"), 0, "the child survived");
}
