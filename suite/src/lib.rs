//! The conformance content: the check catalogue, the checks' programs and judgements, and the
//! run that ties them to the harness. The `ntdsbcli-conform` binary is a thin CLI over this.

pub mod baseline;
pub mod bench;
pub mod catalogue;
pub mod checks;
pub mod defaults;
pub mod diff;
pub mod fault;
#[cfg(test)]
mod layering;
pub mod merge;
pub mod model;
pub mod pace;
pub mod runner;
pub mod spec;
pub mod summary;

pub use ntdsbcli_harness as harness;
pub use ntdsbcli_reference::{symbol as reference_symbol, MUTANTS};
