//! The one table of checks: each check's id (contract, never renamed), how it runs (for a
//! check of call programs, the type that plans and judges them), requirement, strength,
//! statement (design §4), where its requirement comes from and what a conforming library does
//! (`explain`), and the optional exports it needs beyond the required ones.

use crate::checks::{answers, end, prepare, release, session, Programs};
use ntdsbcli_harness::report::Strength;

/// How a check runs: the runner dispatches on this, never on an id.
#[derive(Clone, Copy)]
pub enum Runs {
    /// Decided from the export table before anything is called.
    Exports,
    /// Call programs planned and judged by the check's type.
    Programs(&'static dyn Programs),
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
    /// Where the requirement comes from (docs/spec.md, with the public pages it cites).
    pub source: &'static str,
    /// What a conforming implementation does.
    pub conforming: &'static str,
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
        runs: Runs::Exports,
        requirement: "REQ-01",
        strength: Documented,
        statement: "the required exports are present",
        source: "docs/spec.md §1 and design §3; the export list of the real DLL (mingw-w64 ntdsbcli.def)",
        conforming: "exports DsBackupEnd, DsBackupFree and DsBackupPrepareA and/or DsBackupPrepareW under exactly these names, with the system calling convention",
        needs: &[],
    },
    CheckDef {
        id: "prepare.ok",
        runs: Runs::Programs(&prepare::PrepareOk),
        requirement: "REQ-20",
        strength: Documented,
        statement: "a valid DsBackupPrepare (full backup, grbit 0, the configured server) returns S_OK, a non-NULL handle and a token with a non-zero size",
        source: "docs/spec.md REQ-20; DsBackupPrepare page",
        conforming: "returns S_OK, writes a non-NULL handle to *phbc and an allocated expiry token with its non-zero size, for a full backup of the local server; an environment code (access, connection, binding) makes the check inconclusive only when no exported form gets a session with the same server and credentials",
        needs: &[],
    },
    CheckDef {
        id: "prepare.bad-args",
        runs: Runs::Programs(&prepare::PrepareBadArgs),
        requirement: "REQ-21..23",
        strength: Documented,
        statement: "NULL server or NULL phbc -> ERROR_INVALID_PARAMETER; BACKUP_TYPE_INCREMENTAL -> ERROR_INVALID_PARAMETER; NULL token pointers -> hrInvalidParam (0xC7FF0001); never a crash",
        source: "docs/spec.md REQ-21..23; DsBackupPrepare page (its error list)",
        conforming: "returns raw 87 for a NULL server, a NULL phbc or BACKUP_TYPE_INCREMENTAL; hrInvalidParam (0xC7FF0001) for NULL token pointers; some failure code for LOGS_ONLY, which is documented as not supported with no code (accepting it is a compatibility warning, never a failure); never crashes",
        needs: &[],
    },
    CheckDef {
        id: "prepare.failed-leaves-nothing",
        runs: Runs::Programs(&prepare::PrepareFailed),
        requirement: "REQ-16, REQ-27",
        strength: Inferred,
        statement: "after a failed Prepare, *phbc is NULL or unchanged, End on it is ERROR_INVALID_PARAMETER, and no resource is held",
        source: "docs/spec.md REQ-16, REQ-27 (inferred: the page says nothing of *phbc on failure); each Prepare must fail by its own rule: REQ-21, REQ-22, REQ-23, REQ-25",
        conforming: "holds no handle, thread or memory for a failed Prepare, so End on *phbc returns 87; it leaves *phbc NULL or unchanged (another value is a compatibility warning: the page says nothing of *phbc on failure)",
        needs: &[],
    },
    CheckDef {
        id: "prepare.distinct",
        runs: Runs::Programs(&prepare::PrepareDistinct),
        requirement: "REQ-13",
        strength: Inferred,
        statement: "two live sessions have distinct handles and both end with S_OK (a second Prepare may instead refuse with a documented code, one backup at a time: then skip)",
        source: "docs/spec.md REQ-13 (inferred); hrBackupInProgress in ntdsbmsg.h",
        conforming: "gives a second live session its own handle, and both end with S_OK; or, running one backup at a time (as a domain controller does for all its clients), refuses the second Prepare with a documented code (hrBackupInProgress, ERROR_ACCESS_DENIED, ...) and leaves the first session to end with S_OK: then the check is skipped",
        needs: &[],
    },
    CheckDef {
        id: "prepare.server-name",
        runs: Runs::Programs(&prepare::PrepareServerName),
        requirement: "REQ-25",
        strength: Documented,
        statement: "the server name without (or with) its optional leading \\\\ opens a session as the configured name does; a name with '_' is refused (hrCouldNotConnect or ERROR_INVALID_PARAMETER; another answer is a compatibility warning)",
        source: "docs/spec.md REQ-25; DsBackupPrepare page: the leading backslashes are optional, '_' is not allowed, a badly formed name gives hrCouldNotConnect",
        conforming: "opens a session whether or not the server name starts with \\\\; refuses a name containing '_' with hrCouldNotConnect (or ERROR_INVALID_PARAMETER, an invalid server name); accepting it, or another code, is a compatibility warning: the page states the rule for the caller and names no answer for breaking it",
        needs: &[],
    },
    CheckDef {
        id: "end.ok",
        runs: Runs::Programs(&end::EndOk),
        requirement: "REQ-02",
        strength: Documented,
        statement: "End on a live handle returns exactly S_OK (0)",
        source: "docs/spec.md REQ-02; DsBackupEnd page: S_OK on success",
        conforming: "returns exactly 0 when given a live handle, whether or not the backup walkthrough ran",
        needs: &[],
    },
    CheckDef {
        id: "end.null",
        runs: Runs::Programs(&end::EndNull),
        requirement: "REQ-04",
        strength: Documented,
        statement: "End(NULL) returns ERROR_INVALID_PARAMETER",
        source: "docs/spec.md REQ-04; DsBackupEnd page: ERROR_INVALID_PARAMETER when hbc is not valid",
        conforming: "returns raw 87 for NULL and touches no session",
        needs: &[],
    },
    CheckDef {
        id: "end.double",
        runs: Runs::Programs(&end::EndDouble),
        requirement: "REQ-06",
        strength: Inferred,
        statement: "a second End on the same handle returns ERROR_INVALID_PARAMETER and repeats no cleanup",
        source: "docs/spec.md REQ-06 (inferred: double End is undocumented)",
        conforming: "returns 87 for an already ended handle and repeats none of its cleanup: no second free, no second close",
        needs: &[],
    },
    CheckDef {
        id: "end.garbage",
        runs: Runs::Programs(&end::EndGarbage),
        requirement: "REQ-05",
        strength: Inferred,
        statement: "End on values never returned by Prepare returns ERROR_INVALID_PARAMETER without crashing, for every garbage class",
        source: "docs/spec.md REQ-05 (inferred), design §5 garbage classes",
        conforming: "validates a handle by lookup, never by reading through it, and returns 87 for any value that is not a live handle; a class whose value is a live handle of the library (small integers for index handles) is replaced by the nearest non-live value of the class, and the detail says so",
        needs: &[],
    },
    CheckDef {
        id: "end.isolation",
        runs: Runs::Programs(&end::EndIsolation),
        requirement: "REQ-13",
        strength: Inferred,
        statement: "an End on an invalid value (NULL, garbage, stale) leaves every live session usable",
        source: "docs/spec.md REQ-13 (inferred)",
        conforming: "leaves every live session usable after an End on NULL, garbage or a stale handle",
        needs: &[],
    },
    CheckDef {
        id: "end.invalidates",
        runs: Runs::Programs(&end::EndInvalidates),
        requirement: "REQ-12",
        strength: Inferred,
        statement: "after End, every handle-taking function given that handle returns ERROR_INVALID_PARAMETER",
        source: "docs/spec.md REQ-12 (inferred from each page's 'hbc not valid' rule with REQ-09)",
        conforming: "returns 87 from OpenFile, Read, Close, GetDatabaseNames, GetBackupLogs, TruncateLogs and End given an ended handle",
        needs: &[],
    },
    CheckDef {
        id: "end.open-file",
        runs: Runs::Programs(&session::EndOpenFile),
        requirement: "REQ-10",
        strength: Inferred,
        statement: "End with an attachment still open (read in part, or to EOF without Close) returns S_OK and releases the attachment too",
        source: "docs/spec.md REQ-10 (inferred from REQ-09)",
        conforming: "returns S_OK from End while an attachment is open, or read to EOF and not closed, and releases the attachment with the session",
        needs: &[OPEN, NAMES],
    },
    CheckDef {
        id: "end.after-failure",
        runs: Runs::Programs(&session::EndAfterFailure),
        requirement: "REQ-08",
        strength: Documented,
        statement: "End after failed intermediate calls (unknown attachment name, bad read size, Close with nothing open) returns S_OK",
        source: "docs/spec.md REQ-08; DsBackupEnd remarks: cleanup after a successful or unsuccessful backup attempt",
        conforming: "returns S_OK from End after failed intermediate calls; an earlier failure never leaks into End",
        needs: &[],
    },
    CheckDef {
        id: "end.buffers-outlive",
        runs: Runs::Programs(&session::EndBuffersOutlive),
        requirement: "REQ-11",
        strength: Inferred,
        statement: "the token and name lists obtained before End stay readable after End and are freed with DsBackupFree without error, in either order",
        source: "docs/spec.md REQ-11 (inferred from DsBackupFree and DsBackupPrepare pages)",
        conforming: "leaves the token and name lists untouched by End; the caller frees them with DsBackupFree before or after End",
        needs: &[],
    },
    CheckDef {
        id: "end.concurrent",
        runs: Runs::Programs(&session::EndConcurrent),
        requirement: "design §4",
        strength: Inferred,
        statement: "several threads ending the same live handle at once: exactly one S_OK, the rest ERROR_INVALID_PARAMETER, no crash, no hang",
        source: "docs/spec.md design §4 (inferred)",
        conforming: "lets exactly one of several simultaneous Ends of one handle succeed; the others get 87; nothing crashes or hangs",
        needs: &[],
    },
    CheckDef {
        id: "end.restore-handle",
        runs: Runs::Programs(&session::EndRestoreHandle),
        requirement: "REQ-17",
        strength: Inferred,
        statement: "End on a handle from DsRestorePrepare returns ERROR_INVALID_PARAMETER (skip when not exported or Prepare refuses)",
        source: "docs/spec.md REQ-17, ambiguity A-5 (inferred)",
        conforming: "treats a restore handle as not valid for DsBackupEnd (87) and leaves it for DsRestoreEnd; another answer is a compatibility warning (A-5: DsBackupEnd on a restore handle is undocumented); skipped when DsRestorePrepare is refused (an online domain controller refuses restore)",
        needs: &[RESTORE_PREPARE, &["DsRestoreEnd"]],
    },
    CheckDef {
        id: "end.release",
        runs: Runs::Programs(&release::EndRelease),
        requirement: "REQ-07, REQ-09",
        strength: Documented,
        statement: "every session's resources (handles/fds, threads, heap bytes) are released: zero growth per cycle over many cycles, on each session path",
        source: "docs/spec.md REQ-07, REQ-09; DsBackupEnd remarks and the backup walkthrough, step 9",
        conforming: "gives back every handle, thread and heap byte a session took, on every path through a session",
        needs: &[],
    },
    CheckDef {
        id: "fault.cleanup",
        runs: Runs::Faults,
        requirement: "REQ-08, REQ-09",
        strength: Inferred,
        statement: "a backup that fails because a resource failed is cleaned up like any other",
        source: "docs/spec.md REQ-08, REQ-09 (inferred: DsBackupEnd cleans up after an unsuccessful attempt; a resource that fails is one)",
        conforming: "when any one of its allocation, handle, thread or I/O calls fails (each in turn, up to --fault-sites per session path), neither crashes nor hangs, returns a failure code from the call that could not go on (or succeeds because it recovered), returns S_OK from End on every handle Prepare gave out when the failure was in another call (a failure inside End's own calls may make End return any Win32 or RPC code; End is then tried once more and may return S_OK or 87), and holds no handle, thread or heap byte once End has returned; skipped, never passed, when none of its calls can be routed; a path whose DsRestorePrepare is refused is not swept",
        needs: &[],
    },
    CheckDef {
        id: "seq.model",
        runs: Runs::Sequences,
        requirement: "all",
        strength: Inferred,
        statement: "random call sequences over the whole backup surface agree with the reference model, and leave no resource behind",
        source: "every REQ the model cites (suite/src/model/oracle.rs)",
        conforming: "answers every call of any sequence a careful caller can make with a code the documentation allows, judged by the handle value passed (a value handed out again is the new session), and leaves no handle or thread behind that grows again on a second run",
        needs: &[],
    },
    CheckDef {
        id: "library.teardown",
        runs: Runs::Teardown,
        requirement: "design §9",
        strength: Inferred,
        statement: "unloading the library and exiting the process normally (destructors, atexit handlers) neither crashes nor hangs",
        source: "docs/spec.md design §9: unloading the library and exiting normally are part of the run",
        conforming: "can be unloaded (dlclose / FreeLibrary: its destructors or DllMain run) once its sessions are over, and lets the process exit the normal way (its atexit handlers run) without a crash, an abort or a hang; every real caller does both",
        needs: &[],
    },
    CheckDef {
        id: "calls.null-out",
        runs: Runs::Programs(&answers::CallsNullOut),
        requirement: "REQ-40, REQ-52",
        strength: Documented,
        statement: "a NULL out-pointer (a name list or its pcbSize, OpenFile's szAttachmentName or pliFileSize) gives ERROR_INVALID_PARAMETER; Read's NULL pcbRead another answer than that is a compatibility warning",
        source: "docs/spec.md REQ-40, REQ-52; the DsBackupOpenFile, DsBackupGetDatabaseNames and DsBackupGetBackupLogs pages name each out-pointer in their ERROR_INVALID_PARAMETER line",
        conforming: "returns raw 87 for a NULL list pointer or pcbSize, and for a NULL szAttachmentName or pliFileSize; DsBackupRead's page gives ERROR_INVALID_PARAMETER for 'one or more parameters' without naming pcbRead, so another answer to a NULL pcbRead is only a compatibility warning; never a crash",
        needs: &[],
    },
    CheckDef {
        id: "names.format",
        runs: Runs::Programs(&answers::NamesFormat),
        requirement: "REQ-51, REQ-53",
        strength: Documented,
        statement: "every exported form of both name lists: a BFT character before each name, names ending in NUL, the list ending in a second NUL, all within *pcbSize bytes (bytes in the W forms too)",
        source: "docs/spec.md REQ-51, REQ-53; the name-list pages, the BFT constants page, ntdsbcli.h's BFT type",
        conforming: "returns, from every exported A and W form of both lists, a buffer whose first *pcbSize bytes (bytes, in the W forms too) hold entries of one BFT character (one CHAR in A, one WCHAR in W), a name and a NUL, and then the NUL that ends the list",
        needs: &[],
    },
    CheckDef {
        id: "file.size",
        runs: Runs::Programs(&answers::FileSize),
        requirement: "REQ-45, REQ-44",
        strength: Documented,
        statement: "OpenFile's *pliFileSize equals the bytes read to ERROR_HANDLE_EOF, and no Read writes more than cbBuffer to *pcbRead, for each listed attachment",
        source: "docs/spec.md REQ-45, REQ-44; DsBackupOpenFile page: the size of the attachment in bytes; DsBackupRead page: *pcbRead receives the bytes read",
        conforming: "writes the attachment's size in bytes to *pliFileSize, the same number of bytes Read gives before ERROR_HANDLE_EOF, and never writes more than cbBuffer to *pcbRead",
        needs: &[OPEN, NAMES, &["DsBackupRead"], &["DsBackupClose"]],
    },
    CheckDef {
        id: "file.codes",
        runs: Runs::Programs(&answers::FileCodes),
        requirement: "REQ-41, REQ-43, REQ-44",
        strength: Documented,
        statement: "Close with no file open gives hrInvalidHandle; Read into 8192 or 16384 bytes gives ERROR_INVALID_PARAMETER; Read at and after the end gives ERROR_HANDLE_EOF; OpenFile with a valid hint of 65536 opens the file",
        source: "docs/spec.md REQ-41, REQ-43, REQ-44; the DsBackupRead and DsBackupClose pages",
        conforming: "gives hrInvalidHandle (0xC7FF0003) for Close with no file open, ERROR_INVALID_PARAMETER for a Read buffer under 24576 bytes (8192, 16384), ERROR_HANDLE_EOF at the end of the file and again after it, S_OK for Close of the open file, and opens a file with any valid read hint (65536 here)",
        needs: &[OPEN, NAMES],
    },
    CheckDef {
        id: "free.null",
        runs: Runs::Programs(&session::FreeNull),
        requirement: "REQ-31",
        strength: Inferred,
        statement: "DsBackupFree(NULL) is harmless",
        source: "docs/spec.md REQ-31 (inferred: DsBackupFree(NULL) is undocumented)",
        conforming: "does nothing for DsBackupFree(NULL), like free(NULL)",
        needs: &[],
    },
];

