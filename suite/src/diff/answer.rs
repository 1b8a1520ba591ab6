//! What a call answered, written so that two correct libraries that agree give the same text:
//! handles by role (which session), never by value; lists by their names, whatever the form
//! (A or W); token contents and resource readings left out. Pure; judges nothing.

use crate::model::machine::{State, Transition};
use ntdsbcli_harness::codes;
use ntdsbcli_harness::program::{HandleArg, Observation, Op};
use ntdsbcli_harness::store::parse_list;
use ntdsbcli_harness::worker::RunResult;

/// Handle values in the order the library first returned them: a value is "a new handle" the
/// first time and "handle n again" after, on both sides, whatever its bits.
#[derive(Default)]
pub struct Roles(Vec<u64>);

impl Roles {
    fn name(&mut self, v: u64) -> String {
        if v == 0 {
            return "a NULL handle".into();
        }
        match self.0.iter().position(|&x| x == v) {
            Some(i) => format!("handle {} again", i + 1),
            None => {
                self.0.push(v);
                "a new handle".into()
            }
        }
    }
}

/// One op's answer. `op` is the op that produced `o`.
pub fn answer(op: &Op, o: &Observation, roles: &mut Roles) -> String {
    let mut parts: Vec<String> = Vec::new();
    if o.not_run.is_some() {
        // Both sides run with the exports they share: the same reason on both.
        return "not run".into();
    }
    if let Some(rc) = o.rc {
        parts.push(codes::describe(rc));
    }
    if let Some(h) = o.handle {
        parts.push(roles.name(h));
    }
    match op {
        Op::Prepare(_) | Op::RestorePrepare(_) => {
            if let Some(p) = o.ptr {
                let size = o.size.unwrap_or(0);
                parts.push(match (p, size) {
                    (true, 0) => "a token pointer with size 0".into(),
                    (true, _) => "a token".into(),
                    (false, 0) => "no token".into(),
                    (false, _) => "a NULL token with a size".into(),
                });
            }
        }
        Op::Names(n) => match (&o.bytes, o.ptr) {
            (Some(b), _) => parts.push(format!("names [{}]", parse_list(b, n.wide).join(", "))),
            (None, Some(true)) => parts.push("a list pointer".into()),
            (None, Some(false)) => parts.push("no list".into()),
            (None, None) => {}
        },
        Op::OpenFile(_) => {
            if let Some(s) = o.size {
                parts.push(format!("file size {s}"));
            }
        }
        Op::Read(_) => {
            if let Some(s) = o.size {
                parts.push(format!("{s} bytes read"));
            }
        }
        Op::ReadToEnd(_) => {
            if let Some(s) = o.size {
                parts.push(format!("{s} bytes in all"));
            }
        }
        Op::Peek { .. } => {
            if let Some(b) = &o.bytes {
                parts.push(format!("{} bytes readable", b.len()));
            }
        }
        Op::Repeat { .. } => {
            // Which codes each body op gave; how often depends on when growth stopped.
            let mut seen: Vec<String> = o
                .tally
                .iter()
                .map(|t| {
                    let rc = t.rc.map_or("not run".into(), codes::describe);
                    format!("op {}: {rc}", t.op + 1)
                })
                .collect();
            seen.sort();
            seen.dedup();
            parts.push(format!("codes [{}]", seen.join("; ")));
        }
        _ => {}
    }
    if !o.codes.is_empty() {
        let mut c = o.codes.clone();
        c.sort_unstable();
        let mut runs: Vec<String> = Vec::new();
        for chunk in c.chunk_by(|a, b| a == b) {
            runs.push(format!("{} ×{}", codes::describe(chunk[0]), chunk.len()));
        }
        parts.push(format!("codes [{}]", runs.join(", ")));
    }
    if let Some(i) = o.intact {
        parts.push(if i { "memory intact" } else { "memory written" }.into());
    }
    if o.no_descriptors {
        parts.push("no descriptor left".into());
    }
    if parts.is_empty() {
        "done".into()
    } else {
        parts.join(", ")
    }
}

