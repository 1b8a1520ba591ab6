//! Resource readings taken inside the worker: OS handles, threads, heap bytes, mapped bytes.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{read, threads, worker_env};
