//! What every check shares: the run context, op builders, and the judging of codes.

use super::check::{Ctx, Eval, Ran};
use ntdsbcli_harness::codes::{self, describe, ERROR_INVALID_PARAMETER, E_INVALIDARG};
use ntdsbcli_harness::program::{End, Names};
use ntdsbcli_harness::program::{
    HandleArg, ListKind, Observation, Op, OpenFile, Prepare, Program, RestorePrepare, Step, Text,
};
use ntdsbcli_harness::report::Outcome;

/// An attachment name that no implementation lists.
pub const UNKNOWN_ATTACHMENT: &str = "\\\\LOCALHOST\\C$\\no-such-attachment.dit";

impl Ctx {
    pub fn has(&self, name: &str) -> bool {
        self.exports.iter().any(|e| e == name)
    }

    /// The W form where exported (it is what Windows callers use), else the A form.
    fn pick_wide(&self, a: &str, w: &str) -> Option<bool> {
        if self.has(w) {
            Some(true)
        } else if self.has(a) {
            Some(false)
        } else {
            None
        }
    }

    pub fn prepare_wide(&self) -> bool {
        self.pick_wide("DsBackupPrepareA", "DsBackupPrepareW")
            .unwrap_or(false)
    }

    /// Every exported Prepare form, W first.
    pub fn prepare_forms(&self) -> Vec<bool> {
        [true, false]
            .into_iter()
            .filter(|&w| {
                self.has(if w {
                    "DsBackupPrepareW"
                } else {
                    "DsBackupPrepareA"
                })
            })
            .collect()
    }

    pub fn server(&self) -> Text {
        Text::Lit(self.server.clone())
    }

    /// A valid Prepare (full backup, grbit 0) in the given form.
    pub fn prepare_form(&self, wide: bool, slot: u8, buf: u8) -> Op {
        Op::Prepare(Prepare::full(wide, self.server(), slot, buf))
    }

    pub fn prepare(&self, slot: u8, buf: u8) -> Op {
        self.prepare_form(self.prepare_wide(), slot, buf)
    }

    pub fn names(&self, kind: ListKind, h: HandleArg, buf: u8) -> Option<Op> {
        let wide = match kind {
            ListKind::DatabaseNames => {
                self.pick_wide("DsBackupGetDatabaseNamesA", "DsBackupGetDatabaseNamesW")
            }
            ListKind::BackupLogs => {
                self.pick_wide("DsBackupGetBackupLogsA", "DsBackupGetBackupLogsW")
            }
        }?;
        Some(Op::Names(Names {
            kind,
            wide,
            h,
            out: true,
            size: true,
            buf,
        }))
    }

    pub fn open_file(&self, h: HandleArg, name: Text) -> Option<Op> {
        let wide = self.pick_wide("DsBackupOpenFileA", "DsBackupOpenFileW")?;
        Some(Op::OpenFile(OpenFile {
            wide,
            h,
            name,
            hint: 24_576,
            size: true,
        }))
    }

    pub fn restore_prepare(&self, token: Option<u8>, slot: u8) -> Option<Op> {
        let wide = self.pick_wide("DsRestorePrepareA", "DsRestorePrepareW")?;
        Some(Op::RestorePrepare(RestorePrepare {
            wide,
            server: self.server(),
            token,
            slot,
        }))
    }
}

pub fn end(h: HandleArg) -> Op {
    Op::End(End { h })
}

pub fn slot(s: u8) -> HandleArg {
    HandleArg::Slot(s)
}

