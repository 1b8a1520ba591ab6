//! The oracle: replays a sequence's observations against a precise model of the library's
//! state and says whether every answer is one the documentation allows. Exact codes are asked
//! only where facts.md documents them or design §4 fixes them (cited at each rule); elsewhere
//! the rule is "a failure code" or "anything but a crash or a hang".

use super::machine::*;
use crate::checks::Ctx;
use ntdsbcli_harness::codes::{
    self, describe, ERROR_HANDLE_EOF, ERROR_INVALID_PARAMETER, E_INVALIDARG, HR_BACKUP_IN_PROGRESS,
    HR_INVALID_HANDLE, HR_INVALID_PARAM,
};
use ntdsbcli_harness::program::{Garbage, Hv, ListKind, Obs, Op, Program, Text};
use ntdsbcli_harness::worker::{DeathReport, RunResult};
use proptest_state_machine::ReferenceStateMachine;

/// What a step must return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// S_OK and a non-NULL handle that no live session has (REQ-20, REQ-13).
    NewHandle,
    Exact(i32),
    /// ERROR_INVALID_PARAMETER: raw 87, or 0x80070057 under --accept-hresult.
    InvalidParam,
    NonZero,
    AnyOf(Vec<i32>),
    Anything,
    /// Concurrent Ends: exactly one S_OK, the rest ERROR_INVALID_PARAMETER.
    OneWinner,
    /// Concurrent Ends on a value that is not live: ERROR_INVALID_PARAMETER for every thread.
    NoWinner,
    /// A buffer still holds the bytes it had when the library returned it (REQ-11).
    SameBytes(Vec<u8>),
    /// No return value to check (DsBackupFree).
    NoCode,
}

impl Expect {
    pub fn describe(&self) -> String {
        match self {
            Expect::NewHandle => "S_OK with a new, non-NULL handle".into(),
            Expect::Exact(c) => describe(*c),
            Expect::InvalidParam => describe(ERROR_INVALID_PARAMETER),
            Expect::NonZero => "a failure code (not 0)".into(),
            Expect::AnyOf(v) => v
                .iter()
                .map(|c| describe(*c))
                .collect::<Vec<_>>()
                .join(" or "),
            Expect::Anything => "anything but a crash or a hang".into(),
            Expect::OneWinner => "exactly one S_OK, the rest 87 (ERROR_INVALID_PARAMETER)".into(),
            Expect::NoWinner => "87 (ERROR_INVALID_PARAMETER) for every thread".into(),
            Expect::SameBytes(_) => "the bytes the buffer held when it was returned".into(),
            Expect::NoCode => "no crash".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Step `step` answered `got` where the model allows `want`.
    Mismatch {
        step: usize,
        got: String,
        want: String,
    },
    /// The sequence did not leave handles and threads where it found them.
    Leak { what: String },
    /// Ending what was still live at the end failed.
    Cleanup { got: String },
    Died {
        step: Option<usize>,
        death: DeathReport,
    },
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Mismatch { .. } => "mismatch",
            Failure::Leak { .. } => "leak",
            Failure::Cleanup { .. } => "cleanup",
            Failure::Died { death, .. } if death.death.is_timeout() => "timeout",
            Failure::Died { .. } => "crash",
        }
    }
}

#[derive(Default)]
pub struct Judgement {
    /// The expectation of each step up to the failing one (for the repro).
    pub expects: Vec<Expect>,
    pub failure: Option<Failure>,
    /// 0x80070057 was accepted somewhere under --accept-hresult.
    pub hresult_accepted: bool,
    /// A documented environment problem made the sequence meaningless.
    pub environment: Option<String>,
}

fn junk_value(j: Junk) -> Hv {
    match j {
        Junk::Null => Hv::Null,
        Junk::Small => Hv::Garbage(Garbage::Small(1)),
        Junk::AllOnes => Hv::Garbage(Garbage::AllOnes),
        Junk::Unmapped => Hv::Garbage(Garbage::Unmapped),
        Junk::KernelHalf => Hv::Garbage(Garbage::KernelHalf),
        Junk::NonCanonical => Hv::Garbage(Garbage::NonCanonical),
        Junk::LivePlusOne(i) => Hv::Garbage(Garbage::LivePlusOne(i as u8)),
        Junk::Zeroed => Hv::Garbage(Garbage::Zeroed),
        Junk::OnesFilled => Hv::Garbage(Garbage::OnesFilled),
        Junk::Random => Hv::Garbage(Garbage::Random(0x5EED)),
    }
}

