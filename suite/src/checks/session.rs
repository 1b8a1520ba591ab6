//! end.open-file, end.after-failure, end.buffers-outlive, end.concurrent, end.restore-handle
//! and free.null: End in the middle of a session's life, and what it must leave alone.

use super::check::{Check, Ctx, Eval, Judged, Ran};
use super::common::{end, growth, live, program, slot, Findings, UNKNOWN_ATTACHMENT};
use ntdsbcli_harness::codes::{describe, ERROR_INVALID_PARAMETER, E_INVALIDARG};
use ntdsbcli_harness::program::{
    Close, EndConcurrent as EndAtOnce, Free, Read, ReadToEnd, RestoreEnd,
};
use ntdsbcli_harness::program::{HandleArg, ListKind, Op, Program, Step, Text};
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

pub struct EndOpenFile;

/// The steps of one cycle of a path.
struct Cycle {
    prepare: Step,
    open: Step,
    read: Step,
    end: Step,
    close: Step,
}

pub struct OpenFileSteps {
    /// The measured cycle.
    c: Cycle,
    before: Step,
    after: Step,
}

impl Check for EndOpenFile {
    type Steps = OpenFileSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, OpenFileSteps)> {
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
                let cycle = |p: &mut Program| {
                    let prepare = p.push(ctx.prepare(0, 0));
                    p.push_opt(ctx.names(ListKind::DatabaseNames, slot(0), 1));
                    let open = p.push_opt(ctx.open_file(slot(0), entry0()));
                    let read = p.push_opt(ctx.has("DsBackupRead").then_some(read.clone()));
                    let end = p.push(end(slot(0)));
                    let close = p.push_opt(
                        ctx.has("DsBackupClose")
                            .then_some(Op::Close(Close { h: slot(0) })),
                    );
                    p.push(Op::Free(Free { buf: Some(0) }));
                    p.push(Op::Free(Free { buf: Some(1) }));
                    Cycle {
                        prepare,
                        open,
                        read,
                        end,
                        close,
                    }
                };
                // A first cycle warms up whatever the library sets up once; the second is
                // measured.
                cycle(&mut p);
                let before = p.push(Op::Probe);
                let c = cycle(&mut p);
                let after = p.push(Op::Probe);
                p.push(Op::Cleanup);
                (p, OpenFileSteps { c, before, after })
            })
            .collect()
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<OpenFileSteps>]) -> Judged {
        let mut f = Findings::default();
        let mut tested = Vec::new();
        for (r, path) in ran.iter().zip(OPEN_PATHS) {
            let s = r.steps;
            live(r.get(s.c.prepare))?;
            let open = r.get(s.c.open);
            if open.rc != Some(0) {
                return Err(Eval::new(
                    Outcome::Inconclusive,
                    format!(
                        "could not open the first database attachment: OpenFile returned {}",
                        open.rc
                            .map(describe)
                            .unwrap_or_else(|| open.not_run.clone().unwrap_or_default())
                    ),
                ));
            }
            if path.to_eof && !s.c.read.present() {
                continue;
            }
            tested.push(path.label);
            let what = path.what;
            f.code(what, r.get(s.c.end), 0);
            if s.c.close.present() {
                f.invalid_param(
                    ctx,
                    &format!("Close on the handle after {what}"),
                    r.get(s.c.close),
                );
            }
            if let Some(g) = growth(r.get(s.before), r.get(s.after)) {
                f.fail(format!(
                    "{what} left {g} behind (the attachment was not released)"
                ));
            }
        }
        Ok(f.finish(format!(
            "End returned S_OK and released the session and the attachment on each path: {}",
            tested.join("; ")
        )))
    }
}

/// One op of a failure path: whether it is one of the failures, and the op (None when its
/// export is absent).
struct PathOp {
    failure: Option<&'static str>,
    op: Option<Op>,
}

fn setup(op: Option<Op>) -> PathOp {
    PathOp { failure: None, op }
}

fn failing(what: &'static str, op: Option<Op>) -> PathOp {
    PathOp {
        failure: Some(what),
        op,
    }
}

