//! What the oracle says of a sequence: what each step had to return (`Expect`), the failure
//! it found (`Failure`, `FailureKind`) and the whole judgement. Data only; judges nothing.

use ntdsbcli_harness::codes::{describe, ERROR_INVALID_PARAMETER};
use ntdsbcli_harness::worker::DeathReport;

/// What a step must return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// S_OK and a non-NULL handle that no live session has (REQ-20, REQ-13).
    NewHandle,
    Exact(i32),
    /// ERROR_INVALID_PARAMETER: raw 87, or 0x80070057 under --accept-hresult.
    InvalidParam,
    NonZero,
    AnyOf(Vec<i32>),
    Anything,
    /// Concurrent Ends: exactly one S_OK, the rest ERROR_INVALID_PARAMETER.
    OneWinner,
    /// Concurrent Ends on a value that is not live: ERROR_INVALID_PARAMETER for every thread.
    NoWinner,
    /// A buffer still holds the bytes it had when the library returned it (REQ-11).
    SameBytes(Vec<u8>),
    /// No return value to check (DsBackupFree).
    NoCode,
    /// What a careful library answers where the documentation names no code or calls the
    /// call "not supported": another answer is a compatibility warning, never a failure.
    Lenient {
        want: Box<Expect>,
        warning: String,
    },
}

impl Expect {
    pub fn describe(&self) -> String {
        match self {
            Expect::NewHandle => "S_OK with a new, non-NULL handle".into(),
            Expect::Exact(c) => describe(*c),
            Expect::InvalidParam => describe(ERROR_INVALID_PARAMETER),
            Expect::NonZero => "a failure code (not 0)".into(),
            Expect::AnyOf(v) => v
                .iter()
                .map(|c| describe(*c))
                .collect::<Vec<_>>()
                .join(" or "),
            Expect::Anything => "anything but a crash or a hang".into(),
            Expect::OneWinner => "exactly one S_OK, the rest 87 (ERROR_INVALID_PARAMETER)".into(),
            Expect::NoWinner => "87 (ERROR_INVALID_PARAMETER) for every thread".into(),
            Expect::SameBytes(_) => "the bytes the buffer held when it was returned".into(),
            Expect::NoCode => "no crash".into(),
            Expect::Lenient { want, .. } => format!("{} (else a warning)", want.describe()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Step `step` answered `got` where the model allows `want`.
    Mismatch {
        step: usize,
        got: String,
        want: String,
    },
    /// The sequence did not leave handles and threads where it found them.
    Leak { what: String },
    /// Ending what was still live at the end failed.
    Cleanup { got: String },
    Died {
        step: Option<usize>,
        death: DeathReport,
    },
}

/// What a shrink must keep: a candidate that fails another way is not the same failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Mismatch,
    Leak,
    Cleanup,
    Timeout,
    Crash,
}

impl Failure {
    pub fn kind(&self) -> FailureKind {
        match self {
            Failure::Mismatch { .. } => FailureKind::Mismatch,
            Failure::Leak { .. } => FailureKind::Leak,
            Failure::Cleanup { .. } => FailureKind::Cleanup,
            Failure::Died { death, .. } if death.death.is_timeout() => FailureKind::Timeout,
            Failure::Died { .. } => FailureKind::Crash,
        }
    }
}

#[derive(Default)]
pub struct Judgement {
    /// The expectation of each step up to the failing one (for the repro).
    pub expects: Vec<Expect>,
    pub failure: Option<Failure>,
    /// 0x80070057 was accepted somewhere under --accept-hresult.
    pub hresult_accepted: bool,
    /// A documented environment problem made the sequence meaningless.
    pub environment: Option<String>,
    /// Compatibility warnings: answers the documentation does not rule out.
    pub warnings: Vec<String>,
    /// Per step, the slot of the live session the handle value was (None: no live session).
    pub targets: Vec<Option<u8>>,
}
