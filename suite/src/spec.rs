//! The rules of docs/spec.md, read from the file itself so that a failing check, `explain` and
//! the spec can never say different things: each requirement (REQ-xx), ambiguity (A-x) and
//! design decision (design §N) with its first sentence.

const SPEC: &str = include_str!("../../docs/spec.md");

/// The first sentence of a requirement or ambiguity of docs/spec.md ("REQ-25", "A-1"), or the
/// title of a design decision ("design §4": its section holds several rules).
pub fn rule_line(name: &str) -> Option<String> {
    if let Some(n) = name.strip_prefix("design §") {
        let key = format!("**Design §{n}: ");
        let at = SPEC.find(&key)? + key.len();
        let title = SPEC[at..].split_once(".**")?.0;
        return Some(format!("the design decision on {title}"));
    }
    let key = format!("**{name}** ");
    let at = SPEC.find(&key)? + key.len();
    let rest = &SPEC[at..];
    // Plain text: the spec's Markdown code marks would only clutter a report's detail.
    let para = rest
        .split("\n\n")
        .next()?
        .replace('\n', " ")
        .replace('`', "");
    let end = sentence_end(&para);
    Some(para[..end].trim().to_string())
}

/// Where a paragraph's first sentence ends: at a full stop followed by a space and a capital
/// letter or a `*strength*`, or the paragraph's end.
fn sentence_end(para: &str) -> usize {
    let b = para.as_bytes();
    for i in 0..b.len() {
        if (b[i] == b'.' || b[i] == b'?') && b.get(i + 1) == Some(&b' ') {
            let next = b.get(i + 2).copied().unwrap_or(b' ');
            if next.is_ascii_uppercase() || next == b'*' {
                return i + 1;
            }
        }
    }
    para.len()
}

