//! prepare.*: DsBackupPrepare's documented success and argument errors, and what a failed
//! Prepare leaves behind.

use super::check::{Check, Ctx, Eval, Judged, Ran};
use super::common::{end, live, program, slot, spoil, BadArg, Findings};
use ntdsbcli_harness::codes::{self, describe, HR_INVALID_PARAM};
use ntdsbcli_harness::program::{Free, Prepare};
use ntdsbcli_harness::program::{Op, Program, Step, Text};
use ntdsbcli_harness::report::Outcome;

fn form_name(wide: bool) -> &'static str {
    if wide {
        "DsBackupPrepareW"
    } else {
        "DsBackupPrepareA"
    }
}

pub struct PrepareOk;

/// The valid Prepare of one exported form.
pub struct PrepareSteps {
    prepare: Step,
}

impl Check for PrepareOk {
    type Steps = PrepareSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, PrepareSteps)> {
        ctx.prepare_forms()
            .into_iter()
            .map(|w| {
                let mut p = program(format!("valid {}", form_name(w)));
                let prepare = p.push(ctx.prepare_form(w, 0, 0));
                p.push(Op::Free(Free { buf: Some(0) }));
                p.push(end(slot(0)));
                (p, PrepareSteps { prepare })
            })
            .collect()
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<PrepareSteps>]) -> Judged {
        ok_eval(ran)
    }
}

fn ok_eval(ran: &[Ran<PrepareSteps>]) -> Judged {
    let mut f = Findings::default();
    // An environment code excuses a form only when no form works: if the other form, with
    // the same server and credentials, gets a session, the environment allows one.
    let works = |r: &Ran<PrepareSteps>| live(r.get(r.steps.prepare)).is_ok();
    let any_works = ran.iter().any(works);
    for r in ran {
        let o = r.get(r.steps.prepare);
        let name = &r.program.label;
        if let Err(e) = live(o) {
            let env = o.rc.filter(|&rc| codes::environment_problem(rc).is_some());
            match (env, any_works) {
                (Some(_), false) => return Err(e),
                (Some(rc), true) => {
                    let other = ran
                        .iter()
                        .find(|x| works(x))
                        .map(|x| x.program.label.clone())
                        .unwrap_or_default();
                    f.fail(format!(
                        "{name} returned {}, an environment code, while {other} with the same server and credentials returned S_OK: the environment allows a session, so the library is at fault",
                        describe(rc)
                    ));
                    continue;
                }
                (None, _) => {}
            }
            match o.rc {
                Some(0) => f.fail(format!(
                    "{name} returned S_OK with a NULL handle, expected a non-NULL handle"
                )),
                Some(rc) => f.fail(format!(
                    "{name} returned {}, expected 0 (S_OK)",
                    describe(rc)
                )),
                None => f.fail(format!("{name} did not run")),
            }
            continue;
        }
        if o.ptr != Some(true) {
            f.fail(format!(
                "{name} returned S_OK with a NULL expiry token, expected a token"
            ));
        }
        if o.size == Some(0) {
            f.fail(format!(
                "{name} returned S_OK with a token size of 0, expected a non-zero size"
            ));
        }
    }
    let forms: Vec<_> = ran.iter().map(|r| r.program.label.clone()).collect();
    Ok(f.finish(format!(
        "{} returned S_OK, a non-NULL handle and a non-empty token",
        forms.join(" and ")
    )))
}

struct BadCase {
    label: &'static str,
    want: Want,
    args: &'static [BadArg],
}

#[derive(Clone, Copy)]
enum Want {
    InvalidParameter,
    HrInvalidParam,
    /// "Not supported" with no code (REQ-23): accepting it is a compatibility warning.
    Unsupported,
}

// One row per case, as a table reads.
#[rustfmt::skip]
const BAD_CASES: &[BadCase] = &[
    bad("NULL szBackupServer", Want::InvalidParameter, &[BadArg::NullServer]),
    bad("NULL phbc", Want::InvalidParameter, &[BadArg::NullPhbc]),
    bad("BACKUP_TYPE_INCREMENTAL", Want::InvalidParameter, &[BadArg::Incremental]),
    bad("BACKUP_TYPE_LOGS_ONLY (unsupported, no code documented)", Want::Unsupported, &[BadArg::LogsOnly]),
    bad("NULL ppvExpiryToken", Want::HrInvalidParam, &[BadArg::NullToken]),
    bad("NULL pcbExpiryTokenSize", Want::HrInvalidParam, &[BadArg::NullSize]),
    bad("NULL ppvExpiryToken and pcbExpiryTokenSize", Want::HrInvalidParam, &[BadArg::NullToken, BadArg::NullSize]),
];

