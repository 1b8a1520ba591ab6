//! Every check: id (contract, never renamed), requirement, strength and statement (design §4),
//! and the optional exports it needs beyond the required ones.

use ntdsbcli_harness::report::Strength;

pub struct CheckDef {
    pub id: &'static str,
    pub requirement: &'static str,
    pub strength: Strength,
    pub statement: &'static str,
    /// Groups of exports: the check needs at least one name of every group.
    pub needs: &'static [&'static [&'static str]],
}

use Strength::{Documented, Inferred};

const OPEN: &[&str] = &["DsBackupOpenFileA", "DsBackupOpenFileW"];
const NAMES: &[&str] = &["DsBackupGetDatabaseNamesA", "DsBackupGetDatabaseNamesW"];
const RESTORE_PREPARE: &[&str] = &["DsRestorePrepareA", "DsRestorePrepareW"];

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "exports.required",
        requirement: "REQ-01",
        strength: Documented,
        statement: "the required exports are present",
        needs: &[],
    },
    CheckDef {
        id: "prepare.ok",
        requirement: "REQ-20",
        strength: Documented,
        statement: "a valid DsBackupPrepare (full backup, grbit 0, the configured server) returns S_OK, a non-NULL handle and a token with a non-zero size",
        needs: &[],
    },
    CheckDef {
        id: "prepare.bad-args",
        requirement: "REQ-21..23",
        strength: Documented,
        statement: "NULL server or NULL phbc -> ERROR_INVALID_PARAMETER; BACKUP_TYPE_INCREMENTAL -> ERROR_INVALID_PARAMETER; NULL token pointers -> hrInvalidParam (0xC7FF0001); never a crash",
        needs: &[],
    },
    CheckDef {
        id: "prepare.failed-leaves-nothing",
        requirement: "REQ-16, REQ-27",
        strength: Inferred,
        statement: "after a failed Prepare, *phbc is NULL or unchanged, End on it is ERROR_INVALID_PARAMETER, and no resource is held",
        needs: &[],
    },
    CheckDef {
        id: "prepare.distinct",
        requirement: "REQ-13",
        strength: Inferred,
        statement: "two live sessions have distinct handles and both end with S_OK (a second Prepare may instead refuse with hrBackupInProgress: then skip)",
        needs: &[],
    },
    CheckDef {
        id: "end.ok",
        requirement: "REQ-02",
        strength: Documented,
        statement: "End on a live handle returns exactly S_OK (0)",
        needs: &[],
    },
    CheckDef {
        id: "end.null",
        requirement: "REQ-04",
        strength: Documented,
        statement: "End(NULL) returns ERROR_INVALID_PARAMETER",
        needs: &[],
    },
    CheckDef {
        id: "end.double",
        requirement: "REQ-06",
        strength: Inferred,
        statement: "a second End on the same handle returns ERROR_INVALID_PARAMETER and repeats no cleanup",
        needs: &[],
    },
    CheckDef {
        id: "end.garbage",
        requirement: "REQ-05",
        strength: Inferred,
        statement: "End on values never returned by Prepare returns ERROR_INVALID_PARAMETER without crashing, for every garbage class",
        needs: &[],
    },
    CheckDef {
        id: "end.isolation",
        requirement: "REQ-13",
        strength: Inferred,
        statement: "an End on an invalid value (NULL, garbage, stale) leaves every live session usable",
        needs: &[],
    },
    CheckDef {
        id: "end.invalidates",
        requirement: "REQ-12",
        strength: Inferred,
        statement: "after End, every handle-taking function given that handle returns ERROR_INVALID_PARAMETER",
        needs: &[],
    },
    CheckDef {
        id: "end.open-file",
        requirement: "REQ-10",
        strength: Inferred,
        statement: "End with an attachment still open returns S_OK and releases the attachment too",
        needs: &[OPEN, NAMES],
    },
    CheckDef {
        id: "end.after-failure",
        requirement: "REQ-08",
        strength: Documented,
        statement: "End after failed intermediate calls (unknown attachment name, bad read size, Close with nothing open) returns S_OK",
        needs: &[],
    },
    CheckDef {
        id: "end.buffers-outlive",
        requirement: "REQ-11",
        strength: Inferred,
        statement: "the token and name lists obtained before End stay readable after End and are freed with DsBackupFree without error, in either order",
        needs: &[],
    },
    CheckDef {
        id: "end.concurrent",
        requirement: "inferred",
        strength: Inferred,
        statement: "several threads ending the same live handle at once: exactly one S_OK, the rest ERROR_INVALID_PARAMETER, no crash, no hang",
        needs: &[],
    },
    CheckDef {
        id: "end.restore-handle",
        requirement: "REQ-17",
        strength: Inferred,
        statement: "End on a handle from DsRestorePrepare returns ERROR_INVALID_PARAMETER (skip when not exported or Prepare refuses)",
        needs: &[RESTORE_PREPARE, &["DsRestoreEnd"]],
    },
    CheckDef {
        id: "end.release",
        requirement: "REQ-07, REQ-09",
        strength: Documented,
        statement: "every session's resources (handles/fds, threads, heap bytes) are released: zero growth per cycle over many cycles, on each session path",
        needs: &[],
    },
    CheckDef {
        id: "seq.model",
        requirement: "all",
        strength: Inferred,
        statement: "random call sequences over the whole backup surface agree with the reference model, and leave no resource behind",
        needs: &[],
    },
    CheckDef {
        id: "free.null",
        requirement: "REQ-31",
        strength: Inferred,
        statement: "DsBackupFree(NULL) is harmless",
        needs: &[],
    },
];

pub fn find(id: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.id == id)
}
