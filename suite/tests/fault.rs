//! fault.cleanup: each routed resource call of every session path failed in turn. The
//! reference and the correct C and C++ libraries handle every site; each planted defect in
//! failure handling is caught by it, and only by it, with the failed call named.

mod common;

use common::{detail, outcome};
use ntdsbcli_conform::harness::report::{Outcome, Report};
use ntdsbcli_conform::harness::worker::LibrarySpec;
use std::path::Path;
use std::process::Command;

fn fault_only(library: LibrarySpec) -> Report {
    let mut opts = common::options(library);
    opts.only = Some(vec!["fault.cleanup".into()]);
    common::run(&opts)
}

#[test]
fn the_bundled_reference_handles_a_failure_at_every_site_of_every_path() {
    let r = fault_only(LibrarySpec::Embedded);
    let d = detail(&r, "fault.cleanup");
    assert_eq!(outcome(&r, "fault.cleanup"), Outcome::Pass, "{d}");
    // It was swept in its library build, every site of the 8 paths, none cut by the budget.
    assert!(
        d.contains("run on the bundled reference's library build"),
        "{d}"
    );
    assert!(d.contains("DsRestorePrepare/DsRestoreEnd"), "{d}");
    assert!(
        !d.contains("time budget") && !d.contains("not tried"),
        "{d}"
    );
    let per_path = d
        .split("calls per path: ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no calls per path in {d}"));
    let paths: Vec<&str> = per_path.split("; ").collect();
    assert_eq!(paths.len(), 8, "{d}");
    for p in paths {
        let words: Vec<&str> = p.split_whitespace().collect();
        let n: u64 = words.last().unwrap().parse().unwrap();
        // Every site of the path was failed: "Prepare/End 12", never "Prepare/End 200 of 250".
        assert!(n > 0 && words[words.len() - 2] != "of", "{p}");
    }
}

#[test]
fn the_reference_library_file_passes_too() {
    let r = fault_only(LibrarySpec::Path(common::reference_so()));
    common::assert_outcome(&r, "fault.cleanup", Outcome::Pass, "");
    assert!(r.library.routed_imports.iter().any(|n| n == "malloc"));
}

#[test]
fn correct_c_and_cpp_libraries_handle_every_site() {
    for lib in [common::c_library(None), common::cpp_library()] {
        let r = fault_only(LibrarySpec::Path(lib.clone()));
        let d = detail(&r, "fault.cleanup");
        assert_eq!(
            outcome(&r, "fault.cleanup"),
            Outcome::Pass,
            "{}: {d}",
            lib.display()
        );
    }
}

#[test]
fn a_bounded_error_history_is_no_leak() {
    // DESIGN_ERRLOG keeps a message for each of the last 8 failures: each failure adds a
    // heap block until the history is full. The sweep sees that growth in its quick runs
    // (the property, proven by the note), and the repeated confirmation clears it.
    let r = fault_only(LibrarySpec::Path(common::c_design("ERRLOG")));
    let d = detail(&r, "fault.cleanup");
    assert_eq!(outcome(&r, "fault.cleanup"), Outcome::Pass, "{d}");
    assert!(d.contains("did not come again in a fresh one"), "{d}");
}

