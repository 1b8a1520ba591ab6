//! How a run spends its workers. Before the checks, a worker of its own opens `OVERLAP`
//! sessions at once and ends them, reading its thread's clock around the calls. Calls that
//! wait on a server (blocked, neither running nor queued for a core) run on more workers than
//! cores; the session phases are spread over them only when every session opened, since a
//! server that runs one backup at a time for all its clients refuses the rest. Holds no worker
//! of its own past `measure`, and decides nothing about conformance.

use crate::checks::Ctx;
use ntdsbcli_harness::program::{Observation, Op, Program, SLOTS};
use ntdsbcli_harness::worker::{RunResult, Supervisor, WorkerSpec};
use ntdsbcli_harness::HarnessError;

/// Sessions the probe opens at once: as many as the most workers a run spreads over.
pub const OVERLAP: u8 = 16;
const _: () = assert!(OVERLAP as usize <= SLOTS);

/// Blocked time per call from which calls count as waiting on a server. A call that only
/// computes blocks for microseconds, however busy the machine (waiting for a core is queued
/// time, not blocked).
const BLOCKED_PER_CALL_NS: i64 = 500_000;

/// What the probe saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// Mean blocked time per call, in milliseconds.
    pub blocked_ms: f64,
    /// Calls wait on something outside the process: more workers than cores pay.
    pub latency_bound: bool,
    /// All `OVERLAP` sessions were live at once: sessions may run side by side.
    pub overlap: bool,
}

impl Pace {
    /// Workers for the sequences: more than cores when calls wait and sessions may overlap;
    /// one when calls wait on a server that allows one session, so that no worker waits on
    /// another's; else `jobs` (the user's, one per core by default).
    pub fn sequence_workers(&self, jobs: usize) -> usize {
        match (self.latency_bound, self.overlap) {
            (true, true) => jobs.max(OVERLAP as usize),
            (true, false) => 1,
            (false, _) => jobs,
        }
    }

    /// Whether independent session programs (end.release's paths, fault.cleanup's paths) run
    /// on workers of their own at once.
    pub fn spread(&self) -> bool {
        self.latency_bound && self.overlap
    }

    /// One line for a detail: where the time of a call went, and what the run did about it.
    pub fn describe(&self, workers: usize) -> Option<String> {
        self.latency_bound.then(|| {
            format!(
                "calls waited {:.1} ms each on something outside the process, so they ran on {workers} worker{}{}",
                self.blocked_ms,
                if workers == 1 { "" } else { "s" },
                match self.overlap {
                    true => "",
                    false => " (the library refused a second session while one was live)",
                }
            )
        })
    }
}

/// Runs `job` on each item in a supervisor of its own, all at once: each job's result, in
/// item order.
pub fn on_own_workers<T: Send, R: Send>(
    spec: &WorkerSpec,
    items: Vec<T>,
    job: impl Fn(&mut Supervisor, T) -> Result<R, HarnessError> + Sync,
) -> Vec<Result<R, HarnessError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| {
                let job = &job;
                scope.spawn(move || job(&mut Supervisor::start(spec.clone())?, item))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Protocol("a worker's thread stopped".into()))
                })
            })
            .collect()
    })
}

/// Runs each program on a worker of its own, all at once; None when any could not be run
/// there (the caller then runs them the usual way).
pub fn run_spread(spec: &WorkerSpec, programs: &[Program]) -> Option<Vec<RunResult>> {
    on_own_workers(spec, programs.iter().collect(), |sup, p| {
        Ok(sup.run(std::slice::from_ref(p), &mut |_, _| {})?.pop())
    })
    .into_iter()
    .map(|r| r.ok().flatten())
    .collect()
}

/// The probe: the thread's clock, `OVERLAP` Prepares into slots of their own, every session
/// ended, the clock again.
pub fn probe_program(ctx: &Ctx) -> Program {
    // Not patient: its readings must not wait for threads, which would read as blocked.
    let mut p = Program::new("pace: sessions at once", Vec::new());
    p.push(Op::Probe);
    for s in 0..OVERLAP {
        p.push(ctx.prepare(s, s));
    }
    p.push(Op::Cleanup);
    p.push(Op::Probe);
    p
}

