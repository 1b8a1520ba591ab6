//! The worker's pulse: which program and op it is in, and how many calls it has started,
//! written to a shared page without a system call. The supervisor reads it to tell a slow
//! library from a hung one, and to name the step that was running when a worker died.

use crate::sys::SharedPage;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub struct Pulse {
    page: SharedPage,
    _file: File,
}

/// Where a worker was: program index, op index within it, and the step within that op when
/// the op runs a body of its own (Faulted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub calls: u64,
    pub program: u32,
    pub op: u32,
    pub step: Option<u32>,
}

/// Where in a program a worker was: the op, and the step of that op's own body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub op: Option<usize>,
    pub step: Option<usize>,
}

impl Position {
    /// The place, when the pulse shows program `program`; otherwise nothing is known.
    pub fn place(&self, program: usize) -> Place {
        if self.program as usize != program {
            return Place::default();
        }
        Place {
            op: Some(self.op as usize),
            step: self.step.map(|s| s as usize),
        }
    }
}

impl Pulse {
    pub fn create(path: &Path) -> std::io::Result<Pulse> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(SharedPage::SIZE as u64)?;
        Ok(Pulse {
            page: SharedPage::map(&file)?,
            _file: file,
        })
    }

    pub fn open(path: &Path) -> std::io::Result<Pulse> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Pulse {
            page: SharedPage::map(&file)?,
            _file: file,
        })
    }

    /// The atomic at byte `offset` of the page: each field has its own, aligned for its size.
    fn field<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + std::mem::size_of::<T>() <= 4096);
        debug_assert_eq!(offset % std::mem::align_of::<T>(), 0);
        // SAFETY: the page is 4096 bytes, page-aligned, mapped for as long as `self` lives, and
        // only used through these atomics, each at an offset of its own aligned for its type.
        unsafe { &*(self.page.as_ptr().add(offset) as *const T) }
    }

    fn calls(&self) -> &AtomicU64 {
        self.field(0)
    }
    fn program(&self) -> &AtomicU32 {
        self.field(8)
    }
    fn op(&self) -> &AtomicU32 {
        self.field(12)
    }

    fn released(&self) -> &AtomicU32 {
        self.field(16)
    }
    /// 0: no step; else the step plus one.
    fn step_slot(&self) -> &AtomicU32 {
        self.field(20)
    }

    /// Set by the worker's page heap when it named a fault (`pageheap::named`).
    pub fn page_heap_flag(&self) -> &AtomicU32 {
        self.field(24)
    }

    /// The worker's page heap named a fault before it died.
    pub fn page_heap_named(&self) -> bool {
        self.page_heap_flag().load(Ordering::Acquire) != 0
    }

    /// The supervisor has put the worker in its process tree (group or job).
    pub fn release(&self) {
        self.released().store(1, Ordering::Release);
    }

    /// Waits until `release`, at most `limit`.
    pub fn wait_released(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.released().load(Ordering::Acquire) == 0 {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        true
    }

    pub fn enter(&self, program: u32, op: u32) {
        self.program().store(program, Ordering::Relaxed);
        self.op().store(op, Ordering::Relaxed);
        self.step_slot().store(0, Ordering::Relaxed);
        self.calls().fetch_add(1, Ordering::Release);
    }

    /// The op moves on to step `step` of its body: one more call.
    pub fn step(&self, step: u32) {
        self.step_slot().store(step + 1, Ordering::Relaxed);
        self.calls().fetch_add(1, Ordering::Release);
    }

    /// One more call inside a looping op.
    pub fn tick(&self) {
        self.calls().fetch_add(1, Ordering::Release);
    }

    pub fn read(&self) -> Position {
        Position {
            calls: self.calls().load(Ordering::Acquire),
            program: self.program().load(Ordering::Relaxed),
            op: self.op().load(Ordering::Relaxed),
            step: self.step_slot().load(Ordering::Relaxed).checked_sub(1),
        }
    }
}
