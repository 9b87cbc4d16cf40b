//! Jobs' state between runs (`patrol_job_api::JobState`): read during a run
//! through [`ScheduleStateStore`], written by [`write_job_state`] inside
//! `finish_run`'s transaction (the run's end) and inside a checkpoint's
//! own (`checkpoints.rs`).

use std::collections::HashMap;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::{StateError, StateRead, StateWrite, MAX_STATE_KEY_LEN};
use sqlx::{AnyConnection, Row};

use super::model::to_millis;
use super::{Backend, Ledger};

/// Rows per multi-row statement: well under both backends' bind limits.
const CHUNK: usize = 400;

/// One schedule's state in the ledger.
pub struct ScheduleStateStore {
    ledger: Ledger,
    schedule_id: String,
}

impl ScheduleStateStore {
    pub fn new(ledger: Ledger, schedule_id: impl Into<String>) -> Self {
        Self {
            ledger,
            schedule_id: schedule_id.into(),
        }
    }
}

#[async_trait]
impl StateRead for ScheduleStateStore {
    async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "SELECT key, value FROM job_state WHERE schedule_id = {} AND key IN ({})",
                marks(self.ledger.backend(), 1, 1),
                marks(self.ledger.backend(), 2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(&self.schedule_id);
            for key in chunk {
                query = query.bind(key);
            }
            let rows = query
                .fetch_all(self.ledger.pool())
                .await
                .map_err(|err| StateError(err.to_string()))?;
            for row in rows {
                let key: String = row.try_get(0).map_err(|err| StateError(err.to_string()))?;
                let value: Vec<u8> = row.try_get(1).map_err(|err| StateError(err.to_string()))?;
                found.insert(key, value);
            }
        }
        Ok(found)
    }

    async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        // Keys compare bytewise on both backends (PostgreSQL: COLLATE "C"),
        // so a prefix is the range [prefix, prefix + U+10FFFF).
        let upper = format!("{prefix}\u{10FFFF}");
        let lower = after.filter(|after| *after >= prefix).unwrap_or(prefix);
        let op = if after.is_some_and(|after| after >= prefix) {
            ">"
        } else {
            ">="
        };
        let sql = format!(
            "SELECT key, value FROM job_state WHERE schedule_id = $1 AND key {op} $2 \
             AND key < $3 ORDER BY key LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.schedule_id)
            .bind(lower)
            .bind(upper)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.ledger.pool())
            .await
            .map_err(|err| StateError(err.to_string()))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|err| StateError(err.to_string()))
    }
}

/// Applies a run's state writes on `conn` (the run's end transaction, or
/// a checkpoint's), in order: a later write of a key wins.
pub(super) async fn write_job_state(
    conn: &mut AnyConnection,
    backend: Backend,
    schedule_id: &str,
    run_id: i64,
    writes: &[StateWrite],
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(bad) = writes.iter().find(|w| w.key.len() > MAX_STATE_KEY_LEN) {
        anyhow::bail!(
            "job state key longer than {MAX_STATE_KEY_LEN} bytes: `{}…`",
            bad.key.chars().take(40).collect::<String>()
        );
    }
    // Last write per key wins; keep the order of first appearance.
    let mut last: HashMap<&str, &StateWrite> = HashMap::new();
    let mut order = Vec::new();
    for write in writes {
        if last.insert(write.key.as_str(), write).is_none() {
            order.push(write.key.as_str());
        }
    }
    let (puts, deletes): (Vec<&StateWrite>, Vec<&StateWrite>) = order
        .iter()
        .map(|key| last[key])
        .partition(|write| write.value.is_some());
    for chunk in deletes.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM job_state WHERE schedule_id = {} AND key IN ({})",
            marks(backend, 1, 1),
            marks(backend, 2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(schedule_id);
        for write in chunk {
            query = query.bind(&write.key);
        }
        query
            .execute(&mut *conn)
            .await
            .context("cannot delete job state")?;
    }
    for chunk in puts.chunks(CHUNK) {
        let rows = (0..chunk.len())
            .map(|n| format!("({})", marks(backend, 1 + n * 5, 5)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO job_state (schedule_id, key, value, updated_at, run_id) VALUES {rows} \
             ON CONFLICT (schedule_id, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, run_id = excluded.run_id"
        );
        let mut query = sqlx::query(&sql);
        for write in chunk {
            query = query
                .bind(schedule_id)
                .bind(&write.key)
                .bind(write.value.clone().unwrap_or_default())
                .bind(to_millis(now))
                .bind(run_id);
        }
        query
            .execute(&mut *conn)
            .await
            .context("cannot write job state")?;
    }
    Ok(())
}

/// `count` bind markers numbered from `first`: `?` on SQLite (which
/// resolves `$N` by a linear scan per bind, quadratic on big statements),
/// `$N` on PostgreSQL.
fn marks(backend: Backend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| match backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
