//! end.open-file, end.after-failure, end.buffers-outlive, end.concurrent, end.restore-handle
//! and free.null: End in the middle of a session's life, and what it must leave alone.

use super::common::{
    end, growth, live, program, slot, Ctx, Eval, Findings, Ran, UNKNOWN_ATTACHMENT,
};
use ntdsbcli_harness::codes::{describe, ERROR_INVALID_PARAMETER, E_INVALIDARG};
use ntdsbcli_harness::program::{Close, EndConcurrent, Free, Read, ReadToEnd, RestoreEnd};
use ntdsbcli_harness::program::{HandleArg, ListKind, Op, Program, Text};
use ntdsbcli_harness::report::Outcome;

fn entry0() -> Text {
    Text::Entry { buf: 1, index: 0 }
}

/// One way a session can end with an attachment not closed (REQ-10, REQ-02, REQ-08).
struct OpenPath {
    /// The program's label.
    label: &'static str,
    /// The End as a detail names it.
    what: &'static str,
    /// Read the whole attachment to EOF, rather than one block.
    to_eof: bool,
}

const OPEN_PATHS: &[OpenPath] = &[
    OpenPath {
        label: "End with an attachment open",
        what: "End with an attachment still open",
        to_eof: false,
    },
    OpenPath {
        label: "End after reading an attachment to EOF without Close",
        what: "End after reading the attachment to EOF without Close",
        to_eof: true,
    },
];

pub fn open_file_plan(ctx: &Ctx) -> Vec<Program> {
    OPEN_PATHS
        .iter()
        .map(|path| {
            let mut p = program(path.label);
            let read = if path.to_eof {
                Op::ReadToEnd(ReadToEnd {
                    h: slot(0),
                    cb: 65_536,
                })
            } else {
                Op::Read(Read {
                    h: slot(0),
                    cb: 24_576,
                    pcb: true,
                })
            };
            let cycle = |p: &mut Program, tag: &str| {
                p.push(format!("{tag}.prepare"), ctx.prepare(0, 0))
                    .push_opt(
                        format!("{tag}.names"),
                        ctx.names(ListKind::DatabaseNames, slot(0), 1),
                    )
                    .push_opt(format!("{tag}.open"), ctx.open_file(slot(0), entry0()))
                    .push_opt(
                        format!("{tag}.read"),
                        ctx.has("DsBackupRead").then_some(read.clone()),
                    )
                    .push(format!("{tag}.end"), end(slot(0)))
                    .push_opt(
                        format!("{tag}.close"),
                        ctx.has("DsBackupClose")
                            .then_some(Op::Close(Close { h: slot(0) })),
                    )
                    .push(format!("{tag}.free0"), Op::Free(Free { buf: Some(0) }))
                    .push(format!("{tag}.free1"), Op::Free(Free { buf: Some(1) }));
            };
            // A first cycle warms up whatever the library sets up once; the second is measured.
            cycle(&mut p, "warm");
            p.push("before", Op::Probe);
            cycle(&mut p, "c");
            p.push("after", Op::Probe).push("cleanup", Op::Cleanup);
            p
        })
        .collect()
}

pub fn open_file_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let mut f = Findings::default();
    let mut tested = Vec::new();
    for (r, path) in ran.iter().zip(OPEN_PATHS) {
        if let Err(e) = live(r.get("c.prepare")) {
            return e;
        }
        let open = r.get("c.open");
        if open.rc != Some(0) {
            return Eval::new(
                Outcome::Inconclusive,
                format!(
                    "could not open the first database attachment: OpenFile returned {}",
                    open.rc
                        .map(describe)
                        .unwrap_or_else(|| open.not_run.clone().unwrap_or_default())
                ),
            );
        }
        if path.to_eof && !r.has("c.read") {
            continue;
        }
        tested.push(path.label);
        let what = path.what;
        f.code(what, r.get("c.end"), 0);
        if r.has("c.close") {
            f.invalid_param(
                ctx,
                &format!("Close on the handle after {what}"),
                r.get("c.close"),
            );
        }
        if let Some(g) = growth(r.get("before"), r.get("after")) {
            f.fail(format!(
                "{what} left {g} behind (the attachment was not released)"
            ));
        }
    }
    f.finish(format!(
        "End returned S_OK and released the session and the attachment on each path: {}",
        tested.join("; ")
    ))
}

