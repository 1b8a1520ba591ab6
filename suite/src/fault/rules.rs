//! The rules for one faulted run of a session path, and for a confirmation's runs: what the
//! codes must be by where the failed call landed, and what may be left over. Pure: reads
//! observations, runs nothing.

use ntdsbcli_harness::codes::{describe, ERROR_INVALID_PARAMETER, ERROR_NOT_ENOUGH_MEMORY};
use ntdsbcli_harness::codes::{ERROR_OUTOFMEMORY, E_OUTOFMEMORY};
use ntdsbcli_harness::imports::fault::ordinal;
use ntdsbcli_harness::imports::Hit;
use ntdsbcli_harness::program::{FaultObs, Observation, Op};

/// Repetitions of a confirmation: the first ones fill what a library keeps bounded (the last
/// few errors, say), then most of the measured ones must grow for a leak.
pub(super) const CONFIRM_WARM: usize = 16;
pub(super) const CONFIRM_RUNS: usize = 32;
const CONFIRM_GROWING: usize = 24;

/// A confirmation's verdict: a wrong code in any run, or growth in most measured runs (the
/// last of them named). A bounded cache filled during the first runs is no leak.
pub fn judge_confirmation(
    body: &[Op],
    obs: &[Observation],
    base: Growth,
    prepared: bool,
) -> Option<String> {
    let runs: Vec<&Observation> = obs.iter().filter(|o| o.fault.is_some()).collect();
    if let Some(why) = runs.iter().find_map(|o| judge_codes(body, o, prepared)) {
        return Some(why);
    }
    let measured = &runs[runs.len().saturating_sub(CONFIRM_RUNS)..];
    let growing: Vec<String> = measured
        .iter()
        .filter_map(|o| judge_run(body, o, Some(base)))
        .collect();
    if growing.len() < CONFIRM_GROWING {
        return None;
    }
    // Said as the quick run says it, so that one defect on many paths reads as one line.
    growing.last().cloned()
}

/// "the 3rd malloc inside DsBackupPrepareW", or "... in the clean-up" for the step after
/// the body.
pub fn site_name(hit: &Hit, body: &[Op]) -> String {
    let inside = match body.get(hit.step as usize) {
        Some(op) => format!("inside {}", op.export().unwrap_or("the harness")),
        None => "inside the clean-up End".to_string(),
    };
    format!("the {} {} {inside}", ordinal(hit.nth), hit.function)
}

/// What a run of a path held more at its end than at its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Growth {
    pub handles: i64,
    pub threads: i64,
    pub blocks: i64,
    pub bytes: i64,
}

impl Growth {
    pub fn of(f: &FaultObs) -> Growth {
        Growth {
            handles: f.after.handles - f.before.handles,
            threads: f.after.threads - f.before.threads,
            blocks: f.held_after.blocks - f.held_before.blocks,
            bytes: f.held_after.bytes - f.held_before.bytes,
        }
    }

    /// The growth beyond what the same path holds with no fault: a path that leaks anyway is
    /// end.release's finding; fault.cleanup judges what the failure added.
    pub fn beyond(self, base: Growth) -> Growth {
        Growth {
            handles: self.handles - base.handles.max(0),
            threads: self.threads - base.threads.max(0),
            blocks: self.blocks - base.blocks.max(0),
            bytes: self.bytes - base.bytes.max(0),
        }
    }
}

/// What a path still held once it was over, e.g. "1 handle and 2 heap blocks (208 bytes)".
pub fn leftover(g: &Growth) -> Option<String> {
    let mut parts = Vec::new();
    let Growth {
        handles,
        threads,
        blocks,
        bytes,
    } = *g;
    if handles > 0 {
        parts.push(format!(
            "{handles} handle{}",
            if handles == 1 { "" } else { "s" }
        ));
    }
    if threads > 0 {
        parts.push(format!(
            "{threads} thread{}",
            if threads == 1 { "" } else { "s" }
        ));
    }
    if blocks > 0 {
        let mut s = format!("{blocks} heap block{}", if blocks == 1 { "" } else { "s" });
        if bytes > 0 {
            s.push_str(&format!(" ({bytes} bytes)"));
        }
        parts.push(s);
    }
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => {
            let last = parts.pop()?;
            Some(format!("{} and {last}", parts.join(", ")))
        }
    }
}

