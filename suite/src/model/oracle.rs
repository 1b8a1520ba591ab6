//! The oracle: replays a sequence's observations against a precise model of the library's
//! state and says whether every answer is one the documentation allows. Exact codes are asked
//! only where docs/spec.md documents them or design §4 fixes them (cited at each rule); elsewhere
//! the rule is "a failure code" or "anything but a crash or a hang".

pub use super::layout::program;
use super::layout::{op_of, Layout};
use super::machine::*;
pub use super::verdict::{Expect, Failure, FailureKind, Judgement};
use crate::checks::Ctx;
use ntdsbcli_harness::codes::{
    self, describe, ERROR_HANDLE_EOF, ERROR_INVALID_PARAMETER, E_INVALIDARG, HR_INVALID_HANDLE,
    HR_INVALID_PARAM,
};
use ntdsbcli_harness::program::{
    Close, End, EndConcurrent, Names, Read, ReadToEnd, RestoreEnd, Truncate,
};
use ntdsbcli_harness::program::{HandleArg, Observation, Op, OpenFile, Prepare, RestorePrepare};
use ntdsbcli_harness::worker::RunResult;
use proptest_state_machine::ReferenceStateMachine;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attachment {
    None,
    Open,
    Eof,
}

/// A session as the oracle knows it. Sessions are found by handle value: a value equal to a
/// live session's handle *is* that session, whichever slot it was written to (design §5).
#[derive(Clone, Debug)]
struct Session {
    live: bool,
    attachment: Attachment,
    handle: u64,
    /// The handle slot the session's Prepare wrote (for the repro).
    slot: u8,
    /// A DsRestoreEnd was given this session's value: whether it ended is unknown.
    uncertain: bool,
}

#[derive(Default)]
struct Precise {
    sessions: Vec<Session>,
    bufs: Vec<Option<Vec<u8>>>,
    /// One per DsRestorePrepare.
    restores: Vec<RestoreHandle>,
}

/// A handle a DsRestorePrepare returned.
#[derive(Clone, Copy, Debug)]
struct RestoreHandle {
    live: bool,
    handle: u64,
    /// DsBackupEnd returned S_OK on it: the clean-up's DsRestoreEnd may find it gone.
    ended_by_backup_end: bool,
}

impl Precise {
    /// The live session whose handle is `v`.
    fn target(&self, v: Option<u64>) -> Option<usize> {
        let v = v.filter(|&v| v != 0)?;
        self.sessions.iter().position(|s| s.live && s.handle == v)
    }

    fn restore_target(&self, v: Option<u64>) -> Option<usize> {
        let v = v.filter(|&v| v != 0)?;
        self.restores.iter().position(|r| r.live && r.handle == v)
    }
}

/// Judges one run of a sequence.
pub fn judge(ctx: &Ctx, init: &State, transitions: &[Transition], result: &RunResult) -> Judgement {
    let mut j = Judgement::default();
    let obs = match result {
        RunResult::Done(obs) => obs,
        RunResult::Died(d) => {
            let layout = Layout::of_sequence(transitions);
            let step = d.op.and_then(|o| layout.step_of_op(o));
            // The expectations up to the death still matter for the repro.
            let (expects, targets) = expectations_without_observations(ctx, init, transitions);
            j.expects = expects;
            j.targets = targets;
            j.failure = Some(Failure::Died {
                step,
                death: d.clone(),
            });
            return j;
        }
    };
    let layout = Layout::of_sequence(transitions);
    let mut p = Precise::default();
    let mut st = init.clone();
    for (i, t) in transitions.iter().enumerate() {
        let o = &obs[layout.step(i)];
        let in_use = p.target(o.handle).is_some();
        let k = p.target(o.arg);
        j.targets.push(k.map(|k| p.sessions[k].slot));
        let expect = step(&mut p, &st, t, o, k, &mut j);
        if j.environment.is_some() {
            return j;
        }
        let verdict = judge_answer(ctx, &expect, o, in_use, &mut j);
        j.expects.push(expect);
        if let Err((got, want)) = verdict {
            j.failure = Some(Failure::Mismatch { step: i, got, want });
            return j;
        }
        st = Machine::apply(st, t);
    }
    let cleanup = &obs[layout.cleanup()];
    // A session given to DsRestoreEnd, or a restore handle DsBackupEnd ended, may be over
    // already: 87 at clean-up is allowed for as many of them.
    let uncertain = p.sessions.iter().filter(|s| s.live && s.uncertain).count()
        + p.restores.iter().filter(|r| r.ended_by_backup_end).count();
    let mut excused = 0;
    for &c in &cleanup.codes {
        if c == 0 {
            continue;
        }
        if c == ERROR_INVALID_PARAMETER && excused < uncertain {
            excused += 1;
            continue;
        }
        j.failure = Some(Failure::Cleanup { got: describe(c) });
        return j;
    }
    if let Some(what) = crate::checks::growth(&obs[Layout::START], &obs[layout.end()]) {
        j.failure = Some(Failure::Leak { what });
    }
    j
}

