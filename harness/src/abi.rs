//! The Ntdsbcli ABI profile (design §3): the handle and result types, the real DLL's exports,
//! and the table of those a library has, loaded and asked for by name. Each export's
//! signature, in the system calling convention with the Windows type widths on every platform,
//! lives with its family in `crate::calls`.

use std::ffi::c_void;

pub type Hbc = *mut c_void;
pub type HResult = i32;

/// The required exports (design §3), as the words a message names when they are missing.
pub fn missing_required(exports: &[String]) -> Vec<&'static str> {
    let has = |n: &str| exports.iter().any(|e| e == n);
    let mut missing = Vec::new();
    if !has("DsBackupPrepareA") && !has("DsBackupPrepareW") {
        missing.push("DsBackupPrepareA or DsBackupPrepareW");
    }
    for n in ["DsBackupEnd", "DsBackupFree"] {
        if !has(n) {
            missing.push(n);
        }
    }
    missing
}

/// Every export of the real x64 DLL (docs/spec.md §1), in name order. Each is described with
/// its family in `crate::calls`.
pub const EXPORTS: [&str; 28] = [
    "DsBackupClose",
    "DsBackupEnd",
    "DsBackupFree",
    "DsBackupGetBackupLogsA",
    "DsBackupGetBackupLogsW",
    "DsBackupGetDatabaseNamesA",
    "DsBackupGetDatabaseNamesW",
    "DsBackupOpenFileA",
    "DsBackupOpenFileW",
    "DsBackupPrepareA",
    "DsBackupPrepareW",
    "DsBackupRead",
    "DsBackupTruncateLogs",
    "DsIsNTDSOnlineA",
    "DsIsNTDSOnlineW",
    "DsRestoreCheckExpiryToken",
    "DsRestoreEnd",
    "DsRestoreGetDatabaseLocationsA",
    "DsRestoreGetDatabaseLocationsW",
    "DsRestorePrepareA",
    "DsRestorePrepareW",
    "DsRestoreRegisterA",
    "DsRestoreRegisterComplete",
    "DsRestoreRegisterW",
    "DsSetAuthIdentityA",
    "DsSetAuthIdentityW",
    "DsSetCurrentBackupLogA",
    "DsSetCurrentBackupLogW",
];

/// The resolved exports, by name: a call asks for its export with the signature its family
/// declares.
#[derive(Default)]
pub struct Api {
    /// The exports found, in `EXPORTS` order.
    exports: Vec<String>,
    /// Each export's address by its place in `EXPORTS`, 0 when missing: a fixed array, so
    /// that loading allocates no more than the names (the worker's heap layout is part of what
    /// a heap-corrupting library's crash looks like).
    addresses: [usize; EXPORTS.len()],
}

impl Api {
    /// Fills the table from a symbol lookup (a loaded library, or the embedded reference).
    ///
    /// # Safety
    /// Every address `lookup` returns must be a function with the signature of that export.
    pub unsafe fn from_lookup(mut lookup: impl FnMut(&str) -> Option<*const c_void>) -> Api {
        let mut api = Api::default();
        for (i, name) in EXPORTS.iter().enumerate() {
            if let Some(p) = lookup(name).filter(|p| !p.is_null()) {
                api.exports.push(name.to_string());
                api.addresses[i] = p as usize;
            }
        }
        api
    }

    /// The export `name` as a function of type `F`, when the library has it.
    ///
    /// # Safety
    /// `F` must be the signature of export `name` (its family's type for it).
    pub unsafe fn get<F: Copy>(&self, name: &str) -> Option<F> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
        let a = self.address(name)?;
        // SAFETY: `F` is a function pointer of the export's signature (the caller's promise)
        // and as wide as the address, which is the export's, resolved from the library.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&a) })
    }

    /// The address of some export, to find the module that holds the library.
    pub fn any_export(&self) -> Option<*const c_void> {
        ["DsBackupFree", "DsBackupEnd"]
            .iter()
            .find_map(|n| self.address(n))
            .map(|a| a as *const c_void)
    }

    fn address(&self, name: &str) -> Option<usize> {
        let i = EXPORTS.iter().position(|e| *e == name)?;
        Some(self.addresses[i]).filter(|&a| a != 0)
    }

    /// The export names found, in `EXPORTS` order.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    pub fn has(&self, name: &str) -> bool {
        self.exports.iter().any(|e| e == name)
    }
}

/// Opens a library and fills the table. The library stays loaded as long as the caller keeps
/// it: the worker unloads it only at teardown, where a crash in its destructors is a finding.
pub fn load_library(path: &std::path::Path) -> Result<(Api, libloading::Library), LoadError> {
    let lib = open(path).map_err(|e| LoadError(error_text(&e)))?;
    // SAFETY: each export has the signature its family declares (the ABI profile).
    let api = unsafe {
        Api::from_lookup(|name| lib.get::<*const c_void>(name.as_bytes()).ok().map(|s| *s))
    };
    Ok((api, lib))
}

/// The loader refused the library: the OS's words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

#[cfg(unix)]
fn open(path: &std::path::Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: loading runs the library's initialisers; this happens only in a worker process.
    unsafe { libloading::Library::new(path) }
}

#[cfg(windows)]
fn open(path: &std::path::Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::windows::{Library, LOAD_WITH_ALTERED_SEARCH_PATH};
    // An absolute path with the altered search order: the DLL's own folder is searched for
    // the DLLs it imports, as for an application's.
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // SAFETY: as on Unix; loading happens only in a worker process.
    unsafe { Library::load_with_flags(&full, LOAD_WITH_ALTERED_SEARCH_PATH) }.map(Into::into)
}

fn error_text(e: &libloading::Error) -> String {
    // libloading wraps the OS text ("DlOpen { desc: ... }"); keep only the OS words.
    let mut s = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        s = src.to_string();
    }
    // ERROR_NOACCESS from LoadLibrary: the loader caught a fault in the library's own start-up.
    if cfg!(windows) && s.ends_with("(os error 998)") {
        s.push_str("; the library faulted in DllMain or a static constructor");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_lists_what_it_found_in_name_order() {
        let found = ["DsBackupFree", "DsBackupEnd", "DsBackupPrepareW"];
        // SAFETY: the table is only listed, never called.
        let api = unsafe {
            Api::from_lookup(|n| {
                found
                    .contains(&n)
                    .then_some(std::ptr::dangling::<u8>().cast())
            })
        };
        assert_eq!(
            api.exports(),
            ["DsBackupEnd", "DsBackupFree", "DsBackupPrepareW"]
        );
        // SAFETY: the pointers are only looked at, never called.
        let get = |n| unsafe { api.get::<unsafe extern "system" fn()>(n) }.is_some();
        assert!(get("DsBackupEnd") && get("DsBackupPrepareW") && !get("DsBackupPrepareA"));
    }
}
