//! Writing and reading run rows.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::model::{from_millis, to_millis, Instance, NewRun, Run, RunEnd, RunStatus, Trigger};
use super::{Backend, Ledger};
use patrol_job_api::StateWrite;

use super::job_state::write_job_state;

/// Rows that belong in the transaction recording a run's end — its alerts
/// and their deliveries — written by whoever decides them (alerting), so
/// the ledger commits them with the run without knowing their rules.
#[async_trait::async_trait]
pub trait RunEndWrites: Send + Sync {
    /// Writes on `conn` (the run's transaction); returns a summary for the
    /// run's details (under `alerts`), if there is anything to say.
    async fn write(
        &self,
        conn: &mut sqlx::AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>>;
}

pub(super) const RUN_COLUMNS: &str =
    "id, schedule_id, job, scheduled_for, attempt, triggered_by, status, \
    not_before, created_at, started_at, finished_at, node, instance_id, params, overrides, dry_run, \
    force_overlap, summary, output, details, error";

/// What new rows hold in the (NOT NULL) `params` column: JSON null. Rows
/// written before migration 8 hold a full copy there, which is shown but
/// never run.
const NO_PARAMS_COPY: &str = "null";

/// Rows per INSERT; keeps each statement far below SQLite's bind limit.
const INSERT_CHUNK: usize = 400;
const INSERT_COLUMNS: usize = 16;

/// SQL for "the run's owning instance has not been marked stopped", in a
/// statement on `runs`: with `status = 'running'`, the fence every write a
/// node makes for a run carries (see `instances.rs`).
pub(super) const OWNER_LIVE: &str =
    "EXISTS (SELECT 1 FROM instances WHERE instances.id = runs.instance_id AND instances.stopped_at IS NULL)";

/// Which runs `patrol runs` lists.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub schedule_id: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

impl Ledger {
    /// Writes `runs`, skipping any whose (schedule, slot, attempt) exists.
    /// Returns, per input, the new row's id or `None` if another writer
    /// already holds that slot. Rows written `running` are owned by `owner`.
    pub async fn insert_runs(
        &self,
        runs: &[NewRun],
        owner: &Instance,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>> {
        let mut ids = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(INSERT_CHUNK) {
            ids.extend(self.insert_chunk(chunk, owner, now).await?);
        }
        Ok(ids)
    }

    async fn insert_chunk(
        &self,
        runs: &[NewRun],
        owner: &Instance,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>> {
        let mut sql = String::from(
            "INSERT INTO runs (schedule_id, job, scheduled_for, attempt, triggered_by, status, \
             not_before, created_at, started_at, node, instance_id, params, overrides, dry_run, error, force_overlap) VALUES ",
        );
        for index in 0..runs.len() {
            let base = index * INSERT_COLUMNS;
            // SQLite resolves each `$N` by a linear scan of the statement's
            // parameter names (quadratic over a 6,000-value batch); plain
            // `?` binds positionally.
            let placeholders: Vec<String> = (1..=INSERT_COLUMNS)
                .map(|n| match self.backend() {
                    Backend::Sqlite => "?".to_string(),
                    Backend::Postgres => format!("${}", base + n),
                })
                .collect();
            if index > 0 {
                sql.push(',');
            }
            sql.push('(');
            sql.push_str(&placeholders.join(","));
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (schedule_id, scheduled_for, attempt) DO NOTHING \
             RETURNING id, schedule_id, scheduled_for, attempt",
        );
        let mut query = sqlx::query(&sql);
        let now_ms = to_millis(now);
        for run in runs {
            let owned = run.status == RunStatus::Running;
            let finished_kind = run.status.is_terminal();
            query = query
                .bind(run.schedule_id.clone())
                .bind(run.job.clone())
                .bind(to_millis(run.scheduled_for))
                .bind(i64::from(run.attempt))
                .bind(run.trigger.as_str())
                .bind(run.status.as_str())
                .bind(run.not_before.map(to_millis))
                .bind(now_ms)
                .bind((owned || finished_kind).then_some(now_ms))
                .bind(owned.then(|| owner.node.clone()))
                .bind(owned.then(|| owner.id.clone()))
                // No params copy (migration 8): the schedule's are run.
                .bind(NO_PARAMS_COPY)
                .bind(run.overrides.as_ref().map(serde_json::Value::to_string))
                .bind(i64::from(run.dry_run))
                .bind(run.error.clone())
                .bind(i64::from(run.force_overlap));
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .context("cannot write runs to the ledger")?;
        let mut inserted: HashMap<(String, i64, i64), i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            inserted.insert(
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
                row.try_get(0)?,
            );
        }
        if !runs.is_empty() {
            // Terminal rows (skipped, missed) are finished the moment they are written.
            let terminal: Vec<i64> = runs
                .iter()
                .filter(|run| run.status.is_terminal())
                .filter_map(|run| inserted.get(&key(run)).copied())
                .collect();
            self.stamp_finished(&terminal, now_ms).await?;
        }
        Ok(runs
            .iter()
            .map(|run| inserted.get(&key(run)).copied())
            .collect())
    }

    async fn stamp_finished(&self, ids: &[i64], now_ms: i64) -> Result<()> {
        for chunk in ids.chunks(INSERT_CHUNK) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "UPDATE runs SET finished_at = $1 WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query(&sql).bind(now_ms);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Records how a running run ended and, in the same transaction, the
    /// retry that follows it. Fenced: returns false, writing nothing, unless
    /// the run is still `running`, owned by `owner`, and `owner` has not
    /// been marked stopped (a node that was taken over writes nothing).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        run_id: i64,
        owner: &str,
        end: &RunEnd,
        retry: Option<&NewRun>,
        alerts: Option<&dyn RunEndWrites>,
        state: &[StateWrite],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Alerts first, so their counts go into the run's details; if the
        // run turns out settled elsewhere, the rollback drops them too.
        let mut details = end.details.clone();
        if let Some(alerts) = alerts {
            if let Some(entry) = alerts.write(&mut tx, now).await? {
                match &mut details {
                    Some(serde_json::Value::Object(map)) => {
                        map.insert("alerts".into(), entry);
                    }
                    _ => details = Some(serde_json::json!({ "alerts": entry })),
                }
            }
        }
        let updated = sqlx::query(&format!(
            "UPDATE runs SET status = $1, finished_at = $2, summary = $3, output = $4, \
             details = $5, error = $6 WHERE id = $7 AND status = 'running' AND instance_id = $8 \
             AND {OWNER_LIVE}"
        ))
        .bind(end.status.as_str())
        .bind(to_millis(now))
        .bind(end.summary.clone())
        .bind(end.output.clone())
        .bind(details.as_ref().map(ToString::to_string))
        .bind(end.error.clone())
        .bind(run_id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .context("cannot record the end of a run")?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if !state.is_empty() {
            let schedule_id: String =
                sqlx::query_scalar("SELECT schedule_id FROM runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_one(&mut *tx)
                    .await?;
            write_job_state(&mut tx, self.backend(), &schedule_id, run_id, state, now).await?;
        }
        if let Some(retry) = retry {
            insert_pending(&mut tx, retry, now).await?;
        }
        tx.commit()
            .await
            .context("cannot commit the end of a run")?;
        Ok(true)
    }

    /// Writes a `pending` run (manual trigger, retry) for a node to claim.
    pub async fn enqueue(&self, run: &NewRun, now: DateTime<Utc>) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        insert_pending(&mut conn, run, now).await
    }

    /// Claims pending runs that are due, for `owner` to execute. A run is
    /// claimed by exactly one instance, whichever asks first.
    pub async fn claim_pending(
        &self,
        owner: &Instance,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Run>> {
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE status = 'pending' AND (not_before IS NULL OR not_before <= $1) \
             ORDER BY not_before, id LIMIT $2",
        )
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for id in candidates {
            if let Some(run) = self.claim_one(id, owner, now).await? {
                claimed.push(run);
            }
        }
        Ok(claimed)
    }

    /// Claims one pending run by id; `None` if someone else has it, or
    /// `owner` was marked stopped (it may start nothing more).
    pub async fn claim_one(
        &self,
        id: i64,
        owner: &Instance,
        now: DateTime<Utc>,
    ) -> Result<Option<Run>> {
        let updated = sqlx::query(
            "UPDATE runs SET status = 'running', started_at = $1, node = $2, instance_id = $3 \
             WHERE id = $4 AND status = 'pending' \
             AND EXISTS (SELECT 1 FROM instances WHERE id = $3 AND stopped_at IS NULL)",
        )
        .bind(to_millis(now))
        .bind(owner.node.clone())
        .bind(owner.id.clone())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        self.run(id).await
    }

    /// Gives a claimed run back to the queue, to be claimed again from
    /// `not_before` (a retry waiting for its schedule's other run to end).
    pub async fn release_claim(
        &self,
        id: i64,
        owner: &Instance,
        not_before: DateTime<Utc>,
        waiting_for: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE runs SET status = 'pending', started_at = NULL, node = NULL, instance_id = NULL, \
             not_before = $1, error = $2 WHERE id = $3 AND status = 'running' AND instance_id = $4",
        )
        .bind(to_millis(not_before))
        .bind(waiting_for)
        .bind(id)
        .bind(owner.id.clone())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Runs `owner` holds `running`.
    pub async fn running_runs_of(&self, owner: &Instance) -> Result<Vec<Run>> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND instance_id = $1"
        ))
        .bind(owner.id.clone())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_run)
        .collect()
    }

