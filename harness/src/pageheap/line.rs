//! The line a fault handler writes when the library touched a page of the page heap: built
//! on the stack, because a handler must not allocate.
use std::fmt::Write;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The flag through which the worker tells its supervisor that the page heap named a fault:
/// a word of the shared pulse page, so the supervisor reads it from memory and not from
/// stderr, where the library can write anything.
static TELL: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

/// From now on a fault the page heap names sets `flag`.
pub fn tell_through(flag: &'static AtomicU32) {
    TELL.store(std::ptr::from_ref(flag).cast_mut(), Ordering::Release);
}

/// The page heap named a fault: one atomic store, safe in a signal or exception handler.
pub fn named() {
    let flag = TELL.load(Ordering::Acquire);
    // SAFETY: null, or set by `tell_through` from a reference that lives for the process.
    if let Some(flag) = unsafe { flag.as_ref() } {
        flag.store(1, Ordering::Release);
    }
}

pub struct Line {
    buf: [u8; 240],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Line {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What a fault touched: a block the library had freed, or the guard page past a live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    Freed { size: usize, offset: usize },
    PastEnd { size: usize, beyond: usize },
}

/// What `touched` was, in words; `what` says the kind of access ("read of", "write to",
/// "access to").
pub fn fault_line(touched: Touch, what: &str) -> Line {
    let mut line = Line {
        buf: [0; 240],
        len: 0,
    };
    let _ = write_touch(&mut line, touched, what);
    line
}

fn write_touch(line: &mut impl Write, touched: Touch, what: &str) -> std::fmt::Result {
    match touched {
        Touch::Freed { size, offset } => writeln!(
            line,
            "page heap: use after free: a {what} byte {offset} of a {size}-byte block the library had freed"
        ),
        Touch::PastEnd { size, beyond } => writeln!(
            line,
            "page heap: heap overrun: a {what} the guard page, {beyond} bytes past the end of a {size}-byte block"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_reads_as_the_misuse_it_is() {
        let mut s = String::new();
        write_touch(
            &mut s,
            Touch::Freed {
                size: 64,
                offset: 8,
            },
            "read of",
        )
        .unwrap();
        assert_eq!(
            s,
            "page heap: use after free: a read of byte 8 of a 64-byte block the library had freed\n"
        );
        let mut s = String::new();
        write_touch(&mut s, Touch::PastEnd { size: 5, beyond: 3 }, "write to").unwrap();
        assert!(s.contains("a write to the guard page, 3 bytes past the end of a 5-byte block"));
    }

    #[test]
    fn a_long_line_is_cut_at_the_buffer() {
        let mut l = Line {
            buf: [0; 240],
            len: 0,
        };
        write!(l, "{}", "x".repeat(300)).unwrap();
        assert_eq!(l.bytes().len(), 240);
    }
}