/// Every rule a text cites, in order, once each: "REQ-21..23" is REQ-21, REQ-22 and REQ-23.
pub fn cited(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let b = text.as_bytes();
    let digits = |from: usize| {
        let n = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        (text[from..from + n].parse::<u32>().ok(), from + n)
    };
    let mut i = 0;
    while i < b.len() {
        if text[i..].starts_with("REQ-") {
            let (Some(first), mut j) = digits(i + 4) else {
                i += 4;
                continue;
            };
            let mut last = first;
            if text[j..].starts_with("..") {
                if let (Some(l), k) = digits(j + 2) {
                    last = l;
                    j = k;
                }
            }
            for n in first..=last.max(first) {
                push(format!("REQ-{n:02}"));
            }
            i = j;
        } else if text[i..].starts_with("design §") {
            let at = i + "design §".len();
            if let (Some(n), j) = digits(at) {
                push(format!("design §{n}"));
                i = j;
            } else {
                i = at;
            }
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// A failing check's detail with the rule it breaks: the first rule the detail cites, else the
/// rules of the check's requirement (at most two), each with its first sentence.
pub fn name_rule(detail: &str, requirement: &str) -> String {
    if detail.contains(" rule broken: ") {
        return detail.to_string();
    }
    let own = cited(detail);
    let rules: Vec<String> = match own.first() {
        Some(r) => vec![r.clone()],
        None => cited(requirement).into_iter().take(2).collect(),
    };
    let lines: Vec<String> = rules
        .iter()
        .filter_map(|r| rule_line(r).map(|l| format!("{r}: {}", l.trim_end_matches('.'))))
        .collect();
    if lines.is_empty() {
        return detail.to_string();
    }
    format!("{detail}; rule broken: {} (docs/spec.md)", lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("REQ-25", Some("A remote or non-DC server gives RPC_S_INVALID_BINDING; an unknown, non-DC or badly formed name gives hrCouldNotConnect."))]
    #[case(
        "REQ-02",
        Some("End on a handle from a successful Prepare returns S_OK (0).")
    )]
    #[case("design §4", Some("the design decision on judging answers"))]
    #[case("design §9", Some("the design decision on isolation"))]
    #[case("A-1", Some("Is \"ERROR_INVALID_PARAMETER\"…"))]
    #[case("REQ-16", Some("A failed Prepare leaves *phbc NULL…"))]
    #[case("REQ-99", None)]
    /// `want` is the whole line, or its start when it ends in "…".
    fn a_requirement_reads_as_its_first_sentence(#[case] cite: &str, #[case] want: Option<&str>) {
        let line = rule_line(cite);
        match want.map(|w| (w.strip_suffix('…'), w)) {
            Some((Some(start), _)) => assert!(
                line.as_deref().is_some_and(|l| l.starts_with(start)),
                "{cite}: {line:?}"
            ),
            Some((None, whole)) => assert_eq!(line.as_deref(), Some(whole)),
            None => assert_eq!(line, None),
        }
    }

    #[test]
    fn citations_expand_ranges_and_keep_order() {
        assert_eq!(
            cited("REQ-21..23 and REQ-07, REQ-09; design §5; REQ-07 again"),
            [
                "REQ-21",
                "REQ-22",
                "REQ-23",
                "REQ-07",
                "REQ-09",
                "design §5"
            ]
        );
        assert!(cited("all").is_empty());
    }

    #[test]
    fn a_failure_names_the_rule_it_cites_else_its_checks() {
        let d = name_rule(
            "an unknown server name must give hrCouldNotConnect (REQ-25)",
            "REQ-16, REQ-27",
        );
        assert!(d.contains("rule broken: REQ-25: A remote"), "{d}");
        assert!(!d.contains("REQ-16:"), "{d}");
        let d = name_rule("End returned 1", "REQ-02");
        assert!(d.ends_with("rule broken: REQ-02: End on a handle from a successful Prepare returns S_OK (0) (docs/spec.md)"), "{d}");
        // Named once, however often the detail passes through.
        assert_eq!(name_rule(&d, "REQ-02"), d);
        // A requirement with no rule in the spec ("all") leaves the detail as it is.
        assert_eq!(name_rule("x", "all"), "x");
    }

    /// Every relative link of README.md and docs/*.md names a file of the repository, and
    /// every #anchor into docs/spec.md is one of its headings or rule anchors.
    #[test]
    fn every_relative_link_resolves_inside_the_repository() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let docs = [
            ("README.md", include_str!("../../README.md")),
            ("docs/rules.md", include_str!("../../docs/rules.md")),
            ("docs/spec.md", SPEC),
        ];
        let anchors: Vec<String> = SPEC
            .lines()
            .filter_map(|l| {
                if let Some(h) = l.strip_prefix("## ") {
                    // GitHub's anchor of a heading: lower case, punctuation dropped, '-' for ' '.
                    let a: String = h
                        .to_lowercase()
                        .chars()
                        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                        .map(|c| if c == ' ' { '-' } else { c })
                        .collect();
                    return Some(a);
                }
                let id = l.strip_prefix("<a id=\"")?;
                Some(id.split('"').next()?.to_string())
            })
            .collect();
        let mut n = 0;
        for (name, text) in docs {
            let dir = root.join(name).parent().unwrap().to_path_buf();
            for link in text.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or("");
                if target.starts_with("http") || target.is_empty() {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    root.join(name)
                } else {
                    dir.join(file)
                };
                assert!(
                    path.exists(),
                    "{name} links to {target}, which is not in the repository"
                );
                if !anchor.is_empty() && path.ends_with("spec.md") {
                    assert!(
                        anchors.iter().any(|a| a == anchor),
                        "{name} links to {target}: no such anchor"
                    );
                }
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} links found");
    }

    /// Every file of the repository under `dir` (its build output left out), as paths from
    /// `root` with '/' between parts.
    fn tree(root: &std::path::Path, dir: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(format!("{path}/"));
                tree(root, &path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// Every file, folder and module ARCHITECTURE.md names in backticks exists: a path (one
    /// with a '/' or a file's extension) ends some path of the repository, and a module path
    /// from `harness::` or `suite::` names a module file or folder at least in its first part.
    #[test]
    fn architecture_names_only_what_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = include_str!("../../ARCHITECTURE.md");
        let mut files = Vec::new();
        tree(&root, "", &mut files);
        let is_module = |dir: &str, seg: &str| {
            let base = root.join(dir).join(seg);
            base.with_extension("rs").is_file() || base.is_dir()
        };
        let (mut paths, mut modules) = (0, 0);
        let mut missing = Vec::new();
        for name in text.split('`').skip(1).step_by(2) {
            if name.contains(['<', '*', ' ', '(']) {
                continue;
            }
            if let Some((krate, rest)) = name
                .split_once("::")
                .filter(|(k, _)| ["harness", "suite"].contains(k))
            {
                modules += 1;
                let mut dir = format!("{krate}/src");
                let segs: Vec<&str> = rest.split("::").collect();
                if !is_module(&dir, segs[0]) {
                    missing.push(name);
                    continue;
                }
                for seg in segs {
                    if !is_module(&dir, seg) {
                        break;
                    }
                    dir = format!("{dir}/{seg}");
                }
                continue;
            }
            let ext = name.rsplit_once('.').map(|(_, e)| e);
            if !(name.contains('/')
                || matches!(ext, Some("rs" | "c" | "h" | "cpp" | "md" | "json")))
            {
                continue;
            }
            paths += 1;
            let found = files.iter().any(|f| {
                let f = f.strip_suffix('/').unwrap_or(f);
                let name = name.strip_suffix('/').unwrap_or(name);
                f == name || f.ends_with(&format!("/{name}"))
            });
            if !found {
                missing.push(name);
            }
        }
        assert!(
            missing.is_empty(),
            "ARCHITECTURE.md names what is not there: {missing:?}"
        );
        assert!(
            paths >= 30 && modules >= 20,
            "only {paths} paths and {modules} modules found"
        );
    }

    /// Every rule that a check, README.md or docs/rules.md cites is in docs/spec.md, and none
    /// of them points at a file outside the repository.
    #[test]
    fn every_cited_rule_resolves_inside_the_repository() {
        let readme = include_str!("../../README.md");
        let rules = include_str!("../../docs/rules.md");
        let mut texts: Vec<(String, String)> = vec![
            ("README.md".into(), readme.into()),
            ("docs/rules.md".into(), rules.into()),
        ];
        for c in crate::catalogue::CHECKS {
            let (source, conforming) = (c.source, c.conforming);
            texts.push((
                format!("explain {}", c.id),
                format!("{} {source} {conforming}", c.requirement),
            ));
        }
        for (name, text) in &texts {
            for r in cited(text) {
                assert!(
                    rule_line(&r).is_some(),
                    "{name} cites {r}, which docs/spec.md lacks"
                );
            }
            for a in ["A-1", "A-2", "A-3", "A-4", "A-5", "A-6", "A-7"] {
                if text.contains(a) {
                    assert!(rule_line(a).is_some(), "{name} cites {a}");
                }
            }
            for outside in ["facts.md", "design.md"] {
                assert!(!text.contains(outside), "{name} points at {outside}");
            }
        }
    }
}
