//! Each check as its own test case, against `$NTDSBCLI_LIB` when set and the bundled reference
//! otherwise. A check passes the test when it passes or warns; a skip (an absent export, one
//! session at a time, a refused restore) does not fail it and prints its reason; fail, crash,
//! timeout and inconclusive fail it with the check's own detail.

mod common;

use ntdsbcli_conform::harness::report::Outcome;
use rstest::rstest;

#[rstest]
#[case::exports_required("exports.required")]
#[case::prepare_ok("prepare.ok")]
#[case::prepare_bad_args("prepare.bad-args")]
#[case::prepare_failed_leaves_nothing("prepare.failed-leaves-nothing")]
#[case::prepare_distinct("prepare.distinct")]
#[case::prepare_server_name("prepare.server-name")]
#[case::end_ok("end.ok")]
#[case::end_null("end.null")]
#[case::end_double("end.double")]
#[case::end_garbage("end.garbage")]
#[case::end_isolation("end.isolation")]
#[case::end_invalidates("end.invalidates")]
#[case::end_open_file("end.open-file")]
#[case::end_after_failure("end.after-failure")]
#[case::end_buffers_outlive("end.buffers-outlive")]
#[case::end_concurrent("end.concurrent")]
#[case::end_restore_handle("end.restore-handle")]
#[case::end_release("end.release")]
#[case::calls_null_out("calls.null-out")]
#[case::names_format("names.format")]
#[case::file_size("file.size")]
#[case::file_codes("file.codes")]
#[case::fault_cleanup("fault.cleanup")]
#[case::seq_model("seq.model")]
#[case::library_teardown("library.teardown")]
#[case::free_null("free.null")]
fn check(#[case] id: &str) {
    // One check at a time: a library's server may run one backup at a time for all its
    // clients (a domain controller does), and checks running at once would collide there.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lib = common::library_under_test();
    let mut opts = common::options(lib.clone());
    opts.call_timeout = std::time::Duration::from_secs(3);
    opts.only = Some(vec![id.to_string()]);
    let r = ntdsbcli_conform::runner::run(&opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: cannot run: {e}", lib.display()));
    let c = r
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} is missing from the report"));
    if c.outcome == Outcome::Skip {
        // Nothing was shown either way: say why, as the CLI does.
        println!("{id} on {}: skip: {}", lib.display(), c.detail);
        return;
    }
    let ok = matches!(c.outcome, Outcome::Pass | Outcome::Warn);
    assert!(
        ok,
        "{id} on {}: {}: {}",
        lib.display(),
        c.outcome.as_str(),
        c.detail
    );
}

#[test]
fn every_catalogue_check_has_a_case_here() {
    let src = include_str!("checks.rs");
    for c in ntdsbcli_conform::catalogue::CHECKS {
        assert!(
            src.contains(&format!("(\"{}\")", c.id)),
            "{} has no rstest case",
            c.id
        );
    }
}
