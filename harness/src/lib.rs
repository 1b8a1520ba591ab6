//! Engine of ntdsbcli-conform. It knows the Ntdsbcli ABI, runs call programs inside isolated
//! worker processes, measures resources there, and writes reports. It knows nothing about
//! individual checks: those are programs and evaluations supplied by the suite.

pub mod abi;
pub mod args;
pub mod calls;
pub mod codes;
pub mod error;
pub mod fileinfo;
pub mod heapcheck;
pub mod imports;
pub mod interp;
pub mod not_run;
pub mod observation;
pub mod pageheap;
pub mod preflight;
pub mod probe;
pub mod program;
pub mod pulse;
pub mod report;
pub mod store;
pub mod sys;
pub mod worker;

pub use error::HarnessError;
