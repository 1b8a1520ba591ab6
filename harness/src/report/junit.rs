//! The JUnit XML report: one test case per check, for CI dashboards.

use super::{Outcome, Report};
use quick_junit::{
    NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite,
};
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
        // Grouped by what the check exercises ("end", "prepare", ...); what it rests on goes
        // in properties, where CI tools show it without mangling a class name.
        let group = c.id.split('.').next().unwrap_or(&c.id);
        case.set_classname(format!("ntdsbcli-conform.{group}"));
        case.properties
            .push(Property::new("requirement", c.requirement.as_str()));
        case.properties
            .push(Property::new("strength", c.strength.as_str()));
        case.properties
            .push(Property::new("outcome", c.outcome.as_str()));
        if let Some(ms) = c.ms {
            case.set_time(Duration::from_millis(ms));
        }
        if c.outcome == Outcome::Warn {
            case.set_system_out(c.detail.clone());
        }
        suite.add_test_case(case);
    }
    suite.set_time(Duration::from_millis(r.stats.wall_ms));
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::model::{assert_has, sample};
    use super::*;

    /// Class names group checks by what they exercise, the rule and strength are properties,
    /// and every case, passing ones too, has its time when the report has it.
    #[test]
    fn cases_have_a_group_class_properties_and_a_time() {
        let x = to_junit(&sample());
        assert_has(
            &x,
            &[
                r#"<testcase name="end.ok" classname="ntdsbcli-conform.end" time="0.012">"#,
                r#"<property name="requirement" value="design §4"/>"#,
                r#"<property name="strength" value="inferred"/>"#,
                r#"classname="ntdsbcli-conform.free""#,
                "<failure",
                "<skipped",
            ],
            &["(inferred)"],
        );
    }
}
