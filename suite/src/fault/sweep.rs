//! The fault sweep: count each path's routed calls, fail each in turn, confirm what looks
//! wrong in a fresh worker, and turn the findings into fault.cleanup's verdict. The policy
//! (budgets, confirmation, grouping) lives here; the rules of one run are `rules.rs`'s.

use super::programs::{confirm_program, count_program, site_program};
use super::repro;
use super::rules::{judge_codes, judge_confirmation, judge_run, site_name, Growth};
use crate::checks::release::{paths, Path};
use crate::checks::{Ctx, Eval};
use ntdsbcli_harness::codes::describe;
use ntdsbcli_harness::imports::{Hit, ROUTABLE};
use ntdsbcli_harness::program::{Observation, Op, Program, Step};
use ntdsbcli_harness::report::Outcome;
use ntdsbcli_harness::worker::{RunResult, Supervisor};
use ntdsbcli_harness::HarnessError;

/// The file name of the bundled reference's library build (fixtures/reference-dll).
pub static REFERENCE_FILE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{}ntdsbcli_ref{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
});

/// The reference's library build beside the CLI binary `exe`: cargo builds it into `deps/`
/// with every build of the CLI (so that one is never stale); an installed copy sits beside.
pub fn reference_library(exe: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = exe.parent()?;
    [
        dir.join("deps").join(REFERENCE_FILE.as_str()),
        dir.join(REFERENCE_FILE.as_str()),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Fresh-worker confirmations at most, and how many reproduced findings make the check fail
/// without confirming the rest.
const CONFIRM_MAX: usize = 12;
const REPRODUCED_ENOUGH: usize = 3;
/// Findings named in the detail at most.
const LISTED_MAX: usize = 6;

/// A site program's result, `faulted` the steps of its faulted runs: None when every rule
/// held.
fn judge_site(
    p: &Path,
    k: u64,
    c: &Counted,
    r: &RunResult,
    faulted: &[Step],
) -> Option<(Outcome, String)> {
    let (trace, base) = (&c.trace, c.base);
    match r {
        RunResult::Died(d) => {
            let site = trace
                .get(k as usize - 1)
                .map(|h| site_name(h, &p.body))
                .unwrap_or_else(|| format!("resource call {k}"));
            let outcome = d.death.outcome();
            // The faulted runs' steps are the body, then the clean-up.
            let in_run = |op| faulted.iter().any(|s| s.index() == Some(op));
            let call = match (d.op, d.step) {
                (Some(op), Some(i)) if in_run(op) => Some(
                    p.body
                        .get(i)
                        .map(|op| op.describe())
                        .unwrap_or_else(|| "the clean-up End".into()),
                ),
                _ => None,
            };
            let mut s = format!("{site} failed; then");
            if let Some(call) = call {
                s.push_str(&format!(" in {call},"));
            }
            s.push_str(&format!(" {}", d.death.describe()));
            if let Some(out) = &d.last_output {
                s.push_str(&format!(" (last output: {out:?})"));
            }
            Some((outcome, s))
        }
        RunResult::Done(obs) => {
            let at = |i: usize| {
                faulted
                    .get(i)
                    .and_then(|s| s.index())
                    .and_then(|i| obs.get(i))
            };
            let first = at(0).and_then(|o| judge_codes(&p.body, o, c.prepared));
            let second = at(1).and_then(|o| judge_run(&p.body, o, Some(base)));
            first.or(second).map(|why| (Outcome::Fail, why))
        }
    }
}

/// Why nothing is routed on a platform whose wrappers are still to come.
pub const NOTHING_ROUTABLE: &str = "this build routes no imports on this platform";

/// The skip of a library none of whose resource calls could be routed, with the reason.
pub fn skip_unrouted(why: &str) -> Eval {
    Eval::new(
        Outcome::Skip,
        format!("not run: none of the library's resource calls could be routed ({why})"),
    )
}

/// How many sites and how long: `sites` per path at most, and `budget` for the whole sweep,
/// shared evenly by the paths (a library that talks to a server takes milliseconds a call).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub sites: u64,
    pub budget: std::time::Duration,
    /// Calls wait on a server and sessions may overlap: each path is counted and swept on
    /// workers of its own, all paths at once, each with the whole budget (`pace`).
    pub spread: bool,
}

/// One thing the sweep found, on a path, at a site when it was not the count run.
pub struct Finding<'a> {
    pub outcome: Outcome,
    pub what: String,
    pub path: &'a str,
    site: Option<(usize, u64)>,
}

/// What a path's count run saw: its sites, the calls in order, and what it held with no fault.
#[derive(Default)]
struct Counted {
    sites: u64,
    trace: Vec<Hit>,
    base: Growth,
    /// DsRestorePrepare refused with no fault (an online server): no restore session to
    /// judge, so the path is not swept.
    refused: Option<i32>,
    /// Every DsBackupPrepare of the path returned S_OK with no fault.
    prepared: bool,
}