/// The intermediate failures of REQ-08, each as its own path and all together.
fn failures(ctx: &Ctx) -> Vec<(&'static str, Vec<PathOp>)> {
    let unknown = || ctx.open_file(slot(0), Text::Lit(UNKNOWN_ATTACHMENT.into()));
    let bad_read = || {
        vec![
            setup(ctx.names(ListKind::DatabaseNames, slot(0), 1)),
            setup(ctx.open_file(slot(0), entry0())),
            failing(
                "a Read into 1000 bytes",
                ctx.has("DsBackupRead").then_some(Op::Read(Read {
                    h: slot(0),
                    cb: 1_000,
                    pcb: true,
                })),
            ),
        ]
    };
    let close = || {
        ctx.has("DsBackupClose")
            .then_some(Op::Close(Close { h: slot(0) }))
    };
    let open_unknown = "an OpenFile of an unknown attachment";
    let close_none = "a Close with nothing open";
    let mut all = vec![failing(open_unknown, unknown())];
    all.extend(bad_read());
    all.push(setup(close()));
    all.push(failing(close_none, close()));
    vec![
        (
            "an unknown attachment name",
            vec![failing(open_unknown, unknown())],
        ),
        ("a bad read size", bad_read()),
        (
            "Close with nothing open",
            vec![failing(close_none, close())],
        ),
        ("all three failures", all),
    ]
}

pub struct EndAfterFailure;

pub struct AfterFailureSteps {
    prepare: Step,
    /// The calls that must fail, each with what a note calls it.
    failures: Vec<(&'static str, Step)>,
    end: Step,
}

impl Check for EndAfterFailure {
    type Steps = AfterFailureSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, AfterFailureSteps)> {
        failures(ctx)
            .into_iter()
            .filter(|(_, ops)| ops.iter().any(|o| o.failure.is_some() && o.op.is_some()))
            .map(|(label, ops)| {
                let mut p = program(format!("End after {label}"));
                let prepare = p.push(ctx.prepare(0, 0));
                let mut failures = Vec::new();
                for o in ops {
                    let step = p.push_opt(o.op);
                    if let Some(what) = o.failure {
                        failures.push((what, step));
                    }
                }
                let end = p.push(end(slot(0)));
                p.push(Op::Cleanup);
                (
                    p,
                    AfterFailureSteps {
                        prepare,
                        failures,
                        end,
                    },
                )
            })
            .collect()
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<AfterFailureSteps>]) -> Judged {
        if ran.is_empty() {
            return Err(Eval::skip("no failing call can be made without DsBackupOpenFile, DsBackupRead or DsBackupClose"));
        }
        let mut f = Findings::default();
        for r in ran {
            let s = r.steps;
            live(r.get(s.prepare))?;
            for &(what, step) in &s.failures {
                if step.present() && r.get(step).rc == Some(0) {
                    f.note(format!("{what} did not fail in \"{}\"", r.program.label));
                }
            }
            f.code(&r.program.label, r.get(s.end), 0);
        }
        Ok(f.finish(format!(
            "End returned S_OK after each of {} failure paths",
            ran.len()
        )))
    }
}

pub struct EndBuffersOutlive;

pub struct BuffersSteps {
    prepare: Step,
    end: Step,
    /// Each buffer (token, database names, log names) read before End and after it: only in
    /// the program that ends first.
    peeks: Option<[(Step, Step); 3]>,
    /// A new session after the frees, and its End: only in the program that ends first.
    again: Option<(Step, Step)>,
}

