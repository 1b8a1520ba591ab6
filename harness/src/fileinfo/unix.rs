//! Unix: a shared object has no version resource.

use crate::report::VersionResource;

/// Shared objects carry no version resource.
pub fn version_resource(_path: &std::path::Path) -> Option<VersionResource> {
    None
}