/// The code rules for one faulted run: a Prepare's S_OK comes with a handle, End returns
/// S_OK on every handle Prepare gave out, and (where Prepare succeeds with no fault) a failed
/// allocation inside Prepare is reported as memory running out.
pub(super) fn judge_codes(body: &[Op], obs: &Observation, prepared: bool) -> Option<String> {
    judge_run(body, obs, None).or_else(|| prepared.then(|| judge_oom(body, obs)).flatten())
}

/// The rules for one faulted run of a path, by where the failed call landed:
/// - inside Prepare: a failure code, or S_OK with a handle (REQ-20, REQ-26/27);
/// - inside an intermediate call: End still returns S_OK on every handle Prepare gave out
///   (REQ-08);
/// - inside End itself (or the clean-up's End): End may return any code, as "a Win32 or RPC
///   error code otherwise" allows; it is tried once more with no fault, and that try may
///   return S_OK or 87 (A-4: whether the handle stays valid is not documented).
///
/// And, when measured against what the path holds with no fault (`base`), nothing more left
/// over once End has returned (REQ-14, REQ-09).
pub fn judge_run(body: &[Op], obs: &Observation, base: Option<Growth>) -> Option<String> {
    let f = obs.fault.as_ref()?;
    let what = match &f.sweep.hit {
        Some(h) => format!("{} failed", site_name(h, body)),
        None => "no call failed (fewer calls this time)".to_string(),
    };
    let hit = f.sweep.hit.as_ref().map(|h| h.step as usize);
    let cleanup = body.len();
    let mut said = Vec::new();
    // The End whose own call failed did not return S_OK: the clean-up's End is its retry.
    let mut retried_in_cleanup = false;
    for (i, step) in obs.steps.iter().enumerate() {
        match body.get(i) {
            Some(op @ Op::Prepare(_)) => {
                if let Some(rc) = step.rc {
                    said.push(format!(
                        "{} returned {}",
                        op.export().unwrap_or("?"),
                        describe(rc)
                    ));
                    if rc == 0 && step.handle.unwrap_or(0) == 0 {
                        return Some(format!("{what}; it returned S_OK with no handle"));
                    }
                    // The same Prepare succeeded with no fault: refused before the fault
                    // landed, it meets what an earlier run left (a backup the server still
                    // runs for a session whose End gave up).
                    if rc != 0 && hit.is_none_or(|h| h > i) {
                        return Some(format!(
                            "{} returned {} before any call failed, though it succeeds when nothing fails: what an earlier run's End was given is still held (by the library or its server)",
                            op.export().unwrap_or("?"),
                            describe(rc)
                        ));
                    }
                }
            }
            Some(op @ (Op::End(_) | Op::RestoreEnd(_))) => {
                let Some(rc) = step.rc.filter(|&rc| rc != 0) else {
                    continue;
                };
                let export = op.export().unwrap_or("End");
                if hit == Some(i) {
                    said.push(format!("{export} returned {}", describe(rc)));
                    retried_in_cleanup = true;
                    continue;
                }
                return Some(format!(
                    "{what}; then {export} returned {}, expected 0 (S_OK) for a handle Prepare gave out",
                    describe(rc)
                ));
            }
            Some(op) if hit == Some(i) => {
                if let (Some(rc), Some(name)) = (step.rc, op.export()) {
                    said.push(format!("{name} returned {}", describe(rc)));
                }
            }
            Some(_) => {}
            None if i == cleanup && hit == Some(cleanup) => {
                if let Some(&rc) = step.codes.iter().find(|&&rc| rc != 0) {
                    said.push(format!("the clean-up End returned {}", describe(rc)));
                }
            }
            None => {
                // The clean-up after a failed End, or the retry after a failed clean-up End.
                let retry = retried_in_cleanup || i > cleanup;
                let allowed = |rc: i32| rc == 0 || (retry && rc == ERROR_INVALID_PARAMETER);
                if let Some(&rc) = step.codes.iter().find(|&&rc| !allowed(rc)) {
                    let expected = if retry {
                        "expected 0 (S_OK) or 87 (ERROR_INVALID_PARAMETER) from a retry of an End whose own call failed"
                    } else {
                        "expected 0 (S_OK) for a handle Prepare gave out"
                    };
                    let which = if i > cleanup {
                        "the retry of the clean-up End"
                    } else {
                        "the clean-up End"
                    };
                    return Some(format!(
                        "{what}; then {which} returned {}, {expected}",
                        describe(rc)
                    ));
                }
            }
        }
    }
    let left = leftover(&Growth::of(f).beyond(base?))?;
    let mut s = what;
    if let Some(last) = said.last() {
        s.push_str(&format!("; {last}"));
    }
    let verb = if left.starts_with("1 ") && !left.contains(" and ") {
        "was"
    } else {
        "were"
    };
    s.push_str(&format!(
        "; once the path was over, {left} {verb} still held"
    ));
    Some(s)
}

