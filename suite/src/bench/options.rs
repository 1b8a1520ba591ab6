//! What `bench` is asked to measure.

use ntdsbcli_harness::worker::LibrarySpec;
use std::path::PathBuf;

/// The library and the sequences to time, and the stand-in DC's runs.
pub struct BenchOptions {
    pub library: LibrarySpec,
    pub worker_exe: PathBuf,
    pub sequences: usize,
    /// Longest sequence, in calls.
    pub max_len: usize,
    pub seed: u64,
    pub embedded: fn(&str) -> Option<*const std::ffi::c_void>,
    /// Times each way is run, interleaved with the others.
    pub rounds: usize,
    /// The stand-in DC to time default runs against, at several latencies.
    pub dc: Option<DcBench>,
    /// A second library: time `diff` of the two beside a run of each.
    pub diff_against: Option<PathBuf>,
}

/// The stand-in domain controller's two files, and the latencies to run it at.
pub struct DcBench {
    pub server: PathBuf,
    pub client: PathBuf,
    pub latencies: Vec<u32>,
}
