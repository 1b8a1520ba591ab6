//! end.release (REQ-07, REQ-09): every session path gives back everything it took. Each path
//! runs many cycles inside the worker with probes between windows of cycles; a resource leaks
//! when it grows in most windows, so a one-off cache or table resize inside a correct library
//! is never counted, while one minimal heap block per cycle is.

use super::check::{Check, Ctx, Eval, Judged, Ran};
use super::common::{end, program, slot, Findings, UNKNOWN_ATTACHMENT};
use ntdsbcli_harness::codes::{self, describe};
use ntdsbcli_harness::program::{Close, Free, ReadToEnd, RestoreEnd};
use ntdsbcli_harness::program::{ListKind, Op, Probe, Program, Step, Tally, Text};
use ntdsbcli_harness::report::Outcome;

/// Measured cycles are cut into this many windows.
pub const WINDOWS: u32 = 8;
/// A resource leaks when it grew in at least this many windows.
const GROWING_WINDOWS: usize = 6;
/// A path stops once this many windows showed no growth (and every call kept one answer): no
/// resource can then grow in GROWING_WINDOWS of WINDOWS, so the full run would judge the same.
const FLAT_WINDOWS: u32 = WINDOWS - GROWING_WINDOWS as u32 + 1;
const WARM_UP: u32 = 16;

/// One way through a session, as end.release and fault.cleanup run it.
pub struct Path {
    pub name: &'static str,
    pub body: Vec<Op>,
}

/// Every session path the library's exports allow, in a fixed order.
pub fn paths(ctx: &Ctx) -> Vec<Path> {
    let names = ctx.names(ListKind::DatabaseNames, slot(0), 1);
    let logs = ctx.names(ListKind::BackupLogs, slot(0), 2);
    let open = ctx.open_file(slot(0), Text::Entry { buf: 1, index: 0 });
    let mut out = vec![Path {
        name: "Prepare/End",
        body: vec![ctx.prepare(0, 0), free(0), end(slot(0))],
    }];
    if let (Some(names), Some(open)) = (names.clone(), open) {
        out.extend(attachment_paths(ctx, names, open));
    }
    out.extend(failed_call_path(ctx));
    if let (Some(names), Some(logs)) = (names, logs) {
        out.extend(list_paths(ctx, names, logs));
    }
    if let Some(rp) = ctx.restore_prepare(None, 3) {
        if ctx.has("DsRestoreEnd") {
            out.push(Path {
                name: "DsRestorePrepare/DsRestoreEnd",
                body: vec![rp, Op::RestoreEnd(RestoreEnd { h: slot(3) })],
            });
        }
    }
    out
}

/// The paths end.release measures: every session path, and one more where End runs on a
/// thread of its own and each Free on yet another, as a caller with a thread pool does (a
/// library that keeps a session's state per thread loses it there). fault.cleanup sweeps
/// `paths` only: where a call runs does not change what a failed resource leaves.
fn measured_paths(ctx: &Ctx) -> Vec<Path> {
    let mut out = paths(ctx);
    let names = ctx.names(ListKind::DatabaseNames, slot(0), 1);
    let mut body = vec![ctx.prepare(0, 0)];
    let listed = names.is_some();
    body.extend(names);
    body.push(elsewhere(end(slot(0))));
    body.push(elsewhere(free(0)));
    if listed {
        body.push(elsewhere(free(1)));
    }
    out.push(Path {
        name: "Prepare, then End on another thread and each Free on a third",
        body,
    });
    out
}

fn elsewhere(op: Op) -> Op {
    Op::OnThread { op: Box::new(op) }
}

fn free(b: u8) -> Op {
    Op::Free(Free { buf: Some(b) })
}

/// Open the first attachment: read it to EOF with and without Close, or leave it open.
fn attachment_paths(ctx: &Ctx, names: Op, open: Op) -> Vec<Path> {
    let mut out = Vec::new();
    let to_eof = vec![
        ctx.prepare(0, 0),
        names.clone(),
        open.clone(),
        Op::ReadToEnd(ReadToEnd {
            h: slot(0),
            cb: 65_536,
        }),
    ];
    if ctx.has("DsBackupRead") && ctx.has("DsBackupClose") {
        let mut body = to_eof.clone();
        body.extend([
            Op::Close(Close { h: slot(0) }),
            free(1),
            free(0),
            end(slot(0)),
        ]);
        out.push(Path {
            name: "Prepare, read an attachment to EOF, Close, End",
            body,
        });
    }
    if ctx.has("DsBackupRead") {
        let mut body = to_eof;
        body.extend([end(slot(0)), free(1), free(0)]);
        out.push(Path {
            name: "Prepare, read an attachment to EOF, End without Close",
            body,
        });
    }
    out.push(Path {
        name: "End with an attachment still open",
        body: vec![
            ctx.prepare(0, 0),
            names,
            open,
            end(slot(0)),
            free(1),
            free(0),
        ],
    });
    out
}

