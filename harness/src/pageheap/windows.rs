//! No page heap on Windows yet: the library's PE imports are not routed, so no allocation of
//! its reaches the page heap. `enable` reports that it is off.

pub const AVAILABLE: bool = false;

pub fn page() -> usize {
    4096
}

pub fn map(_len: usize) -> Option<usize> {
    None
}

pub fn seal(_addr: usize, _len: usize) {}

pub fn retire(_addr: usize, _len: usize) {}

pub fn unmap(_addr: usize, _len: usize) {}

pub fn name_faults() {}
