//! Libraries written independently of the project (fixtures/c/ntdsb.c, in C) and the reference
//! built as a real .so: the CLI's verdicts and exit codes on them.

mod common;

use common::assert_line;

use std::path::{Path, PathBuf};
use std::process::Command;

fn verdict(lib: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(common::worker_exe())
        .args(["run", "--seed", "1", "--call-timeout-ms", "1000"])
        // Fewer sequences and a short shrink keep this test quick; tests/sequences.rs covers more.
        .args(["--sequences", "1000", "--shrink-budget-ms", "2000", "--lib"])
        .arg(lib)
        .args(extra)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn correct_c_library_is_conformant() {
    let (code, out) = verdict(&common::c_library(None), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: conformant"), "{out}");
    // It has no restore functions: that check is skipped, decided before any call.
    assert_line(&out, "end.restore-handle", "skip", "");
}

#[test]
fn chatty_c_library_is_conformant() {
    let (code, out) = verdict(&common::c_library(Some("CHATTY")), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("ntdsb: "),
        "library output leaked into the report: {out}"
    );
}

/// Runs the C library built with `defect` (with `args`), which must be nonconformant and give
/// `check` `outcome`: the library and the output.
fn caught(defect: &str, args: &[&str], check: &str, outcome: &str) -> (PathBuf, String) {
    let lib = common::c_library(Some(defect));
    let (code, out) = verdict(&lib, args);
    assert_eq!(code, 1, "{defect}: {out}");
    assert_line(&out, check, outcome, "");
    (lib, out)
}

/// One case per defect, so that the test threads run them side by side.
#[rstest::rstest]
#[case("HRESULT", "end.null", "fail")]
#[case("GARBAGE_DEREF", "end.garbage", "crash")]
#[case("LEAK_FD", "end.open-file", "fail")]
#[case("DOUBLE_CLOSE", "end.double", "fail")]
#[case("EXIT", "end.null", "crash")]
#[case("ABORT", "end.null", "crash")]
#[case("STACK_OVERFLOW", "end.null", "crash")]
#[case("HANG", "end.null", "timeout")]
fn defective_c_libraries_are_nonconformant(
    #[case] defect: &str,
    #[case] check: &str,
    #[case] outcome: &str,
) {
    caught(defect, &[], check, outcome);
}

#[test]
fn end_after_reading_to_eof_without_close_must_release_the_attachment() {
    // EOF_LEAK forgets an attachment read to the end: End still returns S_OK, the fd leaks.
    let (lib, out) = caught("EOF_LEAK", &[], "end.open-file", "fail");
    assert_line(&out, "end.open-file", "fail", "EOF");
    assert_line(&out, "end.release", "fail", "");
    // The sequences find it on their own in a default run.
    let seq = Command::new(common::worker_exe())
        .args(["run", "--seed", "1", "--check", "seq.model", "--lib"])
        .arg(&lib)
        .output()
        .unwrap();
    let seq_out = String::from_utf8_lossy(&seq.stdout);
    assert_eq!(seq.status.code(), Some(1), "{seq_out}");
    assert_line(&seq_out, "seq.model", "fail", "");
}

#[test]
fn an_environment_code_is_no_excuse_when_the_other_form_works() {
    // W_ENV: DsBackupPrepareW says hrCouldNotConnect while DsBackupPrepareA, same server,
    // gets a session. That is the library's fault, not the environment's.
    let (lib, _) = caught("W_ENV", &["--check", "prepare.ok"], "prepare.ok", "fail");
    let (code, report) = common::json_run(&lib, "prepare.ok");
    assert_eq!(code, 1);
    assert!(
        report.contains("DsBackupPrepareW returned 0xC7FF0007")
            && report
                .contains("DsBackupPrepareA with the same server and credentials returned S_OK"),
        "{report}"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn the_report_names_the_library_s_routed_imports() {
    // The C library's own malloc, free and pipe go through the worker's wrappers; nothing of
    // the harness's own imports is named.
    let (code, report) = common::json_run(&common::c_library(None), "end.ok");
    assert_eq!(code, 0, "{report}");
    let json: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    let routed: Vec<&str> = json["library"]["routed_imports"]
        .as_array()
        .unwrap_or_else(|| panic!("no routed_imports: {report}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for name in ["malloc", "free", "pipe"] {
        assert!(routed.contains(&name), "{name} not routed: {routed:?}");
    }
    assert!(
        !routed.contains(&"pthread_create"),
        "the default design starts no thread: {routed:?}"
    );
}

#[test]
fn hresult_library_passes_with_warnings_when_accepted() {
    let (code, out) = verdict(&common::c_library(Some("HRESULT")), &["--accept-hresult"]);
    assert_eq!(code, 0, "{out}");
    assert_line(&out, "end.null", "warn", "");
}

#[test]
fn reference_as_a_shared_library_is_conformant() {
    // The reference's cdylib, built the way a vendor would ship it, loaded by path.
    let so = common::reference_so();
    let (code, out) = verdict(&so, &[]);
    assert_eq!(code, 0, "{out}");
    let n = ntdsbcli_conform::catalogue::CHECKS.len();
    assert!(out.contains(&format!("{n} checks: {n} pass")), "{out}");
    // A planted defect is selected in the .so too, through the environment.
    let out = Command::new(common::worker_exe())
        .args(["run", "--seed", "1", "--lib"])
        .arg(&so)
        .env("NTDSBCLI_MUTANT", "end-race")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_line(
        &String::from_utf8_lossy(&out.stdout),
        "end.concurrent",
        "fail",
        "",
    );
}

/// Processes named `ntdsb-orphan` that are still running (a killed one stays a zombie until
/// init reaps it, which is not running).
fn live_orphans() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|s| s.contains("(ntdsb-orphan)"))
                .filter(|s| {
                    let state = s.rsplit(')').next().unwrap_or("").trim_start();
                    !state.starts_with('Z') && !state.starts_with('X')
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_hung_librarys_helper_process_dies_with_its_worker() {
    // End(NULL) forks a helper that sleeps until killed, then hangs: killing the hung worker
    // must take the helper too (the worker's process group).
    caught(
        "HANG_CHILD",
        &["--check", "end.null"],
        "end.null",
        "timeout",
    );
    // SIGKILL to the group is delivered asynchronously: a killed helper may need a moment
    // to die on a loaded machine; one that was not killed never does.
    let t0 = std::time::Instant::now();
    while live_orphans() > 0 && t0.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(live_orphans(), 0, "a helper process outlived its worker");
}
