//! Worker isolation: the library runs only in worker processes; the supervisor sends them
//! programs, watches their pulse, and turns a crash, an exit or a hang into a result.
mod death;
#[cfg(unix)]
mod keeper;
mod process;
mod protocol;
mod serve;
mod supervisor;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

pub use crate::pulse::{Place, Position, Pulse};
pub use death::{Death, DeathReport, RunResult};
#[cfg(unix)]
pub use keeper::{keep, KEEPER_ARG, MEMORY_EXIT, MEMORY_LINE};
pub use protocol::{Request, Response, WORKER_ARG};
pub use serve::{serve, Lookup};
pub use supervisor::{LibrarySpec, Supervisor, Teardown, WorkerSpec};
#[cfg(unix)]
pub use unix::{contain_orphans, end_orphans};
#[cfg(windows)]
pub use windows::{contain_orphans, end_orphans};
