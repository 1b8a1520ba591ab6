//! `diff`: the same named programs and seeded sequences on two libraries, each side in
//! workers of its own, compared call by call; each difference blamed on the side whose answer
//! breaks a rule (the checks' judgements and the model's oracle, per side), grouped, and the
//! sequences behind the first groups shrunk while the difference stays.

use super::answer::{answers, first_difference, seq_call, seq_check};
use super::group::{group, Blame, Group, Key, Occurrence};
use crate::catalogue::{Runs, CHECKS};
use crate::checks::{Ctx, Eval};
use crate::model::layout::Layout;
use crate::model::machine::{set_surface, Machine, State, Surface, Transition};
use crate::model::oracle;
use crate::model::phase::{case, racing, runner, Tree, RACE_TRIES};
use crate::model::verdict::{Failure, Judgement};
use crate::runner::{judge_results, missing_needs, worker_spec, RunOptions};
use ntdsbcli_harness::abi;
use ntdsbcli_harness::preflight;
use ntdsbcli_harness::program::{Op, Program};
use ntdsbcli_harness::worker::{RunResult, Supervisor};
use ntdsbcli_harness::HarnessError;
use proptest::strategy::{Strategy, ValueTree};
use proptest_state_machine::ReferenceStateMachine;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What `diff` compares and how.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// The library under test, with the run's configuration (seed, sequences, patience).
    pub new: RunOptions,
    /// The library it is compared with; only its library and mutant are read.
    pub old: RunOptions,
    /// Longest generated sequence, in calls.
    pub max_len: usize,
    /// Workers per side for the sequences.
    pub jobs: usize,
    /// Stop running sequences after this long (the report says how many ran).
    pub sequence_budget: Option<Duration>,
    /// Time for shrinking the examples of all groups together.
    pub shrink_budget: Duration,
    /// Groups whose example is shrunk (the first ones).
    pub shrink_groups: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{side} library: {source}")]
    Harness {
        side: &'static str,
        #[source]
        source: HarnessError,
    },
    #[error("generating sequence {index}: {reason}")]
    Generation { index: usize, reason: String },
}

/// One library as the diff saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideInfo {
    pub path: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
    pub exports: Vec<String>,
}

/// What `diff` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    pub tool: String,
    pub new: SideInfo,
    pub old: SideInfo,
    pub seed: u64,
    /// Named programs run on both sides.
    pub programs: u64,
    /// Sequences run and compared on both sides.
    pub sequences: u64,
    /// Sequences asked for (fewer run when the time budget ended the phase).
    pub planned: u64,
    /// Calls compared (ops of the programs and sequences, on one side).
    pub calls: u64,
    /// Sequences left out because a side's environment refused a session.
    pub refused: u64,
    pub differences: Vec<Group>,
    /// Known differences (the baseline's) that no longer occur.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<Key>,
    pub wall_ms: u64,
}

impl DiffReport {
    /// 0 when nothing differs but what the baseline knows, else 1.
    pub fn exit_code(&self) -> u8 {
        let new = self.differences.iter().any(|g| !g.known);
        u8::from(new || !self.gone.is_empty())
    }
}

fn side(name: &'static str) -> impl Fn(HarnessError) -> DiffError + Copy {
    move |source| DiffError::Harness { side: name, source }
}

fn info(o: &RunOptions, sup: &Supervisor, name: &'static str) -> Result<SideInfo, DiffError> {
    let (path, sha256, _) = crate::runner::identity(o).map_err(side(name))?;
    Ok(SideInfo {
        path,
        sha256,
        mutant: o.mutant.clone(),
        exports: sup.exports().to_vec(),
    })
}

/// Results of programs; those after the deadline have none.
type Partial = Vec<Option<RunResult>>;

