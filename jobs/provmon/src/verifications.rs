//! Verifications asked for by hand (`patrol verify release`): recorded
//! with their whole result in provmon's own `verifications` table
//! (`migrations/`), and the latest one reused within a cache window.

use chrono::{DateTime, Utc};
use patrol_job_api::commands::JobDatabase;
use patrol_job_api::JobTables;
use sqlx::migrate::Migrator;
use sqlx::Row;

static SQLITE_TABLES: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_TABLES: Migrator = sqlx::migrate!("./migrations/postgres");

/// provmon's tables, migrated by the ledger on connect.
pub fn tables() -> JobTables {
    JobTables {
        sqlite: &SQLITE_TABLES,
        postgres: &POSTGRES_TABLES,
    }
}

/// One recorded verification.
#[derive(Debug, Clone)]
pub struct Verification {
    pub id: i64,
    /// What was verified: `release`.
    pub kind: String,
    pub schedule_id: String,
    /// The release sha (or other subject) verified.
    pub subject: String,
    pub verified: bool,
    /// The full result as JSON.
    pub result: serde_json::Value,
    /// What the result rested on (state, config and key digests): a
    /// record is reused only for the same basis.
    pub basis: String,
    pub node: String,
    pub checked_at: DateTime<Utc>,
}

/// The recorded verifications in the ledger.
#[derive(Debug, Clone)]
pub struct Verifications {
    db: JobDatabase,
}

impl Verifications {
    pub fn new(db: JobDatabase) -> Self {
        Self { db }
    }

    /// Records a verification; returns its id.
    pub async fn record(&self, verification: &Verification) -> Result<i64, String> {
        let row = sqlx::query(
            "INSERT INTO verifications (kind, schedule_id, subject, verified, result, node, checked_at, basis) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(verification.kind.clone())
        .bind(verification.schedule_id.clone())
        .bind(verification.subject.clone())
        .bind(i64::from(verification.verified))
        .bind(verification.result.to_string())
        .bind(verification.node.clone())
        .bind(verification.checked_at.timestamp_millis())
        .bind(verification.basis.clone())
        .fetch_one(&self.db.pool)
        .await
        .map_err(|err| format!("recording the verification: {err}"))?;
        row.try_get(0).map_err(|err| err.to_string())
    }

    /// The newest verification of `subject` on `basis` checked at or
    /// after `since`.
    pub async fn latest(
        &self,
        kind: &str,
        schedule_id: &str,
        subject: &str,
        basis: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Verification>, String> {
        let unreadable = |err: sqlx::Error| format!("reading recorded verifications: {err}");
        let row = sqlx::query(
            "SELECT id, kind, schedule_id, subject, verified, result, node, checked_at, basis FROM verifications \
             WHERE kind = $1 AND schedule_id = $2 AND subject = $3 AND basis = $4 AND checked_at >= $5 \
             ORDER BY checked_at DESC, id DESC LIMIT 1",
        )
        .bind(kind)
        .bind(schedule_id)
        .bind(subject)
        .bind(basis)
        .bind(since.timestamp_millis())
        .fetch_optional(&self.db.pool)
        .await
        .map_err(unreadable)?;
        let Some(row) = row else { return Ok(None) };
        let result: String = row.try_get(5).map_err(unreadable)?;
        let checked_at: i64 = row.try_get(7).map_err(unreadable)?;
        Ok(Some(Verification {
            id: row.try_get(0).map_err(unreadable)?,
            kind: row.try_get(1).map_err(unreadable)?,
            schedule_id: row.try_get(2).map_err(unreadable)?,
            subject: row.try_get(3).map_err(unreadable)?,
            verified: row.try_get::<i64, _>(4).map_err(unreadable)? != 0,
            result: serde_json::from_str(&result)
                .map_err(|err| format!("a recorded verification is not JSON: {err}"))?,
            node: row.try_get(6).map_err(unreadable)?,
            checked_at: DateTime::from_timestamp_millis(checked_at).ok_or_else(|| {
                format!("a recorded verification has no valid time ({checked_at})")
            })?,
            basis: row.try_get(8).map_err(unreadable)?,
        }))
    }
}

#[cfg(test)]
mod tests;
