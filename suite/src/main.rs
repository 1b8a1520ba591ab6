//! `ntdsbcli-conform`: verify an Ntdsbcli-compatible library. Exit codes (contract): 0
//! conformant, 1 nonconformant, 2 could not run, 3 inconclusive.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ntdsbcli_conform::catalogue::CHECKS;
use ntdsbcli_conform::harness::report::{self, Report};
use ntdsbcli_conform::harness::worker::{self, LibrarySpec};
use ntdsbcli_conform::runner::{self, RunError, RunOptions};
use ntdsbcli_conform::{defaults, summary, MUTANTS};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

// Output that a closed pipe (`run | head -1`) cannot turn into a panic: the exit code still
// carries the verdict. These shadow the standard macros for the whole file.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "ntdsbcli-conform",
    version,
    about = "Conformance verifier for Ntdsbcli (Directory Backup client API) implementations",
    after_help = "Exit codes of `run`: 0 conformant, 1 nonconformant (or a difference from --baseline), 2 could not run (bad arguments, a file that is not a loadable library, missing exports, a crash while loading), 3 inconclusive (the environment refused a session)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a library (the bundled reference when --lib is not given).
    Run(Box<RunArgs>),
    /// Compare two libraries call by call: the same programs and sequences on both, each
    /// difference grouped and blamed (exit 0: none, 1: a difference, 2: could not run).
    Diff(Box<DiffArgs>),
    /// Every check: id, requirement, strength and statement.
    List,
    /// The planted-defect variants of the bundled reference (for --mutant).
    Mutants,
    /// Print the JSON Schema of the report (the same as reports/schema.json).
    Schema,
    /// Combine shard reports (`run --partition K/N --json ...`) into one, with its verdict.
    Merge {
        /// The shard reports (JSON).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        out: Outputs,
    },
    /// What a check verifies, where the requirement comes from, and what conforming means.
    Explain {
        /// A check id, as `list` prints them.
        id: String,
    },
    /// Measure the cost of isolation: one set of sequences run several ways, side by side in
    /// interleaved rounds; with the stand-in DC, default runs at several latencies.
    Bench {
        /// The library to run (the bundled reference when not given).
        #[arg(long)]
        lib: Option<PathBuf>,
        #[arg(long, default_value_t = 2000)]
        sequences: usize,
        /// Longest sequence, in calls (seq.model's length).
        #[arg(long, default_value_t = defaults::SEQUENCE_CALLS)]
        max_len: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Times each way runs, interleaved with the others; figures are medians.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        /// The stand-in DC's server (fixtures/dc/server.c, built): adds the latency table.
        #[arg(long, requires = "dc_client")]
        dc_server: Option<PathBuf>,
        /// The stand-in DC's client library (fixtures/dc/client.c, built).
        #[arg(long, requires = "dc_server")]
        dc_client: Option<PathBuf>,
        /// Latencies of the table, in milliseconds per call.
        #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
        latencies: Vec<u32>,
        /// A second library: adds `diff` of the two beside a default run of each (all
        /// --sequences, no time budget).
        #[arg(long)]
        diff_against: Option<PathBuf>,
    },
}