/// The answers of a program's ops, in order, as far as it ran: a worker that died leaves the
/// answers before its op unknown (`None`) and that op's answer the death.
pub fn answers(ops: &[Op], result: &RunResult) -> Vec<Option<String>> {
    let mut roles = Roles::default();
    match result {
        RunResult::Done(obs) => ops
            .iter()
            .zip(obs)
            .map(|(op, o)| Some(answer(op, o, &mut roles)))
            .collect(),
        RunResult::Died(d) => {
            let at = d.op.unwrap_or(ops.len().saturating_sub(1));
            let mut out = vec![None; ops.len()];
            if let Some(slot) = out.get_mut(at) {
                *slot = Some(format!("died: {}", d.death.describe()));
            }
            out
        }
    }
}

/// The first op whose answers differ, and the two answers. A side that died counts from its
/// death: what it answered before is not known, and is taken to agree.
pub fn first_difference(
    new: &[Option<String>],
    old: &[Option<String>],
) -> Option<(usize, String, String)> {
    let died = |a: &[Option<String>]| {
        a.iter()
            .position(|x| x.as_deref().is_some_and(|s| s.starts_with("died: ")))
    };
    let answer = |a: &[Option<String>], i: usize| a.get(i).cloned().flatten();
    if let Some(i) = died(new).into_iter().chain(died(old)).min() {
        return match (answer(new, i), answer(old, i)) {
            (Some(n), Some(o)) if n != o => Some((i, n, o)),
            (Some(n), None) => Some((i, n, "answered".into())),
            (None, Some(o)) => Some((i, "answered".into(), o)),
            _ => None,
        };
    }
    new.iter()
        .zip(old)
        .enumerate()
        .find_map(|(i, pair)| match pair {
            (Some(n), Some(o)) if n != o => Some((i, n.clone(), o.clone())),
            _ => None,
        })
}

/// A sequence call as the grouping knows it: what was called, without slot numbers, and the
/// state it was called in, from the model.
pub fn seq_call(st: &State, t: &Transition) -> (String, String) {
    let form = |w: bool| if w { "W" } else { "A" };
    let session = |s: usize| match st.sessions.get(s) {
        Some(x) if x.live && x.open => "a live session with a file open".to_string(),
        Some(x) if x.live => "a live session".to_string(),
        Some(_) => "an ended session".to_string(),
        None => "no session".to_string(),
    };
    let restore = |r: usize| match st.restores.get(r) {
        Some(true) => "a live restore handle".to_string(),
        _ => "an ended restore handle".to_string(),
    };
    let others = match st.sessions.iter().filter(|s| s.live).count() {
        0 => "no live session".to_string(),
        _ => "beside live sessions".to_string(),
    };
    match t {
        Transition::Prepare { wide } => (format!("DsBackupPrepare{}", form(*wide)), others),
        Transition::PrepareBad { wide, bad } => (
            format!("DsBackupPrepare{} with {bad:?}", form(*wide)),
            others,
        ),
        Transition::End { session: s } => ("DsBackupEnd".into(), session(*s)),
        Transition::EndInvalid { h } => (
            match h {
                HandleArg::Null => "DsBackupEnd(NULL)".into(),
                HandleArg::Garbage(g) => format!("DsBackupEnd(garbage {})", garbage_kind(g)),
                HandleArg::Slot(_) => "DsBackupEnd".into(),
            },
            others,
        ),
        Transition::EndRestore { restore: r } => ("DsBackupEnd".into(), restore(*r)),
        Transition::EndConcurrent { session: s } => {
            ("DsBackupEnd on racing threads".into(), session(*s))
        }
        Transition::Names {
            session: s,
            logs,
            wide,
        } => (
            format!(
                "DsBackupGet{}Names{}",
                if *logs { "Backup" } else { "Database" },
                form(*wide)
            ),
            session(*s),
        ),
        Transition::Open {
            session: s, wide, ..
        } => (
            format!("DsBackupOpenFile{} of a listed name", form(*wide)),
            session(*s),
        ),
        Transition::OpenUnknown { session: s, wide } => (
            format!("DsBackupOpenFile{} of an unknown name", form(*wide)),
            session(*s),
        ),
        Transition::Read { session: s, size } => {
            (format!("DsBackupRead({} bytes)", size.bytes()), session(*s))
        }
        Transition::ReadToEnd { session: s } => ("DsBackupRead to the end".into(), session(*s)),
        Transition::Close { session: s } => ("DsBackupClose".into(), session(*s)),
        Transition::Truncate { session: s } => ("DsBackupTruncateLogs".into(), session(*s)),
        Transition::Free { buf } => ("DsBackupFree".into(), buffer(st, *buf)),
        Transition::FreeNull => ("DsBackupFree(NULL)".into(), others),
        Transition::Peek { buf } => ("read a returned buffer".into(), buffer(st, *buf)),
        Transition::RestorePrepare { wide, token } => (
            format!(
                "DsRestorePrepare{}{}",
                form(*wide),
                if token.is_some() { " with a token" } else { "" }
            ),
            others,
        ),
        Transition::RestoreEnd { restore: r } => ("DsRestoreEnd".into(), restore(*r)),
        Transition::Cross { restore: r, call } => {
            (format!("{call:?} on a restore handle"), restore(*r))
        }
    }
}

