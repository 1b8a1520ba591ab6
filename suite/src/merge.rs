//! Combines shard reports (`run --partition K/N`) into the report of the whole run.

use crate::catalogue::CHECKS;
use ntdsbcli_harness::report::{CheckReport, Outcome, Report};

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

pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?.clone();
    let mut seen = Vec::new();
    for r in &reports {
        same(
            "library sha256",
            first.library.sha256.clone(),
            r.library.sha256.clone(),
        )?;
        same(
            "seed",
            first.config.seed.to_string(),
            r.config.seed.to_string(),
        )?;
        same(
            "sequences",
            first.config.sequences.to_string(),
            r.config.sequences.to_string(),
        )?;
        same(
            "server",
            first.config.server.clone(),
            r.config.server.clone(),
        )?;
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
