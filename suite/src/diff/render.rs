//! The diff report as people read it: the terminal's listing and Markdown. Pure.

use super::engine::DiffReport;
use super::group::Group;

fn side_line(label: &str, s: &super::engine::SideInfo) -> String {
    let mutant = s
        .mutant
        .as_ref()
        .map(|m| format!(" with mutant {m}"))
        .unwrap_or_default();
    format!("  {label}  {}{mutant}  (sha256 {:.12})", s.path, s.sha256)
}

fn summary(r: &DiffReport) -> String {
    let mut s = format!(
        "  compared {} named programs and {} sequences (seed {}), {} calls on each side, in {:.1} s",
        r.programs,
        r.sequences,
        r.seed,
        r.calls,
        r.wall_ms as f64 / 1000.0
    );
    if r.sequences + r.refused < r.planned {
        s.push_str(&format!(
            "; {} of {} sequences ran before the time budget ended the phase",
            r.sequences + r.refused,
            r.planned
        ));
    }
    if r.refused > 0 {
        s.push_str(&format!(
            "; {} sequences left out: a server refused a session",
            r.refused
        ));
    }
    s
}

fn headline(r: &DiffReport) -> String {
    let n = r.differences.len();
    let new_rules = r
        .differences
        .iter()
        .filter(|g| {
            matches!(
                g.blame,
                super::group::Blame::New { .. } | super::group::Blame::Both { .. }
            )
        })
        .count();
    let known = r.differences.iter().filter(|g| g.known).count();
    match n {
        0 => "no differences".into(),
        _ => format!(
            "{n} difference{} ({new_rules} where NEW breaks a rule{})",
            if n == 1 { "" } else { "s" },
            if known > 0 {
                format!(", {known} known from the baseline")
            } else {
                String::new()
            }
        ),
    }
}

/// The listing printed after a diff.
pub fn terminal(r: &DiffReport) -> String {
    let mut out = vec![
        "ntdsbcli-conform diff".to_string(),
        side_line("NEW", &r.new),
        side_line("OLD", &r.old),
        summary(r),
        String::new(),
        headline(r),
    ];
    for (i, g) in r.differences.iter().enumerate() {
        out.push(String::new());
        out.extend(group_lines(i + 1, g));
    }
    for k in &r.gone {
        out.push(format!(
            "  baseline: {} in {} (NEW {}, OLD {}) no longer differs; remove it from the baseline",
            k.call, k.state, k.new, k.old
        ));
    }
    out.join("\n") + "\n"
}

fn group_lines(n: usize, g: &Group) -> Vec<String> {
    let mut out = vec![
        format!(
            " #{n}  {}{}",
            g.blame.describe(),
            if g.known {
                " (known: in the baseline)"
            } else {
                ""
            }
        ),
        format!("     call   {}", g.key.call),
        format!("     state  {}", g.key.state),
        format!("     NEW    {}", g.key.new),
        format!("     OLD    {}", g.key.old),
        format!(
            "     seen   {} time{}, in {}",
            g.count,
            if g.count == 1 { "" } else { "s" },
            g.sources.join(", ")
        ),
    ];
    if !g.example.is_empty() {
        out.push(format!(
            "     shortest example ({} calls):",
            g.example.len()
        ));
        for (i, c) in g.example.iter().enumerate() {
            out.push(format!("       {:>2}. {c}", i + 1));
        }
    }
    if !g.shrink.is_empty() {
        out.push(format!("     {}", g.shrink));
    }
    out
}

