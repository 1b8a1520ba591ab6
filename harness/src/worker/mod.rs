//! Worker isolation: the library runs only in worker processes; the supervisor sends them
//! programs, watches their pulse, and turns a crash, an exit or a hang into a result.
mod death;
mod process;
mod protocol;
mod pulse;
mod serve;
mod supervisor;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

pub use death::{Death, DeathReport, RunResult};
pub use protocol::{Request, Response};
pub use pulse::{Place, Position, Pulse};
pub use serve::{serve, Lookup, WORKER_ARG};
pub use supervisor::{LibrarySpec, Supervisor, WorkerSpec};
