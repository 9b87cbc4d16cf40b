//! Verifications asked for by hand (`patrol verify release`): recorded
//! with their whole result, and the latest one reused within a cache window.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::model::{from_millis, to_millis};
use super::Ledger;

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

impl Ledger {
    /// Records a verification; returns its id.
    pub async fn record_verification(&self, verification: &Verification) -> Result<i64> {
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
        .bind(to_millis(verification.checked_at))
        .bind(verification.basis.clone())
        .fetch_one(self.pool())
        .await
        .context("recording the verification")?;
        Ok(row.try_get(0)?)
    }

    /// The newest verification of `subject` on `basis` checked at or
    /// after `since`.
    pub async fn latest_verification(
        &self,
        kind: &str,
        schedule_id: &str,
        subject: &str,
        basis: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Verification>> {
        let row = sqlx::query(
            "SELECT id, kind, schedule_id, subject, verified, result, node, checked_at, basis FROM verifications \
             WHERE kind = $1 AND schedule_id = $2 AND subject = $3 AND basis = $4 AND checked_at >= $5 \
             ORDER BY checked_at DESC, id DESC LIMIT 1",
        )
        .bind(kind)
        .bind(schedule_id)
        .bind(subject)
        .bind(basis)
        .bind(to_millis(since))
        .fetch_optional(self.pool())
        .await
        .context("reading recorded verifications")?;
        let Some(row) = row else { return Ok(None) };
        let result: String = row.try_get(5)?;
        Ok(Some(Verification {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            schedule_id: row.try_get(2)?,
            subject: row.try_get(3)?,
            verified: row.try_get::<i64, _>(4)? != 0,
            result: serde_json::from_str(&result).context("a recorded verification is not JSON")?,
            node: row.try_get(6)?,
            checked_at: from_millis(row.try_get(7)?),
            basis: row.try_get(8)?,
        }))
    }
}
