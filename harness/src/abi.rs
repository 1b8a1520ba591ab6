//! The Ntdsbcli ABI profile (design §3): the 28 exports with their exact signatures, in the
//! system calling convention, with the Windows type widths on every platform.

use std::ffi::{c_char, c_void};

pub type Hbc = *mut c_void;
pub type HResult = i32;

pub type PrepareA = unsafe extern "system" fn(
    *const c_char,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> HResult;
pub type PrepareW = unsafe extern "system" fn(
    *const u16,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> HResult;
pub type HbcOnly = unsafe extern "system" fn(Hbc) -> HResult;
pub type Free = unsafe extern "system" fn(*mut c_void);
pub type OpenFileA = unsafe extern "system" fn(Hbc, *const c_char, u32, *mut i64) -> HResult;
pub type OpenFileW = unsafe extern "system" fn(Hbc, *const u16, u32, *mut i64) -> HResult;
pub type Read = unsafe extern "system" fn(Hbc, *mut c_void, u32, *mut u32) -> HResult;
/// GetDatabaseNames, GetBackupLogs and RestoreGetDatabaseLocations (A: `char**`, W: `WCHAR**`;
/// both are a pointer to a pointer, so one type serves).
pub type NameList = unsafe extern "system" fn(Hbc, *mut *mut c_void, *mut u32) -> HResult;
pub type IsOnlineA = unsafe extern "system" fn(*const c_char, *mut i32) -> HResult;
pub type IsOnlineW = unsafe extern "system" fn(*const u16, *mut i32) -> HResult;
pub type SetAuthA =
    unsafe extern "system" fn(*const c_char, *const c_char, *const c_char) -> HResult;
pub type SetAuthW = unsafe extern "system" fn(*const u16, *const u16, *const u16) -> HResult;
pub type RestorePrepareA =
    unsafe extern "system" fn(*const c_char, u32, *const c_void, u32, *mut Hbc) -> HResult;
pub type RestorePrepareW =
    unsafe extern "system" fn(*const u16, u32, *const c_void, u32, *mut Hbc) -> HResult;
/// EDB_RSTMAPA/W hold two string pointers; the table is passed as a pointer to them.
pub type RestoreRegisterA = unsafe extern "system" fn(
    Hbc,
    *const c_char,
    *const c_char,
    *const c_void,
    i32,
    *const c_char,
    u32,
    u32,
) -> HResult;
pub type RestoreRegisterW = unsafe extern "system" fn(
    Hbc,
    *const u16,
    *const u16,
    *const c_void,
    i32,
    *const u16,
    u32,
    u32,
) -> HResult;
pub type RestoreRegisterComplete = unsafe extern "system" fn(Hbc, HResult) -> HResult;
pub type SetCurrentLogA = unsafe extern "system" fn(*const c_char, u32) -> HResult;
pub type SetCurrentLogW = unsafe extern "system" fn(*const u16, u32) -> HResult;
/// Exported by the real DLL but in no document or header: resolved only to list it.
pub type Undocumented = unsafe extern "system" fn();

/// Every export of the real x64 DLL (facts.md §1.2).
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

/// The resolved function table. Every entry is optional; callers check before calling.
#[derive(Default)]
pub struct Api {
    pub backup_prepare_a: Option<PrepareA>,
    pub backup_prepare_w: Option<PrepareW>,
    pub backup_end: Option<HbcOnly>,
    pub backup_free: Option<Free>,
    pub backup_open_file_a: Option<OpenFileA>,
    pub backup_open_file_w: Option<OpenFileW>,
    pub backup_read: Option<Read>,
    pub backup_close: Option<HbcOnly>,
    pub backup_get_database_names_a: Option<NameList>,
    pub backup_get_database_names_w: Option<NameList>,
    pub backup_get_backup_logs_a: Option<NameList>,
    pub backup_get_backup_logs_w: Option<NameList>,
    pub backup_truncate_logs: Option<HbcOnly>,
    pub is_ntds_online_a: Option<IsOnlineA>,
    pub is_ntds_online_w: Option<IsOnlineW>,
    pub set_auth_identity_a: Option<SetAuthA>,
    pub set_auth_identity_w: Option<SetAuthW>,
    pub restore_prepare_a: Option<RestorePrepareA>,
    pub restore_prepare_w: Option<RestorePrepareW>,
    pub restore_end: Option<HbcOnly>,
    pub restore_register_a: Option<RestoreRegisterA>,
    pub restore_register_w: Option<RestoreRegisterW>,
    pub restore_register_complete: Option<RestoreRegisterComplete>,
    pub restore_get_database_locations_a: Option<NameList>,
    pub restore_get_database_locations_w: Option<NameList>,
    pub set_current_backup_log_a: Option<SetCurrentLogA>,
    pub set_current_backup_log_w: Option<SetCurrentLogW>,
    pub restore_check_expiry_token: Option<Undocumented>,
    exports: Vec<String>,
}

impl Api {
    /// Fills the table from a symbol lookup (a loaded library, or the embedded reference).
    ///
    /// # Safety
    /// Every address `lookup` returns must be a function with the signature of that export.
    pub unsafe fn from_lookup(mut lookup: impl FnMut(&str) -> Option<*const c_void>) -> Api {
        let mut api = Api::default();
        let mut exports = Vec::new();
        macro_rules! fill {
            ($($field:ident: $ty:ty = $name:literal,)*) => {$(
                if let Some(p) = lookup($name).filter(|p| !p.is_null()) {
                    api.$field = Some(std::mem::transmute::<*const c_void, $ty>(p));
                    exports.push($name.to_string());
                }
            )*};
        }
        fill! {
            backup_close: HbcOnly = "DsBackupClose",
            backup_end: HbcOnly = "DsBackupEnd",
            backup_free: Free = "DsBackupFree",
            backup_get_backup_logs_a: NameList = "DsBackupGetBackupLogsA",
            backup_get_backup_logs_w: NameList = "DsBackupGetBackupLogsW",
            backup_get_database_names_a: NameList = "DsBackupGetDatabaseNamesA",
            backup_get_database_names_w: NameList = "DsBackupGetDatabaseNamesW",
            backup_open_file_a: OpenFileA = "DsBackupOpenFileA",
            backup_open_file_w: OpenFileW = "DsBackupOpenFileW",
            backup_prepare_a: PrepareA = "DsBackupPrepareA",
            backup_prepare_w: PrepareW = "DsBackupPrepareW",
            backup_read: Read = "DsBackupRead",
            backup_truncate_logs: HbcOnly = "DsBackupTruncateLogs",
            is_ntds_online_a: IsOnlineA = "DsIsNTDSOnlineA",
            is_ntds_online_w: IsOnlineW = "DsIsNTDSOnlineW",
            restore_check_expiry_token: Undocumented = "DsRestoreCheckExpiryToken",
            restore_end: HbcOnly = "DsRestoreEnd",
            restore_get_database_locations_a: NameList = "DsRestoreGetDatabaseLocationsA",
            restore_get_database_locations_w: NameList = "DsRestoreGetDatabaseLocationsW",
            restore_prepare_a: RestorePrepareA = "DsRestorePrepareA",
            restore_prepare_w: RestorePrepareW = "DsRestorePrepareW",
            restore_register_a: RestoreRegisterA = "DsRestoreRegisterA",
            restore_register_complete: RestoreRegisterComplete = "DsRestoreRegisterComplete",
            restore_register_w: RestoreRegisterW = "DsRestoreRegisterW",
            set_auth_identity_a: SetAuthA = "DsSetAuthIdentityA",
            set_auth_identity_w: SetAuthW = "DsSetAuthIdentityW",
            set_current_backup_log_a: SetCurrentLogA = "DsSetCurrentBackupLogA",
            set_current_backup_log_w: SetCurrentLogW = "DsSetCurrentBackupLogW",
        }
        api.exports = exports;
        api
    }

    /// The address of some export, to find the module that holds the library.
    pub fn any_export(&self) -> Option<*const c_void> {
        self.backup_free
            .map(|f| f as *const c_void)
            .or(self.backup_end.map(|f| f as *const c_void))
    }

    /// The export names found, in `EXPORTS` order.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    pub fn has(&self, name: &str) -> bool {
        self.exports.iter().any(|e| e == name)
    }
}

/// Opens a library and fills the table. The library is never unloaded: its destructors are
/// not ours to run, and a worker lives only as long as its library.
pub fn load_library(path: &std::path::Path) -> Result<Api, String> {
    let lib = open(path).map_err(|e| error_text(&e))?;
    let api = unsafe {
        Api::from_lookup(|name| lib.get::<*const c_void>(name.as_bytes()).ok().map(|s| *s))
    };
    std::mem::forget(lib);
    Ok(api)
}

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
