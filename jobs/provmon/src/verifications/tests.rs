//! The verifications store against SQLite and a real PostgreSQL, its
//! tables made by provmon's own migrations.

use chrono::{DateTime, TimeZone, Utc};
use patrol_job_api::commands::{DatabaseBackend, JobDatabase};
use serde_json::json;
use sqlx::Connection;

use super::*;

/// Runs provmon's migrations the way the ledger does (each one's SQL),
/// without the ledger's bookkeeping.
async fn migrated(db: JobDatabase) -> JobDatabase {
    let migrator = match db.backend {
        DatabaseBackend::Sqlite => tables().sqlite,
        DatabaseBackend::Postgres => tables().postgres,
    };
    for migration in migrator.iter() {
        sqlx::raw_sql(&migration.sql)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    db
}

/// An SQLite database in a fresh folder and a fresh PostgreSQL database
/// (`PATROL_TEST_POSTGRES_URL`, started by `scripts/test.sh`).
async fn databases() -> Vec<(tempfile::TempDir, JobDatabase)> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display());
    let sqlite = JobDatabase {
        pool: sqlx::AnyPool::connect(&url).await.unwrap(),
        backend: DatabaseBackend::Sqlite,
    };
    let server = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!(
        "provmon_verifications_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = server.rsplit_once('/').unwrap();
    let postgres = JobDatabase {
        pool: sqlx::AnyPool::connect(&format!("{base}/{name}"))
            .await
            .unwrap(),
        backend: DatabaseBackend::Postgres,
    };
    vec![
        (dir, migrated(sqlite).await),
        (tempfile::tempdir().unwrap(), migrated(postgres).await),
    ]
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, minute, 0).unwrap()
}

#[tokio::test]
async fn verifications_are_recorded_and_the_newest_in_the_window_is_found() {
    for (_dir, db) in databases().await {
        let backend = db.backend;
        let store = Verifications::new(db);
        let record = |subject: &str, minute: u32, verified: bool| Verification {
            id: 0,
            kind: "release".into(),
            schedule_id: "provmon".into(),
            subject: subject.into(),
            verified,
            result: json!({"verified": verified, "minute": minute}),
            node: "node-a".into(),
            checked_at: at(minute),
            basis: "b1".into(),
        };
        let first = store.record(&record("r1", 1, true)).await.unwrap();
        let second = store.record(&record("r1", 5, false)).await.unwrap();
        store.record(&record("r2", 6, true)).await.unwrap();
        assert!(second > first, "{backend:?}");
        let newest = store
            .latest("release", "provmon", "r1", "b1", at(0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((newest.id, newest.verified), (second, false));
        assert_eq!(newest.result["minute"], 5);
        assert_eq!(newest.checked_at, at(5));
        // Older than the window, another schedule, kind or basis: not an
        // answer.
        for (kind, schedule, basis, since) in [
            ("release", "provmon", "b1", at(6)),
            ("release", "other", "b1", at(0)),
            ("bundle", "provmon", "b1", at(0)),
            ("release", "provmon", "b2", at(0)),
        ] {
            let found = store
                .latest(kind, schedule, "r1", basis, since)
                .await
                .unwrap();
            assert!(found.is_none(), "{backend:?} {kind} {schedule} {basis}");
        }
    }
}
