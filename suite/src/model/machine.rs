//! Sequence generation: an abstract model of the backup API that only ever proposes calls a
//! careful caller could make (no double free of a buffer, indices in range, exports present).
//! What the library must answer is not decided here but by the oracle, from the observations.

use ntdsbcli_harness::program::{Garbage, HandleArg};
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Just, Union};
use proptest_state_machine::ReferenceStateMachine;
use std::cell::Cell;

/// Sessions use handle slots 0..MAX_SESSIONS; bad Prepares write to a scratch slot; restore
/// handles use the slots after it.
pub const MAX_SESSIONS: usize = 23;
pub const SCRATCH_SLOT: u8 = 23;
pub const RESTORE_BASE: u8 = 24;
pub const MAX_RESTORES: usize = 8;
pub const MAX_BUFS: usize = 31;
pub const SCRATCH_BUF: u8 = 31;
pub use crate::checks::UNKNOWN_ATTACHMENT;
pub const CONCURRENT_THREADS: u8 = 4;
/// The seed of the random bytes an invalid End points to.
pub const RANDOM_SEED: u64 = 0x5EED;

/// Which of a function's two forms (`…A`, `…W`) the library exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forms {
    pub ansi: bool,
    pub wide: bool,
}

impl Forms {
    pub fn any(self) -> bool {
        self.ansi || self.wide
    }
    /// The form a call uses when only one will do: wide unless only ANSI is there.
    pub fn prefer_wide(self) -> bool {
        self.wide || !self.ansi
    }
}

/// Which parts of the API the library exports: transitions that need an absent one are never
/// generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Surface {
    pub prepare: Forms,
    pub names: Forms,
    pub logs: Forms,
    pub open: Forms,
    pub read: bool,
    pub close: bool,
    pub truncate: bool,
    pub restore_prepare: Forms,
    pub restore_end: bool,
}

impl Surface {
    pub fn from_exports(exports: &[String]) -> Surface {
        let has = |n: &str| exports.iter().any(|e| e == n);
        let aw = |n: &str| Forms {
            ansi: has(&format!("{n}A")),
            wide: has(&format!("{n}W")),
        };
        Surface {
            prepare: aw("DsBackupPrepare"),
            names: aw("DsBackupGetDatabaseNames"),
            logs: aw("DsBackupGetBackupLogs"),
            open: aw("DsBackupOpenFile"),
            read: has("DsBackupRead"),
            close: has("DsBackupClose"),
            truncate: has("DsBackupTruncateLogs"),
            restore_prepare: aw("DsRestorePrepare"),
            restore_end: has("DsRestoreEnd"),
        }
    }
}

thread_local! {
    /// The surface the generator works with; set before generating (the state machine's
    /// initial state is a static function).
    static SURFACE: Cell<Surface> = Cell::new(Surface::default());
}

