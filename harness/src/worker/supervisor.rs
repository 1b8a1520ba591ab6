//! The supervisor: owns worker processes, batches programs into them, and turns a dying or
//! hanging worker into a result for the program in flight, confirmed in a fresh worker.

use super::process::{Incoming, WorkerProcess};
use super::protocol::{Request, Response};
use super::{Death, DeathReport, Place, RunResult};
use crate::program::Program;
use crate::HarnessError;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum LibrarySpec {
    Path(PathBuf),
    /// The table linked into the worker binary.
    Embedded,
}

impl LibrarySpec {
    pub fn display(&self) -> String {
        match self {
            LibrarySpec::Path(p) => p.display().to_string(),
            LibrarySpec::Embedded => "(embedded reference)".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The binary that becomes a worker when given `WORKER_ARG`.
    pub exe: PathBuf,
    pub library: LibrarySpec,
    /// Environment for workers beyond the platform's few variables (a mutant selection, the
    /// user's `--worker-env`): a worker never inherits the verifier's environment.
    pub env: Vec<(OsString, OsString)>,
    /// How long a call may make no progress before it counts as hung.
    pub call_timeout: Duration,
    /// How long loading the library may take.
    pub load_timeout: Duration,
    /// Run in every new worker before anything else (e.g. DsSetAuthIdentity, which sets a
    /// process-wide context); each op that returns a code must return 0.
    pub prelude: Vec<crate::program::Op>,
    /// Bytes of quarantine for the page heap (crate::pageheap) in a worker whose library is
    /// routed; None runs the library on the C runtime's heap.
    pub page_heap: Option<usize>,
    /// The most resident memory a worker may hold, in MiB (None: no limit).
    pub memory_mb: Option<u64>,
    /// Variables of this process that never reach a worker (a password's).
    pub withhold: Vec<OsString>,
}

pub struct Supervisor {
    spec: WorkerSpec,
    worker: Option<WorkerProcess>,
    exports: Vec<String>,
    routed: Vec<String>,
    page_heap: bool,
    workers_started: u32,
}

/// What a new worker said once its library was loaded.
struct Ready {
    exports: Vec<String>,
    routed: Vec<String>,
    page_heap: bool,
}

/// How unloading the library and exiting the worker ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// Unloaded, and the process exited with status 0.
    Clean,
    /// The worker died or hung while the library was unloaded (its destructors, DllMain);
    /// with its last line on stderr.
    Unloading(Death, Option<String>),
    /// It died, hung or exited with another status after the library was unloaded, in exit
    /// (atexit handlers); with its last line on stderr.
    Exiting(Death, Option<String>),
}

enum Batch {
    /// Every program answered.
    Finished,
    /// The caller's callback asked to stop (returned false).
    Stopped,
    /// The worker died or hung in program `index` (not yet confirmed).
    Died { index: usize, report: DeathReport },
}

impl Supervisor {
    /// Starts the first worker, which loads the library and lists its exports.
    pub fn start(spec: WorkerSpec) -> Result<Supervisor, HarnessError> {
        let mut s = Supervisor {
            spec,
            worker: None,
            exports: Vec::new(),
            routed: Vec::new(),
            page_heap: false,
            workers_started: 0,
        };
        let ready = s.fresh_worker()?;
        (s.exports, s.routed, s.page_heap) = (ready.exports, ready.routed, ready.page_heap);
        Ok(s)
    }

    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The library's imports the worker routes through its wrappers.
    pub fn routed(&self) -> &[String] {
        &self.routed
    }

    /// The library's allocations go to the page heap.
    pub fn page_heap(&self) -> bool {
        self.page_heap
    }

    pub fn workers_started(&self) -> u32 {
        self.workers_started
    }

    pub fn spec(&self) -> &WorkerSpec {
        &self.spec
    }

    /// Changes how long a call may make no progress; applies to the next batch.
    pub fn set_call_timeout(&mut self, t: Duration) {
        self.spec.call_timeout = t;
    }

    /// Starts a worker and waits for it to load the library: its exports and routed imports.
    fn fresh_worker(&mut self) -> Result<Ready, HarnessError> {
        self.worker = None;
        let mut w = WorkerProcess::spawn(&self.spec)?;
        self.workers_started += 1;
        let path = self.spec.library.display();
        match w.recv(self.spec.load_timeout) {
            Incoming::Msg(Response::Ready {
                exports,
                routed,
                page_heap,
            }) => {
                w.unlink_pulse();
                self.worker = Some(w);
                self.run_prelude()?;
                Ok(Ready {
                    exports,
                    routed,
                    page_heap,
                })
            }
            Incoming::Msg(Response::LoadError { message }) => {
                Err(HarnessError::LoadFailed { path, message })
            }
            Incoming::Stuck(_) => {
                w.kill();
                Err(HarnessError::HungAtLoad {
                    path,
                    secs: self.spec.load_timeout.as_secs(),
                })
            }
            Incoming::Eof | Incoming::Msg(_) | Incoming::Garbled(_) => {
                let death = w.reap();
                let how = match (&death, w.last_output()) {
                    (Death::Crash { name, .. }, _) => name.clone(),
                    (Death::Exit { code }, _) => format!("it called exit({code})"),
                    (d, _) => d.describe(),
                };
                Err(HarnessError::CrashedAtLoad { path, how })
            }
        }
    }

