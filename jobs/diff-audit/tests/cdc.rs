//! The CDC joiner through the job: both mirrors' Debezium streams written
//! as they would arrive, the right one delayed (a configurable delay per
//! row), read in two runs with a restart between them (a new job instance
//! over the stored state). Checked: every planted late, missing and
//! mismatched change is named with its reason and lag, the lag p95 the job
//! reports is the p95 of the delays it matched, nothing pending is lost in
//! the restart, and malformed lines are counted, never fatal.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use patrol_job_api::{MemoryState, Outcome, RunReport};
use patrol_job_diff_audit::fixtures::{mirrored_streams, stream_key, Event, StreamPlan};

const START_MS: i64 = 1_793_577_600_000;

fn delay(i: i64) -> i64 {
    // 1.0–7.9 s, different per row, so the percentiles mean something.
    1_000 + (i * 53) % 7_000
}

fn plan() -> StreamPlan {
    StreamPlan {
        table: "audit",
        keys: 200,
        start_ms: START_MS,
        step_ms: 1_000,
        delay_ms: delay,
        // One change per row: each right-side event matches one left one.
        update_every: 0,
        // Every row made in the left copy first: the right one is delayed.
        home_first: false,
        // Created at 10 s and 120 s, mirrored 150 s and 200 s later: after
        // the first run.
        late: vec![(10, 150_000), (120, 200_000)],
        missing: vec![30, 40],
        mismatch: vec![20],
        right_only: vec![250],
        right_first: Vec::new(),
    }
}

fn append(path: &Path, events: &[&Event]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for event in events {
        writeln!(file, "{}", event.line).unwrap();
    }
}

async fn run(store: &Arc<MemoryState>, dir: &Path, now_ms: i64) -> RunReport {
    // Built anew each run: a restart between runs.
    let params = serde_json::json!({
        "tables": [{
            "name": "audit",
            "cdc": {"left": "eu", "right": "us", "lag_window": "60s", "missing_after": "5m"},
        }]
    });
    common::run_at(store, dir, &params, now_ms).await
}

