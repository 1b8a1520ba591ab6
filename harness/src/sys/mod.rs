//! Platform memory and handle helpers used by the interpreter.
mod page;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(unix)]
pub use unix::{copy_if_readable, unmapped_page, Sentinel, KERNEL_HALF, NON_CANONICAL};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;
#[cfg(windows)]
pub use windows::{copy_if_readable, unmapped_page, Sentinel, KERNEL_HALF, NON_CANONICAL};

pub use page::SharedPage;
