//! Call programs: what a worker executes, as data. The supervisor builds programs, the worker
//! runs them against the library and sends back raw observations, and only the supervisor
//! decides what they mean. A library that corrupts its worker can garble the observations, but
//! it cannot make a check pass by itself.

use serde::{Deserialize, Serialize};

/// Number of handle slots and buffer slots in a program.
pub const SLOTS: usize = 32;

/// A handle argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleArg {
    Null,
    /// The value a Prepare wrote to a slot (live, or stale once ended).
    Slot(u8),
    Garbage(Garbage),
}

/// Values never returned by Prepare (design §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Garbage {
    Small(u64),
    AllOnes,
    /// A page the worker mapped and unmapped again.
    Unmapped,
    KernelHalf,
    NonCanonical,
    /// A live handle (in the slot) plus one: misaligned.
    LivePlusOne(u8),
    /// Pointers to worker-owned readable memory: checked afterwards for writes.
    Zeroed,
    OnesFilled,
    Random(u64),
    /// A copy of the bytes at a live handle's address, when that address is readable.
    CopyOfLive(u8),
}

impl Garbage {
    pub fn label(&self) -> String {
        match self {
            Garbage::Small(n) => format!("small integer 0x{n:X}"),
            Garbage::AllOnes => "all-ones (INVALID_HANDLE_VALUE)".into(),
            Garbage::Unmapped => "unmapped page".into(),
            Garbage::KernelHalf => "kernel-half address".into(),
            Garbage::NonCanonical => "non-canonical address".into(),
            Garbage::LivePlusOne(_) => "live handle + 1".into(),
            Garbage::Zeroed => "pointer to zeroed memory".into(),
            Garbage::OnesFilled => "pointer to 0xFF-filled memory".into(),
            Garbage::Random(_) => "pointer to random bytes".into(),
            Garbage::CopyOfLive(_) => "pointer to a copy of a live handle's bytes".into(),
        }
    }
}

/// A string argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Text {
    Null,
    Lit(String),
    /// Entry `index` of the name list in a buffer slot, without its BFT character.
    Entry {
        buf: u8,
        index: u16,
    },
}

/// Which list a name-list call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListKind {
    DatabaseNames,
    BackupLogs,
}

/// The arguments of a DsBackupPrepare[A|W]. A `bool` out-argument says whether the call gets
/// a pointer to storage (else NULL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub wide: bool,
    pub server: Text,
    pub grbit: u32,
    pub btype: u32,
    /// `&token` (else NULL); the token goes to buffer slot `buf`.
    pub token: bool,
    /// `&size` (else NULL).
    pub size: bool,
    /// `&hbc` (else NULL); the handle goes to slot `slot`.
    pub phbc: bool,
    /// Stored in `*phbc` before the call.
    pub init: u64,
    pub slot: u8,
    pub buf: u8,
}

/// The export of an A/W pair that a call with `wide` reaches.
fn a_or_w(wide: bool, a: &'static str, w: &'static str) -> &'static str {
    if wide {
        w
    } else {
        a
    }
}

impl Prepare {
    /// The call a careful caller makes: a full backup, every out-pointer given, the handle to
    /// `slot` and the token to buffer `buf`.
    pub fn full(wide: bool, server: Text, slot: u8, buf: u8) -> Prepare {
        Prepare {
            wide,
            server,
            grbit: 0,
            btype: crate::codes::BACKUP_TYPE_FULL,
            token: true,
            size: true,
            phbc: true,
            init: 0,
            slot,
            buf,
        }
    }

    pub fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsBackupPrepareA", "DsBackupPrepareW")
    }

    pub fn describe(&self) -> String {
        format!(
            "{}({}, {}, {}, {}, {}, {}) -> h{}",
            self.export(),
            self.server.describe(),
            self.grbit,
            btype_name(self.btype),
            if self.token { "&token" } else { "NULL" },
            if self.size { "&size" } else { "NULL" },
            if self.phbc { "&hbc" } else { "NULL" },
            self.slot
        )
    }
}

