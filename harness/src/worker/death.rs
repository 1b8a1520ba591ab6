//! How a worker stopped (a crash, an exit, a hang, garbled output, its memory limit), where,
//! and whether a fresh worker saw the same. Names deaths; decides no verdict.

use crate::program::Observation;
use serde::{Deserialize, Serialize};

/// How a worker stopped answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Death {
    /// Killed by a signal (Unix) or ended by an exception (Windows NTSTATUS).
    Crash { code: i64, name: String },
    /// The process exited by itself: the library called exit().
    Exit { code: i32 },
    /// No progress for the call timeout.
    Hang { timeout_ms: u64 },
    /// The worker wrote something that is not the protocol.
    Protocol { what: String },
    /// The worker went over its memory limit and was ended (its keeper says by how much).
    MemoryLimit { what: String },
}

impl Death {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Death::Hang { .. })
    }

    /// The outcome a check gets when its worker dies so: a hang is a timeout, the rest crash.
    pub fn outcome(&self) -> crate::report::Outcome {
        if self.is_timeout() {
            crate::report::Outcome::Timeout
        } else {
            crate::report::Outcome::Crash
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Death::Crash { name, .. } => format!("the worker crashed: {name}"),
            Death::Exit { code } => {
                format!("the process exited with status {code} (the library called exit)")
            }
            Death::Hang { timeout_ms } => format!("the call did not return within {timeout_ms} ms"),
            Death::Protocol { what } => {
                format!("the worker's protocol stream was corrupted: {what}")
            }
            Death::MemoryLimit { what } => {
                format!("the worker went over its memory limit and was ended: {what}")
            }
        }
    }
}

/// What the verifier's own process said when it ended `death` on purpose: the rest of its last
/// line on stderr, when it exited with `code` and that line starts with `prefix` (a library
/// that merely calls exit with the same code says no such line).
pub(crate) fn told(
    death: &Death,
    last_output: Option<&str>,
    code: i32,
    prefix: &str,
) -> Option<String> {
    match (death, last_output) {
        (Death::Exit { code: c }, Some(line)) if *c == code => line
            .strip_prefix(prefix)
            .map(|rest| rest.trim().to_string()),
        _ => None,
    }
}

/// A program whose worker died, with where and whether a fresh worker saw the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeathReport {
    pub death: Death,
    /// The op running when it died, when known.
    pub op: Option<usize>,
    /// The step of that op's own body (Faulted), when it has one.
    pub step: Option<usize>,
    /// A fresh worker running this program alone died too.
    pub confirmed: bool,
    /// The last line the worker or library wrote to stderr, e.g. the allocator's complaint.
    pub last_output: Option<String>,
    /// The page heap named the fault that ended the worker (its flag on the pulse page).
    pub page_heap: bool,
}

impl DeathReport {
    /// A death seen once (not yet confirmed in a fresh worker), where the pulse placed it.
    pub fn seen(death: Death, place: super::Place, last_output: Option<String>) -> DeathReport {
        DeathReport {
            death,
            op: place.op,
            step: place.step,
            confirmed: false,
            last_output,
            page_heap: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    Done(Vec<Observation>),
    Died(DeathReport),
}

/// Whether `child` has ended, or ends within `limit`.
pub(super) fn exited_within(child: &mut std::process::Child, limit: std::time::Duration) -> bool {
    let t0 = std::time::Instant::now();
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        if t0.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
