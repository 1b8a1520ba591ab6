//! Worker isolation: the library runs only in worker processes; the supervisor sends them
//! programs, watches their pulse, and turns a crash, an exit or a hang into a result.
mod death;
#[cfg(unix)]
mod keeper;
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
#[cfg(unix)]
pub use keeper::{keep, KEEPER_ARG, MEMORY_EXIT, MEMORY_LINE};
pub use protocol::{Request, Response};
pub use pulse::{Place, Position, Pulse};
pub use serve::{serve, Lookup, WORKER_ARG};
pub use supervisor::{LibrarySpec, Supervisor, Teardown, WorkerSpec};
#[cfg(unix)]
pub use unix::{contain_orphans, end_orphans};
#[cfg(windows)]
pub use windows::{contain_orphans, end_orphans};
