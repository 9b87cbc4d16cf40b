//! PostgreSQL copies of a table: its columns from the catalog, its rows
//! read as a DataFrame (so they are digested by the same canonical code as
//! files), and, between two PostgreSQL copies, a compare that does not pull
//! every row (`bisect.rs`).
//!
//! Connections are read-only (`default_transaction_read_only`) with the
//! session settings fixed (UTC, ISO dates, exact floats, hex bytea), so
//! the text of a value — what the in-database checksums hash — does not
//! depend on the server's or the role's defaults.

use std::time::Duration;

use futures::TryStreamExt;
use polars::prelude::*;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection, Row};

/// What a column holds, as far as comparing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    /// text, varchar, char, name, citext, uuid, json, jsonb: compared as
    /// their text.
    Text,
    Bool,
    Bytes,
    Timestamp,
    TimestampTz,
    Date,
    /// No canonical form (numeric, interval, arrays, …): named if compared.
    Other,
}

impl Kind {
    fn of(type_name: &str) -> Self {
        match type_name {
            "int2" | "int4" | "int8" | "oid" => Kind::Int,
            "float4" | "float8" => Kind::Float,
            "text" | "varchar" | "bpchar" | "name" | "citext" | "uuid" | "json" | "jsonb" => {
                Kind::Text
            }
            "bool" => Kind::Bool,
            "bytea" => Kind::Bytes,
            "timestamp" => Kind::Timestamp,
            "timestamptz" => Kind::TimestampTz,
            "date" => Kind::Date,
            _ => Kind::Other,
        }
    }

    /// Which values the column holds (the same families as `canonical.rs`).
    pub fn family(&self) -> &'static str {
        match self {
            Kind::Int | Kind::Float => "number",
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Bytes => "bytes",
            Kind::Timestamp | Kind::TimestampTz => "timestamp",
            Kind::Date => "date",
            Kind::Other => "other",
        }
    }
}

/// One column of a PostgreSQL table.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    /// As `format_type` shows it (`timestamp(3) without time zone`).
    pub type_name: String,
    pub kind: Kind,
}

/// A PostgreSQL table to read.
pub struct PgTable {
    pub pool: PgPool,
    /// `"schema"."table"`, quoted.
    pub relation: String,
    /// How errors and summaries name it (no password).
    pub shown: String,
    pub columns: Vec<PgColumn>,
    /// Estimated rows (the planner's `reltuples`), if the table was analyzed.
    pub estimated_rows: Option<u64>,
}

/// `"name"` with inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects read-only and reads the table's columns; a table that does not
/// exist, an unreachable server or a bad password is an error naming the
/// source.
pub async fn open(url: &str, schema: &str, table: &str, shown: &str) -> Result<PgTable, String> {
    // One plain connection first: a pool retries a refused connection until
    // its acquire timeout, a direct one fails at once with the reason.
    let probe = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(url))
        .await
        .map_err(|_| format!("{shown}: cannot connect: no answer in 15s"))?
        // sqlx's connect errors name neither the URL nor the password.
        .map_err(|err| format!("{shown}: cannot connect: {err}"))?;
    probe.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(15))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "SET default_transaction_read_only = on; SET TimeZone = 'UTC'; \
                     SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; \
                     SET bytea_output = 'hex'; SET IntervalStyle = 'iso_8601'",
                )
                .await
                .map(|_| ())
            })
        })
        .connect(url)
        .await
        // sqlx's connect errors name neither the URL nor the password.
        .map_err(|err| format!("{shown}: cannot connect: {err}"))?;
    let relation = format!("{}.{}", quote(schema), quote(table));
    let fail = |err: sqlx::Error| format!("{shown}: {err}");
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END::text \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(&relation)
    .fetch_all(&pool)
    .await
    .map_err(fail)?;
    if rows.is_empty() {
        return Err(format!("{shown}: no table {schema}.{table}"));
    }
    let columns = rows
        .iter()
        .map(|row| PgColumn {
            name: row.get(0),
            type_name: row.get(1),
            kind: Kind::of(row.get::<String, _>(2).as_str()),
        })
        .collect();
    let estimated: Option<f32> =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
            .bind(&relation)
            .fetch_optional(&pool)
            .await
            .map_err(fail)?;
    Ok(PgTable {
        pool,
        relation,
        shown: shown.to_string(),
        columns,
        estimated_rows: estimated.filter(|r| *r >= 0.0).map(|r| r as u64),
    })
}

