//! Every check: id (contract, never renamed), requirement, strength and statement (design §4),
//! and the optional exports it needs beyond the required ones.

use ntdsbcli_harness::report::Strength;

/// How a check runs: the runner dispatches on this, never on an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Decided from the export table before anything is called.
    Exports,
    /// Call programs judged by the check's `eval` (`checks::registry`).
    Programs,
    /// The fault.cleanup sweep, after the programs (`fault`).
    Faults,
    /// Generated call sequences (`model::phase`); in every shard, the sequences split.
    Sequences,
    /// Unloading the library and exiting the worker, after everything else (`runner`).
    Teardown,
}

pub struct CheckDef {
    pub id: &'static str,
    pub runs: Runs,
    pub requirement: &'static str,
    pub strength: Strength,
    pub statement: &'static str,
    /// Groups of exports: the check needs at least one name of every group.
    pub needs: &'static [&'static [&'static str]],
}

/// Where each check's requirement comes from (docs/spec.md, with the public pages it cites) and
/// what a conforming implementation does: `ntdsbcli-conform explain ID` prints them.
pub fn explanation(id: &str) -> Option<(&'static str, &'static str)> {
    Some(match id {
        "exports.required" => ("docs/spec.md §1 and design §3; the export list of the real DLL (mingw-w64 ntdsbcli.def)",
            "exports DsBackupEnd, DsBackupFree and DsBackupPrepareA and/or DsBackupPrepareW under exactly these names, with the system calling convention"),
        "prepare.ok" => ("docs/spec.md REQ-20; DsBackupPrepare page",
            "returns S_OK, writes a non-NULL handle to *phbc and an allocated expiry token with its non-zero size, for a full backup of the local server; an environment code (access, connection, binding) makes the check inconclusive only when no exported form gets a session with the same server and credentials"),
        "prepare.bad-args" => ("docs/spec.md REQ-21..23; DsBackupPrepare page (its error list)",
            "returns raw 87 for a NULL server, a NULL phbc or BACKUP_TYPE_INCREMENTAL; hrInvalidParam (0xC7FF0001) for NULL token pointers; some failure code for LOGS_ONLY, which is documented as not supported with no code (accepting it is a compatibility warning, never a failure); never crashes"),
        "prepare.failed-leaves-nothing" => ("docs/spec.md REQ-16, REQ-27 (inferred: the page says nothing of *phbc on failure); each Prepare must fail by its own rule: REQ-21, REQ-22, REQ-23, REQ-25",
            "holds no handle, thread or memory for a failed Prepare, so End on *phbc returns 87; it leaves *phbc NULL or unchanged (another value is a compatibility warning: the page says nothing of *phbc on failure)"),
        "prepare.distinct" => ("docs/spec.md REQ-13 (inferred); hrBackupInProgress in ntdsbmsg.h",
            "gives a second live session its own handle, and both end with S_OK; or, running one backup at a time (as a domain controller does for all its clients), refuses the second Prepare with a documented code (hrBackupInProgress, ERROR_ACCESS_DENIED, ...) and leaves the first session to end with S_OK: then the check is skipped"),
        "end.ok" => ("docs/spec.md REQ-02; DsBackupEnd page: S_OK on success",
            "returns exactly 0 when given a live handle, whether or not the backup walkthrough ran"),
        "end.null" => ("docs/spec.md REQ-04; DsBackupEnd page: ERROR_INVALID_PARAMETER when hbc is not valid",
            "returns raw 87 for NULL and touches no session"),
        "end.double" => ("docs/spec.md REQ-06 (inferred: double End is undocumented)",
            "returns 87 for an already ended handle and repeats none of its cleanup: no second free, no second close"),
        "end.garbage" => ("docs/spec.md REQ-05 (inferred), design §5 garbage classes",
            "validates a handle by lookup, never by reading through it, and returns 87 for any value that is not a live handle; a class whose value is a live handle of the library (small integers for index handles) is replaced by the nearest non-live value of the class, and the detail says so"),
        "end.isolation" => ("docs/spec.md REQ-13 (inferred)",
            "leaves every live session usable after an End on NULL, garbage or a stale handle"),
        "end.invalidates" => ("docs/spec.md REQ-12 (inferred from each page's 'hbc not valid' rule with REQ-09)",
            "returns 87 from OpenFile, Read, Close, GetDatabaseNames, GetBackupLogs, TruncateLogs and End given an ended handle"),
        "end.open-file" => ("docs/spec.md REQ-10 (inferred from REQ-09)",
            "returns S_OK from End while an attachment is open, or read to EOF and not closed, and releases the attachment with the session"),
        "end.after-failure" => ("docs/spec.md REQ-08; DsBackupEnd remarks: cleanup after a successful or unsuccessful backup attempt",
            "returns S_OK from End after failed intermediate calls; an earlier failure never leaks into End"),
        "end.buffers-outlive" => ("docs/spec.md REQ-11 (inferred from DsBackupFree and DsBackupPrepare pages)",
            "leaves the token and name lists untouched by End; the caller frees them with DsBackupFree before or after End"),
        "end.release" => ("docs/spec.md REQ-07, REQ-09; DsBackupEnd remarks and the backup walkthrough, step 9",
            "gives back every handle, thread and heap byte a session took, on every path through a session"),
        "end.concurrent" => ("docs/spec.md design §4 (inferred)",
            "lets exactly one of several simultaneous Ends of one handle succeed; the others get 87; nothing crashes or hangs"),
        "end.restore-handle" => ("docs/spec.md REQ-17, ambiguity A-5 (inferred)",
            "treats a restore handle as not valid for DsBackupEnd (87) and leaves it for DsRestoreEnd; another answer is a compatibility warning (A-5: DsBackupEnd on a restore handle is undocumented); skipped when DsRestorePrepare is refused (an online domain controller refuses restore)"),
        "seq.model" => ("every REQ the model cites (suite/src/model/oracle.rs)",
            "answers every call of any sequence a careful caller can make with a code the documentation allows, judged by the handle value passed (a value handed out again is the new session), and leaves no handle or thread behind that grows again on a second run"),
        "fault.cleanup" => ("docs/spec.md REQ-08, REQ-09 (inferred: DsBackupEnd cleans up after an unsuccessful attempt; a resource that fails is one)",
            "when any one of its allocation, handle, thread or I/O calls fails (each in turn, up to --fault-sites per session path), neither crashes nor hangs, returns a failure code from the call that could not go on (or succeeds because it recovered), returns S_OK from End on every handle Prepare gave out when the failure was in another call (a failure inside End's own calls may make End return any Win32 or RPC code; End is then tried once more and may return S_OK or 87), and holds no handle, thread or heap byte once End has returned; skipped, never passed, when none of its calls can be routed; a path whose DsRestorePrepare is refused is not swept"),
        "library.teardown" => ("docs/spec.md design §9: unloading the library and exiting normally are part of the run",
            "can be unloaded (dlclose / FreeLibrary: its destructors or DllMain run) once its sessions are over, and lets the process exit the normal way (its atexit handlers run) without a crash, an abort or a hang; every real caller does both"),
        "prepare.server-name" => ("docs/spec.md REQ-25; DsBackupPrepare page: the leading backslashes are optional, '_' is not allowed, a badly formed name gives hrCouldNotConnect",
            "opens a session whether or not the server name starts with \\\\; refuses a name containing '_' with hrCouldNotConnect (or ERROR_INVALID_PARAMETER, an invalid server name); accepting it, or another code, is a compatibility warning: the page states the rule for the caller and names no answer for breaking it"),
        "calls.null-out" => ("docs/spec.md REQ-40, REQ-52; the DsBackupOpenFile, DsBackupGetDatabaseNames and DsBackupGetBackupLogs pages name each out-pointer in their ERROR_INVALID_PARAMETER line",
            "returns raw 87 for a NULL list pointer or pcbSize, and for a NULL szAttachmentName or pliFileSize; DsBackupRead's page gives ERROR_INVALID_PARAMETER for 'one or more parameters' without naming pcbRead, so another answer to a NULL pcbRead is only a compatibility warning; never a crash"),
        "names.format" => ("docs/spec.md REQ-51, REQ-53; the name-list pages, the BFT constants page, ntdsbcli.h's BFT type",
            "returns, from every exported A and W form of both lists, a buffer whose first *pcbSize bytes (bytes, in the W forms too) hold entries of one BFT character (one CHAR in A, one WCHAR in W), a name and a NUL, and then the NUL that ends the list"),
        "file.size" => ("docs/spec.md REQ-45, REQ-44; DsBackupOpenFile page: the size of the attachment in bytes; DsBackupRead page: *pcbRead receives the bytes read",
            "writes the attachment's size in bytes to *pliFileSize, the same number of bytes Read gives before ERROR_HANDLE_EOF, and never writes more than cbBuffer to *pcbRead"),
        "file.codes" => ("docs/spec.md REQ-41, REQ-43, REQ-44; the DsBackupRead and DsBackupClose pages",
            "gives hrInvalidHandle (0xC7FF0003) for Close with no file open, ERROR_INVALID_PARAMETER for a Read buffer under 24576 bytes (8192, 16384), ERROR_HANDLE_EOF at the end of the file and again after it, S_OK for Close of the open file, and opens a file with any valid read hint (65536 here)"),
        "free.null" => ("docs/spec.md REQ-31 (inferred: DsBackupFree(NULL) is undocumented)",
            "does nothing for DsBackupFree(NULL), like free(NULL)"),
        _ => return None,
    })
}

use Strength::{Documented, Inferred};

const OPEN: &[&str] = &["DsBackupOpenFileA", "DsBackupOpenFileW"];
const NAMES: &[&str] = &["DsBackupGetDatabaseNamesA", "DsBackupGetDatabaseNamesW"];
const RESTORE_PREPARE: &[&str] = &["DsRestorePrepareA", "DsRestorePrepareW"];

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "exports.required",
        runs: Runs::Exports,
        requirement: "REQ-01",
        strength: Documented,
        statement: "the required exports are present",
        needs: &[],
    },
    CheckDef {
        id: "prepare.ok",
        runs: Runs::Programs,
        requirement: "REQ-20",
        strength: Documented,
        statement: "a valid DsBackupPrepare (full backup, grbit 0, the configured server) returns S_OK, a non-NULL handle and a token with a non-zero size",
        needs: &[],
    },
    CheckDef {
        id: "prepare.bad-args",
        runs: Runs::Programs,
        requirement: "REQ-21..23",
        strength: Documented,
        statement: "NULL server or NULL phbc -> ERROR_INVALID_PARAMETER; BACKUP_TYPE_INCREMENTAL -> ERROR_INVALID_PARAMETER; NULL token pointers -> hrInvalidParam (0xC7FF0001); never a crash",
        needs: &[],
    },
    CheckDef {
        id: "prepare.failed-leaves-nothing",
        runs: Runs::Programs,
        requirement: "REQ-16, REQ-27",
        strength: Inferred,
        statement: "after a failed Prepare, *phbc is NULL or unchanged, End on it is ERROR_INVALID_PARAMETER, and no resource is held",
        needs: &[],
    },
    CheckDef {
        id: "prepare.distinct",
        runs: Runs::Programs,
        requirement: "REQ-13",
        strength: Inferred,
        statement: "two live sessions have distinct handles and both end with S_OK (a second Prepare may instead refuse with a documented code, one backup at a time: then skip)",
        needs: &[],
    },
    CheckDef {
        id: "prepare.server-name",
        runs: Runs::Programs,
        requirement: "REQ-25",
        strength: Documented,
        statement: "the server name without (or with) its optional leading \\\\ opens a session as the configured name does; a name with '_' is refused (hrCouldNotConnect or ERROR_INVALID_PARAMETER; another answer is a compatibility warning)",
        needs: &[],
    },
    CheckDef {
        id: "end.ok",
        runs: Runs::Programs,
        requirement: "REQ-02",
        strength: Documented,
        statement: "End on a live handle returns exactly S_OK (0)",
        needs: &[],
    },
    CheckDef {
        id: "end.null",
        runs: Runs::Programs,
        requirement: "REQ-04",
        strength: Documented,
        statement: "End(NULL) returns ERROR_INVALID_PARAMETER",
        needs: &[],
    },
    CheckDef {
        id: "end.double",
        runs: Runs::Programs,
        requirement: "REQ-06",
        strength: Inferred,
        statement: "a second End on the same handle returns ERROR_INVALID_PARAMETER and repeats no cleanup",
        needs: &[],
    },
    CheckDef {
        id: "end.garbage",
        runs: Runs::Programs,
        requirement: "REQ-05",
        strength: Inferred,
        statement: "End on values never returned by Prepare returns ERROR_INVALID_PARAMETER without crashing, for every garbage class",
        needs: &[],
    },
    CheckDef {
        id: "end.isolation",
        runs: Runs::Programs,
        requirement: "REQ-13",
        strength: Inferred,
        statement: "an End on an invalid value (NULL, garbage, stale) leaves every live session usable",
        needs: &[],
    },
    CheckDef {
        id: "end.invalidates",
        runs: Runs::Programs,
        requirement: "REQ-12",
        strength: Inferred,
        statement: "after End, every handle-taking function given that handle returns ERROR_INVALID_PARAMETER",
        needs: &[],
    },
    CheckDef {
        id: "end.open-file",
        runs: Runs::Programs,
        requirement: "REQ-10",
        strength: Inferred,
        statement: "End with an attachment still open (read in part, or to EOF without Close) returns S_OK and releases the attachment too",
        needs: &[OPEN, NAMES],
    },
    CheckDef {
        id: "end.after-failure",
        runs: Runs::Programs,
        requirement: "REQ-08",
        strength: Documented,
        statement: "End after failed intermediate calls (unknown attachment name, bad read size, Close with nothing open) returns S_OK",
        needs: &[],
    },
    CheckDef {
        id: "end.buffers-outlive",
        runs: Runs::Programs,
        requirement: "REQ-11",
        strength: Inferred,
        statement: "the token and name lists obtained before End stay readable after End and are freed with DsBackupFree without error, in either order",
        needs: &[],
    },
    CheckDef {
        id: "end.concurrent",
        runs: Runs::Programs,
        requirement: "design §4",
        strength: Inferred,
        statement: "several threads ending the same live handle at once: exactly one S_OK, the rest ERROR_INVALID_PARAMETER, no crash, no hang",
        needs: &[],
    },
    CheckDef {
        id: "end.restore-handle",
        runs: Runs::Programs,
        requirement: "REQ-17",
        strength: Inferred,
        statement: "End on a handle from DsRestorePrepare returns ERROR_INVALID_PARAMETER (skip when not exported or Prepare refuses)",
        needs: &[RESTORE_PREPARE, &["DsRestoreEnd"]],
    },
    CheckDef {
        id: "end.release",
        runs: Runs::Programs,
        requirement: "REQ-07, REQ-09",
        strength: Documented,
        statement: "every session's resources (handles/fds, threads, heap bytes) are released: zero growth per cycle over many cycles, on each session path",
        needs: &[],
    },
    CheckDef {
        id: "fault.cleanup",
        runs: Runs::Faults,
        requirement: "REQ-08, REQ-09",
        strength: Inferred,
        statement: "a backup that fails because a resource failed is cleaned up like any other",
        needs: &[],
    },
    CheckDef {
        id: "seq.model",
        runs: Runs::Sequences,
        requirement: "all",
        strength: Inferred,
        statement: "random call sequences over the whole backup surface agree with the reference model, and leave no resource behind",
        needs: &[],
    },
    CheckDef {
        id: "library.teardown",
        runs: Runs::Teardown,
        requirement: "design §9",
        strength: Inferred,
        statement: "unloading the library and exiting the process normally (destructors, atexit handlers) neither crashes nor hangs",
        needs: &[],
    },
    CheckDef {
        id: "calls.null-out",
        runs: Runs::Programs,
        requirement: "REQ-40, REQ-52",
        strength: Documented,
        statement: "a NULL out-pointer (a name list or its pcbSize, OpenFile's szAttachmentName or pliFileSize) gives ERROR_INVALID_PARAMETER; Read's NULL pcbRead another answer than that is a compatibility warning",
        needs: &[],
    },
    CheckDef {
        id: "names.format",
        runs: Runs::Programs,
        requirement: "REQ-51, REQ-53",
        strength: Documented,
        statement: "every exported form of both name lists: a BFT character before each name, names ending in NUL, the list ending in a second NUL, all within *pcbSize bytes (bytes in the W forms too)",
        needs: &[],
    },
    CheckDef {
        id: "file.size",
        runs: Runs::Programs,
        requirement: "REQ-45, REQ-44",
        strength: Documented,
        statement: "OpenFile's *pliFileSize equals the bytes read to ERROR_HANDLE_EOF, and no Read writes more than cbBuffer to *pcbRead, for each listed attachment",
        needs: &[OPEN, NAMES, &["DsBackupRead"], &["DsBackupClose"]],
    },
    CheckDef {
        id: "file.codes",
        runs: Runs::Programs,
        requirement: "REQ-41, REQ-43, REQ-44",
        strength: Documented,
        statement: "Close with no file open gives hrInvalidHandle; Read into 8192 or 16384 bytes gives ERROR_INVALID_PARAMETER; Read at and after the end gives ERROR_HANDLE_EOF; OpenFile with a valid hint of 65536 opens the file",
        needs: &[OPEN, NAMES],
    },
    CheckDef {
        id: "free.null",
        runs: Runs::Programs,
        requirement: "REQ-31",
        strength: Inferred,
        statement: "DsBackupFree(NULL) is harmless",
        needs: &[],
    },
];

pub fn find(id: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.id == id)
}
