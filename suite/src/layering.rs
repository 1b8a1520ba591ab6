//! The module graph of both crates, read from their sources, and the test that keeps it free
//! of cycles: each module depends on the ones below it only. `cargo test --lib layering --
//! --nocapture` prints the graph. Test-only: it reads files and judges no library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module (its path in the crate, cut to `depth` parts) → the modules of the same crate it
/// names, through `crate::` or `super::` paths outside comments and unit tests.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module path of a source file, from its path below `src`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| ["mod", "lib", "main"].contains(&l.as_str()))
    {
        parts.pop();
    }
    parts
}

/// The source with comments and the unit-test module taken out.
fn code_of(source: &str) -> String {
    let body = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    body.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file's code names from `crate::` or `super::`, each as module parts from the
/// crate root (`me` is the file's module); a `{...}` group gives one path per name in it.
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (kind, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
    ] {
        for (at, _) in code.match_indices(kind) {
            // `$crate::` and `ntdsbcli_harness::crate` are other crates' paths.
            if code[..at].ends_with(|c: char| c == '$' || c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + kind.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let prefix: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let prefix = [base.clone(), prefix].concat();
            match rest[end..].strip_prefix('{') {
                Some(group) => {
                    let inner = group.split('}').next().unwrap_or_default();
                    for item in inner.split(',') {
                        let first = item.trim().split("::").next().unwrap_or_default();
                        if !first.is_empty() && first != "self" {
                            out.push([prefix.clone(), vec![first.to_string()]].concat());
                        }
                    }
                    out.push(prefix);
                }
                None => out.push(prefix),
            }
        }
    }
    out
}

/// The graph of the crate whose sources are under `src`, modules cut to `depth` parts.
fn graph(src: &Path, depth: usize) -> Graph {
    let mut files = Vec::new();
    walk(src, &mut files);
    let cut = |m: &[String]| m[..m.len().min(depth)].join("::");
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| cut(&module_of(f.strip_prefix(src).expect("below src"))))
        .collect();
    let mut g = Graph::new();
    for f in &files {
        let me = module_of(f.strip_prefix(src).expect("below src"));
        let from = cut(&me);
        let code = code_of(&std::fs::read_to_string(f).expect("a source file"));
        let entry = g.entry(from.clone()).or_default();
        for path in named_paths(&code, &me) {
            // The longest prefix that is a module (an item's name is not one).
            let to = (1..=path.len().min(depth))
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(to) = to.filter(|t| *t != from && !from.is_empty() && !t.is_empty()) {
                entry.insert(to);
            }
        }
    }
    g
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The strongly connected parts of more than one module: each a cycle of dependence.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Which modules each one reaches; a cycle is a set that reach each other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (m, r) in &reached {
        if !r.contains(*m) || out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let part: Vec<String> = r
            .iter()
            .filter(|n| reached.get(n).is_some_and(|back| back.contains(*m)))
            .cloned()
            .collect();
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(m: &str) -> Vec<String> {
        m.split("::").map(str::to_string).collect()
    }

    #[test]
    fn paths_are_read_from_crate_and_super_and_groups() {
        let code = code_of(
            "use crate::calls::{end_value, free_value};\nuse super::{layout, line::Touch};\n// crate::not::this\nfn f() { crate::sys::no_memory(); $crate::store::Store; }\n#[cfg(test)]\nmod tests { use crate::worker; }\n",
        );
        let me = parts("pageheap::heap");
        let got = named_paths(&code, &me);
        let want: Vec<Vec<String>> = [
            "calls::end_value",
            "calls::free_value",
            "calls",
            "sys::no_memory",
            "pageheap::layout",
            "pageheap::line",
            "pageheap",
        ]
        .iter()
        .map(|p| parts(p))
        .collect();
        for w in &want {
            assert!(got.contains(w), "{w:?} missing from {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }

    #[test]
    fn a_cycle_is_found_and_a_chain_is_not() {
        let g = |edges: &[(&str, &str)]| {
            let mut g = Graph::new();
            for (a, b) in edges {
                g.entry(a.to_string()).or_default().insert(b.to_string());
                g.entry(b.to_string()).or_default();
            }
            g
        };
        assert!(cycles(&g(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(
            cycles(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            vec![vec!["a".to_string(), "b".into(), "c".into()]]
        );
    }

    /// Both crates, their modules and each module's own submodules, depend one way only.
    #[test]
    fn the_module_graph_has_no_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for krate in ["harness", "suite"] {
            let g = graph(&root.join(krate).join("src"), 2);
            println!("{krate}:");
            for (m, to) in g.iter().filter(|(m, _)| !m.is_empty()) {
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                println!("  {m} -> {}", to.join(", "));
            }
            assert!(g.len() > 20, "{krate}: only {} modules read", g.len());
            assert_eq!(
                cycles(&g),
                Vec::<Vec<String>>::new(),
                "{krate}: modules that depend on each other"
            );
        }
    }
}
