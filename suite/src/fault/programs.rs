//! The programs of the fault sweep: a path run with one resource call failed, after a resting
//! reading and a warm-up, and the steps of its faulted runs. Builds programs only; judges
//! nothing.

use super::rules::{CONFIRM_RUNS, CONFIRM_WARM};
use crate::checks::release::Path;
use ntdsbcli_harness::program::{Op, Program, Step};

/// The warm-up, so that what a first call caches is in place before anything is measured.
fn warm(body: &[Op]) -> Op {
    Op::Repeat {
        n: 1,
        probe_every: 1,
        settle_last: false,
        stop_flat: 0,
        body: body.to_vec(),
    }
}

/// A program that runs a path with resource call `at` failed (0: none) `runs` times, after
/// the resting reading (which each faulted run's readings are measured against) and the
/// warm-up; the steps of its faulted runs.
fn fault_program(label: String, p: &Path, at: u64, runs: usize) -> (Program, Vec<Step>) {
    let mut prog = Program::new(label, Vec::new());
    prog.push(Op::Probe);
    prog.push(warm(&p.body));
    let faulted = (0..runs)
        .map(|_| {
            prog.push(Op::Faulted {
                at,
                body: p.body.clone(),
            })
        })
        .collect();
    (prog, faulted)
}

/// The program that counts a path's resource calls, and the step of its run.
pub(super) fn count_program(p: &Path) -> (Program, Step) {
    let (prog, steps) = fault_program(format!("{}, resource calls counted", p.name), p, 0, 1);
    (prog, steps[0])
}

/// The program that fails site `k` of a path: twice, so that a library which caches
/// something on its first failure is judged on the second.
pub(super) fn site_program(p: &Path, k: u64) -> (Program, Vec<Step>) {
    fault_program(format!("{}, resource call {k} failed", p.name), p, k, 2)
}

/// The program that confirms site `k` of a path: the failure again and again.
pub(super) fn confirm_program(p: &Path, k: u64) -> (Program, Vec<Step>) {
    let (prog, steps) = fault_program(
        format!("{}, resource call {k} failed again and again", p.name),
        p,
        k,
        CONFIRM_WARM + CONFIRM_RUNS,
    );
    (prog.patiently(), steps)
}