/// Runs the whole default set on `lib` through the CLI: exit code and stdout.
fn cli(lib: &Path) -> (i32, String) {
    let out = Command::new(common::worker_exe())
        .args(["run", "--seed", "1", "--call-timeout-ms", "1000"])
        .args(["--sequences", "500", "--shrink-budget-ms", "1000", "--lib"])
        .arg(lib)
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One case per defect, so that the test threads run them side by side.
#[rstest::rstest]
#[case(
    "FAULT_LEAK",
    "fail",
    &["malloc inside DsBackupPrepareW failed", "2 handles and"][..]
)]
#[case(
    "FAULT_NULL_DEREF",
    "crash",
    &["malloc inside DsBackupPrepareW failed; then in DsBackupPrepareW"][..]
)]
#[case(
    "FAULT_THREAD_FD",
    "fail",
    &["pthread_create inside DsBackupPrepareW failed", "2 handles were still held"][..]
)]
#[case(
    "OOM_CODE",
    "fail",
    &["malloc inside DsBackupPrepareW failed", "expected 8 (ERROR_NOT_ENOUGH_MEMORY)"][..]
)]
#[case(
    "FAULT_READ_HANG",
    "timeout",
    &["inside DsBackupRead failed; then in the clean-up End,", "did not return"][..]
)]
fn each_defect_in_failure_handling_is_caught_by_fault_cleanup_alone(
    #[case] defect: &str,
    #[case] seen: &str,
    #[case] named: &[&str],
) {
    let lib = common::c_library(Some(defect));
    let mut opts = common::options(LibrarySpec::Path(lib.clone()));
    opts.call_timeout = std::time::Duration::from_millis(500);
    opts.only = Some(vec!["fault.cleanup".into()]);
    let r = common::run(&opts);
    let d = detail(&r, "fault.cleanup");
    assert_eq!(outcome(&r, "fault.cleanup").as_str(), seen, "{defect}: {d}");
    for n in named {
        assert!(d.contains(n), "{defect}: {n:?} not in {d}");
    }
    // The repro fails the same call by itself: reproduced on the defect, not on the
    // correct library or the reference.
    let repro = r
        .checks
        .iter()
        .find(|c| c.id == "fault.cleanup")
        .and_then(|c| c.repro.clone())
        .unwrap_or_else(|| panic!("{defect}: no repro"));
    let exe = common::compile_repro(
        &format!("fault-{defect}"),
        &repro,
        &["-O1", "-DHANG_SECONDS=3"],
    );
    let (code, out) = common::run_repro(&exe, &lib);
    assert_eq!(code, 1, "{defect}: {out}");
    assert!(out.contains("DEFECT REPRODUCED"), "{defect}: {out}");
    for good in [common::c_library(None), common::reference_so()] {
        let (code, out) = common::run_repro(&exe, &good);
        assert_eq!(code, 0, "{defect} repro on {}: {out}", good.display());
    }
    // Without a fault the library is correct: no other check blames it.
    let (code, out) = cli(&lib);
    assert_eq!(code, 1, "{defect}: {out}");
    let blamed: Vec<&str> = out
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 1 && w[0].contains('.') && ["fail", "crash", "timeout"].contains(&w[1])
        })
        .collect();
    assert_eq!(blamed.len(), 1, "{defect}: {blamed:?}");
    assert!(
        blamed[0].starts_with("fault.cleanup"),
        "{defect}: {blamed:?}"
    );
}

#[test]
fn a_library_that_makes_none_of_the_routed_calls_is_skipped_never_passed() {
    // Static storage only: nothing of it goes through malloc, pipe, pthread_create or read.
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("static_only.c");
    std::fs::write(
        &src,
        r#"
static char token[8] = "TOKEN00";
static unsigned long serial;
int DsBackupPrepareA(const char *s, unsigned g, unsigned b, void **t, unsigned *c, void **h) {
    if (!s || !h || g || b != 1) return 87;
    if (!t || !c) return (int)0xC7FF0001u;
    *t = token; *c = 8; *h = (void *)(0x5000000000ul + (++serial << 4));
    return 0;
}
int DsBackupEnd(void *h) { return h ? 0 : 87; }
void DsBackupFree(void *p) { (void)p; }
"#,
    )
    .unwrap();
    let lib = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libstatic_only.so");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(st.success());
    let r = fault_only(LibrarySpec::Path(lib));
    let d = detail(&r, "fault.cleanup");
    assert_eq!(outcome(&r, "fault.cleanup"), Outcome::Skip, "{d}");
    assert!(d.contains("could be routed"), "{d}");
}

#[test]
fn fault_sites_zero_turns_the_check_off() {
    let mut opts = common::options(LibrarySpec::Path(common::c_library(None)));
    opts.only = Some(vec!["fault.cleanup".into()]);
    opts.fault_sites = 0;
    let r = common::run(&opts);
    assert_eq!(outcome(&r, "fault.cleanup"), Outcome::Skip);
    assert_eq!(r.config.fault_sites, Some(0));
}
