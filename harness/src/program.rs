//! Call programs: what a worker executes, as data. The supervisor builds programs, the worker
//! runs them against the library and sends back raw observations, and only the supervisor
//! decides what they mean. A library that corrupts its worker can garble the observations, but
//! it cannot make a check pass by itself.

use serde::{Deserialize, Serialize};

pub use crate::observation::{FaultObs, Observation, Tally};
pub use crate::store::SLOTS;

pub use crate::args::{Garbage, HandleArg, Text};
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

pub use crate::probe::{Probe, ThreadClock};

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
