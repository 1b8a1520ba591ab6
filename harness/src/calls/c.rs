//! The arguments of a call written as C, for the repros: the one place a handle or a string
//! argument becomes C text.

use crate::args::{Garbage, HandleArg, Text};

/// A Rust string as a C string literal.
pub fn c_str(s: &str) -> String {
    format!("{s:?}")
}

/// A text argument as C: NULL, a literal, or an entry of a name list; wide ones through w().
pub fn text(t: &Text, wide: bool) -> String {
    let narrow = match t {
        Text::Null => return "NULL".into(),
        Text::Lit(s) => c_str(s),
        Text::Entry { buf, index } => format!("entry({buf}, {index})"),
    };
    if wide {
        format!("w({narrow})")
    } else {
        narrow
    }
}

/// A handle argument as C: NULL, a slot of `h[]`, or the garbage class's value.
pub fn handle(h: &HandleArg) -> String {
    match h {
        HandleArg::Null => "NULL".into(),
        HandleArg::Slot(s) => format!("h[{s}]"),
        HandleArg::Garbage(g) => match *g {
            Garbage::Small(n) => format!("(HBC)(uintptr_t){n}"),
            Garbage::AllOnes => "(HBC)(uintptr_t)-1".into(),
            Garbage::Unmapped => "unmapped()".into(),
            Garbage::KernelHalf => "(HBC)(uintptr_t)0xFFFF800000001000ull".into(),
            Garbage::NonCanonical => "(HBC)(uintptr_t)0x0123456789ABCDE0ull".into(),
            Garbage::LivePlusOne(s) => format!("(HBC)((char *)h[{s}] + 1)"),
            Garbage::Zeroed => "junk_memory(0, 0)".into(),
            Garbage::OnesFilled => "junk_memory(0xFF, 0)".into(),
            Garbage::Random(seed) => format!("junk_memory(-1, {}ull)", seed | 1),
            Garbage::CopyOfLive(_) => "junk_memory(0, 0)".into(),
        },
    }
}

/// A handle argument in a fault repro, whose session paths pass live handles only.
pub fn session_handle(h: &HandleArg) -> String {
    match h {
        HandleArg::Slot(s) => format!("h[{s}]"),
        HandleArg::Null => "NULL".into(),
        HandleArg::Garbage(_) => "NULL".into(),
    }
}

/// The slot an End clears in a fault repro: a spare one (31) when the handle is no slot's.
pub fn cleared_slot(h: &HandleArg) -> u8 {
    match h {
        HandleArg::Slot(s) => *s,
        _ => 31,
    }
}

/// The C type of a string argument in the A or W form.
pub fn char_type(wide: bool) -> &'static str {
    if wide {
        "const WCH *"
    } else {
        "const char *"
    }
}

/// `{ body }` at the indent of a step in the repro's round.
pub fn block(body: String) -> String {
    format!("    {{\n{body}    }}\n")
}
