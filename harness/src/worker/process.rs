//! One worker process as the supervisor sees it: its pipes, its pulse, its stderr tail.

use super::protocol::{Request, Response};
use super::serve::{ENV_LIB, ENV_PAGE_HEAP, ENV_PULSE, WORKER_ARG};
#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;
use super::{Death, Position, Pulse};
use crate::HarnessError;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TAIL_MAX: usize = 8 * 1024;

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
        let mut cmd = Command::new(&spec.exe);
        cmd.arg(WORKER_ARG)
            .env(ENV_PULSE, &path)
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
            cmd.env(k, v);
        }
        platform::configure(&mut cmd);
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

    pub(crate) fn send(&mut self, req: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stdin.write_all(&line)?;
        self.stdin.flush()
    }

    /// Waits for the next message; gives up only when the pulse has not moved for `patience`.
    pub(crate) fn recv(&self, patience: Duration) -> Incoming {
        let mut last = self.pulse.read().calls;
        let mut moved = Instant::now();
        // Look at the pulse a few times per patience, so a stall is caught within about
        // one patience of the last sign of progress.
        let tick = (patience / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
        loop {
            match self.rx.recv_timeout(tick) {
                Ok(m) => return m,
                Err(RecvTimeoutError::Disconnected) => return Incoming::Eof,
                Err(RecvTimeoutError::Timeout) => {
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
        match status {
            Ok(status) => platform::death_of(status),
            Err(e) => Death::Protocol {
                what: format!("cannot wait for the worker: {e}"),
            },
        }
    }

    pub(crate) fn kill(&mut self) {
        self.tree.kill(&mut self.child);
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.pulse_path);
    }
}
