//! The page heap: every block a library loaded from a file allocates gets pages of its own,
//! freed blocks become inaccessible. Each C variant with a defect in its use of the heap is
//! caught with the call named, its seq.model repro brings its own page heap and reproduces,
//! and the read after free passes unseen without it.

mod common;

use common::detail;
use ntdsbcli_conform::harness::report::{Outcome, Report, Verdict};
use ntdsbcli_conform::harness::worker::LibrarySpec;
use std::path::Path;

fn run(lib: &Path, page_heap: bool) -> Report {
    let mut opts = common::options(LibrarySpec::Path(lib.to_path_buf()));
    opts.sequences = 200;
    opts.shrink_budget = std::time::Duration::from_secs(2);
    if !page_heap {
        opts.page_heap = None;
    }
    common::run(&opts)
}

/// The checks that failed, as "id: detail".
fn blamed(r: &Report) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Pass | Outcome::Skip | Outcome::Warn))
        .map(|c| format!("{}: {}", c.id, c.detail))
        .collect()
}

#[test]
fn each_misuse_of_the_heap_is_named_at_the_call_and_its_repro_reproduces() {
    let good = common::c_library(None);
    let reference = common::reference_so();
    for (defect, named, call) in [
        (
            "UAF_END",
            "page heap: use after free: a read of byte",
            "DsBackupEnd(h0)",
        ),
        (
            "WRITE_AFTER_FREE",
            "page heap: use after free: a write to byte",
            "DsBackupEnd(h0)",
        ),
        (
            "DOUBLE_FREE_THREADS",
            "page heap: invalid free: free of a 200-byte block freed a second time (a double free)",
            "DsBackupEnd(h0)",
        ),
        (
            "FREE_CALLER_BUFFER",
            "page heap: invalid free: free of the 65536-byte buffer the caller passed in (the caller's memory)",
            "DsBackupRead(h0, buffer, 65536, &read)",
        ),
    ] {
        let lib = common::c_library(Some(defect));
        let r = run(&lib, true);
        assert!(r.library.page_heap, "{defect}: the page heap was not on");
        assert_eq!(r.config.page_heap, Some(true));
        let end_ok = detail(&r, "end.ok");
        assert!(
            end_ok.contains(named) && end_ok.contains(call),
            "{defect}: end.ok does not name {named:?} in {call}: {end_ok}"
        );
        let seq = r
            .checks
            .iter()
            .find(|c| c.id == "seq.model")
            .expect("seq.model ran");
        assert_eq!(seq.outcome, Outcome::Crash, "{defect}: {}", seq.detail);
        assert!(seq.detail.contains("page heap:"), "{defect}: {}", seq.detail);
        let exe = common::compile_repro(
            &format!("pageheap-{defect}"),
            seq.repro.as_deref().expect("a repro"),
            &["-O1"],
        );
        let (code, out) = common::run_repro(&exe, &lib);
        assert_ne!(code, 0, "{defect}: the repro did not reproduce: {out}");
        for correct in [&good, &reference] {
            let (code, out) = common::run_repro(&exe, correct);
            assert_eq!(code, 0, "{defect} repro on {}: {out}", correct.display());
        }
    }
}

#[test]
fn a_read_after_free_is_caught_with_the_page_heap_and_missed_without_it() {
    let lib = common::c_library(Some("UAF_END"));
    let with = run(&lib, true);
    assert_eq!(with.verdict, Verdict::Nonconformant);
    assert!(
        blamed(&with).iter().any(|b| b.contains("use after free")),
        "{:?}",
        blamed(&with)
    );
    let without = run(&lib, false);
    assert!(!without.library.page_heap);
    assert_eq!(without.config.page_heap, Some(false));
    assert_eq!(
        without.verdict,
        Verdict::Conformant,
        "without the page heap the read after free is expected to pass unseen: {:?}",
        blamed(&without)
    );
}

#[test]
fn correct_libraries_stay_conformant_on_the_page_heap() {
    for lib in [
        common::reference_so(),
        common::c_library(None),
        common::c_design("POINTER"),
        common::c_design("CACHE"),
        common::c_design("TLS"),
        common::c_design("ERRLOG"),
    ] {
        let r = run(&lib, true);
        assert!(r.library.page_heap, "{}", lib.display());
        assert_eq!(
            r.verdict,
            Verdict::Conformant,
            "{}: {:?}",
            lib.display(),
            blamed(&r)
        );
    }
}

/// End that takes any readable pointer with the right magic number for a context accepts a
/// copy of a live context's bytes. The page heap puts a small context against a guard page,
/// so the copy is of what is readable: the class runs with the page heap on, and catches it.
#[test]
fn a_magic_checking_end_is_caught_with_the_page_heap_on() {
    let lib = common::c_library(Some("MAGIC_COPY"));
    let (code, report) = common::json_run(&lib, "end.garbage");
    assert_eq!(code, 1, "{report}");
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["library"]["page_heap"], true);
    let detail = r["checks"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("End(pointer to a copy of a live handle's bytes) returned 0 (S_OK)"),
        "{detail}"
    );
}
