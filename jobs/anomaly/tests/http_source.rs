//! An `http` source against a real HTTP server: its NDJSON is judged like
//! a file's (bad lines counted), and an outage fails the run as partial,
//! keeping every open alert and writing no state.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
mod common;

use common::{login, travel_input};
use patrol_job_anomaly::{run_once, RunInput, SourceSpec};
use patrol_job_api::{CancellationToken, JobState, Outcome};

type Shared = Arc<Mutex<Option<String>>>;

async fn events(State(body): State<Shared>) -> (StatusCode, String) {
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

fn input(url: String) -> RunInput {
    travel_input(SourceSpec::Http {
        name: "audit-api".into(),
        url,
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

    let report = run_once(
        &JobState::empty(),
        input(url.clone()),
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
        input(url),
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
}
