//! Routing the library's own imports through harness wrappers: the library's calls to the C
//! runtime and the OS are counted here, and later failed or watched, without touching the
//! harness's own imports or any other library's. A library that links these statically or
//! makes raw system calls gets nothing routed, and says so.
pub mod fault;
mod paged;
mod table;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
pub use fault::{disarm, held, Held, Hit, Sweep};
#[cfg(windows)]
pub use platform::module_of;
pub use platform::{route, ROUTABLE};
pub use table::{arm, routed_calls, Routed};
#[cfg(windows)]
use windows as platform;

/// Why the imports of a library could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no loaded library holds the address {0:#x}")]
    NoModule(usize),
    #[error("cannot route {name} in {path}: {message}")]
    Replace {
        name: &'static str,
        path: String,
        message: String,
    },
}
