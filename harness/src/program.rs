//! Call programs: what a worker executes, as data. The supervisor builds programs, the worker
//! runs them against the library and sends back raw observations, and only the supervisor
//! decides what they mean. A library that corrupts its worker can garble the observations, but
//! it cannot make a check pass by itself.

use serde::{Deserialize, Serialize};

/// Number of handle slots and buffer slots in a program.
pub const SLOTS: usize = 32;

/// A handle argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleArg {
    Null,
    /// The value a Prepare wrote to a slot (live, or stale once ended).
    Slot(u8),
    Garbage(Garbage),
}

/// Values never returned by Prepare (design §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Garbage {
    Small(u64),
    AllOnes,
    /// A page the worker mapped and unmapped again.
    Unmapped,
    KernelHalf,
    NonCanonical,
    /// A live handle (in the slot) plus one: misaligned.
    LivePlusOne(u8),
    /// Pointers to worker-owned readable memory: checked afterwards for writes.
    Zeroed,
    OnesFilled,
    Random(u64),
    /// A copy of the bytes at a live handle's address, when that address is readable.
    CopyOfLive(u8),
}

impl Garbage {
    pub fn label(&self) -> String {
        match self {
            Garbage::Small(n) => format!("small integer 0x{n:X}"),
            Garbage::AllOnes => "all-ones (INVALID_HANDLE_VALUE)".into(),
            Garbage::Unmapped => "unmapped page".into(),
            Garbage::KernelHalf => "kernel-half address".into(),
            Garbage::NonCanonical => "non-canonical address".into(),
            Garbage::LivePlusOne(_) => "live handle + 1".into(),
            Garbage::Zeroed => "pointer to zeroed memory".into(),
            Garbage::OnesFilled => "pointer to 0xFF-filled memory".into(),
            Garbage::Random(_) => "pointer to random bytes".into(),
            Garbage::CopyOfLive(_) => "pointer to a copy of a live handle's bytes".into(),
        }
    }
}

/// A string argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Text {
    Null,
    Lit(String),
    /// Entry `index` of the name list in a buffer slot, without its BFT character.
    Entry {
        buf: u8,
        index: u16,
    },
}

pub use crate::calls::{
    Call, Close, End, EndConcurrent, Free, ListKind, Names, OpenFile, Prepare, Read, ReadToEnd,
    RestoreEnd, RestorePrepare, SetAuth, Truncate,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The calls of the API, each described whole in its family's module (`crate::calls`).
    Prepare(Prepare),
    End(End),
    EndConcurrent(EndConcurrent),
    Free(Free),
    Names(Names),
    OpenFile(OpenFile),
    Read(Read),
    ReadToEnd(ReadToEnd),
    Close(Close),
    Truncate(Truncate),
    RestorePrepare(RestorePrepare),
    RestoreEnd(RestoreEnd),
    SetAuth(SetAuth),
    /// Copies a buffer's bytes into the observation (to compare before and after End).
    Peek {
        buf: u8,
    },
    Probe,
    /// Opens `n` harness-owned handles that a double close inside the library could hit.
    HoldSentinels {
        n: u8,
    },
    /// Observes whether every sentinel is still open.
    CheckSentinels,
    /// Runs `body` `n` times, reading the probe before the first cycle and after every
    /// `probe_every` cycles. Only the samples and a tally of return codes are kept, in storage
    /// reserved up front: the harness retains nothing per cycle, so growth is the library's.
    /// With `settle_last`, the last reading waits patiently, towards the first one, for threads
    /// still on their way out, so that what comes back by the end is never read as a leak.
    /// With `stop_flat` k > 0 it stops early, after the k-th window in which no reading grew,
    /// provided every body op has answered with one code only: past that point no rule that
    /// needs growth in all but k - 1 windows can be met, and nothing new has been seen.
    Repeat {
        n: u32,
        probe_every: u32,
        #[serde(default)]
        settle_last: bool,
        #[serde(default)]
        stop_flat: u32,
        body: Vec<Op>,
    },
    /// Ends every session a successful Prepare opened that no End has closed yet, and frees
    /// every buffer still held: a program leaves nothing behind on a correct library.
    Cleanup,
    /// Runs `body` with the `at`-th resource call the library makes failed (0: none fails,
    /// the calls are counted). The body stops after a Prepare that fails and after the call
    /// the fault hit when that call fails; then every session still open is ended and every
    /// buffer freed, as a caller that gives up would, with the fault still armed. Observes
    /// each call (`steps`, the clean-up last) and the fault with the resources around it:
    /// before, once threads settle towards the program's first Probe; after, towards before.
    Faulted {
        at: u64,
        body: Vec<Op>,
    },
    /// Runs `op` on a thread of its own, started for it and joined: a caller with a thread
    /// pool ends and frees on threads other than the one that called Prepare.
    OnThread {
        op: Box<Op>,
    },
}

