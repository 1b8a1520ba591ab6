//! What a check is to the rest of the suite: the context it is given and the judgement it
//! gives (`Ctx`, `Eval`), a type that plans call programs and judges their observations
//! through the steps it planned (`Check`), and the same with its steps hidden (`Programs`,
//! `Planned`, `Judge`), as the catalogue holds it and the runner drives it. Holds no check and
//! names no id.

use ntdsbcli_harness::program::{Observation, Program, Step};
use ntdsbcli_harness::report::{Coverage, Outcome};

/// What a check may depend on: the configuration and the library's exports.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub server: String,
    pub accept_hresult: bool,
    pub exports: Vec<String>,
    pub seed: u64,
    /// Measured cycles per session path in end.release.
    pub release_cycles: u32,
}

/// A check's judgement before the runner adds crashes, timeouts and confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eval {
    pub outcome: Outcome,
    pub detail: String,
    /// How much of what it planned ran, where that can be less than all.
    pub coverage: Option<Coverage>,
}

impl Eval {
    pub fn new(outcome: Outcome, detail: impl Into<String>) -> Eval {
        Eval {
            outcome,
            detail: detail.into(),
            coverage: None,
        }
    }

    /// Nothing could be run: `why` says what the library lacks.
    pub fn skip(why: &str) -> Eval {
        Eval::new(Outcome::Skip, format!("not run: {why}"))
    }

    /// The same judgement, saying that `done` of `planned` `unit` ran.
    pub fn covering(mut self, unit: &str, done: u64, planned: u64) -> Eval {
        self.coverage = Some(Coverage {
            unit: unit.into(),
            done,
            planned,
        });
        self
    }
}

/// A check's judgement: Err when it came early (a skip for want of exports, an inconclusive run
/// for want of a session or a working server), so a judge and its helpers can stop with `?`.
pub type Judged = Result<Eval, Eval>;

/// A check that runs call programs. `Steps` is what one program's plan kept of where its ops
/// sit; the judgement reads each observation through them, so a step it never planned cannot
/// be asked for.
pub trait Check: Sync + 'static {
    type Steps: Send + Sync + 'static;

    /// Its programs are independent sessions, each judged on its own readings: they may run
    /// on workers of their own at once when calls wait on a server (`pace`).
    const SPREAD: bool = false;

    /// The programs, each with its steps. None at all: nothing can be made with the library's
    /// exports, and the check is skipped.
    fn plan(&self, ctx: &Ctx) -> Vec<(Program, Self::Steps)>;

    /// Judges the programs' observations, in plan order.
    fn judge(&self, ctx: &Ctx, ran: &[Ran<'_, Self::Steps>]) -> Judged;
}

/// A program's observations, read through the steps its plan kept.
pub struct Ran<'a, S> {
    pub program: &'a Program,
    pub steps: &'a S,
    obs: &'a [Observation],
}

static ABSENT: std::sync::LazyLock<Observation> = std::sync::LazyLock::new(|| Observation {
    not_run: Some("not part of this program (an export it needs is absent)".into()),
    ..Observation::default()
});

impl<'a, S> Ran<'a, S> {
    pub fn new(program: &'a Program, steps: &'a S, obs: &'a [Observation]) -> Ran<'a, S> {
        Ran {
            program,
            steps,
            obs,
        }
    }

    /// The observation of `step`; "not run" when it was left out of the program.
    pub fn get(&self, step: Step) -> &'a Observation {
        step.index()
            .and_then(|i| self.obs.get(i))
            .unwrap_or(&ABSENT)
    }
}

/// The judgement of a planned check, its steps held inside: what the runner keeps beside the
/// programs it sends.
pub struct Judge(Box<JudgeFn>);

/// A judgement over the programs planned with it and their observations.
type JudgeFn = dyn Fn(&Ctx, &[Program], &[&[Observation]]) -> Eval + Send + Sync;

impl Judge {
    /// Judges `obs`, the observations of `programs` (the programs planned with it, in order).
    pub fn judge(&self, ctx: &Ctx, programs: &[Program], obs: &[&[Observation]]) -> Eval {
        (self.0)(ctx, programs, obs)
    }
}

/// A check's programs and the judgement that knows their steps.
pub struct Planned {
    pub programs: Vec<Program>,
    pub judge: Judge,
}

/// A check with its steps hidden, as the catalogue holds it.
pub trait Programs: Sync {
    fn plan(&'static self, ctx: &Ctx) -> Planned;
    fn spread(&self) -> bool;
}

impl<C: Check> Programs for C {
    fn plan(&'static self, ctx: &Ctx) -> Planned {
        let (programs, steps): (Vec<Program>, Vec<C::Steps>) =
            C::plan(self, ctx).into_iter().unzip();
        let judge = Judge(Box::new(move |ctx, programs, obs| {
            assert_eq!(
                (programs.len(), obs.len()),
                (steps.len(), steps.len()),
                "judged with the programs it planned"
            );
            let ran: Vec<Ran<C::Steps>> = programs
                .iter()
                .zip(&steps)
                .zip(obs)
                .map(|((p, s), o)| Ran::new(p, s, o))
                .collect();
            self.judge(ctx, &ran).unwrap_or_else(|early| early)
        }));
        Planned { programs, judge }
    }

    fn spread(&self) -> bool {
        C::SPREAD
    }
}