const fn bad(label: &'static str, want: Want, args: &'static [BadArg]) -> BadCase {
    BadCase { label, want, args }
}

fn bad_prepare(ctx: &Ctx, wide: bool, slot: u8, buf: u8, args: &[BadArg]) -> Op {
    let mut op = ctx.prepare_form(wide, slot, buf);
    for &a in args {
        spoil(&mut op, a);
    }
    op
}

pub struct PrepareBadArgs;

impl Check for PrepareBadArgs {
    type Steps = PrepareSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, PrepareSteps)> {
        // A valid Prepare first: if the environment denies every Prepare, argument checks that
        // answer with the environment's code cannot be judged (their order is undocumented).
        let mut valid = program("a valid Prepare (to see whether the environment allows one)");
        let prepare = valid.push(ctx.prepare(0, 0));
        valid.push(Op::Cleanup);
        let mut out = vec![(valid, PrepareSteps { prepare })];
        for w in ctx.prepare_forms() {
            for case in BAD_CASES {
                let op = bad_prepare(ctx, w, 0, 0, case.args);
                let mut p = program(format!("{} with {}", form_name(w), case.label));
                let prepare = p.push(op);
                // Cleanup ends the session only if the library wrongly opened one.
                p.push(Op::Cleanup);
                out.push((p, PrepareSteps { prepare }));
            }
        }
        out
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<PrepareSteps>]) -> Judged {
        bad_args_eval(ctx, ran)
    }
}

fn bad_args_eval(ctx: &Ctx, ran: &[Ran<PrepareSteps>]) -> Judged {
    let mut f = Findings::default();
    let forms = ctx.prepare_forms().len().max(1);
    let env = ran[0]
        .get(ran[0].steps.prepare)
        .rc
        .and_then(|rc| codes::environment_problem(rc).map(|fix| (rc, fix)));
    let mut unjudged = 0;
    for (r, case) in ran[1..].iter().zip(BAD_CASES.iter().cycle()) {
        let o = r.get(r.steps.prepare);
        let what = &r.program.label;
        if env.is_some()
            && o.rc
                .is_some_and(|rc| codes::environment_problem(rc).is_some())
        {
            unjudged += 1;
            continue;
        }
        match case.want {
            Want::InvalidParameter => f.invalid_param(ctx, what, o),
            Want::HrInvalidParam => f.code(what, o, HR_INVALID_PARAM),
            Want::Unsupported => {
                if o.rc == Some(0) {
                    f.compat(format!(
                        "{what}: documented as not supported; this library accepts it (returned S_OK)"
                    ));
                }
            }
        }
    }
    if let (Some((rc, fix)), false, true) = (env, f.failed(), unjudged > 0) {
        return Err(Eval::new(
            Outcome::Inconclusive,
            format!(
                "even a valid Prepare returned {} ({fix}), and {unjudged} bad-argument forms answered with an environment code: their order against the access check is undocumented",
                describe(rc)
            ),
        ));
    }
    Ok(f.finish(format!(
        "{} bad-argument forms in {} Prepare variant(s) gave the documented codes",
        BAD_CASES.len(),
        forms
    )))
}

/// Failing Prepares of several kinds, each followed by End on whatever *phbc holds; None
/// stands for an unknown server name.
/// Each Prepare that must fail, with the documented rule that says so.
const FAILING: &[(&str, Option<BadArg>, &str)] = &[
    (
        "BACKUP_TYPE_INCREMENTAL",
        Some(BadArg::Incremental),
        "BACKUP_TYPE_INCREMENTAL must give ERROR_INVALID_PARAMETER (REQ-23)",
    ),
    (
        "NULL szBackupServer",
        Some(BadArg::NullServer),
        "a NULL server name must give ERROR_INVALID_PARAMETER (REQ-21)",
    ),
    (
        "NULL ppvExpiryToken",
        Some(BadArg::NullToken),
        "a NULL token pointer must give hrInvalidParam (REQ-22)",
    ),
    (
        "an unknown server name",
        None,
        "an unknown server must give hrCouldNotConnect (REQ-25)",
    ),
];
const FAILED_ROUNDS: usize = 4;

pub struct PrepareFailed;

pub struct FailedSteps {
    /// Per round, per failing Prepare: the Prepare and the End on *phbc after it.
    rounds: Vec<Vec<(Step, Step)>>,
    before: Step,
    after: Step,
}

