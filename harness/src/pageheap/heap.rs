//! The page heap's book: every block the library holds or freed lately, by mapping. Its own
//! collections allocate from the harness's allocator, whose imports are never routed.

use super::layout::{place, span, Quarantine};
use super::line::{self, Touch};
#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One block: its mapping (base and length, guard included) and the block in it.
#[derive(Clone, Copy, Debug)]
struct Block {
    base: usize,
    len: usize,
    ptr: usize,
    size: usize,
}

impl Block {
    fn holds(&self, addr: usize) -> bool {
        (self.base..self.base + self.len).contains(&addr)
    }
}

/// Live blocks the book has room for before its table grows: past this many, the library is
/// leaking and the harness's own growth no longer matters.
const LIVE_ROOM: usize = 4096;

/// The book's collections are sized once, when the page heap is turned on: the probe measures
/// the process's heap, and a book that grew with each free would look like a leak.
struct Book {
    /// Live blocks by the address the library holds.
    live: HashMap<usize, Block>,
    quarantine: Quarantine<Block>,
    /// Buffers the caller lent the library for one call: start and length.
    lent: Vec<(usize, usize)>,
    /// Mappings that left the quarantine, still inaccessible and holding no memory (base,
    /// length): the next block of that length reopens one, one call where a new mapping
    /// takes two, and gives nothing back to the system that it would need again.
    spare: Vec<(usize, usize)>,
    live_bytes: usize,
    mapped: usize,
}

/// Spare mappings kept at most; past this many, one that leaves the quarantine is unmapped.
const SPARE_ROOM: usize = 256;

static ON: AtomicBool = AtomicBool::new(false);
static BOOK: Mutex<Option<Book>> = Mutex::new(None);

fn book() -> std::sync::MutexGuard<'static, Option<Book>> {
    BOOK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(unix)]
thread_local! {
    /// The book, held by the thread that forks while the fork happens: a child starts with
    /// the book unheld and consistent, whatever other threads were doing (pthread_atfork).
    static HELD_OVER_FORK: std::cell::RefCell<Option<std::sync::MutexGuard<'static, Option<Book>>>> =
        const { std::cell::RefCell::new(None) };
}

/// The words for a fault at `addr` when it touched a page of the page heap, written into
/// `out` (their length; 0 for any other address), and the pulse flag set. Called from the
/// platform's fault handler: it allocates nothing and waits on no lock for long.
fn describe_fault(addr: usize, what: &str, out: &mut [u8]) -> usize {
    let Some(t) = touch(addr) else { return 0 };
    line::named();
    let line = line::fault_line(t, what);
    let bytes = line.bytes();
    let n = bytes.len().min(out.len());
    out[..n].copy_from_slice(&bytes[..n]);
    n
}

#[cfg(unix)]
extern "C" fn fork_prepare() {
    before_fork();
}

#[cfg(unix)]
extern "C" fn fork_done() {
    after_fork();
}

/// Before a fork: take the book, so that no other thread holds it while the child is made.
#[cfg(unix)]
fn before_fork() {
    let guard = book();
    HELD_OVER_FORK.with(|h| *h.borrow_mut() = Some(guard));
}

/// After a fork, in the parent and in the child alike: give the book back.
#[cfg(unix)]
fn after_fork() {
    HELD_OVER_FORK.with(|h| drop(h.borrow_mut().take()));
}

/// Turns the page heap on for the rest of the process, with `quarantine` bytes of freed
/// pages kept inaccessible. False where the platform has none.
pub fn enable(quarantine: usize) -> bool {
    if !platform::AVAILABLE {
        return false;
    }
    *book() = Some(Book {
        live: HashMap::with_capacity(LIVE_ROOM),
        quarantine: Quarantine::new(quarantine, 2 * platform::page()),
        lent: Vec::with_capacity(16),
        spare: Vec::with_capacity(SPARE_ROOM),
        live_bytes: 0,
        mapped: 0,
    });
    platform::name_faults(describe_fault);
    #[cfg(unix)]
    platform::guard_forks(fork_prepare, fork_done);
    ON.store(true, Ordering::Release);
    true
}

pub fn enabled() -> bool {
    ON.load(Ordering::Acquire)
}

impl Book {
    /// The block, live or freed, whose mapping holds `addr`, and whether it was freed.
    fn containing(&self, addr: usize) -> Option<(Block, bool)> {
        if let Some(b) = self.live.values().find(|b| b.holds(addr)) {
            return Some((*b, false));
        }
        self.quarantine.find(|b| b.holds(addr)).map(|b| (b, true))
    }
}

/// Gives a block that left the quarantine back to the system; its length.
fn unmap(b: Block, len: usize) -> usize {
    platform::unmap(b.base, len);
    len
}

/// Keeps a block that left the quarantine as a spare mapping while there is room, else gives
/// it back; the bytes given back.
fn retire_spare(spare: &mut Vec<(usize, usize)>, b: Block, len: usize) -> usize {
    if spare.len() < SPARE_ROOM {
        spare.push((b.base, len));
        0
    } else {
        unmap(b, len)
    }
}

