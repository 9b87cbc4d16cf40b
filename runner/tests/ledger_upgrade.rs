//! A ledger made before jobs had tables of their own — the runner's
//! migrations 5 and 6 created provmon's `verifications` — upgrades with its
//! rows: the runner ignores the versions it no longer ships, and the job's
//! migration finds the table there and keeps it. On SQLite and a real
//! PostgreSQL. (A test of the built binary's ledger, outside runner/src,
//! which names no job.)

#![allow(clippy::unwrap_used)]

use std::path::Path;

use patrol::ledger::{create_scratch_postgres_database, Backend, Ledger};
use patrol::registry::JobRegistry;
use sqlx::migrate::{Migration, MigrationType};

/// A fresh SQLite ledger URL (in `dir`) and a fresh PostgreSQL one.
async fn urls(dir: &Path, name: &str) -> Vec<String> {
    let server = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    vec![
        format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        create_scratch_postgres_database(&server, name)
            .await
            .unwrap(),
    ]
}

/// What a ledger made before jobs had tables holds: runner migrations 5
/// and 6 (a job's table, `verifications`, since moved into the job).
fn tables_moved_into_a_job(backend: Backend) -> [(i64, &'static str, &'static str); 2] {
    match backend {
        Backend::Sqlite => [
            (5, "verifications", include_str!("../../tests/data/ledger_before_job_tables/sqlite/0005_verifications.sql")),
            (6, "verification basis", include_str!("../../tests/data/ledger_before_job_tables/sqlite/0006_verification_basis.sql")),
        ],
        Backend::Postgres => [
            (5, "verifications", include_str!("../../tests/data/ledger_before_job_tables/postgres/0005_verifications.sql")),
            (6, "verification basis", include_str!("../../tests/data/ledger_before_job_tables/postgres/0006_verification_basis.sql")),
        ],
    }
}

#[tokio::test]
async fn a_ledger_made_before_jobs_had_tables_keeps_its_verifications() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path(), "patrol_job_tables_upgrade").await {
        // The old ledger: the runner's migrations, 5 and 6 among them
        // (recorded as sqlx records them), and a verification on record.
        let old = Ledger::connect_with_job_tables(&url, &[]).await.unwrap();
        for (version, description, sql) in tables_moved_into_a_job(old.backend()) {
            sqlx::raw_sql(sql).execute(old.pool()).await.unwrap();
            let migration = Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into(),
                false,
            );
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ($1, $2, $3, $4, 1)",
            )
            .bind(version)
            .bind(description)
            .bind(true)
            .bind(migration.checksum.to_vec())
            .execute(old.pool())
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO verifications (kind, schedule_id, subject, verified, result, node, checked_at, basis) \
             VALUES ('release', 'chains', 'abc123', 1, '{\"verified\":true}', 'node-a', 1000, 'b1')",
        )
        .execute(old.pool())
        .await
        .unwrap();
        old.close().await;

        // This runner: 5 and 6 are no longer its own, the job's migration
        // finds the table there and keeps it.
        for _ in 0..2 {
            let ledger = Ledger::connect(&url).await.unwrap();
            let (subject, basis): (String, String) = sqlx::query_as(
                "SELECT subject, basis FROM verifications WHERE kind = $1 AND schedule_id = $2",
            )
            .bind("release")
            .bind("chains")
            .fetch_one(ledger.pool())
            .await
            .unwrap();
            assert_eq!((subject.as_str(), basis.as_str()), ("abc123", "b1"));
            for (job, tables) in JobRegistry::builtin().tables() {
                let recorded: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM job_migrations WHERE job = $1")
                        .bind(job)
                        .fetch_one(ledger.pool())
                        .await
                        .unwrap();
                assert_eq!(recorded, tables.sqlite.iter().count() as i64, "{job}");
            }
            ledger.close().await;
        }
    }
}