/// Tagged ops of one failure path; an op is None when its export is absent.
type FailurePath = Vec<(String, Option<Op>)>;

/// The intermediate failures of REQ-08, each as its own path and all together.
fn failures(ctx: &Ctx) -> Vec<(&'static str, FailurePath)> {
    let unknown = ctx.open_file(slot(0), Text::Lit(UNKNOWN_ATTACHMENT.into()));
    let bad_read = vec![
        (
            "names".to_string(),
            ctx.names(ListKind::DatabaseNames, slot(0), 1),
        ),
        ("open".to_string(), ctx.open_file(slot(0), entry0())),
        (
            "fail.read".to_string(),
            ctx.has("DsBackupRead").then_some(Op::Read(Read {
                h: slot(0),
                cb: 1_000,
                pcb: true,
            })),
        ),
    ];
    let close = ctx
        .has("DsBackupClose")
        .then_some(Op::Close(Close { h: slot(0) }));
    let mut all = vec![("fail.open".to_string(), unknown.clone())];
    all.extend(bad_read.clone());
    all.push(("close-open".to_string(), close.clone()));
    all.push(("fail.close".to_string(), close.clone()));
    vec![
        (
            "an unknown attachment name",
            vec![("fail.open".to_string(), unknown)],
        ),
        ("a bad read size", bad_read),
        (
            "Close with nothing open",
            vec![("fail.close".to_string(), close)],
        ),
        ("all three failures", all),
    ]
}

pub fn after_failure_plan(ctx: &Ctx) -> Vec<Program> {
    failures(ctx)
        .into_iter()
        .filter(|(_, ops)| {
            ops.iter()
                .any(|(t, o)| t.starts_with("fail.") && o.is_some())
        })
        .map(|(label, ops)| {
            let mut p = program(format!("End after {label}"));
            p.push("prepare", ctx.prepare(0, 0));
            for (tag, op) in ops {
                p.push_opt(tag, op);
            }
            p.push("end", end(slot(0))).push("cleanup", Op::Cleanup);
            p
        })
        .collect()
}

pub fn after_failure_eval(_ctx: &Ctx, ran: &[Ran]) -> Eval {
    if ran.is_empty() {
        return Eval::new(
            Outcome::Skip,
            "not run: no failing call can be made without DsBackupOpenFile, DsBackupRead or DsBackupClose",
        );
    }
    let mut f = Findings::default();
    for r in ran {
        if let Err(e) = live(r.get("prepare")) {
            return e;
        }
        for tag in ["fail.open", "fail.read", "fail.close"] {
            if r.has(tag) && r.get(tag).rc == Some(0) {
                f.note(format!("{tag} did not fail in \"{}\"", r.program.label));
            }
        }
        f.code(&r.program.label, r.get("end"), 0);
    }
    f.finish(format!(
        "End returned S_OK after each of {} failure paths",
        ran.len()
    ))
}

pub fn buffers_plan(ctx: &Ctx) -> Vec<Program> {
    let mut after = program("buffers read and freed after End");
    after
        .push("prepare", ctx.prepare(0, 0))
        .push_opt("names", ctx.names(ListKind::DatabaseNames, slot(0), 1))
        .push_opt("logs", ctx.names(ListKind::BackupLogs, slot(0), 2))
        .push("peek0", Op::Peek { buf: 0 })
        .push("peek1", Op::Peek { buf: 1 })
        .push("peek2", Op::Peek { buf: 2 })
        .push("end", end(slot(0)))
        .push("after0", Op::Peek { buf: 0 })
        .push("after1", Op::Peek { buf: 1 })
        .push("after2", Op::Peek { buf: 2 })
        .push("free0", Op::Free(Free { buf: Some(0) }))
        .push("free1", Op::Free(Free { buf: Some(1) }))
        .push("free2", Op::Free(Free { buf: Some(2) }))
        // The library must still work after the frees (a double free can surface here).
        .push("again", ctx.prepare(3, 3))
        .push("again.end", end(slot(3)))
        .push("cleanup", Op::Cleanup);
    let mut before = program("buffers freed before End");
    before
        .push("prepare", ctx.prepare(0, 0))
        .push_opt("names", ctx.names(ListKind::DatabaseNames, slot(0), 1))
        .push_opt("logs", ctx.names(ListKind::BackupLogs, slot(0), 2))
        .push("free0", Op::Free(Free { buf: Some(0) }))
        .push("free1", Op::Free(Free { buf: Some(1) }))
        .push("free2", Op::Free(Free { buf: Some(2) }))
        .push("end", end(slot(0)))
        .push("cleanup", Op::Cleanup);
    vec![after, before]
}

