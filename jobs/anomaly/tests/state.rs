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

/// Six impossible hops of `u1` two hours apart on 2026-11-02.
fn hops_input(dir: &Path, pages_per_day: u32) -> RunInput {
    let events = dir.join("audit.ndjson");
    let lines: Vec<String> = (0..6)
        .flat_map(|k| {
            let hour = 2 * k;
            [
                login(&format!("2026-11-02T{hour:02}:00:00Z"), "eu"),
                login(&format!("2026-11-02T{hour:02}:01:00Z"), "us"),
            ]
        })
        .collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let mut input = travel_input(SourceSpec::Files {
        name: "audit".into(),
        path: events,
    });
    input.rules[0].pages_per_day = pages_per_day;
    input
}

#[tokio::test]
async fn a_rule_past_its_daily_budget_pages_one_summary_and_a_later_run_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryState::default());
    let first = run(&store, hops_input(dir.path(), 2)).await.unwrap();
    store.apply(&first.state);
    let keys: Vec<&str> = first.findings.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys[..2]
        .iter()
        .all(|k| k.starts_with("anomaly/impossible-travel/subject=u1/")));
    assert_eq!(keys[2], "anomaly/impossible-travel/held/2026-11-02");
    assert!(
        first.findings[2]
            .summary
            .starts_with("4 more anomalies of impossible-travel held back on 2026-11-02"),
        "{}",
        first.findings[2].summary
    );
    // The same events again: nothing new is decided, the summary stands
    // for the data's day with the same count.
    let second = run(&store, hops_input(dir.path(), 2)).await.unwrap();
    let held: Vec<_> = second
        .findings
        .iter()
        .filter(|f| f.key.contains("/held/"))
        .collect();
    assert_eq!(held.len(), 1);
    assert!(
        held[0].summary.starts_with("4 more anomalies"),
        "{}",
        held[0].summary
    );
    // With room in the budget all six page.
    let roomy = run(
        &Arc::new(MemoryState::default()),
        hops_input(dir.path(), 10),
    )
    .await
    .unwrap();
    assert_eq!(roomy.findings.len(), 6);
}
