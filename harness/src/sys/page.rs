//! The page shared between the supervisor and a worker through a file (the pulse lives on it).

/// A page of memory shared between the supervisor and its worker through a file.
pub struct SharedPage {
    ptr: *mut u8,
}

// SAFETY: the page is only accessed through atomics, and stays mapped while the value lives.
unsafe impl Send for SharedPage {}
// SAFETY: as for Send: shared references only reach the page through atomics.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    pub const SIZE: usize = 4096;

    /// Maps `file`, which must be at least `SIZE` bytes long.
    pub fn map(file: &std::fs::File) -> std::io::Result<SharedPage> {
        Ok(SharedPage {
            ptr: super::platform::map_shared(file, Self::SIZE)?,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        super::platform::unmap_shared(self.ptr, Self::SIZE);
    }
}
