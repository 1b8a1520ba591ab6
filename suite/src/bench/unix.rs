//! One forked child per sequence: the child runs the program against the library the parent
//! loaded and sends its observations back through a pipe.

use ntdsbcli_harness::abi::Api;
use ntdsbcli_harness::interp::Interp;
use ntdsbcli_harness::program::{Observation, Program};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

pub fn run_forked(api: &Api, program: &Program) -> Option<Vec<Observation>> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills the array; fork duplicates this single-threaded bench process.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return None;
        }
        match libc::fork() {
            -1 => None,
            0 => {
                libc::close(fds[0]);
                let obs = Interp::new(api, None).run(0, program);
                let mut w = std::fs::File::from_raw_fd(fds[1]);
                let _ = w.write_all(&serde_json::to_vec(&obs).unwrap_or_default());
                libc::_exit(0);
            }
            pid => {
                libc::close(fds[1]);
                let mut r = std::fs::File::from_raw_fd(fds[0]);
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                serde_json::from_slice(&buf).ok()
            }
        }
    }
}
