//! One verification run: start the workers, decide what to run from the exports, run every
//! program in one batch, judge each check as its programs finish, confirm failures in a fresh
//! worker, and keep the JSON report on disk current throughout.

use crate::catalogue::{CheckDef, Runs, CHECKS};
use crate::checks::{Ctx, Eval, Judge};
use crate::defaults;
use crate::model::{self, phase::SeqOptions};
use crate::pace::{self, Pace};
use ntdsbcli_harness::preflight;
use ntdsbcli_harness::program::SetAuth;
use ntdsbcli_harness::program::{Observation, Op, Program, Text};
use ntdsbcli_harness::report::{
    CheckReport, Config, JsonWriter, Library, Outcome, Report, Stats, Tool, Verdict, SCHEMA,
};
use ntdsbcli_harness::worker::{
    DeathReport, LibrarySpec, RunResult, Supervisor, Teardown, WorkerSpec,
};
use ntdsbcli_harness::HarnessError;
use ntdsbcli_harness::{abi, codes};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub library: LibrarySpec,
    /// The binary that serves as worker (this program, or the built CLI under `cargo test`).
    pub worker_exe: PathBuf,
    pub server: String,
    pub seed: u64,
    pub sequences: u64,
    pub accept_hresult: bool,
    /// Measured cycles per session path in end.release.
    pub release_cycles: u32,
    /// Resource calls failed per session path in fault.cleanup (0: off).
    pub fault_sites: u64,
    /// Time budget of the fault.cleanup sweep.
    pub fault_budget: Duration,
    /// Quarantine bytes of the page heap for a library loaded from a file (None: off).
    pub page_heap: Option<usize>,
    /// Time budget for generating new sequences in seq.model.
    pub sequence_budget: Option<Duration>,
    /// Time budget for shrinking a failing sequence.
    pub shrink_budget: Duration,
    /// Workers running sequences at once.
    pub jobs: usize,
    /// Shard K of N (1-based): a stable share of the checks and sequences.
    pub partition: Option<(u64, u64)>,
    /// Credentials passed to DsSetAuthIdentity in every worker before any other call.
    pub credentials: Option<Credentials>,
    pub call_timeout: Duration,
    pub load_timeout: Duration,
    /// Selects a planted defect in the bundled reference (for testing the suite itself).
    pub mutant: Option<String>,
    /// Only these check ids (all when None).
    pub only: Option<Vec<String>>,
    pub json: Option<PathBuf>,
    /// The most resident memory a worker may hold, in MiB (None: no limit).
    pub memory_mb: Option<u64>,
    /// Variables passed to workers beyond the platform's own (their environment is otherwise
    /// minimal): the user's `--worker-env`.
    pub worker_env: Vec<(OsString, OsString)>,
    /// Variables that never reach a worker, whatever else says (the password's).
    pub withhold: Vec<OsString>,
}

impl RunOptions {
    /// The options of `ntdsbcli-conform run` with no flags but the library.
    pub fn new(library: LibrarySpec, worker_exe: PathBuf) -> RunOptions {
        let ms = Duration::from_millis;
        RunOptions {
            library,
            worker_exe,
            server: defaults::SERVER.into(),
            seed: 1,
            sequences: defaults::SEQUENCES,
            accept_hresult: false,
            release_cycles: defaults::RELEASE_CYCLES,
            fault_sites: defaults::FAULT_SITES,
            fault_budget: ms(defaults::FAULT_BUDGET_MS),
            page_heap: Some(ntdsbcli_harness::pageheap::DEFAULT_QUARANTINE),
            sequence_budget: Some(ms(defaults::SEQUENCE_BUDGET_MS)),
            shrink_budget: ms(defaults::SHRINK_BUDGET_MS),
            jobs: defaults::jobs(),
            partition: None,
            credentials: None,
            call_timeout: ms(defaults::CALL_TIMEOUT_MS),
            load_timeout: ms(defaults::LOAD_TIMEOUT_MS),
            mutant: None,
            only: None,
            json: None,
            memory_mb: Some(defaults::WORKER_MEMORY_MB),
            worker_env: Vec::new(),
            withhold: Vec::new(),
        }
    }
}

/// A user and domain for DsSetAuthIdentity. The password is held only in memory, passed to
/// workers over their private pipe, and never written to a report.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub domain: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("password", &"(not shown)")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Sequences(#[from] model::phase::SeqError),
    #[error("{path}: required exports missing: {}", missing.join(", "))]
    MissingExports {
        path: String,
        missing: Vec<&'static str>,
        report: Box<Report>,
    },
}

pub(crate) fn identity(opts: &RunOptions) -> Result<(String, String, u64), HarnessError> {
    let (shown, file) = match &opts.library {
        LibrarySpec::Path(p) => (p.display().to_string(), p.clone()),
        // The embedded reference is part of the worker binary: identify that.
        LibrarySpec::Embedded => ("(embedded reference)".to_string(), opts.worker_exe.clone()),
    };
    let bytes = std::fs::read(&file).map_err(|source| HarnessError::Unreadable {
        path: file.clone(),
        source,
    })?;
    let digest = Sha256::digest(&bytes);
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((shown, hex, bytes.len() as u64))
}

