//! One verification run: start the workers, decide what to run from the exports, run every
//! program in one batch, judge each check as its programs finish, confirm failures in a fresh
//! worker, and keep the JSON report on disk current throughout.

use crate::catalogue::{CheckDef, CHECKS};
use crate::checks::{check_for, Check, Ctx, Eval, Ran};
use crate::model::{self, phase::SeqOptions};
use ntdsbcli_harness::abi;
use ntdsbcli_harness::preflight;
use ntdsbcli_harness::program::{Obs, Op, Program, Text};
use ntdsbcli_harness::report::{
    CheckReport, Config, JsonWriter, Library, Outcome, Report, Stats, Tool, Verdict, SCHEMA,
};
use ntdsbcli_harness::worker::{DeathReport, LibrarySpec, RunResult, Supervisor, WorkerSpec};
use ntdsbcli_harness::HarnessError;
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
}

impl RunOptions {
    pub fn new(library: LibrarySpec, worker_exe: PathBuf) -> RunOptions {
        RunOptions {
            library,
            worker_exe,
            server: "\\\\localhost".into(),
            seed: 1,
            sequences: 1000,
            accept_hresult: false,
            release_cycles: 200,
            fault_sites: crate::fault::DEFAULT_SITES,
            fault_budget: Duration::from_millis(crate::fault::DEFAULT_BUDGET_MS),
            sequence_budget: None,
            shrink_budget: Duration::from_secs(10),
            jobs: 1,
            partition: None,
            credentials: None,
            call_timeout: Duration::from_secs(3),
            load_timeout: Duration::from_secs(10),
            mutant: None,
            only: None,
            json: None,
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
    #[error("{path}: required exports missing: {}", missing.join(", "))]
    MissingExports {
        path: String,
        missing: Vec<&'static str>,
        report: Box<Report>,
    },
}

fn identity(opts: &RunOptions) -> Result<(String, String, u64), HarnessError> {
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
    vec![Op::SetAuth {
        // The worker falls back to A when W is absent (not run -> reported as an error).
        wide: true,
        user: Text::Lit(c.user.clone()),
        domain: c.domain.clone().map(Text::Lit).unwrap_or(Text::Null),
        password: Text::Lit(c.password.clone()),
    }]
}

/// Which shard a check belongs to: by a hash of its id alone, so that adding checks never
/// moves another one. seq.model is in every shard (the sequences are split instead).
pub fn in_shard(id: &str, k: u64, n: u64) -> bool {
    if id == "seq.model" {
        return true;
    }
    // FNV-1a: stable across versions and platforms, unlike the std hasher.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    h % n == k - 1
}

fn missing_needs(def: &CheckDef, ctx: &Ctx) -> Option<String> {
    let missing: Vec<String> = def
        .needs
        .iter()
        .filter(|group| !group.iter().any(|n| ctx.has(n)))
        .map(|group| group.join(" or "))
        .collect();
    (!missing.is_empty()).then(|| format!("not exported: {}", missing.join("; ")))
}

fn report_of(def: &CheckDef, e: Eval) -> CheckReport {
    CheckReport {
        id: def.id.to_string(),
        requirement: def.requirement.to_string(),
        strength: def.strength,
        outcome: e.outcome,
        detail: e.detail,
        repro: None,
    }
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

/// Judges a check from its programs' results: a death decides it, else the check's own eval.
fn judge(check: &Check, ctx: &Ctx, programs: &[Program], results: &[RunResult]) -> Eval {
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
    let ran: Vec<_> = programs
        .iter()
        .zip(results)
        .map(|(p, r)| match r {
            RunResult::Done(obs) => Ran { program: p, obs },
            RunResult::Died(_) => unreachable!("deaths handled above"),
        })
        .collect();
    (check.eval)(ctx, &ran)
}

fn calls_in(obs: &[Obs]) -> u64 {
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
    sup: &mut Supervisor,
    ctx: &Ctx,
    opts: &RunOptions,
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
    };
    // Workers of their own: what a library does after a failure (a lazy set-up it gave up on,
    // say) must not reach the sequences that run after it.
    if let LibrarySpec::Path(_) = &opts.library {
        let mut own = Supervisor::start(sup.spec().clone())?;
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
    let mut spec = sup.spec().clone();
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

/// Runs the checks and returns the finished report. `on_check` sees each check as it is
/// decided (for progress output).
pub fn run(
    opts: &RunOptions,
    on_check: &mut dyn FnMut(&CheckReport, usize, usize),
) -> Result<Report, RunError> {
    let start = Instant::now();
    if let LibrarySpec::Path(p) = &opts.library {
        preflight::check(p)?;
    }
    let (path, sha256, size) = identity(opts)?;
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if let Some(m) = &opts.mutant {
        env.push(("NTDSBCLI_MUTANT".into(), m.into()));
    }
    let spec = WorkerSpec {
        exe: opts.worker_exe.clone(),
        library: opts.library.clone(),
        env,
        call_timeout: opts.call_timeout,
        load_timeout: opts.load_timeout,
        prelude: credentials_prelude(opts),
    };
    let mut sup = Supervisor::start(spec)?;
    let exports = sup.exports().to_vec();
    let ctx = Ctx {
        server: opts.server.clone(),
        accept_hresult: opts.accept_hresult,
        exports: exports.clone(),
        seed: opts.seed,
        release_cycles: opts.release_cycles,
    };
    let writer = opts.json.as_deref().map(JsonWriter::new);
    let mut report = Report {
        schema: SCHEMA,
        tool: Tool {
            name: "ntdsbcli-conform".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        library: Library {
            path: path.clone(),
            sha256,
            size,
            exports: exports.clone(),
            routed_imports: sup.routed().to_vec(),
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
        },
        verdict: Verdict::Conformant,
        complete: false,
        checks: Vec::new(),
        stats: Stats::default(),
    };
    let selected: Vec<&CheckDef> = CHECKS
        .iter()
        .filter(|d| {
            opts.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == d.id))
        })
        .filter(|d| opts.partition.is_none_or(|(k, n)| in_shard(d.id, k, n)))
        .collect();
    let total = selected.len();

    let missing = abi::missing_required(&exports);
    let mut planned: Vec<(Check, std::ops::Range<usize>)> = Vec::new();
    let mut programs: Vec<Program> = Vec::new();
    for def in &selected {
        let decided = if def.id == "exports.required" {
            Some(if missing.is_empty() {
                Eval::new(
                    Outcome::Pass,
                    format!(
                        "DsBackupEnd, DsBackupFree and DsBackupPrepare{} are exported ({} of the 28 exports in all)",
                        match (ctx.has("DsBackupPrepareA"), ctx.has("DsBackupPrepareW")) {
                            (true, true) => "A/W",
                            (false, true) => "W",
                            _ => "A",
                        },
                        exports.len()
                    ),
                )
            } else {
                Eval::new(Outcome::Fail, format!("missing: {}", missing.join(", ")))
            })
        } else if !missing.is_empty() {
            Some(Eval::new(
                Outcome::Skip,
                "not run: required exports are missing (see exports.required)",
            ))
        } else {
            missing_needs(def, &ctx).map(|why| Eval::new(Outcome::Skip, why))
        };
        if let Some(e) = decided {
            report.checks.push(report_of(def, e));
            continue;
        }
        // The phases run after the named checks: they plan from what they see.
        if def.id == "seq.model" || def.id == crate::fault::ID {
            continue;
        }
        let check = check_for(def.id).expect("every catalogue check has programs");
        let mine = (check.plan)(&ctx);
        let range = programs.len()..programs.len() + mine.len();
        programs.extend(mine);
        planned.push((check, range));
    }
    for c in &report.checks {
        on_check(c, report.checks.len(), total);
    }
    if let Some(w) = &writer {
        w.write(&report)?;
    }
    if !missing.is_empty() {
        report.complete = true;
        report.recompute_verdict();
        report.stats.wall_ms = start.elapsed().as_millis() as u64;
        report.stats.workers = sup.workers_started() as u64;
        if let Some(w) = &writer {
            w.write(&report)?;
        }
        return Err(RunError::MissingExports {
            path,
            missing,
            report: Box::new(report),
        });
    }

    // One batch for every check; each check is judged as soon as its last program is in.
    let mut results: Vec<Option<RunResult>> = vec![None; programs.len()];
    let mut remaining: Vec<usize> = planned.iter().map(|(_, r)| r.len()).collect();
    let owner: Vec<usize> = planned
        .iter()
        .enumerate()
        .flat_map(|(k, (_, r))| std::iter::repeat_n(k, r.len()))
        .collect();
    let mut evals: Vec<Option<Eval>> = vec![None; planned.len()];
    let mut write_err = None;
    sup.run(&programs, &mut |i, r| {
        results[i] = Some(r.clone());
        let k = owner[i];
        remaining[k] -= 1;
        if remaining[k] == 0 {
            let (check, range) = &planned[k];
            let rs: Vec<RunResult> = results[range.clone()]
                .iter()
                .map(|r| r.clone().expect("all in"))
                .collect();
            let e = judge(check, &ctx, &programs[range.clone()], &rs);
            let rep = report_of(check.def, e.clone());
            report.checks.push(rep.clone());
            on_check(&rep, report.checks.len(), total);
            if let Some(w) = &writer {
                report.recompute_verdict();
                if let Err(err) = w.write(&report) {
                    write_err.get_or_insert(err);
                }
            }
            evals[k] = Some(e);
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }

    // A wrong value seen in a shared worker is confirmed in a fresh one before it is reported.
    for (k, (check, range)) in planned.iter().enumerate() {
        if evals[k].as_ref().map(|e| e.outcome) != Some(Outcome::Fail) {
            continue;
        }
        let fresh = sup.run_fresh(&programs[range.clone()])?;
        let again = judge(check, &ctx, &programs[range.clone()], &fresh);
        let e = if again.outcome.is_failure() {
            again
        } else {
            let mut first = evals[k].clone().expect("judged");
            first
                .detail
                .push_str("; seen after earlier checks in the same worker, not reproduced alone");
            first
        };
        if let Some(c) = report.checks.iter_mut().find(|c| c.id == check.def.id) {
            *c = report_of(check.def, e);
        }
    }

    if let Some(def) = selected.iter().find(|d| d.id == crate::fault::ID) {
        let (e, repro) = fault_phase(&mut sup, &ctx, opts)?;
        let mut rep = report_of(def, e);
        rep.repro = repro;
        report.checks.push(rep.clone());
        on_check(&rep, report.checks.len(), total);
        if let Some(w) = &writer {
            report.recompute_verdict();
            w.write(&report)?;
        }
    }

    // The sequence phase comes last: it runs in the same workers, after the named checks.
    let mut seq_stats = (0, 0);
    if let Some(def) = selected.iter().find(|d| d.id == "seq.model") {
        let seq = model::phase::run(
            &mut sup,
            &ctx,
            &SeqOptions {
                sequences: opts.sequences,
                budget: opts.sequence_budget,
                shrink_budget: opts.shrink_budget,
                workers: opts.jobs,
                partition: opts.partition,
                ..SeqOptions::default()
            },
        )?;
        seq_stats = (seq.sequences, seq.calls);
        let mut rep = report_of(def, seq.eval);
        rep.repro = seq.repro;
        on_check(&rep, report.checks.len() + 1, total);
        report.checks.push(rep);
    }

    // Report in catalogue order, whatever order the checks finished in.
    let order = |id: &str| {
        selected
            .iter()
            .position(|d| d.id == id)
            .unwrap_or(usize::MAX)
    };
    report.checks.sort_by_key(|c| order(&c.id));
    report.stats = Stats {
        sequences: seq_stats.0,
        calls: seq_stats.1
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
    };
    report.complete = true;
    report.recompute_verdict();
    if let Some(w) = &writer {
        w.write(&report)?;
    }
    Ok(report)
}
