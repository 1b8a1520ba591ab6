//! fault.cleanup (REQ-08, REQ-09, inferred): a backup that fails because a resource failed is
//! still an unsuccessful attempt that End must clean up after. Each session path of
//! end.release runs once with the library's routed resource calls counted; then, for every k,
//! again with the k-th call failed the way that kind of call fails. The library must neither
//! crash nor hang, End must return S_OK on every handle Prepare gave out, and when the path is
//! over nothing the library took may still be held.

use crate::checks::release::{paths, Path};
use crate::checks::{Ctx, Eval};
use ntdsbcli_harness::codes::{describe, ERROR_INVALID_PARAMETER, ERROR_NOT_ENOUGH_MEMORY};
use ntdsbcli_harness::codes::{ERROR_OUTOFMEMORY, E_OUTOFMEMORY};
use ntdsbcli_harness::imports::fault::ordinal;
use ntdsbcli_harness::imports::{Hit, ROUTABLE};
use ntdsbcli_harness::program::{FaultObs, Observation, Op, Program};
use ntdsbcli_harness::report::Outcome;
use ntdsbcli_harness::worker::{RunResult, Supervisor};
use ntdsbcli_harness::HarnessError;

mod repro;

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

/// The warm-up, so that what a first call caches is in place before anything is measured.
fn warm(body: &[Op]) -> Op {
    Op::Repeat {
        n: 1,
        probe_every: 1,
        settle_last: false,
        stop_flat: 0,
        body: body.to_vec(),
    }
}

/// The ops of a site program that run the path with its fault armed, after the resting
/// reading (op 0, which each faulted run's readings are measured against) and the warm-up
/// (op 1): `site_program` builds them in this order.
const FAULTED_OPS: [usize; 2] = [2, 3];

/// The program that counts a path's resource calls.
fn count_program(p: &Path) -> Program {
    Program::new(
        format!("{}, resource calls counted", p.name),
        vec![
            Op::Probe,
            warm(&p.body),
            Op::Faulted {
                at: 0,
                body: p.body.clone(),
            },
        ],
    )
}

/// The program that fails site `k` of a path: twice, so that a library which caches
/// something on its first failure is judged on the second.
fn site_program(p: &Path, k: u64) -> Program {
    let faulted = Op::Faulted {
        at: k,
        body: p.body.clone(),
    };
    Program::new(
        format!("{}, resource call {k} failed", p.name),
        vec![Op::Probe, warm(&p.body), faulted.clone(), faulted],
    )
}

/// Repetitions of a confirmation: the first ones fill what a library keeps bounded (the last
/// few errors, say), then most of the measured ones must grow for a leak.
const CONFIRM_WARM: usize = 16;
const CONFIRM_RUNS: usize = 32;
const CONFIRM_GROWING: usize = 24;

/// The program that confirms site `k` of a path: the failure again and again.
fn confirm_program(p: &Path, k: u64) -> Program {
    let faulted = Op::Faulted {
        at: k,
        body: p.body.clone(),
    };
    let mut ops = vec![Op::Probe, warm(&p.body)];
    ops.extend(std::iter::repeat_n(faulted, CONFIRM_WARM + CONFIRM_RUNS));
    Program::new(
        format!("{}, resource call {k} failed again and again", p.name),
        ops,
    )
    .patiently()
}

/// A confirmation's verdict: a wrong code in any run, or growth in most measured runs (the
/// last of them named). A bounded cache filled during the first runs is no leak.
pub fn judge_confirmation(
    body: &[Op],
    obs: &[Observation],
    base: Growth,
    prepared: bool,
) -> Option<String> {
    let runs: Vec<&Observation> = obs.iter().filter(|o| o.fault.is_some()).collect();
    if let Some(why) = runs.iter().find_map(|o| judge_codes(body, o, prepared)) {
        return Some(why);
    }
    let measured = &runs[runs.len().saturating_sub(CONFIRM_RUNS)..];
    let growing: Vec<String> = measured
        .iter()
        .filter_map(|o| judge_run(body, o, Some(base)))
        .collect();
    if growing.len() < CONFIRM_GROWING {
        return None;
    }
    // Said as the quick run says it, so that one defect on many paths reads as one line.
    growing.last().cloned()
}

