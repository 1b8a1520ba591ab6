//! Baselines: a vendor's accepted outcomes, one check per line with the vendor's reason.
//!
//! ```text
//! # ntdsbcli-conform baseline
//! end.garbage  crash  # known: End trusts a magic number; fix due in 2.4
//! end.null     pass
//! ```
//! A run with `--baseline` exits 0 when every check has its baselined outcome and 1 on any
//! difference, a check that now passes included: a fixed check must leave the baseline, or a
//! later regression could hide behind it.

use ntdsbcli_harness::report::{Outcome, Report};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
}

pub struct Entry {
    pub outcome: Outcome,
    pub reason: String,
}

/// A baseline: each listed check's accepted outcome, by check id.
pub type Baseline = BTreeMap<String, Entry>;

pub fn parse(text: &str) -> Result<Baseline, BaselineError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (body, reason) = match raw.split_once('#') {
            Some((b, r)) => (b, r.trim().to_string()),
            None => (raw, String::new()),
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            [id, outcome] => {
                let outcome = Outcome::parse(outcome).ok_or_else(|| BaselineError::Syntax {
                    line,
                    what: format!("unknown outcome {outcome:?}"),
                })?;
                if out
                    .insert(id.to_string(), Entry { outcome, reason })
                    .is_some()
                {
                    return Err(BaselineError::Syntax {
                        line,
                        what: format!("{id} is listed twice"),
                    });
                }
            }
            _ => {
                return Err(BaselineError::Syntax {
                    line,
                    what: "expected `CHECK-ID OUTCOME  # reason`".into(),
                })
            }
        }
    }
    Ok(out)
}

/// The baseline for a report; each line's reason starts as the check's detail, for the
/// vendor to replace with their own.
pub fn render(r: &Report) -> String {
    let w = r.checks.iter().map(|c| c.id.len()).max().unwrap_or(10);
    let mut s = format!(
        "# ntdsbcli-conform baseline for {} (sha256 {})\n# CHECK-ID  OUTCOME  # reason\n",
        r.library.path, r.library.sha256
    );
    for c in &r.checks {
        let reason: String = c.detail.chars().take(100).collect();
        s.push_str(&format!(
            "{:<w$}  {:<12}  # {}\n",
            c.id,
            c.outcome.as_str(),
            reason
        ));
    }
    s
}

/// Every difference between a report and a baseline, as lines for people.
pub fn compare(r: &Report, base: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut diffs = Vec::new();
    for c in &r.checks {
        match base.get(&c.id) {
            None => diffs.push(format!(
                "{}: not in the baseline (now {})",
                c.id,
                c.outcome.as_str()
            )),
            Some(b) if b.outcome != c.outcome => {
                let kind = match (b.outcome.is_failure(), c.outcome.is_failure()) {
                    (false, true) => "newly failing",
                    (true, false) => {
                        "newly passing: change its line in the baseline to the new outcome (or write the baseline again with --write-baseline)"
                    }
                    _ => "changed",
                };
                diffs.push(format!(
                    "{}: {kind} (baseline {}, now {}): {}",
                    c.id,
                    b.outcome.as_str(),
                    c.outcome.as_str(),
                    c.detail
                ));
            }
            Some(_) => {}
        }
    }
    for id in base.keys() {
        if !r.checks.iter().any(|c| &c.id == id) {
            diffs.push(format!("{id}: in the baseline but not in this run"));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::report;

    #[test]
    fn parses_outcomes_reasons_comments_and_blank_lines() {
        let b = parse("# header\n\nend.garbage  crash  # known: fix due in 2.4\nend.null pass\n")
            .expect("parses");
        assert_eq!(b.len(), 2);
        assert_eq!(b["end.garbage"].outcome, Outcome::Crash);
        assert_eq!(b["end.garbage"].reason, "known: fix due in 2.4");
        assert_eq!(b["end.null"].reason, "");
    }

    #[test]
    fn names_the_line_of_a_bad_entry() {
        let err = |t: &str| parse(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err("end.null pass\nend.ok maybe\n"),
            "line 2: unknown outcome \"maybe\""
        );
        assert_eq!(
            err("end.null pass\nend.null fail\n"),
            "line 2: end.null is listed twice"
        );
        assert!(err("end.null\n").starts_with("line 1: expected"));
    }

    #[test]
    fn a_rendered_baseline_parses_back_to_the_reports_outcomes() {
        let r = report(
            None,
            &[
                ("end.null", Outcome::Pass, "ok"),
                ("end.garbage", Outcome::Crash, "boom # not a comment end"),
            ],
        );
        let b = parse(&render(&r)).expect("parses");
        assert_eq!(b["end.null"].outcome, Outcome::Pass);
        assert_eq!(b["end.garbage"].outcome, Outcome::Crash);
        assert!(compare(&r, &b).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let r = report(
            None,
            &[
                ("end.null", Outcome::Fail, "87 wanted"),
                ("end.ok", Outcome::Pass, "ok"),
                ("end.double", Outcome::Pass, "ok"),
            ],
        );
        let b = parse("end.null pass\nend.ok fail\nend.garbage pass\n").expect("parses");
        let d = compare(&r, &b);
        assert_eq!(
            d,
            [
                "end.null: newly failing (baseline pass, now fail): 87 wanted",
                "end.ok: newly passing: change its line in the baseline to the new outcome (or write the baseline again with --write-baseline) (baseline fail, now pass): ok",
                "end.double: not in the baseline (now pass)",
                "end.garbage: in the baseline but not in this run",
            ]
        );
    }
}
