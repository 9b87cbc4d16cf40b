//! The SARIF gate over real SARIF 2.1.0 logs from CodeQL, Semgrep, Trivy,
//! Grype, gitleaks, ESLint, the SARIF SDK's converters and test files
//! (vendored with their licences, tests/data/sarif/README.md), plus one
//! hand-written file of boundary cases. Each file's verdict and counted
//! results are checked against `expected.json`, written by an independent
//! Python implementation of the same rules (`reference_gate.py`).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use patrol_job_evidence_audit::sarif::{gate, Severity};
use serde_json::Value;

const LEVELS: [Severity; 2] = [Severity::Critical, Severity::High];

fn data() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sarif"))
}

/// (rule, location, level, score) of each counted result.
type Row = (Option<String>, Option<String>, String, Option<f64>);

#[test]
fn every_vendored_log_gets_the_reference_verdict_and_counted_results() {
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(data().join("expected.json")).unwrap())
            .unwrap();
    assert!(expected.len() >= 10, "{} files", expected.len());
    for (file, want) in &expected {
        let bytes = std::fs::read(data().join(file)).unwrap();
        let verdict = gate(&bytes, &LEVELS).unwrap_or_else(|err| panic!("{file}: {err}"));
        let got: Vec<Row> = verdict
            .counted
            .iter()
            .map(|c| (c.rule.clone(), c.location.clone(), c.level.clone(), c.score))
            .collect();
        let wanted: Vec<Row> = want["counted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["rule"].as_str().map(str::to_string),
                    c["location"].as_str().map(str::to_string),
                    c["level"].as_str().unwrap().to_string(),
                    c["severity"].as_f64(),
                )
            })
            .collect();
        assert_eq!(got, wanted, "{file}");
        assert_eq!(verdict.pass(), want["pass"].as_bool().unwrap(), "{file}");
    }
}

#[test]
fn the_rules_each_vendored_file_exercises_hold() {
    let verdict = |file: &str| gate(&std::fs::read(data().join(file)).unwrap(), &LEVELS).unwrap();
    // A real UTF-8 byte order mark is read past.
    let bom = std::fs::read(data().join("sarif-sdk-elfie-arriba-utf8-bom.sarif")).unwrap();
    assert!(bom.starts_with(b"\xEF\xBB\xBF"));
    assert!(verdict("sarif-sdk-elfie-arriba-utf8-bom.sarif").results > 0);
    // CodeQL: rules only in a tool extension, found by index: 8.8 is high.
    let codeql = verdict("codeql-demo-python.sarif");
    assert_eq!(codeql.counted.len(), 2);
    assert!(codeql
        .counted
        .iter()
        .all(|c| c.score == Some(8.8) && c.severity == Severity::High));
    // Accepted suppressions do not count; rejected or under review do.
    let suppressions = verdict("sarif-tutorials-suppressions.sarif");
    assert!(suppressions.suppressed > 0 && suppressions.suppressed < suppressions.results);
    // Exactly 9.0 is critical, exactly 7 (a string) high.
    let nessus = verdict("sarif-sdk-nessus-two-runs.sarif");
    assert_eq!(
        nessus
            .counted
            .iter()
            .map(|c| (c.score, c.severity, c.run))
            .collect::<Vec<_>>(),
        vec![(Some(9.0), Severity::Critical, 1)]
    );
    let heimdall = verdict("sarif-sdk-hdf-heimdall.sarif");
    assert!(heimdall
        .counted
        .iter()
        .any(|c| c.score == Some(7.0) && c.severity == Severity::High));
    // An invocation's override turns an error rule into a note.
    let overrides = verdict("sarif-sdk-invocation-overrides.sarif");
    assert_eq!(overrides.counted.len(), 1);
}

#[test]
fn levels_choose_what_counts_and_a_non_sarif_file_is_an_error_not_clean() {
    let bytes = std::fs::read(data().join("boundaries.sarif")).unwrap();
    let all = gate(&bytes, &LEVELS).unwrap();
    let critical = gate(&bytes, &[Severity::Critical]).unwrap();
    assert!(!critical.counted.is_empty() && critical.counted.len() < all.counted.len());
    assert!(critical
        .counted
        .iter()
        .all(|c| c.score.is_some_and(|s| s >= 9.0)));
    assert!(gate(b"{\"version\":\"2.1.0\"}", &LEVELS)
        .unwrap_err()
        .contains("no `runs`"));
    assert!(gate(b"not json", &LEVELS).is_err());
    assert!(gate(b"{\"version\":\"1.0.0\",\"runs\":[]}", &LEVELS).is_err());
}

#[test]
fn a_run_that_did_not_finish_is_an_error_and_a_nan_score_is_unscored() {
    let no_results = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}}}]}"#;
    assert!(gate(no_results, &LEVELS)
        .unwrap_err()
        .contains("no `results`"));
    let null_results =
        br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}},"results":null}]}"#;
    assert!(gate(null_results, &LEVELS).is_err());
    let crashed = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}},"results":[],
        "invocations":[{"executionSuccessful":false}]}]}"#;
    assert!(gate(crashed, &LEVELS)
        .unwrap_err()
        .contains("did not execute"));
    // NaN is no score: the error level decides, and counts.
    let nan = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t","rules":[
        {"id":"R","properties":{"security-severity":"NaN"}}]}},
        "results":[{"ruleId":"R","level":"error","message":{"text":"x"}}]}]}"#;
    let verdict = gate(nan, &LEVELS).unwrap();
    assert_eq!(verdict.counted.len(), 1);
    assert_eq!(
        (verdict.counted[0].score, verdict.counted[0].severity),
        (None, Severity::High)
    );
}
