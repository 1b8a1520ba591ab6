//! Return codes named in the public documentation (docs/spec.md §2), for details people can read.

pub const S_OK: i32 = 0;
pub const S_FALSE: i32 = 1;
pub const ERROR_ACCESS_DENIED: i32 = 5;
pub const ERROR_NOT_ENOUGH_MEMORY: i32 = 8;
pub const ERROR_OUTOFMEMORY: i32 = 14;
pub const ERROR_HANDLE_EOF: i32 = 38;
pub const ERROR_INVALID_PARAMETER: i32 = 87;
pub const RPC_S_INVALID_BINDING: i32 = 1702;
pub const RPC_S_SERVER_UNAVAILABLE: i32 = 1722;
pub const E_INVALIDARG: i32 = 0x8007_0057_u32 as i32;
pub const E_OUTOFMEMORY: i32 = 0x8007_000E_u32 as i32;
pub const HR_INVALID_PARAM: i32 = 0xC7FF_0001_u32 as i32;
pub const HR_INVALID_HANDLE: i32 = 0xC7FF_0003_u32 as i32;
pub const HR_ALREADY_OPEN: i32 = 0xC7FF_0005_u32 as i32;
pub const HR_COULD_NOT_CONNECT: i32 = 0xC7FF_0007_u32 as i32;
pub const HR_BACKUP_IN_PROGRESS: i32 = 0xC800_01F9_u32 as i32;

pub const BACKUP_TYPE_FULL: u32 = 1;
pub const BACKUP_TYPE_LOGS_ONLY: u32 = 2;
pub const BACKUP_TYPE_INCREMENTAL: u32 = 4;

const NAMES: &[(i32, &str)] = &[
    (S_OK, "S_OK"),
    (S_FALSE, "S_FALSE"),
    (2, "ERROR_FILE_NOT_FOUND"),
    (ERROR_ACCESS_DENIED, "ERROR_ACCESS_DENIED"),
    (6, "ERROR_INVALID_HANDLE"),
    (ERROR_NOT_ENOUGH_MEMORY, "ERROR_NOT_ENOUGH_MEMORY"),
    (ERROR_OUTOFMEMORY, "ERROR_OUTOFMEMORY"),
    (ERROR_HANDLE_EOF, "ERROR_HANDLE_EOF"),
    (ERROR_INVALID_PARAMETER, "ERROR_INVALID_PARAMETER"),
    (1314, "ERROR_PRIVILEGE_NOT_HELD"),
    (RPC_S_INVALID_BINDING, "RPC_S_INVALID_BINDING"),
    (1713, "RPC_S_ALREADY_LISTENING"),
    (RPC_S_SERVER_UNAVAILABLE, "RPC_S_SERVER_UNAVAILABLE"),
    (1726, "RPC_S_CALL_FAILED"),
    (
        E_INVALIDARG,
        "E_INVALIDARG = HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)",
    ),
    (0x8007_0005_u32 as i32, "E_ACCESSDENIED"),
    (0x8007_0006_u32 as i32, "E_HANDLE"),
    (E_OUTOFMEMORY, "E_OUTOFMEMORY"),
    (0x8000_4005_u32 as i32, "E_FAIL"),
    (0xC000_0001_u32 as i32, "hrNyi"),
    (HR_INVALID_PARAM, "hrInvalidParam"),
    (0xC7FF_0002_u32 as i32, "hrError"),
    (HR_INVALID_HANDLE, "hrInvalidHandle"),
    (0xC7FF_0004_u32 as i32, "hrRestoreInProgress"),
    (HR_ALREADY_OPEN, "hrAlreadyOpen"),
    (HR_COULD_NOT_CONNECT, "hrCouldNotConnect"),
    (0xC7FF_000F_u32 as i32, "hrMissingExpiryToken"),
    (0xC7FF_0010_u32 as i32, "hrUnknownExpiryTokenFormat"),
    (0xC800_03EB_u32 as i32, "hrInvalidParameter"),
    (HR_BACKUP_IN_PROGRESS, "hrBackupInProgress"),
    (0xC800_0773_u32 as i32, "hrAccessDenied"),
];

pub fn name(code: i32) -> Option<&'static str> {
    NAMES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// "87 (ERROR_INVALID_PARAMETER)", "0xC7FF0001 (hrInvalidParam)", "0x12345678".
pub fn describe(code: i32) -> String {
    let num = if (0..=0xFFFF).contains(&code) {
        code.to_string()
    } else {
        format!("0x{:08X}", code as u32)
    };
    match name(code) {
        Some(n) => format!("{num} ({n})"),
        None => num,
    }
}

/// A documented failure code with which a second Prepare may refuse while a first session is
/// live: the library, or its server, runs one backup at a time (design §4). Codes that say an
/// argument was wrong (87, hrInvalidParam) are not refusals.
pub fn refuses_another_session(code: i32) -> bool {
    code == ERROR_NOT_ENOUGH_MEMORY || environment_problem(code).is_some()
}

/// A documented environment problem: Prepare failing with one of these does not prove the
/// library wrong (design §4); the text says what the user should fix.
pub fn environment_problem(code: i32) -> Option<&'static str> {
    ENVIRONMENT_PROBLEMS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, fix)| *fix)
}

/// Each documented environment code with what the user should fix.
pub const ENVIRONMENT_PROBLEMS: [(i32, &str); 5] = [
    (
        ERROR_ACCESS_DENIED,
        "run as a user holding SE_BACKUP_NAME, or pass credentials",
    ),
    (
        HR_COULD_NOT_CONNECT,
        "check --server: it must name this machine, a domain controller",
    ),
    (
        RPC_S_INVALID_BINDING,
        "check --server: it must be this machine and a domain controller",
    ),
    (
        RPC_S_SERVER_UNAVAILABLE,
        "start the directory service's RPC server on this machine",
    ),
    (
        HR_BACKUP_IN_PROGRESS,
        "another backup is running on the server; wait for it to end",
    ),
];
