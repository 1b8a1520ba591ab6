//! end.ok, end.null, end.double, end.garbage, end.isolation, end.invalidates: DsBackupEnd's
//! return codes on live, NULL, stale and garbage values, and what an End does to other state.

use super::check::{Check, Ctx, Judged, Ran};
use super::common::{end, growth, live, prepared_and_ended, program, slot, Findings};
use ntdsbcli_harness::program::{Close, Free, Read, ReadToEnd, Truncate};
use ntdsbcli_harness::program::{Garbage, HandleArg, ListKind, Op, Program, Step, Text};

pub struct EndOk;

pub struct OkSteps {
    prepare: Step,
    end: Step,
}

impl Check for EndOk {
    type Steps = OkSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, OkSteps)> {
        let mut plain = program("Prepare, free the token, End");
        let prepare = plain.push(ctx.prepare(0, 0));
        plain.push(Op::Free(Free { buf: Some(0) }));
        let ended = plain.push(end(slot(0)));
        let plain = (
            plain,
            OkSteps {
                prepare,
                end: ended,
            },
        );
        let mut full = program("the documented backup walkthrough, then End");
        let prepare = full.push(ctx.prepare(0, 0));
        full.push_opt(ctx.names(ListKind::DatabaseNames, slot(0), 1));
        full.push_opt(ctx.open_file(slot(0), Text::Entry { buf: 1, index: 0 }));
        full.push_opt(ctx.has("DsBackupRead").then_some(Op::ReadToEnd(ReadToEnd {
            h: slot(0),
            cb: 65_536,
        })));
        full.push_opt(
            ctx.has("DsBackupClose")
                .then_some(Op::Close(Close { h: slot(0) })),
        );
        full.push_opt(ctx.names(ListKind::BackupLogs, slot(0), 2));
        full.push_opt(
            ctx.has("DsBackupTruncateLogs")
                .then_some(Op::Truncate(Truncate { h: slot(0) })),
        );
        full.push(Op::Free(Free { buf: Some(0) }));
        let ended = full.push(end(slot(0)));
        full.push(Op::Cleanup);
        let full = (
            full,
            OkSteps {
                prepare,
                end: ended,
            },
        );
        vec![plain, full]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<OkSteps>]) -> Judged {
        let mut f = Findings::default();
        for r in ran {
            live(r.get(r.steps.prepare))?;
            f.code(
                &format!("End after {}", r.program.label.to_lowercase()),
                r.get(r.steps.end),
                0,
            );
        }
        Ok(f.finish("End on a live handle returned exactly 0 (S_OK), after a bare Prepare and after a full walkthrough"))
    }
}

pub struct EndNull;

pub struct NullSteps {
    prepare: Step,
    null1: Step,
    null2: Step,
    end: Step,
}

impl Check for EndNull {
    type Steps = NullSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, NullSteps)> {
        let mut p = program("End(NULL) twice beside a live session");
        let steps = NullSteps {
            prepare: p.push(ctx.prepare(0, 0)),
            null1: p.push(end(HandleArg::Null)),
            null2: p.push(end(HandleArg::Null)),
            end: p.push(end(slot(0))),
        };
        p.push(Op::Cleanup);
        vec![(p, steps)]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<NullSteps>]) -> Judged {
        let (r, s) = (&ran[0], ran[0].steps);
        let mut f = Findings::default();
        f.invalid_param(ctx, "End(NULL)", r.get(s.null1));
        f.invalid_param(ctx, "a second End(NULL)", r.get(s.null2));
        if live(r.get(s.prepare)).is_ok() {
            f.code("End of a live session after End(NULL)", r.get(s.end), 0);
        }
        Ok(f.finish("End(NULL) returned 87 (ERROR_INVALID_PARAMETER) and touched no live session"))
    }
}

const SENTINELS: u8 = 8;

pub struct EndDouble;

pub struct DoubleSteps {
    prepare: Step,
    end1: Step,
    before: Step,
    end2: Step,
    end3: Step,
    after: Step,
    sentinels: Step,
}

