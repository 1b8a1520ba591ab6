//! Resource readings taken inside the worker: OS handles, threads, heap bytes, mapped bytes.
mod reading;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{read, threads, worker_env};
#[cfg(windows)]
mod windows;
pub use reading::{Probe, ThreadClock};
#[cfg(windows)]
pub use windows::{read, threads, worker_env};
