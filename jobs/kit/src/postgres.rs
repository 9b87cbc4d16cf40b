//! A PostgreSQL query as a source: its rows as JSON records (one
//! `row_to_json` object each, the same bytes an NDJSON line would hold), so
//! a job reads a table with the code that reads its NDJSON files.
//!
//! - The query runs in a `READ ONLY` transaction with a statement timeout:
//!   a source cannot change the database it reads, nor hang a run.
//! - With a cursor column, each read returns the rows after the last one
//!   read before, in cursor order, at most `max_rows` of them — but never
//!   stopping between two rows with the same cursor value, so the next read
//!   (`cursor > last`) cannot skip a row. Rows whose cursor is NULL cannot
//!   be placed and are not read (say so in the job's docs).
//! - A row longer than `max_row_bytes` is counted malformed, like an
//!   overlong NDJSON line, and not handed on.

use std::time::Duration;

use futures::TryStreamExt;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use tokio::sync::OnceCell;

use crate::SourceStats;

/// What to read.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// A `SELECT` (or any query returning rows); its columns become the
    /// record's fields.
    pub query: String,
    /// A column of the query's result that grows with new rows (a
    /// timestamp, a sequence id); `None` reads the whole result each time.
    pub cursor_column: Option<String>,
    /// Rows per read; the rest waits for the next read (`more_waiting`).
    pub max_rows: u64,
    /// Longest record taken.
    pub max_row_bytes: usize,
    pub statement_timeout: Duration,
}

/// A query source as a job keeps it between runs: its connection pool is
/// made on the first read (a job is built before any runtime work may
/// start) and reused by every run after.
pub struct QuerySource {
    /// The connection URL; it may carry a password, so it is never shown.
    url: String,
    pub spec: QuerySpec,
    pool: OnceCell<PgPool>,
}

impl std::fmt::Debug for QuerySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySource")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl QuerySource {
    pub fn new(url: String, spec: QuerySpec) -> Self {
        Self {
            url,
            spec,
            pool: OnceCell::new(),
        }
    }

    /// [`read_rows`] on this source's pool.
    pub async fn read(
        &self,
        name: &str,
        after: Option<&str>,
        on_row: impl FnMut(u64, &[u8]) -> Result<(), String>,
    ) -> Result<QueryRead, String> {
        let pool = self
            .pool
            .get_or_try_init(|| {
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(self.spec.statement_timeout)
                    .connect(&self.url)
            })
            .await
            // sqlx's connect errors name neither the URL nor the password.
            .map_err(|err| format!("{name}: cannot connect: {err}"))?;
        read_rows(pool, name, &self.spec, after, on_row).await
    }
}

/// What one read returned besides its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRead {
    /// `lines` = rows read; `malformed` = overlong rows; `more_waiting`.
    pub stats: SourceStats,
    /// The cursor of the last row read (the value's text form), to pass as
    /// `after` next time; unchanged when nothing new was read.
    pub cursor: Option<String>,
}