impl Check for EndDouble {
    type Steps = DoubleSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, DoubleSteps)> {
        let mut p = program("End twice and three times on one handle");
        let prepare = p.push(ctx.prepare(0, 0));
        p.push(Op::Free(Free { buf: Some(0) }));
        let end1 = p.push(end(slot(0)));
        // Handles opened now may reuse numbers the session had: a repeated close hits them.
        p.push(Op::HoldSentinels { n: SENTINELS });
        let steps = DoubleSteps {
            prepare,
            end1,
            before: p.push(Op::Probe),
            end2: p.push(end(slot(0))),
            end3: p.push(end(slot(0))),
            after: p.push(Op::Probe),
            sentinels: p.push(Op::CheckSentinels),
        };
        vec![(p, steps)]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<DoubleSteps>]) -> Judged {
        let (r, s) = (&ran[0], ran[0].steps);
        let mut f = prepared_and_ended(r, s.prepare, s.end1, "the first End")?;
        f.invalid_param(ctx, "a second End on the same handle", r.get(s.end2));
        f.invalid_param(ctx, "a third End on the same handle", r.get(s.end3));
        if r.get(s.sentinels).intact == Some(false) {
            f.fail(
                "the second End closed a handle the library did not own (its cleanup ran again)",
            );
        }
        if let Some(g) = growth(r.get(s.before), r.get(s.after)) {
            f.fail(format!(
                "the repeated Ends changed the process's resources: {g}"
            ));
        }
        Ok(f.finish(
            "the second and third End returned 87 (ERROR_INVALID_PARAMETER) and released nothing again",
        ))
    }
}

/// Garbage classes of design §5; the slot names a live session some of them derive from.
pub fn garbage_classes(seed: u64) -> Vec<Garbage> {
    vec![
        Garbage::Small(1),
        Garbage::Small(2),
        Garbage::Small(0x10),
        Garbage::Small(0xFFFF),
        Garbage::AllOnes,
        Garbage::Unmapped,
        Garbage::KernelHalf,
        Garbage::NonCanonical,
        Garbage::LivePlusOne(0),
        Garbage::Zeroed,
        Garbage::OnesFilled,
        Garbage::Random(seed),
        Garbage::CopyOfLive(0),
    ]
}

pub struct EndGarbage;

/// The End given the value under test.
pub struct GarbageSteps {
    end: Step,
}

impl Check for EndGarbage {
    type Steps = GarbageSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, GarbageSteps)> {
        let mut out: Vec<(Program, GarbageSteps)> = garbage_classes(ctx.seed)
            .into_iter()
            .map(|g| {
                let mut p = program(format!("End({})", g.label()));
                p.push(ctx.prepare(0, 0));
                let end = p.push(end(HandleArg::Garbage(g)));
                p.push(Op::Cleanup);
                (p, GarbageSteps { end })
            })
            .collect();
        let mut stale = program("End(stale handle)");
        stale.push(ctx.prepare(1, 1));
        stale.push(end(slot(1)));
        let end = stale.push(end(slot(1)));
        stale.push(Op::Cleanup);
        out.push((stale, GarbageSteps { end }));
        out
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<GarbageSteps>]) -> Judged {
        let mut f = Findings::default();
        let mut tested = 0;
        let mut missing = Vec::new();
        for r in ran {
            let o = r.get(r.steps.end);
            let what = &r.program.label;
            if let Some(why) = &o.not_run {
                missing.push(format!("{what}: {why}"));
                continue;
            }
            tested += 1;
            if let Some(sub) = &o.substituted {
                f.note(sub.clone());
            }
            f.invalid_param(ctx, what, o);
            if o.intact == Some(false) {
                f.fail(format!("{what} wrote into the memory it was given"));
            }
        }
        for m in missing {
            f.note(m);
        }
        Ok(f.finish(format!(
            "End returned 87 (ERROR_INVALID_PARAMETER) for all {tested} garbage classes tested, without a crash or a write"
        )))
    }
}

/// Invalid values for end.isolation: each is ended beside two live sessions.
fn isolation_values() -> Vec<(String, HandleArg)> {
    vec![
        ("NULL".into(), HandleArg::Null),
        ("stale handle".into(), HandleArg::Slot(2)),
        (
            Garbage::Small(1).label(),
            HandleArg::Garbage(Garbage::Small(1)),
        ),
        (
            Garbage::AllOnes.label(),
            HandleArg::Garbage(Garbage::AllOnes),
        ),
        (Garbage::Zeroed.label(), HandleArg::Garbage(Garbage::Zeroed)),
        (
            Garbage::LivePlusOne(0).label(),
            HandleArg::Garbage(Garbage::LivePlusOne(0)),
        ),
        (
            Garbage::LivePlusOne(1).label(),
            HandleArg::Garbage(Garbage::LivePlusOne(1)),
        ),
        (
            Garbage::Unmapped.label(),
            HandleArg::Garbage(Garbage::Unmapped),
        ),
    ]
}

pub struct EndIsolation;

