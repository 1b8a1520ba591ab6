//! The latency table of `bench`: default runs against the stand-in domain controller at
//! several latencies, with and without its one-backup limit, side by side in one invocation:
//! the wall time, each phase's share and how far each phase got.

use super::options::{BenchOptions, DcBench};
use crate::runner::{self, RunOptions};
use ntdsbcli_harness::report::{CheckReport, Report};
use ntdsbcli_harness::worker::LibrarySpec;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The variable the stand-in DC's client reads for its server's socket.
const SOCKET_ENV: &str = "NTDSB_DC_SOCKET";

/// A running stand-in DC on a socket of its own, ended when dropped (and by itself when this
/// process dies: it exits when its standard input closes).
pub struct DcServer {
    child: Child,
    pub socket: PathBuf,
}

impl DcServer {
    /// Starts the server `exe` answering each request after `latency` ms, with at most
    /// `backups` backups at once (0: no limit), and waits until it listens.
    pub fn start(exe: &Path, latency: u32, backups: u32) -> anyhow::Result<DcServer> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let socket = std::env::temp_dir().join(format!(
            "ntdsb-dc-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let mut child = Command::new(exe)
            .arg("--socket")
            .arg(&socket)
            .args(["--latency-ms", &latency.to_string()])
            .args(["--backups", &backups.to_string()])
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("{}: cannot start the stand-in DC: {e}", exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let server = DcServer { child, socket };
        if line.trim() != "ready" {
            anyhow::bail!("{}: the stand-in DC did not start", exe.display());
        }
        Ok(server)
    }
}

impl Drop for DcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One default run's figures.
struct Row {
    latency: u32,
    limit: bool,
    wall: f64,
    /// Seconds of the named checks, end.release, fault.cleanup and seq.model.
    phases: [f64; 4],
    sequences: String,
    sites: String,
    cycles: String,
    verdict: String,
}

const PHASES: [&str; 3] = ["end.release", "fault.cleanup", "seq.model"];

fn seconds(c: &CheckReport) -> f64 {
    c.ms.unwrap_or(0) as f64 / 1000.0
}

/// "done/planned" of a check's coverage, or "-".
fn covered(r: &Report, id: &str) -> String {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.coverage.as_ref())
        .map_or("-".into(), |v| format!("{}/{}", v.done, v.planned))
}

fn row(latency: u32, limit: bool, wall: f64, r: &Report) -> Row {
    let mut phases = [0.0; 4];
    for c in &r.checks {
        match PHASES.iter().position(|p| *p == c.id) {
            Some(i) => phases[i + 1] += seconds(c),
            None => phases[0] += seconds(c),
        }
    }
    Row {
        latency,
        limit,
        wall,
        phases,
        sequences: covered(r, "seq.model"),
        sites: covered(r, "fault.cleanup"),
        cycles: covered(r, "end.release"),
        verdict: format!("{:?}", r.verdict).to_lowercase(),
    }
}

/// Runs the default run against the stand-in DC at each latency, without and with the
/// one-backup limit, and prints the table with each run's wall time over the 0 ms run's.
pub fn table(opts: &BenchOptions, dc: &DcBench) -> anyhow::Result<()> {
    let client = std::path::absolute(&dc.client)?;
    let mut rows = Vec::new();
    for &latency in &dc.latencies {
        for limit in [false, true] {
            let server = DcServer::start(&dc.server, latency, limit as u32)?;
            let mut o = RunOptions::new(LibrarySpec::Path(client.clone()), opts.worker_exe.clone());
            o.seed = opts.seed;
            o.worker_env = vec![(SOCKET_ENV.into(), server.socket.clone().into())];
            let t = Instant::now();
            let report = runner::run(&o, &mut |_| {})?;
            rows.push(row(latency, limit, t.elapsed().as_secs_f64(), &report));
        }
    }
    print_rows(&rows);
    Ok(())
}

fn print_rows(rows: &[Row]) {
    println!();
    println!("default runs against the stand-in DC (seconds; coverage as done/planned)");
    println!(
        "{:>7} {:>8} {:>7} {:>6} {:>7} {:>8} {:>6} {:>7} {:>12} {:>9} {:>9}  verdict",
        "latency",
        "backups",
        "wall",
        "x 0ms",
        "checks",
        "release",
        "fault",
        "seq",
        "sequences",
        "sites",
        "cycles"
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.latency == 0 && b.limit == r.limit)
            .map(|b| b.wall);
        let times = base.map_or("-".into(), |b| format!("{:.2}", r.wall / b));
        let [checks, release, fault, seq] = r.phases;
        println!(
            "{:>5}ms {:>8} {:>7.1} {:>6} {:>7.1} {:>8.1} {:>6.1} {:>7.1} {:>12} {:>9} {:>9}  {}",
            r.latency,
            if r.limit { "one" } else { "any" },
            r.wall,
            times,
            checks,
            release,
            fault,
            seq,
            r.sequences,
            r.sites,
            r.cycles,
            r.verdict
        );
    }
    println!("(with no backup limit, calls that wait run release and fault beside seq: phases can add to more than the wall time)");
}