/// The handle an op passes, as a slot or NULL (garbage is never a live value).
fn slot_arg(op: &Op) -> Option<HandleArg> {
    match op {
        Op::End(End { h })
        | Op::EndConcurrent(EndConcurrent { h, .. })
        | Op::Names(Names { h, .. })
        | Op::OpenFile(OpenFile { h, .. })
        | Op::Read(Read { h, .. })
        | Op::ReadToEnd(ReadToEnd { h, .. })
        | Op::Close(Close { h })
        | Op::Truncate(Truncate { h })
        | Op::RestoreEnd(RestoreEnd { h }) => Some(h.clone()),
        _ => None,
    }
}

/// The expectations when no observation can refine them (for a sequence that died): every
/// call is assumed to answer as the model predicts, with a distinct value per new handle.
fn expectations_without_observations(
    ctx: &Ctx,
    init: &State,
    transitions: &[Transition],
) -> (Vec<Expect>, Vec<Option<u8>>) {
    let mut p = Precise::default();
    let mut j = Judgement::default();
    let mut st = init.clone();
    let mut values = [0u64; ntdsbcli_harness::program::SLOTS];
    let (mut out, mut targets) = (Vec::new(), Vec::new());
    for (i, t) in transitions.iter().enumerate() {
        let op = op_of(ctx, &st, t);
        let mut guess = Observation {
            rc: Some(0),
            ..Observation::default()
        };
        match &op {
            Op::Prepare(Prepare {
                slot, phbc: true, ..
            })
            | Op::RestorePrepare(RestorePrepare { slot, .. }) => {
                let v = 0x1000 + 0x10 * i as u64;
                values[*slot as usize] = v;
                guess.handle = Some(v);
            }
            _ => {}
        }
        guess.arg = slot_arg(&op).map(|h| match h {
            HandleArg::Slot(s) => values[s as usize],
            _ => 0,
        });
        let k = p.target(guess.arg);
        targets.push(k.map(|k| p.sessions[k].slot));
        out.push(step(&mut p, &st, t, &guess, k, &mut j));
        st = Machine::apply(st, t);
    }
    (out, targets)
}

/// What a call on a backup session (found by value) must return; shared by the backup calls
/// and by backup calls given a restore handle whose value is a live backup session.
#[derive(Clone, Copy, Debug)]
enum SessionCall {
    Names { keep: bool },
    Open,
    OpenUnknown,
    Read(ReadSize),
    ReadToEnd,
    Close,
    Truncate,
}

