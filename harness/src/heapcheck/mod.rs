//! Heap checking in the worker: a double free or a free of a foreign pointer ends the process
//! at the faulty call on every platform, as it does on current Windows.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::install;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::install;
