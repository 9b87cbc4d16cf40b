//! The job's pipeline on small hand-made histories: reading (bad rows
//! counted, never fatal), aggregation by polars, travel, episodes and the
//! run-to-run reporting of findings.

use std::path::Path;

use patrol_job_anomaly::aggregate::Aggregator;
use patrol_job_anomaly::input::{latest_plausible, read_files, read_ndjson};
use patrol_job_anomaly::rules::parse_rules;
use patrol_job_anomaly::series::{group_series, travel_hops, Range};

/// Events after this are in the future: a day after 2026-11-03, the day
/// these histories are read.
const LATEST: i64 = 1_793_750_400_000;

/// `lines` read as one NDJSON source into an aggregation of `rules`.
fn aggregated(rules: &[patrol_job_anomaly::rules::Rule], lines: &[String]) -> Aggregator {
    let mut aggregator = Aggregator::new(rules.to_vec());
    read_ndjson(
        "x",
        std::io::Cursor::new(lines.join("\n")),
        LATEST,
        &mut aggregator,
    )
    .expect("the lines are read");
    aggregator
}

fn event(ts: &str, subject: &str, action: &str, region: &str, tenant: &str) -> String {
    format!(
        r#"{{"ts":"{ts}","subject":"{subject}","action":"{action}","decision":"allow","region":"{region}","tenant":"{tenant}","trace_id":"t-{subject}-{ts}"}}"#
    )
}

const RULES: &str = r#"
rules:
  - id: export-spike
    description: exports
    kind: rate
    match: { action: "export.*" }
    group_by: [tenant, region]
    window: 10m
    severity: high
  - id: impossible-travel
    description: travel
    kind: travel
    within: 5m
    severity: high
"#;

#[test]
fn bad_lines_are_counted_with_their_line_and_reason_and_the_rest_is_read() {
    let lines = [
        event("2026-11-02T10:00:00Z", "u1", "read", "eu", "acme"),
        "not json at all".to_string(),
        r#"{"ts":"yesterday","subject":"u1","action":"read","decision":"allow","region":"eu","tenant":"acme"}"#.to_string(),
        r#"{"ts":"2026-11-02T10:00:01Z","subject":"u1","decision":"allow","region":"eu","tenant":"acme"}"#.to_string(),
        r#"{"ts":"2026-11-02T10:00:0"#.to_string(),
        event("2026-11-02T10:00:02Z", "u2", "export.csv", "eu", "acme"),
    ];
    let text = lines.join("\n");
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let mut aggregator = Aggregator::new(rules);
    let stats = read_ndjson(
        "audit.ndjson",
        std::io::Cursor::new(text),
        LATEST,
        &mut aggregator,
    )
    .unwrap();
    assert_eq!(stats.events, 2);
    assert_eq!(stats.malformed, 4);
    assert!(
        stats.samples[0].starts_with("audit.ndjson:2: not a JSON object"),
        "{:?}",
        stats.samples
    );
    assert!(stats.samples[1].contains(":3: ts"), "{:?}", stats.samples);
    assert!(
        stats.samples[2].contains(":4: missing action"),
        "{:?}",
        stats.samples
    );
    assert!(
        stats.samples[3].contains(":5: not a JSON object"),
        "{:?}",
        stats.samples
    );
    assert_eq!(aggregator.events, 2);
}

#[test]
fn csv_and_parquet_inputs_count_bad_rows_too() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "ts,subject,action,decision,region,tenant,trace_id\n\
        2026-11-02T10:00:00Z,u1,export.csv,allow,eu,acme,t1\n\
        garbage,u1,export.csv,allow,eu,acme,t2\n\
        2026-11-02T10:01:00Z,,export.csv,allow,eu,acme,t3\n\
        2026-11-02T10:02:00Z,u2,export.api,deny,eu,acme,t4\n";
    std::fs::write(dir.path().join("a.csv"), csv).unwrap();
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let mut aggregator = Aggregator::new(rules.clone());
    let stats = read_files(dir.path(), LATEST, &mut aggregator).unwrap();
    assert_eq!((stats.events, stats.malformed), (2, 2), "{stats:?}");
    assert!(
        stats.samples.iter().any(|s| s.contains("row 2: ts")),
        "{:?}",
        stats.samples
    );
    assert!(
        stats
            .samples
            .iter()
            .any(|s| s.contains("row 3: missing subject")),
        "{:?}",
        stats.samples
    );
    let (from, newest) = aggregator.span.unwrap();
    let tables = aggregator.finish().unwrap();
    // The newest event is 10:02; a read at 10:10 closes the first bucket.
    let range = Range {
        from,
        newest: newest + 8 * 60_000,
    };
    let series = group_series(&rules[0], &tables[0], range).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0].points[0].value, 2.0,
        "both exports fall in one 10m bucket"
    );
}