pub struct IsolationSteps {
    p0: Step,
    p1: Step,
    /// GetDatabaseNames on each live session after the invalid End.
    uses: [Step; 2],
    /// End of each live session.
    ends: [Step; 2],
}

impl Check for EndIsolation {
    type Steps = IsolationSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, IsolationSteps)> {
        isolation_values()
            .into_iter()
            .map(|(label, h)| {
                let mut p = program(format!("End({label}) beside two live sessions"));
                let p0 = p.push(ctx.prepare(0, 0));
                let p1 = p.push(ctx.prepare(1, 1));
                p.push(ctx.prepare(2, 2));
                p.push(end(slot(2)));
                p.push(end(h));
                let uses = [
                    p.push_opt(ctx.names(ListKind::DatabaseNames, slot(0), 3)),
                    p.push_opt(ctx.names(ListKind::DatabaseNames, slot(1), 4)),
                ];
                let ends = [p.push(end(slot(0))), p.push(end(slot(1)))];
                p.push(Op::Cleanup);
                (p, IsolationSteps { p0, p1, uses, ends })
            })
            .collect()
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<IsolationSteps>]) -> Judged {
        let mut f = Findings::default();
        let mut sessions = 0;
        for r in ran {
            let s = r.steps;
            live(r.get(s.p0))?;
            let second = live(r.get(s.p1)).is_ok();
            sessions = if second { 2 } else { 1 };
            let what = &r.program.label;
            for (i, present) in [(0, true), (1, second)] {
                if !present {
                    continue;
                }
                if s.uses[i].present() {
                    f.code(
                        &format!("after {what}, GetDatabaseNames on live session {i}"),
                        r.get(s.uses[i]),
                        0,
                    );
                }
                f.code(
                    &format!("after {what}, End of live session {i}"),
                    r.get(s.ends[i]),
                    0,
                );
            }
        }
        Ok(f.finish(format!(
            "after each of {} invalid Ends, {sessions} live session(s) stayed usable and ended with S_OK",
            ran.len()
        )))
    }
}

pub struct EndInvalidates;

pub struct InvalidatesSteps {
    prepare: Step,
    end: Step,
    /// Each handle-taking call on the ended handle, by export family.
    after: Vec<(&'static str, Step)>,
}

impl Check for EndInvalidates {
    type Steps = InvalidatesSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, InvalidatesSteps)> {
        let mut p = program("every handle-taking call after End");
        let h = || slot(0);
        let has = |n: &str| ctx.has(n);
        let prepare = p.push(ctx.prepare(0, 0));
        let names = p.push_opt(ctx.names(ListKind::DatabaseNames, h(), 1));
        let ended = p.push(end(h()));
        let name = if names.present() {
            Text::Entry { buf: 1, index: 0 }
        } else {
            Text::Lit("\\\\LOCALHOST\\C$\\Windows\\NTDS\\ntds.dit".into())
        };
        let after = vec![
            ("DsBackupOpenFile", p.push_opt(ctx.open_file(h(), name))),
            (
                "DsBackupRead",
                p.push_opt(has("DsBackupRead").then_some(Op::Read(Read {
                    h: h(),
                    cb: 24_576,
                    pcb: true,
                }))),
            ),
            (
                "DsBackupClose",
                p.push_opt(has("DsBackupClose").then_some(Op::Close(Close { h: h() }))),
            ),
            (
                "DsBackupGetDatabaseNames",
                p.push_opt(ctx.names(ListKind::DatabaseNames, h(), 2)),
            ),
            (
                "DsBackupGetBackupLogs",
                p.push_opt(ctx.names(ListKind::BackupLogs, h(), 3)),
            ),
            (
                "DsBackupTruncateLogs",
                p.push_opt(
                    has("DsBackupTruncateLogs").then_some(Op::Truncate(Truncate { h: h() })),
                ),
            ),
            ("DsBackupEnd", p.push(end(h()))),
        ];
        p.push(Op::Cleanup);
        vec![(
            p,
            InvalidatesSteps {
                prepare,
                end: ended,
                after,
            },
        )]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<InvalidatesSteps>]) -> Judged {
        let (r, s) = (&ran[0], ran[0].steps);
        let mut f = prepared_and_ended(r, s.prepare, s.end, "End")?;
        let mut tested = Vec::new();
        for (name, step) in s.after.iter().filter(|(_, s)| s.present()) {
            tested.push(*name);
            f.invalid_param(ctx, &format!("{name} on an ended handle"), r.get(*step));
        }
        Ok(f.finish(format!(
            "after End, {} returned 87 (ERROR_INVALID_PARAMETER)",
            tested.join(", ")
        )))
    }
}
