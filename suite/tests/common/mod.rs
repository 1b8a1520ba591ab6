//! Shared by the integration tests: how to run the verifier and build the C fixtures.
#![allow(dead_code)]

use ntdsbcli_conform::harness::report::{Outcome, Report};
use ntdsbcli_conform::harness::worker::LibrarySpec;
use ntdsbcli_conform::runner::{self, RunOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

pub fn worker_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ntdsbcli-conform"))
}

pub fn options(library: LibrarySpec) -> RunOptions {
    let mut o = RunOptions::new(library, worker_exe());
    // Workers get a minimal environment: $NTDSBCLI_WORKER_ENV names (comma-separated) the
    // variables a library under test needs (the stand-in DC's socket, say).
    for name in std::env::var("NTDSBCLI_WORKER_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
    {
        if let Some(v) = std::env::var_os(name) {
            o.worker_env.push((name.into(), v));
        }
    }
    // Smaller and more deterministic than the CLI's defaults: no sequence budget to depend
    // on the machine's speed, one worker.
    o.seed = 1;
    o.sequences = 1000;
    o.sequence_budget = None;
    o.jobs = 1;
    o.call_timeout = Duration::from_millis(300);
    o
}

/// The library named by `$NTDSBCLI_LIB`, else the bundled reference. Tests run in suite/, so
/// a relative path is taken from the workspace root, where `cargo test` is usually typed.
pub fn library_under_test() -> LibrarySpec {
    match std::env::var_os("NTDSBCLI_LIB") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_relative() && !p.exists() {
                LibrarySpec::Path(repo_root().join(p))
            } else {
                LibrarySpec::Path(p)
            }
        }
        _ => LibrarySpec::Embedded,
    }
}

pub fn run(opts: &RunOptions) -> Report {
    runner::run(opts, &mut |_| {}).unwrap_or_else(|e| panic!("run failed: {e}"))
}

pub fn outcome(r: &Report, id: &str) -> Outcome {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("check {id} missing from the report"))
        .outcome
}

pub fn detail<'a>(r: &'a Report, id: &str) -> &'a str {
    &r.checks
        .iter()
        .find(|c| c.id == id)
        .expect("check present")
        .detail
}

/// Asserts that check `id` has outcome `want`; a failure shows the check's detail and `context`.
#[track_caller]
pub fn assert_outcome(r: &Report, id: &str, want: Outcome, context: &str) {
    assert_eq!(outcome(r, id), want, "{context}{}", detail(r, id));
}

/// The terminal listing's line for check `id`.
pub fn line<'a>(out: &'a str, id: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{out}"))
}

/// Check `id`'s line in the terminal listing has `outcome` and says `says` ("" for anything).
pub fn assert_line(out: &str, id: &str, outcome: &str, says: &str) {
    let l = line(out, id);
    assert!(
        l.contains(&format!(" {outcome} ")) && l.contains(says),
        "{id}: want {outcome} saying {says:?}, got: {l}\n{out}"
    );
}

