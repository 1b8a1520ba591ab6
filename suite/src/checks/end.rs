//! end.ok, end.null, end.double, end.garbage, end.isolation, end.invalidates: DsBackupEnd's
//! return codes on live, NULL, stale and garbage values, and what an End does to other state.

use super::common::{
    end, growth, live, prepared_and_ended, program, slot, Ctx, Eval, Findings, Ran,
};
use ntdsbcli_harness::program::{Close, Free, Read, ReadToEnd, Truncate};
use ntdsbcli_harness::program::{Garbage, HandleArg, ListKind, Op, Program, Text};

pub fn ok_plan(ctx: &Ctx) -> Vec<Program> {
    let mut plain = program("Prepare, free the token, End");
    plain
        .push("prepare", ctx.prepare(0, 0))
        .push("free", Op::Free(Free { buf: Some(0) }))
        .push("end", end(slot(0)));
    let mut full = program("the documented backup walkthrough, then End");
    full.push("prepare", ctx.prepare(0, 0))
        .push_opt("names", ctx.names(ListKind::DatabaseNames, slot(0), 1))
        .push_opt(
            "open",
            ctx.open_file(slot(0), Text::Entry { buf: 1, index: 0 }),
        )
        .push_opt(
            "read",
            ctx.has("DsBackupRead").then_some(Op::ReadToEnd(ReadToEnd {
                h: slot(0),
                cb: 65_536,
            })),
        )
        .push_opt(
            "close",
            ctx.has("DsBackupClose")
                .then_some(Op::Close(Close { h: slot(0) })),
        )
        .push_opt("logs", ctx.names(ListKind::BackupLogs, slot(0), 2))
        .push_opt(
            "truncate",
            ctx.has("DsBackupTruncateLogs")
                .then_some(Op::Truncate(Truncate { h: slot(0) })),
        )
        .push("free0", Op::Free(Free { buf: Some(0) }))
        .push("end", end(slot(0)))
        .push("cleanup", Op::Cleanup);
    vec![plain, full]
}

pub fn ok_eval(_ctx: &Ctx, ran: &[Ran]) -> Eval {
    let mut f = Findings::default();
    for r in ran {
        if let Err(e) = live(r.get("prepare")) {
            return e;
        }
        f.code(
            &format!("End after {}", r.program.label.to_lowercase()),
            r.get("end"),
            0,
        );
    }
    f.finish("End on a live handle returned exactly 0 (S_OK), after a bare Prepare and after a full walkthrough")
}

pub fn null_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program("End(NULL) twice beside a live session");
    p.push("prepare", ctx.prepare(0, 0))
        .push("null1", end(HandleArg::Null))
        .push("null2", end(HandleArg::Null))
        .push("end", end(slot(0)))
        .push("cleanup", Op::Cleanup);
    vec![p]
}

pub fn null_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let r = &ran[0];
    let mut f = Findings::default();
    f.invalid_param(ctx, "End(NULL)", r.get("null1"));
    f.invalid_param(ctx, "a second End(NULL)", r.get("null2"));
    if live(r.get("prepare")).is_ok() {
        f.code("End of a live session after End(NULL)", r.get("end"), 0);
    }
    f.finish("End(NULL) returned 87 (ERROR_INVALID_PARAMETER) and touched no live session")
}

const SENTINELS: u8 = 8;

pub fn double_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program("End twice and three times on one handle");
    p.push("prepare", ctx.prepare(0, 0))
        .push("free", Op::Free(Free { buf: Some(0) }))
        .push("end1", end(slot(0)))
        // Handles opened now may reuse numbers the session had: a repeated close hits them.
        .push("hold", Op::HoldSentinels { n: SENTINELS })
        .push("before", Op::Probe)
        .push("end2", end(slot(0)))
        .push("end3", end(slot(0)))
        .push("after", Op::Probe)
        .push("sentinels", Op::CheckSentinels);
    vec![p]
}

pub fn double_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let (r, mut f) = match prepared_and_ended(ran, "end1", "the first End") {
        Ok(x) => x,
        Err(e) => return e,
    };
    f.invalid_param(ctx, "a second End on the same handle", r.get("end2"));
    f.invalid_param(ctx, "a third End on the same handle", r.get("end3"));
    if r.get("sentinels").intact == Some(false) {
        f.fail("the second End closed a handle the library did not own (its cleanup ran again)");
    }
    if let Some(g) = growth(r.get("before"), r.get("after")) {
        f.fail(format!(
            "the repeated Ends changed the process's resources: {g}"
        ));
    }
    f.finish(
        "the second and third End returned 87 (ERROR_INVALID_PARAMETER) and released nothing again",
    )
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