fn restore_slot(r: usize) -> Hv {
    Hv::Slot(RESTORE_BASE + r as u8)
}

/// The op that performs transition `t` in state `st` (before `t` applies).
pub fn op_of(ctx: &Ctx, st: &State, t: &T) -> Op {
    let sess = |i: usize| Hv::Slot(i as u8);
    let open = |wide, h, name| Op::OpenFile {
        wide,
        h,
        name,
        hint: 24_576,
        size: true,
    };
    let names = |kind, wide, h, buf| Op::Names {
        kind,
        wide,
        h,
        out: true,
        size: true,
        buf,
    };
    match *t {
        T::Prepare { wide } => ctx.prepare_form(wide, st.sessions.len() as u8, st.bufs.len() as u8),
        T::PrepareBad { wide, bad } => {
            let mut op = ctx.prepare_form(wide, SCRATCH_SLOT, SCRATCH_BUF);
            crate::checks::spoil(&mut op, bad);
            op
        }
        T::End { session } => Op::End { h: sess(session) },
        T::EndJunk { junk } => Op::End {
            h: junk_value(junk),
        },
        T::EndRestore { restore } => Op::End {
            h: restore_slot(restore),
        },
        T::EndConcurrent { session } => Op::EndConcurrent {
            h: sess(session),
            threads: CONCURRENT_THREADS,
        },
        T::Names {
            session,
            logs,
            wide,
        } => names(
            if logs {
                ListKind::BackupLogs
            } else {
                ListKind::DatabaseNames
            },
            wide,
            sess(session),
            st.bufs.len() as u8,
        ),
        T::Open {
            session,
            list,
            wide,
        } => open(
            wide,
            sess(session),
            Text::Entry {
                buf: list as u8,
                index: 0,
            },
        ),
        T::OpenUnknown { session, wide } => {
            open(wide, sess(session), Text::Lit(UNKNOWN_ATTACHMENT.into()))
        }
        T::Read { session, size } => Op::Read {
            h: sess(session),
            cb: size.bytes(),
            pcb: true,
        },
        T::ReadToEnd { session } => Op::ReadToEnd {
            h: sess(session),
            cb: 65_536,
        },
        T::Close { session } => Op::Close { h: sess(session) },
        T::Truncate { session } => Op::Truncate { h: sess(session) },
        T::Free { buf } => Op::Free {
            buf: Some(buf as u8),
        },
        T::FreeNull => Op::Free { buf: None },
        T::Peek { buf } => Op::Peek { buf: buf as u8 },
        T::RestorePrepare { wide, token } => Op::RestorePrepare {
            wide,
            server: ctx.server(),
            token: token.map(|b| b as u8),
            slot: RESTORE_BASE + st.restores.len() as u8,
        },
        T::RestoreEnd { restore } => Op::RestoreEnd {
            h: restore_slot(restore),
        },
        T::Cross { restore, call } => {
            let h = restore_slot(restore);
            let wide = st.surface.open.1 || !st.surface.open.0;
            match call {
                Cross::OpenFile => open(wide, h, Text::Lit(UNKNOWN_ATTACHMENT.into())),
                Cross::Read => Op::Read {
                    h,
                    cb: 24_576,
                    pcb: true,
                },
                Cross::Close => Op::Close { h },
                Cross::Names => names(
                    ListKind::DatabaseNames,
                    st.surface.names.1 || !st.surface.names.0,
                    h,
                    SCRATCH_BUF,
                ),
                Cross::Truncate => Op::Truncate { h },
            }
        }
    }
}