    /// Marks a pending run as not to be run (e.g. overlap refused it).
    pub async fn settle_pending(
        &self,
        id: i64,
        status: RunStatus,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4 AND status IN ('pending', 'running')",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(to_millis(now))
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    pub async fn run(&self, id: i64) -> Result<Option<Run>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| decode_run(&row)).transpose()
    }

    /// Newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(schedule) = &filter.schedule_id {
            binds.push(schedule.clone());
            sql.push_str(&format!(" AND schedule_id = ${}", binds.len()));
        }
        if let Some(status) = filter.status {
            binds.push(status.as_str().to_string());
            sql.push_str(&format!(" AND status = ${}", binds.len()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit.max(1)));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_run)
            .collect()
    }

    /// Runs currently `running`, on any node.
    pub async fn running_runs(&self) -> Result<Vec<Run>> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode_run)
        .collect()
    }

    /// The newest slot each schedule has a row for (any status), which is
    /// where scheduling resumes after a restart.
    pub async fn last_slots(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT schedule_id, MAX(scheduled_for) FROM runs \
             WHERE triggered_by IN ('schedule', 'catchup') GROUP BY schedule_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, from_millis(row.try_get(1)?))))
            .collect()
    }

    /// Asks whoever runs `id` to cancel it (cross-node `overlap: replace`).
    pub async fn request_cancel(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs of `owner` someone asked to cancel.
    pub async fn cancel_requests(&self, owner: &Instance) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM runs WHERE status = 'running' AND cancel_requested = 1 AND instance_id = $1",
        )
        .bind(owner.id.clone())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes finished runs of `schedule_id` beyond `keep_last` or older
    /// than `older_than`, always keeping the newest row (it anchors where
    /// scheduling resumes). Returns how many were deleted.
    pub async fn prune(
        &self,
        schedule_id: &str,
        keep_last: Option<u32>,
        older_than: Option<DateTime<Utc>>,
    ) -> Result<u64> {
        let keep = i64::from(keep_last.unwrap_or(u32::MAX).max(1));
        let cutoff = older_than.map_or(i64::MIN, to_millis);
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(id) FROM runs WHERE schedule_id = $1")
                .bind(schedule_id)
                .fetch_one(&self.pool)
                .await?;
        let Some(newest) = newest else { return Ok(0) };
        // The id of the keep-th newest finished row: everything older goes.
        let boundary: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE schedule_id = $1 AND status NOT IN ('pending', 'running') \
             ORDER BY id DESC LIMIT 1 OFFSET $2",
        )
        .bind(schedule_id)
        .bind(keep - 1)
        .fetch_optional(&self.pool)
        .await?;
        let boundary = boundary.unwrap_or(i64::MIN);
        let deleted = sqlx::query(
            "DELETE FROM runs WHERE schedule_id = $1 AND status NOT IN ('pending', 'running') \
             AND id <> $2 AND (id < $3 OR COALESCE(finished_at, created_at) < $4)",
        )
        .bind(schedule_id)
        .bind(newest)
        .bind(boundary)
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.prune_effects(schedule_id).await?;
        Ok(deleted)
    }
}

