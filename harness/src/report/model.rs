//! The report as data (contract: design.md's report fields), with its JSON Schema derived
//! from it; the writers beside it only render it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 1;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Skip,
    Inconclusive,
    Fail,
    Timeout,
    Crash,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Skip => "skip",
            Outcome::Inconclusive => "inconclusive",
            Outcome::Fail => "fail",
            Outcome::Timeout => "timeout",
            Outcome::Crash => "crash",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Pass,
            Outcome::Warn,
            Outcome::Skip,
            Outcome::Inconclusive,
            Outcome::Fail,
            Outcome::Timeout,
            Outcome::Crash,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// Makes the library nonconformant (design §6).
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Crash | Outcome::Timeout)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    Documented,
    Inferred,
}

impl Strength {
    /// As the JSON report spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Strength::Documented => "documented",
            Strength::Inferred => "inferred",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Conformant,
    Nonconformant,
    Inconclusive,
    /// Written while the run goes on (`complete: false`): a report left by a run that was
    /// interrupted never claims a verdict it did not reach.
    Incomplete,
}

impl Verdict {
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Verdict {
        let mut v = Verdict::Conformant;
        for o in outcomes {
            if o.is_failure() {
                return Verdict::Nonconformant;
            }
            if *o == Outcome::Inconclusive {
                v = Verdict::Inconclusive;
            }
        }
        v
    }

    /// The process exit code for this verdict (design §6): 0, 1 or 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Conformant => 0,
            Verdict::Nonconformant => 1,
            Verdict::Inconclusive | Verdict::Incomplete => 3,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Conformant => "conformant",
            Verdict::Nonconformant => "nonconformant",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Incomplete => "incomplete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    /// The check's id (`ntdsbcli-conform list`), never renamed.
    pub id: String,
    /// The rules it verifies: REQ-xx of docs/spec.md, or a design decision ("design §4").
    pub requirement: String,
    pub strength: Strength,
    pub outcome: Outcome,
    /// A sentence with the values seen; a failure names the rule it breaks.
    pub detail: String,
    /// A C program that shows the failure on its own, when there is one.
    pub repro: Option<String>,
    /// Wall time the verifier spent on this check, confirmation included (absent in reports
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// How much of what the check planned ran, for the checks a time budget or an early stop
    /// can end sooner (seq.model, fault.cleanup, end.release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// How far a check got: `done` of `planned` units ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Coverage {
    /// What was counted: "sequences", "fault sites" or "cycles" (end.release's, all paths).
    pub unit: String,
    pub done: u64,
    pub planned: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Library {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub exports: Vec<String>,
    /// The library's own imports of C runtime and OS functions that the worker routes through
    /// its wrappers; absent when none are (the embedded reference, a library without a PLT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routed_imports: Vec<String>,
    /// The library's allocations went to the page heap: each block on pages of its own,
    /// freed blocks inaccessible.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub page_heap: bool,
    /// A Windows DLL's version resource, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionResource>,
}

/// VERSIONINFO of a DLL: the numeric versions and the standard strings (CompanyName,
/// ProductName, FileVersion, ...) of its first translation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub strings: std::collections::BTreeMap<String, String>,
}

impl VersionResource {
    /// One line for people: product, company and versions.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for key in ["ProductName", "CompanyName", "FileDescription"] {
            if let Some(v) = self.strings.get(key) {
                parts.push(v.clone());
            }
        }
        if let Some(v) = &self.file_version {
            parts.push(format!("file version {v}"));
        }
        if let Some(v) = &self.product_version {
            parts.push(format!("product version {v}"));
        }
        parts.join(", ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Config {
    pub seed: u64,
    pub sequences: u64,
    pub server: String,
    pub accept_hresult: bool,
    pub call_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
    /// "K/N" when this report is one shard of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The user given to DsSetAuthIdentity (never the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Resource calls failed per session path in fault.cleanup (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_sites: Option<u64>,
    /// The page heap was asked for (`--no-page-heap` turns it off); whether it was in use
    /// is `library.page_heap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_heap: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    pub sequences: u64,
    pub calls: u64,
    pub wall_ms: u64,
    pub workers: u64,
}