/// DsSetAuthIdentity with the user's credentials, in the W form when the library has it.
fn credentials_prelude(opts: &RunOptions) -> Vec<Op> {
    let Some(c) = &opts.credentials else {
        return Vec::new();
    };
    vec![Op::SetAuth(SetAuth {
        // The worker falls back to A when W is absent (not run -> reported as an error).
        wide: true,
        user: Text::Lit(c.user.clone()),
        domain: c.domain.clone().map(Text::Lit).unwrap_or(Text::Null),
        password: Text::Lit(c.password.clone()),
    })]
}

/// Which shard a check belongs to: by a hash of its id alone, so that adding checks never
/// moves another one. seq.model is in every shard (the sequences are split instead).
pub fn in_shard(def: &CheckDef, k: u64, n: u64) -> bool {
    if matches!(def.runs, Runs::Sequences) {
        return true;
    }
    // FNV-1a: stable across versions and platforms, unlike the std hasher.
    let h = def.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    h % n == k - 1
}

pub(crate) fn missing_needs(def: &CheckDef, ctx: &Ctx) -> Option<String> {
    let missing: Vec<String> = def
        .needs
        .iter()
        .filter(|group| !group.iter().any(|n| ctx.has(n)))
        .map(|group| group.join(" or "))
        .collect();
    (!missing.is_empty()).then(|| format!("not exported: {}", missing.join("; ")))
}

/// A decided check as the report holds it; a failing one names the rule it breaks.
fn report_of(def: &CheckDef, e: Eval) -> CheckReport {
    let detail = match e.outcome.is_failure() {
        true => crate::spec::name_rule(&e.detail, def.requirement),
        false => e.detail,
    };
    CheckReport {
        id: def.id.to_string(),
        requirement: def.requirement.to_string(),
        strength: def.strength,
        outcome: e.outcome,
        detail,
        repro: None,
        ms: Some(0),
        coverage: e.coverage,
    }
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

fn death_detail(program: &Program, d: &DeathReport) -> String {
    let mut s = format!("{}: {}", program.label, d.death.describe());
    if let Some(i) = d.op {
        if let Some(op) = program.ops.get(i) {
            s.push_str(&format!(
                " in {} (step {} of {})",
                op.describe(),
                i + 1,
                program.ops.len()
            ));
        }
    }
    if let Some(out) = &d.last_output {
        s.push_str(&format!("; last output: {out:?}"));
    }
    s.push_str(if d.confirmed {
        "; reproduced in a fresh worker"
    } else {
        "; seen after earlier checks in the same worker, not reproduced alone"
    });
    s
}

/// Judges a check from its programs' results: a death decides it, else the check's own
/// judgement.
fn judge(check: &PlannedCheck, ctx: &Ctx, programs: &[Program], results: &[RunResult]) -> Eval {
    judge_results(&check.judge, ctx, programs, results)
}

/// A check's judgement of its programs' results, deaths included (also `diff`'s, per side).
pub(crate) fn judge_results(
    judge: &crate::checks::Judge,
    ctx: &Ctx,
    programs: &[Program],
    results: &[RunResult],
) -> Eval {
    let deaths: Vec<(&Program, &DeathReport)> = programs
        .iter()
        .zip(results)
        .filter_map(|(p, r)| match r {
            RunResult::Died(d) => Some((p, d)),
            RunResult::Done(_) => None,
        })
        .collect();
    if let Some((p, d)) = deaths.first() {
        let outcome = d.death.outcome();
        let mut detail = death_detail(p, d);
        if deaths.len() > 1 {
            detail.push_str(&format!(" (and {} more of its programs)", deaths.len() - 1));
        }
        return Eval::new(outcome, detail);
    }
    let obs: Vec<&[Observation]> = results
        .iter()
        .map(|r| match r {
            RunResult::Done(obs) => &obs[..],
            RunResult::Died(_) => unreachable!("deaths handled above"),
        })
        .collect();
    out_of_descriptors(judge.judge(ctx, programs, &obs), results)
}

/// What a check says when a call failed while the worker had no descriptor left: the cause is
/// the library's, whatever the code it returned suggests (an unavailable server, say).
const NO_DESCRIPTORS: &str = "a call failed while the worker had no descriptor left to open (EMFILE): the library holds every descriptor the process may have, so that failure is its own";

fn out_of_descriptors(e: Eval, results: &[RunResult]) -> Eval {
    let flagged = results.iter().any(|r| match r {
        RunResult::Done(obs) => obs.iter().any(|o| o.no_descriptors),
        RunResult::Died(_) => false,
    });
    match e.outcome {
        _ if !flagged => e,
        Outcome::Inconclusive | Outcome::Fail => {
            Eval::new(Outcome::Fail, format!("{NO_DESCRIPTORS}; {}", e.detail))
        }
        _ => e,
    }
}

fn calls_in(obs: &[Observation]) -> u64 {
    obs.iter()
        .map(|o| {
            o.calls.unwrap_or(if o.rc.is_some() {
                1
            } else {
                o.codes.len() as u64
            })
        })
        .sum()
}

/// fault.cleanup. The bundled reference is linked into this program and shares its imports,
/// so it is swept in its library build, which every build of the CLI puts beside it.
fn fault_phase(
    spec: &WorkerSpec,
    ctx: &Ctx,
    opts: &RunOptions,
    pace: Pace,
) -> Result<(Eval, Option<String>), RunError> {
    if opts.fault_sites == 0 {
        return Ok((Eval::new(Outcome::Skip, "not run: --fault-sites 0"), None));
    }
    // Before any worker starts for it: there is nothing to route with.
    if ntdsbcli_harness::imports::ROUTABLE.is_empty() {
        let e = crate::fault::skip_unrouted(crate::fault::NOTHING_ROUTABLE);
        return Ok((e, None));
    }
    let limits = crate::fault::Limits {
        sites: opts.fault_sites,
        budget: opts.fault_budget,
        spread: pace.spread(),
    };
    // Workers of their own: what a library does after a failure (a lazy set-up it gave up on,
    // say) must not reach the sequences that run after it.
    if let LibrarySpec::Path(_) = &opts.library {
        let mut own = Supervisor::start(spec.clone())?;
        return Ok(crate::fault::run(&mut own, ctx, limits, None)?);
    }
    let Some(file) = crate::fault::reference_library(&opts.worker_exe) else {
        return Ok((
            Eval::new(
                Outcome::Skip,
                format!(
                    "not run: the bundled reference is linked into this program and shares its imports, and its library build ({}) is not beside it; build the workspace, or run it with --lib",
                    crate::fault::REFERENCE_FILE.as_str()
                ),
            ),
            None,
        ));
    };
    let mut spec = spec.clone();
    spec.library = LibrarySpec::Path(file.clone());
    let mut lib_sup = match Supervisor::start(spec) {
        Ok(s) => s,
        Err(e) => {
            return Ok((
                Eval::new(
                    Outcome::Skip,
                    format!("not run: the bundled reference's library build did not load: {e}"),
                ),
                None,
            ))
        }
    };
    let (mut e, repro) = crate::fault::run(&mut lib_sup, ctx, limits, None)?;
    e.detail.push_str(&format!(
        " (run on the bundled reference's library build, {})",
        crate::fault::REFERENCE_FILE.as_str()
    ));
    Ok((e, repro))
}

/// The report as it grows: each decided check is added, shown to the caller and, when a JSON
/// path was given, written out at once.
struct Progress<'a> {
    report: Report,
    writer: Option<JsonWriter>,
    on_event: &'a mut dyn FnMut(Event),
    total: usize,
}

