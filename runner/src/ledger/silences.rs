//! Silence rows (`patrol silence`; read by recording in the run's
//! transaction). What a silence matches is `alerting/silences.rs`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{from_millis, to_millis, Ledger};
use crate::alerting::matcher::Matcher;
use crate::alerting::silences::Silence;

const COLUMNS: &str =
    "id, matchers, reason, created_by, created_at, starts_at, ends_at, expired_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<Silence> {
    Ok(Silence {
        id: row.try_get(0)?,
        matcher: serde_json::from_str(&row.try_get::<String, _>(1)?)?,
        reason: row.try_get(2)?,
        created_by: row.try_get(3)?,
        created_at: from_millis(row.try_get(4)?),
        starts_at: from_millis(row.try_get(5)?),
        ends_at: from_millis(row.try_get(6)?),
        expired_at: row.try_get::<Option<i64>, _>(7)?.map(from_millis),
    })
}

pub async fn active_silences(conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<Vec<Silence>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM silences WHERE expired_at IS NULL AND starts_at <= $1 AND ends_at > $1"
    ))
    .bind(to_millis(now))
    .fetch_all(&mut *conn)
    .await
    .context("cannot read silences")?;
    rows.iter().map(decode).collect()
}

impl Ledger {
    pub async fn add_silence(
        &self,
        matcher: &Matcher,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO silences (matchers, reason, created_by, created_at, starts_at, ends_at) \
             VALUES ($1, $2, $3, $4, $4, $5) RETURNING id",
        )
        .bind(serde_json::to_string(matcher)?)
        .bind(reason)
        .bind(by)
        .bind(to_millis(now))
        .bind(to_millis(ends_at))
        .fetch_one(self.pool())
        .await
        .context("cannot record the silence")?;
        Ok(id)
    }

    /// Silences, newest first; only the ones in force unless `all`.
    pub async fn silences(&self, now: DateTime<Utc>, all: bool) -> Result<Vec<Silence>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM silences ORDER BY id DESC"))
            .fetch_all(self.pool())
            .await
            .context("cannot read silences")?;
        let silences = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(silences
            .into_iter()
            .filter(|silence| all || silence.is_active(now))
            .collect())
    }

    /// Ends a silence now. `false` when there is no such silence in force.
    pub async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE silences SET expired_at = $1 WHERE id = $2 AND expired_at IS NULL AND ends_at > $1",
        )
        .bind(to_millis(now))
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(updated == 1)
    }
}