/// Collects what a check found wrong and what it accepted only under a lenient option.
#[derive(Default)]
pub struct Findings {
    fails: Vec<String>,
    warns: Vec<String>,
    /// Answers the documentation does not rule out ("not supported" with no code).
    compat: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.fails.push(msg.into());
    }

    pub fn note(&mut self, msg: impl Into<String>) {
        self.notes.push(msg.into());
    }

    /// A note when an End that should succeed did not: end.ok judges that, this check goes on.
    pub fn note_end_not_ok(&mut self, what: &str, end: &Observation) {
        if end.rc != Some(0) {
            self.note(format!("{what} did not return S_OK (see end.ok)"));
        }
    }

    /// A compatibility warning: never a failure.
    pub fn compat(&mut self, msg: impl Into<String>) {
        self.compat.push(msg.into());
    }

    pub fn failed(&self) -> bool {
        !self.fails.is_empty()
    }

    /// `what` must have returned exactly `want`.
    pub fn code(&mut self, what: &str, o: &Observation, want: i32) {
        match (o.rc, &o.not_run) {
            (_, Some(why)) => self.note(format!("{what} not run: {why}")),
            (Some(rc), None) if rc != want => self.fail(format!(
                "{what} returned {}, expected {}",
                describe(rc),
                describe(want)
            )),
            _ => {}
        }
    }

    /// `what` must have returned ERROR_INVALID_PARAMETER: raw 87, or 0x80070057 when the user
    /// accepts that encoding (ambiguity A-1), which then makes the check a warning.
    pub fn invalid_param(&mut self, ctx: &Ctx, what: &str, o: &Observation) {
        match (o.rc, &o.not_run) {
            (_, Some(why)) => self.note(format!("{what} not run: {why}")),
            (Some(ERROR_INVALID_PARAMETER), None) | (None, None) => {}
            (Some(E_INVALIDARG), None) if ctx.accept_hresult => self.warns.push(format!(
                "{what} returned 0x80070057 (HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)), accepted by --accept-hresult; the documented value is 87"
            )),
            (Some(E_INVALIDARG), None) => self.fail(format!(
                "{what} returned 0x80070057 (HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)), expected raw 87 (ERROR_INVALID_PARAMETER) as documented; --accept-hresult accepts this encoding"
            )),
            (Some(rc), None) => self.fail(format!(
                "{what} returned {}, expected 87 (ERROR_INVALID_PARAMETER)",
                describe(rc)
            )),
        }
    }

    /// Inconclusive with `why`, unless something already failed; the notes say what was seen.
    pub fn inconclusive(mut self, why: impl Into<String>) -> Eval {
        if self.failed() {
            return self.finish("");
        }
        let mut detail = why.into();
        if !self.notes.is_empty() {
            detail.push_str(&format!(" ({})", self.notes.join("; ")));
        }
        self.notes.clear();
        Eval::new(Outcome::Inconclusive, detail)
    }

    /// Pass (or warn) with `summary` when nothing failed; else fail with the first three
    /// things found.
    pub fn finish(self, summary: impl Into<String>) -> Eval {
        self.finish_listing(summary, 3)
    }

    /// As `finish`, listing up to `limit` failures.
    pub fn finish_listing(self, summary: impl Into<String>, limit: usize) -> Eval {
        let mut detail;
        let outcome;
        if !self.fails.is_empty() {
            outcome = Outcome::Fail;
            let n = self.fails.len();
            detail = self
                .fails
                .into_iter()
                .take(limit)
                .collect::<Vec<_>>()
                .join("; ");
            if n > limit {
                detail.push_str(&format!("; and {} more", n - limit));
            }
        } else if !self.warns.is_empty() || !self.compat.is_empty() {
            outcome = Outcome::Warn;
            let mut parts = self.compat.clone();
            if let Some(first) = self.warns.first() {
                let mut w = first.clone();
                if self.warns.len() > 1 {
                    w.push_str(&format!(" (and {} more such codes)", self.warns.len() - 1));
                }
                parts.push(w);
            }
            detail = parts.join("; ");
        } else {
            outcome = Outcome::Pass;
            detail = summary.into();
        }
        if !self.notes.is_empty() && outcome != Outcome::Fail {
            detail.push_str(&format!(" ({})", self.notes.join("; ")));
        }
        Eval::new(outcome, detail)
    }
}