/// The named check whose rules cover a sequence call made in `st`: where a sequence's answer
/// breaks a rule, the rule is cited from that check's requirement.
pub fn seq_check(st: &State, t: &Transition) -> &'static str {
    let live = |s: usize| st.sessions.get(s).is_some_and(|x| x.live);
    let open = |s: usize| st.sessions.get(s).is_some_and(|x| x.live && x.open);
    match t {
        Transition::Prepare { .. } if st.sessions.iter().any(|s| s.live) => "prepare.distinct",
        Transition::Prepare { .. } => "prepare.ok",
        Transition::PrepareBad { .. } => "prepare.bad-args",
        Transition::End { session } if open(*session) => "end.open-file",
        Transition::End { session } if live(*session) => "end.ok",
        Transition::End { .. } => "end.double",
        Transition::EndInvalid { h: HandleArg::Null } => "end.null",
        Transition::EndInvalid { .. } => "end.garbage",
        Transition::EndConcurrent { .. } => "end.concurrent",
        Transition::Names { .. } => "names.format",
        Transition::Open { .. }
        | Transition::OpenUnknown { .. }
        | Transition::Read { .. }
        | Transition::ReadToEnd { .. }
        | Transition::Close { .. }
        | Transition::Truncate { .. } => "file.codes",
        Transition::Free { .. } | Transition::Peek { .. } => "end.buffers-outlive",
        Transition::FreeNull => "free.null",
        Transition::EndRestore { .. }
        | Transition::RestorePrepare { .. }
        | Transition::RestoreEnd { .. }
        | Transition::Cross { .. } => "end.restore-handle",
    }
}

fn buffer(st: &State, b: usize) -> String {
    match st.bufs.get(b) {
        Some(x) if x.freed => "a freed buffer".into(),
        Some(x) if x.list => "a held name list".into(),
        Some(_) => "a held token".into(),
        None => "no buffer".into(),
    }
}