fn on_session(p: &mut Precise, k: Option<usize>, call: SessionCall, o: &Observation) -> Expect {
    let rc = o.rc;
    let Some(k) = k else {
        // REQ-12 / REQ-03: a value that is no live handle gives 87.
        if let SessionCall::Names { keep: true } = call {
            p.bufs.push(None);
        }
        return Expect::InvalidParam;
    };
    let s = &mut p.sessions[k];
    match call {
        // REQ-51/52: a live handle gives S_OK and a list.
        SessionCall::Names { keep } => {
            if keep {
                p.bufs
                    .push((rc == Some(0)).then(|| o.bytes.clone()).flatten());
            }
            Expect::Exact(0)
        }
        // REQ-40/45: a listed attachment opens on a live handle with nothing open. A second
        // open is undocumented (REQ-42, A-7): accepting it is only a warning.
        SessionCall::Open => {
            if s.attachment == Attachment::None {
                if rc == Some(0) {
                    s.attachment = Attachment::Open;
                }
                Expect::Exact(0)
            } else {
                if rc == Some(0) {
                    s.attachment = Attachment::Open;
                }
                Expect::Lenient {
                    want: Box::new(Expect::NonZero),
                    warning: "DsBackupOpenFile with a file already open succeeded; the documentation allows one open file per handle but names no code for a second open (A-7)".into(),
                }
            }
        }
        // REQ-40: an attachment the library did not list is an invalid name.
        SessionCall::OpenUnknown => Expect::NonZero,
        // REQ-41/44: bad sizes give 87 on an open file; EOF gives ERROR_HANDLE_EOF. Reading
        // with no file open has no documented code: success there is only a warning.
        SessionCall::Read(size) => match (s.attachment, size.valid()) {
            (Attachment::None, _) => no_file_open(),
            (_, false) => Expect::InvalidParam,
            (Attachment::Eof, true) => Expect::Exact(ERROR_HANDLE_EOF),
            (Attachment::Open, true) => {
                if rc == Some(ERROR_HANDLE_EOF) {
                    s.attachment = Attachment::Eof;
                }
                Expect::AnyOf(vec![0, ERROR_HANDLE_EOF])
            }
        },
        SessionCall::ReadToEnd => match s.attachment {
            Attachment::None => no_file_open(),
            _ => {
                s.attachment = Attachment::Eof;
                Expect::Exact(ERROR_HANDLE_EOF)
            }
        },
        // REQ-43: Close with nothing open -> hrInvalidHandle.
        SessionCall::Close => match s.attachment {
            Attachment::None => Expect::Exact(HR_INVALID_HANDLE),
            _ => {
                s.attachment = Attachment::None;
                Expect::Exact(0)
            }
        },
        // REQ-55: on a live handle no code is documented.
        SessionCall::Truncate => Expect::Anything,
    }
}

fn no_file_open() -> Expect {
    Expect::Lenient {
        want: Box::new(Expect::NonZero),
        warning: "DsBackupRead with no file open succeeded; the documentation names no code for it"
            .into(),
    }
}

/// REQ-02 live -> S_OK; REQ-03/04/05/06 any other value -> ERROR_INVALID_PARAMETER.
fn end_value(p: &mut Precise, k: Option<usize>, concurrent: bool) -> Expect {
    match k {
        Some(k) => {
            let s = &mut p.sessions[k];
            s.live = false;
            match (concurrent, s.uncertain) {
                (true, _) => Expect::OneWinner,
                (false, true) => Expect::AnyOf(vec![0, ERROR_INVALID_PARAMETER]),
                (false, false) => Expect::Exact(0),
            }
        }
        None if concurrent => Expect::NoWinner,
        None => Expect::InvalidParam,
    }
}

