//! Platform memory and handle helpers: unmapped pages, readable-memory tests, sentinel handles,
//! the shared page, and how the process says out of memory or ends on a heap misuse.
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

/// The smallest page of the platforms the harness runs on (x86-64 Linux and Windows): the
/// unit in which memory becomes readable or not.
pub const PAGE: usize = 4096;
pub use platform::{
    copy_if_readable, descriptors_exhausted, heap_misuse_exit, no_memory, unmapped_page, Sentinel,
    KERNEL_HALF, NON_CANONICAL,
};
