//! `diff`: the reference against itself differs nowhere; against each mutant the first
//! difference breaks a rule on the mutant's side, and the check aimed at the defect names it;
//! against correct libraries built differently every difference is one both sides may give;
//! the CLI's exit codes, reports and baseline.

mod common;

use ntdsbcli_conform::diff::engine::{diff, DiffOptions, DiffReport};
use ntdsbcli_conform::diff::group::Blame;
use ntdsbcli_conform::harness::worker::LibrarySpec;
use rstest::rstest;
use std::time::Duration;

fn options(new: LibrarySpec, old: LibrarySpec, seed: u64) -> DiffOptions {
    let mut n = common::options(new);
    n.seed = seed;
    n.sequences = 1000;
    // Patience a loaded machine cannot exhaust; the hang mutants get a short one.
    n.call_timeout = Duration::from_secs(3);
    let mut o = n.clone();
    o.library = old;
    DiffOptions {
        new: n,
        old: o,
        max_len: 24,
        jobs: 2,
        sequence_budget: None,
        shrink_budget: Duration::from_secs(5),
        shrink_groups: 4,
    }
}

fn run(o: &DiffOptions) -> DiffReport {
    diff(o, &mut |_| {}).unwrap_or_else(|e| panic!("diff failed: {e}"))
}

fn listing(r: &DiffReport) -> String {
    ntdsbcli_conform::diff::render::terminal(r)
}

#[rstest]
fn the_reference_against_itself_differs_nowhere(#[values(1, 2, 3, 4, 5)] seed: u64) {
    let r = run(&options(LibrarySpec::Embedded, LibrarySpec::Embedded, seed));
    assert!(r.differences.is_empty(), "{}", listing(&r));
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.sequences, 1000, "every sequence ran on both sides");
    assert!(r.programs > 50 && r.calls > 10_000, "{}", listing(&r));
}

#[test]
fn the_reference_library_file_against_the_bundled_one_differs_nowhere() {
    // Another process image, another heap, the page heap on: other handle values, the same
    // roles.
    let so = common::reference_so();
    let r = run(&options(LibrarySpec::Path(so), LibrarySpec::Embedded, 7));
    assert!(r.differences.is_empty(), "{}", listing(&r));
}

fn new_breaks(b: &Blame) -> bool {
    matches!(b, Blame::New { .. } | Blame::Both { .. })
}

