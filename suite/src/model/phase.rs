//! The seq.model phase: generate sequences from the seed, run them many per worker, judge each
//! with the oracle, and shrink the first failure in fresh workers to a minimal sequence.

use super::layout::Layout;
use super::machine::{set_surface, Machine, State, Surface, Transition};
use super::oracle::{self, Failure, FailureKind, Judgement};
use super::repro;
use crate::checks::{Ctx, Eval};
use ntdsbcli_harness::program::Program;
use ntdsbcli_harness::report::Outcome;
use ntdsbcli_harness::worker::{RunResult, Supervisor};
use ntdsbcli_harness::HarnessError;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SeqOptions {
    pub sequences: u64,
    /// Longest sequence, in calls.
    pub max_len: usize,
    /// Stop generating new sequences after this long (the report says so).
    pub budget: Option<Duration>,
    pub shrink_budget: Duration,
    /// Sequences sent to a worker in one message.
    pub batch: usize,
    /// Workers running sequences at once.
    pub workers: usize,
    /// Run only sequence i with i % n == k - 1 (shard k of n); all shards generate the same
    /// stream, so the shards together run exactly the full run's sequences.
    pub partition: Option<(u64, u64)>,
    /// Why the run chose its worker count, for the detail (`pace::Pace::describe`).
    pub pace: Option<String>,
}

pub struct SeqOutcome {
    pub eval: Eval,
    pub repro: Option<String>,
    pub sequences: u64,
    pub calls: u64,
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1))).to_le_bytes(),
        );
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// The generator's runner for `seed`: the same sequences in a run and in the benchmark.
pub fn runner(seed: u64) -> TestRunner {
    // An inert call drawn again is rejected and drawn anew: as many times as a run needs.
    let config = Config {
        max_local_rejects: u32::MAX,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, rng(seed))
}

/// What one worker's slice of a batch produced: its results, and the judgements made so far.
type SliceOutcome = (Vec<Option<RunResult>>, Vec<Judgement>);

pub(crate) type Tree = <proptest_state_machine::strategy::Sequential<
    State,
    Transition,
    proptest::strategy::BoxedStrategy<State>,
    proptest::strategy::BoxedStrategy<Transition>,
> as Strategy>::Tree;

pub(crate) fn case(tree: &Tree) -> (State, Vec<Transition>) {
    let (s, t, _) = tree.current();
    (s, t)
}

fn calls_of(transitions: &[Transition]) -> u64 {
    transitions.len() as u64
}

/// Tries a candidate with racing threads gets to show a failure of `kind`.
pub(crate) const RACE_TRIES: usize = 8;

pub(crate) fn racing(prog: &Program) -> bool {
    prog.ops
        .iter()
        .any(|o| matches!(o, ntdsbcli_harness::program::Op::EndConcurrent(_)))
}

/// One candidate of the shrink, run alone in a fresh worker. A leak must recur: the candidate
/// runs twice and the second run is judged, so that one-off set-up (a pool started on first
/// use, a log file opened once) is never taken for a leak. A candidate whose threads race
/// gets a few tries to fail the same way, so that luck does not stop the shrink.
fn attempt(
    sup: &mut Supervisor,
    ctx: &Ctx,
    init: &State,
    ts: &[Transition],
    kind: Option<FailureKind>,
) -> Result<(Program, Judgement), HarnessError> {
    let prog = oracle::program(ctx, init, ts, "candidate".into());
    let tries = if racing(&prog) { RACE_TRIES } else { 1 };
    let mut j = Judgement::default();
    for _ in 0..tries {
        let result = if kind == Some(FailureKind::Leak) {
            recurring(sup, &prog)?
        } else {
            sup.run_alone(&prog)?
        };
        j = oracle::judge(ctx, init, ts, &result);
        if same_kind(&j, kind) {
            break;
        }
    }
    Ok((prog, j))
}