pub fn set_surface(s: Surface) {
    SURFACE.with(|c| c.set(s));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionState {
    pub live: bool,
    pub open: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufState {
    pub freed: bool,
    /// A name list (an attachment name can be taken from it); else a token.
    pub list: bool,
    /// The session whose call returned it: a list names that session's attachments, and
    /// only that session is given its names (a library may list names per session).
    pub session: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub surface: Surface,
    pub sessions: Vec<SessionState>,
    pub bufs: Vec<BufState>,
    pub restores: Vec<bool>,
    /// The inert calls made since the last call that could change anything, newest last
    /// (at most `INERT_ROOM`): the same one again would only repeat an answer.
    pub inert: Vec<Transition>,
}

/// Inert calls remembered at most. Fewer than the inert calls every state offers (12 bad
/// Prepares, 9 invalid Ends, Free(NULL)), so a draw always has some left.
const INERT_ROOM: usize = 8;

impl State {
    /// A state with nothing in it yet, on `surface`.
    pub fn empty(surface: Surface) -> State {
        State {
            surface,
            sessions: Vec::new(),
            bufs: Vec::new(),
            restores: Vec::new(),
            inert: Vec::new(),
        }
    }

    /// Whether `t` changes nothing here that a second identical call could see: refused for
    /// its arguments, made on a session or restore handle that ended, or reading what
    /// stays. A read, an open or a truncation on a live session is never inert: it moves
    /// the library's file position or the server's logs, which the model does not keep.
    pub fn is_inert(&self, t: &Transition) -> bool {
        let dead = |s: usize| self.sessions.get(s).is_none_or(|s| !s.live);
        match *t {
            Transition::PrepareBad { .. }
            | Transition::EndInvalid { .. }
            | Transition::FreeNull
            | Transition::Peek { .. } => true,
            Transition::End { session }
            | Transition::EndConcurrent { session }
            | Transition::Names { session, .. }
            | Transition::Open { session, .. }
            | Transition::OpenUnknown { session, .. }
            | Transition::Read { session, .. }
            | Transition::ReadToEnd { session }
            | Transition::Truncate { session } => dead(session),
            Transition::Close { session } => self.sessions.get(session).is_none_or(|s| !s.open),
            Transition::RestoreEnd { restore } => {
                !self.restores.get(restore).copied().unwrap_or(false)
            }
            Transition::Prepare { .. }
            | Transition::Free { .. }
            | Transition::RestorePrepare { .. }
            | Transition::EndRestore { .. }
            | Transition::Cross { .. } => false,
        }
    }
}

pub use crate::checks::BadArg as Bad;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadSize {
    Min,
    Large,
    Tiny,
    Unaligned,
}

impl ReadSize {
    pub fn bytes(self) -> u32 {
        match self {
            ReadSize::Min => 24_576,
            ReadSize::Large => 65_536,
            ReadSize::Tiny => 1_000,
            ReadSize::Unaligned => 24_577,
        }
    }
    /// The documented rule: a multiple of 8192 and at least 24576.
    pub fn valid(self) -> bool {
        matches!(self, ReadSize::Min | ReadSize::Large)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossCall {
    OpenFile,
    Read,
    Close,
    Names,
    Truncate,
}

/// One call of a sequence. Entities are referred to by creation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Prepare {
        wide: bool,
    },
    PrepareBad {
        wide: bool,
        bad: Bad,
    },
    End {
        session: usize,
    },
    /// End on NULL or a garbage value (never a slot's value).
    EndInvalid {
        h: HandleArg,
    },
    EndRestore {
        restore: usize,
    },
    EndConcurrent {
        session: usize,
    },
    Names {
        session: usize,
        logs: bool,
        wide: bool,
    },
    Open {
        session: usize,
        list: usize,
        wide: bool,
    },
    OpenUnknown {
        session: usize,
        wide: bool,
    },
    Read {
        session: usize,
        size: ReadSize,
    },
    ReadToEnd {
        session: usize,
    },
    Close {
        session: usize,
    },
    Truncate {
        session: usize,
    },
    Free {
        buf: usize,
    },
    FreeNull,
    Peek {
        buf: usize,
    },
    RestorePrepare {
        wide: bool,
        token: Option<usize>,
    },
    RestoreEnd {
        restore: usize,
    },
    Cross {
        restore: usize,
        call: CrossCall,
    },
}

/// Which form a generated call uses (true: wide), among those exported.
fn form(f: Forms) -> BoxedStrategy<bool> {
    match (f.ansi, f.wide) {
        (true, true) => any::<bool>().boxed(),
        (false, true) => Just(true).boxed(),
        _ => Just(false).boxed(),
    }
}

pub struct Machine;

impl ReferenceStateMachine for Machine {
    type State = State;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<State> {
        Just(State::empty(SURFACE.with(|c| c.get()))).boxed()
    }

    /// Every transition that may come next in state `st`, weighted. Long on purpose: one
    /// strategy per export, side by side, so their weights can be read against each other.
    fn transitions(st: &State) -> BoxedStrategy<Transition> {
        /// One weighted choice: `make` turns what `s` draws into the transition.
        fn choice<S, F>(weight: u32, s: S, make: F) -> (u32, BoxedStrategy<Transition>)
        where
            S: Strategy + 'static,
            F: Fn(S::Value) -> Transition + 'static,
        {
            (weight, s.prop_map(make).boxed())
        }

        let s = st.surface;
        let n = st.sessions.len();
        let mut options: Vec<(u32, BoxedStrategy<Transition>)> = Vec::new();
        let prepare_forms = form(s.prepare);
        if n < MAX_SESSIONS && st.bufs.len() < MAX_BUFS {
            options.push(choice(6, prepare_forms.clone(), |wide| {
                Transition::Prepare { wide }
            }));
        }
        let bad = prop_oneof![
            Just(Bad::NullServer),
            Just(Bad::NullPhbc),
            Just(Bad::Incremental),
            Just(Bad::LogsOnly),
            Just(Bad::NullToken),
            Just(Bad::NullSize),
        ];
        options.push(choice(1, (prepare_forms, bad), |(wide, bad)| {
            Transition::PrepareBad { wide, bad }
        }));
        let invalid = prop_oneof![
            Just(HandleArg::Null),
            Just(HandleArg::Garbage(Garbage::Small(1))),
            Just(HandleArg::Garbage(Garbage::AllOnes)),
            Just(HandleArg::Garbage(Garbage::Unmapped)),
            Just(HandleArg::Garbage(Garbage::KernelHalf)),
            Just(HandleArg::Garbage(Garbage::NonCanonical)),
            Just(HandleArg::Garbage(Garbage::Zeroed)),
            Just(HandleArg::Garbage(Garbage::OnesFilled)),
            Just(HandleArg::Garbage(Garbage::Random(RANDOM_SEED))),
        ];
        options.push(choice(2, invalid, |h| Transition::EndInvalid { h }));
        options.push((1, Just(Transition::FreeNull).boxed()));
        if n > 0 {
            let sess = 0..n;
            options.push(choice(6, sess.clone(), |session| Transition::End {
                session,
            }));
            options.push(choice(1, sess.clone(), |session| {
                Transition::EndConcurrent { session }
            }));
            options.push(choice(1, sess.clone(), |i| Transition::EndInvalid {
                h: HandleArg::Garbage(Garbage::LivePlusOne(i as u8)),
            }));
            if st.bufs.len() < MAX_BUFS {
                let mut lists = Vec::new();
                if s.names.any() {
                    lists.push((false, s.names));
                }
                if s.logs.any() {
                    lists.push((true, s.logs));
                }
                for (logs, forms) in lists {
                    options.push(choice(
                        2,
                        (sess.clone(), form(forms)),
                        move |(session, wide)| Transition::Names {
                            session,
                            logs,
                            wide,
                        },
                    ));
                }
            }
            if s.open.any() {
                let lists: Vec<usize> = (0..st.bufs.len())
                    .filter(|&b| st.bufs[b].list && !st.bufs[b].freed)
                    .collect();
                if !lists.is_empty() {
                    // The session drawn is replaced by the list's own, so that the draws
                    // stay those of one stream per seed.
                    let owner: Vec<usize> = st.bufs.iter().map(|b| b.session).collect();
                    options.push(choice(
                        4,
                        (sess.clone(), proptest::sample::select(lists), form(s.open)),
                        move |(_, list, wide)| Transition::Open {
                            session: owner[list],
                            list,
                            wide,
                        },
                    ));
                }
                options.push(choice(
                    1,
                    (sess.clone(), form(s.open)),
                    |(session, wide)| Transition::OpenUnknown { session, wide },
                ));
            }
            if s.read {
                let size = prop_oneof![
                    3 => Just(ReadSize::Min),
                    3 => Just(ReadSize::Large),
                    1 => Just(ReadSize::Tiny),
                    1 => Just(ReadSize::Unaligned),
                ];
                options.push(choice(3, (sess.clone(), size), |(session, size)| {
                    Transition::Read { session, size }
                }));
                options.push(choice(2, sess.clone(), |session| Transition::ReadToEnd {
                    session,
                }));
            }
            if s.close {
                options.push(choice(3, sess.clone(), |session| Transition::Close {
                    session,
                }));
            }
            if s.truncate {
                options.push(choice(1, sess, |session| Transition::Truncate { session }));
            }
        }
        let unfreed: Vec<usize> = (0..st.bufs.len()).filter(|&b| !st.bufs[b].freed).collect();
        if !unfreed.is_empty() {
            options.push(choice(
                3,
                proptest::sample::select(unfreed.clone()),
                |buf| Transition::Free { buf },
            ));
            options.push(choice(1, proptest::sample::select(unfreed), |buf| {
                Transition::Peek { buf }
            }));
        }
        if s.restore_prepare.any() && st.restores.len() < MAX_RESTORES {
            let tokens: Vec<Option<usize>> = std::iter::once(None)
                .chain(
                    (0..st.bufs.len())
                        .filter(|&b| !st.bufs[b].list && !st.bufs[b].freed)
                        .map(Some),
                )
                .collect();
            options.push(choice(
                1,
                (form(s.restore_prepare), proptest::sample::select(tokens)),
                |(wide, token)| Transition::RestorePrepare { wide, token },
            ));
        }
        let r = st.restores.len();
        if r > 0 {
            let rest = 0..r;
            if s.restore_end {
                options.push(choice(1, rest.clone(), |restore| Transition::RestoreEnd {
                    restore,
                }));
            }
            options.push(choice(1, rest.clone(), |restore| Transition::EndRestore {
                restore,
            }));
            let mut calls = Vec::new();
            if s.truncate {
                calls.push(Just(CrossCall::Truncate).boxed());
            }
            if s.open.any() {
                calls.push(Just(CrossCall::OpenFile).boxed());
            }
            if s.read {
                calls.push(Just(CrossCall::Read).boxed());
            }
            if s.close {
                calls.push(Just(CrossCall::Close).boxed());
            }
            if s.names.any() {
                calls.push(Just(CrossCall::Names).boxed());
            }
            if !calls.is_empty() {
                options.push(choice(1, (rest, Union::new(calls)), |(restore, call)| {
                    Transition::Cross { restore, call }
                }));
            }
        }
        Union::new_weighted(options).boxed()
    }

    fn preconditions(st: &State, t: &Transition) -> bool {
        // The same inert call again, with nothing changed since: no new evidence.
        if st.inert.contains(t) {
            return false;
        }
        let n = st.sessions.len();
        let buf_ok = |b: usize| b < st.bufs.len() && !st.bufs[b].freed;
        match *t {
            Transition::Prepare { .. } => n < MAX_SESSIONS && st.bufs.len() < MAX_BUFS,
            Transition::PrepareBad { .. } | Transition::FreeNull => true,
            Transition::EndInvalid {
                h: HandleArg::Garbage(Garbage::LivePlusOne(i)),
            } => usize::from(i) < n,
            Transition::EndInvalid { .. } => true,
            Transition::End { session }
            | Transition::EndConcurrent { session }
            | Transition::OpenUnknown { session, .. }
            | Transition::Read { session, .. }
            | Transition::ReadToEnd { session }
            | Transition::Close { session }
            | Transition::Truncate { session } => session < n,
            Transition::Names { session, .. } => session < n && st.bufs.len() < MAX_BUFS,
            Transition::Open { session, list, .. } => {
                session < n
                    && buf_ok(list)
                    && st.bufs[list].list
                    && st.bufs[list].session == session
            }
            Transition::Free { buf } | Transition::Peek { buf } => buf_ok(buf),
            Transition::RestorePrepare { token, .. } => {
                st.restores.len() < MAX_RESTORES
                    && token.is_none_or(|b| buf_ok(b) && !st.bufs[b].list)
            }
            Transition::RestoreEnd { restore }
            | Transition::EndRestore { restore }
            | Transition::Cross { restore, .. } => restore < st.restores.len(),
        }
    }

    fn apply(mut st: State, t: &Transition) -> State {
        if st.is_inert(t) {
            if st.inert.len() == INERT_ROOM {
                st.inert.remove(0);
            }
            st.inert.push(t.clone());
        } else {
            st.inert.clear();
        }
        match *t {
            Transition::Prepare { .. } => {
                st.sessions.push(SessionState {
                    live: true,
                    open: false,
                });
                st.bufs.push(BufState {
                    freed: false,
                    list: false,
                    session: st.sessions.len() - 1,
                });
            }
            Transition::End { session } | Transition::EndConcurrent { session } => {
                st.sessions[session] = SessionState {
                    live: false,
                    open: false,
                };
            }
            Transition::Names { session, .. } if st.sessions[session].live => {
                st.bufs.push(BufState {
                    freed: false,
                    list: true,
                    session,
                });
            }
            Transition::Open { session, .. } if st.sessions[session].live => {
                st.sessions[session].open = true;
            }
            Transition::Close { session } => st.sessions[session].open = false,
            Transition::Free { buf } => st.bufs[buf].freed = true,
            Transition::RestorePrepare { .. } => st.restores.push(true),
            Transition::RestoreEnd { restore } => st.restores[restore] = false,
            _ => {}
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn state(sessions: usize) -> State {
        State {
            surface: Surface {
                prepare: Forms {
                    ansi: true,
                    wide: true,
                },
                ..Surface::default()
            },
            sessions: vec![
                SessionState {
                    live: true,
                    open: false
                };
                sessions
            ],
            ..State::empty(Surface::default())
        }
    }

    /// An invalid End is NULL or a garbage value, never a slot's value, and a live handle
    /// plus one names a session that exists.
    #[test]
    fn invalid_ends_never_pass_a_handle_and_name_existing_sessions() {
        let mut runner = TestRunner::deterministic();
        let mut kinds = std::collections::BTreeSet::new();
        for n in [0, 1, 3] {
            let st = state(n);
            let strategy = Machine::transitions(&st);
            for _ in 0..3000 {
                let t = strategy.new_tree(&mut runner).expect("a tree").current();
                if let Transition::EndInvalid { h } = &t {
                    assert!(!matches!(h, HandleArg::Slot(_)), "{h:?}");
                    if let HandleArg::Garbage(Garbage::LivePlusOne(i)) = h {
                        assert!(usize::from(*i) < n);
                    }
                    kinds.insert(format!("{h:?}").split('(').nth(1).map(String::from));
                    assert!(Machine::preconditions(&st, &t));
                }
            }
        }
        // NULL and every garbage class but a copy of a live handle's bytes come up.
        assert_eq!(kinds.len(), 10, "{kinds:?}");
        let st = state(1);
        let beyond = Transition::EndInvalid {
            h: HandleArg::Garbage(Garbage::LivePlusOne(1)),
        };
        assert!(!Machine::preconditions(&st, &beyond));
    }

    /// A call that can change nothing is not made twice in a row of such calls; any other
    /// call (a read that moves the file position, an End that closes a session) may be.
    #[test]
    fn an_inert_call_is_not_made_again_while_nothing_changed() {
        let all: Vec<String> = ntdsbcli_harness::abi::EXPORTS
            .iter()
            .map(|e| e.to_string())
            .collect();
        set_surface(Surface::from_exports(&all));
        let strategy = Machine::sequential_strategy(24..=24);
        let mut runner = crate::model::phase::runner(7);
        let (mut inert, mut repeated_live) = (0, 0);
        for _ in 0..300 {
            let (init, ts, _) = strategy.new_tree(&mut runner).expect("a tree").current();
            let mut st = init;
            let mut since: Vec<Transition> = Vec::new();
            for (k, t) in ts.iter().enumerate() {
                if st.is_inert(t) {
                    inert += 1;
                    assert!(
                        !since[since.len().saturating_sub(INERT_ROOM)..].contains(t),
                        "{t:?} again at {k}: {ts:?}"
                    );
                    since.push(t.clone());
                } else {
                    repeated_live += usize::from(ts.get(k + 1) == Some(t));
                    since.clear();
                }
                st = Machine::apply(st, t);
            }
        }
        // Both kinds come up: the rule thins inert calls out, it does not remove them.
        assert!(inert > 300, "{inert}");
        assert!(repeated_live > 0);
    }

    #[test]
    fn reads_and_ends_of_live_sessions_are_never_inert() {
        let mut st = state(1);
        let read = Transition::Read {
            session: 0,
            size: ReadSize::Min,
        };
        let end = Transition::End { session: 0 };
        assert!(!st.is_inert(&read));
        assert!(!st.is_inert(&end));
        assert!(st.is_inert(&Transition::Close { session: 0 }));
        st = Machine::apply(st, &end);
        assert!(st.is_inert(&read));
        assert!(st.is_inert(&end));
        st = Machine::apply(st, &end);
        assert!(!Machine::preconditions(&st, &end));
        assert!(Machine::preconditions(&st, &read));
        // A call that may change something makes the inert calls new again.
        st = Machine::apply(st, &Transition::Prepare { wide: true });
        assert!(Machine::preconditions(&st, &end));
    }
}
