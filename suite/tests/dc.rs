//! The stand-in domain controller (fixtures/dc): a backup client that talks to its server over
//! a socket per session, as the real client is an RPC client of a DC. Every call is a round
//! trip; End sends a last message and may fail with an RPC error; the server runs one backup at
//! a time for all its clients and refuses restore while online. The verifier must call the
//! pair conformant, with and without latency, and catch each planted defect with the check
//! aimed at it. Each test starts its own server on a fresh socket. Unix only: the pair talks
//! over a Unix socket.
#![cfg(unix)]

mod common;

use common::{assert_line, line};

use common::Dc;
use libloading::{Library, Symbol};
use std::ffi::c_void;
use std::path::Path;
use std::process::Command;

type Hbc = *mut c_void;
type PrepareA = unsafe extern "C" fn(
    *const std::ffi::c_char,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> i32;
type RestorePrepareA =
    unsafe extern "C" fn(*const std::ffi::c_char, u32, *mut c_void, u32, *mut Hbc) -> i32;
type EndFn = unsafe extern "C" fn(Hbc) -> i32;

const HR_BACKUP_IN_PROGRESS: i32 = 0xC800_01F9_u32 as i32;
const SOCKET_ENV: &str = "NTDSB_DC_SOCKET";

/// The CLI on the client library, talking to `dc`: exit code and output.
fn verify(dc: &Dc, lib: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::worker_exe())
        .args(["run", "--lib"])
        .arg(lib)
        // The debug build is slower: a time budget keeps the run short, every check runs.
        .args(["--sequence-budget-ms", "4000", "--worker-env", SOCKET_ENV])
        .args(args)
        .env(SOCKET_ENV, &dc.socket)
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The client's Prepare and End, called in this process against `dc`.
struct Client {
    lib: Library,
}

impl Client {
    fn load(path: &Path) -> Client {
        Client {
            // SAFETY: the stand-in client has no load-time side effects.
            lib: unsafe { Library::new(path) }.expect("the client loads"),
        }
    }

    fn prepare(&self) -> (i32, usize) {
        // SAFETY: the client stays loaded with `self`; PrepareA is the export's signature and
        // its out-arguments outlive the call.
        unsafe {
            let f: Symbol<PrepareA> = self.lib.get(b"DsBackupPrepareA").unwrap();
            let (mut tok, mut cb, mut h): (*mut c_void, u32, Hbc) =
                (std::ptr::null_mut(), 0, std::ptr::null_mut());
            let rc = f(c"\\\\localhost".as_ptr(), 0, 1, &mut tok, &mut cb, &mut h);
            (rc, h as usize)
        }
    }

    fn end(&self, h: usize) -> i32 {
        // SAFETY: the client stays loaded with `self`; EndFn is the export's signature.
        unsafe {
            let f: Symbol<EndFn> = self.lib.get(b"DsBackupEnd").unwrap();
            f(h as Hbc)
        }
    }
}

/// Runs the calling test again in a child process whose client finds `dc`, with
/// `mode` telling it what to show; panics with its output when it fails.
fn in_child(dc: &Dc, mode: &str) {
    common::pass_alone(&[
        ("NTDSB_DC_PROPERTY", mode.as_ref()),
        (SOCKET_ENV, dc.socket.as_os_str()),
    ]);
}

/// What the pair does, shown directly in child processes (the socket's path travels in the
/// environment, which a test must not change in its own multi-threaded process).
#[test]
fn the_server_runs_one_backup_for_all_its_clients_and_refuses_restore() {
    match std::env::var("NTDSB_DC_PROPERTY").as_deref() {
        Ok("busy") => {
            let a = Client::load(&common::dc_client(None));
            assert_eq!(
                a.prepare(),
                (HR_BACKUP_IN_PROGRESS, 0),
                "another process holds it"
            );
            return;
        }
        Ok(_) => {
            let a = Client::load(&common::dc_client(None));
            let (rc, h) = a.prepare();
            assert_eq!(rc, 0, "a backup");
            assert_eq!(a.prepare(), (HR_BACKUP_IN_PROGRESS, 0), "one at a time");
            // SAFETY: the client stays loaded with `a`; RestorePrepareA is the export's
            // signature and `r` outlives the call.
            unsafe {
                let f: Symbol<RestorePrepareA> = a.lib.get(b"DsRestorePrepareA").unwrap();
                let mut r: Hbc = 1 as Hbc;
                let rc = f(c"\\localhost".as_ptr(), 0, std::ptr::null_mut(), 0, &mut r);
                assert_eq!(rc, 5, "ERROR_ACCESS_DENIED while online");
                assert!(r.is_null());
            }
            assert_eq!(a.end(h), 0);
            assert_eq!(a.end(h), 87, "the handle is gone");
            let (rc, again) = a.prepare();
            assert_eq!(rc, 0, "the next backup once the first has ended");
            assert_eq!(a.end(again), 0);
            return;
        }
        Err(_) => {}
    }
    let dc = common::dc(0);
    {
        // This process holds a backup over the raw protocol (dc.h: DC_PREPARE is op 1).
        use std::io::{Read, Write};
        let mut held = std::os::unix::net::UnixStream::connect(&dc.socket).unwrap();
        held.write_all(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        let mut answer = [0u8; 8];
        held.read_exact(&mut answer).unwrap();
        assert_eq!(&answer[..4], &[0, 0, 0, 0], "the backup was granted");
        in_child(&dc, "busy");
    }
    // The holder's binding closed: the server ran its backup down.
    in_child(&dc, "alone");
}

/// Conformant with the server answering at once and after 5 ms a call, with its one-backup
/// limit and without: End's failed round trip, the one backup and the refused restore are all
/// judged right. At 5 ms the run sees that calls wait on the server: the sequences run on
/// many workers when sessions may overlap, on one when the server runs one backup at a time.
/// One case per server (each with a server of its own), so that they run side by side.
#[rstest::rstest]
#[case(0, 1, &[][..], None)]
// 5 ms a round trip: fewer release cycles and a shorter sweep keep the test short; .ci/run
// runs the default with 5 ms too.
#[case(5, 1, &["--release-cycles", "16", "--fault-budget-ms", "4000"][..], Some("so they ran on 1 worker (the library refused a second session"))]
#[case(5, 0, &["--release-cycles", "16", "--fault-budget-ms", "4000"][..], Some("so they ran on 16 workers"))]
fn the_stand_in_dc_is_conformant_without_and_with_latency(
    #[case] latency: u32,
    #[case] backups: u32,
    #[case] extra: &[&str],
    #[case] workers: Option<&str>,
) {
    let lib = common::dc_client(None);
    let dc = common::dc_with(latency, backups);
    let (code, out) = verify(&dc, &lib, &[&["--seed", "1"][..], extra].concat());
    assert_eq!(code, 0, "{latency} ms: a correct client was blamed:\n{out}");
    match backups {
        1 => assert_line(&out, "prepare.distinct", "skip", "one session at a time"),
        _ => assert_line(&out, "prepare.distinct", "pass", ""),
    }
    assert_line(&out, "end.restore-handle", "skip", "ERROR_ACCESS_DENIED");
    assert_line(&out, "fault.cleanup", "pass", "");
    // At 0 ms a busy machine may still keep the server from answering at once: nothing is
    // asserted of its worker count.
    assert_line(&out, "seq.model", "pass", workers.unwrap_or(""));
}

/// With calls that wait on the server and sessions that may overlap, end.release's paths and
/// fault.cleanup's sweep run on workers of their own at once, and the sweep beside the
/// sequences: the planted leaks are still caught, since only a pass is taken from the spread
/// run and the sweep's workers are its own.
#[test]
fn defects_are_caught_when_the_paths_run_at_once() {
    let dc = common::dc_with(5, 0);
    let short = ["--release-cycles", "16", "--fault-budget-ms", "4000"];
    // Each defect, with its check alone and with the sequences beside it: there, a spread
    // run's failure is decided again in the shared worker once the sequences are done.
    for (defect, check, names, beside) in [
        ("END_LEAK", "fault.cleanup", "", "fault.cleanup's sweep"),
        (
            "RESTORE_LEAK",
            "end.release",
            "DsRestorePrepare/DsRestoreEnd leaks",
            "end.release's paths",
        ),
    ] {
        let lib = common::dc_client(Some(defect));
        for with_sequences in [false, true] {
            let mut args = vec!["--seed", "1", "--check", check];
            if with_sequences {
                args.extend(["--check", "seq.model", "--sequences", "300"]);
            }
            args.extend(short);
            let (code, out) = verify(&dc, &lib, &args);
            assert_eq!(code, 1, "{defect}: {out}");
            assert_line(&out, check, "fail", names);
            if with_sequences {
                let s = line(&out, "seq.model");
                let said = format!("{beside} ran at the same time");
                assert!(s.contains(&said), "{defect}: {s}");
            }
        }
    }
}

/// Each planted defect, caught by the check aimed at it; `then` is another check and what it
/// must say of the same client (END_LEAK's client is correct when nothing fails).
#[rstest::rstest]
#[case::end_leak("END_LEAK", "fault.cleanup", Some(("end.release", "pass", "")))]
#[case::restore_leak(
    "RESTORE_LEAK",
    "seq.model",
    Some(("end.release", "fail", "DsRestorePrepare/DsRestoreEnd leaks"))
)]
#[case::second_corrupts("SECOND_CORRUPTS", "prepare.distinct", None)]
fn a_planted_defect_is_caught_by_its_check(
    #[case] defect: &str,
    #[case] check: &str,
    #[case] then: Option<(&str, &str, &str)>,
) {
    let dc = common::dc(0);
    let lib = common::dc_client(Some(defect));
    let (code, out) = verify(&dc, &lib, &["--seed", "1", "--check", check]);
    assert_eq!(code, 1, "{defect}: {out}");
    assert_line(&out, check, "fail", "");
    let Some((other, outcome, says)) = then else {
        return;
    };
    let (code, out) = verify(&dc, &lib, &["--seed", "1", "--check", other]);
    assert_eq!(code, i32::from(outcome == "fail"), "{defect}: {out}");
    assert_line(&out, other, outcome, says);
}

