//! Sequence generation: an abstract model of the backup API that only ever proposes calls a
//! careful caller could make (no double free of a buffer, indices in range, exports present).
//! What the library must answer is not decided here but by the oracle, from the observations.

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

/// Which parts of the API the library exports: transitions that need an absent one are never
/// generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Surface {
    pub prepare: (bool, bool),
    pub names: (bool, bool),
    pub logs: (bool, bool),
    pub open: (bool, bool),
    pub read: bool,
    pub close: bool,
    pub truncate: bool,
    pub restore_prepare: (bool, bool),
    pub restore_end: bool,
}

impl Surface {
    pub fn from_exports(exports: &[String]) -> Surface {
        let has = |n: &str| exports.iter().any(|e| e == n);
        let aw = |n: &str| (has(&format!("{n}A")), has(&format!("{n}W")));
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
pub struct Sess {
    pub live: bool,
    pub open: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufSt {
    pub freed: bool,
    /// A name list (an attachment name can be taken from it); else a token.
    pub list: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub surface: Surface,
    pub sessions: Vec<Sess>,
    pub bufs: Vec<BufSt>,
    pub restores: Vec<bool>,
}

pub use crate::checks::BadArg as Bad;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Junk {
    Null,
    Small,
    AllOnes,
    Unmapped,
    KernelHalf,
    NonCanonical,
    LivePlusOne(usize),
    Zeroed,
    OnesFilled,
    Random,
}

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
pub enum Cross {
    OpenFile,
    Read,
    Close,
    Names,
    Truncate,
}

/// One call of a sequence. Entities are referred to by creation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum T {
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
    EndJunk {
        junk: Junk,
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
        call: Cross,
    },
}

fn form((a, w): (bool, bool)) -> BoxedStrategy<bool> {
    match (a, w) {
        (true, true) => any::<bool>().boxed(),
        (false, true) => Just(true).boxed(),
        _ => Just(false).boxed(),
    }
}

fn any_of((a, w): (bool, bool)) -> bool {
    a || w
}

pub struct Machine;

impl ReferenceStateMachine for Machine {
    type State = State;
    type Transition = T;

    fn init_state() -> BoxedStrategy<State> {
        Just(State {
            surface: SURFACE.with(|c| c.get()),
            sessions: Vec::new(),
            bufs: Vec::new(),
            restores: Vec::new(),
        })
        .boxed()
    }

    fn transitions(st: &State) -> BoxedStrategy<T> {
        let s = st.surface;
        let n = st.sessions.len();
        let mut options: Vec<(u32, BoxedStrategy<T>)> = Vec::new();
        let prepare_forms = form(s.prepare);
        if n < MAX_SESSIONS && st.bufs.len() < MAX_BUFS {
            options.push((
                6,
                prepare_forms
                    .clone()
                    .prop_map(|wide| T::Prepare { wide })
                    .boxed(),
            ));
        }
        let bad = prop_oneof![
            Just(Bad::NullServer),
            Just(Bad::NullPhbc),
            Just(Bad::Incremental),
            Just(Bad::LogsOnly),
            Just(Bad::NullToken),
            Just(Bad::NullSize),
        ];
        options.push((
            1,
            (prepare_forms, bad)
                .prop_map(|(wide, bad)| T::PrepareBad { wide, bad })
                .boxed(),
        ));
        let junk = prop_oneof![
            Just(Junk::Null),
            Just(Junk::Small),
            Just(Junk::AllOnes),
            Just(Junk::Unmapped),
            Just(Junk::KernelHalf),
            Just(Junk::NonCanonical),
            Just(Junk::Zeroed),
            Just(Junk::OnesFilled),
            Just(Junk::Random),
        ];
        options.push((2, junk.prop_map(|junk| T::EndJunk { junk }).boxed()));
        options.push((1, Just(T::FreeNull).boxed()));
        if n > 0 {
            let sess = 0..n;
            options.push((
                6,
                sess.clone().prop_map(|session| T::End { session }).boxed(),
            ));
            options.push((
                1,
                sess.clone()
                    .prop_map(|session| T::EndConcurrent { session })
                    .boxed(),
            ));
            options.push((
                1,
                sess.clone()
                    .prop_map(|i| T::EndJunk {
                        junk: Junk::LivePlusOne(i),
                    })
                    .boxed(),
            ));
            if st.bufs.len() < MAX_BUFS {
                let mut lists = Vec::new();
                if any_of(s.names) {
                    lists.push((false, s.names));
                }
                if any_of(s.logs) {
                    lists.push((true, s.logs));
                }
                for (logs, forms) in lists {
                    options.push((
                        2,
                        (sess.clone(), form(forms))
                            .prop_map(move |(session, wide)| T::Names {
                                session,
                                logs,
                                wide,
                            })
                            .boxed(),
                    ));
                }
            }
            if any_of(s.open) {
                let lists: Vec<usize> = (0..st.bufs.len())
                    .filter(|&b| st.bufs[b].list && !st.bufs[b].freed)
                    .collect();
                if !lists.is_empty() {
                    options.push((
                        4,
                        (sess.clone(), proptest::sample::select(lists), form(s.open))
                            .prop_map(|(session, list, wide)| T::Open {
                                session,
                                list,
                                wide,
                            })
                            .boxed(),
                    ));
                }
                options.push((
                    1,
                    (sess.clone(), form(s.open))
                        .prop_map(|(session, wide)| T::OpenUnknown { session, wide })
                        .boxed(),
                ));
            }
            if s.read {
                let size = prop_oneof![
                    3 => Just(ReadSize::Min),
                    3 => Just(ReadSize::Large),
                    1 => Just(ReadSize::Tiny),
                    1 => Just(ReadSize::Unaligned),
                ];
                options.push((
                    3,
                    (sess.clone(), size)
                        .prop_map(|(session, size)| T::Read { session, size })
                        .boxed(),
                ));
                options.push((
                    2,
                    sess.clone()
                        .prop_map(|session| T::ReadToEnd { session })
                        .boxed(),
                ));
            }
            if s.close {
                options.push((
                    3,
                    sess.clone()
                        .prop_map(|session| T::Close { session })
                        .boxed(),
                ));
            }
            if s.truncate {
                options.push((1, sess.prop_map(|session| T::Truncate { session }).boxed()));
            }
        }
        let unfreed: Vec<usize> = (0..st.bufs.len()).filter(|&b| !st.bufs[b].freed).collect();
        if !unfreed.is_empty() {
            options.push((
                3,
                proptest::sample::select(unfreed.clone())
                    .prop_map(|buf| T::Free { buf })
                    .boxed(),
            ));
            options.push((
                1,
                proptest::sample::select(unfreed)
                    .prop_map(|buf| T::Peek { buf })
                    .boxed(),
            ));
        }
        if any_of(s.restore_prepare) && st.restores.len() < MAX_RESTORES {
            let tokens: Vec<Option<usize>> = std::iter::once(None)
                .chain(
                    (0..st.bufs.len())
                        .filter(|&b| !st.bufs[b].list && !st.bufs[b].freed)
                        .map(Some),
                )
                .collect();
            options.push((
                1,
                (form(s.restore_prepare), proptest::sample::select(tokens))
                    .prop_map(|(wide, token)| T::RestorePrepare { wide, token })
                    .boxed(),
            ));
        }
        let r = st.restores.len();
        if r > 0 {
            let rest = 0..r;
            if s.restore_end {
                options.push((
                    1,
                    rest.clone()
                        .prop_map(|restore| T::RestoreEnd { restore })
                        .boxed(),
                ));
            }
            options.push((
                1,
                rest.clone()
                    .prop_map(|restore| T::EndRestore { restore })
                    .boxed(),
            ));
            let mut calls = Vec::new();
            if s.truncate {
                calls.push(Just(Cross::Truncate).boxed());
            }
            if any_of(s.open) {
                calls.push(Just(Cross::OpenFile).boxed());
            }
            if s.read {
                calls.push(Just(Cross::Read).boxed());
            }
            if s.close {
                calls.push(Just(Cross::Close).boxed());
            }
            if any_of(s.names) {
                calls.push(Just(Cross::Names).boxed());
            }
            if !calls.is_empty() {
                options.push((
                    1,
                    (rest, Union::new(calls))
                        .prop_map(|(restore, call)| T::Cross { restore, call })
                        .boxed(),
                ));
            }
        }
        Union::new_weighted(options).boxed()
    }

    fn preconditions(st: &State, t: &T) -> bool {
        let n = st.sessions.len();
        let buf_ok = |b: usize| b < st.bufs.len() && !st.bufs[b].freed;
        match *t {
            T::Prepare { .. } => n < MAX_SESSIONS && st.bufs.len() < MAX_BUFS,
            T::PrepareBad { .. } | T::FreeNull => true,
            T::EndJunk {
                junk: Junk::LivePlusOne(i),
            } => i < n,
            T::EndJunk { .. } => true,
            T::End { session }
            | T::EndConcurrent { session }
            | T::OpenUnknown { session, .. }
            | T::Read { session, .. }
            | T::ReadToEnd { session }
            | T::Close { session }
            | T::Truncate { session } => session < n,
            T::Names { session, .. } => session < n && st.bufs.len() < MAX_BUFS,
            T::Open { session, list, .. } => session < n && buf_ok(list) && st.bufs[list].list,
            T::Free { buf } | T::Peek { buf } => buf_ok(buf),
            T::RestorePrepare { token, .. } => {
                st.restores.len() < MAX_RESTORES
                    && token.is_none_or(|b| buf_ok(b) && !st.bufs[b].list)
            }
            T::RestoreEnd { restore } | T::EndRestore { restore } | T::Cross { restore, .. } => {
                restore < st.restores.len()
            }
        }
    }

    fn apply(mut st: State, t: &T) -> State {
        match *t {
            T::Prepare { .. } => {
                st.sessions.push(Sess {
                    live: true,
                    open: false,
                });
                st.bufs.push(BufSt {
                    freed: false,
                    list: false,
                });
            }
            T::End { session } | T::EndConcurrent { session } => {
                st.sessions[session] = Sess {
                    live: false,
                    open: false,
                };
            }
            T::Names { session, .. } if st.sessions[session].live => {
                st.bufs.push(BufSt {
                    freed: false,
                    list: true,
                });
            }
            T::Open { session, .. } if st.sessions[session].live => {
                st.sessions[session].open = true;
            }
            T::Close { session } => st.sessions[session].open = false,
            T::Free { buf } => st.bufs[buf].freed = true,
            T::RestorePrepare { .. } => st.restores.push(true),
            T::RestoreEnd { restore } => st.restores[restore] = false,
            _ => {}
        }
        st
    }
}