#[rstest]
#[case("prepare-null-handle", "prepare.ok")]
#[case("prepare-no-null-check", "prepare.bad-args")]
#[case("prepare-token-code", "prepare.bad-args")]
#[case("prepare-failed-handle", "prepare.failed-leaves-nothing")]
#[case("prepare-failed-leaks-fd", "prepare.failed-leaves-nothing")]
#[case("prepare-shared-handle", "prepare.distinct")]
#[case("end-s-false", "end.ok")]
#[case("end-null-ok", "end.null")]
#[case("end-null-crash", "end.null")]
#[case("end-exit", "end.null")]
#[case("end-double-ok", "end.double")]
#[case("end-double-free", "end.double")]
#[case("end-double-deadlock", "end.double")]
#[case("end-garbage-ok", "end.garbage")]
#[case("end-garbage-deref", "end.garbage")]
#[case("end-garbage-hang", "end.garbage")]
#[case("end-hresult", "end.null")]
#[case("end-wrong-session", "end.isolation")]
#[case("end-stays-usable", "end.invalidates")]
#[case("end-open-file-refuses", "end.open-file")]
#[case("end-failure-sticky", "end.after-failure")]
#[case("end-frees-buffers", "end.buffers-outlive")]
#[case("restore-end-hang", "end.restore-handle")]
#[case("free-null-crash", "free.null")]
#[case("leak-heap", "end.release")]
#[case("leak-fd", "end.open-file")]
#[case("leak-thread", "end.open-file")]
#[case("leak-heap-tiny", "end.release")]
#[case("leak-attachment", "end.release")]
#[case("free-noop", "end.release")]
#[case("end-other-thread-leak", "end.release")]
#[case("end-race", "end.concurrent")]
#[case("list-size-in-chars", "names.format")]
#[case("read-count-over", "file.size")]
#[case("close-code", "file.codes")]
#[case("open-hint-exact", "file.codes")]
#[case("no-end-export", "exports.required")]
#[case("restore-leak-fd", "end.release")]
#[case("null-size-ok", "calls.null-out")]
#[case("open-no-null-check", "calls.null-out")]
#[case("list-a-no-bft", "names.format")]
#[case("file-size-off", "file.size")]
#[case("eof-then-ok", "file.codes")]
#[case("small-read-ok", "file.codes")]
#[case("needs-backslashes", "prepare.server-name")]
fn a_mutant_shows_its_defect_first(#[case] mutant: &str, #[case] aimed: &str) {
    let mut o = options(LibrarySpec::Embedded, LibrarySpec::Embedded, 1);
    o.new.mutant = Some(mutant.into());
    // A hang costs the patience on every sequence that reaches it.
    o.sequence_budget = Some(Duration::from_secs(5));
    if mutant.contains("hang") || mutant.contains("deadlock") {
        for side in [&mut o.new, &mut o.old] {
            side.call_timeout = Duration::from_millis(300);
        }
    }
    let r = run(&o);
    let text = listing(&r);
    assert_eq!(r.exit_code(), 1, "{text}");
    let first = &r.differences[0];
    assert!(
        new_breaks(&first.blame),
        "the first difference breaks a rule on the mutant's side:\n{text}"
    );
    assert!(
        r.differences
            .iter()
            .any(|g| g.sources.iter().any(|s| s == aimed) && new_breaks(&g.blame)),
        "{aimed} names the defect:\n{text}"
    );
    assert!(
        r.differences
            .iter()
            .all(|g| !matches!(g.blame, Blame::Old { .. })),
        "the reference breaks no rule:\n{text}"
    );
    // Threads that race may not race the same way alone: such an example says so.
    let racing = first.key.call.contains("racing threads");
    if first.sources == ["seq.model"] && !racing {
        assert!(
            first.shrink.contains("shown again alone"),
            "a sequence's example is checked alone: {}\n{text}",
            first.shrink
        );
    }
}

/// Mutants whose answers the documentation allows (a code it does not name, a form it calls
/// not supported): each shows as a difference, and none is blamed.
#[rstest]
#[case("underscore-ok")]
#[case("read-null-count-ok")]
#[case("restore-end-ok")]
fn a_mutant_the_documentation_allows_differs_without_blame(#[case] mutant: &str) {
    let mut o = options(LibrarySpec::Embedded, LibrarySpec::Embedded, 1);
    o.new.mutant = Some(mutant.into());
    let r = run(&o);
    let text = listing(&r);
    assert!(!r.differences.is_empty(), "{text}");
    for g in &r.differences {
        assert_eq!(g.blame, Blame::Neither, "{text}");
    }
}

/// Mutants that only talk or take their time are the reference all the same.
#[rstest]
#[case("chatty")]
#[case("slow")]
fn a_correct_mutant_differs_nowhere(#[case] mutant: &str) {
    let mut o = options(LibrarySpec::Embedded, LibrarySpec::Embedded, 2);
    o.new.mutant = Some(mutant.into());
    o.new.sequences = 200;
    let r = run(&o);
    assert!(r.differences.is_empty(), "{}", listing(&r));
}

#[rstest]
#[case("INDEX")]
#[case("POINTER")]
#[case("HIGH")]
#[case("POOL")]
#[case("TLS")]
#[case("END_IO")]
#[case("ONE_SESSION")]
#[case("RESTORE_REFUSED")]
#[case("DETACHED")]
#[case("LOGFD")]
#[case("FD_HANDLE")]
#[case("CACHE")]
#[case("SESSION_NAMES")]
fn a_correct_library_built_differently_differs_only_where_both_are_allowed(#[case] design: &str) {
    let lib = common::c_design(design);
    let mut o = options(LibrarySpec::Path(lib), LibrarySpec::Embedded, 1);
    o.sequence_budget = Some(Duration::from_secs(20));
    let r = run(&o);
    let text = listing(&r);
    for g in &r.differences {
        assert_eq!(g.blame, Blame::Neither, "{text}");
        assert!(
            !g.key.call.is_empty() && g.key.new != g.key.old,
            "each difference is named: {g:?}"
        );
    }
}

