//! The suite tested on planted defects: every mutant of the bundled reference is caught by the
//! check aimed at it with the expected outcome; the reference is caught by none; the awkward
//! but correct variants pass. Each whole report is also kept as an insta snapshot in reports/.

mod common;

use common::{detail, outcome, repo_root};
use ntdsbcli_conform::harness::report::{Outcome, Report, Verdict};
use ntdsbcli_conform::harness::worker::LibrarySpec;
use ntdsbcli_conform::runner::{self, RunError};
use rstest::rstest;

fn snapshot(name: &str, r: &Report) {
    snapshot_with(name, r, &[]);
}

/// A snapshot with extra filters for figures that vary by timing.
fn snapshot_with(name: &str, r: &Report, filters: &[(&str, &str)]) {
    let mut settings = insta::Settings::clone_current();
    for (re, with) in filters {
        settings.add_filter(re, *with);
    }
    settings.set_snapshot_path(repo_root().join("reports/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    // Counts that depend on thread timing in the race mutants.
    settings.add_filter(r"\b\d+ got S_OK", "[n] got S_OK");
    settings.add_filter(r"\(S_OK\) on \d+ of", "(S_OK) on [n] of");
    settings.add_filter(r"(\(ERROR_INVALID_PARAMETER\) on) \d+", "$1 [n]");
    settings.add_filter(r"round \d+:", "round [n]:");
    // How far end.release's paths and fault.cleanup's sweep got depends on timing (a window
    // that showed no growth, a time budget); the units and what was planned stay.
    settings.add_redaction(".checks[].coverage.done", "[done]");
    // How long a slow library's calls waited, as the run measured it.
    settings.add_filter(r"calls waited \d+\.\d ms each", "calls waited [ms] ms each");
    // Whether fault.cleanup's sweep of a defect it is not aimed at (a thread leak slows every
    // site) fits its time budget depends on the machine; what it found stays.
    settings.add_filter(r"; stopped by the time budget \([^)]*\): [^(]* ", " ");
    // fault.cleanup on a defect it is not aimed at quotes what the dying worker printed last:
    // an allocator's complaint about a heap the defect corrupted, or Rust's backtrace note,
    // which depends on the environment. The failed call and the death stay in the snapshot.
    // A fault.cleanup repro is compiled and run by tests/fault.rs; here its first line (the
    // path and the call it fails) stands for it.
    settings.add_dynamic_redaction(".checks[].repro", |v, _| match v.as_str() {
        Some(r) if r.starts_with("/* ntdsbcli-conform fault.cleanup repro") => {
            insta::internals::Content::from(r.lines().next().unwrap_or_default().to_string())
        }
        _ => v,
    });
    settings.add_dynamic_redaction(".checks[].detail", |v, _| match v.as_str() {
        Some(d) if d.contains("resource calls failed one at a time") => {
            insta::internals::Content::from(without_counts(&without_last_output(d)))
        }
        _ => v,
    });
    settings.bind(|| {
        insta::assert_json_snapshot!(name, r, {
            ".library.sha256" => "[sha256]",
            ".library.size" => "[size]",
            ".stats.wall_ms" => "[ms]",
            ".checks[].ms" => "[ms]",
        });
    });
}

/// `d` without its ` (last output: "...")` parts: whether a dying worker printed anything
/// at all depends on the heap it corrupted.
fn without_last_output(d: &str) -> String {
    const OPEN: &str = " (last output: \"";
    let mut out = String::new();
    let mut rest = d;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        rest = match rest[i + OPEN.len()..].find("\")") {
            Some(j) => &rest[i + OPEN.len() + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// `d` without how many calls each path made and how many findings were left unlisted: a
/// defect that leaves sessions behind grows the library's tables, so its count of calls per
/// path moves with what ran before (the reference's counts stay, in its own snapshot and in
/// tests/fault.rs).
fn without_counts(d: &str) -> String {
    let d = match d.find(" resource calls failed one at a time") {
        Some(i) => {
            let open = d[..i].rfind(" [").unwrap_or(i);
            let close = d[i..].find(']').map_or(d.len(), |j| i + j + 1);
            format!("{} [calls per path]{}", &d[..open], &d[close..])
        }
        None => d.to_string(),
    };
    // "(and 14 more)", never "(and 2 other paths)".
    let Some(i) = d.rfind(" (and ") else {
        return d;
    };
    let j = d[i..].find(')').map_or(d.len(), |j| i + j + 1);
    if d[i..j].ends_with(" more)") {
        format!("{} (and more){}", &d[..i], &d[j..])
    } else {
        d
    }
}

#[test]
fn counts_are_cut_from_a_detail() {
    assert_eq!(
        without_counts("a: x failed (and 14 more) [150 resource calls failed one at a time; calls per path: P 12] (run on it)"),
        "a: x failed (and more) [calls per path] (run on it)"
    );
    assert_eq!(
        without_counts(
            "P (and 2 other paths): x [3 resource calls failed one at a time; calls per path: P 1]"
        ),
        "P (and 2 other paths): x [calls per path]"
    );
}

#[test]
fn last_output_is_cut_from_a_detail() {
    assert_eq!(
        without_last_output(
            r#"a; then it died (last output: "x \"y\" z") [1]; b (last output: "q")"#
        ),
        "a; then it died [1]; b"
    );
}

/// Every check but seq.model, which has tests of its own (tests/sequences.rs): its shrinking
/// is bounded by time, so its details are not snapshot material for defects that hang.
fn named_checks(mut o: runner::RunOptions) -> runner::RunOptions {
    o.only = Some(
        ntdsbcli_conform::catalogue::CHECKS
            .iter()
            .map(|c| c.id.to_string())
            .filter(|id| id != "seq.model")
            .collect(),
    );
    o
}

/// Hang mutants get a short patience to keep the test quick; the rest a generous one, so that
/// a loaded machine cannot turn a slow call into a false timeout.
fn run_mutant(name: &str, patience_ms: u64) -> Result<Report, RunError> {
    let mut opts = named_checks(common::options(LibrarySpec::Embedded));
    opts.mutant = Some(name.to_string());
    opts.call_timeout = std::time::Duration::from_millis(patience_ms);
    runner::run(&opts, &mut |_| {})
}

#[test]
fn reference_is_caught_by_no_check() {
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.call_timeout = std::time::Duration::from_secs(2);
    opts.sequences = 500;
    let r = common::run(&opts);
    for c in &r.checks {
        assert_eq!(c.outcome, Outcome::Pass, "{}: {}", c.id, c.detail);
    }
    assert_eq!(r.verdict, Verdict::Conformant);
    snapshot("reference", &r);
}

#[rstest]
#[case::prepare_null_handle("prepare-null-handle", "prepare.ok", Outcome::Fail)]
#[case::prepare_no_null_check("prepare-no-null-check", "prepare.bad-args", Outcome::Crash)]
#[case::prepare_token_code("prepare-token-code", "prepare.bad-args", Outcome::Fail)]
#[case::prepare_failed_handle(
    "prepare-failed-handle",
    "prepare.failed-leaves-nothing",
    Outcome::Fail
)]
#[case::prepare_failed_leaks_fd(
    "prepare-failed-leaks-fd",
    "prepare.failed-leaves-nothing",
    Outcome::Fail
)]
#[case::prepare_shared_handle("prepare-shared-handle", "prepare.distinct", Outcome::Fail)]
#[case::end_s_false("end-s-false", "end.ok", Outcome::Fail)]
#[case::end_null_ok("end-null-ok", "end.null", Outcome::Fail)]
#[case::end_null_crash("end-null-crash", "end.null", Outcome::Crash)]
#[case::end_exit("end-exit", "end.null", Outcome::Crash)]
#[case::end_double_ok("end-double-ok", "end.double", Outcome::Fail)]
#[case::end_double_free("end-double-free", "end.double", Outcome::Crash)]
#[case::end_double_deadlock("end-double-deadlock", "end.double", Outcome::Timeout)]
#[case::end_garbage_ok("end-garbage-ok", "end.garbage", Outcome::Fail)]
#[case::end_garbage_deref("end-garbage-deref", "end.garbage", Outcome::Crash)]
#[case::end_garbage_hang("end-garbage-hang", "end.garbage", Outcome::Timeout)]
#[case::end_hresult("end-hresult", "end.null", Outcome::Fail)]
#[case::end_wrong_session("end-wrong-session", "end.isolation", Outcome::Fail)]
#[case::end_stays_usable("end-stays-usable", "end.invalidates", Outcome::Fail)]
#[case::end_open_file_refuses("end-open-file-refuses", "end.open-file", Outcome::Fail)]
#[case::end_failure_sticky("end-failure-sticky", "end.after-failure", Outcome::Fail)]
#[case::end_frees_buffers("end-frees-buffers", "end.buffers-outlive", Outcome::Crash)]
#[case::end_race("end-race", "end.concurrent", Outcome::Fail)]
#[case::restore_end_hang("restore-end-hang", "end.restore-handle", Outcome::Timeout)]
#[case::free_null_crash("free-null-crash", "free.null", Outcome::Crash)]
fn mutant_is_caught(#[case] mutant: &str, #[case] check: &str, #[case] expected: Outcome) {
    let patience = if expected == Outcome::Timeout {
        300
    } else {
        2000
    };
    let r = run_mutant(mutant, patience).unwrap_or_else(|e| panic!("{mutant}: {e}"));
    assert_eq!(r.verdict, Verdict::Nonconformant, "{mutant}");
    let got = outcome(&r, check);
    let d = detail(&r, check);
    assert_eq!(got, expected, "{mutant}: {check} was {}: {d}", got.as_str());
    // The detail states what was seen against what was expected.
    let states_values = match expected {
        Outcome::Fail => d.contains("expected") || d.contains("left") || d.contains("closed"),
        Outcome::Crash => d.contains("SIG") || d.contains("exited with status"),
        Outcome::Timeout => d.contains("did not return within"),
        _ => true,
    };
    assert!(
        states_values,
        "{mutant}: {check} detail does not state the values: {d}"
    );
    // Every failing check names the documented rule it breaks, with its text.
    for c in r.checks.iter().filter(|c| c.outcome.is_failure()) {
        assert!(
            c.detail.contains("; rule broken: REQ-")
                || c.detail.contains("; rule broken: design §"),
            "{mutant}: {} names no rule: {}",
            c.id,
            c.detail
        );
    }
    // Once a mutant corrupts the heap, what kills a later program (which of glibc's checks
    // trips, or a segfault first) depends on the heap's layout; that it crashes does not.
    let varying: &[(&str, &str)] = if mutant == "end-frees-buffers" {
        &[
            (r#"; last output: \\"[^"\\]*\\""#, ""),
            (
                r"the worker crashed: SIG[A-Z]+ \([a-z ]+\)",
                "the worker crashed: [signal]",
            ),
            // Which program of a check finds the corrupted heap first, and whether a fresh
            // worker meets it again, follows the heap's layout (the environment's size moves
            // it): the check and its crash stay.
            (
                r#""detail": "[^\n]*the worker crashed: \[signal\][^\n]*"#,
                r#""detail": "[a program of the check crashed where the corrupted heap gave way]","#,
            ),
            // How many fresh workers the confirmations took follows the same.
            (r#""workers": \d+"#, r#""workers": "[n]""#),
            // Which of the failed calls finds the corrupted heap first is the heap's business
            // too; that fault.cleanup crashes stays in the outcome.
            (
                r#""detail": "[^\n]*resource calls failed one at a time[^\n]*"#,
                r#""detail": "[where the corrupted heap gives way]","#,
            ),
            (
                r#""repro": "/\* ntdsbcli-conform fault.cleanup repro[^\n]*",?"#,
                r#""repro": "[where the corrupted heap gives way]","#,
            ),
        ]
    } else {
        &[]
    };
    snapshot_with(&format!("mutant-{mutant}"), &r, varying);
}

/// The defects of the rules that check each documented answer (REQ-25, -40, -41, -43..-45,
/// -51..-53, and End on another thread): each is caught by its own check, and by no other
/// named check.
#[rstest]
#[case::end_other_thread_leak("end-other-thread-leak", "end.release", "another thread")]
#[case::null_size_ok("null-size-ok", "calls.null-out", "NULL pcbSize (REQ-52)")]
#[case::open_no_null_check("open-no-null-check", "calls.null-out", "SIGSEGV")]
#[case::list_size_in_chars("list-size-in-chars", "names.format", "WCHARs instead of bytes")]
#[case::list_a_no_bft("list-a-no-bft", "names.format", "no BFT character")]
#[case::file_size_off("file-size-off", "file.size", "*pliFileSize")]
#[case::read_count_over("read-count-over", "file.size", "*pcbRead")]
#[case::close_code("close-code", "file.codes", "hrInvalidHandle")]
#[case::eof_then_ok("eof-then-ok", "file.codes", "after ERROR_HANDLE_EOF")]
#[case::small_read_ok("small-read-ok", "file.codes", "Read into 8192 bytes")]
#[case::open_hint_exact("open-hint-exact", "file.codes", "read hint of 65536")]
#[case::needs_backslashes("needs-backslashes", "prepare.server-name", "is optional")]
fn a_documented_answer_is_checked_by_its_own_check_alone(
    #[case] mutant: &str,
    #[case] check: &str,
    #[case] said: &str,
) {
    let r = run_mutant(mutant, 2000).unwrap_or_else(|e| panic!("{mutant}: {e}"));
    assert_eq!(r.verdict, Verdict::Nonconformant, "{mutant}");
    let d = detail(&r, check);
    let want = if said == "SIGSEGV" {
        Outcome::Crash
    } else {
        Outcome::Fail
    };
    assert_eq!(outcome(&r, check), want, "{mutant}: {check}: {d}");
    assert!(d.contains(said), "{mutant}: {check}: {d}");
    assert!(d.contains("; rule broken: "), "{mutant}: {d}");
    for c in r.checks.iter().filter(|c| c.id != check) {
        assert!(
            matches!(c.outcome, Outcome::Pass | Outcome::Skip),
            "{mutant}: {} was {}: {}",
            c.id,
            c.outcome.as_str(),
            c.detail
        );
    }
    snapshot(&format!("mutant-{mutant}"), &r);
}

/// What the documentation forbids without naming an answer is warned, never failed:
/// - a server name with '_' is not allowed (REQ-25), but no code is given for it;
/// - Read's page gives ERROR_INVALID_PARAMETER for "one or more parameters" without naming
///   pcbRead.
#[rstest]
#[case::underscore_ok("underscore-ok", "prepare.server-name", "'_'")]
#[case::read_null_count_ok("read-null-count-ok", "calls.null-out", "pcbRead")]
fn an_answer_the_documentation_leaves_open_is_a_warning(
    #[case] mutant: &str,
    #[case] check: &str,
    #[case] said: &str,
) {
    let r = run_mutant(mutant, 2000).unwrap();
    common::assert_outcome(&r, check, Outcome::Warn, "");
    assert!(detail(&r, check).contains(said), "{}", detail(&r, check));
    assert_eq!(r.verdict, Verdict::Conformant);
    snapshot(&format!("mutant-{mutant}"), &r);
}

#[test]
fn every_mutant_has_a_case() {
    let src = include_str!("mutants.rs");
    for (name, _) in ntdsbcli_conform::MUTANTS {
        assert!(
            src.contains(&format!("\"{name}\"")),
            "mutant {name} has no test case"
        );
    }
}

#[test]
fn missing_export_cannot_be_verified() {
    match run_mutant("no-end-export", 2000) {
        Err(RunError::MissingExports {
            missing, report, ..
        }) => {
            assert_eq!(missing, vec!["DsBackupEnd"]);
            assert_eq!(outcome(&report, "exports.required"), Outcome::Fail);
            snapshot("mutant-no-end-export", &report);
        }
        other => panic!("expected missing exports, got {other:?}"),
    }
}

#[rstest]
#[case::chatty("chatty")]
#[case::slow("slow")]
fn awkward_but_correct_variant_passes(#[case] mutant: &str) {
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.sequences = 200;
    opts.mutant = Some(mutant.to_string());
    // The slow variant sleeps in every call: give it the default patience, and fewer release
    // cycles (200 on each of 7 paths would sleep for half a minute; no leak is sought here).
    opts.call_timeout = std::time::Duration::from_secs(3);
    opts.release_cycles = 40;
    let r = common::run(&opts);
    for c in &r.checks {
        assert_eq!(c.outcome, Outcome::Pass, "{mutant}: {}: {}", c.id, c.detail);
    }
    snapshot(&format!("mutant-{mutant}"), &r);
}

/// DsBackupEnd on a restore handle is undocumented (A-5): a library that ends the restore
/// session with it is warned, never failed, by end.restore-handle and by the sequences.
#[test]
fn ending_a_restore_handle_with_dsbackupend_is_a_warning() {
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.sequences = 2000;
    opts.mutant = Some("restore-end-ok".into());
    let r = common::run(&opts);
    common::assert_outcome(&r, "end.restore-handle", Outcome::Warn, "");
    assert!(detail(&r, "end.restore-handle").contains("A-5"));
    common::assert_outcome(&r, "seq.model", Outcome::Warn, "");
    assert!(detail(&r, "seq.model").contains("DsBackupEnd on a restore handle"));
    assert_eq!(r.verdict, Verdict::Conformant);
    snapshot("mutant-restore-end-ok", &r);
}

#[test]
fn hresult_encoding_is_a_warning_when_accepted() {
    let mut opts = named_checks(common::options(LibrarySpec::Embedded));
    opts.mutant = Some("end-hresult".into());
    opts.accept_hresult = true;
    let r = common::run(&opts);
    common::assert_outcome(&r, "end.null", Outcome::Warn, "");
    assert!(detail(&r, "end.null").contains("0x80070057"));
    assert_eq!(r.verdict, Verdict::Conformant);
}

/// The per-cycle figures a leak detail gives for one path: (heap bytes, handles, threads).
fn leak_figures(detail: &str, path: &str) -> Option<(f64, f64, f64)> {
    let seg = detail
        .split("; ")
        .find(|s| s.starts_with(&format!("{path} leaks ")))?;
    let nums: Vec<f64> = seg[path.len()..]
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(')
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((nums[0], nums[1], nums[2]))
}

#[derive(Clone, Copy, Debug)]
enum Resource {
    Heap,
    Handles,
    Threads,
}

#[rstest]
#[case::leak_heap("leak-heap", "Prepare/End", Resource::Heap, 1008.0)]
#[case::leak_heap_tiny("leak-heap-tiny", "Prepare/End", Resource::Heap, 32.0)]
#[case::leak_fd("leak-fd", "Prepare/End", Resource::Handles, 1.0)]
#[case::leak_thread("leak-thread", "Prepare/End", Resource::Threads, 1.0)]
#[case::leak_attachment(
    "leak-attachment",
    "End with an attachment still open",
    Resource::Handles,
    1.0
)]
#[case::free_noop("free-noop", "token and name lists freed before End", Resource::Heap, 48.0 + 96.0 + 192.0)]
#[case::restore_leak_fd(
    "restore-leak-fd",
    "DsRestorePrepare/DsRestoreEnd",
    Resource::Handles,
    2.0
)]
fn leak_is_measured(
    #[case] mutant: &str,
    #[case] path: &str,
    #[case] resource: Resource,
    #[case] truth: f64,
) {
    let mut opts = named_checks(common::options(LibrarySpec::Embedded));
    opts.mutant = Some(mutant.to_string());
    opts.call_timeout = std::time::Duration::from_millis(2000);
    if mutant == "leak-thread" {
        // Every faulted session leaves a thread that never exits, so each of fault.cleanup's
        // confirmations waits out its whole patience for threads (12 of them, 5 s each), and
        // whether the sweep then fits its budget depends on the machine. end.release is the
        // subject here, and the snapshot of this mutant holds the other checks.
        opts.only
            .get_or_insert_with(Vec::new)
            .retain(|id| id != "fault.cleanup");
    }
    let r = runner::run(&opts, &mut |_| {}).unwrap_or_else(|e| panic!("{mutant}: {e}"));
    assert_eq!(outcome(&r, "end.release"), Outcome::Fail, "{mutant}");
    let d = detail(&r, "end.release");
    let (heap, handles, threads) =
        leak_figures(d, path).unwrap_or_else(|| panic!("{mutant}: no figure for {path} in {d}"));
    let got = match resource {
        Resource::Heap => heap,
        Resource::Handles => handles,
        Resource::Threads => threads,
    };
    assert!(
        (got - truth).abs() <= truth * 0.10,
        "{mutant}: {path} {resource:?} {got} per cycle, truth {truth}: {d}"
    );
    if mutant == "leak-attachment" {
        // Only the paths that end with an attachment not closed leak: open, or read to EOF.
        assert_eq!(d.matches(" leaks ").count(), 2, "{d}");
        assert!(d.contains("End without Close leaks"), "{d}");
    }
    if matches!(mutant, "leak-heap" | "leak-heap-tiny") {
        // The block leaks in Prepare, so every path leaks it.
        let paths = d.split("; rule broken: ").next().unwrap();
        for seg in paths.split("; ") {
            let path = seg.split(" leaks ").next().unwrap();
            let (heap, _, _) = leak_figures(d, path).unwrap();
            assert!((heap - truth).abs() <= truth * 0.10, "{mutant}: {seg}");
        }
    }
    // A non-zero heap figure is a median of measured windows: a leak smaller than the
    // allocator's chunk moves it by a fraction between runs (32 or 32.6 bytes). It is asserted
    // against the truth above; the snapshot keeps the rest. A leaked thread's own mapped memory
    // varies with timing too; its count (asserted above) does not.
    let varying: &[(&str, &str)] = &[
        (r"\b[1-9][\d.]* bytes of heap", "[n] bytes of heap"),
        (r"[\d.]+ bytes of mapped", "[n] bytes of mapped"),
    ];
    snapshot_with(&format!("mutant-{mutant}"), &r, varying);
}