/// A sequence as a program: probe, the calls, clean-up, probe.
pub fn program(ctx: &Ctx, init: &State, transitions: &[T], label: String) -> Program {
    let mut p = Program::new(label, Vec::new());
    p.push("start", Op::Probe);
    let mut st = init.clone();
    for (i, t) in transitions.iter().enumerate() {
        p.push(format!("t{i}"), op_of(ctx, &st, t));
        st = Machine::apply(st, t);
    }
    p.push("cleanup", Op::Cleanup).push("end", Op::Probe);
    p
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Att {
    None,
    Open,
    Eof,
}

#[derive(Default)]
struct Precise {
    sessions: Vec<(bool, Att, u64)>,
    bufs: Vec<Option<Vec<u8>>>,
    restores: Vec<bool>,
}

/// Judges one run of a sequence.
pub fn judge(ctx: &Ctx, init: &State, transitions: &[T], result: &RunResult) -> Judgement {
    let mut j = Judgement::default();
    let obs = match result {
        RunResult::Done(obs) => obs,
        RunResult::Died(d) => {
            let step =
                d.op.and_then(|o| o.checked_sub(1))
                    .filter(|&s| s < transitions.len());
            // The expectations up to the death still matter for the repro.
            j.expects = expectations_without_observations(init, transitions);
            j.failure = Some(Failure::Died {
                step,
                death: d.clone(),
            });
            return j;
        }
    };
    let mut p = Precise::default();
    let mut st = init.clone();
    for (i, t) in transitions.iter().enumerate() {
        let o = &obs[i + 1];
        let in_use = o
            .handle
            .is_some_and(|h| p.sessions.iter().any(|s| s.0 && s.2 == h));
        let expect = step(&mut p, &st, t, o, &mut j);
        if j.environment.is_some() {
            return j;
        }
        let verdict = check(ctx, &expect, o, in_use, &mut j.hresult_accepted);
        j.expects.push(expect);
        if let Err((got, want)) = verdict {
            j.failure = Some(Failure::Mismatch { step: i, got, want });
            return j;
        }
        st = Machine::apply(st, t);
    }
    let cleanup = &obs[transitions.len() + 1];
    if let Some(bad) = cleanup.codes.iter().find(|&&c| c != 0) {
        j.failure = Some(Failure::Cleanup {
            got: describe(*bad),
        });
        return j;
    }
    let (a, b) = (obs[0].probe, obs[transitions.len() + 2].probe);
    if let (Some(a), Some(b)) = (a, b) {
        let mut what = Vec::new();
        if a.handles != b.handles {
            what.push(format!("{:+} open handles", b.handles - a.handles));
        }
        if a.threads != b.threads {
            what.push(format!("{:+} threads", b.threads - a.threads));
        }
        if !what.is_empty() {
            j.failure = Some(Failure::Leak {
                what: what.join(", "),
            });
        }
    }
    j
}

/// The expectations when no observation can refine them (for a sequence that died).
fn expectations_without_observations(init: &State, transitions: &[T]) -> Vec<Expect> {
    let mut p = Precise::default();
    let mut j = Judgement::default();
    let mut st = init.clone();
    let mut out = Vec::new();
    for t in transitions {
        // Assume each call answered as the model predicts.
        let guess = Obs {
            rc: Some(0),
            handle: Some(1 + out.len() as u64),
            ..Obs::default()
        };
        out.push(step(&mut p, &st, t, &guess, &mut j));
        st = Machine::apply(st, t);
    }
    out
}

/// The expectation for `t`, updating the precise state from what was observed.
fn step(p: &mut Precise, st: &State, t: &T, o: &Obs, j: &mut Judgement) -> Expect {
    let live = |p: &Precise, s: usize| p.sessions.get(s).is_some_and(|x| x.0);
    let att = |p: &Precise, s: usize| p.sessions.get(s).map(|x| x.1).unwrap_or(Att::None);
    let rc = o.rc;
    match *t {
        // REQ-20: S_OK and a non-NULL handle. A second session may be refused with
        // hrBackupInProgress (design §4, prepare.distinct).
        T::Prepare { .. } => {
            let h = o.handle.unwrap_or(0);
            let ok = rc == Some(0) && h != 0;
            let others_live = p.sessions.iter().any(|s| s.0);
            let expect = if rc == Some(HR_BACKUP_IN_PROGRESS) && others_live {
                Expect::Exact(HR_BACKUP_IN_PROGRESS)
            } else {
                if let Some(fix) = rc.and_then(codes::environment_problem) {
                    j.environment = Some(format!(
                        "Prepare returned {}: {fix}",
                        describe(rc.unwrap_or(0))
                    ));
                }
                Expect::NewHandle
            };
            p.sessions.push((ok, Att::None, h));
            p.bufs.push(if ok { o.bytes.clone() } else { None });
            expect
        }
        // REQ-21..23: ERROR_INVALID_PARAMETER for server, phbc and INCREMENTAL; hrInvalidParam
        // for the token pointers; LOGS_ONLY is unsupported with no documented code.
        T::PrepareBad { bad, .. } => {
            // Whether access is checked before the arguments is undocumented: an environment
            // code here says the environment denies Prepare, not that the library is wrong.
            if let Some(fix) = rc.and_then(codes::environment_problem) {
                j.environment = Some(format!(
                    "Prepare returned {}: {fix}",
                    describe(rc.unwrap_or(0))
                ));
            }
            match bad {
                Bad::NullServer | Bad::NullPhbc | Bad::Incremental => Expect::InvalidParam,
                Bad::NullToken | Bad::NullSize => Expect::Exact(HR_INVALID_PARAM),
                Bad::LogsOnly => Expect::NonZero,
            }
        }
        // REQ-02 live -> S_OK; REQ-03/04/05/06 anything else -> ERROR_INVALID_PARAMETER.
        T::End { session } => {
            if live(p, session) {
                p.sessions[session].0 = false;
                Expect::Exact(0)
            } else {
                Expect::InvalidParam
            }
        }
        T::EndJunk { .. } | T::EndRestore { .. } => Expect::InvalidParam,
        T::EndConcurrent { session } => {
            if live(p, session) {
                p.sessions[session].0 = false;
                Expect::OneWinner
            } else {
                Expect::NoWinner
            }
        }
        // REQ-51/52: a live handle gives S_OK and a list; REQ-12: an ended one 87.
        T::Names { session, .. } => {
            let ok = live(p, session);
            if st.sessions[session].live {
                p.bufs.push(if ok && rc == Some(0) {
                    o.bytes.clone()
                } else {
                    None
                });
            }
            if ok {
                Expect::Exact(0)
            } else {
                Expect::InvalidParam
            }
        }
        // REQ-40/42/12: opening a listed attachment on a live handle with nothing open
        // succeeds; a second open fails (no code documented); an ended handle gives 87.
        T::Open { session, .. } => {
            if o.not_run.is_some() {
                return Expect::NoCode;
            }
            if !live(p, session) {
                Expect::InvalidParam
            } else if att(p, session) == Att::None {
                if rc == Some(0) {
                    p.sessions[session].1 = Att::Open;
                }
                Expect::Exact(0)
            } else {
                Expect::NonZero
            }
        }
        T::OpenUnknown { session, .. } => {
            if live(p, session) {
                Expect::NonZero
            } else {
                Expect::InvalidParam
            }
        }
        // REQ-41/44/12: bad sizes give 87 on an open file; EOF gives ERROR_HANDLE_EOF.
        T::Read { session, size } => {
            if !live(p, session) {
                return Expect::InvalidParam;
            }
            match (att(p, session), size.valid()) {
                (Att::None, _) => Expect::NonZero,
                (_, false) => Expect::InvalidParam,
                (Att::Eof, true) => Expect::Exact(ERROR_HANDLE_EOF),
                (Att::Open, true) => {
                    if rc == Some(ERROR_HANDLE_EOF) {
                        p.sessions[session].1 = Att::Eof;
                    }
                    Expect::AnyOf(vec![0, ERROR_HANDLE_EOF])
                }
            }
        }
        T::ReadToEnd { session } => {
            if !live(p, session) {
                return Expect::InvalidParam;
            }
            match att(p, session) {
                Att::None => Expect::NonZero,
                _ => {
                    p.sessions[session].1 = Att::Eof;
                    Expect::Exact(ERROR_HANDLE_EOF)
                }
            }
        }
        // REQ-43: Close with nothing open -> hrInvalidHandle; invalid hbc -> 87.
        T::Close { session } => {
            if !live(p, session) {
                return Expect::InvalidParam;
            }
            match att(p, session) {
                Att::None => Expect::Exact(HR_INVALID_HANDLE),
                _ => {
                    p.sessions[session].1 = Att::None;
                    Expect::Exact(0)
                }
            }
        }
        // REQ-55: an invalid hbc gives 87; on a live one no code is documented.
        T::Truncate { session } => {
            if live(p, session) {
                Expect::Anything
            } else {
                Expect::InvalidParam
            }
        }
        // REQ-30/31: DsBackupFree returns nothing; it must not crash.
        T::Free { buf } => {
            if let Some(b) = p.bufs.get_mut(buf) {
                *b = None;
            }
            Expect::NoCode
        }
        T::FreeNull => Expect::NoCode,
        // REQ-11: a returned buffer keeps its bytes until the caller frees it, End or not.
        T::Peek { buf } => match p.bufs.get(buf).cloned().flatten() {
            Some(bytes) => Expect::SameBytes(bytes),
            None => Expect::NoCode,
        },
        // Restore: whether Prepare succeeds here is the environment's business (A-5 aside).
        T::RestorePrepare { .. } => {
            p.restores.push(rc == Some(0) && o.handle.unwrap_or(0) != 0);
            Expect::Anything
        }
        // REQ-71: DsRestoreEnd -> S_OK on a live restore handle, 87 otherwise.
        T::RestoreEnd { restore } => {
            if p.restores.get(restore).copied().unwrap_or(false) {
                p.restores[restore] = false;
                Expect::Exact(0)
            } else {
                Expect::InvalidParam
            }
        }
        // backup functions on a restore handle are undocumented: only no crash.
        T::Cross { .. } => Expect::Anything,
    }
}

/// Compares one observation with its expectation: Err((got, want)) on a mismatch.
fn check(
    ctx: &Ctx,
    e: &Expect,
    o: &Obs,
    in_use: bool,
    hresult: &mut bool,
) -> Result<(), (String, String)> {
    let want = || e.describe();
    let mut invalid = |rc: i32| -> bool {
        if rc == ERROR_INVALID_PARAMETER {
            true
        } else if rc == E_INVALIDARG && ctx.accept_hresult {
            *hresult = true;
            true
        } else {
            false
        }
    };
    if o.intact == Some(false) {
        return Err((
            "a write into the memory passed as the handle".into(),
            "no write".into(),
        ));
    }
    let rc = o.rc;
    let got = || rc.map(describe).unwrap_or_else(|| "no call".into());
    let ok = match e {
        Expect::NewHandle => {
            let h = o.handle.unwrap_or(0);
            if rc == Some(0) && (h == 0 || in_use) {
                let what = if h == 0 {
                    "a NULL handle"
                } else {
                    "the handle of a live session"
                };
                return Err((format!("S_OK with {what}"), want()));
            }
            rc == Some(0)
        }
        Expect::Exact(c) => rc == Some(*c),
        Expect::InvalidParam => rc.is_some_and(&mut invalid),
        Expect::NonZero => rc.is_some_and(|c| c != 0),
        Expect::AnyOf(v) => rc.is_some_and(|c| v.contains(&c)),
        Expect::Anything | Expect::NoCode => true,
        Expect::OneWinner | Expect::NoWinner => {
            let wins = o.codes.iter().filter(|&&c| c == 0).count();
            let rest_ok = o.codes.iter().all(|&c| c == 0 || invalid(c));
            let want_wins = usize::from(*e == Expect::OneWinner);
            if wins != want_wins || !rest_ok {
                return Err((
                    format!(
                        "{} threads got {}",
                        o.codes.len(),
                        o.codes
                            .iter()
                            .map(|&c| describe(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    want(),
                ));
            }
            true
        }
        Expect::SameBytes(b) => {
            if o.bytes.as_ref() != Some(b) {
                return Err((
                    "different bytes: the buffer was freed or reused".into(),
                    want(),
                ));
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err((got(), want()))
    }
}