/// "the 3rd malloc inside DsBackupPrepareW", or "... in the clean-up" for the step after
/// the body.
pub fn site_name(hit: &Hit, body: &[Op]) -> String {
    let inside = match body.get(hit.step as usize) {
        Some(op) => format!("inside {}", op.export().unwrap_or("the harness")),
        None => "inside the clean-up End".to_string(),
    };
    format!("the {} {} {inside}", ordinal(hit.nth), hit.function)
}

/// What a run of a path held more at its end than at its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Growth {
    pub handles: i64,
    pub threads: i64,
    pub blocks: i64,
    pub bytes: i64,
}

impl Growth {
    pub fn of(f: &FaultObs) -> Growth {
        Growth {
            handles: f.after.handles - f.before.handles,
            threads: f.after.threads - f.before.threads,
            blocks: f.held_after.blocks - f.held_before.blocks,
            bytes: f.held_after.bytes - f.held_before.bytes,
        }
    }

    /// The growth beyond what the same path holds with no fault: a path that leaks anyway is
    /// end.release's finding; fault.cleanup judges what the failure added.
    pub fn beyond(self, base: Growth) -> Growth {
        Growth {
            handles: self.handles - base.handles.max(0),
            threads: self.threads - base.threads.max(0),
            blocks: self.blocks - base.blocks.max(0),
            bytes: self.bytes - base.bytes.max(0),
        }
    }
}

/// What a path still held once it was over, e.g. "1 handle and 2 heap blocks (208 bytes)".
pub fn leftover(g: &Growth) -> Option<String> {
    let mut parts = Vec::new();
    let Growth {
        handles,
        threads,
        blocks,
        bytes,
    } = *g;
    if handles > 0 {
        parts.push(format!(
            "{handles} handle{}",
            if handles == 1 { "" } else { "s" }
        ));
    }
    if threads > 0 {
        parts.push(format!(
            "{threads} thread{}",
            if threads == 1 { "" } else { "s" }
        ));
    }
    if blocks > 0 {
        let mut s = format!("{blocks} heap block{}", if blocks == 1 { "" } else { "s" });
        if bytes > 0 {
            s.push_str(&format!(" ({bytes} bytes)"));
        }
        parts.push(s);
    }
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => {
            let last = parts.pop()?;
            Some(format!("{} and {last}", parts.join(", ")))
        }
    }
}

/// The code rules for one faulted run: a Prepare's S_OK comes with a handle, End returns
/// S_OK on every handle Prepare gave out, and (where Prepare succeeds with no fault) a failed
/// allocation inside Prepare is reported as memory running out.
fn judge_codes(body: &[Op], obs: &Observation, prepared: bool) -> Option<String> {
    judge_run(body, obs, None).or_else(|| prepared.then(|| judge_oom(body, obs)).flatten())
}

