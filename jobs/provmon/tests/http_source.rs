//! `http` sources against a real HTTP server: the whole-stream mode skips
//! what was handled, the server-cursor mode asks `?since=`, an error makes
//! the sweep partial and keeps the cursor. The cursor endpoint wants a
//! token, sent from an `env:` secret in a header.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::{TimeZone, Utc};
use patrol_job_api::secret::SecretRef;
use patrol_job_api::{CancellationToken, JobState, RunReport};
use patrol_job_provmon::memory::MemoryState;
use patrol_job_provmon::rules::parse_rules;
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};

#[derive(Default)]
struct Served {
    lines: Vec<String>,
    down: bool,
    asked_since: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Served>>;

async fn whole(State(served): State<Shared>) -> (StatusCode, String) {
    let served = served.lock().unwrap();
    if served.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
    }
    (StatusCode::OK, served.lines.join("\n") + "\n")
}

const TOKEN_VAR: &str = "PATROL_TEST_PROVMON_FEED_KEY";
const TOKEN: &str = "feed-api-key-5150";

async fn with_cursor(
    State(served): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    asked: HeaderMap,
) -> (StatusCode, HeaderMap, String) {
    if asked.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, HeaderMap::new(), String::new());
    }
    let mut served = served.lock().unwrap();
    let since: usize = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    served.asked_since.push(query.get("since").cloned());
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-next-cursor",
        served.lines.len().to_string().parse().unwrap(),
    );
    let body = served.lines[since.min(served.lines.len())..].join("\n");
    (StatusCode::OK, headers, body)
}

async fn serve(served: Shared) -> String {
    let app = Router::new()
        .route("/events", get(whole))
        .route("/cursor", get(with_cursor))
        .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn release(n: usize) -> String {
    format!(r#"{{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r{n}"}}"#)
}

async fn run(state: &Arc<MemoryState>, url: String) -> RunReport {
    std::env::set_var(TOKEN_VAR, TOKEN);
    let rules = parse_rules(
        std::path::Path::new("rules.yaml"),
        "rules:\n  - {id: stale-chain, description: no bundle, when: \"release -> (no bundle within 1h)\", severity: low}\n",
    )
    .unwrap();
    let input = SweepInput {
        evidence: None,
        sources: vec![SourceSpec::Http {
            name: "feed".into(),
            headers: [("X-Api-Key".to_string(), SecretRef::Env(TOKEN_VAR.into()))].into(),
            url,
            timeout: Some(patrol_job_api::units::HumanDuration::parse("5s").unwrap()),
        }],
        rules,
        verifier: Default::default(),
        max_events: 1_000_000,
        now: Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
        max_clock_skew: std::time::Duration::from_secs(300),
        rekor_outage_page_after: std::time::Duration::from_secs(1800),
    };
    let report = sweep(
        &JobState::new(state.clone()),
        input,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    state.apply(&report.state);
    report
}

fn events(report: &RunReport) -> (u64, u64) {
    let feed = &report.details["sources"]["feed"];
    (
        feed["events"].as_u64().unwrap(),
        feed["malformed"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_whole_stream_is_read_once_and_an_outage_keeps_the_cursor() {
    let served: Shared = Arc::default();
    served.lock().unwrap().lines = vec![release(1), "not json".into(), release(2)];
    let base = serve(served.clone()).await;
    let state = Arc::new(MemoryState::default());

    let first = run(&state, format!("{base}/events")).await;
    assert_eq!(events(&first), (2, 1), "{}", first.summary);
    assert_eq!(first.findings.len(), 2);

    served.lock().unwrap().lines.push(release(3));
    let second = run(&state, format!("{base}/events")).await;
    assert_eq!(
        events(&second),
        (1, 0),
        "only the new line: {}",
        second.summary
    );
    assert_eq!(
        second.findings.len(),
        3,
        "watched chains are reported again"
    );

    served.lock().unwrap().down = true;
    let down = run(&state, format!("{base}/events")).await;
    assert!(down.findings_partial);
    assert!(
        down.summary.contains("sources unreadable"),
        "{}",
        down.summary
    );
    assert!(down.summary.contains("503"), "{}", down.summary);

    {
        let mut guard = served.lock().unwrap();
        guard.down = false;
        guard.lines.push(release(4));
    }
    let back = run(&state, format!("{base}/events")).await;
    assert_eq!(events(&back), (1, 0), "{}", back.summary);
    assert!(!back.findings_partial);
}

#[tokio::test]
async fn a_server_cursor_is_sent_back_as_since() {
    let served: Shared = Arc::default();
    served.lock().unwrap().lines = vec![release(1), release(2)];
    let base = serve(served.clone()).await;
    let state = Arc::new(MemoryState::default());
    let first = run(&state, format!("{base}/cursor")).await;
    assert_eq!(events(&first), (2, 0));
    served.lock().unwrap().lines.push(release(3));
    let second = run(&state, format!("{base}/cursor")).await;
    assert_eq!(events(&second), (1, 0), "{}", second.summary);
    assert_eq!(
        served.lock().unwrap().asked_since,
        [None, Some("2".to_string())]
    );
}
