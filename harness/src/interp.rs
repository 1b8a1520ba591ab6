//! Runs call programs against a loaded table, in the worker. It validates nothing: it passes
//! exactly the arguments the program names and records what came back.

use crate::abi::{Api, Hbc};
use crate::calls::end::HbcOnly;
use crate::calls::free::FreeFn;
use crate::not_run::NotRun;
use crate::pageheap::Loan;
use crate::program::{
    FaultObs, Garbage, HandleArg, Observation, Op, Probe, Program, Tally, Text, SLOTS,
};
use crate::sys;
use std::ffi::{c_void, CString};

const PEEK_MAX: usize = 64 * 1024;

/// A buffer the library returned (a token or a name list), kept in a buffer slot.
#[derive(Clone, Copy, Default)]
pub(crate) struct Buf {
    pub(crate) ptr: usize,
    pub(crate) size: u32,
    pub(crate) wide: bool,
}

/// Bytes of a live context copied for the garbage class "a copy of a live handle's bytes".
const COPY_BYTES: usize = 256;

/// A session still open when a Prepare reused its slot: ended by value at cleanup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Orphan {
    /// A DsRestorePrepare handle (else a backup session).
    restore: bool,
    value: u64,
}

/// One program's state: handle slots, buffer slots, and the worker-owned sentinels.
pub struct Interp<'a> {
    api: &'a Api,
    pulse: Option<&'a crate::worker::Pulse>,
    handles: [u64; SLOTS],
    /// Sessions opened by a successful Prepare and not yet closed by an End returning S_OK.
    open: [bool; SLOTS],
    /// Restore handles opened by a successful DsRestorePrepare and not yet ended.
    restore_open: [bool; SLOTS],
    pub(crate) bufs: [Buf; SLOTS],
    sentinels: Vec<sys::Sentinel>,
    /// Sessions still open when a Prepare reused their slot.
    orphans: Vec<Orphan>,
    /// Sessions whose End in the last clean-up did not return S_OK: a faulted run tries each
    /// once more, with no fault armed (an End whose own round trip failed may say so).
    cleanup_failed: Vec<Orphan>,
    /// The program's first resource reading, which later ones settle towards.
    first_probe: Option<Probe>,
    /// How long readings wait for threads to exit, and how much of that this program spent.
    patience: Patience,
    settle_spent: std::time::Duration,
    /// Inside a Repeat: nothing may be allocated per cycle.
    repeating: bool,
}

/// Worker-owned memory passed as a handle, kept to see whether the library wrote to it.
struct Owned {
    mem: Box<[u8]>,
    expect: Vec<u8>,
}

