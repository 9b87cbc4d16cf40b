//! The state anomaly keeps between runs (cursors, tuned parameters), read
//! through typed keys: rows written by older versions read unchanged, and
//! an entry that does not decode fails the run naming its key — it is
//! never dropped (a dropped cursor would report the whole history window
//! again).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

mod common;

use common::{login, travel_input};
use patrol_job_anomaly::{run_once, RunInput, SourceSpec};
use patrol_job_api::{CancellationToken, JobState, MemoryState, Outcome, StateWrite};

fn input(dir: &Path) -> RunInput {
    let events = dir.join("audit.ndjson");
    std::fs::write(
        &events,
        [
            login("2026-11-02T10:00:00Z", "eu"),
            login("2026-11-02T10:01:30Z", "us"),
        ]
        .join("\n"),
    )
    .unwrap();
    travel_input(SourceSpec::Files {
        name: "audit".into(),
        path: events,
    })
}

async fn run(
    store: &Arc<MemoryState>,
    input: RunInput,
) -> Result<patrol_job_api::RunReport, String> {
    run_once(
        &JobState::new(store.clone()),
        input,
        false,
        &CancellationToken::new(),
    )
    .await
    .map_err(|err| err.to_string())
}

#[tokio::test]
async fn cursors_written_as_decimal_text_by_older_versions_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryState::default());
    let first = run(&store, input(dir.path())).await.unwrap();
    assert_eq!(first.findings.len(), 1, "{}", first.summary);
    let cursor = first
        .state
        .iter()
        .find(|write| write.key == "cursor/impossible-travel")
        .expect("the cursor is written");
    let end = cursor.value.clone().unwrap();
    assert!(
        std::str::from_utf8(&end).unwrap().parse::<i64>().is_ok(),
        "a JSON number is the decimal text older versions wrote"
    );
    // A ledger written by older code: the same cursor as decimal text.
    store.apply(&[StateWrite::put("cursor/impossible-travel", end)]);
    let second = run(&store, input(dir.path())).await.unwrap();
    assert_eq!(second.outcome, Outcome::Succeeded);
    assert!(second.findings.is_empty(), "the hop was reported already");
}

#[tokio::test]
async fn a_cursor_that_does_not_decode_fails_the_run_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryState::default());
    store.apply(&[StateWrite::put(
        "cursor/impossible-travel",
        b"yesterday".to_vec(),
    )]);
    let err = run(&store, input(dir.path())).await.unwrap_err();
    assert!(err.contains("`cursor/impossible-travel`"), "{err}");
}

#[tokio::test]
async fn tuned_parameters_that_do_not_decode_fail_the_run_naming_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryState::default());
    store.apply(&[StateWrite::put(
        "tuned/impossible-travel",
        br#"{"params": {"alpha": "high"}}"#.to_vec(),
    )]);
    let err = run(&store, input(dir.path())).await.unwrap_err();
    assert!(err.contains("`tuned/impossible-travel`"), "{err}");
}
