//! One forked child per sequence: the child runs the program against the library the parent
//! loaded and sends its observations back through a pipe.

use ntdsbcli_harness::abi::Api;
use ntdsbcli_harness::interp::Interp;
use ntdsbcli_harness::program::{Observation, Program};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

pub fn run_forked(api: &Api, program: &Program) -> Option<Vec<Observation>> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills the two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the child only runs the program (glibc keeps malloc usable after a fork),
    // writes to its pipe and leaves with _exit; the parent reads and reaps it.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => {
            // SAFETY: the read end, this process's own.
            unsafe { libc::close(fds[0]) };
            let obs = Interp::new(api, None).run(0, program);
            // SAFETY: the write end, owned by this child alone from here on.
            let mut w = unsafe { std::fs::File::from_raw_fd(fds[1]) };
            let _ = w.write_all(&serde_json::to_vec(&obs).unwrap_or_default());
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        pid => {
            // SAFETY: the write end, the child's now.
            unsafe { libc::close(fds[1]) };
            // SAFETY: the read end, owned by this function alone from here on.
            let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let mut status = 0;
            // SAFETY: reaps the child just forked, into `status`.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            serde_json::from_slice(&buf).ok()
        }
    }
}
