//! Acceptance 3 of issue 18: one 80 MiB line in a `files` source and in an
//! `http` source is a malformed line (counted, quoted with its number, read
//! through in bounded memory) and the sweep finishes with the other events
//! read and the cursor past it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use chrono::{TimeZone, Utc};
use patrol_job_api::{CancellationToken, JobState, RunReport};
use patrol_job_provmon::memory::MemoryState;
use patrol_job_provmon::rules::parse_rules;
use patrol_job_provmon::{sweep, SourceSpec, SweepInput};

fn release(n: usize) -> String {
    format!(r#"{{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r{n}"}}"#)
}

/// Two releases around one line of 80 MiB.
fn stream() -> String {
    let long = format!(
        r#"{{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"{}"}}"#,
        "x".repeat(80 << 20)
    );
    [release(1), long, release(2)].join("\n") + "\n"
}

/// One sweep over `source`, on a thread of its own; fails (instead of
/// hanging the test run) if it takes longer than a minute.
fn sweep_within_a_minute(state: Arc<MemoryState>, source: SourceSpec) -> RunReport {
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rules = parse_rules(
            std::path::Path::new("rules.yaml"),
            "rules:\n  - {id: stale-chain, description: no bundle, when: \"release -> (no bundle within 1h)\", severity: low}\n",
        )
        .unwrap();
        let input = SweepInput {
            evidence: None,
            sources: vec![source],
            rules,
            verifier: Default::default(),
            max_events: 1_000_000,
            now: Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
            max_clock_skew: std::time::Duration::from_secs(300),
            rekor_outage_page_after: std::time::Duration::from_secs(1800),
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let report = runtime
            .block_on(sweep(
                &JobState::new(state.clone()),
                input,
                &CancellationToken::new(),
            ))
            .unwrap();
        state.apply(&report.state);
        let _ = send.send(report);
    });
    recv.recv_timeout(Duration::from_secs(60))
        .expect("the sweep finishes within a minute")
}

/// `(events, malformed, first sample)` of the source `feed`.
fn read(report: &RunReport) -> (u64, u64, String) {
    let feed = &report.details["sources"]["feed"];
    (
        feed["events"].as_u64().unwrap(),
        feed["malformed"].as_u64().unwrap(),
        feed["samples"][0].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn an_80_mib_line_in_a_file_is_malformed_and_the_cursor_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ndjson"), stream()).unwrap();
    let state = Arc::new(MemoryState::default());
    let source = SourceSpec::Files {
        name: "feed".into(),
        path: dir.path().to_path_buf(),
    };

    let report = sweep_within_a_minute(state.clone(), source.clone());
    assert_eq!(
        read(&report),
        (2, 1, "a.ndjson:2: line longer than 1048576 bytes".into()),
        "{}",
        report.summary
    );
    assert_eq!(report.findings.len(), 2, "{}", report.summary);

    // Nothing is read twice: the cursor is past the long line.
    let again = sweep_within_a_minute(state, source);
    assert_eq!(read(&again), (0, 0, String::new()), "{}", again.summary);
}

#[test]
fn an_80_mib_line_from_an_endpoint_is_malformed_and_the_rest_is_read() {
    let body = stream();
    let (send, recv) = std::sync::mpsc::channel();
    // The server lives on a runtime of its own, for the whole test.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = Router::new().route("/events", get(move || async move { body }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            send.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let address = recv.recv_timeout(Duration::from_secs(30)).unwrap();
    let state = Arc::new(MemoryState::default());
    let source = SourceSpec::Http {
        name: "feed".into(),
        url: format!("http://{address}/events"),
        headers: Default::default(),
        timeout: Some(patrol_job_api::units::HumanDuration::parse("50s").unwrap()),
    };

    let report = sweep_within_a_minute(state.clone(), source.clone());
    assert_eq!(
        read(&report),
        (2, 1, "feed:2: line longer than 1048576 bytes".into()),
        "{}",
        report.summary
    );

    // The whole stream is handled: the next sweep skips all three lines.
    let again = sweep_within_a_minute(state, source);
    assert_eq!(read(&again), (0, 0, String::new()), "{}", again.summary);
}