    fn run_prelude(&mut self) -> Result<(), HarnessError> {
        if self.spec.prelude.is_empty() {
            return Ok(());
        }
        let prelude = Program::new("prelude", self.spec.prelude.clone());
        let mut results = vec![None];
        let batch = self.batch(
            std::slice::from_ref(&prelude),
            &[0],
            &mut results,
            &mut |_, _| true,
        )?;
        let failed = |what: String| HarnessError::Prelude {
            path: self.spec.library.display(),
            what,
        };
        match (batch, results.pop().flatten()) {
            (_, Some(RunResult::Done(obs))) => {
                for (op, o) in prelude.ops.iter().zip(&obs) {
                    if let Some(why) = &o.not_run {
                        return Err(failed(format!("{}: {why}", op.export().unwrap_or("?"))));
                    }
                    if let Some(rc) = o.rc.filter(|&rc| rc != 0) {
                        return Err(failed(format!(
                            "{} returned {}",
                            op.export().unwrap_or("?"),
                            crate::codes::describe(rc)
                        )));
                    }
                }
                Ok(())
            }
            (Batch::Died { report, .. }, _) => Err(failed(report.death.describe())),
            _ => Err(failed("no answer".into())),
        }
    }

    fn worker(&mut self) -> Result<&mut WorkerProcess, HarnessError> {
        if self.worker.is_none() {
            self.fresh_worker()?;
        }
        Ok(self.worker.as_mut().expect("worker just started"))
    }

    /// Runs the programs numbered in `pending`, in order, in the current worker until all are
    /// done or one kills it. Results are stored under each program's number.
    fn batch(
        &mut self,
        programs: &[Program],
        pending: &[usize],
        results: &mut [Option<RunResult>],
        on_done: &mut dyn FnMut(usize, &RunResult) -> bool,
    ) -> Result<Batch, HarnessError> {
        let patience = self.spec.call_timeout;
        let w = self.worker()?;
        let req = Request::Run {
            programs: pending
                .iter()
                .map(|&i| (i as u32, programs[i].clone()))
                .collect(),
        };
        let mut queue = pending.iter().copied().peekable();
        let sent = w.send(&req);
        let mut next;
        let report = loop {
            next = queue.peek().copied().unwrap_or(usize::MAX);
            let incoming = if sent.is_ok() {
                w.recv(patience)
            } else {
                Incoming::Eof
            };
            match incoming {
                Incoming::Msg(Response::Done { program, obs }) if program as usize == next => {
                    let r = RunResult::Done(obs);
                    let go_on = on_done(next, &r);
                    results[next] = Some(r);
                    queue.next();
                    if !go_on {
                        // The worker is still busy with the rest of the batch: retire it.
                        w.kill();
                        self.worker = None;
                        return Ok(Batch::Stopped);
                    }
                }
                Incoming::Msg(Response::Idle) if next == usize::MAX => return Ok(Batch::Finished),
                Incoming::Stuck(pos) => {
                    w.kill();
                    let death = Death::Hang {
                        timeout_ms: patience.as_millis() as u64,
                    };
                    break DeathReport::seen(death, pos.place(next), None);
                }
                Incoming::Eof => {
                    let death = w.reap();
                    let pos = w.pulse.read();
                    // Before its first call the pulse still shows the last program's place.
                    let place = if pos.calls > 0 {
                        pos.place(next)
                    } else {
                        Place::default()
                    };
                    break DeathReport {
                        page_heap: w.pulse.page_heap_named(),
                        ..DeathReport::seen(death, place, w.last_output())
                    };
                }
                Incoming::Garbled(text) => {
                    w.kill();
                    let what = format!("unexpected output {text:?}");
                    break DeathReport::seen(Death::Protocol { what }, Place::default(), None);
                }
                Incoming::Msg(other) => {
                    w.kill();
                    let what = format!("unexpected message {other:?}");
                    break DeathReport::seen(Death::Protocol { what }, Place::default(), None);
                }
            }
        };
        self.worker = None;
        if next == usize::MAX {
            // Every program had its result before the worker died (a signal its library sent
            // landed after the last one finished): the batch is done, the next starts afresh.
            return Ok(Batch::Finished);
        }
        Ok(Batch::Died {
            index: next,
            report,
        })
    }

