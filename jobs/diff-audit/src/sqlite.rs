//! A SQLite copy of a table, read whole into a DataFrame (SQLite is a local
//! file: there is no network to save, so it is not bisected).
//!
//! SQLite stores any value in any column, so each column is read by its
//! declared type's affinity (INT → integer, REAL/FLOA/DOUB → float,
//! BOOL → boolean, BLOB → bytes, DATE → date, DATETIME/TIMESTAMP →
//! timestamp, else text) and a value of another storage class in it is an
//! error naming the row and column, never a silent cast.

use std::path::Path;
use std::str::FromStr;

use futures::TryStreamExt;
use polars::prelude::*;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::postgres::{quote, where_clause};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Int,
    Float,
    Bool,
    Bytes,
    Date,
    Timestamp,
    Text,
}

impl Affinity {
    fn of(declared: &str) -> Self {
        let declared = declared.to_ascii_uppercase();
        let has = |part: &str| declared.contains(part);
        if has("BOOL") {
            Affinity::Bool
        } else if has("DATETIME") || has("TIMESTAMP") {
            Affinity::Timestamp
        } else if has("DATE") {
            Affinity::Date
        } else if has("INT") {
            Affinity::Int
        } else if has("REAL") || has("FLOA") || has("DOUB") {
            Affinity::Float
        } else if has("BLOB") {
            Affinity::Bytes
        } else {
            Affinity::Text
        }
    }
}

/// Reads `table` of the SQLite file `path` (rows matching `where_sql`).
pub async fn read(
    path: &Path,
    table: &str,
    where_sql: Option<&str>,
    shown: &str,
) -> Result<DataFrame, String> {
    if !path.is_file() {
        return Err(format!("{shown}: no such database file"));
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|err| format!("{shown}: {err}"))?
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|err| format!("{shown}: cannot open: {err}"))?;
    let fail = |err: sqlx::Error| format!("{shown}: {err}");
    let columns: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT name, type FROM pragma_table_info('{table}')"
    ))
    .fetch_all(&pool)
    .await
    .map_err(fail)?;
    if columns.is_empty() {
        return Err(format!("{shown}: no table {table}"));
    }
    let names: Vec<String> = columns.iter().map(|(name, _)| quote(name)).collect();
    let sql = format!(
        "SELECT {} FROM {}{}",
        names.join(", "),
        quote(table),
        where_clause(where_sql)
    );
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|(name, declared)| ColumnBuilder::new(name, Affinity::of(declared)))
        .collect();
    let mut rows = sqlx::query(&sql).fetch(&pool);
    let mut number = 0usize;
    while let Some(row) = rows.try_next().await.map_err(fail)? {
        number += 1;
        for (at, builder) in builders.iter_mut().enumerate() {
            builder.push(&row, at).map_err(|err| {
                format!("{shown}: row {number}, column `{}`: {err}", builder.name)
            })?;
        }
    }
    let series: Vec<Column> = builders
        .into_iter()
        .map(|b| b.finish().map(Column::from))
        .collect::<Result<_, _>>()
        .map_err(|err| format!("{shown}: {err}"))?;
    DataFrame::new_infer_height(series).map_err(|err| format!("{shown}: {err}"))
}

struct ColumnBuilder {
    name: String,
    affinity: Affinity,
    ints: Vec<Option<i64>>,
    floats: Vec<Option<f64>>,
    texts: Vec<Option<String>>,
    bytes: Vec<Option<Vec<u8>>>,
}

impl ColumnBuilder {
    fn new(name: &str, affinity: Affinity) -> Self {
        Self {
            name: name.to_string(),
            affinity,
            ints: Vec::new(),
            floats: Vec::new(),
            texts: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn push(&mut self, row: &SqliteRow, at: usize) -> Result<(), String> {
        let raw = row.try_get_raw(at).map_err(|err| err.to_string())?;
        let stored = if raw.is_null() {
            "NULL".to_string()
        } else {
            raw.type_info().name().to_string()
        };
        let null = stored == "NULL";
        let wrong = || format!("a {stored} value in a column declared {:?}", self.affinity);
        let get = |err: sqlx::Error| err.to_string();
        match self.affinity {
            Affinity::Int | Affinity::Bool => {
                if !null && stored != "INTEGER" {
                    return Err(wrong());
                }
                self.ints.push(if null {
                    None
                } else {
                    Some(row.try_get(at).map_err(get)?)
                });
            }
            Affinity::Float => {
                if !null && stored != "REAL" && stored != "INTEGER" {
                    return Err(wrong());
                }
                self.floats.push(if null {
                    None
                } else {
                    Some(row.try_get(at).map_err(get)?)
                });
            }
            Affinity::Bytes => {
                if !null && stored != "BLOB" {
                    return Err(wrong());
                }
                self.bytes.push(if null {
                    None
                } else {
                    Some(row.try_get(at).map_err(get)?)
                });
            }
            Affinity::Text => {
                if !null && stored != "TEXT" {
                    return Err(wrong());
                }
                self.texts.push(if null {
                    None
                } else {
                    Some(row.try_get(at).map_err(get)?)
                });
            }
            Affinity::Date | Affinity::Timestamp => {
                if !null && stored != "TEXT" {
                    return Err(wrong());
                }
                let value = if null {
                    None
                } else {
                    let text: String = row.try_get(at).map_err(get)?;
                    Some(match self.affinity {
                        Affinity::Date => days(&text)?,
                        _ => nanos(&text)?,
                    })
                };
                self.ints.push(value);
            }
        }
        Ok(())
    }

    fn finish(self) -> PolarsResult<Series> {
        let name: PlSmallStr = self.name.as_str().into();
        Ok(match self.affinity {
            Affinity::Int => Series::new(name, self.ints),
            Affinity::Bool => Series::new(
                name,
                self.ints
                    .iter()
                    .map(|v| v.map(|v| v != 0))
                    .collect::<Vec<_>>(),
            ),
            Affinity::Float => Series::new(name, self.floats),
            Affinity::Bytes => {
                let values: Vec<Option<&[u8]>> = self.bytes.iter().map(|b| b.as_deref()).collect();
                Series::new(name, values)
            }
            Affinity::Text => Series::new(name, self.texts),
            Affinity::Date => Series::new(name, self.ints)
                .cast(&DataType::Int32)?
                .cast(&DataType::Date)?,
            Affinity::Timestamp => Series::new(name, self.ints)
                .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))?,
        })
    }
}

/// Days since 1970-01-01 of an ISO date (`2026-11-02`).
fn days(text: &str) -> Result<i64, String> {
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date (YYYY-MM-DD)"))?;
    Ok(date
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days())
}

/// UTC nanoseconds of an ISO timestamp: `2026-11-02 10:00:00.123`, with a
/// `T` or a space, with or without a zone (`Z`, `+02:00`; none is UTC).
fn nanos(text: &str) -> Result<i64, String> {
    let iso = text.trim().replacen(' ', "T", 1);
    let instant = chrono::DateTime::parse_from_rfc3339(&iso)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| format!("`{text}` is not an ISO timestamp"))?;
    instant
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("`{text}` is out of the nanosecond range"))
}