/// Runs a program twice in a fresh worker and gives the second result (the first when the
/// worker died in it). The judged run's readings wait patiently: a thread that exits on its own after End
/// may be slow to get a core on a loaded machine, and that is no leak.
fn recurring(sup: &mut Supervisor, prog: &Program) -> Result<RunResult, HarnessError> {
    let mut results = sup.run_fresh(&[prog.clone(), prog.patiently()])?;
    Ok(match results.remove(0) {
        first @ RunResult::Died(_) => first,
        RunResult::Done(_) => results.remove(0),
    })
}

fn describe_failure(f: &Failure, prog: &Program) -> String {
    let call = |step: usize| {
        prog.ops
            .get(step + 1)
            .map(|o| o.describe())
            .unwrap_or_default()
    };
    match f {
        Failure::Mismatch { step, got, want } => {
            format!("step {step}: {} returned {got}, expected {want}", call(*step))
        }
        Failure::Leak { what } => format!(
            "after every session was ended and every buffer freed, the sequence left {what} behind"
        ),
        Failure::Cleanup { got } => format!(
            "ending the sessions still live at the end of the sequence returned {got}, expected 0 (S_OK)"
        ),
        Failure::Died { step, death } => {
            let at = step.map(|s| format!(" at step {s}: {}", call(s))).unwrap_or_default();
            let mut s = format!("{}{at}", death.death.describe());
            if let Some(out) = &death.last_output {
                s.push_str(&format!(" (last output: {out:?})"));
            }
            s
        }
    }
}

/// Why the sequence phase could not go on: the harness, or the generator itself.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("seq.model could not generate sequence {index}: {reason}")]
    Generation { index: u64, reason: String },
}