/// Runs `programs` on both sides at once until `deadline`, each side's share cut into one
/// contiguous slice per worker of its pool: a slow library never leaves a core idle while the
/// other side is done. Programs after the deadline have no result on a side.
fn both_until(
    new: &mut [Supervisor],
    old: &mut [Supervisor],
    programs: &[Program],
    deadline: Option<Instant>,
) -> Result<(Partial, Partial), DiffError> {
    std::thread::scope(|s| {
        let n = s.spawn(|| run_pool(new, programs, deadline, "new"));
        let o = run_pool(old, programs, deadline, "old");
        let n = n.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        Ok((n?, o?))
    })
}

/// One side's share of `both_until`: a slice of the programs per worker, all at once.
fn run_pool(
    pool: &mut [Supervisor],
    programs: &[Program],
    deadline: Option<Instant>,
    name: &'static str,
) -> Result<Partial, DiffError> {
    let per = programs.len().div_ceil(pool.len().max(1)).max(1);
    let go_on = move |_: usize, _: &RunResult| deadline.is_none_or(|d| Instant::now() < d);
    std::thread::scope(|s| {
        let handles: Vec<_> = pool
            .iter_mut()
            .enumerate()
            .map(|(w, sup)| {
                let to = ((w + 1) * per).min(programs.len());
                let from = (w * per).min(to);
                s.spawn(move || sup.run_until(&programs[from..to], &mut go_on.clone()))
            })
            .collect();
        let mut out: Partial = Vec::with_capacity(programs.len());
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            out.extend(r.map_err(side(name))?);
        }
        Ok(out)
    })
}

/// Runs one program alone in a fresh worker on each side, one side after the other (they
/// may share a server that runs one backup at a time).
fn both_alone(
    new: &mut Supervisor,
    old: &mut Supervisor,
    p: &Program,
) -> Result<(RunResult, RunResult), DiffError> {
    let n = new.run_alone(p).map_err(side("new"))?;
    let o = old.run_alone(p).map_err(side("old"))?;
    Ok((n, o))
}

/// A hang seen beside other programs that did not hang again alone: on a busy machine that
/// is the machine's, not the library's.
fn unconfirmed_hang(r: &RunResult) -> bool {
    matches!(r, RunResult::Died(d) if d.death.is_timeout() && !d.confirmed)
}

/// Where either side hung only beside other programs, runs `p` alone on both sides and
/// keeps those results instead: what the two libraries answer alone is what counts.
fn settle(
    new: &mut Supervisor,
    old: &mut Supervisor,
    p: &Program,
    rn: &mut RunResult,
    ro: &mut RunResult,
) -> Result<(), DiffError> {
    if unconfirmed_hang(rn) || unconfirmed_hang(ro) {
        (*rn, *ro) = both_alone(new, old, p)?;
    }
    Ok(())
}

/// Differences of the export tables: an export one side lacks. A required one breaks REQ-01.
fn export_differences(new: &[String], old: &[String]) -> Vec<Occurrence> {
    let required = |missing: &[&str], name: &str| missing.contains(&name);
    let (miss_new, miss_old) = (abi::missing_required(new), abi::missing_required(old));
    let mut out = Vec::new();
    for (name, in_new) in old
        .iter()
        .filter(|e| !new.contains(e))
        .map(|e| (e, false))
        .chain(new.iter().filter(|e| !old.contains(e)).map(|e| (e, true)))
    {
        let blame = match (in_new, required(&miss_new, name), required(&miss_old, name)) {
            (false, true, _) => Blame::New {
                rule: format!("REQ-01: {name} is a required export"),
            },
            (true, _, true) => Blame::Old {
                rule: format!("REQ-01: {name} is a required export"),
            },
            _ => Blame::Neither,
        };
        let (has, lacks) = ("exported".to_string(), "not exported".to_string());
        out.push(Occurrence {
            key: Key {
                call: name.clone(),
                state: "the export table".into(),
                new: if in_new { has.clone() } else { lacks.clone() },
                old: if in_new { lacks } else { has },
            },
            blame,
            source: "exports.required".into(),
            example: Vec::new(),
            sequence: None,
        });
    }
    out
}

/// Who breaks a rule, from each side's judgement of the same check.
fn check_blame(req: &str, new: &Eval, old: &Eval) -> Blame {
    let rule = |e: &Eval| {
        e.outcome
            .is_failure()
            .then(|| crate::spec::name_rule(&e.detail, req))
    };
    Blame::of(rule(new), rule(old))
}

