//! Every default of a run, defined once: the CLI's flags and `RunOptions::new` both read them.

/// Random call sequences for seq.model (`--sequences`).
pub const SEQUENCES: u64 = 10_000;
/// How long a call may make no progress before it counts as hung (`--call-timeout-ms`).
pub const CALL_TIMEOUT_MS: u64 = 3000;
/// How long loading the library may take.
pub const LOAD_TIMEOUT_MS: u64 = 10_000;
/// When seq.model stops generating new sequences (`--sequence-budget-ms`).
pub const SEQUENCE_BUDGET_MS: u64 = 20_000;
/// Time allowed for shrinking a failing sequence (`--shrink-budget-ms`).
pub const SHRINK_BUDGET_MS: u64 = 10_000;
/// Measured cycles per session path in end.release (`--release-cycles`).
pub const RELEASE_CYCLES: u32 = 200;
/// Resource calls failed per path in fault.cleanup (`--fault-sites`).
pub const FAULT_SITES: u64 = 200;
/// The fault.cleanup sweep's time budget (`--fault-budget-ms`).
pub const FAULT_BUDGET_MS: u64 = 20_000;
/// The server name passed to Prepare (`--server`).
pub const SERVER: &str = "\\\\localhost";
/// Longest generated sequence, in calls.
pub const SEQUENCE_CALLS: usize = 24;
/// Sequences sent to a worker in one message.
pub const SEQUENCE_BATCH: usize = 256;

/// Workers running sequences at once (`--jobs`): one per core.
pub fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The most resident memory a worker may hold, in MiB: a library past it is ended and the
/// check that ran it says so (`--worker-memory-mb`, 0 for no limit).
pub const WORKER_MEMORY_MB: u64 = 1024;