/// The arguments of a DsBackupOpenFile[A|W].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub wide: bool,
    pub h: HandleArg,
    pub name: Text,
    pub hint: u32,
    /// `&size` (else NULL).
    pub size: bool,
}

impl OpenFile {
    pub fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsBackupOpenFileA", "DsBackupOpenFileW")
    }
}

/// The arguments of a DsRestorePrepare[A|W]; the handle goes to slot `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePrepare {
    pub wide: bool,
    pub server: Text,
    /// The buffer slot whose bytes are passed as the backup token (else NULL, 0).
    pub token: Option<u8>,
    pub slot: u8,
}

impl RestorePrepare {
    pub fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsRestorePrepareA", "DsRestorePrepareW")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// DsBackupPrepare[A|W].
    Prepare(Prepare),
    End {
        h: HandleArg,
    },
    /// `threads` threads call DsBackupEnd on the same value at once.
    EndConcurrent {
        h: HandleArg,
        threads: u8,
    },
    /// DsBackupFree of a buffer slot, or of NULL.
    Free {
        buf: Option<u8>,
    },
    /// Copies a buffer's bytes into the observation (to compare before and after End).
    Peek {
        buf: u8,
    },
    Names {
        kind: ListKind,
        wide: bool,
        h: HandleArg,
        out: bool,
        size: bool,
        buf: u8,
    },
    OpenFile(OpenFile),
    Read {
        h: HandleArg,
        cb: u32,
        pcb: bool,
    },
    /// Reads until the call fails; observes the count of bytes, of calls, and the last code.
    ReadToEnd {
        h: HandleArg,
        cb: u32,
    },
    Close {
        h: HandleArg,
    },
    Truncate {
        h: HandleArg,
    },
    RestorePrepare(RestorePrepare),
    RestoreEnd {
        h: HandleArg,
    },
    SetAuth {
        wide: bool,
        user: Text,
        domain: Text,
        password: Text,
    },
    Probe,
    /// Opens `n` harness-owned handles that a double close inside the library could hit.
    HoldSentinels {
        n: u8,
    },
    /// Observes whether every sentinel is still open.
    CheckSentinels,
    /// Runs `body` `n` times, reading the probe before the first cycle and after every
    /// `probe_every` cycles. Only the samples and a tally of return codes are kept, in storage
    /// reserved up front: the harness retains nothing per cycle, so growth is the library's.
    /// With `settle_last`, the last reading waits patiently, towards the first one, for threads
    /// still on their way out, so that what comes back by the end is never read as a leak.
    Repeat {
        n: u32,
        probe_every: u32,
        #[serde(default)]
        settle_last: bool,
        body: Vec<Op>,
    },
    /// Ends every session a successful Prepare opened that no End has closed yet, and frees
    /// every buffer still held: a program leaves nothing behind on a correct library.
    Cleanup,
    /// Runs `body` with the `at`-th resource call the library makes failed (0: none fails,
    /// the calls are counted). The body stops after a Prepare that fails and after the call
    /// the fault hit when that call fails; then every session still open is ended and every
    /// buffer freed, as a caller that gives up would, with the fault still armed. Observes
    /// each call (`steps`, the clean-up last) and the fault with the resources around it:
    /// before, once threads settle towards the program's first Probe; after, towards before.
    Faulted {
        at: u64,
        body: Vec<Op>,
    },
}