/// The part of a check's blame that an op's differing answers carry: a side's broken rule
/// counts when that side's failure names the answer (its code, or its death).
fn op_blame(check: &Blame, (dn, n): (&str, &str), (do_, o): (&str, &str)) -> Blame {
    let names = |detail: &str, answer: &str| {
        let core = answer.strip_prefix("died: ").unwrap_or(answer);
        let first = core.split(", ").next().unwrap_or(core);
        !first.is_empty() && detail.contains(first)
    };
    let (rn, ro) = match check.clone() {
        Blame::Both { new_rule, old_rule } => (Some(new_rule), Some(old_rule)),
        Blame::New { rule } => (Some(rule), None),
        Blame::Old { rule } => (None, Some(rule)),
        Blame::Neither => (None, None),
    };
    Blame::of(rn.filter(|_| names(dn, n)), ro.filter(|_| names(do_, o)))
}

/// The named programs of every check both libraries can run, compared op by op; a check
/// judged differently with no op that answered differently (a resource it held) is a
/// difference of the check's judgement.
fn named(
    ctx: &Ctx,
    new: &mut Supervisor,
    old: &mut Supervisor,
) -> Result<(Vec<Occurrence>, u64, u64), DiffError> {
    let mut planned = Vec::new();
    let mut programs: Vec<Program> = Vec::new();
    for def in CHECKS {
        let Runs::Programs(check) = def.runs else {
            continue;
        };
        if missing_needs(def, ctx).is_some() {
            continue;
        }
        let p = check.plan(ctx);
        let range = programs.len()..programs.len() + p.programs.len();
        programs.extend(p.programs);
        planned.push((def, p.judge, range));
    }
    // One side after the other: both may be clients of one server that runs one backup at a
    // time, and a check's program must never be refused for the other side's session.
    let mut rn = new.run(&programs, &mut |_, _| {}).map_err(side("new"))?;
    let mut ro = old.run(&programs, &mut |_, _| {}).map_err(side("old"))?;
    for ((p, n), o) in programs.iter().zip(&mut rn).zip(&mut ro) {
        settle(new, old, p, n, o)?;
    }
    let mut out = Vec::new();
    for (def, judge, range) in planned {
        let ps = &programs[range.clone()];
        let en = judge_results(&judge, ctx, ps, &rn[range.clone()]);
        let eo = judge_results(&judge, ctx, ps, &ro[range.clone()]);
        let blame = check_blame(def.requirement, &en, &eo);
        let mut blamed = false;
        for (k, p) in ps.iter().enumerate() {
            let (an, ao) = (
                answers(&p.ops, &rn[range.start + k]),
                answers(&p.ops, &ro[range.start + k]),
            );
            let Some((i, n, o)) = first_difference(&an, &ao) else {
                continue;
            };
            // The check's broken rule is this difference's only when the failure speaks of
            // this answer: the first difference of a failing program may be one both sides
            // may give (another list of names), with the defect further on.
            let mine = op_blame(&blame, (&en.detail, &n), (&eo.detail, &o));
            blamed |= mine != Blame::Neither;
            out.push(Occurrence {
                key: Key {
                    call: p.ops[i].describe(),
                    // The same answers to the same call are one difference, whichever
                    // check's program showed them: its example gives the context.
                    state: "in a check's program".into(),
                    new: n,
                    old: o,
                },
                blame: mine,
                source: def.id.into(),
                example: p.ops[..=i].iter().map(|op| op.describe()).collect(),
                sequence: None,
            });
        }
        if !blamed && blame != Blame::Neither {
            // A rule broken where no single answer differs (a resource held, a count over
            // cycles): the check's judgement is the difference.
            out.push(Occurrence {
                key: Key {
                    call: "(the check's judgement)".into(),
                    state: def.id.into(),
                    new: en.outcome.as_str().into(),
                    old: eo.outcome.as_str().into(),
                },
                blame,
                source: def.id.into(),
                // Its first program shows what was asked.
                example: ps.first().map_or_else(Vec::new, |p| {
                    p.ops
                        .iter()
                        .filter(|o| o.call().is_some())
                        .map(|o| o.describe())
                        .collect()
                }),
                sequence: None,
            });
        }
    }
    let calls = programs.iter().map(|p| p.ops.len() as u64).sum();
    Ok((out, programs.len() as u64, calls))
}

