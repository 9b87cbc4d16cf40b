//! Change streams read as NDJSON over HTTP from a real local server: one
//! mirror's endpoint answers its whole stream every time (resumed by line
//! count), the other wants a token and answers from `?since=` with
//! `X-Next-Cursor`. Across a restart nothing is read twice and nothing
//! pending is lost; an outage fails the table without moving its cursors.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use patrol_job_api::{BuildContext, Job, MemoryState, Outcome, RunReport, Typed};
use patrol_job_diff_audit::fixtures::{mirrored_streams, stream_key, Event, StreamPlan};
use patrol_job_diff_audit::DiffAuditJob;

const START_MS: i64 = 1_793_577_600_000;
const TOKEN: &str = "Bearer cdc-feed-token-31";

#[derive(Default)]
struct Feeds {
    eu: Vec<String>,
    us: Vec<String>,
    us_down: bool,
    /// `since` of each request to the US feed (None: from the start).
    us_asked: Vec<Option<usize>>,
}

type Shared = Arc<Mutex<Feeds>>;

/// The EU feed: the whole stream every time, every line terminated.
async fn eu(State(feeds): State<Shared>) -> String {
    feeds
        .lock()
        .unwrap()
        .eu
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

async fn us(
    State(feeds): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, "who are you").into_response();
    }
    let mut feeds = feeds.lock().unwrap();
    if feeds.us_down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let since = query.get("since").map(|s| s.parse::<usize>().unwrap());
    feeds.us_asked.push(since);
    let lines: Vec<String> = feeds.us[since.unwrap_or(0)..].to_vec();
    let next = feeds.us.len().to_string();
    ([("x-next-cursor", next)], lines.join("\n") + "\n").into_response()
}

async fn serve(feeds: Shared) -> String {
    let app = Router::new()
        .route("/eu", get(eu))
        .route("/us", get(us))
        .with_state(feeds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

async fn run(
    store: &Arc<MemoryState>,
    dir: &std::path::Path,
    base: &str,
    now_ms: i64,
) -> RunReport {
    // Built anew each run: a restart between runs.
    let params = serde_json::json!({
        "tables": [{
            "name": "audit",
            "cdc": {
                "left": format!("{base}/eu"),
                "right": format!("{base}/us"),
                "headers": {"Authorization": "file:feed.auth"},
                "lag_window": "60s",
                "missing_after": "5m",
            },
        }]
    });
    common::run_at(store, dir, &params, now_ms).await
}

fn until(events: &[Event], from: i64, to: i64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.ts_ms > from && e.ts_ms <= to)
        .map(|e| e.line.clone())
        .collect()
}

/// (tenant=…,id=…, reason) of every sample the findings name.
fn findings(report: &RunReport) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = report
        .findings
        .iter()
        .flat_map(|f| {
            f.details["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s.as_str().unwrap().to_string(), f.labels["reason"].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn streams_over_http_are_resumed_across_a_restart_and_an_outage_moves_no_cursor() {
    let plan = StreamPlan {
        table: "audit",
        keys: 120,
        start_ms: START_MS,
        step_ms: 1_000,
        delay_ms: |i| 1_000 + (i * 37) % 4_000,
        update_every: 0,
        home_first: false,
        late: Vec::new(),
        missing: vec![15],
        mismatch: Vec::new(),
        right_only: Vec::new(),
        right_first: Vec::new(),
    };
    let (left, right, _) = mirrored_streams(&plan);
    let feeds: Shared = Arc::default();
    let base = serve(feeds.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("feed.auth"), format!("{TOKEN}\n")).unwrap();
    let store = Arc::new(MemoryState::default());

    // Run 1, 60 s in.
    let first = START_MS + 60_000;
    {
        let mut f = feeds.lock().unwrap();
        f.eu = until(&left, 0, first);
        f.us = until(&right, 0, first);
    }
    let report = run(&store, dir.path(), &base, first).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let cdc = &report.details["tables"]["audit"]["cdc"];
    let (eu1, us1) = (until(&left, 0, first).len(), until(&right, 0, first).len());
    assert_eq!(
        cdc["left"]["events"].as_u64().unwrap() as usize,
        eu1,
        "{cdc}"
    );
    assert_eq!(
        cdc["right"]["events"].as_u64().unwrap() as usize,
        us1,
        "{cdc}"
    );
    assert!(findings(&report).is_empty(), "nothing is past a window yet");

    // The US feed is down for run 2: the table fails, its cursors stay.
    feeds.lock().unwrap().us_down = true;
    let down = run(&store, dir.path(), &base, first + 10_000).await;
    assert_ne!(down.outcome, Outcome::Succeeded);
    let why = down.output.clone().unwrap_or_default();
    assert!(why.contains("/us") && why.contains("503"), "{why}");
    assert!(!why.contains("cdc-feed-token"), "{why}");

    // Run 3 after the outage, 500 s in: the rest of both streams.
    let second = START_MS + 500_000;
    {
        let mut f = feeds.lock().unwrap();
        f.us_down = false;
        f.eu = until(&left, 0, second);
        f.us = until(&right, 0, second);
    }
    let report = run(&store, dir.path(), &base, second).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let cdc = &report.details["tables"]["audit"]["cdc"];
    // Only what was new: the EU feed skipped by count, the US one asked
    // from the cursor it gave.
    assert_eq!(
        cdc["left"]["events"].as_u64().unwrap() as usize,
        left.len() - eu1,
        "{cdc}"
    );
    assert_eq!(
        cdc["right"]["events"].as_u64().unwrap() as usize,
        right.len() - us1,
        "{cdc}"
    );
    assert_eq!(feeds.lock().unwrap().us_asked, vec![None, Some(us1)]);
    // Every change matched across the restart, but the one never mirrored.
    assert_eq!(
        cdc["lag"]["matched"].as_u64().unwrap() as usize,
        right.len() - us1,
        "{cdc}"
    );
    assert_eq!(cdc["pending"], 1, "{cdc}");
    let (tenant, id) = stream_key(15);
    assert_eq!(
        findings(&report),
        vec![(
            format!("tenant={tenant},id={id} (missing on right)"),
            "missing".into()
        )]
    );
}

#[test]
fn a_missing_token_file_and_a_bad_endpoint_are_errors_naming_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let errors = |right: &str| -> Vec<String> {
        let params = serde_json::json!({
            "tables": [{
                "name": "audit",
                "cdc": {
                    "left": "https://mirror.example/eu",
                    "right": right,
                    "headers": {"Authorization": "file:missing.auth"},
                },
            }]
        });
        Typed(DiffAuditJob)
            .build(&params, &BuildContext::new("diff-audit", dir.path()))
            .err()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    let bad_url = errors("https://");
    assert_eq!(
        bad_url,
        vec!["params.tables[0].cdc.right: `https://` is not an http(s) URL"]
    );
    let no_token = errors("https://mirror.example/us");
    assert!(
        no_token.len() == 1
            && no_token[0].contains("tables[0].cdc.headers.Authorization")
            && no_token[0].contains("missing.auth"),
        "{no_token:?}"
    );
}
