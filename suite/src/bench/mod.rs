//! `ntdsbcli-conform bench`: the cost of isolation, and runs against the stand-in DC at several
//! latencies, and what `diff` costs beside `run`, measured side by side in one run.
mod diffcost;
mod latency;
mod measure;
mod options;
mod stats;
#[cfg(unix)]
mod unix;

pub use latency::DcServer;
pub use measure::run;
pub use options::{BenchOptions, DcBench};
