use super::Death;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

/// Each worker leads its own process group, so a kill reaches anything it started.
pub fn configure(cmd: &mut Command) {
    cmd.process_group(0);
}

/// The worker's process group.
pub struct Tree {
    pgid: i32,
}

pub fn adopt(child: &Child) -> std::io::Result<Tree> {
    Ok(Tree {
        pgid: child.id() as i32,
    })
}

impl Tree {
    pub fn kill(&self, child: &mut Child) {
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        let _ = child.kill();
    }
}

/// Gives the library the signal state a C program starts with. Rust's runtime catches SIGSEGV
/// and SIGBUS (for its stack-overflow message), which hides a signal the library raises
/// itself, and it ignores SIGPIPE; a library must see the defaults and an empty mask.
pub fn plain_c_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGPIPE,
        Signal::SIGABRT,
    ] {
        // SAFETY: installing the default disposition runs no handler code of ours.
        let _ = unsafe { sigaction(sig, &default) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// abort() and a stack overflow already end the process with a signal here.
pub fn name_crashes() {}

fn signal_text(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "segmentation fault",
        libc::SIGABRT => "abort",
        libc::SIGBUS => "bus error",
        libc::SIGILL => "illegal instruction",
        libc::SIGFPE => "arithmetic exception",
        libc::SIGKILL => "killed",
        libc::SIGTRAP => "trap",
        libc::SIGSYS => "bad system call",
        _ => "signal",
    }
}

pub fn death_of(status: ExitStatus) -> Death {
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        Death::Crash {
            code: sig as i64,
            name: format!("{name} ({})", signal_text(sig)),
        }
    } else {
        Death::Exit {
            code: status.code().unwrap_or(-1),
        }
    }
}

/// Moves the protocol pipes off stdin and stdout, so that nothing the library prints or reads
/// can touch them: stdout then goes to stderr, stdin reads /dev/null.
pub fn take_stdio() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain fd juggling at worker start, before any other thread exists.
    unsafe {
        let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        let output = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if input < 0 || output < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(null);
        Ok((OwnedFd::from_raw_fd(input), OwnedFd::from_raw_fd(output)))
    }
}

/// Leaves without running the library's destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once.
    unsafe { libc::_exit(code) }
}