/// Runs the calling test alone in a child process of this test binary, with `env` set, and
/// panics with its output unless it passed: a fixture's property is proven where a failure
/// cannot take the parent down. The harness runs each test on a thread named after it.
pub fn pass_alone(env: &[(&str, &std::ffi::OsStr)]) {
    let current = std::thread::current();
    let name = current
        .name()
        .filter(|n| *n != "main")
        .expect("a test run by the test harness, on a thread named after the test");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{name} ({env:?}) did not pass alone:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What one CLI run gave.
pub struct Cli {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the CLI as it is prepared in `cmd` (the verifier, with `args` after it).
pub fn cli_with(args: &[&str], cmd: impl FnOnce(&mut Command) -> &mut Command) -> Cli {
    let mut c = Command::new(worker_exe());
    c.args(args);
    let out = cmd(&mut c).output().expect("the CLI runs");
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A path in a scratch folder of this test run, named `folder`.
pub fn scratch(folder: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs the CLI (seed 1) on `lib` with only `check`, writing a JSON report: exit code and the
/// Runs `cmd` and fails the test, with its stderr, unless it exits with 0.
pub fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// report's text.
pub fn json_run(lib: &Path, check: &str) -> (i32, String) {
    let json =
        std::env::temp_dir().join(format!("ntdsbcli-test-{}-{check}.json", std::process::id()));
    let st = Command::new(worker_exe())
        .args(["run", "--seed", "1", "--check", check, "--json"])
        .arg(&json)
        .arg("--lib")
        .arg(lib)
        .output()
        .expect("the CLI runs");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    (st.status.code().unwrap_or(-1), report)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

static BUILD: Mutex<()> = Mutex::new(());

/// Builds the independent C library, correct or with one `DEFECT_*` macro, once per test run.
pub fn c_library(defect: Option<&str>) -> PathBuf {
    match defect {
        Some(d) => c_build(&format!("DEFECT_{d}")),
        None => c_build("GOOD"),
    }
}

/// The C library built as one of its correct `DESIGN_*` variants.
pub fn c_design(design: &str) -> PathBuf {
    c_build(&format!("DESIGN_{design}"))
}

/// Builds fixtures/c/ntdsb.c with `-D<macro>` (a `HOSTILE_*` variant, say), once per run.
pub fn c_build_with(macro_name: &str) -> PathBuf {
    c_build(macro_name)
}

/// Builds fixtures/c/ntdsb.c with `-D<macro>` (none for "GOOD"), once per test run.
fn c_build(macro_name: &str) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("libntdsb_{}.so", macro_name.to_lowercase());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let src = repo_root().join("fixtures/c/ntdsb.c");
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lpthread");
    if macro_name != "GOOD" {
        cmd.arg(format!("-D{macro_name}"));
    }
    build_once(
        cmd,
        &src,
        &out,
        "a C compiler (cc) is needed for the foreign-library tests",
    );
    out
}

/// The C++ library of fixtures/cpp, built once per test run.
pub fn cpp_library() -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libntdsb_cpp.so");
    let src = repo_root().join("fixtures/cpp/ntdsb.cpp");
    let mut cmd = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()));
    cmd.args([
        "-shared",
        "-fPIC",
        "-O1",
        "-std=c++17",
        "-Wall",
        "-Werror",
        "-o",
    ])
    .arg(&out)
    .arg(&src)
    .arg("-lpthread");
    build_once(
        cmd,
        &src,
        &out,
        "a C++ compiler (c++) is needed for the C++ fixture",
    );
    out
}

fn build_once(mut cmd: Command, src: &Path, out: &Path, need: &str) {
    // The C fixtures include the project's header: a change to either rebuilds.
    let header = repo_root().join("include/ntdsbcli.h");
    let newest = [src, header.as_path()]
        .iter()
        .filter_map(|p| p.metadata().and_then(|m| m.modified()).ok())
        .max();
    let fresh = out.metadata().and_then(|m| m.modified()).ok() >= newest;
    if !out.exists() || !fresh {
        let st = cmd.status().unwrap_or_else(|e| panic!("{need}: {e}"));
        assert!(st.success(), "building {} failed", out.display());
    }
}

static DLL: Mutex<()> = Mutex::new(());

/// The reference built as a shared library (mutants are chosen through NTDSBCLI_MUTANT).
pub fn reference_so() -> PathBuf {
    let _guard = DLL.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference-dll");
    let st = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "ntdsbcli-reference-dll",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(repo_root())
        .status()
        .expect("cargo runs");
    assert!(st.success(), "building the reference cdylib failed");
    target.join("debug/libntdsbcli_ref.so")
}

/// Compiles the C repro `src` as `name` with `flags` (beyond -Wall -Werror); fails the test,
/// with the compiler's words, when it does not compile.
pub fn compile_repro(name: &str, src: &str, flags: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("repros");
    ntdsbcli_conform::model::repro::build(&dir, name, src, flags)
        .unwrap_or_else(|e| panic!("{name}: the repro does not compile: {e}"))
}

/// Exit code (-1 for a signal) and output of a repro run on `lib`.
pub fn run_repro(exe: &Path, lib: &Path) -> (i32, String) {
    let out = Command::new(exe).arg(lib).output().expect("the repro runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The stand-in domain controller's server (fixtures/dc/server.c), built once per test run.
pub fn dc_server() -> PathBuf {
    dc_build("server.c", "ntdsb-dc", &["-O1"], None)
}

/// The stand-in DC's client library (fixtures/dc/client.c), correct or with one
/// `DEFECT_DC_*` defect, built once per test run.
pub fn dc_client(defect: Option<&str>) -> PathBuf {
    let name = match defect {
        Some(d) => format!("libntdsb_dc_{}.so", d.to_lowercase()),
        None => "libntdsb_dc.so".into(),
    };
    let define = defect.map(|d| format!("-DDEFECT_DC_{d}"));
    dc_build(
        "client.c",
        &name,
        &["-shared", "-fPIC", "-O1", "-lpthread"],
        define.as_deref(),
    )
}

/// Builds one file of fixtures/dc (which includes dc.h) as `name`, when it or dc.h changed.
fn dc_build(file: &str, name: &str, flags: &[&str], define: Option<&str>) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let dir = repo_root().join("fixtures/dc");
    let src = dir.join(file);
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags)
        .args(define);
    // The newer of the file and the header it shares decides whether to build again.
    let header = dir.join("dc.h");
    let newest = [&src, &header]
        .into_iter()
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap();
    build_once(
        cmd,
        newest,
        &out,
        "a C compiler (cc) is needed for the stand-in DC",
    );
    out
}

/// A running stand-in domain controller: the benchmark's own, on a socket of its own.
pub use ntdsbcli_conform::bench::DcServer as Dc;

/// Starts the stand-in DC answering each request after `latency_ms`, one backup at a time.
pub fn dc(latency_ms: u32) -> Dc {
    dc_with(latency_ms, 1)
}

/// Starts the stand-in DC answering each request after `latency_ms`, with at most `backups`
/// backups at once (0: no limit).
pub fn dc_with(latency_ms: u32, backups: u32) -> Dc {
    Dc::start(&dc_server(), latency_ms, backups).expect("the stand-in DC starts")
}