/// The report of one run of ntdsbcli-conform (schema version 1): the library, how it was
/// run, the verdict and each check's outcome. Written as the run goes; `complete` is true
/// once it has ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub schema: u32,
    pub tool: Tool,
    pub library: Library,
    pub config: Config,
    pub verdict: Verdict,
    /// False while the run is still going (the file is rewritten as checks finish).
    pub complete: bool,
    pub checks: Vec<CheckReport>,
    pub stats: Stats,
}

impl Report {
    /// How many checks had each outcome (passing kinds first, then failing, then those that
    /// decided nothing), outcomes with none left out.
    pub fn outcome_counts(&self) -> Vec<(Outcome, usize)> {
        [
            Outcome::Pass,
            Outcome::Warn,
            Outcome::Fail,
            Outcome::Crash,
            Outcome::Timeout,
            Outcome::Inconclusive,
            Outcome::Skip,
        ]
        .into_iter()
        .map(|o| (o, self.checks.iter().filter(|c| c.outcome == o).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// "verdict (21 checks: 19 pass, 2 skip)", for every writer.
    pub fn counts_line(&self) -> String {
        let parts: Vec<String> = self
            .outcome_counts()
            .iter()
            .map(|(o, n)| format!("{n} {}", o.as_str()))
            .collect();
        format!(
            "{} ({} checks: {})",
            self.verdict.as_str(),
            self.checks.len(),
            parts.join(", ")
        )
    }

    /// The verdict of the checks decided so far, or `incomplete` while the run goes on.
    pub fn recompute_verdict(&mut self) {
        self.verdict = if self.complete {
            Verdict::of(self.checks.iter().map(|c| &c.outcome))
        } else {
            Verdict::Incomplete
        };
    }
}

/// For the writers' tests: `text` holds each of `present` and none of `absent`.
#[cfg(test)]
pub(crate) fn assert_has(text: &str, present: &[&str], absent: &[&str]) {
    for p in present {
        assert!(text.contains(p), "{p:?} is missing from:\n{text}");
    }
    for a in absent {
        assert!(!text.contains(a), "{a:?} should not be in:\n{text}");
    }
}

/// A small finished report for the writers' tests: one check of each kind that reads
/// differently (a pass with a time, a failure with a repro, a skip, a design-rule check).
#[cfg(test)]
pub(crate) fn sample() -> Report {
    let check = |id: &str, req: &str, strength, outcome, ms| CheckReport {
        id: id.into(),
        requirement: req.into(),
        strength,
        outcome,
        detail: format!("{id} detail"),
        repro: (outcome == Outcome::Fail).then(|| "int main(void) { return 1; }".into()),
        ms,
        coverage: None,
    };
    let mut r = Report {
        schema: SCHEMA,
        tool: Tool {
            name: "ntdsbcli-conform".into(),
            version: "0".into(),
        },
        library: Library {
            path: "lib.so".into(),
            sha256: "00".into(),
            size: 1,
            exports: vec!["DsBackupEnd".into()],
            routed_imports: vec![],
            page_heap: false,
            version: None,
        },
        config: Config {
            seed: 1,
            sequences: 10,
            server: "\\\\localhost".into(),
            accept_hresult: false,
            call_timeout_ms: 3000,
            mutant: None,
            partition: None,
            user: None,
            fault_sites: None,
            page_heap: None,
        },
        verdict: Verdict::Incomplete,
        complete: true,
        checks: vec![
            check(
                "end.ok",
                "REQ-02",
                Strength::Documented,
                Outcome::Pass,
                Some(12),
            ),
            check(
                "end.double",
                "REQ-06",
                Strength::Inferred,
                Outcome::Fail,
                Some(30),
            ),
            check(
                "end.concurrent",
                "design §4",
                Strength::Inferred,
                Outcome::Pass,
                None,
            ),
            check(
                "free.null",
                "REQ-31",
                Strength::Inferred,
                Outcome::Skip,
                Some(0),
            ),
        ],
        stats: Stats::default(),
    };
    r.recompute_verdict();
    r
}