fn key(run: &NewRun) -> (String, i64, i64) {
    (
        run.schedule_id.clone(),
        to_millis(run.scheduled_for),
        i64::from(run.attempt),
    )
}

pub(super) async fn insert_pending(
    conn: &mut sqlx::AnyConnection,
    run: &NewRun,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO runs (schedule_id, job, scheduled_for, attempt, triggered_by, status, \
         not_before, created_at, params, overrides, dry_run, force_overlap, error) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (schedule_id, scheduled_for, attempt) DO NOTHING RETURNING id",
    )
    .bind(run.schedule_id.clone())
    .bind(run.job.clone())
    .bind(to_millis(run.scheduled_for))
    .bind(i64::from(run.attempt))
    .bind(run.trigger.as_str())
    .bind(run.not_before.map(to_millis))
    .bind(to_millis(now))
    .bind(NO_PARAMS_COPY)
    .bind(run.overrides.as_ref().map(serde_json::Value::to_string))
    .bind(i64::from(run.dry_run))
    .bind(i64::from(run.force_overlap))
    .bind(run.error.clone())
    .fetch_optional(&mut *conn)
    .await
    .context("cannot enqueue a run")?;
    Ok(id)
}

pub(super) fn decode_run(row: &AnyRow) -> Result<Run> {
    let millis = |name: &str| -> Result<Option<DateTime<Utc>>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(from_millis))
    };
    let json = |name: &str| -> Result<Option<serde_json::Value>> {
        Ok(row
            .try_get::<Option<String>, _>(name)?
            .and_then(|text| serde_json::from_str(&text).ok()))
    };
    let status: String = row.try_get("status")?;
    let trigger: String = row.try_get("triggered_by")?;
    Ok(Run {
        id: row.try_get("id")?,
        schedule_id: row.try_get("schedule_id")?,
        job: row.try_get("job")?,
        scheduled_for: from_millis(row.try_get("scheduled_for")?),
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
        trigger: trigger.parse().map_err(anyhow::Error::msg)?,
        status: status.parse().map_err(anyhow::Error::msg)?,
        not_before: millis("not_before")?,
        created_at: from_millis(row.try_get("created_at")?),
        started_at: millis("started_at")?,
        finished_at: millis("finished_at")?,
        node: row.try_get("node")?,
        instance_id: row.try_get("instance_id")?,
        params: json("params")?.unwrap_or(serde_json::Value::Null),
        overrides: json("overrides")?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        force_overlap: row.try_get::<i64, _>("force_overlap")? != 0,
        summary: row.try_get("summary")?,
        output: row.try_get("output")?,
        details: json("details")?,
        error: row.try_get("error")?,
    })
}

impl Trigger {
    /// Convenience for tests and the engine.
    pub fn is_scheduled(self) -> bool {
        matches!(self, Self::Schedule | Self::Catchup)
    }
}
