use super::{Outcome, Report};
use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// The report for CI: one test case per check; fail, crash and timeout are failures, skip and
/// inconclusive are skipped, warn passes with its detail as output.
pub fn to_junit(r: &Report) -> String {
    let mut report = JReport::new("ntdsbcli-conform");
    let mut suite = TestSuite::new(format!("ntdsbcli-conform: {}", r.library.path));
    for c in &r.checks {
        let status = match c.outcome {
            Outcome::Pass | Outcome::Warn => TestCaseStatus::success(),
            Outcome::Skip | Outcome::Inconclusive => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!("{}: {}", c.outcome.as_str(), c.detail));
                s
            }
            Outcome::Fail | Outcome::Crash | Outcome::Timeout => {
                let kind = if c.outcome == Outcome::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut s = TestCaseStatus::non_success(kind);
                s.set_message(format!("{}: {}", c.outcome.as_str(), c.detail));
                s.set_type(c.outcome.as_str());
                if let Some(repro) = &c.repro {
                    s.set_description(repro.clone());
                }
                s
            }
        };
        let mut case = TestCase::new(c.id.clone(), status);
        case.set_classname(format!("{} ({:?})", c.requirement, c.strength).to_lowercase());
        if c.outcome == Outcome::Warn {
            case.set_system_out(c.detail.clone());
        }
        suite.add_test_case(case);
    }
    suite.set_time(Duration::from_millis(r.stats.wall_ms));
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}
