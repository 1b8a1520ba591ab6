//! Why the interpreter did not make a call: the observation's `not_run`, as a type, so that
//! the families and the interpreter name each reason once.

/// A call that was not made, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRun {
    #[error("{0} is not exported")]
    NotExported(String),
    #[error("the name list has no entry {0}")]
    NoEntry(u16),
    #[error("a name with a NUL inside")]
    NulInName,
    #[error("the live handle's address is not readable memory")]
    UnreadableHandle,
    /// The garbage class's value (as its label names it) is a live handle, and so is every
    /// other value of the class tried.
    #[error("skipped: {0} is a live handle of this library and the class has no other value")]
    NoFreeValue(String),
    #[error("read size {0} is larger than the harness allows")]
    ReadTooLarge(u32),
}
