//! What a library file says about itself, read without loading it: on Windows, its version
//! resource (VERSIONINFO), recorded in the report's identity.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::version_resource;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::version_resource;
