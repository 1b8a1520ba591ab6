//! The table that ties each catalogue entry to its programs and its judgement.

use super::common::{Ctx, Eval, Ran};
use super::{end, prepare, release, session};
use crate::catalogue::{self, CheckDef};
use ntdsbcli_harness::program::Program;

#[derive(Clone, Copy)]
pub struct Check {
    pub def: &'static CheckDef,
    pub plan: fn(&Ctx) -> Vec<Program>,
    pub eval: fn(&Ctx, &[Ran]) -> Eval,
}

type Entry = (
    &'static str,
    fn(&Ctx) -> Vec<Program>,
    fn(&Ctx, &[Ran]) -> Eval,
);

const TABLE: &[Entry] = &[
    ("prepare.ok", prepare::ok_plan, prepare::ok_eval),
    (
        "prepare.bad-args",
        prepare::bad_args_plan,
        prepare::bad_args_eval,
    ),
    (
        "prepare.failed-leaves-nothing",
        prepare::failed_plan,
        prepare::failed_eval,
    ),
    (
        "prepare.distinct",
        prepare::distinct_plan,
        prepare::distinct_eval,
    ),
    ("end.ok", end::ok_plan, end::ok_eval),
    ("end.null", end::null_plan, end::null_eval),
    ("end.double", end::double_plan, end::double_eval),
    ("end.garbage", end::garbage_plan, end::garbage_eval),
    ("end.isolation", end::isolation_plan, end::isolation_eval),
    (
        "end.invalidates",
        end::invalidates_plan,
        end::invalidates_eval,
    ),
    (
        "end.open-file",
        session::open_file_plan,
        session::open_file_eval,
    ),
    (
        "end.after-failure",
        session::after_failure_plan,
        session::after_failure_eval,
    ),
    (
        "end.buffers-outlive",
        session::buffers_plan,
        session::buffers_eval,
    ),
    (
        "end.concurrent",
        session::concurrent_plan,
        session::concurrent_eval,
    ),
    (
        "end.restore-handle",
        session::restore_plan,
        session::restore_eval,
    ),
    ("end.release", release::plan, release::eval),
    (
        "free.null",
        session::free_null_plan,
        session::free_null_eval,
    ),
];

/// The check with programs for `id` (`exports.required` has none: the runner decides it).
pub fn check_for(id: &str) -> Option<Check> {
    let (_, plan, eval) = TABLE.iter().find(|(i, _, _)| *i == id)?;
    Some(Check {
        def: catalogue::find(id)?,
        plan: *plan,
        eval: *eval,
    })
}
