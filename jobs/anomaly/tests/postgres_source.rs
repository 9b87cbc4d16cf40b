//! Audit events read from a PostgreSQL table (a `postgres` source) on the
//! real server: judged like NDJSON events, overlong rows counted, the
//! connection URL taken from the environment and never shown, a query that
//! would write refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

mod common;

use common::TRAVEL_RULES;
use patrol_job_anomaly::AnomalyJob;
use patrol_job_api::{
    BuildContext, CancellationToken, Checkpoints, Effects, Job, JobState, Outcome, RunContext,
    SystemClock, Typed,
};
use sqlx::{Executor, PgPool};

fn context() -> RunContext {
    RunContext {
        run_id: 1,
        schedule_id: "audit".into(),
        scheduled_for: chrono::Utc::now(),
        attempt: 1,
        deadline: None,
        dry_run: false,
        cancel: CancellationToken::new(),
        run_key: "test/1".into(),
        state: JobState::empty(),
        effects: Effects::in_memory(),
        checkpoints: Checkpoints::dry_run(),
        clock: Arc::new(SystemClock),
        fence: patrol_job_api::ProcessFence::none(),
    }
}

/// A table of audit events of its own; returns its name.
async fn audit_table(url: &str) -> String {
    let pool = PgPool::connect(url).await.unwrap();
    let table = format!("anomaly_audit_{}", uuid::Uuid::new_v4().simple());
    pool.execute(
        format!(
            "CREATE TABLE {table} (at timestamptz, subject text, action text, decision text, region text, tenant text)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let huge = "x".repeat(2 << 20);
    for (at, subject, region) in [
        ("2026-11-02 10:00:00+00", "u1", "eu"),
        ("2026-11-02 10:01:30+00", "u1", "us"),
        ("2026-11-02 10:02:00+00", huge.as_str(), "eu"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} VALUES ($1::timestamptz, $2, 'login', 'allow', $3, 'acme')"
        ))
        .bind(at)
        .bind(subject)
        .bind(region)
        .execute(&pool)
        .await
        .unwrap();
    }
    table
}

#[tokio::test]
async fn events_from_a_table_are_judged_like_ndjson_and_overlong_rows_are_counted() {
    let url = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let table = audit_table(&url).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), TRAVEL_RULES).unwrap();
    std::env::set_var("PATROL_TEST_ANOMALY_AUDIT_DB", &url);
    let params = serde_json::json!({
        "rules": "rules.yaml",
        "sources": [{
            "kind": "postgres",
            "name": "audit-db",
            "url": "env:PATROL_TEST_ANOMALY_AUDIT_DB",
            "query": format!(
                "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS ts, \
                 subject, action, decision, region, tenant FROM {table}"
            ),
        }]
    });
    let instance = Typed(AnomalyJob)
        .build(&params, &BuildContext::new("audit", dir.path()))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    // Built once, run twice: the second run reuses the connection.
    for _ in 0..2 {
        let report = instance.run(context()).await.unwrap();
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.summary);
        let stats = &report.details["sources"]["audit-db"];
        assert_eq!(
            (stats["events"].as_u64(), stats["malformed"].as_u64()),
            (Some(2), Some(1)),
            "{stats}"
        );
        assert!(
            stats["samples"][0].as_str().unwrap().contains("row 3"),
            "{stats}"
        );
        assert_eq!(report.findings.len(), 1, "u1 hopped eu → us in 90s");
        assert!(!report.summary.contains(&url) && !format!("{}", report.details).contains(&url));
    }

    // A query that would change the database fails the source, not the job.
    let writing = serde_json::json!({
        "rules": "rules.yaml",
        "sources": [{
            "kind": "postgres",
            "name": "audit-db",
            "url": "env:PATROL_TEST_ANOMALY_AUDIT_DB",
            "query": format!("SELECT * FROM {table} FOR UPDATE"),
        }]
    });
    let instance = Typed(AnomalyJob)
        .build(&writing, &BuildContext::new("audit", dir.path()))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let report = instance.run(context()).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{}", report.summary);
    assert!(
        report.output.as_deref().unwrap_or("").contains("read-only"),
        "{:?}",
        report.output
    );
}

#[test]
fn a_missing_url_secret_is_refused_at_build_naming_the_field() {
    let params = serde_json::json!({
        "sources": [{
            "kind": "postgres",
            "name": "audit-db",
            "url": "env:PATROL_TEST_ANOMALY_NO_SUCH_DB",
            "query": "SELECT 1",
        }]
    });
    let errors = Typed(AnomalyJob)
        .build(&params, &BuildContext::new("audit", ""))
        .map(|_| ())
        .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "sources[0].url" && e.message.contains("is not set")),
        "{errors:?}"
    );
}