/// The report files of a run or a merge.
#[derive(clap::Args)]
struct Outputs {
    /// Write the JSON report here (a run keeps it current while it goes).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DiffArgs {
    /// The new library (.so on Linux, .dll on Windows).
    #[arg(long, required_unless_present = "mutant")]
    lib: Option<PathBuf>,
    /// The library it is compared with (default: the bundled reference).
    #[arg(long)]
    against: Option<PathBuf>,
    /// The new library is the bundled reference with this planted defect (see `mutants`).
    #[arg(long, conflicts_with = "lib")]
    mutant: Option<String>,
    /// The backup server name passed to Prepare.
    #[arg(long, default_value = defaults::SERVER)]
    server: String,
    /// Seed of the sequences; printed and recorded. Random when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of random call sequences run on both libraries.
    #[arg(long, default_value_t = defaults::SEQUENCES)]
    sequences: u64,
    /// Per-call patience in milliseconds before a call counts as hung.
    #[arg(long, default_value_t = defaults::CALL_TIMEOUT_MS)]
    call_timeout_ms: u64,
    /// Stop running sequences after this many milliseconds (0: run them all).
    #[arg(long, default_value_t = defaults::SEQUENCE_BUDGET_MS)]
    sequence_budget_ms: u64,
    /// Time for shrinking the differences' examples, in all.
    #[arg(long, default_value_t = defaults::SHRINK_BUDGET_MS)]
    shrink_budget_ms: u64,
    /// Run libraries loaded from files on the C runtime's heap instead of the page heap.
    #[arg(long)]
    no_page_heap: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Known differences (from --write-baseline): only others fail the diff.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write every difference found as a baseline here.
    #[arg(long)]
    write_baseline: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The library to verify (.so on Linux, .dll on Windows).
    #[arg(long)]
    lib: Option<PathBuf>,
    /// The backup server name passed to Prepare.
    #[arg(long, default_value = defaults::SERVER)]
    server: String,
    #[command(flatten)]
    out: Outputs,
    /// Write a self-contained HTML report here (filter by outcome, copy repros).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Seed for everything random in the run; printed and recorded. Random when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of random call sequences for seq.model.
    #[arg(long, default_value_t = defaults::SEQUENCES)]
    sequences: u64,
    /// Accept HRESULT_FROM_WIN32(87) = 0x80070057 where 87 is documented (checks become warn).
    #[arg(long)]
    accept_hresult: bool,
    /// How long a call may make no progress before it counts as hung, in milliseconds.
    #[arg(long, default_value_t = defaults::CALL_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    call_timeout_ms: u64,
    /// Stop generating new sequences after this many milliseconds (a slow library, say one
    /// that talks RPC, still gets a verdict in bounded time; the report says where it stopped).
    #[arg(long, default_value_t = defaults::SEQUENCE_BUDGET_MS)]
    sequence_budget_ms: u64,
    /// Time allowed for shrinking a failing sequence, in milliseconds.
    #[arg(long, default_value_t = defaults::SHRINK_BUDGET_MS)]
    shrink_budget_ms: u64,
    /// Workers running sequences at once (default: one per core; at least 1).
    #[arg(long, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Measured cycles per session path in end.release (rounded to whole windows of 8).
    #[arg(long, default_value_t = defaults::RELEASE_CYCLES)]
    release_cycles: u32,
    /// Resource calls failed one at a time per session path in fault.cleanup (0: off).
    #[arg(long, default_value_t = defaults::FAULT_SITES)]
    fault_sites: u64,
    /// Time budget of the fault.cleanup sweep in milliseconds, shared by the session paths
    /// (the report says where a path stopped).
    #[arg(long, default_value_t = defaults::FAULT_BUDGET_MS)]
    fault_budget_ms: u64,
    /// Run every requested sequence and every fault site, with no time budget: for a release
    /// decision on a slow library, where the default budgets cut seq.model and fault.cleanup
    /// short (their details say how far they got).
    #[arg(long, conflicts_with_all = ["sequence_budget_ms", "fault_budget_ms"])]
    thorough: bool,
    /// Run a library loaded from a file on the C runtime's heap instead of the page heap
    /// (every block on pages of its own, freed blocks inaccessible).
    #[arg(long)]
    no_page_heap: bool,
    /// Run only these checks (repeatable).
    #[arg(long = "check", value_name = "ID")]
    checks: Vec<String>,
    /// Compare outcomes with this baseline: exit 0 when equal, 1 on any difference.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write this run's outcomes as a baseline (one check per line, with a reason).
    #[arg(long)]
    write_baseline: Option<PathBuf>,
    /// User for DsSetAuthIdentity, called in every worker before any other call.
    #[arg(long)]
    user: Option<String>,
    /// Domain for DsSetAuthIdentity.
    #[arg(long, requires = "user")]
    domain: Option<String>,
    /// Name of the environment variable holding the password (never written anywhere).
    #[arg(long, value_name = "VAR", requires = "user")]
    password_env: Option<String>,
    /// Pass this variable of the verifier's environment to the workers (repeatable; NAME or
    /// NAME=VALUE). Workers otherwise get only what the platform needs: PATH, LD_LIBRARY_PATH,
    /// TMPDIR, TZ, LANG, LC_ALL on Unix.
    #[arg(long = "worker-env", value_name = "NAME[=VALUE]")]
    worker_env: Vec<String>,
    /// The most resident memory a worker may hold, in MiB; past it the worker is ended and the
    /// check that ran it says so (0: no limit).
    #[arg(long, default_value_t = defaults::WORKER_MEMORY_MB)]
    worker_memory_mb: u64,
    /// Run shard K of N (1-based): a stable share of the checks and sequences; combine the
    /// shards' JSON reports with `merge`.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    partition: Option<(u64, u64)>,
    /// Verify the bundled reference with one planted defect (see `mutants`).
    #[arg(long, conflicts_with = "lib")]
    mutant: Option<String>,
}