/// (tenant, id, reason, side, lag) of every diff a run found.
fn diffs(report: &RunReport) -> Vec<(String, i64, String, Option<String>)> {
    let mut found = Vec::new();
    for finding in &report.findings {
        let reason = finding.labels["reason"].clone();
        for sample in finding.details["samples"].as_array().unwrap() {
            let text = sample.as_str().unwrap();
            let tenant = text
                .split("tenant=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            let id: i64 = text
                .split("id=")
                .nth(1)
                .unwrap()
                .split([' ', ','])
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let side = text
                .split("missing on ")
                .nth(1)
                .map(|s| s.trim_end_matches(')').to_string());
            found.push((tenant.to_string(), id, reason.clone(), side));
        }
    }
    found.sort();
    found
}

fn key(i: i64) -> (String, i64) {
    let (tenant, id) = stream_key(i);
    (tenant.to_string(), id)
}

#[tokio::test]
async fn a_delayed_mirror_is_joined_across_a_restart_with_its_lag_and_every_verdict_right() {
    let dir = tempfile::tempdir().unwrap();
    for side in ["eu", "us"] {
        std::fs::create_dir(dir.path().join(side)).unwrap();
    }
    let (eu_file, us_file) = (
        dir.path().join("eu/audit.ndjson"),
        dir.path().join("us/audit.ndjson"),
    );
    let (left, right, _) = mirrored_streams(&plan());
    let store = Arc::new(MemoryState::default());

    // Run 1, 105 s in: what each mirror had written by then.
    let first = START_MS + 105_000;
    let until = |events: &[Event], from: i64, to: i64| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.ts_ms > from && e.ts_ms <= to)
            .cloned()
            .collect()
    };
    append(&eu_file, &until(&left, 0, first).iter().collect::<Vec<_>>());
    append(
        &us_file,
        &until(&right, 0, first).iter().collect::<Vec<_>>(),
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&us_file)
        .unwrap()
        .write_all(
            b"{not json\n{\"op\":\"c\",\"after\":{\"tenant\":\"acme\"},\"source\":{\"ts_ms\":1}}\n",
        )
        .unwrap();
    let report = run(&store, dir.path(), first).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let cdc = &report.details["tables"]["audit"]["cdc"];
    assert_eq!(cdc["right"]["malformed"], 2, "{cdc}");
    assert!(
        cdc["right"]["samples"][0]
            .as_str()
            .unwrap()
            .contains("audit.ndjson:"),
        "{cdc}"
    );
    // Only the mismatch is past its window yet; the rest is in flight.
    let (t20, id20) = key(20);
    assert_eq!(diffs(&report), vec![(t20, id20, "mismatch".into(), None)]);
    let in_flight = cdc["pending"].as_u64().unwrap();
    assert!(in_flight >= 5, "{cdc}");

    // Run 2 after a restart, 500 s in: the rest of both streams.
    let second = START_MS + 500_000;
    append(
        &eu_file,
        &until(&left, first, second).iter().collect::<Vec<_>>(),
    );
    let late_part = until(&right, first, second);
    append(&us_file, &late_part.iter().collect::<Vec<_>>());
    let report = run(&store, dir.path(), second).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let cdc = &report.details["tables"]["audit"]["cdc"];
    let mut expected: Vec<(String, i64, String, Option<String>)> = vec![
        (key(10).0, key(10).1, "late".into(), None),
        (key(120).0, key(120).1, "late".into(), None),
        (key(30).0, key(30).1, "missing".into(), Some("right".into())),
        (key(40).0, key(40).1, "missing".into(), Some("right".into())),
        (key(20).0, key(20).1, "mismatch".into(), None),
        (
            key(250).0,
            key(250).1,
            "missing".into(),
            Some("left".into()),
        ),
    ];
    expected.sort();
    assert_eq!(diffs(&report), expected);
    let late = report
        .findings
        .iter()
        .find(|f| f.labels["reason"] == "late")
        .unwrap();
    assert!(
        late.summary.contains("150000 ms late") && late.summary.contains("200000 ms late"),
        "{}",
        late.summary
    );
    // Every right-side change of run 2 that matched a left change of
    // run 1 was matched: the restart kept the pending keys.
    let mut lags: Vec<i64> = late_part
        .iter()
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            let id = v["after"]["id"].as_i64()?;
            let i = id - 20_000;
            if plan().right_only.contains(&i) || plan().mismatch.contains(&i) {
                return None;
            }
            Some(match plan().late.iter().find(|(k, _)| *k == i) {
                Some((_, d)) => *d,
                None => delay(i),
            })
        })
        .collect();
    lags.sort_unstable();
    let p95 = lags[((0.95 * lags.len() as f64).ceil() as usize) - 1];
    assert!(lags.len() > 90, "{}", lags.len());
    assert_eq!(
        cdc["lag"]["matched"].as_u64().unwrap() as usize,
        lags.len(),
        "{cdc}"
    );
    assert_eq!(cdc["lag"]["p95_ms"].as_i64().unwrap(), p95, "{cdc}");
    assert_eq!(cdc["lag"]["max_ms"].as_i64().unwrap(), 200_000, "{cdc}");
    // Only the unresolved keys stay pending.
    assert_eq!(cdc["pending"], 4, "{cdc}");

    // Run 3: the EU connector re-delivers its whole stream (a replay), and
    // nothing else is new: no replayed change opens a disagreement again,
    // the same verdicts (late ones are held for an hour, so their finding
    // does not flap).
    append(&eu_file, &left.iter().collect::<Vec<_>>());
    let report = run(&store, dir.path(), second + 30_000).await;
    let cdc = &report.details["tables"]["audit"]["cdc"];
    // Only the three keys still in flight (two never mirrored, one
    // mismatched) take their changes again; the rest are replays.
    assert_eq!(cdc["left"]["events"], 3, "{cdc}");
    assert_eq!(
        cdc["left"]["skipped"].as_u64().unwrap() as usize,
        left.len() - 3,
        "{cdc}"
    );
    assert_eq!(diffs(&report), expected);
    // An hour on, the late ones are no longer reported.
    let report = run(&store, dir.path(), second + 3_700_000).await;
    assert_eq!(diffs(&report).len(), 4);
    assert!(report.findings.iter().all(|f| f.labels["reason"] != "late"));
}

#[tokio::test]
async fn diffs_can_be_written_gzipped_and_the_same_diffs_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for side in ["eu", "us"] {
        std::fs::create_dir(dir.path().join(side)).unwrap();
    }
    let (left, right, _) = mirrored_streams(&plan());
    append(
        &dir.path().join("eu/audit.ndjson"),
        &left.iter().collect::<Vec<_>>(),
    );
    append(
        &dir.path().join("us/audit.ndjson"),
        &right.iter().collect::<Vec<_>>(),
    );
    let params = serde_json::json!({
        "tables": [{"name": "audit", "cdc": {"left": "eu", "right": "us"}}],
        "diffs_dir": "diffs",
        "diffs_gzip": true,
    });
    let now = START_MS + 3_000_000;
    let mut written = Vec::new();
    for _ in 0..2 {
        // A fresh state each time: the same verdicts at the same time.
        let store = Arc::new(MemoryState::default());
        common::run_at(&store, dir.path(), &params, now).await;
        written.push(std::fs::read(dir.path().join("diffs/audit.ndjson.gz")).unwrap());
    }
    assert_eq!(written[0], written[1]);
    assert!(!dir.path().join("diffs/audit.ndjson").exists());
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&written[0][..]),
        &mut text,
    )
    .unwrap();
    let (tenant, id) = key(30);
    let missing = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["tenant"] == tenant.as_str() && l["id"] == id)
        .unwrap();
    assert_eq!(
        (missing["reason"].as_str(), missing["side"].as_str()),
        (Some("missing"), Some("right"))
    );
}