/// The sweep's findings and its bookkeeping.
#[derive(Default)]
struct Found<'a> {
    findings: Vec<Finding<'a>>,
    tried: u64,
    cut_short: usize,
    timed_out: Vec<String>,
    not_reproduced: usize,
    attempts: usize,
    reproduced: usize,
}

impl<'a> Found<'a> {
    /// Adds what another path's sweep found, after what this one holds.
    fn absorb(&mut self, other: Found<'a>) {
        self.findings.extend(other.findings);
        self.tried += other.tried;
        self.cut_short += other.cut_short;
        self.timed_out.extend(other.timed_out);
        self.not_reproduced += other.not_reproduced;
        self.attempts += other.attempts;
        self.reproduced += other.reproduced;
    }
}

/// Runs fault.cleanup in the workers of `sup`, which route the library's imports;
/// `why_none` says why nothing could be routed when nothing was. Returns the judgement and,
/// for a failure, the C repro of its first site.
pub fn run(
    sup: &mut Supervisor,
    ctx: &Ctx,
    limits: Limits,
    why_none: Option<&str>,
) -> Result<(Eval, Option<String>), HarnessError> {
    if sup.routed().is_empty() {
        let why = why_none.unwrap_or(if ROUTABLE.is_empty() {
            NOTHING_ROUTABLE
        } else {
            "it imports none of them: linked statically, or raw system calls"
        });
        let e = skip_unrouted(why);
        return Ok((e, None));
    }
    let paths = paths(ctx);
    let mut found = Found::default();
    let counted = count(sup, &paths, limits.spread, &mut found)?;
    if counted.iter().all(|c| c.sites == 0) && found.findings.is_empty() {
        let e = Eval::new(
            Outcome::Skip,
            format!(
                "not run: the library made none of its routed calls ({}) on any path; nothing to fail",
                sup.routed().join(", ")
            ),
        );
        return Ok((e, None));
    }
    let swept = paths
        .iter()
        .enumerate()
        .filter(|(i, _)| counted[*i].refused.is_none());
    if limits.spread {
        // At once, each path in a supervisor of its own: the confirmation caps then hold per
        // path, and the findings keep path order.
        let founds = crate::pace::on_own_workers(sup.spec(), swept.collect(), |own, (i, p)| {
            let mut f = Found::default();
            sweep_path(
                own,
                (i, p),
                &counted[i],
                limits.sites,
                limits.budget,
                &mut f,
            )?;
            Ok(f)
        });
        for f in founds {
            found.absorb(f?);
        }
    } else {
        let share = limits.budget / paths.len() as u32;
        for (i, p) in swept {
            sweep_path(sup, (i, p), &counted[i], limits.sites, share, &mut found)?;
        }
    }
    Ok(judge_sweep(&paths, &counted, limits, found))
}

/// Counts each path's routed calls with no fault.
fn count<'a>(
    sup: &mut Supervisor,
    paths: &'a [Path],
    spread: bool,
    found: &mut Found<'a>,
) -> Result<Vec<Counted>, HarnessError> {
    let (programs, steps): (Vec<Program>, Vec<Step>) = paths.iter().map(count_program).unzip();
    let runs = match spread.then(|| crate::pace::run_spread(sup.spec(), &programs)) {
        Some(Some(runs)) => runs,
        _ => sup.run(&programs, &mut |_, _| {})?,
    };
    Ok(paths
        .iter()
        .zip(&runs)
        .zip(steps)
        .map(|((p, r), step)| {
            let f = match r {
                RunResult::Done(obs) => step
                    .index()
                    .and_then(|i| obs.get(i))
                    .and_then(|o| o.fault.clone()),
                RunResult::Died(d) => {
                    found.findings.push(Finding {
                        outcome: d.death.outcome(),
                        what: format!("with no fault at all, {}", d.death.describe()),
                        path: p.name,
                        site: None,
                    });
                    None
                }
            }
            .unwrap_or_default();
            Counted {
                sites: f.sweep.sites,
                base: Growth::of(&f),
                trace: f.sweep.trace,
                refused: restore_refused(p, count_steps(r, step)),
                prepared: prepared(p, count_steps(r, step)),
            }
        })
        .collect())
}

/// The body's observations in the count run (no fault, its run at `step`), when it ran to
/// its end.
fn count_steps(r: &RunResult, step: Step) -> Option<&[Observation]> {
    let RunResult::Done(obs) = r else {
        return None;
    };
    Some(&obs.get(step.index()?)?.steps)
}

