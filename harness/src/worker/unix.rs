//! The Unix side of a worker: started through its keeper in a process group of its own,
//! its death read from the wait status, the orphans it leaves ended.

use super::Death;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

/// The process the supervisor starts: a keeper (super::keeper), which starts the worker below
/// itself. The keeper leads a process group of its own; the worker leads another.
pub fn command(exe: &std::path::Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(super::keeper::KEEPER_ARG)
        .arg(super::protocol::WORKER_ARG)
        .process_group(0);
    cmd
}

/// Sets the worker's memory limit, which its keeper enforces.
pub fn limit_memory(cmd: &mut Command, mb: Option<u64>) {
    cmd.env(super::keeper::ENV_MEMORY_MB, mb.unwrap_or(0).to_string());
}

/// What a worker inherits of the verifier's environment: where programs and libraries are
/// found, temporary files, time and language. Nothing else (no credentials, no tokens).
pub fn platform_variable(name: &std::ffi::OsStr) -> bool {
    const KEPT: &[&str] = &["PATH", "LD_LIBRARY_PATH", "TMPDIR", "TZ", "LANG", "LC_ALL"];
    name.to_str().is_some_and(|n| KEPT.contains(&n))
}

/// The keeper's process group.
pub struct Tree {
    pgid: i32,
}

pub fn adopt(child: &Child) -> std::io::Result<Tree> {
    Ok(Tree {
        pgid: child.id() as i32,
    })
}

/// How long a keeper asked to stop may take to end the worker and what it left.
const KEEPER_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

impl Tree {
    /// Asks the keeper to end the worker and everything it adopted; kills the keeper's group
    /// outright if it does not answer in time.
    pub fn kill(&self, child: &mut Child) {
        if let Ok(None) = child.try_wait() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(self.pgid, libc::SIGTERM);
            }
            if super::death::exited_within(child, KEEPER_GRACE) {
                return;
            }
        }
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        let _ = child.kill();
    }
}

/// Makes this process adopt whatever its workers' keepers could not (a process that left its
/// process group when its keeper was killed), so that `end_orphans` can end it.
pub fn contain_orphans() {
    // SAFETY: a process-wide flag of the verifier.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Kills and reaps every child this process has left. Only for a process whose children are
/// all the run's (the CLI at the end of a run).
pub fn end_orphans() {
    super::keeper::sweep();
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

/// A death the keeper caused and named: the memory limit.
pub fn named_by_keeper(death: Death, last_output: Option<&str>) -> Death {
    use super::keeper::{MEMORY_EXIT, MEMORY_LINE};
    match super::death::told(&death, last_output, MEMORY_EXIT, MEMORY_LINE) {
        Some(what) => Death::MemoryLimit { what },
        None => death,
    }
}

/// Moves the protocol pipes off stdin and stdout, so that nothing the library prints or reads
/// can touch them: stdout then goes to stderr, stdin reads /dev/null.
pub fn take_stdio() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // Plain fd juggling at worker start, before any other thread exists.
    // SAFETY: fcntl duplicates descriptors this process owns.
    let (input, output) = unsafe {
        (
            libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3),
            libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3),
        )
    };
    if input < 0 || output < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated path.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    // SAFETY: dup2 over the standard descriptors, which their copies above now stand for.
    if null < 0 || unsafe { libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 } {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `null` is this function's own descriptor, now copied to 0.
    unsafe { libc::close(null) };
    // SAFETY: `input` and `output` are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(input), OwnedFd::from_raw_fd(output)) })
}

/// Leaves without running the library's destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once.
    unsafe { libc::_exit(code) }
}