/// Gives every spare mapping back to the system; the bytes given back.
fn unmap_spares(spare: &mut Vec<(usize, usize)>) -> usize {
    spare
        .drain(..)
        .map(|(base, len)| {
            platform::unmap(base, len);
            len
        })
        .sum()
}

/// A block of `n` bytes aligned to `align`, on pages of its own; null when the system has no
/// pages left (after the quarantine gave its pages back).
pub fn alloc(n: usize, align: usize) -> *mut u8 {
    let page = platform::page();
    let Some(s) = span(n, align, page) else {
        return std::ptr::null_mut();
    };
    let mut guard = book();
    let Some(b) = guard.as_mut() else {
        return std::ptr::null_mut();
    };
    let base = if let Some(i) = b.spare.iter().position(|&(_, len)| len == s.total) {
        // Inaccessible throughout, guard included, and zero-filled: open the data pages.
        let (base, _) = b.spare.swap_remove(i);
        platform::reopen(base, s.data);
        base
    } else {
        let base = match platform::map(s.total) {
            Some(base) => base,
            None => {
                let mut unmapped = unmap_spares(&mut b.spare);
                b.quarantine.drain(|old, len| unmapped += unmap(old, len));
                b.mapped -= unmapped;
                match platform::map(s.total) {
                    Some(base) => base,
                    None => return std::ptr::null_mut(),
                }
            }
        };
        platform::seal(base + s.data, page);
        b.mapped += s.total;
        base
    };
    let ptr = place(base, s, n, align);
    b.live.insert(
        ptr,
        Block {
            base,
            len: s.total,
            ptr,
            size: n,
        },
    );
    b.live_bytes += n;
    ptr as *mut u8
}

/// What a free found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freed {
    /// A live block of this many bytes, now in quarantine.
    Block(usize),
    /// Not the page heap's: a block some other allocator gave the library.
    Foreign,
    /// Not a block at all: the free is a defect, described.
    Invalid(Misuse),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    Twice { size: usize },
    Inside { size: usize, offset: usize },
    Lent { len: usize, offset: usize },
}

impl std::fmt::Display for Misuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misuse::Twice { size } => write!(f, "a {size}-byte block freed a second time (a double free)"),
            Misuse::Inside { size, offset } => {
                write!(f, "a pointer {offset} bytes into a {size}-byte block, not its start")
            }
            Misuse::Lent { len, offset: 0 } => write!(
                f,
                "the {len}-byte buffer the caller passed in (the caller's memory)"
            ),
            Misuse::Lent { len, offset } => write!(
                f,
                "a pointer {offset} bytes into a {len}-byte buffer the caller passed in (the caller's memory)"
            ),
        }
    }
}

/// Whose `addr` is, for a free or a realloc: a live block, another allocator's (None), or a
/// misuse. Only a pointer that is not a live block's costs a search.
fn judge(b: &Book, addr: usize) -> Result<Option<Block>, Misuse> {
    if let Some(block) = b.live.get(&addr) {
        return Ok(Some(*block));
    }
    if let Some((block, freed)) = b.containing(addr) {
        return Err(if freed && addr == block.ptr {
            Misuse::Twice { size: block.size }
        } else {
            Misuse::Inside {
                size: block.size,
                offset: addr.wrapping_sub(block.ptr),
            }
        });
    }
    if let Some(&(start, len)) = b.lent.iter().find(|(s, l)| (*s..s + l).contains(&addr)) {
        return Err(Misuse::Lent {
            len,
            offset: addr - start,
        });
    }
    Ok(None)
}

/// What `p` is to the page heap, without changing anything: a live block's size, None for a
/// block of another allocator, or the misuse that freeing it would be.
pub fn owner(p: *const u8) -> Result<Option<usize>, Misuse> {
    match book().as_ref() {
        Some(b) => judge(b, p as usize).map(|o| o.map(|block| block.size)),
        None => Ok(None),
    }
}

/// Frees `p` if it is a live block: its pages become inaccessible and join the quarantine.
pub fn free(p: *mut u8) -> Freed {
    let mut guard = book();
    let Some(b) = guard.as_mut() else {
        return Freed::Foreign;
    };
    let block = match judge(b, p as usize) {
        Ok(Some(found)) => found,
        Ok(None) => return Freed::Foreign,
        Err(m) => return Freed::Invalid(m),
    };
    platform::retire(block.base, block.len);
    b.live.remove(&block.ptr);
    b.live_bytes -= block.size;
    let mut unmapped = 0;
    let spare = &mut b.spare;
    b.quarantine.push(block, block.len, |old, len| {
        unmapped += retire_spare(spare, old, len)
    });
    b.mapped -= unmapped;
    Freed::Block(block.size)
}

/// The caller lends `len` bytes at `p` to the library for one call: freeing them is a defect.
pub fn lend(p: *const u8, len: usize) {
    if enabled() && len > 0 {
        if let Some(b) = book().as_mut() {
            b.lent.push((p as usize, len));
        }
    }
}