/// Judges the valid Prepare a check depends on. `Err` carries the check's result when there
/// is no live session to test with: inconclusive for a documented environment problem,
/// inconclusive pointing at prepare.ok otherwise (which fails there).
/// The findings to go on with when `prepare` opened a live session, with a note when `end`
/// (what the note calls `what`) did not return S_OK.
pub fn prepared_and_ended<S>(
    r: &Ran<S>,
    prepare: Step,
    end: Step,
    what: &str,
) -> Result<Findings, Eval> {
    live(r.get(prepare))?;
    let mut f = Findings::default();
    f.note_end_not_ok(what, r.get(end));
    Ok(f)
}

/// The one program of a check whose plan builds at most one, once the step `prepare` picks
/// opened a live session; `skipped` says why there is none (an export it needs is absent).
pub fn session_program<'r, 'a, S>(
    ran: &'r [Ran<'a, S>],
    prepare: fn(&S) -> Step,
    skipped: &str,
) -> Result<&'r Ran<'a, S>, Eval> {
    let r = ran.first().ok_or_else(|| Eval::skip(skipped))?;
    live(r.get(prepare(r.steps)))?;
    Ok(r)
}

pub fn live(o: &Observation) -> Result<(), Eval> {
    match (o.rc, o.handle) {
        (Some(0), Some(h)) if h != 0 => Ok(()),
        (Some(0), _) => Err(Eval::new(
            Outcome::Inconclusive,
            "needs a live session, but Prepare returned S_OK with a NULL handle (see prepare.ok)",
        )),
        (Some(rc), _) => Err(Eval::new(
            Outcome::Inconclusive,
            match codes::environment_problem(rc) {
                Some(fix) => format!(
                    "needs a live session, but Prepare returned {}: {fix}",
                    describe(rc)
                ),
                None => format!(
                    "needs a live session, but Prepare returned {} (see prepare.ok)",
                    describe(rc)
                ),
            },
        )),
        (None, _) => Err(Eval::new(
            Outcome::Inconclusive,
            format!(
                "needs a live session, but Prepare did not run: {}",
                o.not_run.as_deref().unwrap_or("unknown reason")
            ),
        )),
    }
}

/// Resource growth between two probe observations, as a sentence part when any. Only growth
/// counts: fewer threads later is a thread of the library's that was still exiting when the
/// first reading was taken (a repeated close is the sentinels' to catch).
pub fn growth(before: &Observation, after: &Observation) -> Option<String> {
    let (a, b) = (before.probe?, after.probe?);
    let mut parts = Vec::new();
    if b.handles > a.handles {
        parts.push(format!("{:+} open handles", b.handles - a.handles));
    }
    if b.threads > a.threads {
        parts.push(format!("{:+} threads", b.threads - a.threads));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A named check's program. Its readings wait patiently for threads the library lets exit on
/// their own: a check has a few readings, and a loaded machine must not turn a slow exit into
/// a failure (the sequence model's thousands of quick readings confirm a suspect patiently).
pub fn program(label: impl Into<String>) -> Program {
    Program::new(label, Vec::new()).patiently()
}

/// The ways a Prepare's arguments can be wrong (REQ-21..23), shared by prepare.bad-args and
/// the sequence model so that both ask the same of a library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadArg {
    NullServer,
    NullPhbc,
    Incremental,
    LogsOnly,
    NullToken,
    NullSize,
}

/// Turns a valid Prepare into one with `bad` arguments.
pub fn spoil(op: &mut Op, bad: BadArg) {
    if let Op::Prepare(p) = op {
        match bad {
            BadArg::NullServer => p.server = Text::Null,
            BadArg::NullPhbc => p.phbc = false,
            BadArg::Incremental => p.btype = codes::BACKUP_TYPE_INCREMENTAL,
            BadArg::LogsOnly => p.btype = codes::BACKUP_TYPE_LOGS_ONLY,
            BadArg::NullToken => p.token = false,
            BadArg::NullSize => p.size = false,
        }
    }
}
