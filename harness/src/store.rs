//! The worker's storage for one program: handle slots, buffer slots, the sessions still open,
//! and what a call needs from them (its export, its handle and string arguments, a garbage
//! value that is no live handle). The families (`calls`) and the interpreter both use it; it
//! knows no family and runs no op.

use crate::abi::{Api, Hbc};
use crate::args::{Garbage, HandleArg, Text};
use crate::not_run::NotRun;
use crate::observation::Observation;
use crate::pageheap::Loan;
use crate::pulse::Pulse;
use crate::sys;
use std::ffi::CString;

pub(crate) const PEEK_MAX: usize = 64 * 1024;

/// A buffer the library returned (a token or a name list), kept in a buffer slot.
#[derive(Clone, Copy, Default)]
pub(crate) struct Buf {
    pub(crate) ptr: usize,
    pub(crate) size: u32,
    pub(crate) wide: bool,
}

impl Buf {
    pub(crate) fn new(ptr: usize, size: u32, wide: bool) -> Buf {
        Buf { ptr, size, wide }
    }
}

/// Bytes of a live context copied for the garbage class "a copy of a live handle's bytes".
const COPY_BYTES: usize = 256;

/// A session still open when a Prepare reused its slot: ended by value at cleanup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Orphan {
    /// A DsRestorePrepare handle (else a backup session).
    pub(crate) restore: bool,
    pub(crate) value: u64,
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
#[derive(Default)]
pub struct Scratch {
    pub(crate) obs: Observation,
    owned: Option<Owned>,
}

impl Scratch {
    /// The observation, with whether worker-owned memory given as a handle is intact.
    pub(crate) fn finish(self) -> Observation {
        let mut obs = self.obs;
        if let Some(o) = self.owned {
            obs.intact = Some(o.mem[..] == o.expect[..]);
        }
        obs
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

/// Number of handle slots and buffer slots in a program.
pub const SLOTS: usize = 32;

/// Handle and buffer slots of one program, and the sessions it still has open.
pub struct Store<'a> {
    api: &'a Api,
    pulse: Option<&'a Pulse>,
    handles: [u64; SLOTS],
    /// Sessions opened by a successful Prepare and not yet closed by an End returning S_OK.
    open: [bool; SLOTS],
    /// Restore handles opened by a successful DsRestorePrepare and not yet ended.
    restore_open: [bool; SLOTS],
    bufs: [Buf; SLOTS],
    /// Sessions still open when a Prepare reused their slot.
    orphans: Vec<Orphan>,
    /// Inside a Repeat: nothing may be allocated per cycle.
    repeating: bool,
}

impl<'a> Store<'a> {
    pub(crate) fn new(api: &'a Api, pulse: Option<&'a Pulse>) -> Store<'a> {
        Store {
            api,
            pulse,
            handles: [0; SLOTS],
            open: [false; SLOTS],
            restore_open: [false; SLOTS],
            bufs: [Buf::default(); SLOTS],
            orphans: Vec::new(),
            repeating: false,
        }
    }

    pub(crate) fn pulse(&self) -> Option<&'a Pulse> {
        self.pulse
    }

    /// Inside a Repeat (nothing may be allocated per cycle), or not.
    pub(crate) fn set_repeating(&mut self, on: bool) {
        self.repeating = on;
    }

    pub(crate) fn repeating(&self) -> bool {
        self.repeating
    }

    /// The buffer in slot `b`.
    pub(crate) fn buf(&self, b: u8) -> Buf {
        self.bufs[b as usize]
    }

    /// The library returned `buf` into slot `b`.
    pub(crate) fn set_buf(&mut self, b: u8, buf: Buf) {
        self.bufs[b as usize] = buf;
    }

    /// Takes the buffer out of slot `b`, leaving it empty: it is freed once.
    pub(crate) fn take_buf(&mut self, b: u8) -> Buf {
        std::mem::take(&mut self.bufs[b as usize])
    }

    /// Takes the next session still open in a slot (backup before restore, slot by slot),
    /// marking it ended. Allocates nothing.
    pub(crate) fn take_open(&mut self) -> Option<Orphan> {
        for s in 0..SLOTS {
            for restore in [false, true] {
                let open = if restore {
                    &mut self.restore_open[s]
                } else {
                    &mut self.open[s]
                };
                if std::mem::take(open) {
                    return Some(Orphan {
                        restore,
                        value: self.handles[s],
                    });
                }
            }
        }
        None
    }

    /// Takes the sessions whose slot a later Prepare reused.
    pub(crate) fn take_orphans(&mut self) -> Vec<Orphan> {
        std::mem::take(&mut self.orphans)
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
        need(unsafe { self.api.get(name) }, name)
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
}

/// The export, or why the call is not made.
pub(crate) fn need<T>(f: Option<T>, export: &str) -> Result<T, NotRun> {
    f.ok_or_else(|| NotRun::NotExported(export.to_string()))
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