/// Where the oracle put a side's failure: the step, or `steps` for the clean-up and what the
/// sequence left behind.
fn failure_step(j: &Judgement, steps: usize) -> Option<usize> {
    match j.failure.as_ref()? {
        Failure::Mismatch { step, .. } => Some(*step),
        Failure::Died { step, .. } => Some(step.unwrap_or(steps)),
        Failure::Leak { .. } | Failure::Cleanup { .. } => Some(steps),
    }
}

/// What a side's failure was, with the rule it breaks: cited from the check that covers the
/// failing call (`seq_check`), or end.release's for what the sequence left behind.
fn failure_text(j: &Judgement, init: &State, ts: &[Transition]) -> String {
    let text = match &j.failure {
        Some(Failure::Mismatch { got, want, .. }) => {
            format!("answered {got}; the model wants {want}")
        }
        Some(Failure::Leak { what }) => format!("left resources behind: {what}"),
        Some(Failure::Cleanup { got }) => format!("ending what was live at the end gave {got}"),
        Some(Failure::Died { death, .. }) => death.death.describe(),
        None => String::new(),
    };
    let check = match failure_step(j, ts.len()).and_then(|s| ts.get(s).map(|t| (s, t))) {
        Some((s, t)) => seq_check(&ts[..s].iter().fold(init.clone(), Machine::apply), t),
        None => "end.release",
    };
    let req = CHECKS
        .iter()
        .find(|d| d.id == check)
        .map_or("", |d| d.requirement);
    crate::spec::name_rule(&text, req)
}

/// The sequence's first difference, if any: its step (`ts.len()` for the clean-up), the call
/// and state, and the two answers.
fn sequence_difference(
    init: &State,
    ts: &[Transition],
    prog: &Program,
    rn: &RunResult,
    ro: &RunResult,
) -> Option<(usize, Key)> {
    let layout = Layout::of_sequence(ts);
    let (an, ao) = (answers(&prog.ops, rn), answers(&prog.ops, ro));
    let (op, n, o) = first_difference(&an, &ao)?;
    let step = layout.step_of_op(op).unwrap_or(ts.len());
    let (call, state) = match ts.get(step) {
        Some(t) => {
            let st = ts[..step].iter().fold(init.clone(), Machine::apply);
            seq_call(&st, t)
        }
        None => (prog.ops[op].describe(), "after the sequence".into()),
    };
    Some((
        step,
        Key {
            call,
            state,
            new: n,
            old: o,
        },
    ))
}

fn blame_at(c: &Case, step: usize, jn: &Judgement, jo: &Judgement) -> Blame {
    let rule = |j: &Judgement| {
        failure_step(j, c.ts.len())
            .is_some_and(|s| s <= step)
            .then(|| failure_text(j, &c.init, &c.ts))
    };
    Blame::of(rule(jn), rule(jo))
}

/// What a generated sequence is, kept for its shrink.
struct Case {
    tree: Option<Tree>,
    init: State,
    ts: Vec<Transition>,
}

fn generate(ctx: &Ctx, n: u64, max_len: usize) -> Result<Vec<Case>, DiffError> {
    set_surface(Surface::from_exports(&ctx.exports));
    let strategy = Machine::sequential_strategy(1..=max_len.max(1));
    let mut rng = runner(ctx.seed);
    (0..n as usize)
        .map(|index| {
            let tree = strategy
                .new_tree(&mut rng)
                .map_err(|r| DiffError::Generation {
                    index,
                    reason: r.to_string(),
                })?;
            let (init, ts) = case(&tree);
            Ok(Case {
                tree: Some(tree),
                init,
                ts,
            })
        })
        .collect()
}

