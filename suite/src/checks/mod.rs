//! The checks of call programs: each is a type that plans its programs and judges their
//! observations through the steps it planned (`check.rs`); `catalogue` lists them.
pub mod answers;
mod check;
mod common;
pub mod end;
pub mod prepare;
pub mod release;
pub mod session;

pub use check::{Check, Ctx, Eval, Judge, Planned, Programs, Ran};
pub use common::{growth, spoil, BadArg, UNKNOWN_ATTACHMENT};