impl Progress<'_> {
    /// Tells the caller a long phase starts.
    fn phase(&mut self, what: &'static str) {
        (self.on_event)(Event::Phase(what, self.report.checks.len(), self.total));
    }

    /// Adds a decided check and writes the report.
    fn add(&mut self, mut rep: CheckReport) -> Result<(), HarnessError> {
        if prepare_failed(&self.report.checks) {
            blame_prepare(&mut rep);
        }
        self.report.checks.push(rep.clone());
        (self.on_event)(Event::Decided(&rep, self.report.checks.len(), self.total));
        self.write()
    }

    /// Adds a check whose failure is still to be confirmed in a fresh worker: written at
    /// once, shown (`on_event`) only when confirmation has decided it.
    fn add_unconfirmed(&mut self, rep: CheckReport) -> Result<(), HarnessError> {
        self.report.checks.push(rep);
        self.write()
    }

    /// Writes the checks the plan decided before anything ran, and shows them when the run
    /// goes on (`show`): a run that cannot go on says so in one line, nothing else.
    fn begin(&mut self, decided: &[CheckReport], show: bool) -> Result<(), HarnessError> {
        self.report.checks.extend(decided.iter().cloned());
        for c in self.report.checks.iter().filter(|_| show) {
            (self.on_event)(Event::Decided(c, self.report.checks.len(), self.total));
        }
        if let Some(w) = &self.writer {
            w.write(&self.report)?;
        }
        Ok(())
    }

    /// The complete report, in catalogue order whatever order the checks finished in, written
    /// once more.
    fn finish(self, selected: &[&CheckDef], stats: Stats) -> Result<Report, HarnessError> {
        let mut report = self.report;
        let order = |id: &str| {
            selected
                .iter()
                .position(|d| d.id == id)
                .unwrap_or(usize::MAX)
        };
        report.checks.sort_by_key(|c| order(&c.id));
        if prepare_failed(&report.checks) {
            report.checks.iter_mut().for_each(blame_prepare);
        }
        report.stats = stats;
        report.complete = true;
        report.recompute_verdict();
        if let Some(w) = &self.writer {
            w.write(&report)?;
        }
        Ok(report)
    }

    fn write(&mut self) -> Result<(), HarnessError> {
        if let Some(w) = &self.writer {
            self.report.recompute_verdict();
            w.write(&self.report)?;
        }
        Ok(())
    }
}

