//! An `http` source against a real HTTP server: its NDJSON is judged like
//! a file's (bad lines counted), and an outage fails the run as partial,
//! keeping every open alert and writing no state. The endpoint wants a
//! token, sent from a `file:` secret in a header.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
mod common;

use common::{login, travel_input};
use patrol_job_anomaly::{run_once, RunInput, SourceSpec};
use patrol_job_api::secret::SecretRef;
use patrol_job_api::{CancellationToken, JobState, Outcome};

type Shared = Arc<Mutex<Option<String>>>;

const TOKEN: &str = "Bearer audit-feed-token-77";

async fn events(State(body): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, "who are you".into());
    }
    match body.lock().unwrap().clone() {
        Some(body) => (StatusCode::OK, body),
        None => (StatusCode::SERVICE_UNAVAILABLE, "down".into()),
    }
}

async fn serve(body: Shared) -> String {
    let app = Router::new().route("/audit", get(events)).with_state(body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/audit")
}

/// The source, with its `Authorization` header read from `token_file`.
fn input(url: String, token_file: &std::path::Path) -> RunInput {
    let token = SecretRef::File(token_file.to_path_buf());
    travel_input(SourceSpec::Http {
        name: "audit-api".into(),
        url,
        headers: [("Authorization".to_string(), token)].into(),
        timeout: None,
    })
}

#[tokio::test]
async fn an_endpoints_events_are_judged_and_an_outage_fails_the_run_as_partial() {
    let body = [
        login("2026-11-02T10:00:00Z", "eu"),
        "{broken".to_string(),
        login("2026-11-02T10:01:30Z", "us"),
    ]
    .join("\n");
    let shared: Shared = Arc::new(Mutex::new(Some(body)));
    let url = serve(shared.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("feed.auth");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    let report = run_once(
        &JobState::empty(),
        input(url.clone(), &token_file),
        false,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let stats = &report.details["sources"]["audit-api"];
    assert_eq!(
        (stats["events"].as_u64(), stats["malformed"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );
    assert_eq!(report.findings.len(), 1, "u1 hopped eu → us in 90s");
    assert!(report.findings[0]
        .key
        .starts_with("anomaly/impossible-travel/subject=u1/"));
    assert!(!report.state.is_empty(), "the cursor advances");

    *shared.lock().unwrap() = None;
    let report = run_once(
        &JobState::empty(),
        input(url.clone(), &token_file),
        false,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{}", report.summary);
    assert!(
        report.findings_partial,
        "open alerts stay open while the source is down"
    );
    assert!(
        report.state.is_empty(),
        "nothing is remembered from a partial run"
    );
    assert!(
        report.summary.contains("1 source(s) failed"),
        "{}",
        report.summary
    );
    assert!(
        report.output.as_deref().unwrap_or("").contains("HTTP 503"),
        "{:?}",
        report.output
    );

    // A wrong token on file is the server's refusal, named without it.
    std::fs::write(&token_file, "Bearer stale-token-0").unwrap();
    *shared.lock().unwrap() = Some(login("2026-11-02T10:00:00Z", "eu"));
    let report = run_once(
        &JobState::empty(),
        input(url, &token_file),
        false,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let output = report.output.unwrap_or_default();
    assert!(output.contains("HTTP 401"), "{output}");
    assert!(!output.contains("stale-token"), "{output}");
}
