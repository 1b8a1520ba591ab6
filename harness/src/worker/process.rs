//! One worker process as the supervisor sees it: its pipes, its pulse, its stderr tail.

use super::death::exited_within;
use super::protocol::{Request, Response};
use super::protocol::{ENV_LIB, ENV_PAGE_HEAP, ENV_PULSE};
#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;
use super::Death;
use crate::pulse::{Position, Pulse};
use crate::HarnessError;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TAIL_MAX: usize = 8 * 1024;

/// The verifier's own variable that workers inherit: the planted defect of the bundled
/// reference's library build (its tests select one in the `.so` or `.dll` this way).
const OUR_VARIABLE: &str = "NTDSBCLI_MUTANT";

/// How long messages a worker wrote before it ended are still awaited, when its pipe stays
/// open (a helper it forked holds it). The reader thread may not get a core for a while on a
/// busy machine: at 100 ms, a teardown's "unloaded" was once read too late and the clean exit
/// after it taken for the library calling exit while unloading.
const ENDED_DRAIN: Duration = Duration::from_millis(1000);

pub(crate) enum Incoming {
    Msg(Response),
    Garbled(String),
    Eof,
    /// No message and no progress on the pulse for the whole wait.
    Stuck(Position),
}

pub(crate) struct WorkerProcess {
    child: Child,
    tree: platform::Tree,
    stdin: ChildStdin,
    rx: Receiver<Incoming>,
    tail: Arc<Mutex<Vec<u8>>>,
    stderr_closed: Receiver<()>,
    pub(crate) pulse: Pulse,
    pulse_path: PathBuf,
}

fn pulse_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "ntdsbcli-conform-{}-{}.pulse",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Tries to start a worker this many times before the run stops with exit code 2.
const START_TRIES: u32 = 3;

/// Starts the worker and puts it in its tree. A failure here is never the library's doing: the
/// worker loads it only after this returns. Process creation can fail for a moment on a busy
/// system (Wine reports a child that died in its own start-up as ERROR_INTERNAL_ERROR), so a
/// failed start is tried again; a lasting failure is still an error.
fn start(
    cmd: &mut Command,
    exe: &std::path::Path,
) -> Result<(Child, platform::Tree), HarnessError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match cmd.spawn() {
            Ok(mut child) => match platform::adopt(&child) {
                Ok(tree) => return Ok((child, tree)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    e
                }
            },
            Err(e) => e,
        };
        if tries >= START_TRIES {
            return Err(HarnessError::Spawn {
                exe: exe.to_path_buf(),
                source: error,
            });
        }
        std::thread::sleep(Duration::from_millis(200 * u64::from(tries)));
    }
}

