//! Jobs' tables on SQLite and a real PostgreSQL: applied once, recorded per
//! job, an edited applied migration refused. (The upgrade of a ledger made
//! before jobs had tables, with a real job's table, is
//! `runner/tests/ledger_upgrade.rs`: runner/src names no job.)

use std::path::Path;

use patrol_job_api::JobTables;
use sqlx::migrate::Migrator;

use crate::ledger::{create_scratch_postgres_database, Ledger};

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
    for url in urls(dir.path(), "patrol_ledger_tables_of_jobs").await {
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
