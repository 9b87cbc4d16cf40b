//! Acceptance 3 of issue 18: an events file (or endpoint) with one 80 MiB
//! line is read to its end within a time bound, the line counted as
//! malformed with its number and the other events read. (The reader used to loop forever on a
//! line longer than its 64 MiB chunk, inside `spawn_blocking`, where the
//! run's timeout cannot stop it.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::routing::get;
use axum::Router;
mod common;

use common::{login, travel_input};
use patrol_job_anomaly::{run_once, RunInput, SourceSpec};
use patrol_job_api::{CancellationToken, JobState, Outcome, RunReport};

/// Runs the job on a thread of its own; fails (instead of hanging the
/// test run) if it takes longer than `bound`.
fn run_within(bound: Duration, input: RunInput) -> RunReport {
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let report = runtime.block_on(run_once(
            &JobState::empty(),
            input,
            false,
            &CancellationToken::new(),
        ));
        let _ = send.send(report);
    });
    match recv.recv_timeout(bound) {
        Ok(report) => report.unwrap(),
        Err(_) => panic!("the run did not finish within {bound:?}"),
    }
}

/// Three events around one line of 80 MiB (line 3).
fn stream() -> String {
    let long = format!(
        r#"{{"ts":"2026-11-02T10:00:30Z","subject":"{}"}}"#,
        "x".repeat(80 << 20)
    );
    let lines = [
        login("2026-11-02T10:00:00Z", "eu"),
        login("2026-11-02T10:00:10Z", "eu"),
        long,
        login("2026-11-02T10:01:30Z", "us"),
    ];
    lines.join("\n") + "\n"
}

/// The source's stats show the long line as malformed, and the events
/// after it were read.
fn assert_long_line_skipped(report: &RunReport, sample_end: &str) {
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
    let stats = &report.details["sources"]["audit"];
    assert_eq!(stats["events"], 3, "{stats}");
    assert_eq!(stats["malformed"], 1, "{stats}");
    let sample = stats["samples"][0].as_str().unwrap_or_default();
    assert!(sample.ends_with(sample_end), "{stats}");
    assert_eq!(
        report.findings.len(),
        1,
        "the events after the long line are read: u1 hopped eu → us"
    );
}

#[test]
fn an_80_mib_line_is_counted_malformed_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.ndjson"), stream()).unwrap();
    let source = SourceSpec::Files {
        name: "audit".into(),
        path: dir.path().to_path_buf(),
    };

    let report = run_within(Duration::from_secs(60), travel_input(source));

    assert_long_line_skipped(&report, "events.ndjson:3: line longer than 1048576 bytes");
}

#[test]
fn an_80_mib_line_from_an_endpoint_is_counted_malformed_too() {
    let body = stream();
    let (send, recv) = std::sync::mpsc::channel();
    // The server lives on a runtime of its own, for the whole test.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = Router::new().route("/audit", get(move || async move { body }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            send.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let address = recv.recv_timeout(Duration::from_secs(30)).unwrap();
    let source = SourceSpec::Http {
        name: "audit".into(),
        url: format!("http://{address}/audit?token=t0ps3cret"),
        headers: Default::default(),
        timeout: None,
    };

    let report = run_within(Duration::from_secs(60), travel_input(source));

    // Samples name the endpoint, not its query.
    assert_long_line_skipped(
        &report,
        &format!("http://{address}/audit?…:3: line longer than 1048576 bytes"),
    );
    assert!(!report.details.to_string().contains("t0ps3cret"));
}