pub fn buffers_eval(_ctx: &Ctx, ran: &[Ran]) -> Eval {
    let mut f = Findings::default();
    let names = [
        "the expiry token",
        "the database name list",
        "the log name list",
    ];
    let mut kept = 0;
    for r in ran {
        if let Err(e) = live(r.get("prepare")) {
            return e;
        }
        f.code(&format!("End with {}", r.program.label), r.get("end"), 0);
        // Only the program that ends first peeks at the buffers.
        for (i, name) in names.iter().enumerate().filter(|_| r.has("after0")) {
            let (a, b) = (r.get(&format!("peek{i}")), r.get(&format!("after{i}")));
            if a.bytes.as_ref().is_some_and(|x| !x.is_empty()) {
                kept += 1;
                if a.bytes != b.bytes {
                    f.fail(format!("{name} changed after End: End freed or reused a buffer the caller still owns"));
                }
            }
        }
        if r.has("again") {
            f.code(
                "a new Prepare after the buffers were freed",
                r.get("again"),
                0,
            );
            f.code("its End", r.get("again.end"), 0);
        }
    }
    f.finish(format!(
        "{kept} buffers stayed intact after End, and freeing them before or after End worked"
    ))
}

const ROUNDS: usize = 16;
const THREADS: u8 = 8;

pub fn concurrent_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program(format!(
        "{THREADS} threads end one handle at once, {ROUNDS} rounds"
    ));
    for i in 0..ROUNDS {
        p.push(format!("prepare{i}"), ctx.prepare(0, 0))
            .push(format!("free{i}"), Op::Free(Free { buf: Some(0) }))
            .push(
                format!("end{i}"),
                Op::EndConcurrent(EndConcurrent {
                    h: slot(0),
                    threads: THREADS,
                }),
            );
    }
    p.push("cleanup", Op::Cleanup);
    vec![p]
}

pub fn concurrent_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let r = &ran[0];
    let mut f = Findings::default();
    let mut hresult = false;
    for i in 0..ROUNDS {
        if let Err(e) = live(r.get(&format!("prepare{i}"))) {
            return e;
        }
        let codes = &r.get(&format!("end{i}")).codes;
        let ok = codes.iter().filter(|&&c| c == 0).count();
        let wrapped = codes.iter().filter(|&&c| c == E_INVALIDARG).count();
        hresult |= wrapped > 0;
        let others: Vec<String> = codes
            .iter()
            .filter(|&&c| {
                c != 0 && c != ERROR_INVALID_PARAMETER && !(ctx.accept_hresult && c == E_INVALIDARG)
            })
            .map(|&c| describe(c))
            .collect();
        if ok != 1 {
            f.fail(format!(
                "round {i}: {THREADS} threads ended one live handle at once and {ok} got S_OK, expected exactly 1"
            ));
        }
        if !others.is_empty() {
            f.fail(format!(
                "round {i}: the losing threads got {}, expected 87 (ERROR_INVALID_PARAMETER)",
                others.join(", ")
            ));
        }
        if f.failed() {
            break;
        }
    }
    let mut e = f.finish(format!(
        "in {ROUNDS} rounds of {THREADS} threads ending one handle, exactly one got S_OK and the rest 87"
    ));
    if hresult && ctx.accept_hresult && e.outcome == Outcome::Pass {
        e = Eval::new(Outcome::Warn, "the losing threads got 0x80070057, accepted by --accept-hresult; the documented value is 87");
    }
    e
}