/// The seeded sequences, run on both sides and compared call by call, each at its first
/// difference: what comes after it follows from it.
fn sequences(
    ctx: &Ctx,
    new: &mut [Supervisor],
    old: &mut [Supervisor],
    cases: &[Case],
    budget: Option<Duration>,
) -> Result<Sequences, DiffError> {
    let programs: Vec<Program> = cases
        .iter()
        .enumerate()
        .map(|(k, c)| oracle::program(ctx, &c.init, &c.ts, format!("sequence {k}")))
        .collect();
    let deadline = budget.map(|b| Instant::now() + b);
    let (mut rn, mut ro) = both_until(new, old, &programs, deadline)?;
    let mut out = Vec::new();
    let mut suspects = Vec::new();
    let mut recheck = Vec::new();
    let (mut refused, mut ran, mut calls) = (0, 0, 0);
    for (k, c) in cases.iter().enumerate() {
        let (Some(mut n), Some(mut o)) = (rn[k].take(), ro[k].take()) else {
            continue;
        };
        ran += 1;
        calls += c.ts.len() as u64;
        settle(&mut new[0], &mut old[0], &programs[k], &mut n, &mut o)?;
        match compare(ctx, c, &programs[k], k, [&n, &o]) {
            Pair::Refused => recheck.push(k),
            Pair::Same(None) => {}
            Pair::Same(Some((ln, lo))) => suspects.push((k, ln, lo)),
            Pair::Differs(_, step) if refusal_at(&c.ts, step, [&n, &o]) => recheck.push(k),
            Pair::Differs(occ, _) => out.push(*occ),
        }
    }
    // A server that runs one backup for all its clients refuses a session while another
    // worker, of this side or the other, holds one: a sequence refused with the workers side
    // by side, or whose first difference is a refused session, runs again one side after the
    // other on one worker each, and what it shows then counts.
    if !recheck.is_empty() {
        let again: Vec<Program> = recheck.iter().map(|&k| programs[k].clone()).collect();
        let an = new[0].run(&again, &mut |_, _| {}).map_err(side("new"))?;
        let ao = old[0].run(&again, &mut |_, _| {}).map_err(side("old"))?;
        for ((k, n), o) in recheck.into_iter().zip(an).zip(ao) {
            match compare(ctx, &cases[k], &programs[k], k, [&n, &o]) {
                Pair::Refused => refused += 1,
                Pair::Same(None) => {}
                Pair::Same(Some((ln, lo))) => suspects.push((k, ln, lo)),
                Pair::Differs(occ, _) => out.push(*occ),
            }
        }
    }
    out.extend(resources(ctx, new, old, cases, &programs, &suspects)?);
    Ok(Sequences {
        occurrences: out,
        ran,
        refused,
        calls,
    })
}

/// How one sequence's two runs compare.
enum Pair {
    /// A side's server refused it a session it needed: not comparable.
    Refused,
    /// The same answers; what each side left behind when that differs.
    Same(Option<(String, String)>),
    /// The first difference, at this step.
    Differs(Box<Occurrence>, usize),
}

fn compare(ctx: &Ctx, c: &Case, prog: &Program, k: usize, [n, o]: [&RunResult; 2]) -> Pair {
    let (jn, jo) = (
        oracle::judge(ctx, &c.init, &c.ts, n),
        oracle::judge(ctx, &c.init, &c.ts, o),
    );
    if jn.environment.is_some() || jo.environment.is_some() {
        return Pair::Refused;
    }
    let Some((step, key)) = sequence_difference(&c.init, &c.ts, prog, n, o) else {
        let (ln, lo) = (left_behind(&c.ts, n), left_behind(&c.ts, o));
        return Pair::Same((ln != lo).then_some((ln, lo)));
    };
    Pair::Differs(
        Box::new(Occurrence {
            blame: blame_at(c, step, &jn, &jo),
            key,
            source: "seq.model".into(),
            example: example_of(prog, &c.ts, step),
            sequence: Some(k),
        }),
        step,
    )
}