/// A difference's columns in the tables: number, call, state, the two answers, how often,
/// and what the documentation says.
fn columns(i: usize, g: &Group) -> [String; 7] {
    [
        (i + 1).to_string(),
        g.key.call.clone(),
        g.key.state.clone(),
        g.key.new.clone(),
        g.key.old.clone(),
        g.count.to_string(),
        format!(
            "{}{}",
            g.blame.describe(),
            if g.known { " (known)" } else { "" }
        ),
    ]
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown: a table of the differences, then each example.
pub fn markdown(r: &DiffReport) -> String {
    let mut out = vec![
        "# ntdsbcli-conform diff".to_string(),
        String::new(),
        format!("- NEW: `{}`", r.new.path),
        format!("- OLD: `{}`", r.old.path),
        format!("- {}", summary(r).trim()),
        String::new(),
        format!("**{}**", headline(r)),
    ];
    if !r.differences.is_empty() {
        out.push(String::new());
        out.push("| # | call | state | NEW | OLD | seen | what the documentation says |".into());
        out.push("|---|---|---|---|---|---|---|".into());
        for (i, g) in r.differences.iter().enumerate() {
            let cells: Vec<String> = columns(i, g).iter().map(|c| cell(c)).collect();
            out.push(format!("| {} |", cells.join(" | ")));
        }
        for (i, g) in r.differences.iter().enumerate() {
            if g.example.is_empty() {
                continue;
            }
            out.push(String::new());
            out.push(format!("## #{} shortest example", i + 1));
            out.push(String::new());
            for (j, c) in g.example.iter().enumerate() {
                out.push(format!("{}. `{}`", j + 1, c));
            }
            if !g.shrink.is_empty() {
                out.push(String::new());
                out.push(g.shrink.clone());
            }
        }
    }
    out.join("\n") + "\n"
}

/// The report as one self-contained HTML page, in the style of `run`'s.
pub fn html(r: &DiffReport) -> String {
    use ntdsbcli_harness::report::{html_escape as esc, HTML_STYLE};
    let mut rows = String::new();
    for (i, g) in r.differences.iter().enumerate() {
        let example: String = g
            .example
            .iter()
            .map(|c| format!("<li><code>{}</code></li>", esc(c)))
            .collect();
        let [n, call, state, new, old, seen, says] = columns(i, g).map(|c| esc(&c));
        rows.push_str(&format!(
            "<tr><td>{n}</td><td><code>{call}</code></td><td>{state}</td><td>{new}</td><td>{old}</td><td>{seen}</td><td class=\"d\">{says}<ol>{example}</ol>{}</td></tr>\n",
            esc(&g.shrink),
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ntdsbcli-conform diff</title><style>{HTML_STYLE}</style></head><body>\n<h1>ntdsbcli-conform diff</h1>\n<p>NEW <code>{}</code><br>OLD <code>{}</code><br>{}</p>\n<h2>{}</h2>\n<table><tr><th>#</th><th>call</th><th>state</th><th>NEW</th><th>OLD</th><th>seen</th><th>what the documentation says, and the shortest example</th></tr>\n{rows}</table>\n</body></html>\n",
        esc(&r.new.path),
        esc(&r.old.path),
        esc(summary(r).trim()),
        esc(&headline(r)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::engine::SideInfo;
    use super::super::group::{Blame, Key};
    use super::*;

    fn report(differences: Vec<Group>) -> DiffReport {
        let side = |p: &str| SideInfo {
            path: p.into(),
            sha256: "ab".repeat(32),
            mutant: None,
            exports: Vec::new(),
        };
        DiffReport {
            tool: "t".into(),
            new: side("new.so"),
            old: side("old.so"),
            seed: 3,
            programs: 40,
            sequences: 100,
            planned: 100,
            calls: 1000,
            refused: 0,
            differences,
            gone: Vec::new(),
            wall_ms: 1500,
        }
    }

    #[test]
    fn nothing_to_list_says_so() {
        let t = terminal(&report(Vec::new()));
        assert!(t.contains("no differences"), "{t}");
        assert!(
            t.contains("40 named programs and 100 sequences (seed 3)"),
            "{t}"
        );
    }

    #[test]
    fn a_difference_shows_both_answers_and_who_breaks_a_rule() {
        let g = Group {
            key: Key {
                call: "DsBackupEnd(NULL)".into(),
                state: "1 live session(s)".into(),
                new: "0 (ERROR_SUCCESS)".into(),
                old: "87 (ERROR_INVALID_PARAMETER)".into(),
            },
            blame: Blame::New {
                rule: "REQ-05".into(),
            },
            sources: vec!["seq.model".into()],
            count: 3,
            example: vec!["DsBackupEnd(NULL)".into()],
            shrink: "shrunk in 2 rounds".into(),
            known: false,
            sequence: None,
        };
        let r = report(vec![g]);
        let t = terminal(&r);
        for want in [
            "1 difference (1 where NEW breaks a rule)",
            "NEW breaks a rule: REQ-05",
            "NEW    0 (ERROR_SUCCESS)",
            "OLD    87 (ERROR_INVALID_PARAMETER)",
            "seen   3 times, in seq.model",
            " 1. DsBackupEnd(NULL)",
        ] {
            assert!(t.contains(want), "{want:?} in\n{t}");
        }
        let h = html(&r);
        assert!(h.contains("<code>DsBackupEnd(NULL)</code>"), "{h}");
        assert!(h.contains("87 (ERROR_INVALID_PARAMETER)"), "{h}");
        let m = markdown(&r);
        assert!(
            m.contains("| 1 | DsBackupEnd(NULL) | 1 live session(s) | 0 (ERROR_SUCCESS) |"),
            "{m}"
        );
    }
}
