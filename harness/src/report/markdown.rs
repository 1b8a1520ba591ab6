//! The Markdown report: the checks as a table, rendered from the report model.

use super::Report;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report for people: identity, verdict, one table row per check, then the repros.
pub fn to_markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# ntdsbcli-conform report: {}\n\n",
        r.verdict.as_str()
    ));
    s.push_str(&format!("- library: `{}`\n", r.library.path));
    s.push_str(&format!("- sha256: `{}`\n", r.library.sha256));
    if let Some(v) = &r.library.version {
        s.push_str(&format!("- version resource: {}\n", v.summary()));
    }
    s.push_str(&format!("- exports: {}\n", r.library.exports.len()));
    s.push_str(&format!(
        "- tool: {} {}\n- server: `{}`, seed {}, accept-hresult {}\n\n",
        r.tool.name, r.tool.version, r.config.server, r.config.seed, r.config.accept_hresult
    ));
    s.push_str(&format!("**{}**\n\n", r.counts_line()));
    s.push_str("| check | requirement | strength | outcome | detail |\n|---|---|---|---|---|\n");
    for c in &r.checks {
        s.push_str(&format!(
            "| `{}` | {} | {} | **{}** | {} |\n",
            c.id,
            c.requirement,
            c.strength.as_str(),
            c.outcome.as_str(),
            cell(&c.detail)
        ));
    }
    for c in r.checks.iter().filter(|c| c.repro.is_some()) {
        s.push_str(&format!(
            "\n## Repro for `{}`\n\n```c\n{}\n```\n",
            c.id,
            c.repro.as_deref().unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "\n{} checks, {} calls, {} ms\n",
        r.checks.len(),
        r.stats.calls,
        r.stats.wall_ms
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::super::model::{assert_has, sample};
    use super::*;

    /// The strength is spelled as in the JSON, and the outcome counts open the report.
    #[test]
    fn strength_as_json_spells_it_and_counts_first() {
        let m = to_markdown(&sample());
        assert_has(
            &m,
            &[
                "| `end.ok` | REQ-02 | documented | **pass** |",
                "| `end.double` | REQ-06 | inferred | **fail** |",
                "**nonconformant (4 checks: 2 pass, 1 fail, 1 skip)**",
            ],
            &["Documented", "Inferred"],
        );
    }
}