fn fill_random(buf: &mut [u8], mut seed: u64) {
    for b in buf.iter_mut() {
        // xorshift64: deterministic for a seed, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
}

/// What one call builds up while it runs: its observation, and worker-owned memory passed as
/// a handle, checked for writes once the call is back.
pub struct Scratch {
    pub(crate) obs: Observation,
    owned: Option<Owned>,
}

impl Scratch {
    /// The observation, with whether worker-owned memory given as a handle is intact.
    fn finish(self) -> Observation {
        let mut obs = self.obs;
        if let Some(o) = self.owned {
            obs.intact = Some(o.mem[..] == o.expect[..]);
        }
        obs
    }
}

fn not_run(why: impl Into<String>) -> Observation {
    Observation {
        not_run: Some(why.into()),
        ..Observation::default()
    }
}

/// A string argument in the A or W form; the storage lives as long as the value, lent to the
/// library (freeing it is a defect the page heap names).
pub(crate) enum CStrArg {
    Null,
    A { s: CString, _loan: Loan },
    W { s: Vec<u16>, _loan: Loan },
}

impl CStrArg {
    pub(crate) fn a(&self) -> *const std::ffi::c_char {
        match self {
            CStrArg::A { s, .. } => s.as_ptr(),
            _ => std::ptr::null(),
        }
    }
    pub(crate) fn w(&self) -> *const u16 {
        match self {
            CStrArg::W { s, .. } => s.as_ptr(),
            _ => std::ptr::null(),
        }
    }
}

/// Copies library memory. memmove semantics: after a use-after-free in the library, the copy's
/// own new block can be the very block being read.
///
/// # Safety
/// `ptr` is 0 or holds at least `len` bytes (at most `PEEK_MAX` of them are read).
pub(crate) unsafe fn copy_bytes(ptr: usize, len: usize) -> Vec<u8> {
    if ptr == 0 {
        return Vec::new();
    }
    let len = len.min(PEEK_MAX);
    let mut out = vec![0u8; len];
    // SAFETY: the caller's promise for the source; `out` is a fresh buffer of `len` bytes.
    unsafe { std::ptr::copy(ptr as *const u8, out.as_mut_ptr(), len) };
    out
}

/// The nearest value of garbage class `g` to `v` that is no live handle, for the classes
/// that are numbers: alternately above and below, in steps of 1 for small integers and
/// misaligned values and of 16 for addresses. None for all-ones, which has one value only.
pub fn nearest_free(g: Garbage, v: usize, live: &[u64]) -> Option<usize> {
    let unit = match g {
        Garbage::Small(_) | Garbage::LivePlusOne(_) => 1,
        Garbage::KernelHalf | Garbage::NonCanonical => 0x10,
        _ => return None,
    };
    (1..4096usize)
        .filter_map(|d| {
            let k = unit * d.div_ceil(2);
            if d % 2 == 1 {
                v.checked_add(k)
            } else {
                v.checked_sub(k)
            }
        })
        // 0 is NULL, never garbage.
        .find(|&x| x != 0 && !live.contains(&(x as u64)))
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

pub(crate) fn slot_of(h: &HandleArg) -> Option<u8> {
    match h {
        HandleArg::Slot(s) => Some(*s),
        _ => None,
    }
}

/// A name list's characters: WCHARs in the W forms, CHARs in the A forms.
pub fn list_units(bytes: &[u8], wide: bool) -> Vec<u16> {
    if wide {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect()
    } else {
        bytes.iter().map(|&b| b as u16).collect()
    }
}

/// Waits (briefly) until no more threads are listed than `before`: a joined thread stays listed
/// until the kernel finishes its exit, and the harness's own threads must never read as a leak.
pub(crate) fn await_joined(before: i64) {
    for _ in 0..200 {
        if crate::probe::threads() <= before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// Splits a double-NUL-terminated list into its entries (each still with its BFT character).
pub fn parse_list(bytes: &[u8], wide: bool) -> Vec<String> {
    let units = list_units(bytes, wide);
    let mut out = Vec::new();
    for entry in units.split(|&u| u == 0) {
        if entry.is_empty() {
            break;
        }
        out.push(String::from_utf16_lossy(entry));
    }
    out
}

impl<'a> Interp<'a> {
    pub fn new(api: &'a Api, pulse: Option<&'a crate::worker::Pulse>) -> Interp<'a> {
        Interp {
            api,
            pulse,
            handles: [0; SLOTS],
            open: [false; SLOTS],
            restore_open: [false; SLOTS],
            bufs: [Buf::default(); SLOTS],
            sentinels: Vec::new(),
            orphans: Vec::new(),
            cleanup_failed: Vec::new(),
            first_probe: None,
            patience: QUICK,
            settle_spent: std::time::Duration::ZERO,
            repeating: false,
        }
    }

    /// Runs every op of program number `id`, marking each on the pulse before it runs.
    pub fn run(&mut self, id: u32, program: &Program) -> Vec<Observation> {
        if program.patient {
            self.patience = PATIENT;
        }
        let mut out = Vec::with_capacity(program.ops.len());
        for (i, op) in program.ops.iter().enumerate() {
            if let Some(p) = self.pulse {
                p.enter(id, i as u32);
            }
            out.push(self.op(op));
        }
        out
    }

    /// Step `i` of a Faulted body begins: the pulse names it, and the fault's counted calls
    /// are made in it.
    fn step(&self, i: usize) {
        if let Some(p) = self.pulse {
            p.step(i as u32);
        }
        crate::imports::fault::set_step(i as u16);
    }

    pub(crate) fn tick(&self) {
        if let Some(p) = self.pulse {
            p.tick();
        }
    }

    pub(crate) fn text(&self, t: &Text, wide: bool) -> Result<CStrArg, NotRun> {
        let s = match t {
            Text::Null => return Ok(CStrArg::Null),
            Text::Lit(s) => s.clone(),
            Text::Entry { buf, index } => {
                let b = self.bufs[*buf as usize];
                // SAFETY: a name list the library returned with its size, not freed (the
                // model takes names from unfreed lists only); a lie faults in this worker.
                let bytes = unsafe { copy_bytes(b.ptr, b.size as usize) };
                let list = parse_list(&bytes, b.wide);
                let entry = list.get(*index as usize).ok_or(NotRun::NoEntry(*index))?;
                entry.chars().skip(1).collect()
            }
        };
        Ok(if wide {
            let w: Vec<u16> = s.encode_utf16().chain(Some(0)).collect();
            let loan = Loan::new(w.as_ptr().cast(), w.len() * 2);
            CStrArg::W { s: w, _loan: loan }
        } else {
            let a = CString::new(s).map_err(|_| NotRun::NulInName)?;
            let loan = Loan::new(a.as_ptr().cast(), a.as_bytes_with_nul().len());
            CStrArg::A { s: a, _loan: loan }
        })
    }

    /// Every value that is a live handle now: backup and restore sessions still open, and
    /// sessions whose slot a later Prepare reused.
    fn live_values(&self) -> Vec<u64> {
        (0..SLOTS)
            .filter(|&s| self.open[s] || self.restore_open[s])
            .map(|s| self.handles[s])
            .chain(self.orphans.iter().map(|o| o.value))
            .filter(|&v| v != 0)
            .collect()
    }

    /// The value of a garbage class, computed afresh (unmapped pages and owned memory are new
    /// at every call).
    fn garbage_value(&self, g: Garbage, owned: &mut Option<Owned>) -> Result<usize, NotRun> {
        Ok(match g {
            Garbage::Small(n) => n as usize,
            Garbage::AllOnes => usize::MAX,
            Garbage::Unmapped => sys::unmapped_page(),
            Garbage::KernelHalf => sys::KERNEL_HALF,
            Garbage::NonCanonical => sys::NON_CANONICAL,
            Garbage::LivePlusOne(s) => (self.handles[s as usize] as usize).wrapping_add(1),
            Garbage::Zeroed | Garbage::OnesFilled | Garbage::Random(_) | Garbage::CopyOfLive(_) => {
                let mut mem = vec![0u8; 4096].into_boxed_slice();
                match g {
                    Garbage::OnesFilled => mem.fill(0xFF),
                    Garbage::Random(seed) => fill_random(&mut mem, seed | 1),
                    Garbage::CopyOfLive(s) => {
                        let live = self.handles[s as usize] as usize;
                        // A small context may end at an unreadable page (the page heap puts
                        // each block against a guard page): copy what is readable of it.
                        let to_page_end = sys::PAGE - live % sys::PAGE;
                        let copied = sys::copy_if_readable(live, &mut mem[..COPY_BYTES])
                            || (to_page_end < COPY_BYTES
                                && sys::copy_if_readable(live, &mut mem[..to_page_end]));
                        if !copied {
                            return Err(NotRun::UnreadableHandle);
                        }
                    }
                    _ => {}
                }
                let p = mem.as_ptr() as usize;
                *owned = Some(Owned {
                    expect: mem.to_vec(),
                    mem,
                });
                p
            }
        })
    }

    /// A garbage value that is no live handle: the class's own value when it is not live,
    /// else the nearest value of the same class that is not (design §5), with a note.
    fn garbage(
        &self,
        g: Garbage,
        owned: &mut Option<Owned>,
    ) -> Result<(usize, Option<String>), NotRun> {
        let live = self.live_values();
        let v = self.garbage_value(g, owned)?;
        if !live.contains(&(v as u64)) {
            return Ok((v, None));
        }
        let fresh = |owned: &mut Option<Owned>| -> Option<usize> {
            // Unmapped pages and owned memory: ask again for a new one.
            (0..8).find_map(|_| {
                let x = self.garbage_value(g, owned).ok()?;
                (!live.contains(&(x as u64))).then_some(x)
            })
        };
        let found = match g {
            Garbage::Unmapped
            | Garbage::Zeroed
            | Garbage::OnesFilled
            | Garbage::Random(_)
            | Garbage::CopyOfLive(_) => fresh(owned),
            _ => nearest_free(g, v, &live),
        };
        // "small integer 0x1" already names its value; other labels get it added.
        let mut what = g.label();
        if !what.contains(&format!("0x{v:X}")) {
            what.push_str(&format!(" 0x{v:X}"));
        }
        match found {
            Some(x) => Ok((
                x,
                Some(format!(
                    "{what} is a live handle of this library; used 0x{x:X}"
                )),
            )),
            None => Err(NotRun::NoFreeValue(what)),
        }
    }

    /// The value passed for a handle argument, and a note when a garbage value was replaced.
    fn handle(
        &self,
        h: &HandleArg,
        owned: &mut Option<Owned>,
    ) -> Result<(usize, Option<String>), NotRun> {
        match h {
            HandleArg::Null => Ok((0, None)),
            HandleArg::Slot(s) => Ok((self.handles[*s as usize] as usize, None)),
            HandleArg::Garbage(g) => self.garbage(*g, owned),
        }
    }

    /// The value passed for a handle argument, recorded in the call's observation with the
    /// note when a garbage value was replaced.
    pub(crate) fn arg(&self, h: &HandleArg, s: &mut Scratch) -> Result<Hbc, NotRun> {
        let (v, note) = self.handle(h, &mut s.owned)?;
        s.obs.arg = Some(v as u64);
        s.obs.substituted = note;
        Ok(v as Hbc)
    }

    /// Export `name` with signature `F` (its family's type for it), or why the call was not
    /// made.
    ///
    /// # Safety
    /// `F` must be the export's signature.
    pub(crate) unsafe fn func<F: Copy>(&self, name: &str) -> Result<F, NotRun> {
        // SAFETY: the caller's promise is `get`'s.
        crate::calls::call::need(unsafe { self.api.get(name) }, name)
    }

    /// Export `export` with signature `F` and the value passed for `h`, in that order: a call
    /// on a handle is not made when its export is missing.
    ///
    /// # Safety
    /// `F` must be the export's signature.
    pub(crate) unsafe fn func_arg<F: Copy>(
        &self,
        export: &str,
        h: &HandleArg,
        s: &mut Scratch,
    ) -> Result<(F, Hbc), NotRun> {
        // SAFETY: the caller's promise is `func`'s.
        let f = unsafe { self.func(export)? };
        Ok((f, self.arg(h, s)?))
    }

    /// The library's function table, for as long as the interpreter runs.
    pub(crate) fn api(&self) -> &'a Api {
        self.api
    }

    /// A Prepare (backup, else restore) wrote `value` to `slot`: a session open there before is
    /// kept for Cleanup, and the slot holds a live session when the call succeeded.
    pub(crate) fn opened(&mut self, restore: bool, slot: usize, value: u64, live: bool) {
        self.vacate(slot);
        self.handles[slot] = value;
        if restore {
            self.restore_open[slot] = live;
        } else {
            self.open[slot] = live;
        }
    }

    /// A Prepare is about to write `slot`: a session still open there is kept for Cleanup.
    /// Not inside a Repeat, which must allocate nothing per cycle (a library whose End fails
    /// would grow the list there); such sessions are the library's own leak.
    fn vacate(&mut self, slot: usize) {
        if !self.repeating {
            if self.open[slot] {
                self.orphans.push(Orphan {
                    restore: false,
                    value: self.handles[slot],
                });
            }
            if self.restore_open[slot] {
                self.orphans.push(Orphan {
                    restore: true,
                    value: self.handles[slot],
                });
            }
        }
        self.open[slot] = false;
        self.restore_open[slot] = false;
    }

    /// An End (backup or restore) on value `v` returned S_OK: the session with that value is
    /// over, whichever slot it was opened in. The named slot goes first.
    pub(crate) fn ended(&mut self, restore: bool, v: u64, named: Option<u8>) {
        let open = if restore {
            &mut self.restore_open
        } else {
            &mut self.open
        };
        let slot = named
            .map(|s| s as usize)
            .filter(|&s| open[s] && self.handles[s] == v)
            .or_else(|| (0..SLOTS).find(|&s| open[s] && self.handles[s] == v));
        match slot {
            Some(s) => open[s] = false,
            None => {
                if let Some(i) = self
                    .orphans
                    .iter()
                    .position(|o| *o == Orphan { restore, value: v })
                {
                    self.orphans.remove(i);
                }
            }
        }
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
        let export = if o.restore {
            "DsRestoreEnd"
        } else {
            "DsBackupEnd"
        };
        // SAFETY: End takes a handle by value, with the signature its family declares; the
        // value is one the library gave out.
        unsafe { self.api.get::<HbcOnly>(export).map(|f| f(o.value as Hbc)) }
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
        let api = self.api;
        let mut scratch = Scratch {
            obs: Observation::default(),
            owned: None,
        };
        if let Some(c) = op.call() {
            // SAFETY: the table was made from a loaded library whose exports have the
            // families' signatures (`Api::from_lookup`'s promise), and it runs in a worker.
            unsafe { c.run(self, &mut scratch)? };
            // A failed call may be the library's own descriptors running out: say so
            // (no allocation, and not inside a measured Repeat's cycles).
            if scratch.obs.rc.is_some_and(|rc| rc != 0) && !self.repeating {
                scratch.obs.no_descriptors = sys::descriptors_exhausted();
            }
            return Ok(scratch.finish());
        }
        let obs = &mut scratch.obs;
        match op {
            Op::Peek { buf } => {
                let b = self.bufs[*buf as usize];
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
                self.repeating = true;
                let mut flat = 0;
                for cycle in 1..=*n {
                    for (i, op) in body.iter().enumerate() {
                        self.tick();
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
                self.repeating = false;
            }
            Op::Faulted { at, body } => return Ok(self.faulted(*at, body)),
            Op::Cleanup => {
                // No allocation here unless an End fails: heap layout is part of what a
                // corrupting library's crash depends on.
                for s in 0..SLOTS {
                    for restore in [false, true] {
                        let open = if restore {
                            &mut self.restore_open[s]
                        } else {
                            &mut self.open[s]
                        };
                        if std::mem::take(open) {
                            let value = self.handles[s];
                            self.cleanup_end(obs, Orphan { restore, value });
                        }
                    }
                }
                for o in std::mem::take(&mut self.orphans) {
                    self.cleanup_end(obs, o);
                }
                for b in self.bufs.iter_mut() {
                    let p = std::mem::take(b).ptr;
                    if p != 0 {
                        // SAFETY: DsBackupFree's signature is `FreeFn`.
                        if let Some(f) = unsafe { api.get::<FreeFn>("DsBackupFree") } {
                            // SAFETY: a buffer the library returned and nothing freed; it
                            // left the storage above, so it is freed once.
                            unsafe { f(p as *mut c_void) };
                        }
                    }
                }
            }
            // The calls of the API ran above (`Op::call` lists them).
            _ => {}
        }
        Ok(scratch.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_small_integer_is_replaced_by_the_nearest_free_one() {
        // Index handles 1 and 2 live: 1 -> 3 (2 is live, 0 is NULL).
        assert_eq!(nearest_free(Garbage::Small(1), 1, &[1, 2]), Some(3));
        // Above goes first: 0x11 is live, so 0x0F; with 0x0F live too, 0x12.
        assert_eq!(
            nearest_free(Garbage::Small(0x10), 0x10, &[0x10, 0x11]),
            Some(0x0F)
        );
        assert_eq!(
            nearest_free(Garbage::Small(0x10), 0x10, &[0x0F, 0x10, 0x11]),
            Some(0x12)
        );
    }

    #[test]
    fn addresses_step_by_sixteen_and_all_ones_has_no_other_value() {
        let k = 0xFFFF_8000_0000_1000usize;
        assert_eq!(
            nearest_free(Garbage::KernelHalf, k, &[k as u64]),
            Some(k + 0x10)
        );
        assert_eq!(
            nearest_free(Garbage::AllOnes, usize::MAX, &[u64::MAX]),
            None
        );
        assert_eq!(nearest_free(Garbage::Zeroed, 0x1000, &[0x1000]), None);
    }

    #[test]
    fn parse_list_splits_a_double_nul_list() {
        let bytes = b"\x44a\0\x21bc\0\0";
        assert_eq!(parse_list(bytes, false), vec!["\u{44}a", "\u{21}bc"]);
    }
}
