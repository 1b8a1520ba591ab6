//! The armed fault: which of the library's resource calls fails, counted from arming, and
//! the library's live heap bytes as the allocation wrappers see them. Platform-neutral: the
//! wrappers of each platform call `strike` and `held_add`.
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// What a routed function makes: a fault fails it the way that kind of call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Returns NULL (or ENOMEM) as if memory ran out.
    Alloc,
    /// Returns -1 with EMFILE as if the process had no descriptor left.
    Handle,
    /// Returns EAGAIN as if no thread could start.
    Thread,
    /// Returns -1 with EIO as if the server's connection failed half way.
    Io,
    /// Never failed (free, mmap): failing it would not model a real shortage.
    Never,
}

/// One faultable call: the `nth` call of `function` since arming, the `site`-th faultable
/// call overall, made while step `step` of the armed program ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub function: String,
    pub nth: u64,
    pub site: u64,
    pub step: u16,
    /// The call was an allocation (it failed as memory running out).
    #[serde(default)]
    pub alloc: bool,
}

/// What one armed stretch saw: how many faultable calls the library made, the one that was
/// failed (if the count reached it), and, when counting only, every call in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub sites: u64,
    pub hit: Option<Hit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<Hit>,
}

/// Calls kept in a counting trace: enough for any cap of sites a run asks for.
pub const TRACE_MAX: usize = 10_000;

static ARMED: AtomicBool = AtomicBool::new(false);
/// The process that armed the fault: a child the library forks (without exec) inherits the
/// armed state, and must neither fail a call nor count one of the worker's.
static ARMED_BY: AtomicU32 = AtomicU32::new(0);
static AT: AtomicU64 = AtomicU64::new(0);
static SEEN: AtomicU64 = AtomicU64::new(0);
static HIT: Mutex<Option<Hit>> = Mutex::new(None);
static HELD: AtomicI64 = AtomicI64::new(0);
static HELD_BLOCKS: AtomicI64 = AtomicI64::new(0);
static STEP: AtomicU16 = AtomicU16::new(0);
static TRACE: Mutex<Vec<Hit>> = Mutex::new(Vec::new());

/// The armed program moves on to step `step`: calls from now are counted as made in it.
pub fn set_step(step: u16) {
    STEP.store(step, Ordering::SeqCst);
}

/// Starts counting faultable calls; the `at`-th fails (0: none fails, the calls are counted).
pub fn start(at: u64) {
    *HIT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    TRACE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    STEP.store(0, Ordering::SeqCst);
    SEEN.store(0, Ordering::SeqCst);
    AT.store(at, Ordering::SeqCst);
    ARMED_BY.store(std::process::id(), Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops counting and says what was seen.
pub fn disarm() -> Sweep {
    ARMED.store(false, Ordering::SeqCst);
    Sweep {
        sites: SEEN.load(Ordering::SeqCst),
        hit: hit(),
        trace: std::mem::take(&mut *TRACE.lock().unwrap_or_else(|e| e.into_inner())),
    }
}

/// The call failed since arming, if any.
pub fn hit() -> Option<Hit> {
    HIT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Called by a wrapper before it calls the real function: true when this call is the one to
/// fail. `nth` tells how many calls of this function came since arming (this one included).
// Called by the ELF wrappers; the PE ones are still to come.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn strike(class: Class, function: &'static str, nth: impl FnOnce() -> u64) -> bool {
    if class == Class::Never || !ARMED.load(Ordering::Relaxed) || !in_armer() {
        return false;
    }
    let site = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    let at = AT.load(Ordering::SeqCst);
    let call = |nth| Hit {
        function: function.to_string(),
        nth,
        site,
        step: STEP.load(Ordering::SeqCst),
        alloc: class == Class::Alloc,
    };
    if at == 0 {
        let mut trace = TRACE.lock().unwrap_or_else(|e| e.into_inner());
        if trace.len() < TRACE_MAX {
            trace.push(call(nth()));
        }
        return false;
    }
    if site != at {
        return false;
    }
    *HIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(call(nth()));
    true
}

/// Whether counting is on: the wrappers count calls per function only then.
// Called by the ELF wrappers; the PE ones are still to come.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn armed() -> bool {
    ARMED.load(Ordering::Relaxed) && in_armer()
}

/// Whether this is the process that armed the fault (not a child forked from it).
fn in_armer() -> bool {
    ARMED_BY.load(Ordering::Relaxed) == std::process::id()
}

/// The library's heap blocks grew (or shrank) by `bytes` and `blocks`, as its allocator
/// reports them; a mapping counts as a block with no heap bytes.
pub(crate) fn held_add(bytes: i64, blocks: i64) {
    HELD.fetch_add(bytes, Ordering::Relaxed);
    HELD_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
}

/// What a realloc of block `p` (`old` bytes) to `n` bytes, answered `r` by the C runtime,
/// changed in what the library holds; `size` reads a block's size. NULL for a size of 0 freed
/// the block, NULL otherwise left it as it was. With the page heap on, a block that reached
/// the C runtime was another allocator's, resized by it: nothing of the library's changed.
pub(crate) fn realloc_held(
    p: *mut std::ffi::c_void,
    r: *mut std::ffi::c_void,
    n: usize,
    old: i64,
    size: fn(*mut std::ffi::c_void) -> i64,
) {
    if crate::pageheap::enabled() {
        return;
    }
    if !r.is_null() {
        held_add(size(r) - old, i64::from(p.is_null()));
    } else if n == 0 && !p.is_null() {
        held_add(-old, -1);
    }
}

/// What the library holds of memory since routing: exact per library, since only its own
/// calls reach the wrappers, and free of the allocator's caching. Leaks are judged by blocks:
/// a library that moves a value it keeps from one source to another (heap, its own pages)
/// changes its bytes, never its count of blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub bytes: i64,
    pub blocks: i64,
}

pub fn held() -> Held {
    Held {
        bytes: HELD.load(Ordering::Relaxed),
        blocks: HELD_BLOCKS.load(Ordering::Relaxed),
    }
}

/// "1st", "2nd", "3rd", "11th", ...
pub fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the global state, so that parallel tests cannot interleave on it.
    #[test]
    fn the_armed_site_fails_once_and_is_named() {
        start(0);
        assert!(!strike(Class::Alloc, "malloc", || 1));
        assert!(!strike(Class::Never, "free", || 1));
        set_step(3);
        assert!(!strike(Class::Alloc, "malloc", || 2));
        let counted = disarm();
        assert_eq!((counted.sites, counted.hit), (2, None));
        let trace: Vec<_> = counted
            .trace
            .iter()
            .map(|h| (h.function.as_str(), h.nth, h.site, h.step))
            .collect();
        assert_eq!(trace, [("malloc", 1, 1, 0), ("malloc", 2, 2, 3)]);

        start(2);
        assert!(!strike(Class::Alloc, "malloc", || 1));
        set_step(1);
        assert!(strike(Class::Handle, "pipe2", || 1));
        assert!(!strike(Class::Alloc, "malloc", || 2));
        let s = disarm();
        assert_eq!(s.sites, 3);
        assert!(s.trace.is_empty());
        assert_eq!(
            s.hit,
            Some(Hit {
                function: "pipe2".into(),
                nth: 1,
                site: 2,
                step: 1,
                alloc: false,
            })
        );
        // Disarmed: nothing is counted or failed.
        assert!(!strike(Class::Alloc, "malloc", || 1));
        assert_eq!(disarm().sites, 3);
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 103, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "103rd",
                "111th"
            ]
        );
    }
}