/// Runs the phase. The supervisor's workers are reused for the batches; `opts.workers - 1`
/// more supervisors, each with a worker of its own, run slices of every batch at once.
/// About 90 lines: the batch loop keeps the running counts and its two early ends (an
/// environment problem, a failure to shrink) in one place; batches run in run_batch.
pub fn run(sup: &mut Supervisor, ctx: &Ctx, opts: &SeqOptions) -> Result<SeqOutcome, SeqError> {
    let mut extra = Vec::new();
    for _ in 1..opts.workers.max(1) {
        extra.push(Supervisor::start(sup.spec().clone())?);
    }
    let mut pool: Vec<&mut Supervisor> = std::iter::once(sup).chain(extra.iter_mut()).collect();
    set_surface(Surface::from_exports(&ctx.exports));
    let strategy = Machine::sequential_strategy(1..=opts.max_len);
    let mut runner = runner(ctx.seed);
    let start = Instant::now();
    let (mut done, mut calls, mut hresult) = (0u64, 0u64, false);
    let mut warnings: Vec<String> = Vec::new();
    let mut next_index = 0u64;
    let mut stopped = None;
    // Workers collided on a backup limit shared across processes: one worker since.
    let mut serial = false;
    while next_index < opts.sequences {
        if opts.budget.is_some_and(|b| start.elapsed() >= b) {
            stopped = Some(format!(
                "stopped at the time budget of {} s",
                opts.budget.unwrap_or_default().as_secs_f64()
            ));
            break;
        }
        let (mut trees, indices) = next_batch(&strategy, &mut runner, opts, &mut next_index)?;
        let n = trees.len();
        if n == 0 {
            break;
        }
        let cases: Vec<(State, Vec<Transition>)> = trees.iter().map(case).collect();
        let programs: Vec<Program> = cases
            .iter()
            .enumerate()
            .map(|(k, (s, ts))| {
                oracle::program(ctx, s, ts, format!("sequence {}", done + k as u64))
            })
            .collect();
        // From `offset` on, the batch's sequences still wait for a judgement: a collision of
        // workers on a one-backup server sends them again, in one worker.
        let mut offset = 0;
        let mut ran = 0;
        'batch: while offset < n {
            let (results, judged) = run_batch(
                &mut pool,
                ctx,
                &programs[offset..],
                &cases[offset..],
                opts.budget,
                start,
            )?;
            ran = offset + judged.len();
            for (i, mut j) in judged.into_iter().enumerate() {
                let k = offset + i;
                let (init, ts) = &cases[k];
                let mut result = results[i].as_ref().expect("judged programs have results");
                let again;
                if matches!(j.failure, Some(Failure::Leak { .. })) {
                    // Growth in one run can be one-off set-up; a leak grows again.
                    again = recurring(pool[0], &programs[k])?;
                    result = &again;
                    j = oracle::judge(ctx, init, ts, result);
                }
                if j.environment.is_some() && pool.len() > 1 {
                    // A backup refused with no session of the sequence's own live: the
                    // library's limit may be shared by every process (a domain controller
                    // runs one backup for all its clients), and another worker held it.
                    // One worker from here on; only a refusal there is the environment's.
                    pool.truncate(1);
                    serial = true;
                    offset = k;
                    continue 'batch;
                }
                hresult |= j.hresult_accepted;
                for w in &j.warnings {
                    if !warnings.contains(w) {
                        warnings.push(w.clone());
                    }
                }
                if let Some(env) = j.environment {
                    return Ok(SeqOutcome {
                        eval: Eval::new(
                            Outcome::Inconclusive,
                            format!("sequences need live sessions, but {env}"),
                        ),
                        repro: None,
                        sequences: done + k as u64,
                        calls,
                    });
                }
                if j.failure.is_some() {
                    let found = Failing {
                        tree: trees.swap_remove(k),
                        prog: &programs[k],
                        result,
                        index: indices[k],
                        ran_before: done + k as u64,
                        calls,
                    };
                    return Ok(shrink(pool[0], ctx, opts, found)?);
                }
                calls += calls_of(ts);
            }
            break;
        }
        done += ran as u64;
    }
    let why = stopped.unwrap_or_else(|| match opts.partition {
        Some((k, n)) => format!("all {done} sequences of shard {k}/{n} ran"),
        None => format!("all {} requested sequences ran", opts.sequences),
    });
    let why = if serial {
        format!("{why}; the library's server runs one backup at a time for all its clients, so the sequences ran in one worker once two had collided")
    } else {
        why
    };
    let why = match &opts.pace {
        Some(pace) => format!("{why}; {pace}"),
        None => why,
    };
    Ok(SeqOutcome {
        eval: passed(ctx, done, calls, hresult, &warnings, &why),
        repro: None,
        sequences: done,
        calls,
    })
}

/// The next batch of sequences and their indices. Every shard generates every sequence (one
/// stream per seed) and keeps its own share.
fn next_batch(
    strategy: &impl Strategy<Tree = Tree>,
    runner: &mut TestRunner,
    opts: &SeqOptions,
    next_index: &mut u64,
) -> Result<(Vec<Tree>, Vec<u64>), SeqError> {
    let mut trees: Vec<Tree> = Vec::with_capacity(opts.batch);
    let mut indices: Vec<u64> = Vec::with_capacity(opts.batch);
    while trees.len() < opts.batch && *next_index < opts.sequences {
        let tree = strategy
            .new_tree(runner)
            .map_err(|reason| SeqError::Generation {
                index: *next_index,
                reason: reason.to_string(),
            })?;
        if sequence_in_shard(*next_index, opts.partition) {
            trees.push(tree);
            indices.push(*next_index);
        }
        *next_index += 1;
    }
    Ok((trees, indices))
}

/// Whether sequence `i` of the seed's stream is in shard k of n (all are without a shard).
fn sequence_in_shard(i: u64, partition: Option<(u64, u64)>) -> bool {
    partition.is_none_or(|(k, n)| i % n == k - 1)
}

/// How many of `sequences` a shard runs: those `sequence_in_shard`.
pub fn shard_share(sequences: u64, partition: Option<(u64, u64)>) -> u64 {
    match partition {
        Some((k, n)) => (sequences + n - k) / n,
        None => sequences,
    }
}