impl Op {
    /// The export an op calls, when it calls one.
    pub fn export(&self) -> Option<&'static str> {
        Some(match self {
            Op::Prepare(p) => p.export(),
            Op::End { .. } | Op::EndConcurrent { .. } => "DsBackupEnd",
            Op::Free { .. } => "DsBackupFree",
            Op::Names {
                kind: ListKind::DatabaseNames,
                wide: false,
                ..
            } => "DsBackupGetDatabaseNamesA",
            Op::Names {
                kind: ListKind::DatabaseNames,
                wide: true,
                ..
            } => "DsBackupGetDatabaseNamesW",
            Op::Names {
                kind: ListKind::BackupLogs,
                wide: false,
                ..
            } => "DsBackupGetBackupLogsA",
            Op::Names {
                kind: ListKind::BackupLogs,
                wide: true,
                ..
            } => "DsBackupGetBackupLogsW",
            Op::OpenFile(o) => o.export(),
            Op::Read { .. } | Op::ReadToEnd { .. } => "DsBackupRead",
            Op::Close { .. } => "DsBackupClose",
            Op::Truncate { .. } => "DsBackupTruncateLogs",
            Op::RestorePrepare(r) => r.export(),
            Op::RestoreEnd { .. } => "DsRestoreEnd",
            Op::SetAuth { wide: false, .. } => "DsSetAuthIdentityA",
            Op::SetAuth { wide: true, .. } => "DsSetAuthIdentityW",
            Op::Probe
            | Op::Peek { .. }
            | Op::HoldSentinels { .. }
            | Op::CheckSentinels
            | Op::Cleanup
            | Op::Faulted { .. }
            | Op::Repeat { .. } => return None,
        })
    }

    /// The call as a person would write it, e.g. `DsBackupEnd(h0)`.
    /// Long on purpose: one short arm per Op, each independent of the others.
    pub fn describe(&self) -> String {
        let name = self.export().unwrap_or("");
        match self {
            Op::Prepare(p) => p.describe(),
            Op::End { h } => format!("{name}({})", h.describe()),
            Op::EndConcurrent { h, threads } => {
                format!("{name}({}) on {threads} threads at once", h.describe())
            }
            Op::Free { buf: Some(b) } => format!("{name}(buffer b{b})"),
            Op::Free { buf: None } => format!("{name}(NULL)"),
            Op::Peek { buf } => format!("read buffer b{buf}"),
            Op::Names {
                h, out, size, buf, ..
            } => format!(
                "{name}({}, {}, {}) -> b{buf}",
                h.describe(),
                if *out { "&list" } else { "NULL" },
                if *size { "&size" } else { "NULL" }
            ),
            Op::OpenFile(o) => format!(
                "{name}({}, {}, {}, {})",
                o.h.describe(),
                o.name.describe(),
                o.hint,
                if o.size { "&size" } else { "NULL" }
            ),
            Op::Read { h, cb, pcb } => format!(
                "{name}({}, buffer, {cb}, {})",
                h.describe(),
                if *pcb { "&read" } else { "NULL" }
            ),
            Op::ReadToEnd { h, cb } => format!(
                "{name}({}, buffer, {cb}, &read) until it fails",
                h.describe()
            ),
            Op::Close { h } | Op::Truncate { h } | Op::RestoreEnd { h } => {
                format!("{name}({})", h.describe())
            }
            Op::RestorePrepare(r) => format!(
                "{name}({}, 0, {}) -> h{}",
                r.server.describe(),
                match r.token {
                    Some(b) => format!("token b{b}"),
                    None => "NULL".into(),
                },
                r.slot
            ),
            Op::SetAuth { .. } => format!("{name}(user, domain, password)"),
            Op::Probe => "resource probe".into(),
            Op::HoldSentinels { n } => format!("open {n} sentinel handles"),
            Op::CheckSentinels => "check the sentinel handles".into(),
            Op::Cleanup => "clean up (End live sessions, free buffers)".into(),
            Op::Faulted { at, body } => format!(
                "[{}] with {}",
                body.iter()
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join("; "),
                if *at == 0 {
                    "its resource calls counted".to_string()
                } else {
                    format!("resource call {at} failed")
                }
            ),
            Op::Repeat { n, body, .. } => format!(
                "{n} cycles of [{}]",
                body.iter()
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

fn btype_name(b: u32) -> String {
    match b {
        1 => "BACKUP_TYPE_FULL".into(),
        2 => "BACKUP_TYPE_LOGS_ONLY".into(),
        4 => "BACKUP_TYPE_INCREMENTAL".into(),
        other => other.to_string(),
    }
}

impl HandleArg {
    pub fn describe(&self) -> String {
        match self {
            HandleArg::Null => "NULL".into(),
            HandleArg::Slot(s) => format!("h{s}"),
            HandleArg::Garbage(g) => g.label(),
        }
    }
}

impl Text {
    pub fn describe(&self) -> String {
        match self {
            Text::Null => "NULL".into(),
            Text::Lit(s) => format!("{s:?}"),
            Text::Entry { buf, index } => format!("entry {index} of b{buf}"),
        }
    }
}

/// Resource readings taken inside the worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub handles: i64,
    pub threads: i64,
    pub heap_bytes: i64,
    pub mapped_bytes: i64,
}

/// What one op observed. Fields an op does not produce stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// The export is missing or the argument could not be made: nothing was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// `*phbc` after a Prepare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The handle value the call was given: calls are judged by value, since a library may
    /// hand the same value out again once it is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<u64>,
    /// A garbage value that was a live handle at call time, and what was passed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted: Option<String>,
    /// A size written by the call (token, list, file) or bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A pointer the call wrote (token, list) was non-NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
    /// Worker-owned memory given as a handle was not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Number of calls made by a looping op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// Probe readings of a Repeat, in cycle order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Probe>,
    /// How often each body op of a Repeat returned each code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tally: Vec<Tally>,
    /// The calls of a Faulted body, in order, and its clean-up last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Observation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultObs>,
}

/// What a Faulted op saw: the sweep (sites counted, the call failed and in which step; the
/// clean-up is step `body.len()`), and the resources before the body and after its clean-up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultObs {
    pub sweep: crate::imports::Sweep,
    pub before: Probe,
    pub after: Probe,
    /// The library's live heap blocks and bytes (routed allocations) before and after.
    pub held_before: crate::imports::Held,
    pub held_after: crate::imports::Held,
}