/// A call that fails (an unknown attachment, Close with nothing open), then End.
fn failed_call_path(ctx: &Ctx) -> Option<Path> {
    let unknown = ctx.open_file(slot(0), Text::Lit(UNKNOWN_ATTACHMENT.into()));
    let mut failed = vec![ctx.prepare(0, 0)];
    failed.extend(unknown);
    if ctx.has("DsBackupClose") {
        failed.push(Op::Close(Close { h: slot(0) }));
    }
    (failed.len() > 1).then(|| {
        failed.extend([free(0), end(slot(0))]);
        Path {
            name: "End after a failed call",
            body: failed,
        }
    })
}

/// The token and both name lists, freed before End and after it.
fn list_paths(ctx: &Ctx, names: Op, logs: Op) -> Vec<Path> {
    let listed = [ctx.prepare(0, 0), names, logs];
    let (frees, end) = ([free(0), free(1), free(2)], [end(slot(0))]);
    vec![
        Path {
            name: "token and name lists freed before End",
            body: [&listed[..], &frees, &end].concat(),
        },
        Path {
            name: "token and name lists freed after End",
            body: [&listed[..], &end, &frees].concat(),
        },
    ]
}

/// Cycles per path, rounded to whole windows.
pub fn cycles(requested: u32) -> u32 {
    (requested.max(WINDOWS * 2) / WINDOWS) * WINDOWS
}

pub struct EndRelease;

pub struct ReleaseSteps {
    warm: Step,
    measure: Step,
}

impl Check for EndRelease {
    type Steps = ReleaseSteps;

    /// Each path is a session of its own, judged on its own readings.
    const SPREAD: bool = true;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, ReleaseSteps)> {
        let n = cycles(ctx.release_cycles);
        measured_paths(ctx)
            .into_iter()
            .map(|p| {
                let mut prog = program(p.name);
                let warm = prog.push(Op::Repeat {
                    n: WARM_UP,
                    probe_every: WARM_UP,
                    settle_last: false,
                    stop_flat: 0,
                    body: p.body.clone(),
                });
                let measure = prog.push(Op::Repeat {
                    n,
                    probe_every: n / WINDOWS,
                    settle_last: true,
                    stop_flat: FLAT_WINDOWS,
                    body: p.body,
                });
                prog.push(Op::Cleanup);
                (prog, ReleaseSteps { warm, measure })
            })
            .collect()
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<ReleaseSteps>]) -> Judged {
        eval(ran)
    }
}

/// Growth per cycle of one resource, when it grew in most windows and most of that growth
/// was still there at the end. The last reading waits for threads the library lets exit on
/// their own (`settle_last`); what they give back on the way out was never leaked, however
/// far a loaded machine let them fall behind the cycles.
fn leak_rate(samples: &[Probe], per_window: u32, read: fn(&Probe) -> i64) -> Option<f64> {
    let mut deltas: Vec<i64> = samples
        .windows(2)
        .map(|w| read(&w[1]) - read(&w[0]))
        .collect();
    if deltas.iter().filter(|&&d| d > 0).count() < GROWING_WINDOWS {
        return None;
    }
    deltas.sort_unstable();
    let median = (deltas[deltas.len() / 2 - 1] + deltas[deltas.len() / 2]) as f64 / 2.0;
    let kept = (read(samples.last()?) - read(samples.first()?)) as f64;
    if kept * 2.0 < median * deltas.len() as f64 {
        return None;
    }
    Some(median / per_window as f64)
}