impl Op {
    /// The call of the API this op makes, when it makes one: the only match that lists them.
    pub fn call(&self) -> Option<&dyn Call> {
        Some(match self {
            Op::Prepare(c) => c,
            Op::End(c) => c,
            Op::EndConcurrent(c) => c,
            Op::Free(c) => c,
            Op::Names(c) => c,
            Op::OpenFile(c) => c,
            Op::Read(c) => c,
            Op::ReadToEnd(c) => c,
            Op::Close(c) => c,
            Op::Truncate(c) => c,
            Op::RestorePrepare(c) => c,
            Op::RestoreEnd(c) => c,
            Op::SetAuth(c) => c,
            Op::Peek { .. }
            | Op::Probe
            | Op::HoldSentinels { .. }
            | Op::CheckSentinels
            | Op::Repeat { .. }
            | Op::Cleanup
            | Op::Faulted { .. }
            | Op::OnThread { .. } => return None,
        })
    }

    /// The export an op calls, when it calls one.
    pub fn export(&self) -> Option<&'static str> {
        self.call().map(|c| c.export())
    }

    /// The op as a person would write it, e.g. `DsBackupEnd(h0)`.
    pub fn describe(&self) -> String {
        if let Some(c) = self.call() {
            return c.describe();
        }
        match self {
            Op::Peek { buf } => format!("read buffer b{buf}"),
            Op::Probe => "resource probe".into(),
            Op::HoldSentinels { n } => format!("open {n} sentinel handles"),
            Op::CheckSentinels => "check the sentinel handles".into(),
            Op::Cleanup => "clean up (End live sessions, free buffers)".into(),
            Op::Faulted { at, body } => format!(
                "[{}] with {}",
                body.iter()
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join("; "),
                if *at == 0 {
                    "its resource calls counted".to_string()
                } else {
                    format!("resource call {at} failed")
                }
            ),
            Op::OnThread { op } => format!("{} on a thread of its own", op.describe()),
            Op::Repeat { n, body, .. } => format!(
                "{n} cycles of [{}]",
                body.iter()
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            // The calls were described above.
            _ => String::new(),
        }
    }
}

impl HandleArg {
    pub fn describe(&self) -> String {
        match self {
            HandleArg::Null => "NULL".into(),
            HandleArg::Slot(s) => format!("h{s}"),
            HandleArg::Garbage(g) => g.label(),
        }
    }
}

impl Text {
    pub fn describe(&self) -> String {
        match self {
            Text::Null => "NULL".into(),
            Text::Lit(s) => format!("{s:?}"),
            Text::Entry { buf, index } => format!("entry {index} of b{buf}"),
        }
    }
}

/// Resource readings taken inside the worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub handles: i64,
    pub threads: i64,
    pub heap_bytes: i64,
    pub mapped_bytes: i64,
    /// Memory the process holds in RAM (-1 where it cannot be read).
    #[serde(default)]
    pub resident_bytes: i64,
    /// Where the reading thread's time went: calls that wait on a server show as blocked.
    #[serde(default)]
    pub clock: ThreadClock,
}

/// The reading thread's time, split so that waiting on a server (blocked) is told from
/// waiting for a core on a busy machine (queued): only the first says calls are slow by nature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadClock {
    /// Monotonic time of the reading.
    pub at_ns: i64,
    /// Time the thread has run.
    pub cpu_ns: i64,
    /// Time it was ready to run but had no core (0 where the platform does not say).
    pub queued_ns: i64,
}