/// REQ-26, on a path whose Prepare succeeds with no fault (one the environment refuses
/// anyway, for credentials say, answers with the refusal): the allocation that failed inside
/// Prepare is reported as memory running out.
pub fn judge_oom(body: &[Op], obs: &Observation) -> Option<String> {
    let hit = obs.fault.as_ref()?.sweep.hit.as_ref().filter(|h| h.alloc)?;
    let i = hit.step as usize;
    let op @ Op::Prepare(_) = body.get(i)? else {
        return None;
    };
    let rc = obs
        .steps
        .get(i)?
        .rc
        .filter(|&rc| rc != 0 && !out_of_memory(rc))?;
    Some(format!(
        "{} failed; {} returned {}, expected 8 (ERROR_NOT_ENOUGH_MEMORY) for an allocation that failed (REQ-26)",
        site_name(hit, body),
        op.export().unwrap_or("?"),
        describe(rc)
    ))
}

/// A code that says memory ran out: ERROR_NOT_ENOUGH_MEMORY as the Prepare page documents
/// (REQ-26), or its other spellings: an RPC client's stubs report their allocation failing
/// as RPC_S_OUT_OF_MEMORY (14, ERROR_OUTOFMEMORY), and HRESULT_FROM_WIN32 of either.
pub fn out_of_memory(rc: i32) -> bool {
    // HRESULT_FROM_WIN32(ERROR_NOT_ENOUGH_MEMORY); not E_OUTOFMEMORY, which wraps 14.
    const HRESULT_NOT_ENOUGH_MEMORY: i32 = 0x8007_0008_u32 as i32;
    matches!(
        rc,
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY | E_OUTOFMEMORY | HRESULT_NOT_ENOUGH_MEMORY
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::imports::{Held, Sweep};
    use ntdsbcli_harness::program::{End, Free, HandleArg, Prepare, Probe, Text};

    fn body() -> Vec<Op> {
        vec![
            Op::Prepare(Prepare::full(true, Text::Lit("localhost".into()), 0, 0)),
            Op::Free(Free { buf: Some(0) }),
            Op::End(End {
                h: HandleArg::Slot(0),
            }),
        ]
    }

    fn hit(function: &str, nth: u64, step: u16) -> Hit {
        Hit {
            function: function.into(),
            nth,
            site: 1,
            step,
            alloc: function.contains("alloc"),
        }
    }

    /// A run that left nothing held.
    fn clean_obs(steps: Vec<Observation>, hit: Option<Hit>) -> Observation {
        run_obs(steps, hit, Probe::default(), (0, 0))
    }

    fn run_obs(
        steps: Vec<Observation>,
        hit: Option<Hit>,
        after: Probe,
        held: (i64, i64),
    ) -> Observation {
        Observation {
            steps,
            fault: Some(FaultObs {
                sweep: Sweep {
                    sites: 5,
                    hit,
                    trace: Vec::new(),
                },
                before: Probe::default(),
                after,
                held_before: Held {
                    bytes: 100,
                    blocks: 3,
                },
                held_after: Held {
                    bytes: 100 + held.0,
                    blocks: 3 + held.1,
                },
            }),
            ..Observation::default()
        }
    }

    fn rc(rc: i32) -> Observation {
        Observation {
            rc: Some(rc),
            handle: Some(if rc == 0 { 0x50 } else { 0 }),
            ..Observation::default()
        }
    }

    #[test]
    fn sites_are_named_by_function_ordinal_and_export() {
        assert_eq!(
            site_name(&hit("malloc", 3, 0), &body()),
            "the 3rd malloc inside DsBackupPrepareW"
        );
        assert_eq!(
            site_name(&hit("pipe2", 1, 3), &body()),
            "the 1st pipe2 inside the clean-up End"
        );
    }

    #[test]
    fn a_failed_prepare_that_holds_nothing_passes() {
        let o = clean_obs(
            vec![rc(8), Observation::default()],
            Some(hit("malloc", 1, 0)),
        );
        assert_eq!(judge_run(&body(), &o, Some(Growth::default())), None);
    }

    #[test]
    fn a_failed_allocation_inside_prepare_must_be_reported_as_running_out_of_memory() {
        let run = |code: i32, function: &str| {
            let o = clean_obs(
                vec![rc(code), Observation::default()],
                Some(hit(function, 1, 0)),
            );
            judge_codes(&body(), &o, true)
        };
        // REQ-26, and the other spellings of the same news.
        for ok in [8, 14, 0x8007_000E_u32 as i32, 0x8007_0008_u32 as i32] {
            assert_eq!(run(ok, "malloc"), None, "{ok:#x}");
        }
        let why = run(0x8000_4005_u32 as i32, "malloc").unwrap();
        assert!(
            why.contains("expected 8 (ERROR_NOT_ENOUGH_MEMORY)"),
            "{why}"
        );
        // A descriptor that could not be opened is no allocation: any failure code will do.
        assert_eq!(run(1722, "pipe2"), None);
        // A Prepare the environment refuses with no fault answers with the refusal.
        let o = clean_obs(
            vec![rc(5), Observation::default()],
            Some(hit("malloc", 1, 0)),
        );
        assert_eq!(judge_codes(&body(), &o, false), None);
    }

    #[test]
    fn what_is_left_over_is_named_with_the_fault() {
        let o = run_obs(
            vec![rc(8), Observation::default()],
            Some(hit("malloc", 2, 0)),
            Probe {
                handles: 2,
                ..Probe::default()
            },
            (208, 2),
        );
        assert_eq!(
            judge_run(&body(), &o, Some(Growth::default())).as_deref(),
            Some("the 2nd malloc inside DsBackupPrepareW failed; DsBackupPrepareW returned 8 (ERROR_NOT_ENOUGH_MEMORY); once the path was over, 2 handles and 2 heap blocks (208 bytes) were still held")
        );
        // The first of the two runs is not measured: a first failure may cache something.
        assert_eq!(judge_run(&body(), &o, None), None);
    }

    fn codes(codes: Vec<i32>) -> Observation {
        Observation {
            codes,
            ..Observation::default()
        }
    }

    #[test]
    fn end_must_return_s_ok_after_a_failure_in_another_call() {
        // REQ-08: the failure landed in Free (step 1); End's 87 is wrong.
        let o = clean_obs(
            vec![rc(0), Observation::default(), rc(87), codes(vec![])],
            Some(hit("malloc", 1, 1)),
        );
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("DsBackupEnd returned"), "{why}");
        // The clean-up's Ends too.
        let o = clean_obs(vec![rc(0), codes(vec![87])], Some(hit("calloc", 1, 0)));
        assert!(judge_run(&body()[..1], &o, None)
            .unwrap()
            .contains("clean-up End returned"));
    }

    #[test]
    fn end_whose_own_call_failed_may_say_so_and_its_retry_may_find_it_gone() {
        // The failure landed inside End (step 2): 1722 is "an RPC error code otherwise"; the
        // clean-up retries it, and 87 there says End released the session anyway.
        for retry in [0, 87] {
            let o = clean_obs(
                vec![rc(0), Observation::default(), rc(1722), codes(vec![retry])],
                Some(hit("send", 1, 2)),
            );
            assert_eq!(judge_run(&body(), &o, Some(Growth::default())), None);
        }
        // Any other answer from the retry is wrong.
        let o = clean_obs(
            vec![rc(0), Observation::default(), rc(1722), codes(vec![1722])],
            Some(hit("send", 1, 2)),
        );
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("from a retry"), "{why}");
        // What End held must still be given back.
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(1722), codes(vec![87])],
            Some(hit("send", 1, 2)),
            Probe {
                handles: 1,
                ..Probe::default()
            },
            (24, 1),
        );
        let why = judge_run(&body(), &o, Some(Growth::default())).unwrap();
        assert!(
            why.contains("1 handle and 1 heap block (24 bytes) were still held"),
            "{why}"
        );
    }

    #[test]
    fn a_failure_inside_the_clean_up_end_is_judged_by_its_retry() {
        let o = clean_obs(
            vec![rc(0), codes(vec![1722]), codes(vec![87])],
            Some(hit("send", 1, 1)),
        );
        assert_eq!(judge_run(&body()[..1], &o, Some(Growth::default())), None);
        let o = clean_obs(
            vec![rc(0), codes(vec![1722]), codes(vec![5])],
            Some(hit("send", 1, 1)),
        );
        let why = judge_run(&body()[..1], &o, None).unwrap();
        assert!(
            why.contains("the retry of the clean-up End returned 5"),
            "{why}"
        );
    }

    #[test]
    fn a_prepare_refused_before_the_fault_landed_meets_an_earlier_leak() {
        // The fault was due at a later step: Prepare failed on its own, which it never does
        // with nothing failed, so an earlier run left a backup held.
        let o = clean_obs(vec![rc(0xC80001F9u32 as i32), codes(vec![])], None);
        let why = judge_run(&body(), &o, None).unwrap();
        assert!(why.contains("before any call failed"), "{why}");
    }

    #[test]
    fn s_ok_without_a_handle_is_no_recovery() {
        let mut prepared = rc(0);
        prepared.handle = Some(0);
        let o = clean_obs(
            vec![prepared, Observation::default()],
            Some(hit("malloc", 1, 0)),
        );
        assert!(judge_run(&body(), &o, None)
            .unwrap()
            .contains("S_OK with no handle"));
    }

    #[test]
    fn a_leak_the_path_has_without_a_fault_is_not_the_fault_s() {
        let o = run_obs(
            vec![rc(0), Observation::default(), rc(0), Observation::default()],
            Some(hit("malloc", 1, 0)),
            Probe::default(),
            (1032, 1),
        );
        let anyway = Growth {
            blocks: 1,
            bytes: 1032,
            ..Growth::default()
        };
        assert_eq!(judge_run(&body(), &o, Some(anyway)), None);
        assert!(judge_run(&body(), &o, Some(Growth::default()))
            .unwrap()
            .contains("1 heap block (1032 bytes) was still held"));
    }

    #[test]
    fn a_bounded_cache_filled_by_the_first_failures_is_no_leak() {
        let grown = |blocks| {
            run_obs(
                vec![rc(8), Observation::default()],
                Some(hit("malloc", 1, 0)),
                Probe::default(),
                (24 * blocks, blocks),
            )
        };
        let body = body();
        // An error log of the last 8 failures: one more block per failure until it is full.
        let mut log: Vec<Observation> = (0..CONFIRM_WARM + CONFIRM_RUNS)
            .map(|i| grown(i64::from(i < 8)))
            .collect();
        assert_eq!(
            judge_confirmation(&body, &log, Growth::default(), true),
            None
        );
        // A leak grows on every failure.
        log.iter_mut().for_each(|o| *o = grown(1));
        let why = judge_confirmation(&body, &log, Growth::default(), true).unwrap();
        assert!(
            why.ends_with("1 heap block (24 bytes) was still held"),
            "{why}"
        );
        // Growth in fewer than 24 of the 32 measured runs is no leak.
        for o in log.iter_mut().skip(CONFIRM_WARM + 9) {
            *o = grown(0);
        }
        assert_eq!(
            judge_confirmation(&body, &log, Growth::default(), true),
            None
        );
    }

    #[test]
    fn leftovers_read_as_a_list() {
        let f = |handles, threads, blocks, bytes| Growth {
            handles,
            threads,
            blocks,
            bytes,
        };
        assert_eq!(leftover(&f(0, 0, 0, 0)), None);
        assert_eq!(leftover(&f(0, -1, -1, -8)), None);
        // Bytes that moved between sources with the count of blocks unchanged are no leak.
        assert_eq!(leftover(&f(0, 0, 0, 4064)), None);
        assert_eq!(leftover(&f(1, 0, 0, 0)).as_deref(), Some("1 handle"));
        assert_eq!(
            leftover(&f(2, 1, 1, 16)).as_deref(),
            Some("2 handles, 1 thread and 1 heap block (16 bytes)")
        );
        assert_eq!(
            leftover(&f(0, 0, 2, -4000)).as_deref(),
            Some("2 heap blocks")
        );
    }
}