#[test]
fn release_has_no_false_positive_on_the_reference() {
    for seed in 1..=20 {
        let mut opts = common::options(LibrarySpec::Embedded);
        opts.seed = seed;
        opts.call_timeout = std::time::Duration::from_secs(2);
        opts.only = Some(vec!["end.release".into()]);
        let r = common::run(&opts);
        common::assert_outcome(&r, "end.release", Outcome::Pass, &format!("seed {seed}: "));
    }
}

#[test]
fn rpc_latency_variant_passes_with_the_default_patience() {
    // slow-5ms sleeps 5 ms in every call, like an RPC round trip: slow is not hung.
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.mutant = Some("slow-5ms".into());
    opts.call_timeout = std::time::Duration::from_secs(3);
    opts.only = Some(
        ["prepare.ok", "end.ok", "end.double", "end.concurrent"]
            .map(String::from)
            .to_vec(),
    );
    let r = common::run(&opts);
    for c in &r.checks {
        assert_eq!(c.outcome, Outcome::Pass, "{}: {}", c.id, c.detail);
    }
}

#[test]
fn denied_environment_is_inconclusive_never_a_failure() {
    // "needs-credentials" denies every Prepare until DsSetAuthIdentity names a user.
    let mut opts = named_checks(common::options(LibrarySpec::Embedded));
    opts.mutant = Some("needs-credentials".into());
    let r = common::run(&opts);
    assert_eq!(r.verdict, Verdict::Inconclusive);
    for c in &r.checks {
        assert!(
            !c.outcome.is_failure(),
            "{}: {}: {}",
            c.id,
            c.outcome.as_str(),
            c.detail
        );
    }
    assert!(detail(&r, "prepare.ok").contains("SE_BACKUP_NAME"));
}
