//! What a probe reads: the process's resources and the reading thread's clock.

use serde::{Deserialize, Serialize};

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
