//! The HTML report: self-contained, and shown correctly by a real browser.

mod common;

use ntdsbcli_conform::harness::report::to_html;
use ntdsbcli_conform::harness::worker::LibrarySpec;
use std::path::{Path, PathBuf};
use std::process::Command;

fn failing_report_html() -> (String, usize) {
    let (html, r) = failing_report();
    (html, r.checks.len())
}

fn failing_report() -> (String, ntdsbcli_conform::harness::report::Report) {
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.mutant = Some("end-double-ok".into());
    opts.sequences = 300;
    opts.shrink_budget = std::time::Duration::from_secs(3);
    let r = common::run(&opts);
    (to_html(&r), r)
}

/// The header counts each outcome, and a check id wider than its column breaks at its dots
/// instead of running into the next column (prepare.failed-leaves-nothing at 1280 px).
#[test]
fn html_report_counts_outcomes_and_wraps_long_ids() {
    let (html, r) = failing_report();
    assert!(html.contains(&format!("id=\"counts\">{} checks: <span", r.checks.len())));
    for (o, n) in r.outcome_counts() {
        let o = o.as_str();
        assert!(
            html.contains(&format!(">{n} {o}</span>")),
            "no count of {o}"
        );
    }
    assert!(r
        .outcome_counts()
        .iter()
        .any(|(o, n)| o.is_failure() && *n > 0));
    assert!(html.contains(">prepare.<wbr>failed-leaves-nothing</td>"));
    assert!(
        html.contains(".id{font-family:ui-monospace,monospace;overflow-wrap:anywhere}"),
        "an id cell must be able to wrap"
    );
}

#[test]
fn html_report_is_self_contained() {
    let (html, checks) = failing_report_html();
    assert_eq!(html.matches("<tr class=\"check\"").count(), checks);
    assert!(html.contains("class=\"verdict v-nonconformant\""));
    assert!(html.contains("Copy repro") && html.contains("DsBackupEnd"));
    // No fetches: nothing is loaded from anywhere.
    for needle in [" src=", " href=", "http://", "https://", "@import", "url("] {
        assert!(
            !html.contains(needle),
            "the page refers to something outside itself: {needle}"
        );
    }
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Rendered by a real browser, with the "failing" filter from the address: the verdict, the
/// failing rows and the repro are shown, the passing rows are not.
#[test]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this test"]
fn html_report_in_headless_chromium() {
    let browser = chromium().expect("chromium is installed (apt-get install chromium)");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html");
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let (html, _) = failing_report_html();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}#filter=failing", page.display());
    let out = common::succeeded(headless(&browser, &profile).arg("--dump-dom").arg(&url));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains(">nonconformant</span>"), "verdict not shown");
    let rows: Vec<&str> = dom.split("<tr class=\"check\"").skip(1).collect();
    assert!(!rows.is_empty());
    for row in &rows {
        let failing = row.contains("data-failing=\"1\"");
        let hidden = row.split('>').next().unwrap_or("").contains("hidden");
        assert_eq!(
            failing,
            !hidden,
            "row shown wrongly under the failing filter: {}",
            &row[..row.len().min(160)]
        );
    }
    assert!(dom.contains("Copy repro"), "the repro is not shown");
    let shown = rows
        .iter()
        .filter(|r| r.contains("data-failing=\"1\""))
        .count();
    assert!(
        dom.contains(&format!(">{shown} shown<")),
        "the count of shown rows is wrong"
    );
    // A picture of the page, for the docs when asked for.
    if let Some(png) = std::env::var_os("NTDSBCLI_SCREENSHOT") {
        let st = headless(&browser, &profile)
            .arg(format!("--screenshot={}", PathBuf::from(png).display()))
            .arg("--window-size=1280,1000")
            .arg(&url)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
