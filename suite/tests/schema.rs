//! reports/schema.json: generated from the report's types, and every report the tool writes
//! (each snapshot, a fresh run, a merged one) is valid against it.

mod common;

use ntdsbcli_conform::harness::report::{schema_json, Report};
use ntdsbcli_conform::harness::worker::LibrarySpec;
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&schema_json()).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_schema_file_is_the_one_the_types_give() {
    let file = std::fs::read_to_string(common::repo_root().join("reports/schema.json")).unwrap();
    assert!(
        file == schema_json(),
        "reports/schema.json is stale: run `cargo run --release -- schema > reports/schema.json`"
    );
}

/// A snapshot's report, with the placeholders of its redacted numbers put back as numbers.
fn snapshot_report(text: &str) -> Value {
    let json = text.splitn(3, "---\n").nth(2).expect("an insta header");
    let mut doc: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    fn unredact(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let number = matches!(
                        k.as_str(),
                        "size" | "wall_ms" | "ms" | "calls" | "sequences" | "workers" | "done"
                    );
                    if number && x.as_str().is_some_and(|s| s.starts_with('[')) {
                        *x = Value::from(0);
                    } else {
                        unredact(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(unredact),
            _ => {}
        }
    }
    unredact(&mut doc);
    doc
}

#[test]
fn every_snapshot_report_is_valid() {
    let v = validator();
    let dir = common::repo_root().join("reports/snapshots");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snap") {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc = snapshot_report(&text);
            if doc.get("schema").is_none() {
                continue; // not a whole report
            }
            let errs = errors(&v, &doc);
            assert!(errs.is_empty(), "{}: {errs:?}", p.display());
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} report snapshots found");
}

#[test]
fn a_fresh_report_is_valid_and_a_broken_one_is_not() {
    let v = validator();
    let mut opts = common::options(LibrarySpec::Embedded);
    opts.mutant = Some("end-double-ok".into());
    opts.sequences = 200;
    opts.shrink_budget = std::time::Duration::from_secs(3);
    let r: Report = common::run(&opts);
    assert!(r.checks.iter().any(|c| c.repro.is_some() && c.ms.is_some()));
    let doc = serde_json::to_value(&r).unwrap();
    let errs = errors(&v, &doc);
    assert!(errs.is_empty(), "{errs:?}");
    // The schema is not vacuous: a misspelled outcome and a missing field are refused.
    let mut bad = doc.clone();
    bad["checks"][0]["outcome"] = Value::from("passed");
    assert!(!errors(&v, &bad).is_empty());
    let mut bad = doc;
    bad.as_object_mut().unwrap().remove("verdict");
    assert!(!errors(&v, &bad).is_empty());
}
