//! The values a call's arguments are made from: handles (a slot, NULL or a garbage class) and
//! strings. Plain data, shared by the programs that hold them and the families that pass them.

use serde::{Deserialize, Serialize};

/// A handle argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleArg {
    Null,
    /// The value a Prepare wrote to a slot (live, or stale once ended).
    Slot(u8),
    Garbage(Garbage),
}

/// Values never returned by Prepare (design §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Garbage {
    Small(u64),
    AllOnes,
    /// A page the worker mapped and unmapped again.
    Unmapped,
    KernelHalf,
    NonCanonical,
    /// A live handle (in the slot) plus one: misaligned.
    LivePlusOne(u8),
    /// Pointers to worker-owned readable memory: checked afterwards for writes.
    Zeroed,
    OnesFilled,
    Random(u64),
    /// A copy of the bytes at a live handle's address, when that address is readable.
    CopyOfLive(u8),
}

impl Garbage {
    pub fn label(&self) -> String {
        match self {
            Garbage::Small(n) => format!("small integer 0x{n:X}"),
            Garbage::AllOnes => "all-ones (INVALID_HANDLE_VALUE)".into(),
            Garbage::Unmapped => "unmapped page".into(),
            Garbage::KernelHalf => "kernel-half address".into(),
            Garbage::NonCanonical => "non-canonical address".into(),
            Garbage::LivePlusOne(_) => "live handle + 1".into(),
            Garbage::Zeroed => "pointer to zeroed memory".into(),
            Garbage::OnesFilled => "pointer to 0xFF-filled memory".into(),
            Garbage::Random(_) => "pointer to random bytes".into(),
            Garbage::CopyOfLive(_) => "pointer to a copy of a live handle's bytes".into(),
        }
    }
}

/// A string argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Text {
    Null,
    Lit(String),
    /// Entry `index` of the name list in a buffer slot, without its BFT character.
    Entry {
        buf: u8,
        index: u16,
    },
}

impl HandleArg {
    pub fn describe(&self) -> String {
        match self {
            HandleArg::Null => "NULL".into(),
            HandleArg::Slot(s) => format!("h{s}"),
            HandleArg::Garbage(g) => g.label(),
        }
    }
}

impl Text {
    pub fn describe(&self) -> String {
        match self {
            Text::Null => "NULL".into(),
            Text::Lit(s) => format!("{s:?}"),
            Text::Entry { buf, index } => format!("entry {index} of b{buf}"),
        }
    }
}