/// A buffer lent for as long as the value lives.
pub struct Loan(usize);

impl Loan {
    pub fn new(p: *const u8, len: usize) -> Loan {
        lend(p, len);
        Loan(p as usize)
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        take_back(self.0 as *const u8);
    }
}

pub fn take_back(p: *const u8) {
    if enabled() {
        if let Some(b) = book().as_mut() {
            b.lent.retain(|&(s, _)| s != p as usize);
        }
    }
}

/// The page heap's share of the process: the library's live bytes and blocks, and every
/// byte mapped for blocks, guards and quarantine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub live_bytes: usize,
    pub live_blocks: usize,
    pub mapped: usize,
}

pub fn usage() -> Usage {
    match book().as_ref() {
        Some(b) => Usage {
            live_bytes: b.live_bytes,
            live_blocks: b.live.len(),
            mapped: b.mapped,
        },
        None => Usage::default(),
    }
}

/// What a faulting address is to the page heap, for the fault handler. It must not wait for
/// a lock another thread may hold forever, so it tries a bounded number of times.
pub fn touch(addr: usize) -> Option<Touch> {
    for _ in 0..10_000 {
        match BOOK.try_lock() {
            Ok(guard) => {
                let (block, freed) = guard.as_ref()?.containing(addr)?;
                return Some(if freed {
                    Touch::Freed {
                        size: block.size,
                        offset: addr.wrapping_sub(block.ptr),
                    }
                } else {
                    Touch::PastEnd {
                        size: block.size,
                        beyond: addr.saturating_sub(block.ptr + block.size),
                    }
                });
            }
            Err(std::sync::TryLockError::Poisoned(_)) => return None,
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(base: usize, size: usize) -> Block {
        Block {
            base,
            len: 0x2000,
            ptr: base + 0x1000 - size,
            size,
        }
    }

    /// A book with one live block at 0x10000 and one freed at 0x20000; no pages behind them.
    fn book_of_two() -> Book {
        let mut b = Book {
            live: HashMap::new(),
            quarantine: Quarantine::new(1 << 20, 0x2000),
            lent: vec![(0x90000, 4096)],
            spare: Vec::new(),
            live_bytes: 48,
            mapped: 0x4000,
        };
        let live = block(0x10000, 48);
        b.live.insert(live.ptr, live);
        b.quarantine.push(block(0x20000, 64), 0x2000, |_, _| {});
        b
    }

    /// A mapping that leaves the quarantine is kept for the next block of its length while
    /// there is room, and given back to the system once there is none.
    #[test]
    fn a_mapping_leaving_the_quarantine_is_kept_while_there_is_room() {
        let mut spare = Vec::with_capacity(SPARE_ROOM);
        for i in 0..SPARE_ROOM {
            // Never touched: a spare is only reopened by alloc.
            let kept = retire_spare(&mut spare, block(0x100_0000 + i * 0x2000, 8), 0x2000);
            assert_eq!(kept, 0);
        }
        assert_eq!(spare.len(), SPARE_ROOM);
        let page = platform::page();
        let base = platform::map(2 * page).expect("pages");
        let real = Block {
            base,
            len: 2 * page,
            ptr: base,
            size: 1,
        };
        assert_eq!(retire_spare(&mut spare, real, 2 * page), 2 * page);
        assert_eq!(spare.len(), SPARE_ROOM);
    }

    #[test]
    fn a_live_block_is_freed_and_a_stranger_is_left_to_its_allocator() {
        let b = book_of_two();
        assert_eq!(judge(&b, 0x10000 + 0x1000 - 48).unwrap().unwrap().size, 48);
        assert!(judge(&b, 0x50000).unwrap().is_none());
    }

    #[test]
    fn a_second_free_a_pointer_inside_and_the_callers_buffer_are_misuse() {
        let b = book_of_two();
        assert_eq!(
            judge(&b, 0x20000 + 0x1000 - 64).unwrap_err(),
            Misuse::Twice { size: 64 }
        );
        assert_eq!(
            judge(&b, 0x10000 + 0x1000 - 40).unwrap_err(),
            Misuse::Inside {
                size: 48,
                offset: 8
            }
        );
        assert_eq!(
            judge(&b, 0x90010).unwrap_err(),
            Misuse::Lent {
                len: 4096,
                offset: 16
            }
        );
        assert!(Misuse::Twice { size: 64 }
            .to_string()
            .contains("double free"));
        assert!(Misuse::Lent { len: 1, offset: 0 }
            .to_string()
            .contains("the caller's memory"));
    }

    #[test]
    fn a_fault_names_the_freed_block_or_the_guard_past_a_live_one() {
        let b = book_of_two();
        assert_eq!(
            b.containing(0x20000 + 0x1000 - 60).map(|(_, f)| f),
            Some(true)
        );
        let (live, freed) = b.containing(0x10000 + 0x1000 + 3).unwrap();
        assert!(!freed);
        assert_eq!(live.size, 48);
        assert!(b.containing(0x30000).is_none());
    }
}