impl WorkerProcess {
    pub(crate) fn spawn(spec: &super::WorkerSpec) -> Result<WorkerProcess, HarnessError> {
        let path = pulse_path();
        let pulse = Pulse::create(&path).map_err(|source| HarnessError::Write {
            path: path.clone(),
            source,
        })?;
        let mut cmd = platform::command(&spec.exe);
        // A clean environment: the library sees what the platform needs and what the user
        // passed, never the verifier's secrets.
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let ours = k == OUR_VARIABLE;
            if (ours || platform::platform_variable(&k)) && !spec.withhold.contains(&k) {
                cmd.env(k, v);
            }
        }
        cmd.env(ENV_PULSE, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &spec.library {
            super::LibrarySpec::Path(p) => cmd.env(ENV_LIB, p),
            super::LibrarySpec::Embedded => cmd.env_remove(ENV_LIB),
        };
        match spec.page_heap {
            Some(q) => cmd.env(ENV_PAGE_HEAP, q.to_string()),
            None => cmd.env_remove(ENV_PAGE_HEAP),
        };
        for (k, v) in crate::probe::worker_env() {
            cmd.env(k, v);
        }
        for (k, v) in &spec.env {
            if !spec.withhold.contains(k) {
                cmd.env(k, v);
            }
        }
        platform::limit_memory(&mut cmd, spec.memory_mb);
        let (mut child, tree) = start(&mut cmd, &spec.exe)?;
        // Only now may the worker load the library: whatever it starts is in the tree.
        pulse.release();
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");

        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let msg = match line {
                    Ok(l) => match serde_json::from_str(&l) {
                        Ok(m) => Incoming::Msg(m),
                        Err(_) => Incoming::Garbled(l.chars().take(80).collect()),
                    },
                    Err(_) => break,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            let _ = tx.send(Incoming::Eof);
        });
        let tail = Arc::new(Mutex::new(Vec::new()));
        let sink = tail.clone();
        let (closed_tx, stderr_closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > TAIL_MAX {
                    let cut = t.len() - TAIL_MAX;
                    t.drain(..cut);
                }
            }
            let _ = closed_tx.send(());
        });
        Ok(WorkerProcess {
            child,
            tree,
            stdin,
            rx,
            tail,
            stderr_closed,
            pulse,
            pulse_path: path,
        })
    }

    /// The worker has mapped its pulse: the file is no longer needed, and a verifier killed
    /// later leaves none behind.
    pub(crate) fn unlink_pulse(&self) {
        let _ = std::fs::remove_file(&self.pulse_path);
    }

    pub(crate) fn send(&mut self, req: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stdin.write_all(&line)?;
        self.stdin.flush()
    }

    /// Waits for the next message; gives up only when the pulse has not moved for `patience`,
    /// or when the worker's process has ended (seen from its wait status, not only from the
    /// pipe: a process the library started may still hold the pipe open).
    pub(crate) fn recv(&mut self, patience: Duration) -> Incoming {
        let mut last = self.pulse.read().calls;
        let mut moved = Instant::now();
        // Look at the pulse a few times per patience, so a stall is caught within about
        // one patience of the last sign of progress; and at the process often.
        let tick = (patience / 4).clamp(Duration::from_millis(1), Duration::from_millis(20));
        let mut ended: Option<Instant> = None;
        loop {
            match self.rx.recv_timeout(tick) {
                Ok(m) => return m,
                Err(RecvTimeoutError::Disconnected) => return Incoming::Eof,
                Err(RecvTimeoutError::Timeout) => {
                    // Once it has ended, what it wrote before is still read for a moment.
                    match ended {
                        Some(t) if t.elapsed() >= ENDED_DRAIN => return Incoming::Eof,
                        Some(_) => continue,
                        None if !matches!(self.child.try_wait(), Ok(None)) => {
                            ended = Some(Instant::now());
                            continue;
                        }
                        None => {}
                    }
                    let now = self.pulse.read();
                    if now.calls != last {
                        last = now.calls;
                        moved = Instant::now();
                    } else if moved.elapsed() >= patience {
                        return Incoming::Stuck(now);
                    }
                }
            }
        }
    }

    /// The last non-empty line written to stderr.
    pub(crate) fn last_output(&self) -> Option<String> {
        let t = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&t)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().chars().take(200).collect())
    }

    /// Reaps a worker that has closed its pipe and says how it ended.
    pub(crate) fn reap(&mut self) -> Death {
        // The stdout reader saw EOF; the process is gone or going. Its last stderr words (an
        // allocator's complaint, say) arrive when stderr closes.
        let status = self.child.wait();
        let _ = self.stderr_closed.recv_timeout(Duration::from_millis(200));
        let death = match status {
            Ok(status) => platform::death_of(status),
            Err(e) => Death::Protocol {
                what: format!("cannot wait for the worker: {e}"),
            },
        };
        let last = self.last_output();
        named_by_worker(
            platform::named_by_keeper(death, last.as_deref()),
            last.as_deref(),
        )
    }

    /// Waits up to `patience` for a worker that said it is exiting; how it ended, or None when
    /// it is still running.
    pub(crate) fn wait_exit(&mut self, patience: Duration) -> Option<Death> {
        exited_within(&mut self.child, patience).then(|| self.reap())
    }

    pub(crate) fn kill(&mut self) {
        self.tree.kill(&mut self.child);
        let _ = self.child.wait();
    }
}

/// A death the worker named itself: its protocol pipe failed under it (the library closed a
/// descriptor it does not own), which is no call of exit by the library.
fn named_by_worker(death: Death, last_output: Option<&str>) -> Death {
    use super::protocol::{PIPE_LOST_EXIT, PIPE_LOST_LINE};
    match super::death::told(&death, last_output, PIPE_LOST_EXIT, PIPE_LOST_LINE) {
        Some(why) => Death::Protocol {
            what: format!(
                "the worker's pipe to the verifier failed ({why}): the library closed or replaced a descriptor it does not own"
            ),
        },
        None => death,
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.pulse_path);
    }
}