impl Check for PrepareFailed {
    type Steps = FailedSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, FailedSteps)> {
        let mut p = program("failed Prepares, then End on *phbc");
        let round = |p: &mut Program| -> Vec<(Step, Step)> {
            FAILING
                .iter()
                .map(|(_, bad, _)| {
                    let mut op = ctx.prepare(1, 1);
                    match bad {
                        Some(b) => spoil(&mut op, *b),
                        None => {
                            if let Op::Prepare(p) = &mut op {
                                p.server = Text::Lit("\\\\no_such_server".into());
                            }
                        }
                    }
                    (p.push(op), p.push(end(slot(1))))
                })
                .collect()
        };
        // One round first, so that one-off allocations of the first failure are not counted.
        let mut rounds = vec![round(&mut p)];
        let before = p.push(Op::Probe);
        for _ in 1..=FAILED_ROUNDS {
            rounds.push(round(&mut p));
        }
        let after = p.push(Op::Probe);
        p.push(Op::Cleanup);
        vec![(
            p,
            FailedSteps {
                rounds,
                before,
                after,
            },
        )]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<FailedSteps>]) -> Judged {
        failed_eval(ctx, &ran[0])
    }
}

fn failed_eval(ctx: &Ctx, r: &Ran<FailedSteps>) -> Judged {
    let s = r.steps;
    let mut f = Findings::default();
    for round in &s.rounds {
        for ((label, _, rule), &(prepare, end)) in FAILING.iter().zip(round) {
            let (p, e) = (r.get(prepare), r.get(end));
            if p.rc == Some(0) {
                f.fail(format!(
                    "{rule}, but Prepare with {label} returned S_OK (what a failed Prepare leaves was then not tested)"
                ));
                continue;
            }
            if let Some(h) = p.handle.filter(|&h| h != 0) {
                // REQ-16 is inferred and Prepare's page says nothing of *phbc on failure: a
                // value that End refuses with 87 holds nothing, so this is only a warning.
                f.compat(format!(
                    "Prepare with {label} failed but left *phbc = 0x{h:X} (was NULL); the documentation does not say what *phbc holds after a failure, and End on it returned its answer below"
                ));
            }
            f.invalid_param(
                ctx,
                &format!("End on *phbc after a failed Prepare with {label}"),
                e,
            );
        }
        if f.failed() {
            break;
        }
    }
    if let Some(g) = super::common::growth(r.get(s.before), r.get(s.after)) {
        f.fail(format!(
            "{} failed Prepares left {g} behind",
            FAILED_ROUNDS * FAILING.len()
        ));
    }
    Ok(f.finish(format!(
        "{} failed Prepares left *phbc NULL, End on it returned 87, and no handle or thread was held",
        (FAILED_ROUNDS + 1) * FAILING.len()
    )))
}

pub struct PrepareDistinct;

pub struct DistinctSteps {
    p0: Step,
    p1: Step,
    end0: Step,
    end1: Step,
}

impl Check for PrepareDistinct {
    type Steps = DistinctSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, DistinctSteps)> {
        let mut p = program("two live sessions");
        let steps = DistinctSteps {
            p0: p.push(ctx.prepare(0, 0)),
            p1: p.push(ctx.prepare(1, 1)),
            end0: p.push(end(slot(0))),
            end1: p.push(end(slot(1))),
        };
        p.push(Op::Cleanup);
        vec![(p, steps)]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<DistinctSteps>]) -> Judged {
        distinct_eval(&ran[0])
    }
}

fn distinct_eval(r: &Ran<DistinctSteps>) -> Judged {
    let s = r.steps;
    let (p0, p1) = (r.get(s.p0), r.get(s.p1));
    live(p0)?;
    let mut f = Findings::default();
    if let Some(rc) = p1.rc.filter(|&rc| codes::refuses_another_session(rc)) {
        // One backup at a time (design §4): nothing here needs two sessions, but the refusal
        // must leave the first session as it was (REQ-13).
        f.code(
            "after the refused second Prepare, End of the first session",
            r.get(s.end0),
            0,
        );
        if f.failed() {
            return Ok(f.finish(""));
        }
        return Err(Eval::new(
            Outcome::Skip,
            format!(
                "one session at a time: a second Prepare while the first was live was refused with {}, and the first session went on unharmed; nothing to compare",
                describe(rc)
            ),
        ));
    }
    match live(p1) {
        Err(_) => f.fail(format!(
            "a second Prepare while one session is live returned {}, expected S_OK or a documented refusal (one session at a time)",
            p1.rc.map(describe).unwrap_or_else(|| "nothing".into())
        )),
        Ok(()) if p0.handle == p1.handle => f.fail(format!(
            "both live sessions got the same handle 0x{:X}, expected distinct handles",
            p0.handle.unwrap_or(0)
        )),
        Ok(()) => {
            f.code("End of the first session", r.get(s.end0), 0);
            f.code("End of the second session", r.get(s.end1), 0);
        }
    }
    Ok(f.finish("two live sessions had distinct handles and both ended with S_OK"))
}