/// Reads `spec`'s rows after cursor `after`, handing each record (JSON
/// object bytes) and its row number (1-based within this read) to `on_row`.
/// An `Err` from `on_row` stops the read and is returned.
pub async fn read_rows(
    pool: &PgPool,
    name: &str,
    spec: &QuerySpec,
    after: Option<&str>,
    mut on_row: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<QueryRead, String> {
    let fail = |err: sqlx::Error| format!("{name}: {err}");
    let mut tx = pool.begin().await.map_err(fail)?;
    tx.execute("SET TRANSACTION READ ONLY")
        .await
        .map_err(fail)?;
    tx.execute(
        format!(
            "SET LOCAL statement_timeout = {}",
            spec.statement_timeout.as_millis().max(1)
        )
        .as_str(),
    )
    .await
    .map_err(fail)?;
    let sql = match &spec.cursor_column {
        None => format!(
            "SELECT row_to_json(q)::text, NULL::text FROM ({}) AS q",
            spec.query
        ),
        Some(column) => {
            let column = quote_identifier(column);
            let kind = cursor_type(&mut tx, &spec.query, &column)
                .await
                .map_err(|err| format!("{name}: cursor column: {err}"))?;
            let after_clause = if after.is_some() {
                format!(" AND q.{column} > CAST($1::text AS {kind})")
            } else {
                String::new()
            };
            format!(
                "SELECT row_to_json(q)::text, q.{column}::text FROM ({}) AS q \
                 WHERE q.{column} IS NOT NULL{after_clause} ORDER BY q.{column}",
                spec.query
            )
        }
    };
    let mut query = sqlx::query(&sql);
    if let Some(after) = after {
        query = query.bind(after);
    }
    let mut read = QueryRead {
        cursor: after.map(str::to_string),
        ..QueryRead::default()
    };
    let mut rows = query.fetch(&mut *tx);
    while let Some(row) = rows.try_next().await.map_err(fail)? {
        let record: Option<String> = row.try_get(0).map_err(fail)?;
        let cursor: Option<String> = row.try_get(1).map_err(fail)?;
        if read.stats.lines >= spec.max_rows && cursor != read.cursor {
            // The limit falls between two cursor values: the rest is read
            // next time, from here.
            read.stats.more_waiting = true;
            break;
        }
        read.stats.lines += 1;
        let number = read.stats.lines;
        if cursor.is_some() {
            read.cursor = cursor;
        }
        let record = record.unwrap_or_default();
        if record.len() > spec.max_row_bytes {
            read.stats.malformed_line(|| {
                format!(
                    "{name}: row {number}: {} bytes, more than the {} a record may have",
                    record.len(),
                    spec.max_row_bytes
                )
            });
            continue;
        }
        on_row(number, record.as_bytes())?;
    }
    drop(rows);
    // Read only: ending it either way changes nothing.
    tx.rollback().await.map_err(fail)?;
    Ok(read)
}

/// The PostgreSQL type of the query's cursor column, as the server names
/// it, so the cursor's text can be cast back for the comparison (and an
/// index on the column still serves it).
async fn cursor_type(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    query: &str,
    column: &str,
) -> Result<String, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT format_type(t.oid, NULL) FROM pg_type t \
         WHERE t.oid = pg_typeof((SELECT q.{column} FROM ({query}) AS q LIMIT 0))::oid"
    ))
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(row) => row.try_get(0),
        None => Err(sqlx::Error::ColumnNotFound(column.to_string())),
    }
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A table of its own in the test server's database.
    async fn table(rows: &[(i64, &str)]) -> (PgPool, String) {
        let url = std::env::var("PATROL_TEST_POSTGRES_URL").expect(
            "PATROL_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
        );
        let pool = PgPool::connect(&url).await.unwrap();
        let table = format!("kit_source_{}", uuid::Uuid::new_v4().simple());
        pool.execute(
            format!("CREATE TABLE {table} (seq bigint, at timestamptz, tenant text, note text)")
                .as_str(),
        )
        .await
        .unwrap();
        for (seq, tenant) in rows {
            sqlx::query(&format!(
                "INSERT INTO {table} VALUES ($1, TIMESTAMPTZ '2026-12-01 00:00:00+00' + $1 * INTERVAL '1 minute', $2, NULL)"
            ))
            .bind(seq)
            .bind(*tenant)
            .execute(&pool)
            .await
            .unwrap();
        }
        (pool, table)
    }

    fn spec(table: &str, cursor: Option<&str>, max_rows: u64) -> QuerySpec {
        QuerySpec {
            query: format!("SELECT seq, at, tenant FROM {table}"),
            cursor_column: cursor.map(str::to_string),
            max_rows,
            max_row_bytes: 1 << 20,
            statement_timeout: Duration::from_secs(10),
        }
    }

    async fn read(
        pool: &PgPool,
        spec: &QuerySpec,
        after: Option<&str>,
    ) -> (Vec<serde_json::Value>, QueryRead) {
        let mut records = Vec::new();
        let read = read_rows(pool, "test", spec, after, |_, bytes| {
            records.push(serde_json::from_slice(bytes).unwrap());
            Ok(())
        })
        .await
        .unwrap();
        (records, read)
    }

    #[tokio::test]
    async fn a_cursor_reads_each_row_once_across_reads_and_never_splits_a_tie() {
        // seq 2 twice: a limit of 2 must not stop between them.
        let (pool, table) = table(&[(1, "a"), (2, "b"), (2, "c"), (3, "d"), (4, "e")]).await;
        let spec = spec(&table, Some("seq"), 2);
        let (first, read1) = read(&pool, &spec, None).await;
        assert_eq!(first.len(), 3, "{first:?}");
        assert_eq!(first[0]["tenant"], "a");
        assert!(read1.stats.more_waiting);
        assert_eq!(read1.cursor.as_deref(), Some("2"));

        let (second, read2) = read(&pool, &spec, read1.cursor.as_deref()).await;
        let tenants: Vec<_> = second.iter().map(|r| r["tenant"].clone()).collect();
        assert_eq!(tenants, ["d", "e"]);
        assert!(!read2.stats.more_waiting);

        let (third, read3) = read(&pool, &spec, read2.cursor.as_deref()).await;
        assert!(third.is_empty());
        assert_eq!(read3.cursor, read2.cursor, "nothing new keeps the cursor");
    }

    #[tokio::test]
    async fn a_timestamp_cursor_round_trips_through_its_text() {
        let (pool, table) = table(&[(1, "a"), (2, "b"), (3, "c")]).await;
        let spec = spec(&table, Some("at"), 1);
        let (first, read1) = read(&pool, &spec, None).await;
        assert_eq!(first.len(), 1);
        let (rest, _) = read(
            &pool,
            &QuerySpec {
                max_rows: 10,
                ..spec
            },
            read1.cursor.as_deref(),
        )
        .await;
        let seqs: Vec<_> = rest.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[tokio::test]
    async fn the_source_cannot_write_and_overlong_rows_are_counted() {
        let (pool, table) = table(&[
            (1, "a"),
            (
                2,
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            ),
        ])
        .await;
        // A query that writes (here: advances a sequence) is refused.
        let sequence = format!("{table}_seq");
        pool.execute(format!("CREATE SEQUENCE {sequence}").as_str())
            .await
            .unwrap();
        let writing = QuerySpec {
            query: format!("SELECT nextval('{sequence}') AS n, tenant FROM {table}"),
            ..spec(&table, None, 100)
        };
        let err = read_rows(&pool, "orders", &writing, None, |_, _| Ok(()))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("orders: ") && err.contains("read-only"),
            "{err}"
        );

        let narrow = QuerySpec {
            max_row_bytes: 60,
            ..spec(&table, None, 100)
        };
        let (records, read) = read(&pool, &narrow, None).await;
        assert_eq!(records.len(), 1);
        assert_eq!((read.stats.lines, read.stats.malformed), (2, 1));
        assert!(
            read.stats.samples[0].contains("row 2"),
            "{:?}",
            read.stats.samples
        );
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 2);
        let next: i64 = sqlx::query_scalar(&format!("SELECT nextval('{sequence}')"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(next, 1, "the source's query did not advance the sequence");
    }

    #[tokio::test]
    async fn a_source_connects_once_and_reads_again_on_the_same_pool() {
        let (_pool, table) = table(&[(1, "a"), (2, "b")]).await;
        let url = std::env::var("PATROL_TEST_POSTGRES_URL").unwrap();
        let source = QuerySource::new(url, spec(&table, None, 10));
        for _ in 0..2 {
            let mut rows = 0;
            source
                .read("orders", None, |_, _| {
                    rows += 1;
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(rows, 2);
        }
        assert!(!format!("{source:?}").contains("postgres://"));
        let unreachable = QuerySource::new(
            "postgres://patrol:hunter2@127.0.0.1:1/none".into(),
            QuerySpec {
                statement_timeout: Duration::from_secs(2),
                ..spec(&table, None, 10)
            },
        );
        let err = unreachable
            .read("orders", None, |_, _| Ok(()))
            .await
            .unwrap_err();
        assert!(err.starts_with("orders: cannot connect"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unknown_cursor_column_is_an_error_naming_the_source() {
        let (pool, table) = table(&[(1, "a")]).await;
        let err = read_rows(
            &pool,
            "orders",
            &spec(&table, Some("nope"), 10),
            None,
            |_, _| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("orders: cursor column"), "{err}");
    }
}
