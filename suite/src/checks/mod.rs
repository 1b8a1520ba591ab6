//! The checks: each builds call programs and judges their observations.
mod answers;
mod common;
mod end;
mod prepare;
mod registry;
pub mod release;
mod session;

pub use common::{growth, spoil, BadArg, Ctx, Eval, Ran, UNKNOWN_ATTACHMENT};
pub use registry::{check_for, Check};
