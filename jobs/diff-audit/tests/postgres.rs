//! Two PostgreSQL databases on the real server compared by bisection: every
//! planted difference named with its reason (NULL vs empty string, a
//! timestamp that lost precision, a deleted row, a duplicate key, NFC vs
//! NFD, a changed amount), equal values stored in other types (int4/int8,
//! timestamp/timestamptz, varchar/text) not reported, only a few rows read,
//! and clear errors for an unreachable server, a missing table, a wrong
//! key and a type without a canonical form.
#![allow(clippy::unwrap_used)]

use patrol_job_diff_audit::bisect::{self, Tuning};
use patrol_job_diff_audit::postgres;
use patrol_job_diff_audit::snapshot::{CompareSpec, Reason, Side};
use patrol_job_diff_audit::source::{self, Source};
use sqlx::{Executor, PgPool};

fn server_url() -> String {
    std::env::var("PATROL_TEST_POSTGRES_URL").expect(
        "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    )
}

/// A database of its own on the test server, dropped when the test ends.
struct Database {
    admin: PgPool,
    name: String,
    url: String,
}

impl Database {
    async fn create(tag: &str) -> Self {
        let server = server_url();
        let admin = PgPool::connect(&server).await.unwrap();
        let name = format!("patrol_da_{tag}_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => unreachable!("a server URL names a database"),
        };
        Self { admin, name, url }
    }

    async fn run(&self, sql: &str) {
        let pool = PgPool::connect(&self.url).await.unwrap();
        pool.execute(sql).await.unwrap();
        pool.close().await;
    }

    async fn drop(self) {
        self.admin
            .execute(format!("DROP DATABASE {} WITH (FORCE)", self.name).as_str())
            .await
            .unwrap();
    }
}

const ROWS: i64 = 3_000;

/// The EU copy: `ROWS` rows, a primary key, narrow types.
fn eu_table() -> String {
    format!(
        "CREATE TABLE audit (tenant varchar(20) NOT NULL, id int4 NOT NULL, note text, amount int4, \
           at timestamp(6), PRIMARY KEY (tenant, id));
         INSERT INTO audit SELECT CASE WHEN i % 3 = 0 THEN 'acme' ELSE 'globex' END, i, 'ok', i * 7,
           TIMESTAMP '2026-11-02 10:00:00' + i * INTERVAL '1.234567 second'
         FROM generate_series(1, {ROWS}) AS i;
         UPDATE audit SET note = NULL WHERE tenant = 'acme' AND id = 3;
         UPDATE audit SET note = 'caf' || U&'\\00E9' WHERE tenant = 'acme' AND id = 900;
         ANALYZE audit;"
    )
}

/// The US copy: the same rows in wider types, no primary key, and the
/// planted differences.
fn us_table() -> String {
    format!(
        "CREATE TABLE audit (tenant text, id int8, note varchar(50), amount int8, at timestamptz);
         INSERT INTO audit SELECT CASE WHEN i % 3 = 0 THEN 'acme' ELSE 'globex' END, i, 'ok', i * 7,
           (TIMESTAMP '2026-11-02 10:00:00' + i * INTERVAL '1.234567 second') AT TIME ZONE 'UTC'
         FROM generate_series(1, {ROWS}) AS i;
         UPDATE audit SET note = '' WHERE tenant = 'acme' AND id = 3;
         UPDATE audit SET at = date_trunc('milliseconds', at) WHERE tenant = 'globex' AND id = 7;
         DELETE FROM audit WHERE tenant = 'globex' AND id = 11;
         UPDATE audit SET note = 'cafe' || U&'\\0301' WHERE tenant = 'acme' AND id = 900;
         UPDATE audit SET amount = amount + 1 WHERE tenant = 'globex' AND id = 2000;
         INSERT INTO audit SELECT tenant, id, note, amount, at FROM audit WHERE tenant = 'acme' AND id = 2400;
         ANALYZE audit;"
    )
}

fn spec() -> CompareSpec {
    CompareSpec {
        key: vec!["tenant".into(), "id".into()],
        columns: None,
    }
}

#[tokio::test]
async fn two_databases_are_compared_by_bisection_and_every_planted_row_is_named() {
    let (eu, us) = (Database::create("eu").await, Database::create("us").await);
    eu.run(&eu_table()).await;
    us.run(&us_table()).await;
    let left = postgres::open(&eu.url, "public", "audit", "eu")
        .await
        .unwrap();
    let right = postgres::open(&us.url, "public", "audit", "us")
        .await
        .unwrap();
    // Small fetches force more than one level on a small table.
    let tuning = Tuning {
        first_level_max: 64,
        split: 16,
        fetch_rows: 100,
    };
    let (diffs, summary, stats) = bisect::compare(&left, &right, &spec(), None, tuning)
        .await
        .unwrap();
    let mut found: Vec<(String, i64, Reason, Option<Side>)> = diffs
        .iter()
        .map(|d| {
            (
                d.key[0].1.as_str().unwrap().to_string(),
                d.key[1].1.as_i64().unwrap(),
                d.reason,
                d.side,
            )
        })
        .collect();
    found.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let expected = vec![
        ("acme".to_string(), 3, Reason::Mismatch, None),
        ("acme".to_string(), 900, Reason::Mismatch, None),
        (
            "acme".to_string(),
            2400,
            Reason::Duplicate,
            Some(Side::Right),
        ),
        ("globex".to_string(), 7, Reason::Mismatch, None),
        ("globex".to_string(), 11, Reason::Missing, Some(Side::Right)),
        ("globex".to_string(), 2000, Reason::Mismatch, None),
    ];
    assert_eq!(found, expected);
    assert_eq!((summary.left_rows, summary.right_rows), (3_000, 3_000));
    assert_eq!(summary.equal, 3_000 - 6);
    assert!(stats.levels.len() >= 2, "{stats:?}");
    assert!(stats.unique_left && !stats.unique_right, "{stats:?}");
    // Only the rows of differing buckets (and the duplicate's) were read.
    assert!(
        stats.fetched_left < 1_000 && stats.fetched_right < 1_000,
        "{stats:?}"
    );

    // The same tables through the CLI's path, with an operator's filter.
    let l = Source::parse(&format!("{}#public.audit", eu.url)).unwrap();
    let r = Source::parse(&format!("{}#public.audit", us.url)).unwrap();
    let (diffs, _, stats) = source::compare(&l, &r, &spec(), Some("tenant = 'globex'"))
        .await
        .unwrap();
    assert!(stats.is_some());
    let ids: Vec<i64> = diffs.iter().map(|d| d.key[1].1.as_i64().unwrap()).collect();
    assert_eq!(ids, vec![7, 11, 2000]);

    // Equal copies: one level, nothing read.
    us.run(
        "DELETE FROM audit WHERE tenant = 'acme' AND id = 2400 AND ctid <> (SELECT min(ctid) FROM audit WHERE tenant = 'acme' AND id = 2400);
         UPDATE audit SET note = 'ok' WHERE id = 3 AND tenant = 'acme';
         UPDATE audit SET at = TIMESTAMP '2026-11-02 10:00:00' + 7 * INTERVAL '1.234567 second' WHERE tenant = 'globex' AND id = 7;
         UPDATE audit SET note = 'caf' || U&'\\00E9' WHERE tenant = 'acme' AND id = 900;
         UPDATE audit SET amount = 14000 WHERE tenant = 'globex' AND id = 2000;
         INSERT INTO audit VALUES ('globex', 11, 'ok', 77, TIMESTAMP '2026-11-02 10:00:00' + 11 * INTERVAL '1.234567 second');",
    )
    .await;
    eu.run("UPDATE audit SET note = 'ok' WHERE tenant = 'acme' AND id = 3")
        .await;
    let right = postgres::open(&us.url, "public", "audit", "us")
        .await
        .unwrap();
    let (diffs, summary, stats) = bisect::compare(&left, &right, &spec(), None, Tuning::default())
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(summary.equal, 3_000);
    assert_eq!(stats.levels.len(), 1);
    assert_eq!((stats.fetched_left, stats.fetched_right), (0, 0));
    left.pool.close().await;
    right.pool.close().await;
    eu.drop().await;
    us.drop().await;
}

#[tokio::test]
async fn bad_sources_are_clear_errors_never_identical() {
    let db = Database::create("bad").await;
    db.run(
        "CREATE TABLE audit (tenant text, id int8, amount numeric(10,2), note text);
         INSERT INTO audit VALUES ('acme', 1, 1.50, 'x');
         CREATE TABLE other (tenant text, id text, note text);",
    )
    .await;
    let source = |table: &str| Source::parse(&format!("{}#{table}", db.url)).unwrap();
    let err = |result: Result<_, String>| result.err().unwrap();
    let key = |cols: &[&str]| CompareSpec {
        key: cols.iter().map(|c| c.to_string()).collect(),
        columns: None,
    };
    // An unreachable server.
    let unreachable = Source::parse("postgres://nobody:pw@127.0.0.1:9/none#audit").unwrap();
    let e = err(source::compare(
        &unreachable,
        &source("audit"),
        &key(&["tenant", "id"]),
        None,
    )
    .await
    .map(|_| ()));
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!e.contains(":pw@"), "{e}");
    // A table that is not there.
    let e = err(source::compare(
        &source("audit"),
        &source("nope"),
        &key(&["tenant", "id"]),
        None,
    )
    .await
    .map(|_| ()));
    assert!(e.contains("no table public.nope"), "{e}");
    // A wrong key.
    let e = err(source::compare(
        &source("audit"),
        &source("audit"),
        &key(&["tenant", "uid"]),
        None,
    )
    .await
    .map(|_| ()));
    assert!(e.contains("no key column `uid`"), "{e}");
    // numeric has no canonical form.
    let e = err(source::compare(
        &source("audit"),
        &source("audit"),
        &key(&["tenant", "id"]),
        None,
    )
    .await
    .map(|_| ()));
    assert!(
        e.contains("column `amount`: type numeric(10,2) has no canonical form"),
        "{e}"
    );
    // A number on one side, text on the other.
    let columns = CompareSpec {
        key: vec!["tenant".into(), "id".into()],
        columns: Some(vec!["note".into()]),
    };
    let e = err(
        source::compare(&source("audit"), &source("other"), &columns, None)
            .await
            .map(|_| ()),
    );
    assert!(
        e.contains("column `id`") && e.contains("cannot be compared"),
        "{e}"
    );
    db.drop().await;
}
