//! Combines shard reports (`run --partition K/N`) into the report of the whole run.

use crate::catalogue::CHECKS;
use ntdsbcli_harness::report::{CheckReport, Coverage, Outcome, Report};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no reports to merge")]
    Empty,
    #[error(
        "{what} differs between the shard reports ({a} and {b}): they are not shards of one run"
    )]
    Mismatch {
        what: &'static str,
        a: String,
        b: String,
    },
    #[error("a report is not a shard (no partition recorded): {0}")]
    NotAShard(String),
    #[error("shard {0} is given twice")]
    Duplicate(String),
}

fn same(what: &'static str, a: String, b: String) -> Result<(), MergeError> {
    if a == b {
        Ok(())
    } else {
        Err(MergeError::Mismatch { what, a, b })
    }
}

/// A field of a report, as text for a message.
type Field = fn(&Report) -> String;

pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?.clone();
    let mut seen = Vec::new();
    // What every shard must share with the first.
    let shared: [(&str, Field); 4] = [
        ("library sha256", |r| r.library.sha256.clone()),
        ("seed", |r| r.config.seed.to_string()),
        ("sequences", |r| r.config.sequences.to_string()),
        ("server", |r| r.config.server.clone()),
    ];
    for r in &reports {
        for (what, field) in shared {
            same(what, field(&first), field(r))?;
        }
        let part = r
            .config
            .partition
            .clone()
            .ok_or_else(|| MergeError::NotAShard(r.library.path.clone()))?;
        if seen.contains(&part) {
            return Err(MergeError::Duplicate(part));
        }
        seen.push(part);
    }
    let mut merged = first.clone();
    merged.config.partition = None;
    merged.checks.clear();
    merged.complete = reports.iter().all(|r| r.complete);
    merged.stats.sequences = reports.iter().map(|r| r.stats.sequences).sum();
    merged.stats.calls = reports.iter().map(|r| r.stats.calls).sum();
    merged.stats.workers = reports.iter().map(|r| r.stats.workers).sum();
    merged.stats.wall_ms = reports.iter().map(|r| r.stats.wall_ms).max().unwrap_or(0);
    for def in CHECKS {
        let parts: Vec<(&str, &CheckReport)> = reports
            .iter()
            .flat_map(|r| {
                let p = r.config.partition.as_deref().unwrap_or("");
                r.checks
                    .iter()
                    .filter(|c| c.id == def.id)
                    .map(move |c| (p, c))
            })
            .collect();
        // The worst outcome stands; for the split sequence phase, the shard that found it.
        let Some(&(part, worst)) = parts.iter().max_by_key(|(_, c)| c.outcome) else {
            continue;
        };
        let mut c = worst.clone();
        if parts.len() > 1 {
            // The split sequence phase covered what its shards did together.
            let each: Vec<&Coverage> = parts
                .iter()
                .filter_map(|(_, c)| c.coverage.as_ref())
                .collect();
            c.coverage = each.first().map(|first| Coverage {
                unit: first.unit.clone(),
                done: each.iter().map(|v| v.done).sum(),
                planned: each.iter().map(|v| v.planned).sum(),
            });
            if c.outcome == Outcome::Pass {
                let details: Vec<String> = parts
                    .iter()
                    .map(|(p, c)| format!("shard {p}: {}", c.detail))
                    .collect();
                c.detail = details.join("; ");
            } else {
                c.detail = format!("shard {part}: {}", c.detail);
            }
        }
        merged.checks.push(c);
    }
    merged.recompute_verdict();
    Ok(merged)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ntdsbcli_harness::report::{Config, Library, Stats, Strength, Tool, Verdict};

    /// A report with these checks; `part` is its shard ("K/N") when given.
    pub(crate) fn report(part: Option<&str>, checks: &[(&str, Outcome, &str)]) -> Report {
        let mut r = Report {
            schema: 1,
            tool: Tool {
                name: "ntdsbcli-conform".into(),
                version: "0".into(),
            },
            library: Library {
                path: "lib.so".into(),
                sha256: "ab".into(),
                size: 1,
                exports: vec![],
                routed_imports: vec![],
                page_heap: false,
                version: None,
            },
            config: Config {
                seed: 7,
                sequences: 100,
                server: "s".into(),
                accept_hresult: false,
                call_timeout_ms: 1,
                mutant: None,
                partition: part.map(String::from),
                user: None,
                fault_sites: None,
                page_heap: None,
            },
            verdict: Verdict::Conformant,
            complete: true,
            checks: checks
                .iter()
                .map(|(id, outcome, detail)| CheckReport {
                    id: id.to_string(),
                    requirement: "REQ".into(),
                    strength: Strength::Documented,
                    outcome: *outcome,
                    detail: detail.to_string(),
                    repro: None,
                    ms: None,
                    coverage: None,
                })
                .collect(),
            stats: Stats {
                sequences: 50,
                calls: 10,
                wall_ms: 5,
                workers: 1,
            },
        };
        r.recompute_verdict();
        r
    }

    #[test]
    fn shards_merge_into_catalogue_order_with_the_worst_outcome() {
        let a = report(
            Some("1/2"),
            &[
                ("seq.model", Outcome::Pass, "50 ran"),
                ("end.null", Outcome::Pass, "ok"),
            ],
        );
        let b = report(
            Some("2/2"),
            &[
                ("end.ok", Outcome::Pass, "ok"),
                ("seq.model", Outcome::Fail, "broke"),
            ],
        );
        let m = merge(vec![a, b]).expect("merges");
        let ids: Vec<&str> = m.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["end.ok", "end.null", "seq.model"]);
        assert_eq!(m.checks[2].outcome, Outcome::Fail);
        assert_eq!(m.checks[2].detail, "shard 2/2: broke");
        assert_eq!(m.verdict, Verdict::Nonconformant);
        assert_eq!(
            (m.stats.sequences, m.stats.calls, m.stats.wall_ms),
            (100, 20, 5)
        );
        assert_eq!(m.config.partition, None);
    }

    #[test]
    fn passing_split_phase_keeps_every_shards_detail() {
        let a = report(Some("1/2"), &[("seq.model", Outcome::Pass, "50 ran")]);
        let b = report(Some("2/2"), &[("seq.model", Outcome::Pass, "49 ran")]);
        let m = merge(vec![a, b]).expect("merges");
        assert_eq!(m.checks[0].detail, "shard 1/2: 50 ran; shard 2/2: 49 ran");
    }

    #[test]
    fn shards_of_different_runs_or_twice_the_same_are_refused() {
        let a = report(Some("1/2"), &[]);
        let mut b = report(Some("2/2"), &[]);
        b.config.seed = 8;
        assert!(matches!(
            merge(vec![a.clone(), b]),
            Err(MergeError::Mismatch { what: "seed", .. })
        ));
        assert!(matches!(
            merge(vec![a.clone(), a.clone()]),
            Err(MergeError::Duplicate(p)) if p == "1/2"
        ));
        assert!(matches!(
            merge(vec![report(None, &[])]),
            Err(MergeError::NotAShard(_))
        ));
        assert!(matches!(merge(vec![]), Err(MergeError::Empty)));
    }
}
