//! `ntdsbcli-conform bench`: the cost of isolation, measured side by side in one run.
mod measure;
#[cfg(unix)]
mod unix;

pub use measure::{run, BenchOptions};
