//! The cost of isolation: the same sequences run in-process, in a worker and in isolated
//! workers, in interleaved rounds, with medians and ratios side by side.

use super::options::BenchOptions;
use super::stats::median;
use crate::checks::Ctx;
use crate::model::machine::{set_surface, Machine, State, Surface, Transition};
use crate::model::oracle;
use ntdsbcli_harness::abi::{load_library, Api};
use ntdsbcli_harness::interp::Interp;
use ntdsbcli_harness::program::Program;
use ntdsbcli_harness::worker::{LibrarySpec, Supervisor, WorkerSpec};
use proptest::strategy::{Strategy, ValueTree};
use proptest_state_machine::ReferenceStateMachine;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One way of running the sequences, timed once per round.
struct Way {
    name: &'static str,
    /// Sequences it runs each round (the slow ways run a share of them).
    sequences: usize,
    times: Vec<Duration>,
}

impl Way {
    fn new(name: &'static str, sequences: usize) -> Way {
        Way {
            name,
            sequences,
            times: Vec::new(),
        }
    }

    /// Sequences per second in each round.
    fn rates(&self) -> Vec<f64> {
        self.times
            .iter()
            .map(|t| self.sequences as f64 / t.as_secs_f64())
            .collect()
    }
}

/// Sequences the ways that start a process per sequence run each round: enough for a rate.
const SLOW_SHARE: usize = 200;

fn sequences(ctx: &Ctx, n: usize, max_len: usize, seed: u64) -> (Vec<Program>, u64) {
    set_surface(Surface::from_exports(&ctx.exports));
    let strategy = Machine::sequential_strategy(1..=max_len.max(1));
    let mut runner = crate::model::phase::runner(seed);
    let mut calls = 0;
    let programs = (0..n)
        .map(|k| {
            let tree = strategy.new_tree(&mut runner).expect("sequence generation");
            let (init, ts): (State, Vec<Transition>) = {
                let (s, t, _) = tree.current();
                (s, t)
            };
            calls += ts.len() as u64;
            oracle::program(ctx, &init, &ts, format!("sequence {k}"))
        })
        .collect();
    (programs, calls)
}

/// Runs the bench and prints its table; the last line is `ratio isolated/in-process = X.XX`.
pub fn run(opts: &BenchOptions) -> anyhow::Result<()> {
    let spec = WorkerSpec {
        exe: opts.worker_exe.clone(),
        library: opts.library.clone(),
        env: Vec::new(),
        call_timeout: Duration::from_secs(3),
        load_timeout: Duration::from_secs(10),
        prelude: Vec::new(),
        page_heap: None,
        memory_mb: None,
        withhold: Vec::new(),
    };
    let mut sup = Supervisor::start(spec.clone())?;
    let ctx = Ctx {
        server: "\\\\localhost".into(),
        accept_hresult: false,
        exports: sup.exports().to_vec(),
        seed: opts.seed,
        release_cycles: 0,
    };
    let (programs, calls) = sequences(&ctx, opts.sequences, opts.max_len, opts.seed);
    // The floor runs the library in this process: for the benchmark only.
    let api: Api = match &opts.library {
        LibrarySpec::Path(p) => {
            let (api, lib) = load_library(p)?;
            // The bench process ends with the library loaded, as the workers' libraries do.
            std::mem::forget(lib);
            api
        }
        // SAFETY: the embedded table maps each name to the function of that signature.
        LibrarySpec::Embedded => unsafe { Api::from_lookup(opts.embedded) },
    };
    let heaps = heap_supervisors(opts, &spec)?;
    let few = &programs[..programs.len().min(SLOW_SHARE)];
    let mut ways = vec![
        Way::new("(a) in process, no isolation", programs.len()),
        Way::new("(b) isolated workers (the product)", programs.len()),
    ];
    if cfg!(unix) {
        ways.push(Way::new("(c) one forked child per sequence", few.len()));
    }
    ways.push(Way::new("(d) one fresh process per sequence", few.len()));
    if heaps.is_some() {
        ways.push(Way::new(
            "(e) isolated, library file, C heap",
            programs.len(),
        ));
        ways.push(Way::new(
            "(f) isolated, library file, page heap",
            programs.len(),
        ));
    }
    // Rounds interleave the ways, so that a machine that gets busier for a while slows every
    // way alike instead of the one that ran then.
    let mut heaps = heaps;
    for _ in 0..opts.rounds.max(1) {
        let mut k = 0;
        let mut time = |ways: &mut Vec<Way>, f: &mut dyn FnMut() -> anyhow::Result<()>| {
            let t = Instant::now();
            let r = f();
            ways[k].times.push(t.elapsed());
            k += 1;
            r
        };
        time(&mut ways, &mut || {
            for (i, p) in programs.iter().enumerate() {
                std::hint::black_box(Interp::new(&api, None).run(i as u32, p));
            }
            Ok(())
        })?;
        time(&mut ways, &mut || {
            sup.run(&programs, &mut |_, _| {})?;
            Ok(())
        })?;
        #[cfg(unix)]
        time(&mut ways, &mut || {
            for p in few {
                std::hint::black_box(super::unix::run_forked(&api, p));
            }
            Ok(())
        })?;
        time(&mut ways, &mut || {
            for p in few {
                std::hint::black_box(sup.run_alone(p)?);
            }
            Ok(())
        })?;
        if let Some((_, c_heap, page_heap)) = heaps.as_mut() {
            for s in [c_heap, page_heap] {
                time(&mut ways, &mut || {
                    s.run(&programs, &mut |_, _| {})?;
                    Ok(())
                })?;
            }
        }
    }
    print_table(opts, &ways, programs.len(), calls, heaps.map(|(f, _, _)| f));
    if let Some(dc) = &opts.dc {
        super::latency::table(opts, dc)?;
    }
    if let Some(other) = &opts.diff_against {
        super::diffcost::table(opts, other)?;
    }
    Ok(())
}

