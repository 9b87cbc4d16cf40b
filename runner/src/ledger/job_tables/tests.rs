//! Jobs' tables on SQLite and a real PostgreSQL: applied once, recorded per
//! job, an edited applied migration refused, and ledgers made before jobs
//! had tables upgraded with their rows.

use std::path::Path;

use patrol_job_api::JobTables;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::ledger::{create_scratch_postgres_database, Backend, Ledger};
use crate::registry::JobRegistry;

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

/// The same migrations for both databases, read from `files` (name, SQL).
async fn tables(dir: &Path, files: &[(&str, &str)]) -> JobTables {
    let folder = tempfile::tempdir_in(dir).unwrap().keep();
    for (name, sql) in files {
        std::fs::write(folder.join(name), sql).unwrap();
    }
    let migrator: &'static Migrator = Box::leak(Box::new(Migrator::new(folder).await.unwrap()));
    JobTables {
        sqlite: migrator,
        postgres: migrator,
    }
}

async fn count(ledger: &Ledger, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(ledger.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_jobs_migrations_apply_once_and_an_edited_applied_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = "CREATE TABLE example_widgets (id BIGINT NOT NULL);";
    let v1 = tables(dir.path(), &[("1_widgets.sql", first)]).await;
    let v2 = tables(
        dir.path(),
        &[
            ("1_widgets.sql", first),
            (
                "2_gadgets.sql",
                "CREATE TABLE example_gadgets (id BIGINT NOT NULL);",
            ),
        ],
    )
    .await;
    let edited = tables(
        dir.path(),
        &[(
            "1_widgets.sql",
            "CREATE TABLE example_widgets (id BIGINT, name TEXT);",
        )],
    )
    .await;
    for url in urls(dir.path(), "patrol_job_tables_test").await {
        let ledger = Ledger::connect_with_job_tables(&url, &[("example", v1)])
            .await
            .unwrap();
        sqlx::query("INSERT INTO example_widgets (id) VALUES (7)")
            .execute(ledger.pool())
            .await
            .unwrap();
        ledger.close().await;
        // Again, and with a migration added: only the new one runs.
        for _ in 0..2 {
            let ledger = Ledger::connect_with_job_tables(&url, &[("example", v2)])
                .await
                .unwrap();
            assert_eq!(
                count(&ledger, "SELECT COUNT(*) FROM example_widgets").await,
                1
            );
            assert_eq!(
                count(&ledger, "SELECT COUNT(*) FROM example_gadgets").await,
                0
            );
            assert_eq!(
                count(
                    &ledger,
                    "SELECT COUNT(*) FROM job_migrations WHERE job = 'example'"
                )
                .await,
                2
            );
            ledger.close().await;
        }
        let refused = match Ledger::connect_with_job_tables(&url, &[("example", edited)]).await {
            Ok(_) => panic!("an edited applied migration was accepted ({url})"),
            Err(err) => format!("{err:#}"),
        };
        assert!(
            refused
                .contains("job example's migration 1 (widgets) was changed after it was applied"),
            "{refused}"
        );
    }
}

/// What a ledger made before jobs had tables holds: runner migrations 5
/// and 6 (a job's table, `verifications`, since moved into the job).
fn tables_moved_into_a_job(backend: Backend) -> [(i64, &'static str, &'static str); 2] {
    match backend {
        Backend::Sqlite => [
            (5, "verifications", include_str!("../../../../tests/data/ledger_before_job_tables/sqlite/0005_verifications.sql")),
            (6, "verification basis", include_str!("../../../../tests/data/ledger_before_job_tables/sqlite/0006_verification_basis.sql")),
        ],
        Backend::Postgres => [
            (5, "verifications", include_str!("../../../../tests/data/ledger_before_job_tables/postgres/0005_verifications.sql")),
            (6, "verification basis", include_str!("../../../../tests/data/ledger_before_job_tables/postgres/0006_verification_basis.sql")),
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