impl Check for EndBuffersOutlive {
    type Steps = BuffersSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, BuffersSteps)> {
        let frees = |p: &mut Program| {
            for b in 0..3 {
                p.push(Op::Free(Free { buf: Some(b) }));
            }
        };
        let mut after = program("buffers read and freed after End");
        let prepare = after.push(ctx.prepare(0, 0));
        after.push_opt(ctx.names(ListKind::DatabaseNames, slot(0), 1));
        after.push_opt(ctx.names(ListKind::BackupLogs, slot(0), 2));
        let peek: [Step; 3] = std::array::from_fn(|b| after.push(Op::Peek { buf: b as u8 }));
        let end_step = after.push(end(slot(0)));
        let later: [Step; 3] = std::array::from_fn(|b| after.push(Op::Peek { buf: b as u8 }));
        frees(&mut after);
        // The library must still work after the frees (a double free can surface here).
        let again_prepare = after.push(ctx.prepare(3, 3));
        let again_end = after.push(end(slot(3)));
        after.push(Op::Cleanup);
        let after = (
            after,
            BuffersSteps {
                prepare,
                end: end_step,
                peeks: Some(std::array::from_fn(|b| (peek[b], later[b]))),
                again: Some((again_prepare, again_end)),
            },
        );
        let mut before = program("buffers freed before End");
        let prepare = before.push(ctx.prepare(0, 0));
        before.push_opt(ctx.names(ListKind::DatabaseNames, slot(0), 1));
        before.push_opt(ctx.names(ListKind::BackupLogs, slot(0), 2));
        frees(&mut before);
        let end_step = before.push(end(slot(0)));
        before.push(Op::Cleanup);
        let before = (
            before,
            BuffersSteps {
                prepare,
                end: end_step,
                peeks: None,
                again: None,
            },
        );
        vec![after, before]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<BuffersSteps>]) -> Judged {
        let mut f = Findings::default();
        let names = [
            "the expiry token",
            "the database name list",
            "the log name list",
        ];
        let mut kept = 0;
        for r in ran {
            let s = r.steps;
            live(r.get(s.prepare))?;
            f.code(&format!("End with {}", r.program.label), r.get(s.end), 0);
            for (name, &(peek, after)) in names.iter().zip(s.peeks.iter().flatten()) {
                let (a, b) = (r.get(peek), r.get(after));
                if a.bytes.as_ref().is_some_and(|x| !x.is_empty()) {
                    kept += 1;
                    if a.bytes != b.bytes {
                        f.fail(format!("{name} changed after End: End freed or reused a buffer the caller still owns"));
                    }
                }
            }
            if let Some((again, again_end)) = s.again {
                f.code(
                    "a new Prepare after the buffers were freed",
                    r.get(again),
                    0,
                );
                f.code("its End", r.get(again_end), 0);
            }
        }
        Ok(f.finish(format!(
            "{kept} buffers stayed intact after End, and freeing them before or after End worked"
        )))
    }
}

const ROUNDS: usize = 16;
const THREADS: u8 = 8;

pub struct EndConcurrent;

/// Per round: the Prepare, and the End on threads at once.
pub struct ConcurrentSteps {
    rounds: Vec<(Step, Step)>,
}

impl Check for EndConcurrent {
    type Steps = ConcurrentSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, ConcurrentSteps)> {
        let mut p = program(format!(
            "{THREADS} threads end one handle at once, {ROUNDS} rounds"
        ));
        let rounds = (0..ROUNDS)
            .map(|_| {
                let prepare = p.push(ctx.prepare(0, 0));
                p.push(Op::Free(Free { buf: Some(0) }));
                let end = p.push(Op::EndConcurrent(EndAtOnce {
                    h: slot(0),
                    threads: THREADS,
                }));
                (prepare, end)
            })
            .collect();
        p.push(Op::Cleanup);
        vec![(p, ConcurrentSteps { rounds })]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<ConcurrentSteps>]) -> Judged {
        concurrent_eval(ctx, &ran[0])
    }
}

fn concurrent_eval(ctx: &Ctx, r: &Ran<ConcurrentSteps>) -> Judged {
    let mut f = Findings::default();
    let mut hresult = false;
    for (i, &(prepare, end)) in r.steps.rounds.iter().enumerate() {
        live(r.get(prepare))?;
        let codes = &r.get(end).codes;
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
    Ok(e)
}

pub struct EndRestoreHandle;

pub struct RestoreSteps {
    prepare: Step,
    restore: Step,
    end: Step,
    restore_end: Step,
    end0: Step,
}

impl Check for EndRestoreHandle {
    type Steps = RestoreSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, RestoreSteps)> {
        let mut p = program("DsBackupEnd on a restore handle");
        let prepare = p.push(ctx.prepare(0, 0));
        let restore = p.push_opt(ctx.restore_prepare(Some(0), 1));
        let end_step = p.push(end(slot(1)));
        let restore_end = p.push(Op::RestoreEnd(RestoreEnd { h: slot(1) }));
        let end0 = p.push(end(slot(0)));
        p.push(Op::Cleanup);
        let beside = RestoreSteps {
            prepare,
            restore,
            end: end_step,
            restore_end,
            end0,
        };
        // Restore handles may come from a table of their own and share values with backup
        // handles: then the restore handle is tested with no backup session live.
        let mut alone = program("DsBackupEnd on a restore handle, no backup session live");
        let prepare = alone.push(ctx.prepare(0, 0));
        let end0 = alone.push(end(slot(0)));
        let restore = alone.push_opt(ctx.restore_prepare(Some(0), 1));
        let end_step = alone.push(end(slot(1)));
        let restore_end = alone.push(Op::RestoreEnd(RestoreEnd { h: slot(1) }));
        alone.push(Op::Cleanup);
        let alone_steps = RestoreSteps {
            prepare,
            restore,
            end: end_step,
            restore_end,
            end0,
        };
        vec![(p, beside), (alone, alone_steps)]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<RestoreSteps>]) -> Judged {
        restore_eval(ctx, ran)
    }
}