/// Reads the probe's observations (in program order).
pub fn read(obs: &[Observation]) -> Pace {
    let n = OVERLAP as usize;
    let (Some(before), Some(after)) = (
        obs.first().and_then(|o| o.probe),
        obs.get(n + 2).and_then(|o| o.probe),
    ) else {
        return Pace::default();
    };
    let prepares = obs.get(1..=n).unwrap_or(&[]);
    let opened = prepares.iter().filter(|o| o.rc == Some(0)).count();
    // Each Prepare, and the End of each session it opened.
    let calls = (n + opened) as i64;
    let blocked = after.clock.blocked_since(&before.clock);
    Pace {
        blocked_ms: blocked as f64 / calls as f64 / 1e6,
        latency_bound: blocked >= BLOCKED_PER_CALL_NS * calls,
        overlap: opened == n,
    }
}

/// Runs the probe in a worker of its own, so that the checks' workers start as they always
/// did. A probe that cannot run (the worker dies, a call hangs) leaves the run as it was.
pub fn measure(spec: &WorkerSpec, ctx: &Ctx) -> Pace {
    let Ok(mut sup) = Supervisor::start(spec.clone()) else {
        return Pace::default();
    };
    match sup.run(&[probe_program(ctx)], &mut |_, _| {}) {
        Ok(r) => match r.first() {
            Some(RunResult::Done(obs)) => read(obs),
            _ => Pace::default(),
        },
        Err(_) => Pace::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::program::{Probe, ThreadClock};

    fn obs(opened: usize, wall_ms: i64, cpu_ms: i64, queued_ms: i64) -> Vec<Observation> {
        let probe = |c: ThreadClock| Observation {
            probe: Some(Probe {
                clock: c,
                ..Probe::default()
            }),
            ..Observation::default()
        };
        let ms = 1_000_000;
        let mut v = vec![probe(ThreadClock::default())];
        for s in 0..OVERLAP as usize {
            v.push(Observation {
                rc: Some(if s < opened { 0 } else { -939589620 }),
                ..Observation::default()
            });
        }
        v.push(Observation::default());
        v.push(probe(ThreadClock {
            at_ns: wall_ms * ms,
            cpu_ns: cpu_ms * ms,
            queued_ns: queued_ms * ms,
        }));
        v
    }

    #[test]
    fn calls_blocked_on_a_server_are_latency_bound() {
        // 32 round trips of 5 ms.
        let p = read(&obs(16, 161, 1, 0));
        assert!(p.latency_bound && p.overlap, "{p:?}");
        assert!((p.blocked_ms - 5.0).abs() < 0.1, "{p:?}");
        assert_eq!(p.sequence_workers(2), 16);
        assert!(p.spread());
    }

    #[test]
    fn a_busy_machine_is_not_a_slow_library() {
        // The same wall time spent waiting for a core: no worker more.
        let p = read(&obs(16, 161, 1, 159));
        assert!(!p.latency_bound, "{p:?}");
        assert_eq!(p.sequence_workers(2), 2);
        assert!(!p.spread());
        assert_eq!(p.describe(2), None);
    }

    #[test]
    fn one_backup_at_a_time_runs_the_sequences_in_one_worker() {
        // One session opened; fifteen refusals and one End, each a round trip.
        let p = read(&obs(1, 86, 1, 0));
        assert!(p.latency_bound && !p.overlap, "{p:?}");
        assert_eq!(p.sequence_workers(2), 1);
        assert!(!p.spread());
        assert!(p.describe(1).unwrap().contains("refused a second session"));
    }

    #[test]
    fn a_probe_that_did_not_finish_changes_nothing() {
        let mut o = obs(16, 161, 1, 0);
        o.truncate(5);
        assert_eq!(read(&o), Pace::default());
        assert_eq!(read(&[]), Pace::default());
    }
}
