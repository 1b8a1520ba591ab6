//! A sequence as a program: the op that performs each transition (`op_of`, the one place that
//! turns a transition into its op) and where the parts of the program sit (`Layout`). Builds
//! programs; judges nothing.

use super::machine::*;
use crate::checks::Ctx;
use ntdsbcli_harness::program::{
    Close, End, EndConcurrent, Free, Names, Read, ReadToEnd, RestoreEnd, Truncate,
};
use ntdsbcli_harness::program::{HandleArg, ListKind, Op, OpenFile, Program, RestorePrepare, Text};
use proptest_state_machine::ReferenceStateMachine;

fn restore_slot(r: usize) -> HandleArg {
    HandleArg::Slot(RESTORE_BASE + r as u8)
}

/// The op that performs transition `t` in state `st` (before `t` applies).
/// Long on purpose: one short arm per transition, each independent of the others.
pub fn op_of(ctx: &Ctx, st: &State, t: &Transition) -> Op {
    let sess = |i: usize| HandleArg::Slot(i as u8);
    let open = |wide, h, name| {
        Op::OpenFile(OpenFile {
            wide,
            h,
            name,
            hint: 24_576,
            size: true,
        })
    };
    let names = |kind, wide, h, buf| {
        Op::Names(Names {
            kind,
            wide,
            h,
            out: true,
            size: true,
            buf,
        })
    };
    match *t {
        Transition::Prepare { wide } => {
            ctx.prepare_form(wide, st.sessions.len() as u8, st.bufs.len() as u8)
        }
        Transition::PrepareBad { wide, bad } => {
            let mut op = ctx.prepare_form(wide, SCRATCH_SLOT, SCRATCH_BUF);
            crate::checks::spoil(&mut op, bad);
            op
        }
        Transition::End { session } => Op::End(End { h: sess(session) }),
        Transition::EndInvalid { ref h } => Op::End(End { h: h.clone() }),
        Transition::EndRestore { restore } => Op::End(End {
            h: restore_slot(restore),
        }),
        Transition::EndConcurrent { session } => Op::EndConcurrent(EndConcurrent {
            h: sess(session),
            threads: CONCURRENT_THREADS,
        }),
        Transition::Names {
            session,
            logs,
            wide,
        } => names(
            if logs {
                ListKind::BackupLogs
            } else {
                ListKind::DatabaseNames
            },
            wide,
            sess(session),
            st.bufs.len() as u8,
        ),
        Transition::Open {
            session,
            list,
            wide,
        } => open(
            wide,
            sess(session),
            Text::Entry {
                buf: list as u8,
                index: 0,
            },
        ),
        Transition::OpenUnknown { session, wide } => {
            open(wide, sess(session), Text::Lit(UNKNOWN_ATTACHMENT.into()))
        }
        Transition::Read { session, size } => Op::Read(Read {
            h: sess(session),
            cb: size.bytes(),
            pcb: true,
        }),
        Transition::ReadToEnd { session } => Op::ReadToEnd(ReadToEnd {
            h: sess(session),
            cb: 65_536,
        }),
        Transition::Close { session } => Op::Close(Close { h: sess(session) }),
        Transition::Truncate { session } => Op::Truncate(Truncate { h: sess(session) }),
        Transition::Free { buf } => Op::Free(Free {
            buf: Some(buf as u8),
        }),
        Transition::FreeNull => Op::Free(Free { buf: None }),
        Transition::Peek { buf } => Op::Peek { buf: buf as u8 },
        Transition::RestorePrepare { wide, token } => Op::RestorePrepare(RestorePrepare {
            wide,
            server: ctx.server(),
            token: token.map(|b| b as u8),
            slot: RESTORE_BASE + st.restores.len() as u8,
        }),
        Transition::RestoreEnd { restore } => Op::RestoreEnd(RestoreEnd {
            h: restore_slot(restore),
        }),
        Transition::Cross { restore, call } => {
            let h = restore_slot(restore);
            let wide = st.surface.open.prefer_wide();
            match call {
                CrossCall::OpenFile => open(wide, h, Text::Lit(UNKNOWN_ATTACHMENT.into())),
                CrossCall::Read => Op::Read(Read {
                    h,
                    cb: 24_576,
                    pcb: true,
                }),
                CrossCall::Close => Op::Close(Close { h }),
                CrossCall::Names => names(
                    ListKind::DatabaseNames,
                    st.surface.names.prefer_wide(),
                    h,
                    SCRATCH_BUF,
                ),
                CrossCall::Truncate => Op::Truncate(Truncate { h }),
            }
        }
    }
}

/// Where the parts of a sequence program sit: the opening probe, one op per transition, the
/// clean-up, the closing probe. The only code that knows the positions (`program` builds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub steps: usize,
}

impl Layout {
    pub const START: usize = 0;

    /// The layout `program` gives the sequence `transitions`.
    pub fn of_sequence(transitions: &[Transition]) -> Layout {
        Layout {
            steps: transitions.len(),
        }
    }

    pub fn of(program: &Program) -> Layout {
        Layout {
            steps: program.ops.len().saturating_sub(3),
        }
    }
    /// The op of transition `i`.
    pub fn step(self, i: usize) -> usize {
        i + 1
    }
    /// The ops of the transitions.
    pub fn steps(self) -> std::ops::Range<usize> {
        1..self.steps + 1
    }
    pub fn cleanup(self) -> usize {
        self.steps + 1
    }
    pub fn end(self) -> usize {
        self.steps + 2
    }
    /// The transition an op index is, if it is one.
    pub fn step_of_op(self, op: usize) -> Option<usize> {
        op.checked_sub(1).filter(|&s| s < self.steps)
    }
}

/// A sequence as a program: probe, the calls, clean-up, probe (see `Layout`).
pub fn program(ctx: &Ctx, init: &State, transitions: &[Transition], label: String) -> Program {
    let mut p = Program::new(label, Vec::new());
    p.push(Op::Probe);
    let mut st = init.clone();
    for t in transitions {
        p.push(op_of(ctx, &st, t));
        st = Machine::apply(st, t);
    }
    p.push(Op::Cleanup);
    p.push(Op::Probe);
    p
}
