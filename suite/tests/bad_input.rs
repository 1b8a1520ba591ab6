//! Bad input never panics: each gets one line naming the problem on stderr, and exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn run_cli(lib: &Path) -> (i32, String, String) {
    let r = common::cli_with(&["run", "--lib"], |c| c.arg(lib));
    (r.code, r.stdout, r.stderr)
}

fn tmp(name: &str) -> PathBuf {
    common::scratch("bad-input", name)
}

#[track_caller]
fn assert_rejected(lib: &Path, words: &str) {
    let (code, stdout, stderr) = run_cli(lib);
    assert_eq!(code, 2, "{}: exit {code}, stderr {stderr:?}", lib.display());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got {stderr:?}");
    assert!(lines[0].starts_with("ntdsbcli-conform: "), "{stderr:?}");
    assert!(
        lines[0].contains(words),
        "{stderr:?} does not say {words:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
    assert!(stdout.is_empty(), "nothing on stdout: {stdout:?}");
}

#[test]
fn missing_file() {
    assert_rejected(Path::new("/no/such/libntdsbcli.so"), "no such file");
}

/// Writes `bytes` as `name` and asserts that the verifier rejects that file with `words`.
#[track_caller]
fn assert_file_rejected(name: &str, bytes: impl AsRef<[u8]>, words: &str) {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    assert_rejected(&p, words);
}

#[test]
fn directory() {
    assert_rejected(Path::new(env!("CARGO_TARGET_TMPDIR")), "is a directory");
}

#[test]
fn empty_file() {
    assert_file_rejected("empty.so", b"", "empty file");
}

#[test]
fn text_file() {
    assert_file_rejected(
        "text.so",
        "INPUT(-lc)\n",
        "not a shared library (a text file)",
    );
}

#[test]
fn other_architecture() {
    // A real shared library with its ELF machine field set to aarch64.
    let mut bytes = std::fs::read(common::c_library(None)).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    assert_file_rejected("aarch64.so", bytes, "wrong architecture: ELF for aarch64");
}

#[test]
fn windows_dll_on_linux() {
    let mut bytes = vec![0u8; 512];
    bytes[..2].copy_from_slice(b"MZ");
    bytes[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    bytes[0x80..0x84].copy_from_slice(b"PE\0\0");
    bytes[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    assert_file_rejected("ntdsbcli.dll", bytes, "a Windows PE (x86-64) DLL");
}

#[test]
fn executable_not_library() {
    assert_rejected(&common::worker_exe(), "cannot load");
}

#[test]
fn library_without_the_exports() {
    // The C library with DsBackupEnd left out, and the system libc, which has none at all.
    assert_rejected(
        &common::c_library(Some("NO_END")),
        "required exports missing: DsBackupEnd",
    );
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("a system libc");
    assert_rejected(
        libc,
        "required exports missing: DsBackupPrepareA or DsBackupPrepareW, DsBackupEnd, DsBackupFree",
    );
}

#[test]
fn library_that_crashes_while_loading() {
    assert_rejected(
        &common::c_library(Some("CTOR_CRASH")),
        "crashed while loading (SIGSEGV",
    );
}

#[test]
fn library_that_raises_sigsegv_while_loading() {
    // raise(SIGSEGV) in a constructor kills any C host at load; the worker must not catch it
    // (Rust's runtime handler would, the first time), so it is a load crash, exit 2.
    assert_rejected(
        &common::c_library(Some("CTOR_RAISE")),
        "crashed while loading (SIGSEGV",
    );
}

#[test]
fn unknown_mutant_and_check() {
    for args in [["run", "--mutant", "nope"], ["run", "--check", "nope"]] {
        let out = Command::new(common::worker_exe())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }
}

#[test]
fn every_check_can_be_explained() {
    for c in ntdsbcli_conform::catalogue::CHECKS {
        let out = Command::new(common::worker_exe())
            .args(["explain", c.id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", c.id);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(c.requirement)
                && text.contains("conforming   ")
                && !text.contains("conforming   \n"),
            "{text}"
        );
    }
    let out = Command::new(common::worker_exe())
        .args(["explain", "no.such"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_is_no_panic() {
    // `ntdsbcli-conform list | head -1`: the reader goes away; the tool must not panic.
    let mut child = Command::new(common::worker_exe())
        .args(["list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Flags whose value makes no sense are refused before anything runs, naming the flag.
#[test]
fn nonsense_flag_values_are_refused() {
    for (flag, value) in [("--jobs", "0"), ("--call-timeout-ms", "0")] {
        let r = common::cli_with(&["run", flag, value], |c| c);
        assert_eq!(r.code, 2, "{flag} {value}: {}", r.stderr);
        assert!(r.stderr.contains(flag), "{flag}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
}

/// `--help` says what the exit codes mean.
#[test]
fn help_lists_the_exit_codes() {
    let r = common::cli_with(&["--help"], |c| c);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("Exit codes") && r.stdout.contains("3 inconclusive"),
        "{}",
        r.stdout
    );
}