/// The expectation for `t`, updating the precise state from what was observed. `k` is the
/// live session whose handle the call was given, if any.
/// Long on purpose: one arm per transition, each the model's rule for that call, so the
/// rules read side by side; the helpers above hold what the arms share.
fn step(
    p: &mut Precise,
    st: &State,
    t: &Transition,
    o: &Observation,
    k: Option<usize>,
    j: &mut Judgement,
) -> Expect {
    let rc = o.rc;
    match *t {
        // REQ-20: S_OK and a non-NULL handle. While another session is live, a library (or
        // its server) that runs one backup at a time may refuse with a documented code
        // (design §4, prepare.distinct); the sequence goes on without that session.
        Transition::Prepare { .. } => {
            let h = o.handle.unwrap_or(0);
            let ok = rc == Some(0) && h != 0;
            let others_live =
                p.sessions.iter().any(|s| s.live) || p.restores.iter().any(|r| r.live);
            let refused = rc.filter(|&rc| codes::refuses_another_session(rc));
            let expect = if let (Some(code), true) = (refused, others_live) {
                Expect::Exact(code)
            } else {
                // Out of descriptors, the library's refusal is its own doing, whatever it says.
                if let Some(fix) = rc
                    .filter(|_| !o.no_descriptors)
                    .and_then(codes::environment_problem)
                {
                    j.environment = Some(format!(
                        "Prepare returned {}: {fix}",
                        describe(rc.unwrap_or(0))
                    ));
                }
                Expect::NewHandle
            };
            p.sessions.push(Session {
                live: ok,
                attachment: Attachment::None,
                handle: h,
                slot: st.sessions.len() as u8,
                uncertain: false,
            });
            p.bufs.push(if ok { o.bytes.clone() } else { None });
            expect
        }
        // REQ-21..23: ERROR_INVALID_PARAMETER for server, phbc and INCREMENTAL; hrInvalidParam
        // for the token pointers. LOGS_ONLY is "not supported" with no code: accepting it is a
        // compatibility warning, and the session it opens is live like any other.
        Transition::PrepareBad { bad, .. } => {
            // Whether access is checked before the arguments is undocumented: an environment
            // code here says the environment denies Prepare, not that the library is wrong.
            if let Some(fix) = rc.and_then(codes::environment_problem) {
                j.environment = Some(format!(
                    "Prepare returned {}: {fix}",
                    describe(rc.unwrap_or(0))
                ));
            }
            let h = o.handle.unwrap_or(0);
            if rc == Some(0) && h != 0 && p.target(Some(h)).is_none() {
                p.sessions.push(Session {
                    live: true,
                    attachment: Attachment::None,
                    handle: h,
                    slot: SCRATCH_SLOT,
                    uncertain: false,
                });
            }
            match bad {
                Bad::NullServer | Bad::NullPhbc | Bad::Incremental => Expect::InvalidParam,
                Bad::NullToken | Bad::NullSize => Expect::Exact(HR_INVALID_PARAM),
                Bad::LogsOnly => Expect::Lenient {
                    want: Box::new(Expect::NonZero),
                    warning: "BACKUP_TYPE_LOGS_ONLY is documented as not supported, with no code; this library accepts it".into(),
                },
            }
        }
        Transition::End { .. } | Transition::EndInvalid { .. } => end_value(p, k, false),
        // DsBackupEnd on a live restore handle is undocumented. 87 is the careful
        // answer; a library that ends the restore session with it gets a warning, and the
        // restore handle is over. A value that is also a live backup session is that session.
        Transition::EndRestore { .. } => match (k, p.restore_target(o.arg)) {
            (None, Some(r)) => {
                if rc == Some(0) {
                    p.restores[r].live = false;
                    p.restores[r].ended_by_backup_end = true;
                }
                Expect::Lenient {
                    want: Box::new(Expect::InvalidParam),
                    warning: "DsBackupEnd on a restore handle did not return 87; the documentation does not say what it does with one (A-5)".into(),
                }
            }
            _ => end_value(p, k, false),
        },
        Transition::EndConcurrent { .. } => end_value(p, k, true),
        Transition::Names { session, .. } => {
            // A list buffer exists wherever the abstract model made one.
            on_session(
                p,
                k,
                SessionCall::Names {
                    keep: st.sessions[session].live,
                },
                o,
            )
        }
        Transition::Open { .. } => {
            if o.not_run.is_some() {
                return Expect::NoCode;
            }
            on_session(p, k, SessionCall::Open, o)
        }
        Transition::OpenUnknown { .. } => on_session(p, k, SessionCall::OpenUnknown, o),
        Transition::Read { size, .. } => on_session(p, k, SessionCall::Read(size), o),
        Transition::ReadToEnd { .. } => on_session(p, k, SessionCall::ReadToEnd, o),
        Transition::Close { .. } => on_session(p, k, SessionCall::Close, o),
        Transition::Truncate { .. } => on_session(p, k, SessionCall::Truncate, o),
        // REQ-30/31: DsBackupFree returns nothing; it must not crash.
        Transition::Free { buf } => {
            if let Some(b) = p.bufs.get_mut(buf) {
                *b = None;
            }
            Expect::NoCode
        }
        Transition::FreeNull => Expect::NoCode,
        // REQ-11: a returned buffer keeps its bytes until the caller frees it, End or not.
        Transition::Peek { buf } => match p.bufs.get(buf).cloned().flatten() {
            Some(bytes) => Expect::SameBytes(bytes),
            None => Expect::NoCode,
        },
        // Restore: whether Prepare succeeds here is the environment's business (A-5 aside).
        Transition::RestorePrepare { .. } => {
            let h = o.handle.unwrap_or(0);
            p.restores.push(RestoreHandle {
                live: rc == Some(0) && h != 0,
                handle: h,
                ended_by_backup_end: false,
            });
            Expect::Anything
        }
        // REQ-71: DsRestoreEnd -> S_OK on a live restore handle, 87 on a value that is no live
        // handle. On the value of a live backup session it is undocumented.
        Transition::RestoreEnd { .. } => {
            if let Some(r) = p.restore_target(o.arg) {
                p.restores[r].live = false;
                Expect::Exact(0)
            } else if let Some(k) = k {
                p.sessions[k].uncertain = true;
                Expect::Anything
            } else {
                Expect::InvalidParam
            }
        }
        // backup functions on a restore handle are undocumented: only no crash. A value
        // that is also a live backup session's handle is that session.
        Transition::Cross { call, .. } => {
            if k.is_none() || p.sessions[k.unwrap_or(0)].uncertain {
                return Expect::Anything;
            }
            let call = match call {
                CrossCall::OpenFile => SessionCall::OpenUnknown,
                CrossCall::Read => SessionCall::Read(ReadSize::Min),
                CrossCall::Close => SessionCall::Close,
                CrossCall::Names => SessionCall::Names { keep: false },
                CrossCall::Truncate => SessionCall::Truncate,
            };
            on_session(p, k, call, o)
        }
    }
}