impl PgTable {
    pub fn column(&self, name: &str) -> Option<&PgColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Whether a unique index without a predicate covers exactly `key`, so
    /// no key can be held by two rows.
    pub async fn key_is_unique(&self, key: &[String]) -> Result<bool, String> {
        let mut sorted = key.to_vec();
        sorted.sort();
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i \
               WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
                 AND i.indnatts = $2 \
                 AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
                      FROM pg_attribute a \
                      WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])) = $3)",
        )
        .bind(&self.relation)
        .bind(key.len() as i16)
        .bind(&sorted)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| format!("{}: {err}", self.shown))
    }

    /// Reads `columns` of the rows matching `filter` (SQL over the table's
    /// columns and `__patrol_kh`, the key hash; `None`: every row) into a
    /// DataFrame typed like a file's: integers as Int64, floats as Float64,
    /// timestamps as UTC microseconds, dates as days.
    pub async fn read(
        &self,
        columns: &[String],
        key_hash: Option<&str>,
        where_sql: Option<&str>,
        filter: Option<(&str, &[i64])>,
    ) -> Result<DataFrame, String> {
        let mut builders = Vec::new();
        let mut selected = Vec::new();
        for name in columns {
            let column = self
                .column(name)
                .ok_or_else(|| format!("{}: no column `{name}`", self.shown))?;
            selected.push(
                select_expr(column)
                    .ok_or_else(|| crate::canonical::unsupported(name, &column.type_name))?,
            );
            builders.push(Builder::new(column));
        }
        let key_hash = key_hash.map_or_else(
            || "NULL::int8".to_string(),
            |key| format!("hashtextextended({key}, 0)"),
        );
        let mut sql = format!(
            "SELECT {} FROM (SELECT {key_hash} AS __patrol_kh, * FROM {}{} OFFSET 0) AS s",
            selected.join(", "),
            self.relation,
            where_clause(where_sql)
        );
        let buckets: Vec<i64> = match filter {
            Some((condition, buckets)) => {
                sql.push_str(" WHERE ");
                sql.push_str(condition);
                buckets.to_vec()
            }
            None => Vec::new(),
        };
        let mut query = sqlx::query(&sql);
        if filter.is_some() {
            query = query.bind(buckets);
        }
        let mut rows = query.fetch(&self.pool);
        let fail = |err: sqlx::Error| format!("{}: {err}", self.shown);
        while let Some(row) = rows.try_next().await.map_err(fail)? {
            for (at, builder) in builders.iter_mut().enumerate() {
                builder.push(&row, at).map_err(fail)?;
            }
        }
        let series: Vec<Column> = builders
            .into_iter()
            .map(|b| b.finish().map(Column::from))
            .collect::<Result<_, _>>()
            .map_err(|err| format!("{}: {err}", self.shown))?;
        DataFrame::new_infer_height(series).map_err(|err| format!("{}: {err}", self.shown))
    }
}

/// ` WHERE (…)` for an operator's row filter.
pub fn where_clause(where_sql: Option<&str>) -> String {
    match where_sql {
        Some(sql) if !sql.trim().is_empty() => format!(" WHERE ({sql})"),
        _ => String::new(),
    }
}

/// The SELECT expression that brings `column` over in a decodable type.
fn select_expr(column: &PgColumn) -> Option<String> {
    let q = format!("s.{}", quote(&column.name));
    Some(match column.kind {
        Kind::Int => format!("{q}::int8"),
        Kind::Float => format!("{q}::float8"),
        Kind::Text => format!("{q}::text"),
        Kind::Bool | Kind::Bytes => q,
        // Exact in PostgreSQL 14+ (extract returns numeric); a timestamp
        // without a zone is taken as UTC.
        Kind::Timestamp | Kind::TimestampTz => {
            format!("(extract(epoch FROM {q}) * 1000000)::int8")
        }
        Kind::Date => format!("({q} - DATE '1970-01-01')"),
        Kind::Other => return None,
    })
}

/// One column's values as they are read.
enum Builder {
    Int(String, Vec<Option<i64>>),
    Float(String, Vec<Option<f64>>),
    Text(String, Vec<Option<String>>),
    Bool(String, Vec<Option<bool>>),
    Bytes(String, Vec<Option<Vec<u8>>>),
    Micros(String, Vec<Option<i64>>),
    Days(String, Vec<Option<i32>>),
}

impl Builder {
    fn new(column: &PgColumn) -> Self {
        let name = column.name.clone();
        match column.kind {
            Kind::Int => Builder::Int(name, Vec::new()),
            Kind::Float => Builder::Float(name, Vec::new()),
            Kind::Text | Kind::Other => Builder::Text(name, Vec::new()),
            Kind::Bool => Builder::Bool(name, Vec::new()),
            Kind::Bytes => Builder::Bytes(name, Vec::new()),
            Kind::Timestamp | Kind::TimestampTz => Builder::Micros(name, Vec::new()),
            Kind::Date => Builder::Days(name, Vec::new()),
        }
    }

    fn push(&mut self, row: &PgRow, at: usize) -> Result<(), sqlx::Error> {
        match self {
            Builder::Int(_, v) | Builder::Micros(_, v) => v.push(row.try_get(at)?),
            Builder::Float(_, v) => v.push(row.try_get(at)?),
            Builder::Text(_, v) => v.push(row.try_get(at)?),
            Builder::Bool(_, v) => v.push(row.try_get(at)?),
            Builder::Bytes(_, v) => v.push(row.try_get(at)?),
            Builder::Days(_, v) => v.push(row.try_get(at)?),
        }
        Ok(())
    }

    fn finish(self) -> PolarsResult<Series> {
        Ok(match self {
            Builder::Int(name, v) => Series::new(name.into(), v),
            Builder::Float(name, v) => Series::new(name.into(), v),
            Builder::Text(name, v) => Series::new(name.into(), v),
            Builder::Bool(name, v) => Series::new(name.into(), v),
            Builder::Bytes(name, v) => {
                let values: Vec<Option<&[u8]>> = v.iter().map(|b| b.as_deref()).collect();
                Series::new(name.into(), values)
            }
            Builder::Micros(name, v) => Series::new(name.into(), v)
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?,
            Builder::Days(name, v) => Series::new(name.into(), v).cast(&DataType::Date)?,
        })
    }
}