/// The fault.cleanup repro of End's leak: it fails the same call in End's round trip by
/// itself; it must reproduce on the defect and not on the correct client, whose End returns the
/// RPC error and still releases everything.
#[test]
fn the_end_leak_repro_tells_the_defect_from_the_correct_client() {
    let dc = common::dc(0);
    let lib = common::dc_client(Some("END_LEAK"));
    let json = common::scratch("dc", "end-leak.json");
    let json_s = json.display().to_string();
    let (code, out) = verify(
        &dc,
        &lib,
        &["--seed", "1", "--check", "fault.cleanup", "--json", &json_s],
    );
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let repro = report["checks"][0]["repro"]
        .as_str()
        .expect("a failing fault.cleanup carries a repro");
    let exe = common::compile_repro("dc-end-leak", repro, &[]);
    let run = |lib: &Path| {
        let out = Command::new(&exe)
            .arg(lib)
            .env(SOCKET_ENV, &dc.socket)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&lib);
    assert_eq!(code, 1, "the repro passes on the defect:\n{out}");
    let (code, out) = run(&common::dc_client(None));
    assert_eq!(code, 0, "the repro blames the correct client:\n{out}");
}

/// Piped to a log, the run writes each check's whole line as it is decided, not all at the
/// end. Proven without timing: the client's server accepts nothing, so the run cannot end
/// until the test closes it, and the first line must already be there.
#[test]
fn a_log_gets_each_check_as_it_is_decided() {
    use std::io::{BufRead, BufReader};
    let socket = std::env::temp_dir().join(format!("ntdsb-stall-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let stall = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut child = Command::new(common::worker_exe())
        .args(["run", "--seed", "1", "--lib"])
        .arg(common::dc_client(None))
        .args(["--worker-env", SOCKET_ENV, "--call-timeout-ms", "600000"])
        .args(["--check", "exports.required", "--check", "prepare.ok"])
        .env(SOCKET_ENV, &socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("exports.required "), "{first}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended while its server still held Prepare"
    );
    // The server goes away: Prepare fails with an RPC error, and the run ends.
    drop(stall);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    let _ = std::fs::remove_file(&socket);
    assert_eq!(code, Some(3), "{}", rest.join("\n"));
    let prepare = rest
        .iter()
        .find(|l| l.starts_with("prepare.ok "))
        .unwrap_or_else(|| panic!("{}", rest.join("\n")));
    assert!(
        prepare.contains("inconclusive") && !prepare.contains('…'),
        "{prepare}"
    );
    assert!(rest.iter().any(|l| l.starts_with("verdict: inconclusive")));
}