    /// Unloads the library in the current worker (a fresh one when there is none) and lets it
    /// exit the normal way: the library's destructors and atexit handlers run, as in every
    /// real caller. The worker is gone afterwards.
    pub fn teardown(&mut self) -> Result<Teardown, HarnessError> {
        let patience = self.spec.call_timeout;
        let w = self.worker()?;
        let incoming = match w.send(&Request::Teardown) {
            Ok(()) => w.recv(patience),
            Err(_) => Incoming::Eof,
        };
        let end = match incoming {
            Incoming::Msg(Response::Unloaded) => match w.wait_exit(patience) {
                Some(Death::Exit { code: 0 }) => Teardown::Clean,
                Some(death) => Teardown::Exiting(death, w.last_output()),
                None => {
                    w.kill();
                    let timeout_ms = patience.as_millis() as u64;
                    Teardown::Exiting(Death::Hang { timeout_ms }, None)
                }
            },
            Incoming::Eof => {
                let death = w.reap();
                Teardown::Unloading(death, w.last_output())
            }
            Incoming::Stuck(_) => {
                w.kill();
                let timeout_ms = patience.as_millis() as u64;
                Teardown::Unloading(Death::Hang { timeout_ms }, None)
            }
            Incoming::Garbled(text) => {
                w.kill();
                let what = format!("unexpected output {text:?}");
                Teardown::Unloading(Death::Protocol { what }, None)
            }
            Incoming::Msg(other) => {
                w.kill();
                let what = format!("unexpected message {other:?}");
                Teardown::Unloading(Death::Protocol { what }, None)
            }
        };
        self.worker = None;
        Ok(end)
    }

    /// Runs every program, many per worker. A program whose worker dies or hangs is run again
    /// alone in a fresh worker before its death is reported; the rest go on in a fresh worker.
    pub fn run(
        &mut self,
        programs: &[Program],
        on_done: &mut dyn FnMut(usize, &RunResult),
    ) -> Result<Vec<RunResult>, HarnessError> {
        let results = self.run_until(programs, &mut |i, r| {
            on_done(i, r);
            true
        })?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every program has a result"))
            .collect())
    }

    /// As `run`, but stops as soon as `on_done` returns false; programs after that one have
    /// no result.
    pub fn run_until(
        &mut self,
        programs: &[Program],
        on_done: &mut dyn FnMut(usize, &RunResult) -> bool,
    ) -> Result<Vec<Option<RunResult>>, HarnessError> {
        let all: Vec<usize> = (0..programs.len()).collect();
        self.run_these(programs, &all, on_done)
    }

    /// As `run_until`, for the programs numbered in `chosen` (in that order) alone; results
    /// and `on_done` keep each program's number in `programs`.
    pub fn run_these(
        &mut self,
        programs: &[Program],
        chosen: &[usize],
        on_done: &mut dyn FnMut(usize, &RunResult) -> bool,
    ) -> Result<Vec<Option<RunResult>>, HarnessError> {
        let mut results: Vec<Option<RunResult>> = vec![None; programs.len()];
        let mut from = 0;
        while from < chosen.len() {
            match self.batch(programs, &chosen[from..], &mut results, on_done)? {
                Batch::Finished | Batch::Stopped => break,
                Batch::Died { index, report } => {
                    let r = self.confirm(programs, index, report)?;
                    let go_on = on_done(index, &r);
                    results[index] = Some(r);
                    if !go_on {
                        break;
                    }
                    from += 1 + chosen[from..].iter().position(|&i| i == index).unwrap_or(0);
                }
            }
        }
        Ok(results)
    }

    /// Runs one program alone in a fresh worker to confirm a death seen in a shared one. When
    /// it does not die again the first death stands, marked unconfirmed: it depended on what
    /// ran before it, which is still a defect of the library.
    fn confirm(
        &mut self,
        programs: &[Program],
        index: usize,
        first: DeathReport,
    ) -> Result<RunResult, HarnessError> {
        self.fresh_worker()?;
        let mut alone: Vec<Option<RunResult>> = vec![None; programs.len()];
        Ok(RunResult::Died(
            match self.batch(programs, &[index], &mut alone, &mut |_, _| true)? {
                Batch::Finished | Batch::Stopped => first,
                Batch::Died { report, .. } => DeathReport {
                    confirmed: true,
                    ..report
                },
            },
        ))
    }

    /// Runs one program alone in a fresh worker and reports exactly what happened there, with
    /// no further confirmation (it is already alone): for shrinking.
    pub fn run_alone(&mut self, program: &Program) -> Result<RunResult, HarnessError> {
        self.fresh_worker()?;
        let programs = std::slice::from_ref(program);
        let mut results = vec![None];
        Ok(
            match self.batch(programs, &[0], &mut results, &mut |_, _| true)? {
                Batch::Finished | Batch::Stopped => {
                    results[0].take().expect("a finished program has a result")
                }
                Batch::Died { report, .. } => RunResult::Died(DeathReport {
                    confirmed: true,
                    ..report
                }),
            },
        )
    }

    /// Runs programs in a worker that has run nothing else, to confirm a wrong value.
    pub fn run_fresh(&mut self, programs: &[Program]) -> Result<Vec<RunResult>, HarnessError> {
        self.fresh_worker()?;
        self.run(programs, &mut |_, _| {})
    }
}
