//! What the anomaly job's integration tests share: one impossible-travel
//! rule, login events for it, and a run input over one source.

#![allow(dead_code)]

use std::path::Path;

use patrol_job_anomaly::rules::parse_rules;
use patrol_job_anomaly::{RunInput, SourceSpec};

/// One rule: a subject seen in two regions less than 5 minutes apart.
pub const TRAVEL_RULES: &str = r#"
rules:
  - id: impossible-travel
    description: travel
    kind: travel
    within: 5m
    severity: high
"#;

/// A login of `u1` in `region` at `ts`, as an NDJSON line.
pub fn login(ts: &str, region: &str) -> String {
    format!(
        r#"{{"ts":"{ts}","subject":"u1","action":"login","decision":"allow","region":"{region}","tenant":"acme","trace_id":"t-{ts}"}}"#
    )
}

/// A run of [`TRAVEL_RULES`] over `source`, four weeks of history.
pub fn travel_input(source: SourceSpec) -> RunInput {
    RunInput {
        sources: vec![source],
        rules: parse_rules(Path::new("rules.yaml"), TRAVEL_RULES).expect("the rules parse"),
        series: Vec::new(),
        history_ms: 28 * 24 * 3600 * 1000,
        detections_dir: None,
        backtest: None,
        backtesting: false,
        postgres: Default::default(),
        series_cache: Default::default(),
    }
}