/// Whether prepare.ok has failed (confirmed or not: a failure stays one).
fn prepare_failed(checks: &[CheckReport]) -> bool {
    checks
        .iter()
        .any(|c| c.id == "prepare.ok" && c.outcome.is_failure())
}

/// A check left without a session because Prepare does not work points at prepare.ok, which
/// failed, instead of giving advice for the environment that would send the vendor the wrong
/// way.
fn blame_prepare(c: &mut CheckReport) {
    if c.outcome != Outcome::Inconclusive || c.id == "prepare.ok" {
        return;
    }
    if let Some(d) = blocked_detail(&c.detail) {
        c.detail = d;
    }
}

/// "needs a live session, but Prepare returned X: advice" becomes "blocked by prepare.ok,
/// which failed: this check needs a live session, and Prepare returned X"; any other detail
/// that gives advice for the environment loses the advice and gains the same opening.
fn blocked_detail(detail: &str) -> Option<String> {
    if let Some(rest) = detail.strip_prefix("needs a live session, but ") {
        let what = strip_advice(rest)
            .trim_end_matches(" (see prepare.ok)")
            .to_string();
        return Some(format!(
            "blocked by prepare.ok, which failed: this check needs a live session, and {what}"
        ));
    }
    let stripped = strip_advice(detail);
    (stripped != detail).then(|| format!("blocked by prepare.ok, which failed: {stripped}"))
}

/// A detail without the environment advice of `codes::environment_problem`.
fn strip_advice(detail: &str) -> String {
    let mut d = detail.to_string();
    for (_, fix) in codes::ENVIRONMENT_PROBLEMS {
        for form in [format!(": {fix}"), format!(" ({fix})"), fix.to_string()] {
            d = d.replace(&form, "");
        }
    }
    d
}

/// What the planning stage decided: the checks it could judge without calling anything, and
/// every program of the checks that run programs, in one batch.
struct Plan {
    decided: Vec<CheckReport>,
    planned: Vec<(PlannedCheck, std::ops::Range<usize>)>,
    programs: Vec<Program>,
}

/// A check whose programs are in the plan: its entry, and the judgement that knows its steps.
struct PlannedCheck {
    def: &'static CheckDef,
    judge: Judge,
}

impl PlannedCheck {
    fn spread(&self) -> bool {
        self.def.runs.spread()
    }
}

