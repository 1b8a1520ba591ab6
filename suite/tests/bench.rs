//! `ntdsbcli-conform bench`: every way runs in each round, and each figure is a median of the
//! rounds with its range.

mod common;

use std::process::Command;

#[test]
fn every_way_is_timed_in_every_round_and_the_ratios_are_medians() {
    let out = Command::new(common::worker_exe())
        .args(["bench", "--sequences", "20", "--rounds", "3"])
        .output()
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("20 sequences,") && text.contains(", 3 rounds"),
        "{text}"
    );
    let ways: Vec<&str> = text.lines().filter(|l| l.starts_with('(')).collect();
    let names: Vec<&str> = ways.iter().map(|l| &l[..3]).collect();
    let mut want = vec!["(a)", "(b)"];
    if cfg!(unix) {
        want.push("(c)");
    }
    want.extend(["(d)", "(e)", "(f)"]);
    assert_eq!(names, want, "{text}");
    for l in &ways {
        // sequences, median rate, its range, median ms: the range holds the median.
        let cols: Vec<&str> = l.split_whitespace().rev().take(4).collect();
        let (lo, hi) = cols[1].split_once('-').expect("a min-max range");
        let median: f64 = cols[2].parse().unwrap();
        let (lo, hi): (f64, f64) = (lo.parse().unwrap(), hi.parse().unwrap());
        assert!(lo <= median && median <= hi, "{l}");
    }
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("ratio isolated/in-process = ") && last.contains("(rounds "),
        "{last}"
    );
}
