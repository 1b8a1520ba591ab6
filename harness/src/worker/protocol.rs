//! Messages between supervisor and worker: one JSON object per line, on pipes that the
//! library cannot reach (the worker moves them off fds 0 and 1 before loading it).

use crate::program::{Observation, Program};
use serde::{Deserialize, Serialize};

/// First argument that turns the verifier binary into a worker.
pub const WORKER_ARG: &str = "__worker";
pub(crate) const ENV_LIB: &str = "NTDSBCLI_WORKER_LIB";
pub(crate) const ENV_PULSE: &str = "NTDSBCLI_WORKER_PULSE";
pub(crate) const ENV_PAGE_HEAP: &str = "NTDSBCLI_WORKER_PAGE_HEAP";

/// The worker's exit code when its protocol pipe failed under it, and the start of the line it
/// writes to stderr then.
pub const PIPE_LOST_EXIT: i32 = 124;
pub const PIPE_LOST_LINE: &str = "ntdsbcli-conform worker: its protocol pipe failed:";

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Run {
        programs: Vec<(u32, Program)>,
    },
    /// Unload the library, say so, and exit the process normally.
    Teardown,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Ready {
        exports: Vec<String>,
        /// The library's imports that go through the harness's wrappers (crate::imports).
        #[serde(default)]
        routed: Vec<String>,
        /// The library's allocations go to the page heap (crate::pageheap).
        #[serde(default)]
        page_heap: bool,
    },
    LoadError {
        message: String,
    },
    Done {
        program: u32,
        obs: Vec<Observation>,
    },
    Idle,
    /// The library was unloaded; the worker exits normally next.
    Unloaded,
}