/// Whether every DsBackupPrepare of the count run (no fault) returned S_OK.
fn prepared(p: &Path, steps: Option<&[Observation]>) -> bool {
    steps.is_some_and(|steps| {
        p.body
            .iter()
            .zip(steps)
            .all(|(op, o)| !matches!(op, Op::Prepare(_)) || o.rc == Some(0))
    })
}

/// The code of a DsRestorePrepare that the count run (no fault) saw refused.
fn restore_refused(p: &Path, steps: Option<&[Observation]>) -> Option<i32> {
    let steps = steps?;
    p.body.iter().zip(steps).find_map(|(op, o)| match op {
        Op::RestorePrepare(_) => o.rc.filter(|&rc| rc != 0),
        _ => None,
    })
}

/// Fails each site of one path in turn, within its share of the budget. The first death on a
/// path ends its sweep: the sites after it would mostly die the same way, and each hang costs
/// the whole call timeout.
fn sweep_path<'a>(
    sup: &mut Supervisor,
    (i, p): (usize, &'a Path),
    c: &Counted,
    cap: u64,
    share: std::time::Duration,
    found: &mut Found<'a>,
) -> Result<(), HarnessError> {
    let n = c.sites.min(cap);
    let (programs, faulted): (Vec<Program>, Vec<Vec<Step>>) =
        (1..=n).map(|k| site_program(p, k)).unzip();
    let start = std::time::Instant::now();
    let mut out_of_time = false;
    let results = sup.run_until(&programs, &mut |_, r| {
        out_of_time = start.elapsed() > share;
        matches!(r, RunResult::Done(_)) && !out_of_time
    })?;
    for (j, r) in results.iter().enumerate() {
        let Some(r) = r else {
            if out_of_time {
                found.timed_out.push(format!("{} after {j} of {n}", p.name));
            } else {
                found.cut_short += 1;
            }
            break;
        };
        found.tried += 1;
        let k = j as u64 + 1;
        let Some((outcome, what)) = judge_site(p, k, c, r, &faulted[j]) else {
            continue;
        };
        let seen = if outcome == Outcome::Fail {
            confirm(sup, (p, k), c, what, found)?.map(|w| (Outcome::Fail, w))
        } else {
            Some((outcome, what))
        };
        if let Some((outcome, what)) = seen {
            found.findings.push(Finding {
                outcome,
                what,
                path: p.name,
                site: Some((i, k)),
            });
        }
    }
    Ok(())
}

/// A wrong code or a leak seen in a shared worker must come again in a fresh one, with
/// readings that wait for threads on their way out, and a leak in most of many repetitions. Once a few have come again the check
/// fails anyway, and the rest are listed as seen; a library none of whose findings come
/// again (threads that exit late on a loaded machine) costs a bounded number of workers.
fn confirm(
    sup: &mut Supervisor,
    (p, k): (&Path, u64),
    c: &Counted,
    seen: String,
    found: &mut Found<'_>,
) -> Result<Option<String>, HarnessError> {
    if found.reproduced >= REPRODUCED_ENOUGH {
        return Ok(Some(seen));
    }
    if found.attempts >= CONFIRM_MAX {
        found.not_reproduced += 1;
        return Ok(None);
    }
    found.attempts += 1;
    let (program, faulted) = confirm_program(p, k);
    let again = sup.run_fresh(&[program])?;
    let why = match &again[0] {
        died @ RunResult::Died(_) => judge_site(p, k, c, died, &faulted).map(|(_, w)| w),
        RunResult::Done(obs) => judge_confirmation(&p.body, obs, c.base, c.prepared),
    };
    match &why {
        Some(_) => found.reproduced += 1,
        None => found.not_reproduced += 1,
    }
    Ok(why)
}