/// The rules for one faulted run of a path, by where the failed call landed:
/// - inside Prepare: a failure code, or S_OK with a handle (REQ-20, REQ-26/27);
/// - inside an intermediate call: End still returns S_OK on every handle Prepare gave out
///   (REQ-08);
/// - inside End itself (or the clean-up's End): End may return any code, as "a Win32 or RPC
///   error code otherwise" allows; it is tried once more with no fault, and that try may
///   return S_OK or 87 (A-4: whether the handle stays valid is not documented).
///
/// And, when measured against what the path holds with no fault (`base`), nothing more left
/// over once End has returned (REQ-14, REQ-09).
pub fn judge_run(body: &[Op], obs: &Observation, base: Option<Growth>) -> Option<String> {
    let f = obs.fault.as_ref()?;
    let what = match &f.sweep.hit {
        Some(h) => format!("{} failed", site_name(h, body)),
        None => "no call failed (fewer calls this time)".to_string(),
    };
    let hit = f.sweep.hit.as_ref().map(|h| h.step as usize);
    let cleanup = body.len();
    let mut said = Vec::new();
    // The End whose own call failed did not return S_OK: the clean-up's End is its retry.
    let mut retried_in_cleanup = false;
    for (i, step) in obs.steps.iter().enumerate() {
        match body.get(i) {
            Some(op @ Op::Prepare(_)) => {
                if let Some(rc) = step.rc {
                    said.push(format!(
                        "{} returned {}",
                        op.export().unwrap_or("?"),
                        describe(rc)
                    ));
                    if rc == 0 && step.handle.unwrap_or(0) == 0 {
                        return Some(format!("{what}; it returned S_OK with no handle"));
                    }
                    // The same Prepare succeeded with no fault: refused before the fault
                    // landed, it meets what an earlier run left (a backup the server still
                    // runs for a session whose End gave up).
                    if rc != 0 && hit.is_none_or(|h| h > i) {
                        return Some(format!(
                            "{} returned {} before any call failed, though it succeeds when nothing fails: what an earlier run's End was given is still held (by the library or its server)",
                            op.export().unwrap_or("?"),
                            describe(rc)
                        ));
                    }
                }
            }
            Some(op @ (Op::End(_) | Op::RestoreEnd(_))) => {
                let Some(rc) = step.rc.filter(|&rc| rc != 0) else {
                    continue;
                };
                let export = op.export().unwrap_or("End");
                if hit == Some(i) {
                    said.push(format!("{export} returned {}", describe(rc)));
                    retried_in_cleanup = true;
                    continue;
                }
                return Some(format!(
                    "{what}; then {export} returned {}, expected 0 (S_OK) for a handle Prepare gave out",
                    describe(rc)
                ));
            }
            Some(op) if hit == Some(i) => {
                if let (Some(rc), Some(name)) = (step.rc, op.export()) {
                    said.push(format!("{name} returned {}", describe(rc)));
                }
            }
            Some(_) => {}
            None if i == cleanup && hit == Some(cleanup) => {
                if let Some(&rc) = step.codes.iter().find(|&&rc| rc != 0) {
                    said.push(format!("the clean-up End returned {}", describe(rc)));
                }
            }
            None => {
                // The clean-up after a failed End, or the retry after a failed clean-up End.
                let retry = retried_in_cleanup || i > cleanup;
                let allowed = |rc: i32| rc == 0 || (retry && rc == ERROR_INVALID_PARAMETER);
                if let Some(&rc) = step.codes.iter().find(|&&rc| !allowed(rc)) {
                    let expected = if retry {
                        "expected 0 (S_OK) or 87 (ERROR_INVALID_PARAMETER) from a retry of an End whose own call failed"
                    } else {
                        "expected 0 (S_OK) for a handle Prepare gave out"
                    };
                    let which = if i > cleanup {
                        "the retry of the clean-up End"
                    } else {
                        "the clean-up End"
                    };
                    return Some(format!(
                        "{what}; then {which} returned {}, {expected}",
                        describe(rc)
                    ));
                }
            }
        }
    }
    let left = leftover(&Growth::of(f).beyond(base?))?;
    let mut s = what;
    if let Some(last) = said.last() {
        s.push_str(&format!("; {last}"));
    }
    let verb = if left.starts_with("1 ") && !left.contains(" and ") {
        "was"
    } else {
        "were"
    };
    s.push_str(&format!(
        "; once the path was over, {left} {verb} still held"
    ));
    Some(s)
}

