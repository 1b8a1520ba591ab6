//! Messages between supervisor and worker: one JSON object per line, on pipes that the
//! library cannot reach (the worker moves them off fds 0 and 1 before loading it).

use crate::program::{Observation, Program};
use serde::{Deserialize, Serialize};

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
