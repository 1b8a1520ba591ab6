//! Pages for the page heap (mmap), and naming a fault on them: a SIGSEGV or SIGBUS handler
//! that says which block was touched and then lets the signal end the process as it would
//! have.
use libc::{c_int, c_void};
use std::sync::OnceLock;

pub const AVAILABLE: bool = true;

pub fn page() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

const FLAGS: c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Fresh readable and writable pages, or None when the system has none.
pub fn map(len: usize) -> Option<usize> {
    // SAFETY: a new private anonymous mapping touches nothing that exists.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            FLAGS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Makes pages of a block inaccessible: its guard.
pub fn seal(addr: usize, len: usize) {
    // SAFETY: the pages belong to a mapping of the page heap.
    unsafe { libc::mprotect(addr as *mut c_void, len, libc::PROT_NONE) };
}

/// A freed block: its pages are replaced by inaccessible ones that hold no memory, so a use
/// after free faults and the quarantine costs address space only.
pub fn retire(addr: usize, len: usize) {
    // SAFETY: replaces a mapping of the page heap in place.
    unsafe {
        libc::mmap(
            addr as *mut c_void,
            len,
            libc::PROT_NONE,
            FLAGS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
}

/// Opens a retired mapping's first `len` bytes again, readable and writable; `retire` left
/// them zero-filled.
pub fn reopen(addr: usize, len: usize) {
    // SAFETY: the pages belong to a spare mapping of the page heap that nothing refers to.
    unsafe { libc::mprotect(addr as *mut c_void, len, libc::PROT_READ | libc::PROT_WRITE) };
}

pub fn unmap(addr: usize, len: usize) {
    // SAFETY: the mapping belongs to the page heap and nothing refers to it any more.
    unsafe { libc::munmap(addr as *mut c_void, len) };
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn access(ctx: *mut c_void) -> &'static str {
    // SAFETY: the kernel passes the interrupted context; bit 1 of the page-fault error code
    // says the access was a write.
    let err =
        unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize] };
    if err & 2 != 0 {
        "write to"
    } else {
        "read of"
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn access(_ctx: *mut c_void) -> &'static str {
    "access to"
}

extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code <= 0 {
        // Sent, not a fault: with the default disposition back, it ends the process as sent.
        // SAFETY: raise is async-signal-safe.
        unsafe { libc::raise(sig) };
        return;
    }
    let mut line = [0u8; 256];
    let n = DESCRIBE
        .get()
        .map_or(0, |describe| describe(addr, access(ctx), &mut line));
    if n > 0 {
        // SAFETY: write is async-signal-safe; stderr is the supervisor's pipe.
        unsafe { libc::write(2, line.as_ptr().cast(), n) };
    }
    // Returning runs the faulting instruction again, now under the default disposition.
}

/// Makes a fork from the library's code safe for the page heap: `prepare` runs before a fork
/// and `done` after it in both processes, so that a helper forked without exec does not inherit
/// the book locked by a thread that does not exist there.
pub fn guard_forks(prepare: extern "C" fn(), done: extern "C" fn()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the handlers only lock and unlock the book, in the forking thread.
    ONCE.call_once(|| unsafe {
        libc::pthread_atfork(Some(prepare), Some(done), Some(done));
    });
}

/// What the fault handler asks the page heap: the words for a fault at an address and the
/// kind of access, written into the buffer (their length; 0 when it is none of its pages).
pub type Describe = fn(usize, &str, &mut [u8]) -> usize;

static DESCRIBE: OnceLock<Describe> = OnceLock::new();

/// Installs the handler once (SA_RESETHAND: it runs for the first fault only); it writes what
/// `describe` says of the fault, then lets the signal end the process.
pub fn name_faults(describe: Describe) {
    let _ = DESCRIBE.set(describe);
    // SAFETY: installs a handler that only reads the page heap's book and writes one line.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fault as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}