/// REQ-26, on a path whose Prepare succeeds with no fault (one the environment refuses
/// anyway, for credentials say, answers with the refusal): the allocation that failed inside
/// Prepare is reported as memory running out.
pub fn judge_oom(body: &[Op], obs: &Observation) -> Option<String> {
    let hit = obs.fault.as_ref()?.sweep.hit.as_ref().filter(|h| h.alloc)?;
    let i = hit.step as usize;
    let op @ Op::Prepare(_) = body.get(i)? else {
        return None;
    };
    let rc = obs
        .steps
        .get(i)?
        .rc
        .filter(|&rc| rc != 0 && !out_of_memory(rc))?;
    Some(format!(
        "{} failed; {} returned {}, expected 8 (ERROR_NOT_ENOUGH_MEMORY) for an allocation that failed (REQ-26)",
        site_name(hit, body),
        op.export().unwrap_or("?"),
        describe(rc)
    ))
}

/// A code that says memory ran out: ERROR_NOT_ENOUGH_MEMORY as the Prepare page documents
/// (REQ-26), or its other spellings: an RPC client's stubs report their allocation failing
/// as RPC_S_OUT_OF_MEMORY (14, ERROR_OUTOFMEMORY), and HRESULT_FROM_WIN32 of either.
pub fn out_of_memory(rc: i32) -> bool {
    // HRESULT_FROM_WIN32(ERROR_NOT_ENOUGH_MEMORY); not E_OUTOFMEMORY, which wraps 14.
    const HRESULT_NOT_ENOUGH_MEMORY: i32 = 0x8007_0008_u32 as i32;
    matches!(
        rc,
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY | E_OUTOFMEMORY | HRESULT_NOT_ENOUGH_MEMORY
    )
}

