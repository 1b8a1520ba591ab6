//! The worker side: load the library once, then run programs until the supervisor hangs up.

use super::protocol::{
    Request, Response, ENV_LIB, ENV_PAGE_HEAP, ENV_PULSE, PIPE_LOST_EXIT, PIPE_LOST_LINE,
};
#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;
use crate::abi::{load_library, Api};
use crate::interp::Interp;
use crate::pulse::Pulse;
use std::ffi::c_void;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

/// The routed imports that allocate: with any of them routed, the page heap is in use.
const ALLOCATORS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "strdup",
    "posix_memalign",
    "aligned_alloc",
    "HeapAlloc",
    "HeapReAlloc",
    "_strdup",
];

/// A symbol table linked into the binary (the embedded reference).
pub type Lookup = fn(&str) -> Option<*const c_void>;

fn send(out: &mut impl Write, msg: &Response) {
    let mut line = serde_json::to_vec(msg).expect("responses serialise");
    line.push(b'\n');
    if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
        pipe_lost(&e);
    }
}

/// Loads the named library, or takes the embedded table; a load error is reported to the
/// supervisor and ends the worker. The library is kept until teardown unloads it.
fn load(
    lib: Option<std::ffi::OsString>,
    embedded: Option<Lookup>,
    out: &mut impl Write,
) -> (Api, Option<libloading::Library>) {
    match lib {
        Some(path) => match load_library(&PathBuf::from(&path)) {
            Ok((api, lib)) => (api, Some(lib)),
            Err(e) => {
                send(out, &Response::LoadError { message: e.0 });
                platform::exit_now(0);
            }
        },
        None => match embedded {
            // SAFETY: the embedded table maps each name to the function of that signature.
            Some(lookup) => (unsafe { Api::from_lookup(lookup) }, None),
            None => {
                send(
                    out,
                    &Response::LoadError {
                        message: "no library named and none embedded".into(),
                    },
                );
                platform::exit_now(0);
            }
        },
    }
}

/// Installs heap checking, and for a library loaded from a file the page heap and the import
/// routing: the imports routed, and whether the page heap is in use.
fn instrument(api: &Api, from_file: bool, quarantine: Option<usize>) -> (Vec<String>, bool) {
    let mut routed: Vec<String> = Vec::new();
    let mut page_heap = false;
    if let Some(export) = api.any_export() {
        // A double free or abort() ends the worker at the faulty call, on every platform.
        crate::heapcheck::install(export);
        // The embedded reference lives in the worker's own image, whose imports are the
        // harness's: only a library loaded from a file is routed.
        if from_file {
            // On before routing: the first routed allocation already gets pages of its own.
            let paged = quarantine.is_some_and(crate::pageheap::enable);
            // SAFETY: the library stays loaded until the worker exits.
            match unsafe { crate::imports::route(export) } {
                Ok(r) => routed = r.names.iter().map(|n| n.to_string()).collect(),
                Err(e) => eprintln!("worker: {e}"),
            }
            page_heap = paged && routed.iter().any(|n| ALLOCATORS.contains(&n.as_str()));
        }
    }
    (routed, page_heap)
}

/// Runs the worker loop. Never returns.
pub fn serve(embedded: Option<Lookup>) -> ! {
    let (input, output) = match platform::take_stdio() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("worker: cannot set up its pipes: {e}");
            platform::exit_now(70);
        }
    };
    let mut out = std::io::BufWriter::new(std::fs::File::from(output));
    let input = BufReader::new(std::fs::File::from(input));
    // Kept for the life of the process: the page heap's fault handlers write to it.
    let pulse: Option<&'static Pulse> = std::env::var_os(ENV_PULSE)
        .and_then(|p| Pulse::open(&PathBuf::from(p)).ok())
        .map(|p| &*Box::leak(Box::new(p)));
    if let Some(p) = pulse {
        crate::pageheap::tell_through(p.page_heap_flag());
        if !p.wait_released(std::time::Duration::from_secs(30)) {
            eprintln!("worker: the supervisor never took it into its process tree");
            platform::exit_now(70);
        }
    }

    let lib = std::env::var_os(ENV_LIB);
    let quarantine = std::env::var(ENV_PAGE_HEAP)
        .ok()
        .and_then(|q| q.parse::<usize>().ok());
    // The library sees a plain C process: default signals, and none of the harness's own
    // variables in its environment.
    platform::plain_c_signals();
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::remove_var(ENV_LIB);
        std::env::remove_var(ENV_PULSE);
        std::env::remove_var(ENV_PAGE_HEAP);
    }
    let from_file = lib.is_some();
    let (api, library) = load(lib, embedded, &mut out);
    let (routed, page_heap) = instrument(&api, from_file, quarantine);
    platform::name_crashes();
    send(
        &mut out,
        &Response::Ready {
            exports: api.exports().to_vec(),
            routed,
            page_heap,
        },
    );

    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => pipe_lost(&e),
        };
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run { programs }) => {
                for (id, program) in &programs {
                    let obs = Interp::new(&api, pulse).run(*id, program);
                    send(&mut out, &Response::Done { program: *id, obs });
                }
                send(&mut out, &Response::Idle);
            }
            Ok(Request::Teardown) => teardown(library, &mut out),
            Err(_) => break,
        }
    }
    platform::exit_now(0);
}

/// Unloads the library (its destructors run: dlclose, FreeLibrary) and exits the process the
/// normal way (its atexit handlers run): a crash in either is the library's, at teardown.
fn teardown(library: Option<libloading::Library>, out: &mut impl Write) -> ! {
    settle_threads();
    drop(library);
    send(out, &Response::Unloaded);
    std::process::exit(0)
}

/// Before unloading: threads the library lets exit on their own after End (still running its
/// code) are given time to go, up to 5 s, as long as their number keeps falling.
fn settle_threads() {
    let mut last = crate::probe::threads();
    let start = std::time::Instant::now();
    let mut calm = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5)
        && calm.elapsed() < std::time::Duration::from_millis(100)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let now = crate::probe::threads();
        if now < last {
            calm = std::time::Instant::now();
        }
        last = now;
    }
}

/// The protocol pipe failed under the worker: the library closed a descriptor it does not own
/// (or the supervisor is gone). Said on stderr, which the supervisor reads, with an exit code
/// of its own, so that it is never taken for the library calling exit.
fn pipe_lost(e: &std::io::Error) -> ! {
    eprintln!("{PIPE_LOST_LINE} {e}");
    platform::exit_now(PIPE_LOST_EXIT)
}
