//! Runs call programs against a loaded table, in the worker. It validates nothing: it passes
//! exactly the arguments the program names and records what came back.

use crate::abi::Api;
use crate::calls::{end_value, free_value};
use crate::not_run::NotRun;
use crate::program::{FaultObs, Observation, Op, Probe, Program, Tally, SLOTS};
use crate::pulse::Pulse;
use crate::store::{await_joined, copy_bytes, Orphan, Scratch, Store};
use crate::sys;

/// One program's run: its storage, the worker-owned sentinels, and its readings.
pub struct Interp<'a> {
    store: Store<'a>,
    sentinels: Vec<sys::Sentinel>,
    /// Sessions whose End in the last clean-up did not return S_OK: a faulted run tries each
    /// once more, with no fault armed (an End whose own round trip failed may say so).
    cleanup_failed: Vec<Orphan>,
    /// The program's first resource reading, which later ones settle towards.
    first_probe: Option<Probe>,
    /// How long readings wait for threads to exit, and how much of that this program spent.
    patience: Patience,
    settle_spent: std::time::Duration,
}

fn not_run(why: impl Into<String>) -> Observation {
    Observation {
        not_run: Some(why.into()),
        ..Observation::default()
    }
}

/// How long a reading waits for the thread count to come back down to an earlier one: for
/// the first drop, and then again after each drop, since a count that keeps falling is threads
/// exiting on their own. `budget` bounds all the readings of one program together, so that a
/// real leak (a count that never falls) costs little.
#[derive(Clone, Copy)]
pub struct Patience {
    pub first: std::time::Duration,
    pub stall: std::time::Duration,
    pub budget: std::time::Duration,
}

use std::time::Duration as D;

/// Readings in a batch: a detached thread on an idle machine is gone in a few milliseconds.
pub const QUICK: Patience = Patience {
    first: D::from_millis(10),
    stall: D::from_millis(10),
    budget: D::from_millis(40),
};
/// Readings that confirm a failure, and the last reading of a Repeat: a thread on a loaded
/// machine may wait tens of milliseconds for a core.
pub const PATIENT: Patience = Patience {
    first: D::from_millis(100),
    stall: D::from_millis(100),
    budget: D::from_millis(5000),
};

/// A resource reading, given time to settle when it has more threads than `baseline`: a
/// library may let a session's thread exit on its own just after End (a detached thread),
/// which releases it, and whatever it held, a moment later. Without an extra thread nothing
/// can release anything later, so nothing waits. Growth that stays is read as it is.
fn settled(baseline: Option<Probe>, patience: Patience, spent: &mut std::time::Duration) -> Probe {
    let mut p = crate::probe::read();
    let Some(b) = baseline else { return p };
    // The clock says when the reading was asked for, not how long the harness then waited.
    let clock = p.clock;
    let start = std::time::Instant::now();
    let (mut since, mut wait) = (start, patience.first);
    while p.threads > b.threads
        && since.elapsed() < wait
        && *spent + start.elapsed() < patience.budget
    {
        std::thread::sleep(D::from_millis(1));
        let q = crate::probe::read();
        if q.threads < p.threads {
            (since, wait) = (std::time::Instant::now(), patience.stall);
        }
        p = q;
    }
    *spent += start.elapsed();
    p.clock = clock;
    p
}

/// Whether any reading a leak rule judges (heap, handles, threads, mapped bytes) went up.
fn grew(before: &Probe, after: &Probe) -> bool {
    after.heap_bytes > before.heap_bytes
        || after.handles > before.handles
        || after.threads > before.threads
        || after.mapped_bytes > before.mapped_bytes
}