/// The phase's verdict when every sequence agreed with the model: a warning when an answer
/// was only accepted (an HRESULT, or a code the documentation does not name).
fn passed(ctx: &Ctx, done: u64, calls: u64, hresult: bool, warnings: &[String], why: &str) -> Eval {
    let mut detail = format!(
        "{done} random sequences ({calls} calls, seed {}) agreed with the model and each left handles and threads where it found them; {why}",
        ctx.seed
    );
    let mut outcome = Outcome::Pass;
    if hresult {
        detail.push_str("; 0x80070057 was accepted for 87 under --accept-hresult");
        outcome = Outcome::Warn;
    }
    if !warnings.is_empty() {
        detail.push_str(&format!(
            "; compatibility warnings (not failures: the documentation names no code): {}",
            warnings.join("; ")
        ));
        outcome = Outcome::Warn;
    }
    Eval::new(outcome, detail)
}

/// Runs one batch and judges each result as it arrives; the first failure (or the budget)
/// stops the batch. The batch is cut into one contiguous slice per worker, run at once; a slice
/// stops when it fails or when a failure is known earlier in the batch, so the earliest one is
/// found. Gives the results and judgements in order, up to the first slice that stopped.
fn run_batch(
    pool: &mut [&mut Supervisor],
    ctx: &Ctx,
    programs: &[Program],
    cases: &[(State, Vec<Transition>)],
    budget: Option<Duration>,
    start: Instant,
) -> Result<(Vec<Option<RunResult>>, Vec<Judgement>), HarnessError> {
    let n = programs.len();
    let first_failure = AtomicUsize::new(usize::MAX);
    let slice_len = n.div_ceil(pool.len());
    let outcomes: Vec<Result<SliceOutcome, HarnessError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pool
            .iter_mut()
            .enumerate()
            .map(|(w, s)| {
                let from = (w * slice_len).min(n);
                let to = ((w + 1) * slice_len).min(n);
                let first_failure = &first_failure;
                scope.spawn(move || {
                    let mut judged = Vec::new();
                    let results = s.run_until(&programs[from..to], &mut |k, r| {
                        let index = from + k;
                        let (init, ts) = &cases[index];
                        let j = oracle::judge(ctx, init, ts, r);
                        // A leak is confirmed after the batch (it must recur), so it
                        // does not stop the batch.
                        let leak = matches!(j.failure, Some(Failure::Leak { .. }));
                        let failed = (j.failure.is_some() && !leak) || j.environment.is_some();
                        if failed {
                            first_failure.fetch_min(index, Ordering::SeqCst);
                        }
                        judged.push(j);
                        !failed
                            && index < first_failure.load(Ordering::SeqCst)
                            && budget.is_none_or(|b| start.elapsed() < b)
                    })?;
                    Ok((results, judged))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a slice thread"))
            .collect()
    });
    let mut results: Vec<Option<RunResult>> = Vec::with_capacity(n);
    let mut judged: Vec<Judgement> = Vec::with_capacity(n);
    for outcome in outcomes {
        let (r, j) = outcome?;
        let complete = j.len() == r.len();
        results.extend(r);
        judged.extend(j);
        // Past an incomplete slice nothing counts: later slices ran out of order.
        if !complete {
            break;
        }
    }
    results.truncate(judged.len());
    Ok((results, judged))
}

/// Patience for hanging candidates while shrinking (the result is re-checked with the full one).
const SHRINK_PATIENCE: Duration = Duration::from_millis(500);

fn same_kind(j: &Judgement, kind: Option<FailureKind>) -> bool {
    kind.is_some() && j.failure.as_ref().map(|f| f.kind()) == kind
}

/// A failing sequence as the batch saw it.
struct Failing<'a> {
    tree: Tree,
    prog: &'a Program,
    result: &'a RunResult,
    /// Its index in the seed's stream.
    index: u64,
    /// Sequences that ran before it, and the calls they made.
    ran_before: u64,
    calls: u64,
}

/// The failing sequence after shrinking.
struct Shrunk {
    prog: Program,
    judgement: Judgement,
    /// Calls in the minimal sequence.
    len: usize,
    /// It failed again alone in a fresh worker.
    alone: bool,
    /// How the shrink ended, appended to the detail.
    note: String,
}

/// Reproduces `found` alone, shrinks it and reports it.
fn shrink(
    sup: &mut Supervisor,
    ctx: &Ctx,
    opts: &SeqOptions,
    found: Failing,
) -> Result<SeqOutcome, HarnessError> {
    let (index, ran_before, calls) = (found.index, found.ran_before, found.calls);
    let shrunk = minimise(sup, ctx, opts, found)?;
    Ok(failed_outcome(ctx, shrunk, index, ran_before, calls))
}

/// Reproduces the failure in a fresh worker, then simplifies the sequence while it fails
/// the same way, within the shrink budget.
fn minimise(
    sup: &mut Supervisor,
    ctx: &Ctx,
    opts: &SeqOptions,
    found: Failing,
) -> Result<Shrunk, HarnessError> {
    let Failing {
        tree,
        prog: first_prog,
        result: first_result,
        ..
    } = found;
    let (init, ts) = case(&tree);
    let first = oracle::judge(ctx, &init, &ts, first_result);
    let kind = first.failure.as_ref().map(|f| f.kind());
    let (prog, j) = attempt(sup, ctx, &init, &ts, kind)?;
    if !same_kind(&j, kind) {
        // Not reproduced alone: report what was seen, unshrunk.
        return Ok(Shrunk {
            prog: first_prog.clone(),
            judgement: first,
            len: ts.len(),
            alone: false,
            note: "; it did not reproduce alone in a fresh worker (it depends on earlier sequences), so it was not shrunk".into(),
        });
    }
    // Tell the tree how far the run got: transitions after the failing one were never
    // executed and go first; without this it would discard the whole sequence.
    let seen = match &j.failure {
        Some(Failure::Mismatch { step, .. })
        | Some(Failure::Died {
            step: Some(step), ..
        }) => step + 1,
        _ => ts.len(),
    };
    if let (_, _, Some(counter)) = tree.current() {
        counter.store(seen, std::sync::atomic::Ordering::SeqCst);
    }
    let reproduced = Shrunk {
        prog,
        judgement: j,
        len: ts.len(),
        alone: true,
        note: String::new(),
    };
    simplify(sup, ctx, opts, tree, kind, (&init, &ts), reproduced)
}

/// Simplifies a reproduced failure (`first`, the sequence `case`) while candidates fail the
/// same way, within the shrink budget.
fn simplify(
    sup: &mut Supervisor,
    ctx: &Ctx,
    opts: &SeqOptions,
    mut tree: Tree,
    kind: Option<FailureKind>,
    (init, ts): (&State, &[Transition]),
    first: Shrunk,
) -> Result<Shrunk, HarnessError> {
    let mut note = String::new();
    // A hanging candidate costs the whole patience: shrink hangs with a short one, and
    // check the result with the full patience afterwards.
    let full_patience = sup.spec().call_timeout;
    if kind == Some(FailureKind::Timeout) {
        sup.set_call_timeout(full_patience.min(SHRINK_PATIENCE));
    }
    let mut best = Shrunk {
        len: ts.len(),
        note: String::new(),
        ..first
    };
    let mut best_case = (init.clone(), ts.to_vec());
    let deadline = Instant::now() + opts.shrink_budget;
    let mut rounds = 0u32;
    loop {
        if Instant::now() >= deadline {
            note = format!(
                "; shrinking stopped at its {} s budget",
                opts.shrink_budget.as_secs()
            );
            break;
        }
        if !tree.simplify() {
            break;
        }
        rounds += 1;
        let (cinit, cts) = case(&tree);
        let (cprog, cj) = attempt(sup, ctx, &cinit, &cts, kind)?;
        if same_kind(&cj, kind) {
            best.prog = cprog;
            best.judgement = cj;
            best.len = cts.len();
            best_case = (cinit, cts);
        } else if !tree.complicate() {
            break;
        }
    }
    if note.is_empty() {
        note = format!("; shrunk in {rounds} rounds");
    }
    if kind == Some(FailureKind::Timeout) {
        sup.set_call_timeout(full_patience);
        let (vprog, vj) = attempt(sup, ctx, &best_case.0, &best_case.1, kind)?;
        if same_kind(&vj, kind) {
            best.prog = vprog;
            best.judgement = vj;
        } else {
            // Only slow under the short patience: keep the sequence confirmed at full.
            let (oprog, oj) = attempt(sup, ctx, init, ts, kind)?;
            best.prog = oprog;
            best.judgement = oj;
            best.len = ts.len();
            note = "; the shorter sequences did not hang with the full patience, so it is reported unshrunk".into();
        }
    }
    Ok(Shrunk { note, ..best })
}

/// The outcome, detail and C repro of a shrunk failure.
fn failed_outcome(
    ctx: &Ctx,
    shrunk: Shrunk,
    index: u64,
    ran_before: u64,
    calls: u64,
) -> SeqOutcome {
    let Shrunk {
        prog,
        judgement: j,
        len: best_len,
        alone,
        note,
    } = shrunk;
    let failure = j.failure.clone().expect("a failing judgement");
    let outcome = match &failure {
        Failure::Died { death, .. } => death.death.outcome(),
        _ => Outcome::Fail,
    };
    let calls_listed: Vec<String> = prog.ops[Layout::of(&prog).steps()]
        .iter()
        .map(|o| o.describe())
        .collect();
    let detail = format!(
        "sequence {index} (seed {}) failed; minimal sequence of {best_len} calls [{}]: {}{note}",
        ctx.seed,
        calls_listed.join("; "),
        describe_failure(&failure, &prog)
    );
    let header = format!(
        "ntdsbcli-conform seq.model repro: seed {}, sequence {index}, {best_len} calls.",
        ctx.seed
    );
    // A failure that needs luck (it did not come back alone, or threads race in it) is
    // repeated by the repro until it shows.
    let mode = repro::Mode {
        repeat: if !alone {
            Some("the failure did not reproduce alone in a fresh worker, so it depends on timing or on what ran before".into())
        } else if racing(&prog) {
            Some(
                "threads end one handle at once in it, so whether it fails depends on timing"
                    .into(),
            )
        } else {
            None
        },
        page_heap: matches!(&failure, Failure::Died { death, .. } if death.page_heap),
    };
    let mut detail = detail;
    if let Some(why) = &mode.repeat {
        detail.push_str(&format!(
            "; the repro repeats the sequence until it fails (at most {} rounds or {} s): {why}",
            repro::REPEAT_ROUNDS,
            repro::REPEAT_SECONDS
        ));
    }
    let c = repro::render(&prog, &j.expects, &j.targets, &failure, &mode, &header);
    SeqOutcome {
        eval: Eval::new(outcome, detail),
        repro: Some(c),
        sequences: ran_before + 1,
        calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard's share counts exactly the indices it runs.
    #[test]
    fn a_shards_share_of_the_sequences_is_its_indices() {
        for (total, n) in [(10u64, 3u64), (9, 3), (1, 2), (10_000, 7)] {
            let shares: Vec<u64> = (1..=n).map(|k| shard_share(total, Some((k, n)))).collect();
            for (k, share) in (1..=n).zip(&shares) {
                assert_eq!(
                    *share,
                    (0..total)
                        .filter(|&i| sequence_in_shard(i, Some((k, n))))
                        .count() as u64
                );
            }
            assert_eq!(shares.iter().sum::<u64>(), total);
        }
        assert_eq!(shard_share(10, None), 10);
    }
}