fn restore_eval(ctx: &Ctx, ran: &[Ran<RestoreSteps>]) -> Judged {
    let (first, s) = (&ran[0], ran[0].steps);
    live(first.get(s.prepare))?;
    let shared = first.get(s.restore).handle.is_some()
        && first.get(s.restore).handle == first.get(s.prepare).handle;
    let r = if shared { &ran[1] } else { first };
    let s = r.steps;
    let rp = r.get(s.restore);
    match (rp.rc, rp.handle) {
        (Some(0), Some(h)) if h != 0 => {}
        (Some(rc), _) if rc != 0 => {
            return Err(Eval::new(
                Outcome::Skip,
                format!("DsRestorePrepare refused: {}", describe(rc)),
            ))
        }
        _ => {
            return Err(Eval::new(
                Outcome::Skip,
                "DsRestorePrepare gave no restore handle",
            ))
        }
    }
    let mut f = Findings::default();
    if shared {
        f.note(format!(
            "the restore handle 0x{:X} has the value of the live backup handle, so it was tested with no backup session live",
            rp.handle.unwrap_or(0)
        ));
    }
    let end = r.get(s.end);
    let after = "DsRestoreEnd on that restore handle afterwards";
    match end.rc {
        Some(ERROR_INVALID_PARAMETER | E_INVALIDARG) | None => {
            f.invalid_param(ctx, "DsBackupEnd on a restore handle", end);
            f.code(after, r.get(s.restore_end), 0);
        }
        // what DsBackupEnd does with a restore handle is not documented. A library
        // that ends the restore session with it leaves nothing for DsRestoreEnd.
        Some(rc) => {
            f.compat(format!(
                "DsBackupEnd on a restore handle returned {}; the documentation does not say what it does with one (A-5), and 87 is what a careful library answers",
                describe(rc)
            ));
            let re = r.get(s.restore_end);
            if !(rc == 0 && re.rc == Some(ERROR_INVALID_PARAMETER)) {
                f.code(after, re, 0);
            }
        }
    }
    if !shared {
        f.code("End of the backup session beside it", r.get(s.end0), 0);
    }
    Ok(f.finish("DsBackupEnd on a restore handle returned 87 and left it for DsRestoreEnd"))
}

pub struct FreeNull;

pub struct FreeNullSteps {
    prepare: Step,
    end: Step,
}

impl Check for FreeNull {
    type Steps = FreeNullSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, FreeNullSteps)> {
        let mut p = program("DsBackupFree(NULL)");
        p.push(Op::Free(Free { buf: None }));
        p.push(Op::Free(Free { buf: None }));
        let prepare = p.push(ctx.prepare(0, 0));
        p.push(Op::Free(Free { buf: Some(0) }));
        let end = p.push(end(HandleArg::Slot(0)));
        vec![(p, FreeNullSteps { prepare, end })]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<FreeNullSteps>]) -> Judged {
        let (r, s) = (&ran[0], ran[0].steps);
        let mut f = Findings::default();
        live(r.get(s.prepare))?;
        f.code(
            "End of a session opened after DsBackupFree(NULL)",
            r.get(s.end),
            0,
        );
        Ok(f.finish("DsBackupFree(NULL) twice was harmless and the library kept working"))
    }
}