/// The configured server name in its other documented spelling: the leading `\\` is
/// optional (REQ-25), so it is dropped when given and added when not.
pub fn other_spelling(server: &str) -> String {
    match server.trim_start_matches('\\') {
        bare if bare.len() < server.len() => bare.to_string(),
        bare => format!("\\\\{bare}"),
    }
}

/// The configured server name with a `_` inside it, which the page does not allow (REQ-25).
pub fn with_underscore(server: &str) -> String {
    let bare = server.trim_start_matches('\\');
    let mut k = bare.len() / 2;
    while !bare.is_char_boundary(k) {
        k -= 1;
    }
    format!("\\\\{}_{}", &bare[..k], &bare[k..])
}

pub struct PrepareServerName;

pub struct ServerNameSteps {
    prepare: Step,
    end: Step,
    other: Step,
    other_end: Step,
    underscore: Step,
}

impl Check for PrepareServerName {
    type Steps = ServerNameSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, ServerNameSteps)> {
        let named = |name: String, s: u8| {
            Op::Prepare(Prepare::full(ctx.prepare_wide(), Text::Lit(name), s, s))
        };
        let mut p = program("the server name in both documented spellings, and with '_'");
        let steps = ServerNameSteps {
            prepare: p.push(ctx.prepare(0, 0)),
            end: p.push(end(slot(0))),
            other: p.push(named(other_spelling(&ctx.server), 1)),
            other_end: p.push(end(slot(1))),
            underscore: p.push(named(with_underscore(&ctx.server), 2)),
        };
        p.push(Op::Cleanup);
        vec![(p, steps)]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<ServerNameSteps>]) -> Judged {
        server_name_eval(ctx, &ran[0])
    }
}

fn server_name_eval(ctx: &Ctx, r: &Ran<ServerNameSteps>) -> Judged {
    let s = r.steps;
    live(r.get(s.prepare))?;
    let mut f = Findings::default();
    f.note_end_not_ok("End of the first session", r.get(s.end));
    let (other, under) = (other_spelling(&ctx.server), with_underscore(&ctx.server));
    let o = r.get(s.other);
    match o.rc {
        Some(0) if o.handle.is_some_and(|h| h != 0) => {
            f.note_end_not_ok("End of the session", r.get(s.other_end))
        }
        Some(rc) => f.fail(format!(
            "Prepare with the server named \"{other}\" returned {}, expected 0 (S_OK) as for \"{}\": the leading \\\\ is optional (REQ-25)",
            describe(rc),
            ctx.server
        )),
        None => f.note(format!("Prepare with \"{other}\" did not run")),
    }
    let u = r.get(s.underscore);
    match u.rc {
        Some(rc) if rc == codes::ERROR_INVALID_PARAMETER || rc == codes::HR_COULD_NOT_CONNECT => {}
        Some(0) => f.compat(format!(
            "Prepare with the server named \"{under}\" returned S_OK; the page does not allow '_' in the name (a badly formed name gives hrCouldNotConnect), but names no answer for it"
        )),
        Some(rc) => f.compat(format!(
            "Prepare with the server named \"{under}\" returned {}; a badly formed name gives hrCouldNotConnect (0xC7FF0007) or ERROR_INVALID_PARAMETER",
            describe(rc)
        )),
        None => f.note(format!("Prepare with \"{under}\" did not run")),
    }
    Ok(f.finish(format!(
        "\"{other}\" opened a session as \"{}\" did; \"{under}\" was refused with {}",
        ctx.server,
        u.rc.map(describe).unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_spelling_drops_or_adds_the_backslashes() {
        assert_eq!(other_spelling("\\\\localhost"), "localhost");
        assert_eq!(other_spelling("localhost"), "\\\\localhost");
        assert_eq!(with_underscore("\\\\localhost"), "\\\\loca_lhost");
        assert_eq!(with_underscore("dc1"), "\\\\d_c1");
    }
}
