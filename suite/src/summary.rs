//! The readable end-of-run table: id, outcome and a one-line detail for each check.

use ntdsbcli_harness::report::Report;

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Width of the id column: the longest check id.
fn id_width() -> usize {
    crate::catalogue::CHECKS
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(10)
}

/// One check's line as it is decided, for a log: id, outcome and the whole detail.
pub fn line(c: &ntdsbcli_harness::report::CheckReport) -> String {
    format!(
        "{:<w$}  {:<12}  {}",
        c.id,
        c.outcome.as_str(),
        c.detail,
        w = id_width()
    )
}

/// The closing line: the verdict, the count of each outcome, the time and the seed.
pub fn verdict_line(r: &Report) -> String {
    format!(
        "verdict: {} in {:.2} s, seed {}\n",
        r.counts_line(),
        r.stats.wall_ms as f64 / 1000.0,
        r.config.seed
    )
}

pub fn table(r: &Report, width: usize) -> String {
    let id_w = r.checks.iter().map(|c| c.id.len()).max().unwrap_or(10);
    let detail_w = width.saturating_sub(id_w + 16).max(30);
    let mut s = String::new();
    for c in &r.checks {
        s.push_str(&format!(
            "{:<id_w$}  {:<12}  {}\n",
            c.id,
            c.outcome.as_str(),
            clip(&c.detail, detail_w)
        ));
    }
    s.push('\n');
    s.push_str(&verdict_line(r));
    s
}
