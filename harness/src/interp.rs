//! Runs call programs against a loaded table, in the worker. It validates nothing: it passes
//! exactly the arguments the program names and records what came back.

use crate::abi::{Api, Hbc};
use crate::pageheap::Loan;
use crate::program::{
    FaultObs, Garbage, HandleArg, ListKind, Observation, Op, Probe, Program, Tally, Text, SLOTS,
};
use crate::sys;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Barrier};

const PEEK_MAX: usize = 64 * 1024;
const READ_BUFFER_MAX: u32 = 16 * 1024 * 1024;
const READ_TO_END_MAX_CALLS: u64 = 100_000;

#[derive(Clone, Copy, Default)]
struct Buf {
    ptr: usize,
    size: u32,
    wide: bool,
}

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
    bufs: [Buf; SLOTS],
    sentinels: Vec<sys::Sentinel>,
    /// Sessions still open when a Prepare reused their slot.
    orphans: Vec<Orphan>,
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

fn need<T>(f: Option<T>, op: &Op) -> Result<T, String> {
    f.ok_or_else(|| format!("{} is not exported", op.export().unwrap_or("?")))
}

fn not_run(why: impl Into<String>) -> Observation {
    Observation {
        not_run: Some(why.into()),
        ..Observation::default()
    }
}

/// A string argument in the A or W form; the storage lives as long as the value, lent to the
/// library (freeing it is a defect the page heap names).
enum CStrArg {
    Null,
    A { s: CString, _loan: Loan },
    W { s: Vec<u16>, _loan: Loan },
}

impl CStrArg {
    fn a(&self) -> *const std::ffi::c_char {
        match self {
            CStrArg::A { s, .. } => s.as_ptr(),
            _ => std::ptr::null(),
        }
    }
    fn w(&self) -> *const u16 {
        match self {
            CStrArg::W { s, .. } => s.as_ptr(),
            _ => std::ptr::null(),
        }
    }
}

/// Copies library memory. memmove semantics: after a use-after-free in the library, the copy's
/// own new block can be the very block being read.
unsafe fn copy_bytes(ptr: usize, len: usize) -> Vec<u8> {
    if ptr == 0 {
        return Vec::new();
    }
    let len = len.min(PEEK_MAX);
    let mut out = vec![0u8; len];
    std::ptr::copy(ptr as *const u8, out.as_mut_ptr(), len);
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
    p
}

fn slot_of(h: &HandleArg) -> Option<u8> {
    match h {
        HandleArg::Slot(s) => Some(*s),
        _ => None,
    }
}

