//! Per-schedule state that outlives processes: paused or not.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::model::{from_millis, to_millis};
use super::Ledger;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleState {
    pub paused: bool,
    /// When it was last paused or resumed.
    pub changed_at: DateTime<Utc>,
    pub changed_by: Option<String>,
}

impl Ledger {
    pub async fn set_paused(
        &self,
        schedule_id: &str,
        paused: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_state (schedule_id, paused, changed_at, changed_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (schedule_id) DO UPDATE SET paused = excluded.paused, \
             changed_at = excluded.changed_at, changed_by = excluded.changed_by",
        )
        .bind(schedule_id)
        .bind(i64::from(paused))
        .bind(to_millis(now))
        .bind(by)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn schedule_states(&self) -> Result<HashMap<String, ScheduleState>> {
        let rows =
            sqlx::query("SELECT schedule_id, paused, changed_at, changed_by FROM schedule_state")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    ScheduleState {
                        paused: row.try_get::<i64, _>(1)? != 0,
                        changed_at: from_millis(row.try_get(2)?),
                        changed_by: row.try_get(3)?,
                    },
                ))
            })
            .collect()
    }

    /// Records that a runner schedules these ids from `now` on; ids seen
    /// before keep their first date.
    pub async fn mark_schedules_seen(&self, ids: &[String], now: DateTime<Utc>) -> Result<()> {
        for chunk in ids.chunks(400) {
            let values: Vec<String> = (0..chunk.len())
                .map(|n| format!("(${}, ${})", 2 * n + 1, 2 * n + 2))
                .collect();
            let sql = format!(
                "INSERT INTO schedules_seen (schedule_id, first_seen_at) VALUES {} \
                 ON CONFLICT (schedule_id) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.clone()).bind(to_millis(now));
            }
            query.execute(self.pool()).await?;
        }
        Ok(())
    }

    /// When each schedule was first scheduled.
    pub async fn schedules_first_seen(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let rows = sqlx::query("SELECT schedule_id, first_seen_at FROM schedules_seen")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, from_millis(row.try_get(1)?))))
            .collect()
    }
}
