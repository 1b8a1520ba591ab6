//! fault.cleanup (REQ-08, REQ-09, inferred): a backup that fails because a resource failed is
//! still an unsuccessful attempt that End must clean up after. Each session path of
//! end.release runs once with the library's routed resource calls counted; then, for every k,
//! again with the k-th call failed the way that kind of call fails. The library must neither
//! crash nor hang, End must return S_OK on every handle Prepare gave out, and when the path is
//! over nothing the library took may still be held.

mod programs;
mod repro;
mod rules;
mod sweep;

pub use sweep::{reference_library, run, skip_unrouted, Limits, NOTHING_ROUTABLE, REFERENCE_FILE};