/// The page heap's cost: workers on the library's file, one on each heap (the bundled
/// reference is linked in and has no page heap; its library build has). None when there is
/// no library file or the page heap could not be used on it.
fn heap_supervisors(
    opts: &BenchOptions,
    spec: &WorkerSpec,
) -> anyhow::Result<Option<(PathBuf, Supervisor, Supervisor)>> {
    let file = match &opts.library {
        LibrarySpec::Path(p) => Some(p.clone()),
        LibrarySpec::Embedded => crate::fault::reference_library(&opts.worker_exe),
    };
    let Some(file) = file else {
        return Ok(None);
    };
    let on = |page_heap| {
        Supervisor::start(WorkerSpec {
            library: LibrarySpec::Path(file.clone()),
            page_heap,
            ..spec.clone()
        })
    };
    let c_heap = on(None)?;
    let page_heap = on(Some(ntdsbcli_harness::pageheap::DEFAULT_QUARANTINE))?;
    if !page_heap.page_heap() {
        return Ok(None);
    }
    Ok(Some((file, c_heap, page_heap)))
}

fn spread(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The median of the per-round ratios of two ways' rates, and their range.
fn ratio(num: &Way, den: &Way) -> (f64, f64, f64) {
    let r: Vec<f64> = num
        .rates()
        .iter()
        .zip(den.rates())
        .map(|(n, d)| n / d)
        .collect();
    let (lo, hi) = spread(&r);
    (median(&r), lo, hi)
}

/// Prints the table of ways and the ratios between them; `ratio isolated/in-process` last.
fn print_table(
    opts: &BenchOptions,
    ways: &[Way],
    sequences: usize,
    calls: u64,
    heaps: Option<PathBuf>,
) {
    let rounds = ways.first().map_or(0, |w| w.times.len());
    println!(
        "{sequences} sequences, {calls} calls, seed {}, library {}, {rounds} rounds",
        opts.seed,
        opts.library.display()
    );
    println!(
        "{:<40} {:>10} {:>13} {:>21} {:>10}",
        "way (median of the rounds)", "sequences", "sequences/s", "min-max", "ms"
    );
    for w in ways {
        let rates = w.rates();
        let (lo, hi) = spread(&rates);
        let ms: Vec<f64> = w.times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
        println!(
            "{:<40} {:>10} {:>13.0} {:>21} {:>10.1}",
            w.name,
            w.sequences,
            median(&rates),
            format!("{lo:.0}-{hi:.0}"),
            median(&ms)
        );
    }
    let find = |prefix: &str| ways.iter().find(|w| w.name.starts_with(prefix));
    let show = |name: &str, r: (f64, f64, f64), tail: String| {
        println!(
            "ratio {name} = {:.2} (rounds {:.2}-{:.2}){tail}",
            r.0, r.1, r.2
        );
    };
    let Some(b) = find("(b)") else { return };
    if let Some(c) = find("(c)") {
        show("isolated/forked", ratio(b, c), String::new());
    }
    if let Some(d) = find("(d)") {
        show("isolated/fresh-process", ratio(b, d), String::new());
    }
    if let (Some(e), Some(f), Some(file)) = (find("(e)"), find("(f)"), heaps) {
        // Time on the page heap over time on the C heap: the slowdown it costs.
        show(
            "page-heap/c-heap time",
            ratio(e, f),
            format!(" ({})", file.display()),
        );
        if let Some(a) = find("(a)") {
            show("isolated page heap/in-process", ratio(f, a), String::new());
        }
    }
    if let Some(a) = find("(a)") {
        show("isolated/in-process", ratio(b, a), String::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_is_the_median_of_the_rounds_ratios() {
        let way = |ms: &[u64]| Way {
            name: "w",
            sequences: 100,
            times: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
        };
        // Round by round b/a = 0.5, 2.0, 1.0: the median is 1.0, whatever the medians of
        // the two ways' own rates would give.
        let (m, lo, hi) = ratio(&way(&[200, 50, 100]), &way(&[100, 100, 100]));
        assert!((m - 1.0).abs() < 1e-9 && (lo - 0.5).abs() < 1e-9 && (hi - 2.0).abs() < 1e-9);
    }
}