fn main() -> ExitCode {
    let first = std::env::args_os().nth(1);
    if first.as_deref().is_some_and(|a| a == worker::WORKER_ARG) {
        worker::serve(Some(ntdsbcli_conform::reference_symbol));
    }
    #[cfg(unix)]
    if first.as_deref().is_some_and(|a| a == worker::KEEPER_ARG) {
        let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let rest: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        worker::keep(&exe, &rest);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List => list(),
        Command::Merge { inputs, out } => merge_reports(&inputs, &out),
        Command::Explain { id } => explain(&id),
        Command::Mutants => mutants(),
        Command::Schema => {
            print!("{}", ntdsbcli_conform::harness::report::schema_json());
            Ok(0)
        }
        Command::Bench {
            lib,
            sequences,
            max_len,
            seed,
            rounds,
            dc_server,
            dc_client,
            latencies,
            diff_against,
        } => {
            let dc =
                dc_server
                    .zip(dc_client)
                    .map(|(server, client)| ntdsbcli_conform::bench::DcBench {
                        server,
                        client,
                        latencies,
                    });
            bench(
                lib,
                sequences,
                max_len,
                seed,
                rounds as usize,
                dc,
                diff_against,
            )
        }
        Command::Run(args) => run(*args),
        Command::Diff(args) => diff(*args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ntdsbcli-conform: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn list() -> anyhow::Result<u8> {
    for c in CHECKS {
        println!(
            "{:<30} {:<15} {:<10} {}",
            c.id,
            c.requirement,
            c.strength.as_str(),
            c.statement
        );
    }
    Ok(0)
}

fn explain(id: &str) -> anyhow::Result<u8> {
    let Some(c) = CHECKS.iter().find(|c| c.id == id) else {
        anyhow::bail!("unknown check {id:?} (see `ntdsbcli-conform list`)");
    };
    let (source, conforming) = (c.source, c.conforming);
    println!("{}\n", c.id);
    println!("  verifies     {}", c.statement);
    println!("  requirement  {}", c.requirement);
    println!(
        "  strength     {}",
        match c.strength {
            ntdsbcli_conform::harness::report::Strength::Documented =>
                "documented: the public documentation says it",
            ntdsbcli_conform::harness::report::Strength::Inferred =>
                "inferred: a robustness expectation the documentation does not state",
        }
    );
    println!("  source       {source}");
    println!("  conforming   {conforming}");
    // The rules themselves, as docs/spec.md words them: what a failure of this check breaks.
    let rules = ntdsbcli_conform::spec::cited(&format!("{} {source}", c.requirement));
    for (i, r) in rules.iter().enumerate() {
        if let Some(line) = ntdsbcli_conform::spec::rule_line(r) {
            let label = if i == 0 { "rules" } else { "" };
            println!("  {label:<12} {r}: {line}");
        }
    }
    println!("  see          docs/spec.md (the rules), docs/rules.md (every rule of every check)");
    Ok(0)
}

fn mutants() -> anyhow::Result<u8> {
    for (name, what) in MUTANTS {
        println!("{name:<24} {what}");
    }
    Ok(0)
}

fn bench(
    lib: Option<PathBuf>,
    sequences: usize,
    max_len: usize,
    seed: u64,
    rounds: usize,
    dc: Option<ntdsbcli_conform::bench::DcBench>,
    diff_against: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let worker_exe = std::env::current_exe()?;
    ntdsbcli_conform::bench::run(&ntdsbcli_conform::bench::BenchOptions {
        library: library_spec(lib.as_deref()),
        worker_exe,
        sequences,
        max_len,
        seed,
        embedded: ntdsbcli_conform::reference_symbol,
        rounds,
        dc,
        diff_against,
    })?;
    Ok(0)
}

fn merge_reports(inputs: &[PathBuf], out: &Outputs) -> anyhow::Result<u8> {
    let mut reports = Vec::new();
    for p in inputs {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
        let r: Report = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a ntdsbcli-conform JSON report", p.display()))?;
        reports.push(r);
    }
    let r = ntdsbcli_conform::merge::merge(reports)?;
    if let Some(p) = &out.json {
        report::write_atomic(p, &serde_json::to_vec_pretty(&r)?)?;
    }
    write_views(&r, out.markdown.as_deref(), out.junit.as_deref(), None)?;
    print!("{}", summary::table(&r, 160));
    Ok(r.verdict.exit_code())
}

/// The command that runs one check again, alone, with this run's seed and library.
fn rerun_command(args: &RunArgs, library: Option<&std::path::Path>, seed: u64, id: &str) -> String {
    let mut cmd = String::from("ntdsbcli-conform run");
    if let Some(p) = library {
        cmd.push_str(&format!(" --lib {}", shell_word(&p.display().to_string())));
    }
    if let Some(m) = &args.mutant {
        cmd.push_str(&format!(" --mutant {m}"));
    }
    for e in &args.worker_env {
        cmd.push_str(&format!(" --worker-env {}", shell_word(e)));
    }
    cmd.push_str(&format!(" --seed {seed} --check {id}"));
    cmd
}

/// `s` quoted for a POSIX shell when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:+,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least one worker is needed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

fn parse_partition(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 1/2")?;
    let (k, n): (u64, u64) = (
        k.parse().map_err(|_| format!("{k:?} is not a number"))?,
        n.parse().map_err(|_| format!("{n:?} is not a number"))?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(format!(
            "shard {k} of {n} does not exist (K counts from 1 to N)"
        ));
    }
    Ok((k, n))
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64 ^ (std::process::id() as u64).rotate_left(32)) % 1_000_000_000
}

/// Writes each check's C repro next to the JSON report (or in the current directory).
fn write_repros(r: &Report, args: &RunArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for c in r.checks.iter().filter(|c| c.repro.is_some()) {
        let name = format!("{}.repro.c", c.id);
        let path = match &args.out.json {
            Some(j) => {
                let stem = j
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                j.with_file_name(format!("{stem}.{name}"))
            }
            // Without a report file there is no place the user chose: the repro stays in the
            // report's data and the summary says how to get it as a file.
            None => continue,
        };
        report::write_atomic(&path, c.repro.as_deref().unwrap_or_default().as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// The finished report's views for people and CI (the JSON is written as the run goes).
fn write_views(
    r: &Report,
    markdown: Option<&Path>,
    junit: Option<&Path>,
    html: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(p) = markdown {
        report::write_atomic(p, report::to_markdown(r).as_bytes())?;
    }
    if let Some(p) = junit {
        report::write_atomic(p, report::to_junit(r).as_bytes())?;
    }
    if let Some(p) = html {
        report::write_atomic(p, report::to_html(r).as_bytes())?;
    }
    Ok(())
}

fn write_extra(r: &Report, args: &RunArgs) -> anyhow::Result<()> {
    write_views(
        r,
        args.out.markdown.as_deref(),
        args.out.junit.as_deref(),
        args.html.as_deref(),
    )
}

/// The one place the CLI's flags become a run's options.
fn run_options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let library = library_spec(args.lib.as_deref());
    let credentials = match &args.user {
        Some(user) => Some(runner::Credentials {
            user: user.clone(),
            domain: args.domain.clone(),
            password: match &args.password_env {
                Some(var) => std::env::var(var)
                    .with_context(|| format!("--password-env {var}: the variable is not set"))?,
                None => String::new(),
            },
        }),
        None => None,
    };
    let withhold: Vec<std::ffi::OsString> = args.password_env.iter().map(Into::into).collect();
    let mut worker_env = Vec::new();
    for item in &args.worker_env {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.to_string(), std::ffi::OsString::from(v)),
            None => (
                item.clone(),
                std::env::var_os(item)
                    .with_context(|| format!("--worker-env {item}: the variable is not set"))?,
            ),
        };
        if name.is_empty() {
            anyhow::bail!("--worker-env {item:?}: no variable name");
        }
        if args.password_env.as_deref() == Some(name.as_str()) {
            anyhow::bail!(
                "--worker-env {name}: that is the --password-env variable, which never reaches the library"
            );
        }
        worker_env.push((name.into(), value));
    }
    let ms = Duration::from_millis;
    Ok(RunOptions {
        server: args.server.clone(),
        seed: args.seed.unwrap_or_else(random_seed),
        sequences: args.sequences,
        accept_hresult: args.accept_hresult,
        release_cycles: args.release_cycles,
        fault_sites: args.fault_sites,
        fault_budget: match args.thorough {
            true => Duration::MAX,
            false => ms(args.fault_budget_ms),
        },
        page_heap: (!args.no_page_heap).then_some(ntdsbcli_harness::pageheap::DEFAULT_QUARANTINE),
        partition: args.partition,
        credentials,
        jobs: args.jobs.unwrap_or_else(defaults::jobs),
        sequence_budget: (!args.thorough).then(|| ms(args.sequence_budget_ms)),
        shrink_budget: ms(args.shrink_budget_ms),
        call_timeout: ms(args.call_timeout_ms.max(1)),
        mutant: args.mutant.clone(),
        json: args.out.json.clone(),
        only: (!args.checks.is_empty()).then(|| args.checks.clone()),
        memory_mb: (args.worker_memory_mb > 0).then_some(args.worker_memory_mb),
        worker_env,
        withhold,
        ..RunOptions::new(library, exe)
    })
}

/// Checks the run's own input (mutant, baseline, check ids) before running anything: bad
/// input is exit code 2, never a half-made report. Gives the parsed baseline.
fn validate(args: &RunArgs) -> anyhow::Result<Option<ntdsbcli_conform::baseline::Baseline>> {
    known_mutant(args.mutant.as_deref())?;
    let baseline = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the baseline", p.display()))?;
            Some(
                ntdsbcli_conform::baseline::parse(&text)
                    .with_context(|| format!("{}: not a baseline", p.display()))?,
            )
        }
        None => None,
    };
    for c in &args.checks {
        if !CHECKS.iter().any(|d| d.id == c) {
            anyhow::bail!("unknown check {c:?} (see `ntdsbcli-conform list`)");
        }
    }
    Ok(baseline)
}