/// The outcome, the detail and the repro from everything the sweep found.
fn judge_sweep(
    paths: &[Path],
    counted: &[Counted],
    limits: Limits,
    found: Found<'_>,
) -> (Eval, Option<String>) {
    let cap = limits.sites;
    let per_path: Vec<String> = paths
        .iter()
        .zip(counted)
        .map(|(p, c)| match (c.refused, c.sites) {
            (Some(rc), _) => format!(
                "{} not swept: DsRestorePrepare refused with {} (no restore session to judge)",
                p.name,
                describe(rc)
            ),
            (None, n) if n > cap => format!("{} {cap} of {n}", p.name),
            (None, n) => format!("{} {n}", p.name),
        })
        .collect();
    let budget_note = if found.timed_out.is_empty() {
        String::new()
    } else {
        format!(
            "; stopped by the time budget ({} ms, --fault-budget-ms): {}",
            limits.budget.as_millis(),
            found.timed_out.join(", ")
        )
    };
    let tried = found.tried;
    let planned: u64 = counted
        .iter()
        .filter(|c| c.refused.is_none())
        .map(|c| c.sites.min(cap))
        .sum();
    let worst = [Outcome::Crash, Outcome::Timeout, Outcome::Fail]
        .into_iter()
        .find(|o| found.findings.iter().any(|f| f.outcome == *o));
    let Some(worst) = worst else {
        let mut s = format!(
            "a failure of each of {tried} resource calls was handled: no crash or hang, End returned S_OK after every failure but its own, nothing left held (calls per path: {})",
            per_path.join("; ")
        );
        s.push_str(&budget_note);
        if found.not_reproduced > 0 {
            s.push_str(&format!(
                "; {} finding(s) in a shared worker did not come again in a fresh one (or were not confirmed)",
                found.not_reproduced
            ));
        }
        let e = Eval::new(Outcome::Pass, s).covering("fault sites", tried, planned);
        return (e, None);
    };
    let mut findings = found.findings;
    findings.sort_by_key(|f| f.outcome != worst);
    let listed = group(&findings);
    let mut detail = listed
        .iter()
        .take(LISTED_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if listed.len() > LISTED_MAX {
        detail.push_str(&format!(" (and {} more)", listed.len() - LISTED_MAX));
    }
    let cut = match found.cut_short {
        0 => String::new(),
        n => format!("; the rest of {n} path(s) not tried after its worker died"),
    };
    detail.push_str(&format!(
        " [{tried} resource calls failed one at a time; calls per path: {}{cut}]{budget_note}",
        per_path.join("; ")
    ));
    let repro = findings
        .iter()
        .filter(|f| f.outcome == worst)
        .find_map(|f| Some((f.site?, &f.what)))
        .map(|((i, k), what)| repro::render(paths[i].name, &paths[i].body, k, what));
    let e = Eval::new(worst, detail).covering("fault sites", tried, planned);
    (e, repro)
}

/// One line per distinct finding, naming the first path it was seen on and how many more:
/// one bug in Prepare shows on every path.
pub fn group(findings: &[Finding<'_>]) -> Vec<String> {
    let mut out: Vec<(&str, &str, usize)> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|(w, _, _)| *w == f.what) {
            Some(seen) => seen.2 += 1,
            None => out.push((&f.what, f.path, 0)),
        }
    }
    out.into_iter()
        .map(|(why, path, more)| match more {
            0 => format!("{path}: {why}"),
            1 => format!("{path} (and 1 other path): {why}"),
            n => format!("{path} (and {n} other paths): {why}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::program::{End, HandleArg, Prepare, Text};
    use ntdsbcli_harness::worker::{Death, DeathReport, Place};

    /// A death is named by the call it happened in when it is in any faulted run of its
    /// program: the 2 runs of a site program, the 48 of a confirmation.
    #[test]
    fn a_death_in_any_faulted_run_names_its_call() {
        let p = Path {
            name: "Prepare/End",
            body: vec![
                Op::Prepare(Prepare::full(true, Text::Lit("localhost".into()), 0, 0)),
                Op::End(End {
                    h: HandleArg::Slot(0),
                }),
            ],
        };
        let c = Counted::default();
        let died_at = |op: usize| {
            RunResult::Died(DeathReport::seen(
                Death::Crash {
                    code: 11,
                    name: "SIGSEGV".into(),
                },
                Place {
                    op: Some(op),
                    step: Some(1),
                },
                None,
            ))
        };
        let (_, site) = site_program(&p, 1);
        let (_, confirm) = confirm_program(&p, 1);
        let last = confirm
            .last()
            .and_then(|s| s.index())
            .expect("a faulted run");
        for (faulted, op) in [(&site, 3), (&confirm, last)] {
            let (_, what) = judge_site(&p, 1, &c, &died_at(op), faulted).expect("a death");
            assert!(what.contains("in DsBackupEnd(h0),"), "{what}");
        }
        // The resting reading and the warm-up are no faulted run: no call is named.
        let (_, what) = judge_site(&p, 1, &c, &died_at(1), &confirm).expect("a death");
        assert!(!what.contains(" in "), "{what}");
    }

    #[test]
    fn one_finding_on_many_paths_is_one_line() {
        let f = |why: &str, path: &'static str| Finding {
            outcome: Outcome::Crash,
            what: why.to_string(),
            path,
            site: None,
        };
        let lines = group(&[
            f(
                "the 1st malloc inside DsBackupPrepareW failed",
                "Prepare/End",
            ),
            f(
                "the 1st malloc inside DsBackupPrepareW failed",
                "End after a failed call",
            ),
            f("the 1st read inside DsBackupRead failed", "read to EOF"),
            f(
                "the 1st malloc inside DsBackupPrepareW failed",
                "lists freed",
            ),
        ]);
        assert_eq!(
            lines,
            [
                "Prepare/End (and 2 other paths): the 1st malloc inside DsBackupPrepareW failed",
                "read to EOF: the 1st read inside DsBackupRead failed",
            ]
        );
    }
}