fn amount(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

fn eval(ran: &[Ran<ReleaseSteps>]) -> Judged {
    let mut f = Findings::default();
    let mut clean = Vec::new();
    let (mut n, mut shortest, mut done) = (0, u32::MAX, 0u64);
    for r in ran {
        let path = &r.program.label;
        let m = r.get(r.steps.measure);
        let Some(Op::Repeat {
            n: cycles,
            probe_every,
            body,
            ..
        }) = r.steps.measure.index().map(|i| &r.program.ops[i])
        else {
            unreachable!("the measured step is a Repeat")
        };
        n = *cycles;
        // The cycles that ran: all of them, or fewer when the path stopped early.
        let windows = m.samples.len().saturating_sub(1) as u32;
        let ran_cycles = windows * probe_every;
        // A path whose calls fail cannot show release; say why instead of guessing.
        if let Some(e) = call_failures(path, ran_cycles, body, &m.tally, &mut f) {
            return Err(e);
        }
        shortest = shortest.min(ran_cycles);
        done += ran_cycles as u64;
        if !(FLAT_WINDOWS..=WINDOWS).contains(&windows) {
            f.fail(format!(
                "{path}: the probes did not complete ({} samples)",
                m.samples.len()
            ));
            continue;
        }
        let held = r
            .get(r.steps.warm)
            .samples
            .first()
            .zip(m.samples.last())
            .and_then(|(before, after)| kept_since_start(path, before, after));
        match leaks(path, &m.samples, *probe_every).or(held) {
            Some(line) => f.fail(line),
            None => clean.push(path.clone()),
        }
    }
    // Every leaking path is named: which paths leak is what a vendor needs to find the bug.
    // How many cycles a path ran depends on when its windows went flat, which timing can
    // move: the detail names the rule, not the count, so that reports compare across runs.
    let over = if shortest < n {
        format!("({n} cycles each, or fewer once {FLAT_WINDOWS} of a path's {WINDOWS} windows showed no growth, when no leak rule can be met)")
    } else {
        format!("({n} cycles each)")
    };
    let planned = n as u64 * ran.len() as u64;
    Ok(f.finish_listing(
        format!(
            "no growth of heap, handles, threads or mapped memory on each of {} paths {over}: {}",
            clean.len(),
            clean.join("; ")
        ),
        usize::MAX,
    )
    .covering("cycles", done, planned))
}

/// Fails a path whose Prepare or End returned an error in some cycles; an environment problem
/// makes the whole check inconclusive instead.
fn call_failures(
    path: &str,
    cycles: u32,
    body: &[Op],
    tally: &[Tally],
    f: &mut Findings,
) -> Option<Eval> {
    // A restore is granted only where the directory service is offline (REQ-62): a refused
    // DsRestorePrepare leaves no session, so its End is not judged; what the refused call
    // itself holds is still measured (REQ-27).
    let refused = restore_refused(body, tally);
    if let Some((rc, n)) = refused {
        f.note(format!(
            "{path}: DsRestorePrepare refused {} with {}, so no restore session was ended; only what the refused call holds was measured",
            in_cycles(n, cycles),
            describe(rc)
        ));
    }
    for t in tally {
        let op = match &body[t.op as usize] {
            Op::OnThread { op } => op,
            op => op,
        };
        match (op, t.rc) {
            (Op::Prepare(_), Some(rc)) if rc != 0 => {
                if let Some(fix) = codes::environment_problem(rc) {
                    return Some(Eval::new(
                        Outcome::Inconclusive,
                        format!("Prepare returned {} during {path}: {fix}", describe(rc)),
                    ));
                }
                f.fail(format!(
                    "{path}: Prepare returned {} {}",
                    describe(rc),
                    in_cycles(t.count, cycles)
                ));
            }
            (Op::RestoreEnd(_), _) if refused.is_some() => {}
            (Op::End(_) | Op::RestoreEnd(_), Some(rc)) if rc != 0 => f.fail(format!(
                "{path}: {} returned {} {}, expected 0 (S_OK)",
                op.export().unwrap_or("End"),
                describe(rc),
                in_cycles(t.count, cycles)
            )),
            _ => {}
        }
    }
    None
}

/// How many of the cycles that ran an answer came in: "in every cycle" when all (a path that
/// stopped early ran a count that timing can move), else "in K of N cycles".
fn in_cycles(count: u32, cycles: u32) -> String {
    match count >= cycles {
        true => "in every cycle".into(),
        false => format!("in {count} of {cycles} cycles"),
    }
}

/// The code of the most frequent refusal of DsRestorePrepare in a path, and how many cycles
/// were refused in all (any code but S_OK).
fn restore_refused(body: &[Op], tally: &[Tally]) -> Option<(i32, u32)> {
    let refusals: Vec<&Tally> = tally
        .iter()
        .filter(|t| matches!(body[t.op as usize], Op::RestorePrepare(_)))
        .filter(|t| t.rc.is_some_and(|rc| rc != 0))
        .collect();
    let most = refusals.iter().max_by_key(|t| t.count)?;
    Some((most.rc?, refusals.iter().map(|t| t.count).sum()))
}

/// Heap or resident memory a path may still hold after all its cycles, beyond what it held
/// before the first: a one-off cache is far smaller; a leak that stopped growing once it
/// reached some size (during the warm-up, where no window sees it) is not.
const KEPT_MAX: i64 = 32 << 20;

/// The sentence naming what a path kept of all it took since before its first cycle, when that
/// is more than any one-off set-up holds.
fn kept_since_start(path: &str, before: &Probe, after: &Probe) -> Option<String> {
    let heap = after.heap_bytes - before.heap_bytes;
    let resident = if before.resident_bytes >= 0 && after.resident_bytes >= 0 {
        after.resident_bytes - before.resident_bytes
    } else {
        0
    };
    (heap > KEPT_MAX || resident > KEPT_MAX).then(|| {
        format!(
            "{path} holds {} MiB more heap and {} MiB more resident memory after its cycles than before the first one: a leak that stopped growing once it was large (the warm-up took it)",
            heap >> 20,
            resident >> 20
        )
    })
}

/// The sentence naming what a path leaks per cycle, or None when nothing grows.
fn leaks(path: &str, samples: &[Probe], probe_every: u32) -> Option<String> {
    let rates = [
        leak_rate(samples, probe_every, |p| p.heap_bytes),
        leak_rate(samples, probe_every, |p| p.handles),
        leak_rate(samples, probe_every, |p| p.threads),
        leak_rate(samples, probe_every, |p| p.mapped_bytes),
    ];
    if rates.iter().all(Option::is_none) {
        return None;
    }
    let [heap, handles, threads, mapped] = rates.map(|r| r.unwrap_or(0.0));
    let mut s = format!(
        "{path} leaks {} bytes of heap, {} handles and {} threads per cycle",
        amount(heap),
        amount(handles),
        amount(threads)
    );
    if mapped > 0.0 {
        s.push_str(&format!(" ({} bytes of mapped memory)", amount(mapped)));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(counts: &[i64]) -> Vec<Probe> {
        counts
            .iter()
            .map(|&t| Probe {
                threads: t,
                ..Probe::default()
            })
            .collect()
    }

    fn rate(counts: &[i64]) -> Option<f64> {
        leak_rate(&threads(counts), 25, |p| p.threads)
    }

    #[test]
    fn a_steady_leak_is_a_rate_per_cycle() {
        let counts: Vec<i64> = (0..=8).map(|w| 3 + 25 * w).collect();
        assert_eq!(rate(&counts), Some(1.0));
    }

    #[test]
    fn one_off_growth_is_no_leak() {
        assert_eq!(rate(&[3, 5, 5, 5, 5, 5, 5, 5, 5]), None);
    }

    #[test]
    fn threads_that_fell_behind_and_then_exited_are_no_leak() {
        // Every window ended with more threads on their way out, and the last reading,
        // given time, found them gone.
        assert_eq!(rate(&[3, 20, 41, 60, 82, 101, 120, 143, 3]), None);
        assert_eq!(rate(&[3, 20, 41, 60, 82, 101, 120, 143, 40]), None);
    }

    /// The early stop is exact: once FLAT_WINDOWS windows showed no growth, the leak rule
    /// cannot be met, however the other windows (those seen and those never run) grew; one
    /// flat window fewer and it still can be.
    #[test]
    fn a_path_stopped_early_would_never_have_been_judged_leaking() {
        for flat_at in 0..WINDOWS as usize {
            // Growth of 25 a window everywhere but at FLAT_WINDOWS windows from `flat_at` on
            // (wrapping round).
            let n = WINDOWS as usize;
            let flat = |w: usize| (w + n - flat_at) % n < FLAT_WINDOWS as usize;
            let mut counts = vec![3i64];
            for w in 0..WINDOWS as usize {
                let last = *counts.last().unwrap();
                counts.push(if flat(w) { last } else { last + 25 });
            }
            assert_eq!(rate(&counts), None, "{counts:?}");
        }
        let mut counts: Vec<i64> = (0..=8).map(|w| 3 + 25 * w).collect();
        for w in 1..FLAT_WINDOWS as usize {
            counts[w..].iter_mut().for_each(|c| *c -= 25);
        }
        assert!(rate(&counts).is_some(), "{counts:?}");
    }

    #[test]
    fn a_leak_that_is_mostly_still_held_at_the_end_counts() {
        // Some of the growth came back, most did not.
        assert!(rate(&[3, 28, 53, 78, 103, 128, 153, 178, 150]).is_some());
    }
}