impl ThreadClock {
    /// Time between two readings that the thread neither ran nor waited for a core.
    pub fn blocked_since(&self, earlier: &ThreadClock) -> i64 {
        let wall = self.at_ns - earlier.at_ns;
        let busy = (self.cpu_ns - earlier.cpu_ns) + (self.queued_ns - earlier.queued_ns);
        (wall - busy).max(0)
    }
}

/// What one op observed. Fields an op does not produce stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// The export is missing or the argument could not be made: nothing was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// `*phbc` after a Prepare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The handle value the call was given: calls are judged by value, since a library may
    /// hand the same value out again once it is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<u64>,
    /// A garbage value that was a live handle at call time, and what was passed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted: Option<String>,
    /// A size written by the call (token, list, file) or bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A pointer the call wrote (token, list) was non-NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
    /// Worker-owned memory given as a handle was not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Number of calls made by a looping op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// The largest count one call of a looping read wrote to `*pcbRead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest: Option<u64>,
    /// Probe readings of a Repeat, in cycle order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Probe>,
    /// How often each body op of a Repeat returned each code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tally: Vec<Tally>,
    /// The calls of a Faulted body, in order, and its clean-up last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Observation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultObs>,
    /// The call failed while the process had no descriptor left to open (EMFILE): the
    /// library holds every one it may have.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_descriptors: bool,
}

/// What a Faulted op saw: the sweep (sites counted, the call failed and in which step; the
/// clean-up is step `body.len()`), and the resources before the body and after its clean-up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultObs {
    pub sweep: crate::imports::Sweep,
    pub before: Probe,
    pub after: Probe,
    /// The library's live heap blocks and bytes (routed allocations) before and after.
    pub held_before: crate::imports::Held,
    pub held_after: crate::imports::Held,
}

/// `count` calls of body op `op` returned `rc` (`not_run` when it could not be called).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub op: u16,
    pub rc: Option<i32>,
    pub count: u32,
}

/// A program with a label that says what it tests, for details and repros.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub label: String,
    pub ops: Vec<Op>,
    /// Readings wait longer for threads the library lets exit on their own: set when a
    /// failure is confirmed, so that a loaded machine never makes a slow exit a leak.
    #[serde(default)]
    pub patient: bool,
}

/// Where an op sits in the program that `Program::push` added it to: the side that judges
/// reads the op's observation through it, so a step that was never planned cannot be asked
/// for. A step left out because an export it needs is absent (`push_opt` with None) reads
/// as "not run".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step(Option<u16>);

impl Step {
    /// The op's index in its program; None when it was left out.
    pub fn index(self) -> Option<usize> {
        self.0.map(usize::from)
    }

    /// The op is in the program.
    pub fn present(self) -> bool {
        self.0.is_some()
    }
}

impl Program {
    pub fn new(label: impl Into<String>, ops: Vec<Op>) -> Program {
        Program {
            label: label.into(),
            ops,
            patient: false,
        }
    }

    /// The same program, with readings that wait patiently (see `patient`).
    pub fn patiently(&self) -> Program {
        Program {
            patient: true,
            ..self.clone()
        }
    }

    /// Adds an op; its observation is read back through the step returned.
    pub fn push(&mut self, op: Op) -> Step {
        let at = u16::try_from(self.ops.len()).expect("a program has fewer than 65,536 ops");
        self.ops.push(op);
        Step(Some(at))
    }

    /// Adds an op when the export it needs exists.
    pub fn push_opt(&mut self, op: Option<Op>) -> Step {
        match op {
            Some(op) => self.push(op),
            None => Step(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_where_its_op_went_and_a_left_out_one_is_nowhere() {
        let mut p = Program::new("t", vec![Op::Probe]);
        let a = p.push(Op::Cleanup);
        let gone = p.push_opt(None);
        let b = p.push_opt(Some(Op::Probe));
        assert_eq!((a.index(), b.index()), (Some(1), Some(2)));
        assert!(!gone.present() && gone.index().is_none());
        assert_eq!(p.ops.len(), 3);
    }
}
