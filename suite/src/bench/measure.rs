use crate::checks::Ctx;
use crate::model::machine::{set_surface, Machine, State, Surface, Transition};
use crate::model::oracle;
use ntdsbcli_harness::abi::{load_library, Api};
use ntdsbcli_harness::interp::Interp;
use ntdsbcli_harness::program::Program;
use ntdsbcli_harness::worker::{LibrarySpec, Supervisor, WorkerSpec};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct BenchOptions {
    pub library: LibrarySpec,
    pub worker_exe: PathBuf,
    pub sequences: usize,
    /// Longest sequence, in calls.
    pub max_len: usize,
    pub seed: u64,
    pub embedded: fn(&str) -> Option<*const std::ffi::c_void>,
}

struct Way {
    name: &'static str,
    elapsed: Duration,
}

fn sequences(ctx: &Ctx, n: usize, max_len: usize, seed: u64) -> (Vec<Program>, u64) {
    set_surface(Surface::from_exports(&ctx.exports));
    let strategy = Machine::sequential_strategy(1..=max_len.max(1));
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
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
            let (api, lib) = load_library(p).map_err(anyhow::Error::msg)?;
            // The bench process ends with the library loaded, as the workers' libraries do.
            std::mem::forget(lib);
            api
        }
        // SAFETY: the embedded table maps each name to the function of that signature.
        LibrarySpec::Embedded => unsafe { Api::from_lookup(opts.embedded) },
    };
    let mut ways = Vec::new();

    let t = Instant::now();
    for (i, p) in programs.iter().enumerate() {
        std::hint::black_box(Interp::new(&api, None).run(i as u32, p));
    }
    ways.push(Way {
        name: "(a) in process, no isolation",
        elapsed: t.elapsed(),
    });

    let t = Instant::now();
    sup.run(&programs, &mut |_, _| {})?;
    ways.push(Way {
        name: "(b) isolated workers (the product)",
        elapsed: t.elapsed(),
    });

    #[cfg(unix)]
    {
        let t = Instant::now();
        for p in &programs {
            std::hint::black_box(super::unix::run_forked(&api, p));
        }
        ways.push(Way {
            name: "(c) one forked child per sequence",
            elapsed: t.elapsed(),
        });
    }

    let t = Instant::now();
    for p in &programs {
        std::hint::black_box(sup.run_alone(p)?);
    }
    ways.push(Way {
        name: "(d) one fresh process per sequence",
        elapsed: t.elapsed(),
    });

    let heaps = time_heaps(opts, &spec, &programs)?.map(|(file, c_heap, page_heap)| {
        ways.push(c_heap);
        ways.push(page_heap);
        file
    });
    print_table(opts, &ways, programs.len(), calls, heaps);
    Ok(())
}

/// The page heap's cost: the same programs in workers on the library's file, each heap in turn
/// (the bundled reference is linked in and has no page heap; its library build has). None when
/// there is no library file or the page heap could not be used on it.
fn time_heaps(
    opts: &BenchOptions,
    spec: &WorkerSpec,
    programs: &[Program],
) -> anyhow::Result<Option<(PathBuf, Way, Way)>> {
    let file = match &opts.library {
        LibrarySpec::Path(p) => Some(p.clone()),
        LibrarySpec::Embedded => crate::fault::reference_library(&opts.worker_exe),
    };
    let Some(file) = file else {
        return Ok(None);
    };
    let mut timed = [Duration::ZERO; 2];
    for (i, page_heap) in [None, Some(ntdsbcli_harness::pageheap::DEFAULT_QUARANTINE)]
        .into_iter()
        .enumerate()
    {
        let mut s = Supervisor::start(WorkerSpec {
            library: LibrarySpec::Path(file.clone()),
            page_heap,
            ..spec.clone()
        })?;
        let t = Instant::now();
        s.run(programs, &mut |_, _| {})?;
        timed[i] = t.elapsed();
        if i == 1 && !s.page_heap() {
            return Ok(None);
        }
    }
    let c_heap = Way {
        name: "(e) isolated, library file, C heap",
        elapsed: timed[0],
    };
    let page_heap = Way {
        name: "(f) isolated, library file, page heap",
        elapsed: timed[1],
    };
    Ok(Some((file, c_heap, page_heap)))
}

/// Prints the table of ways and the ratios between them; `ratio isolated/in-process` last.
fn print_table(
    opts: &BenchOptions,
    ways: &[Way],
    sequences: usize,
    calls: u64,
    heaps: Option<PathBuf>,
) {
    println!(
        "{sequences} sequences, {calls} calls, seed {}, library {}",
        opts.seed,
        opts.library.display()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>10}",
        "way", "sequences/s", "calls/s", "ms"
    );
    let rate = |w: &Way| sequences as f64 / w.elapsed.as_secs_f64();
    for w in ways {
        println!(
            "{:<40} {:>14.0} {:>14.0} {:>10.1}",
            w.name,
            rate(w),
            calls as f64 / w.elapsed.as_secs_f64(),
            w.elapsed.as_secs_f64() * 1000.0
        );
    }
    let find = |prefix: &str| ways.iter().find(|w| w.name.starts_with(prefix)).map(rate);
    let b = find("(b)").unwrap_or(0.0);
    if let Some(c) = find("(c)") {
        println!("ratio isolated/forked = {:.2}", b / c);
    }
    if let Some(d) = find("(d)") {
        println!("ratio isolated/fresh-process = {:.2}", b / d);
    }
    if let (Some(e), Some(f), Some(file)) = (find("(e)"), find("(f)"), heaps) {
        // Time on the page heap over time on the C heap: the slowdown it costs.
        println!(
            "ratio page-heap/c-heap time = {:.2} ({})",
            e / f,
            file.display()
        );
    }
    println!(
        "ratio isolated/in-process = {:.2}",
        b / find("(a)").unwrap_or(f64::INFINITY)
    );
}
