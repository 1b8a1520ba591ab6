//! Baselines through the CLI: a baseline written from one run makes the same run exit 0; one
//! more or one fewer failing check exits 1 and names it.

mod common;

use std::path::PathBuf;
use std::process::Command;

const RUN: [&str; 7] = [
    "run",
    "--seed",
    "3",
    "--sequences",
    "200",
    "--shrink-budget-ms",
    "2000",
];

fn cli(args: &[&str]) -> (i32, String) {
    let r = common::cli_with(&RUN, |c| c.args(args));
    (r.code, r.stdout)
}

fn path(name: &str) -> PathBuf {
    common::scratch("baseline", name)
}

#[test]
fn baseline_gates_on_any_difference() {
    let base = path("race.txt");
    let b = base.to_str().unwrap();
    let (code, _) = cli(&["--mutant", "end-race", "--write-baseline", b]);
    assert_eq!(code, 1, "the mutant itself is nonconformant");
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("end.concurrent") && l.contains(" fail ")),
        "{text}"
    );

    let (code, out) = cli(&["--mutant", "end-race", "--baseline", b]);
    assert_eq!(code, 0, "an identical run matches its baseline: {out}");

    let (code, out) = cli(&["--baseline", b]);
    assert_eq!(code, 1, "a fixed check must leave the baseline: {out}");
    assert!(out.contains("end.concurrent: newly passing"), "{out}");

    let (code, out) = cli(&["--mutant", "end-stays-usable", "--baseline", b]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("end.invalidates: newly failing"), "{out}");
}

#[test]
fn bad_baseline_is_bad_input() {
    let bad = path("bad.txt");
    std::fs::write(&bad, "end.null sometimes\n").unwrap();
    let out = Command::new(common::worker_exe())
        .args(["run", "--baseline"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown outcome \"sometimes\""), "{err}");
}

#[test]
fn shards_merged_equal_the_full_run() {
    let full = path("full.json");
    let (s1, s2, merged) = (path("s1.json"), path("s2.json"), path("merged.json"));
    for mutant in [None, Some("end-race")] {
        let m: Vec<&str> = mutant.map(|m| vec!["--mutant", m]).unwrap_or_default();
        let run = |extra: &[&str]| cli(&[m.as_slice(), extra].concat());
        run(&["--json", full.to_str().unwrap()]);
        run(&["--partition", "1/2", "--json", s1.to_str().unwrap()]);
        run(&["--partition", "2/2", "--json", s2.to_str().unwrap()]);
        let st = Command::new(common::worker_exe())
            .args(["merge", "--json"])
            .args([&merged, &s1, &s2])
            .output()
            .unwrap();
        let expected = if mutant.is_some() { 1 } else { 0 };
        assert_eq!(st.status.code(), Some(expected), "{mutant:?}");
        let outcomes = |p: &PathBuf| -> Vec<(String, String)> {
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap().to_string(),
                        c["outcome"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(outcomes(&full), outcomes(&merged), "{mutant:?}");
        assert!(
            outcomes(&s1).len() < outcomes(&full).len(),
            "a shard runs a share"
        );
    }
}

#[test]
fn credentials_go_through_set_auth_identity_and_never_into_a_report() {
    // Without credentials every Prepare is denied: an environment problem, not a defect.
    let (code, out) = cli(&["--mutant", "needs-credentials"]);
    assert_eq!(code, 3, "inconclusive: {out}");
    assert!(out.contains("pass credentials"), "{out}");

    let json = path("creds.json");
    let md = path("creds.md");
    let xml = path("creds.xml");
    let out = Command::new(common::worker_exe())
        .args([
            "run",
            "--seed",
            "3",
            "--sequences",
            "200",
            "--mutant",
            "needs-credentials",
        ])
        .args([
            "--user",
            "backup",
            "--domain",
            "CORP",
            "--password-env",
            "NTDSB_TEST_PASSWORD",
        ])
        .args([
            "--json",
            json.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ])
        .args(["--junit", xml.to_str().unwrap()])
        .env("NTDSB_TEST_PASSWORD", "s3cret-Pa55word")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for p in [&json, &md, &xml] {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            !text.contains("s3cret-Pa55word"),
            "the password is in {}",
            p.display()
        );
    }
    assert!(std::fs::read_to_string(&json)
        .unwrap()
        .contains(r#""user": "CORP\\backup""#));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}