/// A `--lib` as the workers load it (made absolute), or the bundled reference without one.
fn library_spec(p: Option<&Path>) -> LibrarySpec {
    match p {
        Some(p) => LibrarySpec::Path(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
        None => LibrarySpec::Embedded,
    }
}

/// A `--mutant` that the bundled reference has, or none.
fn known_mutant(m: Option<&str>) -> anyhow::Result<()> {
    match m {
        Some(m) if !MUTANTS.iter().any(|(n, _)| *n == m) => {
            anyhow::bail!("unknown mutant {m:?} (see `ntdsbcli-conform mutants`)")
        }
        _ => Ok(()),
    }
}

/// A progress bar on a terminal; nothing when stderr is a file or a pipe.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.enable_steady_tick(Duration::from_millis(100));
    b
}

fn diff(args: DiffArgs) -> anyhow::Result<u8> {
    use ntdsbcli_conform::diff::{engine, group, render};
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    known_mutant(args.mutant.as_deref())?;
    let known = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--baseline {}", p.display()))?;
            serde_json::from_str::<group::Known>(&text)
                .with_context(|| format!("--baseline {}: not a diff baseline", p.display()))?
        }
        None => group::Known::default(),
    };
    let ms = Duration::from_millis;
    let mut new = RunOptions::new(library_spec(args.lib.as_deref()), exe);
    new.server = args.server.clone();
    new.seed = args.seed.unwrap_or_else(random_seed);
    new.sequences = args.sequences;
    new.call_timeout = ms(args.call_timeout_ms.max(1));
    new.mutant = args.mutant.clone();
    if args.no_page_heap {
        new.page_heap = None;
    }
    let mut old = new.clone();
    old.library = library_spec(args.against.as_deref());
    old.mutant = None;
    let opts = engine::DiffOptions {
        new,
        old,
        max_len: defaults::SEQUENCE_CALLS,
        jobs: defaults::jobs(),
        sequence_budget: (args.sequence_budget_ms > 0).then(|| ms(args.sequence_budget_ms)),
        shrink_budget: ms(args.shrink_budget_ms),
        shrink_groups: 8,
    };
    let bar = progress_bar();
    worker::contain_orphans();
    let result = engine::diff(&opts, &mut |what| bar.set_message(what.to_string()));
    worker::end_orphans();
    bar.finish_and_clear();
    let mut r = result?;
    r.gone = group::apply_baseline(&mut r.differences, &known);
    print!("{}", render::terminal(&r));
    if let Some(p) = &args.json {
        report::write_atomic(p, &serde_json::to_vec_pretty(&r)?)?;
    }
    if let Some(p) = &args.markdown {
        report::write_atomic(p, render::markdown(&r).as_bytes())?;
    }
    if let Some(p) = &args.html {
        report::write_atomic(p, render::html(&r).as_bytes())?;
    }
    if let Some(p) = &args.write_baseline {
        let b = group::baseline_of(&r.differences);
        report::write_atomic(p, &serde_json::to_vec_pretty(&b)?)?;
    }
    Ok(r.exit_code())
}