pub fn garbage_plan(ctx: &Ctx) -> Vec<Program> {
    let mut out: Vec<Program> = garbage_classes(ctx.seed)
        .into_iter()
        .map(|g| {
            let mut p = program(format!("End({})", g.label()));
            p.push("prepare", ctx.prepare(0, 0))
                .push("end", end(HandleArg::Garbage(g)))
                .push("cleanup", Op::Cleanup);
            p
        })
        .collect();
    let mut stale = program("End(stale handle)");
    stale
        .push("prepare", ctx.prepare(1, 1))
        .push("first", end(slot(1)))
        .push("end", end(slot(1)))
        .push("cleanup", Op::Cleanup);
    out.push(stale);
    out
}

pub fn garbage_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let mut f = Findings::default();
    let mut tested = 0;
    let mut missing = Vec::new();
    for r in ran {
        let o = r.get("end");
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
    f.finish(format!(
        "End returned 87 (ERROR_INVALID_PARAMETER) for all {tested} garbage classes tested, without a crash or a write"
    ))
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

pub fn isolation_plan(ctx: &Ctx) -> Vec<Program> {
    isolation_values()
        .into_iter()
        .map(|(label, h)| {
            let mut p = program(format!("End({label}) beside two live sessions"));
            p.push("p0", ctx.prepare(0, 0))
                .push("p1", ctx.prepare(1, 1))
                .push("p2", ctx.prepare(2, 2))
                .push("stale", end(slot(2)))
                .push("invalid", end(h))
                .push_opt("use0", ctx.names(ListKind::DatabaseNames, slot(0), 3))
                .push_opt("use1", ctx.names(ListKind::DatabaseNames, slot(1), 4))
                .push("end0", end(slot(0)))
                .push("end1", end(slot(1)))
                .push("cleanup", Op::Cleanup);
            p
        })
        .collect()
}

pub fn isolation_eval(_ctx: &Ctx, ran: &[Ran]) -> Eval {
    let mut f = Findings::default();
    let mut sessions = 0;
    for r in ran {
        if let Err(e) = live(r.get("p0")) {
            return e;
        }
        let second = live(r.get("p1")).is_ok();
        sessions = if second { 2 } else { 1 };
        let what = &r.program.label;
        for (i, present) in [(0, true), (1, second)] {
            if !present {
                continue;
            }
            if r.has(&format!("use{i}")) {
                f.code(
                    &format!("after {what}, GetDatabaseNames on live session {i}"),
                    r.get(&format!("use{i}")),
                    0,
                );
            }
            f.code(
                &format!("after {what}, End of live session {i}"),
                r.get(&format!("end{i}")),
                0,
            );
        }
    }
    f.finish(format!(
        "after each of {} invalid Ends, {sessions} live session(s) stayed usable and ended with S_OK",
        ran.len()
    ))
}

pub fn invalidates_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program("every handle-taking call after End");
    let h = || slot(0);
    let has = |n: &str| ctx.has(n);
    p.push("prepare", ctx.prepare(0, 0))
        .push_opt("names", ctx.names(ListKind::DatabaseNames, h(), 1))
        .push("end", end(h()));
    let name = if p.index_of("names").is_some() {
        Text::Entry { buf: 1, index: 0 }
    } else {
        Text::Lit("\\\\LOCALHOST\\C$\\Windows\\NTDS\\ntds.dit".into())
    };
    p.push_opt("DsBackupOpenFile", ctx.open_file(h(), name))
        .push_opt(
            "DsBackupRead",
            has("DsBackupRead").then_some(Op::Read(Read {
                h: h(),
                cb: 24_576,
                pcb: true,
            })),
        )
        .push_opt(
            "DsBackupClose",
            has("DsBackupClose").then_some(Op::Close(Close { h: h() })),
        )
        .push_opt(
            "DsBackupGetDatabaseNames",
            ctx.names(ListKind::DatabaseNames, h(), 2),
        )
        .push_opt(
            "DsBackupGetBackupLogs",
            ctx.names(ListKind::BackupLogs, h(), 3),
        )
        .push_opt(
            "DsBackupTruncateLogs",
            has("DsBackupTruncateLogs").then_some(Op::Truncate(Truncate { h: h() })),
        )
        .push("DsBackupEnd", end(h()))
        .push("cleanup", Op::Cleanup);
    vec![p]
}

const AFTER_END: &[&str] = &[
    "DsBackupOpenFile",
    "DsBackupRead",
    "DsBackupClose",
    "DsBackupGetDatabaseNames",
    "DsBackupGetBackupLogs",
    "DsBackupTruncateLogs",
    "DsBackupEnd",
];

pub fn invalidates_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let (r, mut f) = match prepared_and_ended(ran, "end", "End") {
        Ok(x) => x,
        Err(e) => return e,
    };
    let mut tested = Vec::new();
    for name in AFTER_END.iter().filter(|n| r.has(n)) {
        tested.push(*name);
        f.invalid_param(ctx, &format!("{name} on an ended handle"), r.get(name));
    }
    f.finish(format!(
        "after End, {} returned 87 (ERROR_INVALID_PARAMETER)",
        tested.join(", ")
    ))
}