/// What a run tells its caller as it goes (for progress output).
pub enum Event<'a> {
    /// A check was decided: it, how many are decided, and how many there are.
    Decided(&'a CheckReport, usize, usize),
    /// A long phase starts: what it does, and how many checks are decided before it.
    Phase(&'static str, usize, usize),
}

/// Runs the checks and returns the finished report. `on_event` sees each check as it is
/// decided, and each long phase as it starts. The stages: identify the library, start the workers, plan,
/// execute and judge the programs, confirm failures, the fault and sequence phases, report.
pub fn run(opts: &RunOptions, on_event: &mut dyn FnMut(Event)) -> Result<Report, RunError> {
    let start = Instant::now();
    if let LibrarySpec::Path(p) = &opts.library {
        preflight::check(p)?;
    }
    let identity = identity(opts)?;
    let mut sup = Supervisor::start(worker_spec(opts))?;
    let exports = sup.exports().to_vec();
    let ctx = Ctx {
        server: opts.server.clone(),
        accept_hresult: opts.accept_hresult,
        exports: exports.clone(),
        seed: opts.seed,
        release_cycles: opts.release_cycles,
    };
    let selected = select(opts);
    let mut progress = Progress {
        report: header(opts, &sup, identity.clone()),
        writer: opts.json.as_deref().map(JsonWriter::new),
        on_event,
        total: selected.len(),
    };
    let missing = abi::missing_required(&exports);
    let plan = plan(&selected, &ctx, &missing);
    progress.begin(&plan.decided, missing.is_empty())?;
    if !missing.is_empty() {
        let report = progress.finish(&selected, stats(&[], (0, 0), start, &sup))?;
        return Err(RunError::MissingExports {
            path: identity.0,
            missing,
            report: Box::new(report),
        });
    }

    // Whether calls wait on a server, and whether sessions may overlap: how many workers the
    // long checks and phases use. Only for runs that have them.
    let pace = match selected
        .iter()
        .any(|d| matches!(d.runs, Runs::Faults | Runs::Sequences) || d.runs.spread())
    {
        true => pace::measure(sup.spec(), &ctx),
        false => Pace::default(),
    };
    let faults = selected.iter().find(|d| matches!(d.runs, Runs::Faults));
    let sequences = selected.iter().find(|d| matches!(d.runs, Runs::Sequences));
    // When calls wait on a server that lets sessions overlap, what runs on workers of its own
    // (the spread checks, the fault sweep) runs while the sequences do; else one after the
    // other, the sequences last.
    let overlap = pace.spread() && sequences.is_some();
    let spread_later = |c: &PlannedCheck| overlap && c.spread();
    let mut results: Vec<Option<RunResult>> = vec![None; plan.programs.len()];
    if pace.spread() && !overlap {
        let passes = spread_passes(sup.spec(), &ctx, &plan);
        take_passes(passes, &plan, &mut progress, &mut results)?;
    }
    let now = |c: &PlannedCheck| !spread_later(c);
    execute(&mut sup, &ctx, &plan, &mut progress, &mut results, &now)?;
    confirm(&mut sup, &ctx, &plan, &mut progress, &now)?;
    let spec = sup.spec().clone();
    let timed_faults = || {
        let t = Instant::now();
        fault_phase(&spec, &ctx, opts, pace).map(|r| (r, ms_since(t)))
    };
    let (faulted, sequenced, passes) = if overlap {
        progress.phase(
            "seq.model: random call sequences, with the sessions of other checks beside them",
        );
        std::thread::scope(|scope| {
            let faults = faults.map(|_| scope.spawn(timed_faults));
            let passes = scope.spawn(|| spread_passes(&spec, &ctx, &plan));
            let seq = sequence_phase(&mut sup, &ctx, opts, pace);
            (faults.map(join), Some(seq), join(passes))
        })
    } else {
        let faulted = faults.map(|_| {
            progress.phase("fault.cleanup: failing each resource call in turn");
            timed_faults()
        });
        (faulted, None, Vec::new())
    };
    if let (Some(def), Some(faulted)) = (faults, faulted) {
        let ((e, repro), ms) = faulted?;
        let mut rep = report_of(def, e);
        rep.repro = repro;
        rep.ms = Some(ms);
        progress.add(rep)?;
    }
    if overlap {
        // What did not pass on workers of its own is decided in the shared worker.
        take_passes(passes, &plan, &mut progress, &mut results)?;
        execute(
            &mut sup,
            &ctx,
            &plan,
            &mut progress,
            &mut results,
            &spread_later,
        )?;
        confirm(&mut sup, &ctx, &plan, &mut progress, &spread_later)?;
    }
    let mut seq_stats = (0, 0);
    // seq.model is decided last, whatever ran beside it.
    if let Some(def) = sequences {
        let seq = match sequenced {
            Some(seq) => seq,
            None => {
                progress.phase("seq.model: random call sequences");
                sequence_phase(&mut sup, &ctx, opts, pace)
            }
        };
        let (seq, ms) = seq?;
        seq_stats = (seq.sequences, seq.calls);
        let planned = model::phase::shard_share(opts.sequences, opts.partition);
        let mut rep = report_of(def, seq.eval.covering("sequences", seq.sequences, planned));
        rep.repro = seq.repro;
        rep.ms = Some(ms);
        if let Some(beside) = overlap.then(|| beside(&plan, faults.is_some())).flatten() {
            rep.detail.push_str(&format!(
                "; {beside} ran at the same time, on workers of their own"
            ));
        }
        progress.add(rep)?;
    }
    if let Some(def) = selected.iter().find(|d| matches!(d.runs, Runs::Teardown)) {
        let t = Instant::now();
        let e = teardown_eval(sup.teardown()?, &opts.library);
        let mut rep = report_of(def, e);
        rep.ms = Some(ms_since(t));
        progress.add(rep)?;
    }
    Ok(progress.finish(&selected, stats(&results, seq_stats, start, &sup))?)
}

/// A thread's result; its panic goes on in the caller.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// What runs beside the sequences when they overlap, for seq.model's detail: the spread
/// checks' paths and the fault sweep.
fn beside(plan: &Plan, faults: bool) -> Option<String> {
    let mut names: Vec<String> = plan
        .planned
        .iter()
        .filter(|(c, _)| c.spread())
        .map(|(c, _)| format!("{}'s paths", c.def.id))
        .collect();
    if faults {
        names.push("fault.cleanup's sweep".into());
    }
    (!names.is_empty()).then(|| names.join(" and "))
}

/// library.teardown from how unloading and exiting ended.
fn teardown_eval(end: Teardown, library: &LibrarySpec) -> Eval {
    let with_output = |mut s: String, out: Option<String>| {
        if let Some(out) = out {
            s.push_str(&format!("; last output: {out:?}"));
        }
        s
    };
    match end {
        Teardown::Clean => Eval::new(
            Outcome::Pass,
            match library {
                LibrarySpec::Path(_) => "the library was unloaded and the process exited normally (status 0)",
                LibrarySpec::Embedded => "the process exited normally (status 0); the embedded reference is part of the verifier and is not unloaded",
            },
        ),
        Teardown::Unloading(death, out) => Eval::new(
            death.outcome(),
            with_output(
                format!(
                    "while the library was being unloaded (its destructors), {}",
                    death.describe()
                ),
                out,
            ),
        ),
        Teardown::Exiting(death, out) => Eval::new(
            death.outcome(),
            with_output(
                format!(
                    "after the library was unloaded, while the process exited (atexit handlers), {}",
                    death.describe()
                ),
                out,
            ),
        ),
    }
}

/// How a worker is started for this run.
pub(crate) fn worker_spec(opts: &RunOptions) -> WorkerSpec {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if let Some(m) = &opts.mutant {
        env.push(("NTDSBCLI_MUTANT".into(), m.into()));
    }
    env.extend(opts.worker_env.iter().cloned());
    WorkerSpec {
        exe: opts.worker_exe.clone(),
        library: opts.library.clone(),
        env,
        call_timeout: opts.call_timeout,
        load_timeout: opts.load_timeout,
        prelude: credentials_prelude(opts),
        page_heap: opts.page_heap,
        memory_mb: opts.memory_mb,
        withhold: opts.withhold.clone(),
    }
}

/// The report before any check is decided: the tool, the library and the configuration.
fn header(
    opts: &RunOptions,
    sup: &Supervisor,
    (path, sha256, size): (String, String, u64),
) -> Report {
    Report {
        schema: SCHEMA,
        tool: Tool {
            name: "ntdsbcli-conform".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        library: Library {
            path,
            sha256,
            size,
            exports: sup.exports().to_vec(),
            routed_imports: sup.routed().to_vec(),
            page_heap: sup.page_heap(),
            version: match &opts.library {
                LibrarySpec::Path(p) => ntdsbcli_harness::fileinfo::version_resource(p),
                LibrarySpec::Embedded => None,
            },
        },
        config: Config {
            seed: opts.seed,
            sequences: opts.sequences,
            server: opts.server.clone(),
            accept_hresult: opts.accept_hresult,
            call_timeout_ms: opts.call_timeout.as_millis() as u64,
            mutant: opts.mutant.clone(),
            partition: opts.partition.map(|(k, n)| format!("{k}/{n}")),
            user: opts.credentials.as_ref().map(|c| match &c.domain {
                Some(d) => format!("{d}\\{}", c.user),
                None => c.user.clone(),
            }),
            fault_sites: Some(opts.fault_sites),
            page_heap: Some(opts.page_heap.is_some()),
        },
        verdict: Verdict::Incomplete,
        complete: false,
        checks: Vec::new(),
        stats: Stats::default(),
    }
}

/// The checks of this run: `--check` and `--partition` applied to the catalogue.
fn select(opts: &RunOptions) -> Vec<&'static CheckDef> {
    CHECKS
        .iter()
        .filter(|d| {
            opts.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == d.id))
        })
        .filter(|d| opts.partition.is_none_or(|(k, n)| in_shard(d, k, n)))
        .collect()
}

