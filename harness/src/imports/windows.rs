//! PE: not routed yet. The heap check (heapcheck/windows.rs) patches the IAT for frees on
//! its own; counting and faults on Windows come with the checks that need them.
use super::RouteError;
use std::ffi::c_void;

/// What was routed in one library (nothing yet on Windows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub path: String,
    pub names: Vec<&'static str>,
    pub unreadable: Option<String>,
}

/// The functions routed on this platform: none yet.
pub const ROUTABLE: &[&str] = &[];

/// Routes nothing on Windows yet; says so with an empty list.
///
/// # Safety
///
/// `any_export` is an address inside a loaded library that stays loaded for the life of the
/// process: its import table is written, and its calls come back through the wrappers.
pub unsafe fn route(_any_export: *const c_void) -> Result<Routed, RouteError> {
    Ok(Routed::default())
}

/// No call is counted on Windows yet.
pub fn calls(_name: &str) -> u64 {
    0
}

/// Arms a fault; with nothing routed, no call reaches it and the sweep counts no site.
pub fn arm(at: u64) {
    super::fault::arm(at);
}
