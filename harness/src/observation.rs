//! What a worker sends back for each op: plain data, judged only by the supervisor's side.

use crate::probe::Probe;
use serde::{Deserialize, Serialize};

/// What one op observed. Fields an op does not produce stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// The export is missing or the argument could not be made: nothing was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// `*phbc` after a Prepare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The handle value the call was given: calls are judged by value, since a library may
    /// hand the same value out again once it is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<u64>,
    /// A garbage value that was a live handle at call time, and what was passed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted: Option<String>,
    /// A size written by the call (token, list, file) or bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A pointer the call wrote (token, list) was non-NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
    /// Worker-owned memory given as a handle was not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Number of calls made by a looping op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// The largest count one call of a looping read wrote to `*pcbRead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest: Option<u64>,
    /// Probe readings of a Repeat, in cycle order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Probe>,
    /// How often each body op of a Repeat returned each code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tally: Vec<Tally>,
    /// The calls of a Faulted body, in order, and its clean-up last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Observation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultObs>,
    /// The call failed while the process had no descriptor left to open (EMFILE): the
    /// library holds every one it may have.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_descriptors: bool,
}

/// What a Faulted op saw: the sweep (sites counted, the call failed and in which step; the
/// clean-up is step `body.len()`), and the resources before the body and after its clean-up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultObs {
    pub sweep: crate::imports::Sweep,
    pub before: Probe,
    pub after: Probe,
    /// The library's live heap blocks and bytes (routed allocations) before and after.
    pub held_before: crate::imports::Held,
    pub held_after: crate::imports::Held,
}

/// `count` calls of body op `op` returned `rc` (`not_run` when it could not be called).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub op: u16,
    pub rc: Option<i32>,
    pub count: u32,
}
