//! What `diff` costs: a diff of the bench's library against another, and a default run of
//! each, with the same sequences (all of them: no time budget), in interleaved rounds; the
//! ratios of the medians side by side.

use super::options::BenchOptions;
use super::stats::median;
use crate::diff::engine::{diff, DiffOptions};
use crate::runner::{self, RunOptions};
use ntdsbcli_harness::worker::LibrarySpec;
use std::path::Path;
use std::time::Instant;

fn run_options(opts: &BenchOptions, library: LibrarySpec) -> RunOptions {
    let mut o = RunOptions::new(library, opts.worker_exe.clone());
    o.seed = opts.seed;
    o.sequences = opts.sequences as u64;
    o.sequence_budget = None;
    o
}

/// Times `diff` of the bench's library against `other`, and `run` of each, `opts.rounds`
/// times in turn, and prints the medians and ratios.
pub fn table(opts: &BenchOptions, other: &Path) -> anyhow::Result<()> {
    let other = LibrarySpec::Path(std::path::absolute(other)?);
    let (mine, theirs) = (
        run_options(opts, opts.library.clone()),
        run_options(opts, other.clone()),
    );
    let d = DiffOptions {
        new: mine.clone(),
        old: theirs.clone(),
        max_len: opts.max_len,
        jobs: crate::defaults::jobs(),
        sequence_budget: None,
        shrink_budget: std::time::Duration::from_millis(crate::defaults::SHRINK_BUDGET_MS),
        shrink_groups: 8,
    };
    let (mut t_diff, mut t_new, mut t_old) = (Vec::new(), Vec::new(), Vec::new());
    let mut differences = 0;
    for _ in 0..opts.rounds {
        let t = Instant::now();
        differences = diff(&d, &mut |_| {})?.differences.len();
        t_diff.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        runner::run(&mine, &mut |_| {})?;
        t_new.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        runner::run(&theirs, &mut |_| {})?;
        t_old.push(t.elapsed().as_secs_f64());
    }
    let (d, n, o) = (median(&t_diff), median(&t_new), median(&t_old));
    println!();
    println!(
        "diff against {} ({} sequences, seed {}, {} rounds; medians in seconds; {differences} differences)",
        other.display(),
        opts.sequences,
        opts.seed,
        opts.rounds
    );
    println!("{:>10} {:>10} {:>10}", "diff", "run NEW", "run OLD");
    println!("{d:>10.2} {n:>10.2} {o:>10.2}");
    println!("ratio diff/run NEW = {:.2}", d / n);
    println!("ratio diff/run OLD = {:.2}", d / o);
    Ok(())
}