/// `count` calls of body op `op` returned `rc` (`not_run` when it could not be called).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub op: u16,
    pub rc: Option<i32>,
    pub count: u32,
}

/// A program with a label that says what it tests, for details and repros.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub label: String,
    pub ops: Vec<Op>,
    /// Readings wait longer for threads the library lets exit on their own: set when a
    /// failure is confirmed, so that a loaded machine never makes a slow exit a leak.
    #[serde(default)]
    pub patient: bool,
    /// A name per op for the side that judges it, and the names of ops left out because an
    /// export they need is absent (`push_opt` with None): asking for one of those is "not
    /// run"; asking for a name never given is a bug in the suite. Never sent to a worker (one
    /// field, so that a worker's programs keep their size and a library that corrupts the
    /// heap meets the same layout).
    #[serde(skip)]
    pub tags: Vec<Tag>,
}

/// The name of one op of a program, or of one left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    /// The op is in the program (else it was left out).
    pub present: bool,
}

impl Program {
    pub fn new(label: impl Into<String>, ops: Vec<Op>) -> Program {
        Program {
            label: label.into(),
            tags: vec![
                Tag {
                    name: String::new(),
                    present: true,
                };
                ops.len()
            ],
            ops,
            patient: false,
        }
    }

    /// The same program, with readings that wait patiently (see `patient`).
    pub fn patiently(&self) -> Program {
        Program {
            patient: true,
            ..self.clone()
        }
    }

    /// Adds an op under a tag, by which its observation is found again.
    pub fn push(&mut self, tag: impl Into<String>, op: Op) -> &mut Program {
        self.tags.push(Tag {
            name: tag.into(),
            present: true,
        });
        self.ops.push(op);
        self
    }

    /// Adds an op when the export it needs exists.
    pub fn push_opt(&mut self, tag: impl Into<String>, op: Option<Op>) -> &mut Program {
        match op {
            Some(op) => {
                self.push(tag, op);
            }
            None => self.tags.push(Tag {
                name: tag.into(),
                present: false,
            }),
        }
        self
    }

    pub fn index_of(&self, tag: &str) -> Option<usize> {
        self.present_tags().position(|t| t == tag)
    }

    /// `tag` was given to an op of this program, run or left out.
    pub fn names(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.name == tag)
    }

    /// The names of the ops in the program, in op order.
    pub fn present_tags(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .filter(|t| t.present)
            .map(|t| t.name.as_str())
    }
}
