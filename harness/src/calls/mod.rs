//! The API, one module per export family: each holds its exports' C signatures (with which a
//! call asks `abi::Api` for its export by name), the arguments of its calls, how each is
//! described in a detail, made in the worker and written in the C repros. `call.rs` says what a
//! call provides.

pub mod auth;
pub mod c;
pub mod call;
pub mod end;
pub mod file;
pub mod free;
pub mod names;
pub mod prepare;
pub mod restore;

pub use auth::SetAuth;
pub use call::{CStep, Call};
pub(crate) use end::end_value;
pub use end::{End, EndConcurrent, RestoreEnd};
pub use file::{Close, OpenFile, Read, ReadToEnd, Truncate};
pub(crate) use free::free_value;
pub use free::Free;
pub use names::{ListKind, Names};
pub use prepare::Prepare;
pub use restore::RestorePrepare;

/// The repro's C types of every family, in one block.
pub const C_TYPES: [&str; 6] = [
    prepare::C_TYPES,
    end::C_TYPES,
    free::C_TYPES,
    names::C_TYPES,
    file::C_TYPES,
    restore::C_TYPES,
];