/// A site program's result: None when every rule held.
fn judge_site(p: &Path, k: u64, c: &Counted, r: &RunResult) -> Option<(Outcome, String)> {
    let (trace, base) = (&c.trace, c.base);
    match r {
        RunResult::Died(d) => {
            let site = trace
                .get(k as usize - 1)
                .map(|h| site_name(h, &p.body))
                .unwrap_or_else(|| format!("resource call {k}"));
            let outcome = d.death.outcome();
            // The faulted runs' steps are the body, then the clean-up.
            let call = match (d.op, d.step) {
                (Some(op), Some(i)) if FAULTED_OPS.contains(&op) => Some(
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
            let [a, b] = FAULTED_OPS;
            let first = obs.get(a).and_then(|o| judge_codes(&p.body, o, c.prepared));
            let second = obs.get(b).and_then(|o| judge_run(&p.body, o, Some(base)));
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
    Ok(verdict(&paths, &counted, limits, found))
}

/// Counts each path's routed calls with no fault.
fn count<'a>(
    sup: &mut Supervisor,
    paths: &'a [Path],
    spread: bool,
    found: &mut Found<'a>,
) -> Result<Vec<Counted>, HarnessError> {
    let programs: Vec<Program> = paths.iter().map(count_program).collect();
    let runs = match spread.then(|| crate::pace::run_spread(sup.spec(), &programs)) {
        Some(Some(runs)) => runs,
        _ => sup.run(&programs, &mut |_, _| {})?,
    };
    Ok(paths
        .iter()
        .zip(&runs)
        .map(|(p, r)| {
            let f = match r {
                RunResult::Done(obs) => obs.get(FAULTED_OPS[0]).and_then(|o| o.fault.clone()),
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
                refused: restore_refused(p, r),
                prepared: prepared(p, r),
            }
        })
        .collect())
}

/// The steps of a count run (no fault) that ran to its end.
fn count_steps(r: &RunResult) -> Option<&[Observation]> {
    let RunResult::Done(obs) = r else {
        return None;
    };
    Some(&obs.get(FAULTED_OPS[0])?.steps)
}

/// Whether every DsBackupPrepare of the count run (no fault) returned S_OK.
fn prepared(p: &Path, r: &RunResult) -> bool {
    count_steps(r).is_some_and(|steps| {
        p.body
            .iter()
            .zip(steps)
            .all(|(op, o)| !matches!(op, Op::Prepare(_)) || o.rc == Some(0))
    })
}

/// The code of a DsRestorePrepare that the count run (no fault) saw refused.
fn restore_refused(p: &Path, r: &RunResult) -> Option<i32> {
    let steps = count_steps(r)?;
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
    let programs: Vec<Program> = (1..=n).map(|k| site_program(p, k)).collect();
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
        let Some((outcome, what)) = judge_site(p, k, c, r) else {
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
    let again = sup.run_fresh(&[confirm_program(p, k)])?;
    let why = match &again[0] {
        died @ RunResult::Died(_) => judge_site(p, k, c, died).map(|(_, w)| w),
        RunResult::Done(obs) => judge_confirmation(&p.body, obs, c.base, c.prepared),
    };
    match &why {
        Some(_) => found.reproduced += 1,
        None => found.not_reproduced += 1,
    }
    Ok(why)
}

/// The outcome, the detail and the repro from everything the sweep found.
fn verdict(
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
    use ntdsbcli_harness::imports::{Held, Sweep};
    use ntdsbcli_harness::program::{End, Free, HandleArg, Prepare, Probe, Text};

    fn body() -> Vec<Op> {
        vec![
            Op::Prepare(Prepare::full(true, Text::Lit("localhost".into()), 0, 0)),
            Op::Free(Free { buf: Some(0) }),
            Op::End(End {
                h: HandleArg::Slot(0),
            }),
        ]
    }

    fn hit(function: &str, nth: u64, step: u16) -> Hit {
        Hit {
            function: function.into(),
            nth,
            site: 1,
            step,
            alloc: function.contains("alloc"),
        }
    }

    fn run_obs(
        steps: Vec<Observation>,
        hit: Option<Hit>,
        after: Probe,
        held: (i64, i64),
    ) -> Observation {
        Observation {
            steps,
            fault: Some(FaultObs {
                sweep: Sweep {
                    sites: 5,
                    hit,
                    trace: Vec::new(),
                },
                before: Probe::default(),
                after,
                held_before: Held {
                    bytes: 100,
                    blocks: 3,
                },
                held_after: Held {
                    bytes: 100 + held.0,
                    blocks: 3 + held.1,
                },
            }),
            ..Observation::default()
        }
    }

    fn rc(rc: i32) -> Observation {
        Observation {
            rc: Some(rc),
            handle: Some(if rc == 0 { 0x50 } else { 0 }),
            ..Observation::default()
        }
    }

    #[test]
    fn sites_are_named_by_function_ordinal_and_export() {
        assert_eq!(
            site_name(&hit("malloc", 3, 0), &body()),
            "the 3rd malloc inside DsBackupPrepareW"
        );
        assert_eq!(
            site_name(&hit("pipe2", 1, 3), &body()),
            "the 1st pipe2 inside the clean-up End"
        );
    }

    #[test]
    fn a_failed_prepare_that_holds_nothing_passes() {
        let o = run_obs(
            vec![rc(8), Observation::default()],
            Some(hit("malloc", 1, 0)),
            Probe::default(),
            (0, 0),
        );
        assert_eq!(judge_run(&body(), &o, Some(Growth::default())), None);
    }

    #[test]
    fn a_failed_allocation_inside_prepare_must_be_reported_as_running_out_of_memory() {
        let run = |code: i32, function: &str| {
            let o = run_obs(
                vec![rc(code), Observation::default()],
                Some(hit(function, 1, 0)),
                Probe::default(),
                (0, 0),
            );
            judge_codes(&body(), &o, true)
        };
        // REQ-26, and the other spellings of the same news.
        for ok in [8, 14, 0x8007_000E_u32 as i32, 0x8007_0008_u32 as i32] {
            assert_eq!(run(ok, "malloc"), None, "{ok:#x}");
        }
        let why = run(0x8000_4005_u32 as i32, "malloc").unwrap();
        assert!(
            why.contains("expected 8 (ERROR_NOT_ENOUGH_MEMORY)"),
            "{why}"
        );
        // A descriptor that could not be opened is no allocation: any failure code will do.
        assert_eq!(run(1722, "pipe2"), None);
        // A Prepare the environment refuses with no fault answers with the refusal.
        let o = run_obs(
            vec![rc(5), Observation::default()],
            Some(hit("malloc", 1, 0)),
            Probe::default(),
            (0, 0),
        );
        assert_eq!(judge_codes(&body(), &o, false), None);
    }

    #[test]
    fn what_is_left_over_is_named_with_the_fault() {
        let o = run_obs(
            vec![rc(8), Observation::default()],
            Some(hit("malloc", 2, 0)),
            Probe {
                handles: 2,
                ..Probe::default()
            },
            (208, 2),
        );
        assert_eq!(
            judge_run(&body(), &o, Some(Growth::default())).as_deref(),
            Some("the 2nd malloc inside DsBackupPrepareW failed; DsBackupPrepareW returned 8 (ERROR_NOT_ENOUGH_MEMORY); once the path was over, 2 handles and 2 heap blocks (208 bytes) were still held")
        );
        // The first of the two runs is not measured: a first failure may cache something.
        assert_eq!(judge_run(&body(), &o, None), None);
    }

    fn codes(codes: Vec<i32>) -> Observation {
        Observation {
            codes,
            ..Observation::default()
        }
    }

    #[test]
    fn end_must_return_s_ok_after_a_failure_in_another_call() {
        // REQ-08: the failure landed in Free (step 1); End's 87 is wrong.
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(87), codes(vec![])],
            Some(hit("malloc", 1, 1)),
            Probe::default(),
            (0, 0),
        );
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("DsBackupEnd returned"), "{why}");
        // The clean-up's Ends too.
        let o = run_obs(
            vec![rc(0), codes(vec![87])],
            Some(hit("calloc", 1, 0)),
            Probe::default(),
            (0, 0),
        );
        assert!(judge_run(&body()[..1], &o, None)
            .unwrap()
            .contains("clean-up End returned"));
    }

    #[test]
    fn end_whose_own_call_failed_may_say_so_and_its_retry_may_find_it_gone() {
        // The failure landed inside End (step 2): 1722 is "an RPC error code otherwise"; the
        // clean-up retries it, and 87 there says End released the session anyway.
        for retry in [0, 87] {
            let o = run_obs(
                vec![rc(0), Observation::default(), rc(1722), codes(vec![retry])],
                Some(hit("send", 1, 2)),
                Probe::default(),
                (0, 0),
            );
            assert_eq!(judge_run(&body(), &o, Some(Growth::default())), None);
        }
        // Any other answer from the retry is wrong.
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(1722), codes(vec![1722])],
            Some(hit("send", 1, 2)),
            Probe::default(),
            (0, 0),
        );
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("from a retry"), "{why}");
        // What End held must still be given back.
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(1722), codes(vec![87])],
            Some(hit("send", 1, 2)),
            Probe {
                handles: 1,
                ..Probe::default()
            },
            (24, 1),
        );
        let why = judge_run(&body(), &o, Some(Growth::default())).unwrap();
        assert!(
            why.contains("1 handle and 1 heap block (24 bytes) were still held"),
            "{why}"
        );
    }

    #[test]
    fn a_failure_inside_the_clean_up_end_is_judged_by_its_retry() {
        let o = run_obs(
            vec![rc(0), codes(vec![1722]), codes(vec![87])],
            Some(hit("send", 1, 1)),
            Probe::default(),
            (0, 0),
        );
        assert_eq!(judge_run(&body()[..1], &o, Some(Growth::default())), None);
        let o = run_obs(
            vec![rc(0), codes(vec![1722]), codes(vec![5])],
            Some(hit("send", 1, 1)),
            Probe::default(),
            (0, 0),
        );
        let why = judge_run(&body()[..1], &o, None).unwrap();
        assert!(
            why.contains("the retry of the clean-up End returned 5"),
            "{why}"
        );
    }

    #[test]
    fn a_prepare_refused_before_the_fault_landed_meets_an_earlier_leak() {
        // The fault was due at a later step: Prepare failed on its own, which it never does
        // with nothing failed, so an earlier run left a backup held.
        let o = run_obs(
            vec![rc(0xC80001F9u32 as i32), codes(vec![])],
            None,
            Probe::default(),
            (0, 0),
        );
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("before any call failed"), "{why}");
    }

    #[test]
    fn s_ok_without_a_handle_is_no_recovery() {
        let mut prepared = rc(0);
        prepared.handle = Some(0);
        let o = run_obs(
            vec![prepared, Observation::default()],
            Some(hit("malloc", 1, 0)),
            Probe::default(),
            (0, 0),
        );
        assert!(judge_run(&body(), &o, None)
            .unwrap()
            .contains("S_OK with no handle"));
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

    #[test]
    fn a_leak_the_path_has_without_a_fault_is_not_the_fault_s() {
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(0), Observation::default()],
            Some(hit("malloc", 1, 0)),
            Probe::default(),
            (1032, 1),
        );
        let anyway = Growth {
            blocks: 1,
            bytes: 1032,
            ..Growth::default()
        };
        assert_eq!(judge_run(&body(), &o, Some(anyway)), None);
        assert!(judge_run(&body(), &o, Some(Growth::default()))
            .unwrap()
            .contains("1 heap block (1032 bytes) was still held"));
    }

    #[test]
    fn a_bounded_cache_filled_by_the_first_failures_is_no_leak() {
        let grown = |blocks| {
            run_obs(
                vec![rc(8), Observation::default()],
                Some(hit("malloc", 1, 0)),
                Probe::default(),
                (24 * blocks, blocks),
            )
        };
        let body = body();
        // An error log of the last 8 failures: one more block per failure until it is full.
        let mut log: Vec<Observation> = (0..CONFIRM_WARM + CONFIRM_RUNS)
            .map(|i| grown(i64::from(i < 8)))
            .collect();
        assert_eq!(
            judge_confirmation(&body, &log, Growth::default(), true),
            None
        );
        // A leak grows on every failure.
        log.iter_mut().for_each(|o| *o = grown(1));
        let why = judge_confirmation(&body, &log, Growth::default(), true).unwrap();
        assert!(
            why.ends_with("1 heap block (24 bytes) was still held"),
            "{why}"
        );
        // Growth in fewer than 24 of the 32 measured runs is no leak.
        for o in log.iter_mut().skip(CONFIRM_WARM + 9) {
            *o = grown(0);
        }
        assert_eq!(
            judge_confirmation(&body, &log, Growth::default(), true),
            None
        );
    }

    #[test]
    fn leftovers_read_as_a_list() {
        let f = |handles, threads, blocks, bytes| Growth {
            handles,
            threads,
            blocks,
            bytes,
        };
        assert_eq!(leftover(&f(0, 0, 0, 0)), None);
        assert_eq!(leftover(&f(0, -1, -1, -8)), None);
        // Bytes that moved between sources with the count of blocks unchanged are no leak.
        assert_eq!(leftover(&f(0, 0, 0, 4064)), None);
        assert_eq!(leftover(&f(1, 0, 0, 0)).as_deref(), Some("1 handle"));
        assert_eq!(
            leftover(&f(2, 1, 1, 16)).as_deref(),
            Some("2 handles, 1 thread and 1 heap block (16 bytes)")
        );
        assert_eq!(
            leftover(&f(0, 0, 2, -4000)).as_deref(),
            Some("2 heap blocks")
        );
    }
}
