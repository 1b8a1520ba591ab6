//! Differences between two libraries, grouped: each distinct (call, state, answer of NEW,
//! answer of OLD) once, with how often it occurred, the shortest example and who breaks a
//! rule; ordered so that a rule the new library breaks comes first. And the baseline of known
//! differences. Pure.

use serde::{Deserialize, Serialize};

/// What makes two differences the same one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// What was called.
    pub call: String,
    /// The state it was called in (a check's program and step, or the model's state).
    pub state: String,
    pub new: String,
    pub old: String,
}

/// What the documentation says of the two answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "breaks", rename_all = "snake_case")]
pub enum Blame {
    /// Both answers are allowed: informational.
    Neither,
    /// The new library's answer breaks `rule`.
    New {
        rule: String,
    },
    /// The old library's answer breaks `rule`.
    Old {
        rule: String,
    },
    Both {
        new_rule: String,
        old_rule: String,
    },
}

impl Blame {
    /// The blame from each side's broken rule, if any.
    pub fn of(new: Option<String>, old: Option<String>) -> Blame {
        match (new, old) {
            (Some(new_rule), Some(old_rule)) => Blame::Both { new_rule, old_rule },
            (Some(rule), None) => Blame::New { rule },
            (None, Some(rule)) => Blame::Old { rule },
            (None, None) => Blame::Neither,
        }
    }

    /// Which comes first: the new library's broken rules, then the old one's, then the rest.
    fn rank(&self) -> u8 {
        match self {
            Blame::New { .. } | Blame::Both { .. } => 0,
            Blame::Old { .. } => 1,
            Blame::Neither => 2,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Blame::Neither => "no rule broken: both answers are allowed where it was seen".into(),
            Blame::New { rule } => format!("NEW breaks a rule: {rule}"),
            Blame::Old { rule } => format!("OLD breaks a rule: {rule}"),
            Blame::Both { new_rule, old_rule } => {
                format!("both break a rule: NEW {new_rule}; OLD {old_rule}")
            }
        }
    }
}

/// One difference as a run saw it.
#[derive(Clone, Debug)]
pub struct Occurrence {
    pub key: Key,
    pub blame: Blame,
    /// The check whose program showed it, or seq.model.
    pub source: String,
    /// The calls up to and including the differing one, described.
    pub example: Vec<String>,
    /// Which sequence of the run it was, for shrinking.
    pub sequence: Option<usize>,
}

/// One distinct difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(flatten)]
    pub key: Key,
    pub blame: Blame,
    /// The checks whose programs showed it, and seq.model, in the order seen.
    pub sources: Vec<String>,
    /// How many programs and sequences showed it.
    pub count: u64,
    /// The shortest example: the calls up to the differing one.
    pub example: Vec<String>,
    /// How the example was shortened and checked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shrink: String,
    /// Listed in the baseline: known, and no reason to fail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub known: bool,
    #[serde(skip)]
    pub sequence: Option<usize>,
}

/// The occurrences grouped by key, in the order that matters: a rule NEW breaks first, then
/// a rule OLD breaks, then allowed differences; within each, first seen first.
pub fn group(occurrences: Vec<Occurrence>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for o in occurrences {
        match groups.iter_mut().find(|g| g.key == o.key) {
            Some(g) => {
                g.count += 1;
                if !g.sources.contains(&o.source) {
                    g.sources.push(o.source);
                }
                if g.blame.rank() > o.blame.rank() {
                    g.blame = o.blame;
                }
                if o.example.len() < g.example.len() {
                    g.example = o.example;
                    g.sequence = o.sequence;
                }
            }
            None => groups.push(Group {
                key: o.key,
                blame: o.blame,
                sources: vec![o.source],
                count: 1,
                example: o.example,
                shrink: String::new(),
                known: false,
                sequence: o.sequence,
            }),
        }
    }
    // Within a rank the shortest example first: the simplest showing of a defect.
    groups.sort_by_key(|g| (g.blame.rank(), g.example.len()));
    groups
}

/// A baseline of known differences, as `--write-baseline` writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub differences: Vec<Key>,
}

/// Marks the groups the baseline knows, and gives the baseline's differences that were not
/// seen: a difference that went away must leave the baseline, or a later one could hide
/// behind it.
pub fn apply_baseline(groups: &mut [Group], known: &Known) -> Vec<Key> {
    for g in groups.iter_mut() {
        g.known = known.differences.contains(&g.key);
    }
    known
        .differences
        .iter()
        .filter(|k| !groups.iter().any(|g| &g.key == *k))
        .cloned()
        .collect()
}

/// The baseline that accepts every difference of `groups`.
pub fn baseline_of(groups: &[Group]) -> Known {
    Known {
        differences: groups.iter().map(|g| g.key.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occ(call: &str, new: &str, blame: Blame, len: usize) -> Occurrence {
        Occurrence {
            key: Key {
                call: call.into(),
                state: "s".into(),
                new: new.into(),
                old: "0".into(),
            },
            blame,
            source: "seq.model".into(),
            example: vec!["x".into(); len],
            sequence: Some(len),
        }
    }

    #[test]
    fn groups_count_keep_the_shortest_and_put_new_rules_first() {
        let rule = || Blame::New {
            rule: "REQ-05".into(),
        };
        let g = group(vec![
            occ("a", "1", Blame::Neither, 3),
            occ("b", "87", rule(), 5),
            occ("a", "1", Blame::Neither, 2),
            occ("c", "87", Blame::Old { rule: "r".into() }, 1),
            occ("b", "87", rule(), 4),
        ]);
        let calls: Vec<&str> = g.iter().map(|g| g.key.call.as_str()).collect();
        assert_eq!(calls, ["b", "c", "a"]);
        let short = group(vec![
            occ("long", "87", rule(), 6),
            occ("short", "87", rule(), 2),
        ]);
        assert_eq!(short[0].key.call, "short");
        assert_eq!(
            (g[0].count, g[0].example.len(), g[0].sequence),
            (2, 4, Some(4))
        );
        assert_eq!((g[2].count, g[2].example.len()), (2, 2));
    }

    #[test]
    fn a_baseline_knows_its_differences_and_names_those_gone() {
        let mut g = group(vec![occ("a", "1", Blame::Neither, 1)]);
        let mut known = baseline_of(&g);
        let gone = Key {
            call: "z".into(),
            state: "s".into(),
            new: "1".into(),
            old: "2".into(),
        };
        known.differences.push(gone.clone());
        assert_eq!(apply_baseline(&mut g, &known), vec![gone]);
        assert!(g[0].known);
        let mut other = group(vec![occ("b", "1", Blame::Neither, 1)]);
        apply_baseline(&mut other, &known);
        assert!(!other[0].known);
    }
}