/// Whether either side answered the call at `step` with a code that refuses another session.
fn refusal_at(ts: &[Transition], step: usize, results: [&RunResult; 2]) -> bool {
    let layout = Layout::of_sequence(ts);
    step < ts.len()
        && results.into_iter().any(|r| match r {
            RunResult::Done(obs) => obs
                .get(layout.step(step))
                .and_then(|o| o.rc)
                .is_some_and(ntdsbcli_harness::codes::refuses_another_session),
            RunResult::Died(_) => false,
        })
}

/// What a finished sequence left behind once every session was ended and every buffer
/// freed: the kinds of resource that grew, not how many (a pool may differ in size).
fn left_behind(ts: &[Transition], r: &RunResult) -> String {
    let RunResult::Done(obs) = r else {
        return "died".into();
    };
    let layout = Layout::of_sequence(ts);
    let (Some(a), Some(b)) = (obs.get(Layout::START), obs.get(layout.end())) else {
        return "unknown".into();
    };
    match crate::checks::growth(a, b) {
        None => "released everything".into(),
        Some(what) => {
            let kinds: Vec<&str> = ["open handles", "threads"]
                .into_iter()
                .filter(|k| what.contains(k))
                .collect();
            format!("left {} behind", kinds.join(" and "))
        }
    }
}

/// Per pair of answers first seen (what each side left behind): the confirmations tried, and
/// the difference once confirmed.
type Tried = ((String, String), usize, Option<(Key, Blame)>);

/// The state of a difference in what a sequence left behind.
const RESOURCES_HELD: &str = "resources held";

/// Confirmations of one kind of resource difference at most, before it counts as noise.
const RESOURCE_TRIES: usize = 3;

/// The suspects whose resources differed (with what each side left behind the first time),
/// run twice in a fresh worker on both sides: the second run counts, so that one-off set-up
/// (a pool started on first use) is no difference. A kind of difference confirmed once counts
/// every later suspect that showed it; one not confirmed in `RESOURCE_TRIES` tries is noise.
fn resources(
    ctx: &Ctx,
    new: &mut [Supervisor],
    old: &mut [Supervisor],
    cases: &[Case],
    programs: &[Program],
    suspects: &[(usize, String, String)],
) -> Result<Vec<Occurrence>, DiffError> {
    let mut tried: Vec<Tried> = Vec::new();
    let mut out = Vec::new();
    for (k, first_new, first_old) in suspects {
        let (c, p) = (&cases[*k], &programs[*k]);
        let pair = (first_new.clone(), first_old.clone());
        let i = match tried.iter().position(|(q, _, _)| *q == pair) {
            Some(i) => i,
            None => {
                tried.push((pair, 0, None));
                tried.len() - 1
            }
        };
        let (_, tries, confirmed) = &mut tried[i];
        if confirmed.is_none() {
            if *tries >= RESOURCE_TRIES {
                continue;
            }
            *tries += 1;
            // One side after the other, as `both_alone`.
            let twice = [p.clone(), p.patiently()];
            let rn = new[0].run_fresh(&twice).map_err(side("new"))?;
            let ro = old[0].run_fresh(&twice).map_err(side("old"))?;
            let (Some(rn), Some(ro)) = (rn.last(), ro.last()) else {
                continue;
            };
            let (ln, lo) = (left_behind(&c.ts, rn), left_behind(&c.ts, ro));
            if ln == lo {
                continue;
            }
            let (jn, jo) = (
                oracle::judge(ctx, &c.init, &c.ts, rn),
                oracle::judge(ctx, &c.init, &c.ts, ro),
            );
            let key = Key {
                call: "after the sequence: every session ended, every buffer freed".into(),
                state: RESOURCES_HELD.into(),
                new: ln,
                old: lo,
            };
            *confirmed = Some((key, blame_at(c, c.ts.len(), &jn, &jo)));
        }
        if let Some((key, blame)) = confirmed {
            out.push(Occurrence {
                key: key.clone(),
                blame: blame.clone(),
                source: "seq.model".into(),
                example: example_of(p, &c.ts, c.ts.len()),
                sequence: None,
            });
        }
    }
    Ok(out)
}

