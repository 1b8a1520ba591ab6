//! The page heap: every block the library allocates through its routed imports gets pages of
//! its own, ending at an inaccessible guard page; a freed block's pages become inaccessible and
//! wait in a bounded quarantine. A use after free or an overrun faults at the instruction, a
//! double or foreign free is caught at the call, and the library's heap use is exact.
mod heap;
mod layout;
mod line;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

pub use heap::{
    alloc, enable, enabled, free, lend, owner, take_back, touch, usage, Freed, Loan, Misuse, Usage,
};
pub use layout::MIN_ALIGN;
pub use line::{named, tell_through, Touch};

/// The quarantine's default size: freed pages kept inaccessible before reuse.
pub const DEFAULT_QUARANTINE: usize = 64 << 20;