#[test]
fn rate_series_have_every_bucket_with_zeros_and_skip_the_one_still_filling() {
    // Exports at 10:00 (2), none 10:10–10:30, one at 10:41, and a read at
    // 10:55 that makes 10:50 the bucket still filling.
    let lines = [
        event("2026-11-02T10:00:00Z", "u1", "export.csv", "eu", "acme"),
        event("2026-11-02T10:09:59Z", "u2", "export.api", "eu", "acme"),
        event("2026-11-02T10:41:00Z", "u1", "export.csv", "eu", "acme"),
        event("2026-11-02T10:55:00Z", "u3", "read", "us", "acme"),
    ];
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let aggregator = aggregated(&rules, &lines);
    let (from, newest) = aggregator.span.unwrap();
    let tables = aggregator.finish().unwrap();
    let series = group_series(&rules[0], &tables[0], Range { from, newest }).unwrap();
    assert_eq!(series.len(), 1, "only acme/eu exported");
    assert_eq!(series[0].label_text(), "tenant=acme,region=eu");
    let values: Vec<f64> = series[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, vec![2.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        series[0].traces[0].as_deref().map(|t| t.starts_with("t-u")),
        Some(true)
    );
}

#[test]
fn travel_finds_region_changes_closer_than_the_window_only() {
    let lines = [
        // u1: eu then us 2 minutes later across a 5-minute bucket edge.
        event("2026-11-02T10:04:00Z", "u1", "read", "eu", "acme"),
        event("2026-11-02T10:06:00Z", "u1", "read", "us", "acme"),
        // u2: eu then us 3 hours later: a flight, not impossible.
        event("2026-11-02T10:00:00Z", "u2", "read", "eu", "acme"),
        event("2026-11-02T13:00:00Z", "u2", "read", "us", "acme"),
        // u3: eu at 10:00 and 10:04:59 and us at 10:09:58: the closest pair
        // is 4m59s apart, in adjacent buckets.
        event("2026-11-02T10:00:00Z", "u3", "read", "eu", "acme"),
        event("2026-11-02T10:04:59Z", "u3", "read", "eu", "acme"),
        event("2026-11-02T10:09:58Z", "u3", "read", "us", "acme"),
        // u4: eu at 10:00, us at 10:05:00: exactly 5 minutes, not less.
        event("2026-11-02T10:00:00Z", "u4", "read", "eu", "acme"),
        event("2026-11-02T10:05:00Z", "u4", "read", "us", "acme"),
    ];
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let aggregator = aggregated(&rules, &lines);
    let tables = aggregator.finish().unwrap();
    let hops = travel_hops(&tables[1], 0);
    let subjects: Vec<&str> = hops.iter().map(|h| h.subject.as_str()).collect();
    assert_eq!(subjects, vec!["u1", "u3"], "{hops:?}");
    assert_eq!(
        (hops[0].from_region.as_str(), hops[0].to_region.as_str()),
        ("eu", "us")
    );
    assert_eq!((hops[1].arrived_at - hops[1].left_at) / 1000, 299);
}

#[test]
fn a_hop_split_across_batches_is_found() {
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let mut aggregator = Aggregator::new(rules.clone());
    let first = event("2026-11-02T10:00:00Z", "u1", "read", "eu", "acme");
    let second = event("2026-11-02T10:01:00Z", "u1", "read", "us", "acme");
    read_ndjson("a", std::io::Cursor::new(first), LATEST, &mut aggregator).unwrap();
    read_ndjson("b", std::io::Cursor::new(second), LATEST, &mut aggregator).unwrap();
    let tables = aggregator.finish().unwrap();
    let hops = travel_hops(&tables[1], 0);
    assert_eq!(hops.len(), 1, "{hops:?}");
    assert_eq!(hops[0].to_region, "us");
}

#[test]
fn rules_report_every_problem_with_line_and_field() {
    let text = r#"
rules:
  - id: Bad_Id
    description: x
    kind: rate
    match: { colour: red }
    window: 90s
    threshold: { kind: static, multiple: 0.5 }
    severity: urgent
  - id: r2
    description: x
    kind: ratio
    window: 10m
    severity: low
  - id: r3
    description: x
    kind: travel
    window: 10m
    severity: low
    frequency: 3
"#;
    let errors = parse_rules(Path::new("rules.yaml"), text).unwrap_err();
    let joined = errors.join("\n");
    for expected in [
        "rules.yaml:3:",
        "rules[0].id",
        "rules[0].match.colour: unknown event field `colour`",
        "rules[0].window: `1m 30s` must be whole minutes",
        "rules[0].threshold.multiple",
        "rules[0].severity",
        "rules[1].numerator: a ratio rule needs `numerator`",
        "rules[2]",
        "unknown field `frequency`",
    ] {
        assert!(
            joined.contains(expected),
            "missing {expected:?} in:\n{joined}"
        );
    }
}

#[test]
fn the_shipped_rules_are_valid_and_have_runbooks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules =
        patrol_job_anomaly::rules::load_rules(&root.join("policies/anomaly/rules.yaml")).unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    for id in [
        "impossible-travel",
        "admin-burst",
        "export-spike",
        "action-rate",
        "deny-ratio",
        "step-up-failures",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for rule in &rules {
        let runbook = rule
            .runbook
            .as_ref()
            .expect("every shipped rule names a runbook");
        assert!(
            root.join("runbooks")
                .join(format!("{runbook}.md"))
                .is_file(),
            "{runbook}.md missing"
        );
    }
}

#[test]
fn events_more_than_a_day_after_the_runs_clock_are_bad_rows() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-02T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let lines = [
        event("2026-11-03T11:59:59Z", "u1", "read", "eu", "acme"),
        event("2026-11-03T12:00:01Z", "u2", "read", "eu", "acme"),
    ];
    let rules = parse_rules(Path::new("rules.yaml"), RULES).unwrap();
    let mut aggregator = Aggregator::new(rules);
    let stats = read_ndjson(
        "x",
        std::io::Cursor::new(lines.join("\n")),
        latest_plausible(now),
        &mut aggregator,
    )
    .unwrap();
    assert_eq!((stats.events, stats.malformed), (1, 1));
    assert!(
        stats.samples[0].contains("x:2: ts is more than a day in the future"),
        "{:?}",
        stats.samples
    );
}
