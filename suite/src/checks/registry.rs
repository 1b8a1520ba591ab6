//! The table that ties each catalogue entry to its programs and its judgement.

use super::common::{Ctx, Eval, Ran};
use super::{answers, end, prepare, release, session};
use crate::catalogue::{self, CheckDef};
use ntdsbcli_harness::program::Program;

#[derive(Clone, Copy)]
pub struct Check {
    pub def: &'static CheckDef,
    pub plan: fn(&Ctx) -> Vec<Program>,
    pub eval: fn(&Ctx, &[Ran]) -> Eval,
    /// Its programs are independent sessions, each judged on its own readings: they may run
    /// on workers of their own at once when calls wait on a server (`pace`).
    pub spread: bool,
}

/// Checks whose programs may run on workers of their own at once.
const SPREAD: &[&str] = &["end.release"];

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
    (
        "prepare.server-name",
        prepare::server_name_plan,
        prepare::server_name_eval,
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
        "calls.null-out",
        answers::null_out_plan,
        answers::null_out_eval,
    ),
    (
        "names.format",
        answers::names_format_plan,
        answers::names_format_eval,
    ),
    (
        "file.size",
        answers::file_size_plan,
        answers::file_size_eval,
    ),
    (
        "file.codes",
        answers::file_codes_plan,
        answers::file_codes_eval,
    ),
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
        spread: SPREAD.contains(&id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntdsbcli_harness::abi::EXPORTS;
    use ntdsbcli_harness::program::{Observation, Probe};

    fn ctx(exports: &[&str]) -> Ctx {
        Ctx {
            server: "\\\\localhost".into(),
            accept_hresult: false,
            exports: exports.iter().map(|e| e.to_string()).collect(),
            seed: 1,
            release_cycles: 16,
        }
    }

    /// Answers a judgement may meet: nothing recorded, every call failing with 87, and every
    /// call succeeding with a distinct handle, a list and a resource reading.
    fn answers(i: usize) -> [Observation; 3] {
        let ok = Observation {
            rc: Some(0),
            handle: Some(0x1000 + i as u64 * 16),
            arg: Some(0x1000),
            size: Some(24),
            ptr: Some(true),
            bytes: Some(b"\x61d\0\0".to_vec()),
            intact: Some(true),
            probe: Some(Probe::default()),
            calls: Some(1),
            ..Observation::default()
        };
        let invalid = Observation {
            rc: Some(87),
            ..Observation::default()
        };
        [Observation::default(), invalid, ok]
    }

    /// Every check's judgement asks only for steps its programs named: a misspelt tag panics
    /// in `Ran::get` here instead of turning into a silent "not run" in a report.
    #[test]
    fn every_judgement_asks_only_for_named_steps() {
        let minimal = ["DsBackupPrepareW", "DsBackupEnd", "DsBackupFree"];
        let ansi = ["DsBackupPrepareA", "DsBackupEnd", "DsBackupFree"];
        for exports in [&EXPORTS[..], &minimal[..], &ansi[..]] {
            let ctx = ctx(exports);
            for (id, plan, eval) in TABLE {
                let programs = plan(&ctx);
                for flavour in 0..3 {
                    let obs: Vec<Vec<Observation>> = programs
                        .iter()
                        .map(|p| {
                            (0..p.ops.len())
                                .map(|i| answers(i)[flavour].clone())
                                .collect()
                        })
                        .collect();
                    let ran: Vec<Ran> = programs
                        .iter()
                        .zip(&obs)
                        .map(|(program, obs)| Ran { program, obs })
                        .collect();
                    let e = eval(&ctx, &ran);
                    assert!(!e.detail.is_empty(), "{id}: an empty detail");
                }
            }
        }
    }

    #[test]
    fn every_table_entry_is_in_the_catalogue() {
        for (id, _, _) in TABLE {
            assert!(check_for(id).is_some(), "{id} is not in the catalogue");
        }
    }
}
