//! Unix memory and descriptor helpers: unmapped pages, readable-memory tests, sentinel
//! descriptors, errno for out of memory, abort on a heap misuse.

use std::os::fd::AsRawFd;

/// An address that was mapped and then unmapped by this process just now.
pub fn unmapped_page() -> usize {
    // SAFETY: a fresh anonymous mapping touches nothing that exists.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return 0x0000_7FFF_DEAD_0000;
    }
    // SAFETY: the mapping just made, which nothing refers to; only its address is kept.
    unsafe { libc::munmap(p, 4096) };
    p as usize
}

pub const KERNEL_HALF: usize = 0xFFFF_8000_0000_1000;
pub const NON_CANONICAL: usize = 0x0123_4567_89AB_CDE0;

/// Whether `len` bytes at `addr` can be read, asked of the kernel so that nothing faults.
pub fn copy_if_readable(addr: usize, out: &mut [u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        let local = libc::iovec {
            iov_base: out.as_mut_ptr().cast(),
            iov_len: out.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: out.len(),
        };
        // SAFETY: the kernel checks the remote range; the local one is our buffer.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        n == out.len() as isize
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (addr, out);
        false
    }
}

/// A harness-owned OS handle with an identity, to see whether a library closed it. Raw fds on
/// purpose: an owned fd would abort on drop once a library has closed it behind our back.
pub struct Sentinel {
    fds: [i32; 2],
    ino: u64,
}

fn ino_of(fd: i32) -> Option<u64> {
    // SAFETY: fstat into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_ino)
    }
}

impl Sentinel {
    pub fn open() -> Option<Sentinel> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        let ino = ino_of(fds[0])?;
        Some(Sentinel { fds, ino })
    }

    /// Still open and still the same pipe (a closed number may have been reused).
    pub fn intact(&self) -> bool {
        ino_of(self.fds[0]) == Some(self.ino)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        // Close only what is still ours: a reused number belongs to someone else now.
        let ours = self.intact();
        for fd in self.fds {
            if ours {
                // SAFETY: the fds are ours (checked just now).
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Maps `len` bytes of `file` shared, read and write.
pub(super) fn map_shared(file: &std::fs::File, len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a shared mapping of a file the caller holds open.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Undoes `map_shared`.
pub(super) fn unmap_shared(ptr: *mut u8, len: usize) {
    // SAFETY: mapped by `map_shared` with this length.
    unsafe { libc::munmap(ptr.cast(), len) };
}

/// Whether this process has no descriptor left to open: a dup of stderr fails with EMFILE.
pub fn descriptors_exhausted() -> bool {
    // SAFETY: duplicating a descriptor and closing the duplicate.
    unsafe {
        let fd = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 0);
        if fd >= 0 {
            libc::close(fd);
            return false;
        }
        *libc::__errno_location() == libc::EMFILE
    }
}

/// Out of memory, as the C runtime says it.
pub fn no_memory() {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = libc::ENOMEM };
}

/// Ends the worker with SIGABRT, as glibc does on a heap misuse it sees.
pub fn heap_misuse_exit() -> ! {
    // SAFETY: abort ends the process with SIGABRT.
    unsafe { libc::abort() }
}
