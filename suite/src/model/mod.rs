//! seq.model: random call sequences over the whole backup surface, checked against a
//! reference model, shrunk to a minimal sequence and turned into a standalone C repro.
pub mod layout;
pub mod machine;
pub mod oracle;
mod pageheap_c;
pub mod phase;
pub mod repro;
pub mod verdict;
pub(crate) use pageheap_c::lib_range_c;