#[test]
fn the_cli_gates_on_new_differences_and_keeps_a_baseline() {
    let base = [
        "--seed",
        "1",
        "--sequences",
        "300",
        "--shrink-budget-ms",
        "2000",
    ];
    let same = common::cli_with(
        &[&["diff", "--mutant", "chatty"][..], &base[..]].concat(),
        |c| c,
    );
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("no differences"), "{}", same.stdout);

    let json = common::scratch("diff", "end-null-ok.json");
    let md = common::scratch("diff", "end-null-ok.md");
    let html = common::scratch("diff", "end-null-ok.html");
    let baseline = common::scratch("diff", "baseline.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["diff", "--mutant", "end-null-ok"]
            .iter()
            .chain(&base)
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let call = |v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        common::cli_with(&refs, |c| c)
    };
    let found = call(args(&[
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--write-baseline",
        baseline.to_str().unwrap(),
    ]));
    assert_eq!(found.code, 1, "{}{}", found.stdout, found.stderr);
    assert!(
        found.stdout.contains("DsBackupEnd(NULL)"),
        "{}",
        found.stdout
    );
    let report: DiffReport = serde_json::from_str(&std::fs::read_to_string(&json).unwrap())
        .expect("the JSON reads back");
    assert!(!report.differences.is_empty());
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(markdown.contains("| 1 | DsBackupEnd(NULL) |"), "{markdown}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<td><code>DsBackupEnd(NULL)</code></td>"),
        "{page}"
    );

    // Known differences pass; a known one that went away fails, and says so.
    let known = call(args(&["--baseline", baseline.to_str().unwrap()]));
    assert_eq!(known.code, 0, "{}{}", known.stdout, known.stderr);
    let other = call(
        ["diff", "--mutant", "end-double-ok"]
            .iter()
            .chain(&base)
            .chain(&["--baseline", baseline.to_str().unwrap()])
            .map(|s| s.to_string())
            .collect(),
    );
    assert_eq!(other.code, 1, "{}", other.stdout);
    assert!(
        other.stdout.contains("no longer differs"),
        "{}",
        other.stdout
    );

    let bad = common::cli_with(&["diff", "--lib", "/nonexistent/lib.so"], |c| c);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("new library"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
}

/// Two builds of the stand-in DC's client, one with a deliberate defect, both talking to one
/// server that runs one backup at a time for all its clients: the sides must never be taken
/// for each other's refusals, and the defect shows on its side.
#[cfg(unix)]
#[rstest]
#[case(None, None)]
#[case(Some("SECOND_CORRUPTS"), Some("prepare.distinct"))]
#[case(Some("RESTORE_LEAK"), Some("end.release"))]
fn two_builds_of_the_dc_client_on_one_server(
    #[case] defect: Option<&str>,
    #[case] aimed: Option<&str>,
) {
    let dc = common::dc(0);
    let client = |d: Option<&str>| LibrarySpec::Path(common::dc_client(d));
    let mut o = options(client(defect), client(None), 1);
    o.new.sequences = 300;
    for side in [&mut o.new, &mut o.old] {
        side.worker_env
            .push(("NTDSB_DC_SOCKET".into(), dc.socket.clone().into()));
    }
    let r = run(&o);
    let text = listing(&r);
    assert_eq!(r.refused, 0, "no sequence was left out:\n{text}");
    match aimed {
        None => assert!(r.differences.is_empty(), "{text}"),
        Some(aimed) => {
            assert!(new_breaks(&r.differences[0].blame), "{text}");
            assert!(
                r.differences
                    .iter()
                    .any(|g| g.sources.iter().any(|s| s == aimed) && new_breaks(&g.blame)),
                "{aimed} names the defect:\n{text}"
            );
        }
    }
}