/// Compares one observation with its expectation: Err((got, want)) on a mismatch.
fn judge_answer(
    ctx: &Ctx,
    e: &Expect,
    o: &Observation,
    in_use: bool,
    j: &mut Judgement,
) -> Result<(), (String, String)> {
    if let Expect::Lenient { want, warning } = e {
        if judge_answer(ctx, want, o, in_use, j).is_err() && !j.warnings.contains(warning) {
            j.warnings.push(warning.clone());
        }
        return Ok(());
    }
    let want = || e.describe();
    let hresult = &mut j.hresult_accepted;
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
        Expect::NewHandle => new_handle(o, in_use).map_err(|got| (got, want()))?,
        Expect::Exact(c) => rc == Some(*c),
        Expect::InvalidParam => rc.is_some_and(&mut invalid),
        Expect::NonZero => rc.is_some_and(|c| c != 0),
        Expect::AnyOf(v) => rc.is_some_and(|c| v.contains(&c)),
        Expect::Anything | Expect::NoCode | Expect::Lenient { .. } => true,
        Expect::OneWinner | Expect::NoWinner => {
            winners(o, usize::from(*e == Expect::OneWinner), &mut invalid)
                .map_err(|got| (got, want()))?
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

/// A Prepare that must give a new handle: S_OK with NULL, or with a live session's handle, is
/// what it got instead (the error is that text).
fn new_handle(o: &Observation, in_use: bool) -> Result<bool, String> {
    let h = o.handle.unwrap_or(0);
    if o.rc == Some(0) && (h == 0 || in_use) {
        let what = if h == 0 {
            "a NULL handle"
        } else {
            "the handle of a live session"
        };
        return Err(format!("S_OK with {what}"));
    }
    Ok(o.rc == Some(0))
}

/// Concurrent Ends: exactly `want_wins` threads got S_OK and the others an invalid-parameter
/// code (the error says what the threads got).
fn winners(
    o: &Observation,
    want_wins: usize,
    invalid: &mut dyn FnMut(i32) -> bool,
) -> Result<bool, String> {
    let wins = o.codes.iter().filter(|&&c| c == 0).count();
    let rest_ok = o.codes.iter().all(|&c| c == 0 || invalid(c));
    if wins != want_wins || !rest_ok {
        return Err(race_outcome(&o.codes));
    }
    Ok(true)
}

/// What threads ending one value at once got, counted by code: "0 (S_OK) on 2 of 4 threads,
/// 87 (ERROR_INVALID_PARAMETER) on 2" (a count of threads is never shown as a code).
fn race_outcome(codes: &[i32]) -> String {
    let mut groups: Vec<(i32, usize)> = Vec::new();
    for &c in codes {
        match groups.iter_mut().find(|(g, _)| *g == c) {
            Some((_, n)) => *n += 1,
            None => groups.push((c, 1)),
        }
    }
    groups
        .iter()
        .enumerate()
        .map(|(i, (c, n))| match i {
            0 => format!("{} on {n} of {} threads", describe(*c), codes.len()),
            _ => format!("{} on {n}", describe(*c)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::program::{Garbage, Probe};

    #[test]
    fn a_race_is_told_as_counts_per_code() {
        assert_eq!(
            race_outcome(&[0, 87, 0, 87]),
            "0 (S_OK) on 2 of 4 threads, 87 (ERROR_INVALID_PARAMETER) on 2"
        );
        assert_eq!(
            race_outcome(&[87; 4]),
            "87 (ERROR_INVALID_PARAMETER) on 4 of 4 threads"
        );
    }

    fn ctx() -> Ctx {
        Ctx {
            server: "\\\\localhost".into(),
            accept_hresult: false,
            exports: vec![],
            seed: 1,
            release_cycles: 16,
        }
    }

    fn init() -> State {
        State::empty(Surface {
            prepare: Forms {
                ansi: true,
                wide: false,
            },
            ..Surface::default()
        })
    }

    /// `Layout` names the ops `program` built.
    #[test]
    fn layout_finds_each_part_of_a_sequence_program() {
        let ts = [Transition::Prepare { wide: false }, end_of(0)];
        let p = program(&ctx(), &init(), &ts, "t".into());
        let at = Layout::of(&p);
        assert_eq!(at, Layout::of_sequence(&ts));
        assert_eq!(at.steps, 2);
        assert_eq!(p.ops.len(), 5);
        assert!(matches!(p.ops[Layout::START], Op::Probe));
        assert!(matches!(p.ops[at.step(0)], Op::Prepare(_)));
        assert!(matches!(p.ops[at.step(1)], Op::End(_)));
        assert_eq!(at.steps(), 1..3);
        assert!(matches!(p.ops[at.cleanup()], Op::Cleanup));
        assert!(matches!(p.ops[at.end()], Op::Probe));
        assert_eq!(at.step_of_op(2), Some(1));
        assert_eq!(at.step_of_op(0), None);
        assert_eq!(at.step_of_op(3), None);
    }

    fn prepared(h: u64) -> Observation {
        Observation {
            rc: Some(0),
            handle: Some(h),
            ptr: Some(true),
            size: Some(24),
            ..Observation::default()
        }
    }

    fn ended(arg: u64, rc: i32) -> Observation {
        Observation {
            rc: Some(rc),
            arg: Some(arg),
            ..Observation::default()
        }
    }

    /// Judges steps observed as given, with a clean-up answering `cleanup` and no growth.
    fn judge_steps(ts: &[Transition], steps: Vec<Observation>, cleanup: Vec<i32>) -> Judgement {
        let probe = Observation {
            probe: Some(Probe::default()),
            ..Observation::default()
        };
        let mut obs = vec![probe.clone()];
        obs.extend(steps);
        obs.push(Observation {
            codes: cleanup,
            ..Observation::default()
        });
        obs.push(probe);
        judge(&ctx(), &init(), ts, &RunResult::Done(obs))
    }

    const P: Transition = Transition::Prepare { wide: false };

    fn end_of(session: usize) -> Transition {
        Transition::End { session }
    }

    fn precise(attachment: Attachment) -> Precise {
        Precise {
            sessions: vec![Session {
                live: true,
                attachment,
                handle: 0xA0,
                slot: 0,
                uncertain: false,
            }],
            bufs: vec![],
            restores: vec![],
        }
    }

    fn lenient(e: &Expect) -> bool {
        matches!(e, Expect::Lenient { want, .. } if **want == Expect::NonZero)
    }

    /// Every session call in each attachment state, on a live session and on a value that is
    /// no session: the expectation, and the attachment state it leaves for an answer `rc`.
    #[test]
    fn every_session_call_in_every_attachment_state() {
        use Attachment::{Eof, None as Closed, Open};
        use Expect::{Anything, Exact, InvalidParam, NonZero};
        let eof = ERROR_HANDLE_EOF;
        let anyof = Expect::AnyOf(vec![0, eof]);
        // (call, state before, rc observed, expected, state after); `lenient` marks the
        // undocumented answers that are only warnings.
        let rows: Vec<(SessionCall, Attachment, i32, Option<Expect>, Attachment)> = vec![
            (
                SessionCall::Names { keep: true },
                Closed,
                0,
                Some(Exact(0)),
                Closed,
            ),
            (SessionCall::Open, Closed, 0, Some(Exact(0)), Open),
            (SessionCall::Open, Closed, 87, Some(Exact(0)), Closed),
            (SessionCall::Open, Open, 0, None, Open),
            (SessionCall::OpenUnknown, Closed, 87, Some(NonZero), Closed),
            (SessionCall::Read(ReadSize::Min), Closed, 0, None, Closed),
            (
                SessionCall::Read(ReadSize::Tiny),
                Open,
                87,
                Some(InvalidParam),
                Open,
            ),
            (
                SessionCall::Read(ReadSize::Unaligned),
                Eof,
                87,
                Some(InvalidParam),
                Eof,
            ),
            (
                SessionCall::Read(ReadSize::Large),
                Open,
                0,
                Some(anyof.clone()),
                Open,
            ),
            (
                SessionCall::Read(ReadSize::Min),
                Open,
                eof,
                Some(anyof),
                Eof,
            ),
            (
                SessionCall::Read(ReadSize::Min),
                Eof,
                eof,
                Some(Exact(eof)),
                Eof,
            ),
            (SessionCall::ReadToEnd, Closed, 0, None, Closed),
            (SessionCall::ReadToEnd, Open, eof, Some(Exact(eof)), Eof),
            (
                SessionCall::Close,
                Closed,
                0,
                Some(Exact(HR_INVALID_HANDLE)),
                Closed,
            ),
            (SessionCall::Close, Open, 0, Some(Exact(0)), Closed),
            (SessionCall::Close, Eof, 0, Some(Exact(0)), Closed),
            (SessionCall::Truncate, Open, 0, Some(Anything), Open),
        ];
        for (call, before, rc, want, after) in rows {
            let what = format!("{call:?} with {before:?}, answered {rc}");
            let o = Observation {
                rc: Some(rc),
                arg: Some(0xA0),
                ..Observation::default()
            };
            let mut p = precise(before);
            let got = on_session(&mut p, Some(0), call, &o);
            match want {
                Some(w) => assert_eq!(got, w, "{what}"),
                None => assert!(lenient(&got), "{what}: {got:?} should be a warning"),
            }
            assert_eq!(p.sessions[0].attachment, after, "{what}");
            // REQ-12 / REQ-03: on a value that is no live handle, every call gives 87.
            let mut p = precise(before);
            assert_eq!(
                on_session(&mut p, None, call, &o),
                InvalidParam,
                "{what}, no session"
            );
        }
    }

    #[test]
    fn end_gives_s_ok_once_and_87_on_anything_else() {
        let mut p = precise(Attachment::Open);
        assert_eq!(end_value(&mut p, Some(0), false), Expect::Exact(0));
        assert!(!p.sessions[0].live);
        assert_eq!(end_value(&mut p, None, false), Expect::InvalidParam);
        assert_eq!(end_value(&mut p, None, true), Expect::NoWinner);
        let mut p = precise(Attachment::None);
        assert_eq!(end_value(&mut p, Some(0), true), Expect::OneWinner);
        // After a RestoreEnd on its value, a session may already be gone.
        let mut p = precise(Attachment::None);
        p.sessions[0].uncertain = true;
        assert_eq!(
            end_value(&mut p, Some(0), false),
            Expect::AnyOf(vec![0, ERROR_INVALID_PARAMETER])
        );
    }

    #[test]
    fn a_value_handed_out_again_is_the_new_session() {
        // Prepare -> A; Prepare -> B; End(h1); Prepare -> B again; End(h1) is End of h2.
        let ts = [P, P, end_of(1), P, end_of(1)];
        let j = judge_steps(
            &ts,
            vec![
                prepared(0xA0),
                prepared(0xB0),
                ended(0xB0, 0),
                prepared(0xB0),
                ended(0xB0, 0),
            ],
            vec![0],
        );
        assert_eq!(j.failure, None);
        assert_eq!(j.expects[4], Expect::Exact(0));
        // The repro learns that step 4's value was the session of slot 2.
        assert_eq!(j.targets[4], Some(2));
    }

    #[test]
    fn a_value_no_session_has_must_give_87() {
        let ts = [P, end_of(0), end_of(0)];
        let j = judge_steps(
            &ts,
            vec![prepared(0xA0), ended(0xA0, 0), ended(0xA0, 0)],
            vec![],
        );
        assert_eq!(j.expects[2], Expect::InvalidParam);
        assert!(matches!(j.failure, Some(Failure::Mismatch { step: 2, .. })));
    }

    #[test]
    fn garbage_that_is_a_live_value_is_that_session() {
        // The worker replaces such values; were one passed, it is judged by value all the same.
        let ts = [
            P,
            Transition::EndInvalid {
                h: HandleArg::Garbage(Garbage::Small(1)),
            },
        ];
        let j = judge_steps(&ts, vec![prepared(1), ended(1, 0)], vec![]);
        assert_eq!(j.failure, None);
        assert_eq!(j.expects[1], Expect::Exact(0));
    }

    #[test]
    fn logs_only_accepted_is_a_warning_and_a_live_session() {
        let ts = [
            Transition::PrepareBad {
                wide: false,
                bad: Bad::LogsOnly,
            },
            Transition::EndInvalid {
                h: HandleArg::Garbage(Garbage::Small(1)),
            },
        ];
        // The LOGS_ONLY session got handle 1; the junk End on 1 ends it.
        let j = judge_steps(&ts, vec![prepared(1), ended(1, 0)], vec![]);
        assert_eq!(j.failure, None);
        assert_eq!(j.warnings.len(), 1, "{:?}", j.warnings);
        assert!(j.warnings[0].contains("not supported"));
    }

    #[test]
    fn documented_codes_stay_exact() {
        // NULL token pointer: hrInvalidParam, documented; anything else fails.
        let ts = [Transition::PrepareBad {
            wide: false,
            bad: Bad::NullToken,
        }];
        let j = judge_steps(&ts, vec![ended(0, ERROR_INVALID_PARAMETER)], vec![]);
        assert!(matches!(j.failure, Some(Failure::Mismatch { step: 0, .. })));
    }

    #[test]
    fn restore_end_on_a_backup_value_excuses_87_at_clean_up() {
        let ts = [
            P,
            Transition::RestorePrepare {
                wide: false,
                token: None,
            },
            Transition::RestoreEnd { restore: 0 },
        ];
        // Separate tables: the restore handle 1 is ended; then a DsRestoreEnd(1) again hits
        // the live backup session's value: whether that ended it is unknown.
        let j = judge_steps(
            &ts,
            vec![prepared(1), prepared(7), ended(1, 0)],
            vec![ERROR_INVALID_PARAMETER],
        );
        assert_eq!(j.expects[2], Expect::Anything);
        assert_eq!(j.failure, None);
    }

    #[test]
    fn growth_after_clean_up_is_a_leak() {
        let ts = [P];
        let mut obs = vec![Observation {
            probe: Some(Probe::default()),
            ..Observation::default()
        }];
        obs.push(prepared(0xA0));
        obs.push(Observation {
            codes: vec![0],
            ..Observation::default()
        });
        obs.push(Observation {
            probe: Some(Probe {
                handles: 1,
                ..Probe::default()
            }),
            ..Observation::default()
        });
        let j = judge(&ctx(), &init(), &ts, &RunResult::Done(obs));
        assert!(matches!(j.failure, Some(Failure::Leak { .. })));
    }
}