impl Runs {
    /// Its programs may run on workers of their own at once (`checks::Check::SPREAD`).
    pub fn spread(self) -> bool {
        matches!(self, Runs::Programs(c) if c.spread())
    }
}

pub fn find(id: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Ctx;
    use ntdsbcli_harness::abi::EXPORTS;
    use ntdsbcli_harness::program::{Observation, Probe};

    fn ctx(exports: &[&str]) -> Ctx {
        Ctx {
            server: "\\\\localhost".into(),
            accept_hresult: false,
            exports: exports.iter().map(|e| e.to_string()).collect(),
            seed: 1,
            release_cycles: 16,
        }
    }

    /// Answers a judgement may meet: nothing recorded, every call failing with 87, and every
    /// call succeeding with a distinct handle, a list and a resource reading.
    fn answers(i: usize) -> [Observation; 3] {
        let ok = Observation {
            rc: Some(0),
            handle: Some(0x1000 + i as u64 * 16),
            arg: Some(0x1000),
            size: Some(24),
            ptr: Some(true),
            bytes: Some(b"\x61d\0\0".to_vec()),
            intact: Some(true),
            probe: Some(Probe::default()),
            calls: Some(1),
            ..Observation::default()
        };
        let invalid = Observation {
            rc: Some(87),
            ..Observation::default()
        };
        [Observation::default(), invalid, ok]
    }

    /// Every check of programs plans with any set of exports and judges any answers with a
    /// detail, without a panic.
    #[test]
    fn every_judgement_judges_any_answers() {
        let minimal = ["DsBackupPrepareW", "DsBackupEnd", "DsBackupFree"];
        let ansi = ["DsBackupPrepareA", "DsBackupEnd", "DsBackupFree"];
        for exports in [&EXPORTS[..], &minimal[..], &ansi[..]] {
            let ctx = ctx(exports);
            for def in CHECKS {
                let Runs::Programs(check) = def.runs else {
                    continue;
                };
                let planned = check.plan(&ctx);
                for flavour in 0..3 {
                    let obs: Vec<Vec<Observation>> = planned
                        .programs
                        .iter()
                        .map(|p| {
                            (0..p.ops.len())
                                .map(|i| answers(i)[flavour].clone())
                                .collect()
                        })
                        .collect();
                    let obs: Vec<&[Observation]> = obs.iter().map(|o| &o[..]).collect();
                    let e = planned.judge.judge(&ctx, &planned.programs, &obs);
                    assert!(!e.detail.is_empty(), "{}: an empty detail", def.id);
                }
            }
        }
    }

    #[test]
    fn ids_are_unique_and_only_end_release_spreads() {
        let mut ids: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CHECKS.len());
        let spread: Vec<&str> = CHECKS
            .iter()
            .filter(|c| c.runs.spread())
            .map(|c| c.id)
            .collect();
        assert_eq!(spread, ["end.release"]);
    }
}