fn run(args: RunArgs) -> anyhow::Result<u8> {
    let baseline = validate(&args)?;
    let opts = run_options(&args)?;
    let bar = progress_bar();
    // Whatever a worker's process tree leaves behind when its keeper is killed comes to this
    // process, which ends it once the run is over.
    worker::contain_orphans();
    // A log (stdout not a terminal) gets each check's whole line as it is decided.
    let log = !std::io::stdout().is_terminal();
    let result = runner::run(&opts, &mut |e| match e {
        runner::Event::Decided(c, done, total) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{} {}", c.id, c.outcome.as_str()));
            if log {
                println!("{}", summary::line(c));
            }
        }
        // The bar names a long phase while it runs, instead of the last check decided.
        runner::Event::Phase(what, done, total) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(what);
        }
    });
    worker::end_orphans();
    bar.finish_and_clear();
    match result {
        Ok(r) => finish(&r, &args, baseline.as_ref()),
        Err(RunError::MissingExports {
            path,
            missing,
            report,
        }) => {
            write_extra(&report, &args)?;
            eprintln!(
                "ntdsbcli-conform: {path}: cannot verify: required exports missing: {}",
                missing.join(", ")
            );
            Ok(2)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes what a finished run asked for, prints its summary, and gives its exit code: the
/// verdict's, or the baseline comparison's when there is a baseline.
fn finish(
    r: &Report,
    args: &RunArgs,
    baseline: Option<&ntdsbcli_conform::baseline::Baseline>,
) -> anyhow::Result<u8> {
    write_extra(r, args)?;
    let repros = write_repros(r, args)?;
    if std::io::stdout().is_terminal() {
        print!("{}", summary::table(r, 120));
    } else {
        // Each check's line was written as it was decided.
        print!("\n{}", summary::verdict_line(r));
    }
    // The report holds the library's absolute path, as the run used it.
    let library = args.lib.as_ref().map(|_| PathBuf::from(&r.library.path));
    let target = library
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "LIBRARY".into());
    for p in &repros {
        let p = p.display();
        if cfg!(windows) {
            println!("repro: {p} (cl {p} or gcc -o repro.exe {p}, then repro.exe {target})");
        } else {
            println!("repro: {p} (cc -o repro {p} -ldl -lpthread && ./repro {target})");
        }
    }
    if repros.is_empty() && r.checks.iter().any(|c| c.repro.is_some()) {
        println!("a C repro was made: run again with --json PATH to save it next to the report");
    }
    for c in r.checks.iter().filter(|c| c.outcome.is_failure()) {
        println!(
            "rerun: {}",
            rerun_command(args, library.as_deref(), r.config.seed, &c.id)
        );
    }
    let written: Vec<String> = [
        ("json", &args.out.json),
        ("markdown", &args.out.markdown),
        ("junit", &args.out.junit),
        ("html", &args.html),
    ]
    .into_iter()
    .filter_map(|(kind, p)| p.as_ref().map(|p| format!("{kind} {}", p.display())))
    .collect();
    if !written.is_empty() {
        println!("report: {}", written.join(", "));
    }
    if let Some(p) = &args.write_baseline {
        report::write_atomic(p, ntdsbcli_conform::baseline::render(r).as_bytes())?;
        println!("baseline written: {}", p.display());
    }
    let Some(base) = baseline else {
        return Ok(r.verdict.exit_code());
    };
    let diffs = ntdsbcli_conform::baseline::compare(r, base);
    if diffs.is_empty() {
        println!("baseline: every check has its baselined outcome");
        return Ok(0);
    }
    println!("baseline: {} difference(s):", diffs.len());
    for d in &diffs {
        println!("  {d}");
    }
    Ok(1)
}
