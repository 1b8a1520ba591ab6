//! Platform memory and handle helpers used by the interpreter.
mod page;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;
#[cfg(windows)]
pub(crate) use windows::{wide, C_RUNTIMES};

pub use page::SharedPage;
pub use platform::{copy_if_readable, unmapped_page, Sentinel, KERNEL_HALF, NON_CANONICAL};