/// Decides what needs no call (exports.required, skips) and gathers every other check's
/// programs; the phases plan later, from what they see.
fn plan(selected: &[&'static CheckDef], ctx: &Ctx, missing: &[&str]) -> Plan {
    let mut plan = Plan {
        decided: Vec::new(),
        planned: Vec::new(),
        programs: Vec::new(),
    };
    for def in selected {
        let decided = if matches!(def.runs, Runs::Exports) {
            Some(exports_eval(ctx, missing))
        } else if !missing.is_empty() {
            Some(Eval::new(
                Outcome::Skip,
                "not run: required exports are missing (see exports.required)",
            ))
        } else {
            missing_needs(def, ctx).map(|why| Eval::new(Outcome::Skip, why))
        };
        if let Some(e) = decided {
            plan.decided.push(report_of(def, e));
            continue;
        }
        let Runs::Programs(check) = def.runs else {
            continue;
        };
        let crate::checks::Planned {
            programs: mine,
            judge,
        } = check.plan(ctx);
        if mine.is_empty() {
            // A check that ran nothing has shown nothing: never a pass.
            plan.decided.push(report_of(
                def,
                Eval::new(
                    Outcome::Skip,
                    "not run: none of its programs can be made with this library's exports",
                ),
            ));
            continue;
        }
        let range = plan.programs.len()..plan.programs.len() + mine.len();
        plan.programs.extend(mine);
        plan.planned.push((PlannedCheck { def, judge }, range));
    }
    plan
}

/// exports.required, from the export table alone.
fn exports_eval(ctx: &Ctx, missing: &[&str]) -> Eval {
    if !missing.is_empty() {
        return Eval::new(Outcome::Fail, format!("missing: {}", missing.join(", ")));
    }
    Eval::new(
        Outcome::Pass,
        format!(
            "DsBackupEnd, DsBackupFree and DsBackupPrepare{} are exported ({} of the 28 exports in all)",
            match (ctx.has("DsBackupPrepareA"), ctx.has("DsBackupPrepareW")) {
                (true, true) => "A/W",
                (false, true) => "W",
                _ => "A",
            },
            ctx.exports.len()
        ),
    )
}

/// A spread check that passed on workers of its own: its place in the plan, its judgement,
/// its programs' results and its time.
struct SpreadPass {
    k: usize,
    eval: Eval,
    results: Vec<RunResult>,
    ms: u64,
}

/// When calls wait on a server and sessions may overlap, the programs of a check that allows
/// it (`Check::SPREAD`) run on workers of their own at once. Only a pass is kept: anything
/// else is decided the usual way, in the shared worker with the rest, so that spreading can
/// shorten a run but never change a verdict it would have given. Needs no supervisor: it can
/// run beside the sequences.
fn spread_passes(spec: &WorkerSpec, ctx: &Ctx, plan: &Plan) -> Vec<SpreadPass> {
    let mut passes = Vec::new();
    for (k, (check, range)) in plan.planned.iter().enumerate() {
        if !check.spread() {
            continue;
        }
        let t = Instant::now();
        let programs = &plan.programs[range.clone()];
        let Some(results) = pace::run_spread(spec, programs) else {
            continue;
        };
        let eval = judge(check, ctx, programs, &results);
        if eval.outcome == Outcome::Pass {
            let ms = ms_since(t);
            passes.push(SpreadPass {
                k,
                eval,
                results,
                ms,
            });
        }
    }
    passes
}

/// Adds the spread passes to the report and their results to the run's.
fn take_passes(
    passes: Vec<SpreadPass>,
    plan: &Plan,
    progress: &mut Progress,
    results: &mut [Option<RunResult>],
) -> Result<(), RunError> {
    for pass in passes {
        let (check, range) = &plan.planned[pass.k];
        let mut rep = report_of(check.def, pass.eval);
        rep.ms = Some(pass.ms);
        progress.add(rep)?;
        for (slot, r) in results[range.clone()].iter_mut().zip(pass.results) {
            *slot = Some(r);
        }
    }
    Ok(())
}

/// Runs the programs not yet run of the planned checks `which` picks, in one batch; each
/// check is judged as soon as its last program is in.
fn execute(
    sup: &mut Supervisor,
    ctx: &Ctx,
    plan: &Plan,
    progress: &mut Progress,
    results: &mut [Option<RunResult>],
    which: &dyn Fn(&PlannedCheck) -> bool,
) -> Result<(), RunError> {
    let Plan {
        planned, programs, ..
    } = plan;
    // The programs still to run, in plan order.
    let todo: Vec<usize> = planned
        .iter()
        .filter(|(c, _)| which(c))
        .flat_map(|(_, r)| r.clone())
        .filter(|&i| results[i].is_none())
        .collect();
    let owner: Vec<usize> = planned
        .iter()
        .enumerate()
        .flat_map(|(k, (_, r))| std::iter::repeat_n(k, r.len()))
        .collect();
    let mut remaining = vec![0usize; planned.len()];
    for &i in &todo {
        remaining[owner[i]] += 1;
    }
    let mut write_err = None;
    // One worker runs the batch in order, so a program took the time since the last result.
    let mut last = Instant::now();
    let mut spent = vec![0u64; planned.len()];
    sup.run_these(programs, &todo, &mut |i, r| {
        results[i] = Some(r.clone());
        let k = owner[i];
        remaining[k] -= 1;
        spent[k] += ms_since(last);
        last = Instant::now();
        if remaining[k] == 0 {
            let (check, range) = &planned[k];
            let rs: Vec<RunResult> = results[range.clone()]
                .iter()
                .map(|r| r.clone().expect("all in"))
                .collect();
            let e = judge(check, ctx, &programs[range.clone()], &rs);
            let mut rep = report_of(check.def, e);
            rep.ms = Some(spent[k]);
            let added = if rep.outcome == Outcome::Fail {
                progress.add_unconfirmed(rep)
            } else {
                progress.add(rep)
            };
            if let Err(err) = added {
                write_err.get_or_insert(err);
            }
        }
        true
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    Ok(())
}

/// A wrong value seen in a shared worker is confirmed in a fresh one before it is reported.
fn confirm(
    sup: &mut Supervisor,
    ctx: &Ctx,
    plan: &Plan,
    progress: &mut Progress,
    which: &dyn Fn(&PlannedCheck) -> bool,
) -> Result<(), RunError> {
    for (check, range) in plan.planned.iter().filter(|(c, _)| which(c)) {
        let Some(c) = progress
            .report
            .checks
            .iter_mut()
            .find(|c| c.id == check.def.id)
        else {
            continue;
        };
        if c.outcome != Outcome::Fail {
            continue;
        }
        let first = Eval::new(c.outcome, c.detail.clone());
        let (t, before) = (Instant::now(), c.ms.unwrap_or(0));
        let fresh = sup.run_fresh(&plan.programs[range.clone()])?;
        let again = judge(check, ctx, &plan.programs[range.clone()], &fresh);
        let e = if again.outcome.is_failure() {
            again
        } else {
            let mut first = first;
            first
                .detail
                .push_str("; seen after earlier checks in the same worker, not reproduced alone");
            first
        };
        *c = report_of(check.def, e);
        c.ms = Some(before + ms_since(t));
        let c = c.clone();
        let done = progress.report.checks.len();
        (progress.on_event)(Event::Decided(&c, done, progress.total));
    }
    progress.write()?;
    Ok(())
}

/// seq.model, and how long it took in milliseconds.
fn sequence_phase(
    sup: &mut Supervisor,
    ctx: &Ctx,
    opts: &RunOptions,
    pace: Pace,
) -> Result<(model::phase::SeqOutcome, u64), model::phase::SeqError> {
    let t = Instant::now();
    let seq = model::phase::run(sup, ctx, &seq_options(opts, pace))?;
    Ok((seq, ms_since(t)))
}

fn seq_options(opts: &RunOptions, pace: Pace) -> SeqOptions {
    let workers = pace.sequence_workers(opts.jobs);
    SeqOptions {
        sequences: opts.sequences,
        budget: opts.sequence_budget,
        shrink_budget: opts.shrink_budget,
        workers,
        pace: pace.describe(workers),
        partition: opts.partition,
        max_len: defaults::SEQUENCE_CALLS,
        batch: defaults::SEQUENCE_BATCH,
    }
}

/// The run's figures: the sequences and their calls, and the calls of the checks' programs.
fn stats(
    results: &[Option<RunResult>],
    (sequences, sequence_calls): (u64, u64),
    start: Instant,
    sup: &Supervisor,
) -> Stats {
    Stats {
        sequences,
        calls: sequence_calls
            + results
                .iter()
                .flatten()
                .map(|r| match r {
                    RunResult::Done(obs) => calls_in(obs),
                    RunResult::Died(_) => 0,
                })
                .sum::<u64>(),
        wall_ms: start.elapsed().as_millis() as u64,
        workers: sup.workers_started() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case::rpc_down(
        "needs a live session, but Prepare returned RPC_S_SERVER_UNAVAILABLE (1722): start the directory service's RPC server on this machine",
        Some("this check needs a live session, and Prepare returned RPC_S_SERVER_UNAVAILABLE (1722)")
    )]
    #[case::null_handle(
        "needs a live session, but Prepare returned S_OK with a NULL handle (see prepare.ok)",
        Some("this check needs a live session, and Prepare returned S_OK with a NULL handle")
    )]
    #[case::not_prepare("End returned 1", None)]
    #[case::no_connection(
        "Prepare returned 0xC7FF0007 (hrCouldNotConnect) during Prepare/End: check --server: it must name this machine, a domain controller",
        Some("Prepare returned 0xC7FF0007 (hrCouldNotConnect) during Prepare/End")
    )]
    #[case::forms(
        "even a valid Prepare returned 1722 (check --server: it must name this machine, a domain controller), and 7 forms",
        Some("even a valid Prepare returned 1722, and 7 forms")
    )]
    fn a_check_without_a_session_points_at_a_failed_prepare_ok(
        #[case] detail: &str,
        #[case] why: Option<&str>,
    ) {
        assert_eq!(
            blocked_detail(detail),
            why.map(|w| format!("blocked by prepare.ok, which failed: {w}"))
        );
    }

    /// Shards split the checks: each in exactly one, seq.model in all, by its id alone.
    #[test]
    fn every_check_is_in_one_shard_and_the_sequences_in_all() {
        for n in 1..=5 {
            for def in CHECKS {
                let shards: Vec<u64> = (1..=n).filter(|&k| in_shard(def, k, n)).collect();
                if matches!(def.runs, Runs::Sequences) {
                    assert_eq!(shards.len() as u64, n, "{}", def.id);
                } else {
                    assert_eq!(shards.len(), 1, "{} in shards {shards:?} of {n}", def.id);
                }
            }
        }
    }

    /// The hash is FNV-1a of the id: the same shard on every platform and in every version.
    #[test]
    fn a_checks_shard_depends_on_its_id_alone() {
        let def = |id: &'static str| CheckDef {
            id,
            runs: Runs::Teardown,
            requirement: "",
            strength: ntdsbcli_harness::report::Strength::Documented,
            statement: "",
            source: "",
            conforming: "",
            needs: &[],
        };
        // FNV-1a("end.null") = 0xa2e5d39f04f30fe9, FNV-1a("prepare.ok") = 0x4cbfc33dc8885850:
        // the shards (1-based) for N = 1..=7, as any other implementation computes them.
        let shard = |id, n| (1..=n).find(|&k| in_shard(&def(id), k, n));
        let of = |id| {
            (1..=7)
                .map(|n| shard(id, n).unwrap_or(0))
                .collect::<Vec<_>>()
        };
        assert_eq!(of("end.null"), [1, 2, 3, 2, 2, 6, 3]);
        assert_eq!(of("prepare.ok"), [1, 1, 2, 1, 3, 5, 4]);
    }
}
