//! The keeper (Unix): a disposable parent between the supervisor and a worker, so that what the
//! library does to its parent or its process group never reaches the verifier. It starts the
//! worker in a process group of its own, adopts every process the worker leaves behind (a child
//! subreaper: even one that called setsid), watches the worker's resident memory, and when the
//! worker ends (or the supervisor asks, with SIGTERM) kills everything left and ends the way
//! the worker ended, so that the supervisor reads the worker's own death from its wait status.
//! It touches no library code: it only forks, waits and kills.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// First argument that turns the verifier binary into a keeper; the worker's arguments follow.
pub const KEEPER_ARG: &str = "__keeper";
/// The environment variable that carries the worker's memory limit, in MiB (0: none).
pub(crate) const ENV_MEMORY_MB: &str = "NTDSBCLI_KEEPER_MEMORY_MB";
/// The keeper's exit code when it ended a worker that went over its memory limit; its last
/// line on stderr starts with `MEMORY_LINE` and says by how much.
pub const MEMORY_EXIT: i32 = 125;
pub const MEMORY_LINE: &str = "ntdsbcli-conform keeper: memory limit:";

/// How often the keeper looks at the worker (exit, signals from the supervisor, memory).
const TICK: Duration = Duration::from_millis(10);

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Resident bytes of process `pid`, when it can be read.
fn resident(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Every child of this process (the worker, and whatever was reparented to it).
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Kills every process this keeper adopted or started, and reaps them, until none is left:
/// a killed process's own children come to the keeper in turn.
pub(crate) fn sweep() {
    for _ in 0..1000 {
        let kids = children();
        if kids.is_empty() {
            return;
        }
        for pid in kids {
            // SAFETY: signalling a child of this process, and its process group.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        loop {
            // SAFETY: reaping children of this process.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r <= 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ends this process the way the worker ended: the same exit code, or the same signal (with
/// no core file).
fn mirror(status: ExitStatus) -> ! {
    if let Some(sig) = status.signal() {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct; no core file for the mirrored death.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        // SAFETY: the default disposition, so that the signal ends this process.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
        // SAFETY: a sigset_t of zeroes is valid storage, and sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        // SAFETY: unblocks every signal; the old mask is not asked for.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
        // SAFETY: raise and _exit end the process; nothing after them runs.
        unsafe {
            libc::raise(sig);
            libc::_exit(128 + sig);
        }
    }
    // SAFETY: _exit ends the process at once.
    unsafe { libc::_exit(status.code().unwrap_or(1)) }
}

/// The signals the supervisor (or a terminal) uses to end the keeper: taken synchronously.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: building a signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Runs the keeper: starts `exe` with `args` as the worker and stays until it is over.
pub fn keep(exe: &Path, args: &[std::ffi::OsString]) -> ! {
    let stop = stop_signals();
    // SAFETY: process-wide settings of this single-purpose process, before any thread.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // No parent-death signal here: it follows the supervisor *thread* that started the
        // keeper, and the sequence phase starts workers from threads that end. A verifier
        // that is killed closes the worker's pipes instead: the worker ends, and so does this.
        libc::sigprocmask(libc::SIG_BLOCK, &stop, std::ptr::null_mut());
    }
    let limit_mb: u64 = std::env::var(ENV_MEMORY_MB)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut cmd = Command::new(exe);
    cmd.args(args).env_remove(ENV_MEMORY_MB).process_group(0);
    // SAFETY: async-signal-safe calls only, in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            // A keeper killed by the library takes the worker with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ntdsbcli-conform keeper: cannot start the worker: {e}");
            // SAFETY: _exit ends the process at once.
            unsafe { libc::_exit(70) }
        }
    };
    let pid = child.id() as i32;
    // The worker holds the protocol pipes now; the keeper keeps no copy of them, so that the
    // supervisor sees them close when the worker's side does.
    // SAFETY: replacing this process's stdin and stdout with /dev/null.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    let status = watch(pid, limit_mb, &stop);
    sweep();
    mirror(status)
}

/// Waits for the worker to end, ending it when the supervisor asks or when it goes over its
/// memory limit; returns how it ended.
fn watch(pid: i32, limit_mb: u64, stop: &libc::sigset_t) -> ExitStatus {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: TICK.as_nanos() as i64,
    };
    let mut over: Option<u64> = None;
    loop {
        let mut raw = 0;
        // SAFETY: reaping children of this process.
        let r = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
        if r == pid {
            if over.is_some() {
                sweep();
                // SAFETY: _exit ends the process at once.
                unsafe { libc::_exit(MEMORY_EXIT) }
            }
            return ExitStatus::from_raw(raw);
        }
        if r > 0 {
            // An adopted orphan ended: look again at once.
            continue;
        }
        if limit_mb > 0 && over.is_none() {
            if let Some(bytes) = resident(pid).filter(|&b| b > limit_mb << 20) {
                eprintln!(
                    "{MEMORY_LINE} the worker held {} MiB resident, over the limit of {limit_mb} MiB (--worker-memory-mb)",
                    bytes >> 20
                );
                over = Some(bytes);
                kill_worker(pid);
            }
        }
        // SAFETY: waiting for one of the blocked stop signals, for one tick at most.
        let sig = unsafe { libc::sigtimedwait(stop, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            kill_worker(pid);
        }
    }
}

fn kill_worker(pid: i32) {
    // SAFETY: signalling the worker (a child) and its process group.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}