/// A garbage class without its numbers.
fn garbage_kind(g: &ntdsbcli_harness::program::Garbage) -> String {
    let d = format!("{g:?}");
    d.split('(').next().unwrap_or(&d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::program::{End, ListKind, Names};

    fn prepare_obs(h: u64) -> Observation {
        Observation {
            rc: Some(0),
            handle: Some(h),
            ptr: Some(true),
            size: Some(12),
            bytes: Some(vec![h as u8; 12]),
            ..Observation::default()
        }
    }

    fn prepare_op() -> Op {
        let ctx = crate::checks::Ctx {
            server: "srv".into(),
            accept_hresult: false,
            exports: vec!["DsBackupPrepareW".into()],
            seed: 1,
            release_cycles: 1,
        };
        ctx.prepare(0, 0)
    }

    #[test]
    fn handles_compare_by_role_not_value() {
        let (mut a, mut b) = (Roles::default(), Roles::default());
        let op = prepare_op();
        let first = answer(&op, &prepare_obs(0x1000), &mut a);
        let other = answer(&op, &prepare_obs(0xdead_0000), &mut b);
        assert_eq!(first, other, "token bytes and handle values do not count");
        // The same value twice is one session on one side, two on the other.
        let twice = answer(&op, &prepare_obs(0x1000), &mut a);
        let fresh = answer(&op, &prepare_obs(0x2000), &mut b);
        assert_ne!(twice, fresh);
        assert_eq!(fresh, "0 (S_OK), a new handle, a token");
        assert_eq!(twice, "0 (S_OK), handle 1 again, a token");
    }

    #[test]
    fn lists_compare_by_names_whatever_the_form() {
        let names = |wide: bool| {
            Op::Names(Names {
                kind: ListKind::DatabaseNames,
                wide,
                h: HandleArg::Slot(0),
                out: true,
                size: true,
                buf: 1,
            })
        };
        let ansi = b"\\ntds.dit\0\0".to_vec();
        let wide: Vec<u8> = "\\ntds.dit\0\0"
            .encode_utf16()
            .flat_map(|u| u.to_ne_bytes())
            .collect();
        let obs = |bytes: Vec<u8>| Observation {
            rc: Some(0),
            ptr: Some(true),
            size: Some(bytes.len() as u64),
            bytes: Some(bytes),
            ..Observation::default()
        };
        let mut r = Roles::default();
        assert_eq!(
            answer(&names(false), &obs(ansi), &mut r),
            answer(&names(true), &obs(wide), &mut r)
        );
    }

    #[test]
    fn the_first_difference_stops_at_a_death() {
        let s = |x: &str| Some(x.to_string());
        let a = vec![s("0"), s("87"), s("0")];
        let b = vec![s("0"), s("0"), s("1")];
        assert_eq!(first_difference(&a, &b), Some((1, "87".into(), "0".into())));
        assert_eq!(first_difference(&a, &a), None);
        // Died at op 1: op 0's answer is unknown there and not a difference.
        let died = vec![None, s("died: the worker crashed: SIGSEGV"), None];
        assert_eq!(
            first_difference(&died, &b),
            Some((1, "died: the worker crashed: SIGSEGV".into(), "0".into()))
        );
        // Both died at the same op, the same way: no difference.
        assert_eq!(first_difference(&died, &died), None);
    }

    #[test]
    fn a_sequence_call_cites_the_check_that_covers_it() {
        use crate::model::machine::{SessionState, Surface};
        let mut st = State::empty(Surface::from_exports(&[]));
        let end = Transition::End { session: 0 };
        assert_eq!(seq_check(&st, &end), "end.double", "no such session: stale");
        st.sessions.push(SessionState {
            live: true,
            open: false,
        });
        assert_eq!(seq_check(&st, &end), "end.ok");
        assert_eq!(
            seq_check(&st, &Transition::Prepare { wide: true }),
            "prepare.distinct"
        );
        st.sessions[0].open = true;
        assert_eq!(seq_check(&st, &end), "end.open-file");
        assert_eq!(
            seq_check(&st, &Transition::EndInvalid { h: HandleArg::Null }),
            "end.null"
        );
        for id in ["end.ok", "end.double", "file.codes", "free.null"] {
            assert!(crate::catalogue::CHECKS.iter().any(|c| c.id == id), "{id}");
        }
    }

    #[test]
    fn a_race_compares_the_codes_not_their_order() {
        let op = Op::End(End {
            h: HandleArg::Slot(0),
        });
        let o = |c: Vec<i32>| Observation {
            codes: c,
            ..Observation::default()
        };
        let mut r = Roles::default();
        assert_eq!(
            answer(&op, &o(vec![0, 87]), &mut r),
            answer(&op, &o(vec![87, 0]), &mut r)
        );
    }
}