/// Splits a double-NUL-terminated list into its entries (each still with its BFT character).
pub fn parse_list(bytes: &[u8], wide: bool) -> Vec<String> {
    let units: Vec<u16> = if wide {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect()
    } else {
        bytes.iter().map(|&b| b as u16).collect()
    };
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

    fn tick(&self) {
        if let Some(p) = self.pulse {
            p.tick();
        }
    }

    fn text(&self, t: &Text, wide: bool) -> Result<CStrArg, String> {
        let s = match t {
            Text::Null => return Ok(CStrArg::Null),
            Text::Lit(s) => s.clone(),
            Text::Entry { buf, index } => {
                let b = self.bufs[*buf as usize];
                let bytes = unsafe { copy_bytes(b.ptr, b.size as usize) };
                let list = parse_list(&bytes, b.wide);
                let entry = list
                    .get(*index as usize)
                    .ok_or_else(|| format!("the name list has no entry {index}"))?;
                entry.chars().skip(1).collect()
            }
        };
        Ok(if wide {
            let w: Vec<u16> = s.encode_utf16().chain(Some(0)).collect();
            let loan = Loan::new(w.as_ptr().cast(), w.len() * 2);
            CStrArg::W { s: w, _loan: loan }
        } else {
            let a = CString::new(s).map_err(|_| "a name with a NUL inside".to_string())?;
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
    fn garbage_value(&self, g: Garbage, owned: &mut Option<Owned>) -> Result<usize, String> {
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
                        if !sys::copy_if_readable(live, &mut mem[..256]) {
                            return Err("the live handle's address is not readable memory".into());
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
    ) -> Result<(usize, Option<String>), String> {
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
            None => Err(format!(
                "skipped: {what} is a live handle of this library and the class has no other value"
            )),
        }
    }

    /// The value passed for a handle argument, and a note when a garbage value was replaced.
    fn handle(
        &self,
        h: &HandleArg,
        owned: &mut Option<Owned>,
    ) -> Result<(usize, Option<String>), String> {
        match h {
            HandleArg::Null => Ok((0, None)),
            HandleArg::Slot(s) => Ok((self.handles[*s as usize] as usize, None)),
            HandleArg::Garbage(g) => self.garbage(*g, owned),
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
    fn ended(&mut self, restore: bool, v: u64, named: Option<u8>) {
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
        steps.push(self.op(&Op::Cleanup));
        let sweep = crate::imports::disarm();
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

    fn op(&mut self, op: &Op) -> Observation {
        match self.op_inner(op) {
            Ok(o) => o,
            Err(why) => not_run(why),
        }
    }

    /// Performs one op. Long on purpose: one short arm per Op, each independent of the others, so the API's width
    /// shows here and nowhere else in this file (ARCHITECTURE.md lists the places an Op is described).
    fn op_inner(&mut self, op: &Op) -> Result<Observation, String> {
        let api = self.api;
        let mut owned = None;
        let mut obs = Observation::default();
        let mut hv = |interp: &Self, h: &HandleArg, obs: &mut Observation| -> Result<Hbc, String> {
            let (v, note) = interp.handle(h, &mut owned)?;
            obs.arg = Some(v as u64);
            obs.substituted = note;
            Ok(v as Hbc)
        };
        // SAFETY: every call passes the arguments the ABI names, built from live storage here.
        unsafe {
            match op {
                Op::Prepare(p) => {
                    let s = self.text(&p.server, p.wide)?;
                    let mut tok: *mut c_void = std::ptr::null_mut();
                    let mut cb: u32 = 0;
                    let mut h: Hbc = p.init as Hbc;
                    let ptok = if p.token {
                        &mut tok as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let pcb = if p.size {
                        &mut cb as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let ph = if p.phbc {
                        &mut h as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let rc = if p.wide {
                        need(api.backup_prepare_w, op)?(s.w(), p.grbit, p.btype, ptok, pcb, ph)
                    } else {
                        need(api.backup_prepare_a, op)?(s.a(), p.grbit, p.btype, ptok, pcb, ph)
                    };
                    obs.rc = Some(rc);
                    if p.phbc {
                        self.vacate(p.slot as usize);
                        self.handles[p.slot as usize] = h as u64;
                        self.open[p.slot as usize] = rc == 0 && !h.is_null();
                        obs.handle = Some(h as u64);
                    }
                    if p.size {
                        obs.size = Some(cb as u64);
                    }
                    if p.token {
                        obs.ptr = Some(!tok.is_null());
                        self.bufs[p.buf as usize] = Buf {
                            ptr: tok as usize,
                            size: cb.min(256),
                            wide: false,
                        };
                        if !tok.is_null() && rc == 0 {
                            obs.bytes = Some(copy_bytes(tok as usize, cb.min(256) as usize));
                        }
                    }
                }
                Op::End { h: hv_arg } | Op::RestoreEnd { h: hv_arg } => {
                    let restore = matches!(op, Op::RestoreEnd { .. });
                    let f = need(
                        if restore {
                            api.restore_end
                        } else {
                            api.backup_end
                        },
                        op,
                    )?;
                    let h = hv(self, hv_arg, &mut obs)?;
                    let rc = f(h);
                    obs.rc = Some(rc);
                    if rc == 0 {
                        self.ended(restore, h as u64, slot_of(hv_arg));
                    }
                }
                Op::EndConcurrent { h: hv_arg, threads } => {
                    let f = need(api.backup_end, op)?;
                    let h = hv(self, hv_arg, &mut obs)? as usize;
                    let n = (*threads).max(1) as usize;
                    let before = crate::probe::threads();
                    let barrier = Arc::new(Barrier::new(n));
                    let joins: Vec<_> = (0..n)
                        .map(|_| {
                            let b = barrier.clone();
                            std::thread::spawn(move || {
                                b.wait();
                                f(h as Hbc)
                            })
                        })
                        .collect();
                    obs.codes = joins
                        .into_iter()
                        .map(|j| j.join().unwrap_or(i32::MIN))
                        .collect();
                    // A joined thread stays listed until the kernel finishes its exit; wait for
                    // that (briefly), so the harness's own threads never read as a leak.
                    for _ in 0..200 {
                        if crate::probe::threads() <= before {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                    if obs.codes.contains(&0) {
                        self.ended(false, h as u64, slot_of(hv_arg));
                    }
                }
                Op::Free { buf } => {
                    let f = need(api.backup_free, op)?;
                    match buf {
                        None => f(std::ptr::null_mut()),
                        Some(b) => {
                            let p = std::mem::take(&mut self.bufs[*b as usize]).ptr;
                            f(p as *mut c_void);
                        }
                    }
                }
                Op::Peek { buf } => {
                    let b = self.bufs[*buf as usize];
                    obs.bytes = Some(copy_bytes(b.ptr, b.size as usize));
                }
                Op::Names {
                    kind,
                    wide,
                    h,
                    out,
                    size,
                    buf,
                } => {
                    let f = match (kind, wide) {
                        (ListKind::DatabaseNames, false) => api.backup_get_database_names_a,
                        (ListKind::DatabaseNames, true) => api.backup_get_database_names_w,
                        (ListKind::BackupLogs, false) => api.backup_get_backup_logs_a,
                        (ListKind::BackupLogs, true) => api.backup_get_backup_logs_w,
                    };
                    let f = need(f, op)?;
                    let h = hv(self, h, &mut obs)?;
                    // The documented caller precondition: the out pointer starts NULL.
                    let mut p: *mut c_void = std::ptr::null_mut();
                    let mut cb: u32 = 0;
                    let pp = if *out {
                        &mut p as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let pcb = if *size {
                        &mut cb as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let rc = f(h, pp, pcb);
                    obs.rc = Some(rc);
                    if *out {
                        obs.ptr = Some(!p.is_null());
                        self.bufs[*buf as usize] = Buf {
                            ptr: p as usize,
                            size: cb,
                            wide: *wide,
                        };
                        if rc == 0 {
                            obs.bytes = Some(copy_bytes(p as usize, cb as usize));
                        }
                    }
                    if *size {
                        obs.size = Some(cb as u64);
                    }
                }
                Op::OpenFile(o) => {
                    let n = self.text(&o.name, o.wide)?;
                    let h = hv(self, &o.h, &mut obs)?;
                    let mut li: i64 = -1;
                    let pli = if o.size {
                        &mut li as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    let rc = if o.wide {
                        need(api.backup_open_file_w, op)?(h, n.w(), o.hint, pli)
                    } else {
                        need(api.backup_open_file_a, op)?(h, n.a(), o.hint, pli)
                    };
                    obs.rc = Some(rc);
                    if o.size && rc == 0 {
                        obs.size = Some(li as u64);
                    }
                }
                Op::Read { h, cb, pcb } => {
                    let f = need(api.backup_read, op)?;
                    let h = hv(self, h, &mut obs)?;
                    if *cb > READ_BUFFER_MAX {
                        return Err(format!("read size {cb} is larger than the harness allows"));
                    }
                    let mut buffer = vec![0u8; *cb as usize];
                    let _loan = Loan::new(buffer.as_ptr(), buffer.len());
                    let mut n: u32 = 0;
                    let pn = if *pcb {
                        &mut n as *mut _
                    } else {
                        std::ptr::null_mut()
                    };
                    obs.rc = Some(f(h, buffer.as_mut_ptr().cast(), *cb, pn));
                    obs.size = Some(n as u64);
                }
                Op::ReadToEnd { h, cb } => {
                    let f = need(api.backup_read, op)?;
                    let h = hv(self, h, &mut obs)?;
                    let mut buffer = vec![0u8; (*cb).min(READ_BUFFER_MAX) as usize];
                    let _loan = Loan::new(buffer.as_ptr(), buffer.len());
                    let (mut total, mut calls, mut rc) = (0u64, 0u64, 0);
                    while calls < READ_TO_END_MAX_CALLS {
                        let mut n: u32 = 0;
                        rc = f(h, buffer.as_mut_ptr().cast(), buffer.len() as u32, &mut n);
                        calls += 1;
                        self.tick();
                        if rc != 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    obs.rc = Some(rc);
                    obs.size = Some(total);
                    obs.calls = Some(calls);
                }
                Op::Close { h } => {
                    let f = need(api.backup_close, op)?;
                    obs.rc = Some(f(hv(self, h, &mut obs)?));
                }
                Op::Truncate { h } => {
                    let f = need(api.backup_truncate_logs, op)?;
                    obs.rc = Some(f(hv(self, h, &mut obs)?));
                }
                Op::RestorePrepare(r) => {
                    let s = self.text(&r.server, r.wide)?;
                    let (tp, tcb) = match r.token {
                        Some(b) => {
                            let b = self.bufs[b as usize];
                            (b.ptr as *const c_void, b.size)
                        }
                        None => (std::ptr::null(), 0),
                    };
                    let mut h: Hbc = std::ptr::null_mut();
                    let rc = if r.wide {
                        need(api.restore_prepare_w, op)?(s.w(), 0, tp, tcb, &mut h)
                    } else {
                        need(api.restore_prepare_a, op)?(s.a(), 0, tp, tcb, &mut h)
                    };
                    obs.rc = Some(rc);
                    obs.handle = Some(h as u64);
                    let slot = r.slot as usize;
                    self.vacate(slot);
                    self.handles[slot] = h as u64;
                    self.restore_open[slot] = rc == 0 && !h.is_null();
                }
                Op::SetAuth {
                    wide,
                    user,
                    domain,
                    password,
                } => {
                    // The W form is asked for; a library with only the A form gets that.
                    let wide = *wide && api.set_auth_identity_w.is_some();
                    let (u, d, p) = (
                        self.text(user, wide)?,
                        self.text(domain, wide)?,
                        self.text(password, wide)?,
                    );
                    obs.rc = Some(if wide {
                        need(api.set_auth_identity_w, op)?(u.w(), d.w(), p.w())
                    } else {
                        need(api.set_auth_identity_a, op)?(u.a(), d.a(), p.a())
                    });
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
                    body,
                } => {
                    let every = (*probe_every).max(1);
                    obs.samples.reserve_exact((*n / every) as usize + 2);
                    obs.tally.reserve_exact(body.len() * 8);
                    obs.samples.push(crate::probe::read());
                    self.repeating = true;
                    for cycle in 1..=*n {
                        for (i, op) in body.iter().enumerate() {
                            self.tick();
                            let rc = match self.op_inner(op) {
                                Ok(o) => o.rc,
                                Err(_) => None,
                            };
                            let i = i as u16;
                            if let Some(t) = obs.tally.iter_mut().find(|t| t.op == i && t.rc == rc)
                            {
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
                        if cycle == *n && *settle_last && cycle % every == 0 {
                            let p = settled(
                                obs.samples.first().copied(),
                                PATIENT,
                                &mut self.settle_spent,
                            );
                            obs.samples.push(p);
                        } else if cycle % every == 0 {
                            // Window readings stay quick even in a patient program: the
                            // last reading is the one that waits.
                            let p =
                                settled(obs.samples.last().copied(), QUICK, &mut self.settle_spent);
                            obs.samples.push(p);
                        }
                    }
                    self.repeating = false;
                }
                Op::Faulted { at, body } => return Ok(self.faulted(*at, body)),
                Op::Cleanup => {
                    for s in 0..SLOTS {
                        if std::mem::take(&mut self.open[s]) {
                            if let Some(f) = api.backup_end {
                                obs.codes.push(f(self.handles[s] as Hbc));
                            }
                        }
                        if std::mem::take(&mut self.restore_open[s]) {
                            if let Some(f) = api.restore_end {
                                obs.codes.push(f(self.handles[s] as Hbc));
                            }
                        }
                    }
                    for Orphan { restore, value: v } in std::mem::take(&mut self.orphans) {
                        let f = if restore {
                            api.restore_end
                        } else {
                            api.backup_end
                        };
                        if let Some(f) = f {
                            obs.codes.push(f(v as Hbc));
                        }
                    }
                    for b in self.bufs.iter_mut() {
                        let p = std::mem::take(b).ptr;
                        if p != 0 {
                            if let Some(f) = api.backup_free {
                                f(p as *mut c_void);
                            }
                        }
                    }
                }
            }
        }
        if let Some(o) = owned {
            obs.intact = Some(o.mem[..] == o.expect[..]);
        }
        Ok(obs)
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