/// What the sequences showed.
struct Sequences {
    occurrences: Vec<Occurrence>,
    /// Compared on both sides (the rest were refused, or past the budget).
    ran: u64,
    refused: u64,
    calls: u64,
}

/// The calls of a sequence up to its differing step, described.
fn example_of(prog: &Program, ts: &[Transition], step: usize) -> Vec<String> {
    let layout = Layout::of_sequence(ts);
    let last = if step < ts.len() {
        layout.step(step)
    } else {
        layout.cleanup()
    };
    // The harness's own steps (probes) are no part of what a caller does.
    prog.ops[..=last.min(prog.ops.len() - 1)]
        .iter()
        .filter(|o| o.call().is_some() || matches!(o, Op::Cleanup))
        .map(|o| o.describe())
        .collect()
}

/// Shrinks the example of `g` (a sequence's) while the same difference shows alone in fresh
/// workers on both sides; says how it went in `g.shrink`.
fn shrink(
    ctx: &Ctx,
    new: &mut Supervisor,
    old: &mut Supervisor,
    c: &mut Case,
    g: &mut Group,
    deadline: Instant,
) -> Result<(), DiffError> {
    let Some(mut tree) = c.tree.take() else {
        return Ok(());
    };
    let same = |new: &mut Supervisor, old: &mut Supervisor, init: &State, ts: &[Transition]| {
        let p = oracle::program(ctx, init, ts, "candidate".into());
        // Threads that race get a few tries to show the same again, so luck does not stop it.
        for _ in 0..if racing(&p) { RACE_TRIES } else { 1 } {
            let (rn, ro) = both_alone(new, old, &p)?;
            let found = sequence_difference(init, ts, &p, &rn, &ro)
                .filter(|(_, k)| *k == g.key)
                .map(|(step, _)| (step, example_of(&p, ts, step)));
            if found.is_some() {
                return Ok::<_, DiffError>(found);
            }
        }
        Ok(None)
    };
    let Some(first) = same(new, old, &c.init, &c.ts)? else {
        g.shrink = "not shrunk: it did not show again alone in fresh workers (it depends on earlier sequences)".into();
        return Ok(());
    };
    // Transitions after the differing one never mattered: the tree drops them first.
    let seen = (first.0 + 1).min(c.ts.len());
    if let (_, _, Some(counter)) = tree.current() {
        counter.store(seen, std::sync::atomic::Ordering::SeqCst);
    }
    let mut best = first.1;
    let mut rounds = 0;
    let mut stopped = false;
    while tree.simplify() {
        if Instant::now() >= deadline {
            stopped = true;
            break;
        }
        rounds += 1;
        let (init, ts) = case(&tree);
        match same(new, old, &init, &ts)? {
            Some((_, ex)) => best = ex,
            None => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    g.example = best;
    g.shrink = match stopped {
        true => format!("shrunk for {rounds} rounds, stopped at the time budget; shown again alone in fresh workers"),
        false => format!("shrunk in {rounds} rounds; shown again alone in fresh workers"),
    };
    Ok(())
}

/// Compares the two libraries of `opts`. `on_phase` hears each phase as it starts.
pub fn diff(opts: &DiffOptions, on_phase: &mut dyn FnMut(&str)) -> Result<DiffReport, DiffError> {
    let start = Instant::now();
    for (o, name) in [(&opts.new, "new"), (&opts.old, "old")] {
        if let ntdsbcli_harness::worker::LibrarySpec::Path(p) = &o.library {
            preflight::check(p).map_err(side(name))?;
        }
    }
    let mut new = Supervisor::start(worker_spec(&opts.new)).map_err(side("new"))?;
    let mut old = Supervisor::start(worker_spec(&opts.old)).map_err(side("old"))?;
    let (ni, oi) = (info(&opts.new, &new, "new")?, info(&opts.old, &old, "old")?);
    let shared: Vec<String> = ni
        .exports
        .iter()
        .filter(|e| oi.exports.contains(e))
        .cloned()
        .collect();
    let mut occurrences = export_differences(&ni.exports, &oi.exports);
    let ctx = Ctx {
        server: opts.new.server.clone(),
        accept_hresult: opts.new.accept_hresult,
        exports: shared,
        seed: opts.new.seed,
        release_cycles: opts.new.release_cycles,
    };
    let (mut programs, mut sequences_run, mut calls, mut refused, mut planned) = (0, 0, 0, 0, 0);
    let mut cases = Vec::new();
    if abi::missing_required(&ctx.exports).is_empty() {
        on_phase("the named programs of every check, on both libraries");
        let (occ, p, c) = named(&ctx, &mut new, &mut old)?;
        occurrences.extend(occ);
        (programs, calls) = (p, c);
        on_phase("seeded call sequences, on both libraries");
        cases = generate(&ctx, opts.new.sequences, opts.max_len)?;
        // More workers for the sequences: a side's own pool, all at once with the other's.
        let mut pool_new = vec![new];
        let mut pool_old = vec![old];
        for _ in 1..opts.jobs.max(1) {
            pool_new.push(Supervisor::start(worker_spec(&opts.new)).map_err(side("new"))?);
            pool_old.push(Supervisor::start(worker_spec(&opts.old)).map_err(side("old"))?);
        }
        let seq = sequences(
            &ctx,
            &mut pool_new,
            &mut pool_old,
            &cases,
            opts.sequence_budget,
        )?;
        pool_new.truncate(1);
        pool_old.truncate(1);
        new = pool_new.pop().expect("the first worker stays");
        old = pool_old.pop().expect("the first worker stays");
        occurrences.extend(seq.occurrences);
        sequences_run = seq.ran - seq.refused;
        refused = seq.refused;
        calls += seq.calls;
        planned = cases.len() as u64;
    }
    let mut groups = group(occurrences);
    for g in groups.iter_mut().filter(|g| g.key.state == RESOURCES_HELD) {
        g.shrink = "not shrunk; shown again alone in fresh workers on both sides (of two runs, the second counts)".into();
    }
    let deadline = Instant::now() + opts.shrink_budget;
    let mut shrunk = 0;
    for g in groups.iter_mut() {
        if shrunk >= opts.shrink_groups || Instant::now() >= deadline {
            break;
        }
        let Some(k) = g.sequence else {
            continue;
        };
        if shrunk == 0 {
            on_phase("shrinking the examples");
        }
        shrunk += 1;
        shrink(&ctx, &mut new, &mut old, &mut cases[k], g, deadline)?;
    }
    Ok(DiffReport {
        tool: format!("ntdsbcli-conform {}", env!("CARGO_PKG_VERSION")),
        new: ni,
        old: oi,
        seed: opts.new.seed,
        programs,
        sequences: sequences_run,
        planned,
        calls,
        refused,
        differences: groups,
        gone: Vec::new(),
        wall_ms: start.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_check_blames_only_the_answer_its_failure_names() {
        let new = Blame::New {
            rule: "REQ-04".into(),
        };
        let detail = "End(NULL) returned 0 (S_OK), expected 87 (ERROR_INVALID_PARAMETER)";
        let named = op_blame(
            &new,
            (detail, "0 (S_OK)"),
            ("", "87 (ERROR_INVALID_PARAMETER)"),
        );
        assert_eq!(named, new);
        // Another list of names in the same program is no part of that failure.
        let other = op_blame(
            &new,
            (detail, "names [D\\\\x\\ntds.dit]"),
            ("", "names [D\\\\x\\Windows\\ntds.dit]"),
        );
        assert_eq!(other, Blame::Neither);
        let died = op_blame(
            &new,
            (
                "p: the worker crashed: SIGSEGV in End",
                "died: the worker crashed: SIGSEGV",
            ),
            ("", "87 (ERROR_INVALID_PARAMETER)"),
        );
        assert_eq!(died, new);
        assert_eq!(
            op_blame(&Blame::Neither, (detail, "0 (S_OK)"), ("", "1")),
            Blame::Neither
        );
    }
}