pub fn restore_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program("DsBackupEnd on a restore handle");
    p.push("prepare", ctx.prepare(0, 0))
        .push_opt("restore", ctx.restore_prepare(Some(0), 1))
        .push("end", end(slot(1)))
        .push("restore-end", Op::RestoreEnd(RestoreEnd { h: slot(1) }))
        .push("end0", end(slot(0)))
        .push("cleanup", Op::Cleanup);
    // Restore handles may come from a table of their own and share values with backup
    // handles: then the restore handle is tested with no backup session live.
    let mut alone = program("DsBackupEnd on a restore handle, no backup session live");
    alone
        .push("prepare", ctx.prepare(0, 0))
        .push("end0", end(slot(0)))
        .push_opt("restore", ctx.restore_prepare(Some(0), 1))
        .push("end", end(slot(1)))
        .push("restore-end", Op::RestoreEnd(RestoreEnd { h: slot(1) }))
        .push("cleanup", Op::Cleanup);
    vec![p, alone]
}

pub fn restore_eval(ctx: &Ctx, ran: &[Ran]) -> Eval {
    let first = &ran[0];
    if let Err(e) = live(first.get("prepare")) {
        return e;
    }
    let shared = first.get("restore").handle.is_some()
        && first.get("restore").handle == first.get("prepare").handle;
    let r = if shared { &ran[1] } else { first };
    let rp = r.get("restore");
    match (rp.rc, rp.handle) {
        (Some(0), Some(h)) if h != 0 => {}
        (Some(rc), _) if rc != 0 => {
            return Eval::new(
                Outcome::Skip,
                format!("DsRestorePrepare refused: {}", describe(rc)),
            )
        }
        _ => return Eval::new(Outcome::Skip, "DsRestorePrepare gave no restore handle"),
    }
    let mut f = Findings::default();
    if shared {
        f.note(format!(
            "the restore handle 0x{:X} has the value of the live backup handle, so it was tested with no backup session live",
            rp.handle.unwrap_or(0)
        ));
    }
    let end = r.get("end");
    let after = "DsRestoreEnd on that restore handle afterwards";
    match end.rc {
        Some(ERROR_INVALID_PARAMETER | E_INVALIDARG) | None => {
            f.invalid_param(ctx, "DsBackupEnd on a restore handle", end);
            f.code(after, r.get("restore-end"), 0);
        }
        // what DsBackupEnd does with a restore handle is not documented. A library
        // that ends the restore session with it leaves nothing for DsRestoreEnd.
        Some(rc) => {
            f.compat(format!(
                "DsBackupEnd on a restore handle returned {}; the documentation does not say what it does with one (A-5), and 87 is what a careful library answers",
                describe(rc)
            ));
            let re = r.get("restore-end");
            if !(rc == 0 && re.rc == Some(ERROR_INVALID_PARAMETER)) {
                f.code(after, re, 0);
            }
        }
    }
    if !shared {
        f.code("End of the backup session beside it", r.get("end0"), 0);
    }
    f.finish("DsBackupEnd on a restore handle returned 87 and left it for DsRestoreEnd")
}

pub fn free_null_plan(ctx: &Ctx) -> Vec<Program> {
    let mut p = program("DsBackupFree(NULL)");
    p.push("free1", Op::Free(Free { buf: None }))
        .push("free2", Op::Free(Free { buf: None }))
        .push("prepare", ctx.prepare(0, 0))
        .push("free", Op::Free(Free { buf: Some(0) }))
        .push("end", end(HandleArg::Slot(0)));
    vec![p]
}

pub fn free_null_eval(_ctx: &Ctx, ran: &[Ran]) -> Eval {
    let r = &ran[0];
    let mut f = Findings::default();
    if let Err(e) = live(r.get("prepare")) {
        return e;
    }
    f.code(
        "End of a session opened after DsBackupFree(NULL)",
        r.get("end"),
        0,
    );
    f.finish("DsBackupFree(NULL) twice was harmless and the library kept working")
}