impl<'a> Interp<'a> {
    pub fn new(api: &'a Api, pulse: Option<&'a Pulse>) -> Interp<'a> {
        Interp {
            store: Store::new(api, pulse),
            sentinels: Vec::new(),
            cleanup_failed: Vec::new(),
            first_probe: None,
            patience: QUICK,
            settle_spent: std::time::Duration::ZERO,
        }
    }

    /// Runs every op of program number `id`, marking each on the pulse before it runs.
    pub fn run(&mut self, id: u32, program: &Program) -> Vec<Observation> {
        if program.patient {
            self.patience = PATIENT;
        }
        let mut out = Vec::with_capacity(program.ops.len());
        for (i, op) in program.ops.iter().enumerate() {
            if let Some(p) = self.store.pulse() {
                p.enter(id, i as u32);
            }
            out.push(self.op(op));
        }
        out
    }

    /// Step `i` of a Faulted body begins: the pulse names it, and the fault's counted calls
    /// are made in it.
    fn step(&self, i: usize) {
        if let Some(p) = self.store.pulse() {
            p.step(i as u32);
        }
        crate::imports::fault::set_step(i as u16);
    }

    /// Op::Faulted: the body under an armed fault, then a caller's clean-up.
    fn faulted(&mut self, at: u64, body: &[Op]) -> Observation {
        // Towards the program's first reading: threads of earlier sessions that exit on their
        // own, and free what they hold as they go, are gone before anything is compared.
        let before = settled(self.first_probe, self.patience, &mut self.settle_spent);
        let held_before = crate::imports::held();
        let mut steps = Vec::with_capacity(body.len() + 1);
        let mut hit = false;
        crate::imports::arm(at);
        for (i, op) in body.iter().enumerate() {
            self.step(i);
            let o = self.op(op);
            let failed = o.rc.is_some_and(|rc| rc != 0);
            let hit_here = !hit && crate::imports::fault::hit().is_some();
            hit |= hit_here;
            let stop = failed && (hit_here || matches!(op, Op::Prepare(_)));
            steps.push(o);
            if stop {
                break;
            }
        }
        self.step(body.len());
        self.cleanup_failed.clear();
        steps.push(self.op(&Op::Cleanup));
        let sweep = crate::imports::disarm();
        // An End that failed in the clean-up is tried once more, as a careful caller would;
        // its answers are the step after the clean-up.
        if !self.cleanup_failed.is_empty() {
            self.step(body.len() + 1);
            steps.push(self.retry_cleanup());
        }
        let after = settled(Some(before), self.patience, &mut self.settle_spent);
        Observation {
            steps,
            fault: Some(FaultObs {
                sweep,
                before,
                after,
                held_before,
                held_after: crate::imports::held(),
            }),
            ..Observation::default()
        }
    }

    /// DsBackupEnd (or DsRestoreEnd) on the session's value: its code, when exported.
    fn end_session(&self, o: Orphan) -> Option<i32> {
        // SAFETY: a value the library gave out, in a worker.
        unsafe { end_value(self.store.api(), o.restore, o.value) }
    }

    /// One End of the clean-up: its code is recorded, and a failure kept for a retry.
    fn cleanup_end(&mut self, obs: &mut Observation, o: Orphan) {
        if let Some(rc) = self.end_session(o) {
            obs.codes.push(rc);
            if rc != 0 {
                self.cleanup_failed.push(o);
            }
        }
    }

    /// Ends once more every session whose End failed in the last clean-up.
    fn retry_cleanup(&mut self) -> Observation {
        let mut obs = Observation::default();
        for o in std::mem::take(&mut self.cleanup_failed) {
            obs.codes.extend(self.end_session(o));
        }
        obs
    }

    /// Runs `op` on a new thread and joins it.
    fn on_thread(&mut self, op: &Op) -> Observation {
        let before = crate::probe::threads();
        let obs = std::thread::scope(|s| s.spawn(|| self.op(op)).join())
            .unwrap_or_else(|_| not_run("the harness's thread for the call panicked"));
        await_joined(before);
        obs
    }

    fn op(&mut self, op: &Op) -> Observation {
        match self.op_inner(op) {
            Ok(o) => o,
            Err(why) => not_run(why.to_string()),
        }
    }

    /// Performs one op: a call of the API through its family (`crate::calls`), or one of the
    /// harness's own steps. Long on purpose: one short arm per harness step.
    fn op_inner(&mut self, op: &Op) -> Result<Observation, NotRun> {
        if let Op::OnThread { op } = op {
            return Ok(self.on_thread(op));
        }
        let mut scratch = Scratch::default();
        if let Some(c) = op.call() {
            // SAFETY: the table was made from a loaded library whose exports have the
            // families' signatures (`Api::from_lookup`'s promise), and it runs in a worker.
            unsafe { c.run(&mut self.store, &mut scratch)? };
            // A failed call may be the library's own descriptors running out: say so
            // (no allocation, and not inside a measured Repeat's cycles).
            if scratch.obs.rc.is_some_and(|rc| rc != 0) && !self.store.repeating() {
                scratch.obs.no_descriptors = sys::descriptors_exhausted();
            }
            return Ok(scratch.finish());
        }
        let obs = &mut scratch.obs;
        match op {
            Op::Peek { buf } => {
                let b = self.store.buf(*buf);
                // SAFETY: a buffer the library returned with its size and nothing freed yet
                // (the model peeks at unfreed buffers only); a lie faults in this worker.
                obs.bytes = Some(unsafe { copy_bytes(b.ptr, b.size as usize) });
            }
            Op::Probe => {
                let p = settled(self.first_probe, self.patience, &mut self.settle_spent);
                self.first_probe.get_or_insert(p);
                obs.probe = Some(p);
            }
            Op::HoldSentinels { n } => {
                for _ in 0..*n {
                    self.sentinels.extend(sys::Sentinel::open());
                }
            }
            Op::CheckSentinels => {
                obs.intact = Some(self.sentinels.iter().all(|s| s.intact()));
            }
            Op::Repeat {
                n,
                probe_every,
                settle_last,
                stop_flat,
                body,
            } => {
                let every = (*probe_every).max(1);
                obs.samples.reserve_exact((*n / every) as usize + 2);
                obs.tally.reserve_exact(body.len() * 8);
                obs.samples.push(crate::probe::read());
                self.store.set_repeating(true);
                let mut flat = 0;
                for cycle in 1..=*n {
                    for (i, op) in body.iter().enumerate() {
                        self.store.tick();
                        let rc = match self.op_inner(op) {
                            Ok(o) => o.rc,
                            Err(_) => None,
                        };
                        let i = i as u16;
                        if let Some(t) = obs.tally.iter_mut().find(|t| t.op == i && t.rc == rc) {
                            t.count += 1;
                        } else if obs.tally.len() < obs.tally.capacity() {
                            // Past the reserved room (8 codes per op) a new code would
                            // allocate mid-measurement; the first ones already tell.
                            obs.tally.push(Tally {
                                op: i,
                                rc,
                                count: 1,
                            });
                        }
                    }
                    if cycle % every != 0 {
                        continue;
                    }
                    let end = cycle == *n;
                    // Window readings stay quick even in a patient program: the last
                    // reading, at the end or at an early stop, is the one that waits.
                    let quick = (!end || !*settle_last).then(|| {
                        let last = obs.samples.last().copied();
                        let p = settled(last, QUICK, &mut self.settle_spent);
                        flat += last.is_some_and(|l| !grew(&l, &p)) as u32;
                        p
                    });
                    // One code per op: tally holds one entry per body op.
                    let one_code = obs.tally.len() == body.len();
                    let stop = *stop_flat > 0 && flat >= *stop_flat && one_code && !end;
                    match quick {
                        Some(p) if !(stop && *settle_last) => obs.samples.push(p),
                        _ => {
                            let first = obs.samples.first().copied();
                            let p = settled(first, PATIENT, &mut self.settle_spent);
                            obs.samples.push(p);
                        }
                    }
                    if stop {
                        break;
                    }
                }
                self.store.set_repeating(false);
            }
            Op::Faulted { at, body } => return Ok(self.faulted(*at, body)),
            Op::Cleanup => {
                // No allocation here unless an End fails: heap layout is part of what a
                // corrupting library's crash depends on.
                while let Some(o) = self.store.take_open() {
                    self.cleanup_end(obs, o);
                }
                for o in self.store.take_orphans() {
                    self.cleanup_end(obs, o);
                }
                for b in 0..SLOTS as u8 {
                    let p = self.store.take_buf(b).ptr;
                    if p != 0 {
                        // SAFETY: a buffer the library returned and nothing freed; it left
                        // the storage above, so it is freed once.
                        unsafe { free_value(self.store.api(), p) };
                    }
                }
            }
            // The calls of the API ran above (`Op::call` lists them).
            _ => {}
        }
        Ok(scratch.finish())
    }
}
