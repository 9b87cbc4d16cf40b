//! The outbox as the delivery worker sees it: due deliveries (only the
//! oldest open one per key and notifier, so order holds), claiming with a
//! lease (one sender, whichever node), attempts, outcomes, notifier health.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{from_millis, to_millis, Ledger};
use crate::alerting::notify::{Action, AlertView};

/// Deliveries claimed per transaction (two parameters each for the
/// attempt rows).
const CLAIM_CHUNK: usize = 200;

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub alert_id: i64,
    pub notifier: String,
    pub action: Action,
    pub view: AlertView,
    pub created_at: DateTime<Utc>,
    /// Attempts before this one.
    pub attempts: u32,
    /// What the notifier returned for this alert's first delivered event
    /// (see [`Ledger::delivery_remote`]), read with the claim: every
    /// earlier event of the alert at this notifier is settled by then.
    pub remote: Option<serde_json::Value>,
    /// When the first attempt was claimed, if an earlier attempt may have
    /// reached the service unbeknown to patrol ([`UNSURE_ATTEMPT`]).
    pub unsure_since: Option<DateTime<Utc>>,
}

/// An attempt whose request may have been acted on although patrol never
/// learnt so: its sender stopped before recording the outcome (`unknown`),
/// or it ended without an answer (no HTTP status: a timeout, a reset) or
/// with a 5xx, which a gateway sends whether or not the service behind it
/// processed the request. Any other answer (a 4xx, a 429, Slack's
/// `ok: false`) says the request was refused.
const UNSURE_ATTEMPT: &str = "(a.outcome IS NULL OR a.outcome = 'unknown' OR \
     (a.outcome IN ('retry', 'failed') AND (a.http_status IS NULL OR a.http_status >= 500)))";

/// How one attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptEnd {
    Sent {
        remote: Option<serde_json::Value>,
    },
    /// Try again at `next`.
    Retry {
        next: DateTime<Utc>,
        error: String,
        http_status: Option<u16>,
        retry_after: Option<std::time::Duration>,
    },
    /// Given up: a permanent error, or retrying for too long.
    Failed {
        error: String,
        http_status: Option<u16>,
    },
}

/// Where a notifier stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub consecutive_failures: u32,
    /// Another sender claimed the delivery since (this one's lease was taken
    /// over): nothing was recorded about the delivery itself.
    pub superseded: bool,
}

impl Ledger {
    /// Pending deliveries due at `now` that are first in line for their key
    /// and notifier, oldest first.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        self.due_deliveries_among(now, limit, None).await
    }

    /// Like [`Self::due_deliveries`], for the `notifiers` given only (those
    /// this node has configured and that can send now): another notifier's
    /// backlog never fills the window, and one this node does not know is
    /// left to a node that does.
    pub async fn due_deliveries_for(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        notifiers: &[&str],
    ) -> Result<Vec<(i64, String)>> {
        if notifiers.is_empty() {
            return Ok(Vec::new());
        }
        self.due_deliveries_among(now, limit, Some(notifiers)).await
    }

    async fn due_deliveries_among(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        notifiers: Option<&[&str]>,
    ) -> Result<Vec<(i64, String)>> {
        let notifiers = notifiers.unwrap_or_default();
        let sql = format!(
            "SELECT d.id, d.notifier FROM deliveries d WHERE d.status = 'pending' AND d.not_before <= $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.alert_key = d.alert_key \
               AND e.notifier = d.notifier AND e.id < d.id AND e.status IN ('pending', 'sending')){} \
             ORDER BY d.not_before, d.id LIMIT $2",
            in_list("d.notifier", 3, notifiers.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(to_millis(now))
            .bind(i64::from(limit));
        for notifier in notifiers {
            query = query.bind(*notifier);
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .context("cannot read due deliveries")?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// When the next pending delivery falls due, if any.
    pub async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>> {
        self.next_delivery_due_among(&[]).await
    }

    /// When the next pending delivery for one of `notifiers` falls due.
    pub async fn next_delivery_due_for(&self, notifiers: &[&str]) -> Result<Option<DateTime<Utc>>> {
        if notifiers.is_empty() {
            return Ok(None);
        }
        self.next_delivery_due_among(notifiers).await
    }

    /// `notifiers` empty means all.
    async fn next_delivery_due_among(&self, notifiers: &[&str]) -> Result<Option<DateTime<Utc>>> {
        let sql = format!(
            "SELECT MIN(not_before) FROM deliveries WHERE status = 'pending'{}",
            in_list("notifier", 1, notifiers.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for notifier in notifiers {
            query = query.bind(*notifier);
        }
        let next: Option<i64> = query.fetch_one(self.pool()).await?;
        Ok(next.map(from_millis))
    }

    /// Pending deliveries per notifier not in `known`: sent by no node
    /// with this configuration. Those older than `give_up_before` are
    /// failed, or they would wait forever. Returns what is still waiting.
    pub async fn settle_unknown_notifiers(
        &self,
        known: &[&str],
        give_up_before: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>> {
        let give_up_sql = format!(
            "UPDATE deliveries SET status = 'failed', \
             last_error = 'notifier `' || notifier || '` is configured on no node that looked; gave up' \
             WHERE status = 'pending' AND created_at < $1{}",
            not_in("notifier", 2, known.len())
        );
        let mut give_up = sqlx::query(&give_up_sql).bind(to_millis(give_up_before));
        for notifier in known {
            give_up = give_up.bind(*notifier);
        }
        give_up.execute(self.pool()).await?;
        let sql = format!(
            "SELECT notifier, COUNT(*) FROM deliveries WHERE status = 'pending'{} GROUP BY notifier ORDER BY notifier",
            not_in("notifier", 1, known.len())
        );
        let mut query = sqlx::query_as(&sql);
        for notifier in known {
            query = query.bind(*notifier);
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Claims delivery `id` for `instance` until `lease_until` and writes
    /// the attempt row, before anything is sent. `None` if another sender
    /// got it first.
    pub async fn claim_delivery(
        &self,
        id: i64,
        instance: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<(Due, i64)>> {
        Ok(self
            .claim_deliveries(&[id], instance, now, lease_until)
            .await?
            .into_iter()
            .next())
    }

    /// Claims those of `ids` still pending for `instance` until
    /// `lease_until` and writes their attempt rows, in one transaction per
    /// chunk, before anything is sent. Returns the claimed ones (in `ids`
    /// order) with their attempt ids; any another sender got first are
    /// left out.
    pub async fn claim_deliveries(
        &self,
        ids: &[i64],
        instance: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(Due, i64)>> {
        let mut claimed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CLAIM_CHUNK) {
            claimed.extend(self.claim_chunk(chunk, instance, now, lease_until).await?);
        }
        Ok(claimed)
    }

    async fn claim_chunk(
        &self,
        ids: &[i64],
        instance: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(Due, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "UPDATE deliveries SET status = 'sending', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 WHERE status = 'pending' AND id IN ({}) \
             RETURNING id, alert_id, notifier, action, view, created_at, attempts",
            placeholders(3, ids.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(instance)
            .bind(to_millis(lease_until));
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut claimed = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let action: String = row.try_get(3)?;
            let attempts: i64 = row.try_get(6)?;
            let mut view: AlertView = serde_json::from_str(&row.try_get::<String, _>(4)?)
                .with_context(|| format!("delivery {id} has an unreadable alert"))?;
            if view.notify_key.is_empty() {
                // Written before migration 8: its alert was opened with the bare key.
                view.notify_key.clone_from(&view.key);
            }
            let due = Due {
                id,
                alert_id: row.try_get(1)?,
                notifier: row.try_get(2)?,
                action: Action::parse(&action)
                    .with_context(|| format!("delivery {id} has unknown action `{action}`"))?,
                view,
                created_at: from_millis(row.try_get(5)?),
                attempts: u32::try_from(attempts - 1).unwrap_or(0),
                remote: None,
                unsure_since: None,
            };
            claimed.insert(id, (due, attempts));
        }
        // What each alert's first delivered event returned at its notifier
        // (Slack's message), as `delivery_remote` reads it; and, when an
        // earlier attempt's outcome is unsure, when the first one started.
        // (This claim's own attempt row is written below.)
        let sql = format!(
            "SELECT d.id, (SELECT r.remote FROM deliveries r WHERE r.alert_id = d.alert_id \
               AND r.notifier = d.notifier AND r.status = 'sent' AND r.remote IS NOT NULL \
               ORDER BY r.id LIMIT 1), \
             CASE WHEN EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id \
               AND {UNSURE_ATTEMPT}) THEN (SELECT MIN(a.started_at) FROM delivery_attempts a \
               WHERE a.delivery_id = d.id) END \
             FROM deliveries d WHERE d.id IN ({})",
            placeholders(1, claimed.len())
        );
        let mut query = sqlx::query(&sql);
        for id in claimed.keys() {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            let id: i64 = row.try_get(0)?;
            let remote: Option<String> = row.try_get(1)?;
            let unsure_since: Option<i64> = row.try_get(2)?;
            if let Some((due, _)) = claimed.get_mut(&id) {
                due.remote = remote.and_then(|text| serde_json::from_str(&text).ok());
                due.unsure_since = unsure_since.map(from_millis);
            }
        }
        let values: Vec<String> = (0..claimed.len())
            .map(|index| {
                let first = 3 + 2 * index;
                format!("(${first}, ${}, $1, $2)", first + 1)
            })
            .collect();
        let sql = format!(
            "INSERT INTO delivery_attempts (delivery_id, attempt, instance_id, started_at) \
             VALUES {} RETURNING id, delivery_id",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(instance).bind(to_millis(now));
        for (id, (_, attempts)) in &claimed {
            query = query.bind(*id).bind(*attempts);
        }
        let attempt_ids: HashMap<i64, i64> = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(0)?)))
            .collect::<Result<_>>()?;
        tx.commit().await?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                let (due, _) = claimed.remove(id)?;
                Some((due, *attempt_ids.get(id)?))
            })
            .collect())
    }

    /// What this notifier returned when it first delivered the alert
    /// (Slack's channel and ts), for updates to refer to.
    pub async fn delivery_remote(
        &self,
        alert_id: i64,
        notifier: &str,
    ) -> Result<Option<serde_json::Value>> {
        let remote: Option<String> = sqlx::query_scalar(
            "SELECT remote FROM deliveries WHERE alert_id = $1 AND notifier = $2 \
             AND status = 'sent' AND remote IS NOT NULL ORDER BY id LIMIT 1",
        )
        .bind(alert_id)
        .bind(notifier)
        .fetch_optional(self.pool())
        .await?
        .flatten();
        Ok(remote.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Records how an attempt ended and updates the notifier's health, in
    /// one transaction.
    pub async fn finish_attempt(
        &self,
        due: &Due,
        attempt_id: i64,
        end: &AttemptEnd,
        now: DateTime<Utc>,
    ) -> Result<Health> {
        let mut tx = self.pool().begin().await?;
        let (outcome, error, http_status, retry_after) = match end {
            AttemptEnd::Sent { .. } => ("sent", None, None, None),
            AttemptEnd::Retry {
                error,
                http_status,
                retry_after,
                ..
            } => ("retry", Some(error.as_str()), *http_status, *retry_after),
            AttemptEnd::Failed { error, http_status } => {
                ("failed", Some(error.as_str()), *http_status, None)
            }
        };
        sqlx::query(
            "UPDATE delivery_attempts SET finished_at = $1, outcome = $2, http_status = $3, \
             retry_after_ms = $4, error = $5 WHERE id = $6",
        )
        .bind(to_millis(now))
        .bind(outcome)
        .bind(http_status.map(i64::from))
        .bind(retry_after.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        .bind(error)
        .bind(attempt_id)
        .execute(&mut *tx)
        .await?;
        let claim_number = i64::from(due.attempts) + 1;
        let updated = match end {
            AttemptEnd::Sent { remote } => sqlx::query(
                "UPDATE deliveries SET status = 'sent', sent_at = $1, remote = $2, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $3 \
                     AND status = 'sending' AND attempts = $4",
            )
            .bind(to_millis(now))
            .bind(remote.as_ref().map(ToString::to_string))
            .bind(due.id)
            .bind(claim_number)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            AttemptEnd::Retry { next, error, .. } => sqlx::query(
                "UPDATE deliveries SET status = 'pending', not_before = $1, last_error = $2, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $3 \
                     AND status = 'sending' AND attempts = $4",
            )
            .bind(to_millis(*next))
            .bind(error)
            .bind(due.id)
            .bind(claim_number)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            AttemptEnd::Failed { error, .. } => sqlx::query(
                "UPDATE deliveries SET status = 'failed', last_error = $1, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $2 \
                     AND status = 'sending' AND attempts = $3",
            )
            .bind(error)
            .bind(due.id)
            .bind(claim_number)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if updated == 0 {
            // A late sender must not overwrite the claim that replaced its
            // own (that could let a resolve overtake its trigger).
            tx.commit().await?;
            return Ok(Health {
                consecutive_failures: 0,
                superseded: true,
            });
        }
        let health = record_health(&mut tx, &due.notifier, error, now).await?;
        tx.commit().await?;
        Ok(health)
    }

    /// Marks a delivery the notifier does not want (email skips updates),
    /// closing the attempt row its claim opened.
    pub async fn skip_delivery(&self, id: i64, reason: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE delivery_attempts SET outcome = 'skipped', finished_at = $1 \
             WHERE delivery_id = $2 AND outcome IS NULL",
        )
        .bind(to_millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deliveries SET status = 'skipped', reason = $1, lease_owner = NULL, \
             lease_until = NULL WHERE id = $2",
        )
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries whose sender died mid-send go back to pending: those
    /// whose lease expired, and at once those claimed by an instance the
    /// ledger knows is gone (stopped, reaped, or silent since
    /// `dead_before`). Their open attempt is closed as `unknown`. They are
    /// sent again: at least once, never lost.
    pub async fn reclaim_expired_deliveries(
        &self,
        now: DateTime<Utc>,
        dead_before: DateTime<Utc>,
    ) -> Result<u64> {
        const ABANDONED: &str = "status = 'sending' AND (lease_until < $1 OR lease_owner IN \
             (SELECT id FROM instances WHERE stopped_at IS NOT NULL OR heartbeat_at < $2))";
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "UPDATE delivery_attempts SET outcome = 'unknown', finished_at = $1, \
             error = 'the sender stopped before recording the outcome' \
             WHERE outcome IS NULL AND delivery_id IN (SELECT id FROM deliveries WHERE {ABANDONED})"
        ))
        .bind(to_millis(now))
        .bind(to_millis(dead_before))
        .execute(&mut *tx)
        .await?;
        let reclaimed = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL \
             WHERE {ABANDONED}"
        ))
        .bind(to_millis(now))
        .bind(to_millis(dead_before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(reclaimed)
    }

    /// Releases this instance's claims at once (graceful shutdown), so
    /// another node need not wait for the lease.
    pub async fn release_deliveries(&self, instance: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET lease_until = $1 WHERE status = 'sending' AND lease_owner = $2",
        )
        .bind(to_millis(now) - 1)
        .bind(instance)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether an alert with this key is firing for `schedule_id`: one
    /// indexed read, so patrol's own alerts can be checked before opening
    /// a transaction to resolve them.
    pub async fn has_firing_alert(&self, schedule_id: &str, key: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE status = 'firing' AND schedule_id = $1 AND alert_key = $2 \
             LIMIT 1",
        )
        .bind(schedule_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// When the notifier's current run of failures began: its earliest
    /// failed attempt since its last success. `None` when its latest
    /// attempt succeeded (or it has none).
    pub async fn notifier_failing_since(&self, notifier: &str) -> Result<Option<DateTime<Utc>>> {
        let since: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(a.finished_at) FROM delivery_attempts a \
             JOIN deliveries d ON d.id = a.delivery_id \
             JOIN notifier_health h ON h.notifier = d.notifier \
             WHERE d.notifier = $1 AND h.consecutive_failures > 0 \
             AND a.outcome IN ('retry', 'failed') \
             AND a.finished_at > COALESCE(h.last_success_at, -1)",
        )
        .bind(notifier)
        .fetch_one(self.pool())
        .await
        .context("cannot read the notifier's failures")?;
        Ok(since.map(from_millis))
    }

    /// How many deliveries are still to be sent (pending or in flight).
    pub async fn open_delivery_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')",
        )
        .fetch_one(self.pool())
        .await?)
    }
}

/// Skips the deliveries of `schedule_id`'s alerts keyed `key` still
/// waiting at notifiers whose trigger of that alert never went out (still
/// pending, or skipped): once patrol's own alert is resolved, a page it
/// did not send yet would only arrive stale, followed by its resolve.
/// Returns how many were skipped.
pub async fn skip_unsent_pages(
    conn: &mut AnyConnection,
    schedule_id: &str,
    key: &str,
    reason: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE deliveries SET status = 'skipped', reason = $1, lease_owner = NULL, \
         lease_until = NULL WHERE status = 'pending' \
         AND alert_id IN (SELECT id FROM alerts WHERE schedule_id = $2 AND alert_key = $3) \
         AND EXISTS (SELECT 1 FROM deliveries t WHERE t.alert_id = deliveries.alert_id \
           AND t.notifier = deliveries.notifier AND t.action = 'trigger' \
           AND t.status IN ('pending', 'skipped'))",
    )
    .bind(reason)
    .bind(schedule_id)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected())
}

async fn record_health(
    conn: &mut AnyConnection,
    notifier: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Health> {
    let now = to_millis(now);
    let failures: i64 = match error {
        None => {
            sqlx::query_scalar(
                "INSERT INTO notifier_health (notifier, consecutive_failures, last_success_at) \
                 VALUES ($1, 0, $2) ON CONFLICT (notifier) DO UPDATE SET \
                 consecutive_failures = 0, last_success_at = excluded.last_success_at \
                 RETURNING consecutive_failures",
            )
            .bind(notifier)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?
        }
        Some(error) => {
            sqlx::query_scalar(
                "INSERT INTO notifier_health (notifier, consecutive_failures, last_failure_at, last_error) \
                 VALUES ($1, 1, $2, $3) ON CONFLICT (notifier) DO UPDATE SET \
                 consecutive_failures = notifier_health.consecutive_failures + 1, \
                 last_failure_at = excluded.last_failure_at, last_error = excluded.last_error \
                 RETURNING consecutive_failures",
            )
            .bind(notifier)
            .bind(now)
            .bind(error)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    Ok(Health {
        consecutive_failures: u32::try_from(failures).unwrap_or(u32::MAX),
        superseded: false,
    })
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` AND column IN ($first, …)`, or nothing when `count` is 0.
fn in_list(column: &str, first: usize, count: usize) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(" AND {column} IN ({})", placeholders(first, count))
    }
}

/// ` AND column NOT IN ($first, …)`, or nothing when `count` is 0.
fn not_in(column: &str, first: usize, count: usize) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(" AND {column} NOT IN ({})", placeholders(first, count))
    }
}

impl Ledger {
    /// Forgets alerts resolved before `cutoff` (with their deliveries and
    /// attempts) once nothing of theirs is left to send, and silences that
    /// ended before it. Returns the alerts removed.
    pub async fn prune_alerts(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        const OLD: &str = "SELECT id FROM alerts WHERE status = 'resolved' AND resolved_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = alerts.id \
               AND d.status IN ('pending', 'sending'))";
        let cutoff = to_millis(cutoff);
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE alert_id IN ({OLD}))"
        ))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DELETE FROM deliveries WHERE alert_id IN ({OLD})"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query(&format!("DELETE FROM alerts WHERE id IN ({OLD})"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM silences WHERE ends_at < $1 OR expired_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use patrol_job_api::{Finding, Severity};

    use super::*;
    use crate::alerting::config::{AlertingConfig, AlertingSpec};
    use crate::alerting::notifiers::NotifierSettings;
    use crate::alerting::policy::AlertPolicy;
    use crate::alerting::record::{record_findings, FindingsInput};
    use crate::ledger::tests::ledgers_for;

    async fn record(ledger: &Ledger, policy: &AlertPolicy, findings: &[Finding]) {
        let input = FindingsInput {
            schedule_id: "disk-check",
            job: "command",
            run_id: Some(1),
            findings,
            resolve_absent: true,
            also_resolve: None,
            named_route: None,
            notifiers: None,
            node: "node-a",
        };
        let mut tx = ledger.pool().begin().await.unwrap();
        record_findings(&mut tx, policy, &input, Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// (id, key, notifier) of every delivery, in id order.
    async fn rows(ledger: &Ledger) -> Vec<(i64, String, String)> {
        sqlx::query_as("SELECT id, alert_key, notifier FROM deliveries ORDER BY id")
            .fetch_all(ledger.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn batch_claims_skip_busy_notifiers_write_attempts_and_carry_the_remote() {
        for (_dir, ledger) in ledgers_for("patrol_outbox_batch").await {
            let mut spec = AlertingSpec::default();
            for name in ["chat", "pager"] {
                spec.notifiers
                    .insert(name.into(), NotifierSettings::Console(Default::default()));
            }
            let policy =
                AlertPolicy::new(&AlertingConfig::check(spec, Path::new(""), None).unwrap());
            let finding = |key: &str, title: &str| Finding::new(key, Severity::Error, title);
            record(&ledger, &policy, &[finding("a", "a"), finding("b", "b")]).await;
            let all = rows(&ledger).await;
            assert_eq!(all.len(), 4);

            // A notifier that cannot send now is left out of the window.
            let now = Utc::now();
            let pager_only = ledger
                .due_deliveries_for(now, 10, &["pager"])
                .await
                .unwrap();
            assert_eq!(pager_only.len(), 2);
            assert!(pager_only.iter().all(|(_, notifier)| notifier == "pager"));
            assert_eq!(ledger.due_deliveries(now, 10).await.unwrap().len(), 4);

            // One batch: all claimed, in the order asked, attempt rows written.
            let mut ids: Vec<i64> = all.iter().map(|(id, _, _)| *id).collect();
            ids.reverse();
            let lease = now + chrono::Duration::seconds(60);
            let claimed = ledger
                .claim_deliveries(&ids, "me", now, lease)
                .await
                .unwrap();
            let claimed_ids: Vec<i64> = claimed.iter().map(|(due, _)| due.id).collect();
            assert_eq!(claimed_ids, ids);
            assert!(claimed
                .iter()
                .all(|(due, _)| due.attempts == 0 && due.remote.is_none()));
            let open_attempts: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM delivery_attempts WHERE outcome IS NULL AND attempt = 1",
            )
            .fetch_one(ledger.pool())
            .await
            .unwrap();
            assert_eq!(open_attempts, 4);
            let again = ledger.claim_deliveries(&ids, "other", now, lease).await;
            assert!(again.unwrap().is_empty(), "claimed twice");
            assert_eq!(
                ledger.next_delivery_due().await.unwrap(),
                None,
                "nothing pending"
            );

            // Sent and failed outcomes; failures count up per notifier.
            let by_pair = |key: &str, notifier: &str| {
                claimed
                    .iter()
                    .find(|(due, _)| due.view.key == key && due.notifier == notifier)
                    .unwrap()
                    .clone()
            };
            let (a_chat, attempt) = by_pair("a", "chat");
            let sent = AttemptEnd::Sent {
                remote: Some(serde_json::json!({ "ts": "17" })),
            };
            let health = ledger
                .finish_attempt(&a_chat, attempt, &sent, Utc::now())
                .await
                .unwrap();
            assert_eq!(health.consecutive_failures, 0);
            for (n, key) in ["a", "b"].into_iter().enumerate() {
                let (due, attempt) = by_pair(key, "pager");
                let failed = AttemptEnd::Failed {
                    error: "down".into(),
                    http_status: Some(503),
                };
                let health = ledger
                    .finish_attempt(&due, attempt, &failed, Utc::now())
                    .await
                    .unwrap();
                assert_eq!(health.consecutive_failures, u32::try_from(n + 1).unwrap());
            }

            // An update of `a` goes out at chat (its trigger is sent) with
            // what the trigger returned; `b`'s waits behind its trigger.
            record(
                &ledger,
                &policy,
                &[finding("a", "a, worse"), finding("b", "b, worse")],
            )
            .await;
            let keys: HashMap<i64, (String, String)> = rows(&ledger)
                .await
                .into_iter()
                .map(|(id, key, notifier)| (id, (key, notifier)))
                .collect();
            let due = ledger.due_deliveries(Utc::now(), 10).await.unwrap();
            let mut due_pairs: Vec<(String, String)> =
                due.iter().map(|(id, _)| keys[id].clone()).collect();
            due_pairs.sort();
            let pair = |key: &str, notifier: &str| (key.to_string(), notifier.to_string());
            assert_eq!(
                due_pairs,
                [pair("a", "chat"), pair("a", "pager"), pair("b", "pager")],
                "b at chat waits for its trigger, still sending"
            );
            let update = due
                .iter()
                .find(|(id, _)| keys[id] == pair("a", "chat"))
                .map(|(id, _)| *id)
                .unwrap();
            let (claimed, _) = ledger
                .claim_delivery(update, "me", Utc::now(), lease)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.action, Action::Update);
            assert_eq!(claimed.remote, Some(serde_json::json!({ "ts": "17" })));

            assert!(ledger.has_firing_alert("disk-check", "a").await.unwrap());
            assert!(!ledger.has_firing_alert("disk-check", "zzz").await.unwrap());
            assert!(!ledger.has_firing_alert("patrol", "a").await.unwrap());
        }
    }

    fn two_notifier_policy() -> AlertPolicy {
        let mut spec = AlertingSpec::default();
        for name in ["chat", "pager"] {
            spec.notifiers
                .insert(name.into(), NotifierSettings::Console(Default::default()));
        }
        AlertPolicy::new(&AlertingConfig::check(spec, Path::new(""), None).unwrap())
    }

    async fn status_of(ledger: &Ledger, id: i64) -> (String, Option<String>) {
        sqlx::query_as("SELECT status, last_error FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(ledger.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_sender_whose_claim_was_taken_over_records_nothing_over_the_new_claim() {
        for (_dir, ledger) in ledgers_for("patrol_outbox_superseded").await {
            let policy = two_notifier_policy();
            record(&ledger, &policy, &[Finding::new("a", Severity::Error, "a")]).await;
            let (id, _, _) = rows(&ledger).await[0].clone();
            let start = Utc::now();
            let (slow, slow_attempt) = ledger
                .claim_delivery(id, "slow", start, start + chrono::Duration::seconds(1))
                .await
                .unwrap()
                .unwrap();
            // The slow sender's lease runs out; another node takes over.
            let later = start + chrono::Duration::seconds(5);
            assert_eq!(
                ledger
                    .reclaim_expired_deliveries(later, later - chrono::Duration::minutes(1))
                    .await
                    .unwrap(),
                1
            );
            let (fresh, fresh_attempt) = ledger
                .claim_delivery(id, "fresh", later, later + chrono::Duration::minutes(2))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(fresh.attempts, slow.attempts + 1);

            // The slow sender wakes up and reports a failure: ignored.
            let failed = AttemptEnd::Failed {
                error: "late failure".into(),
                http_status: Some(500),
            };
            let health = ledger
                .finish_attempt(&slow, slow_attempt, &failed, later)
                .await
                .unwrap();
            assert!(health.superseded);
            assert_eq!(status_of(&ledger, id).await, ("sending".into(), None));

            // The new owner's outcome is what counts.
            let sent = AttemptEnd::Sent { remote: None };
            let health = ledger
                .finish_attempt(&fresh, fresh_attempt, &sent, later)
                .await
                .unwrap();
            assert!(!health.superseded);
            assert_eq!(status_of(&ledger, id).await.0, "sent");
        }
    }

    #[tokio::test]
    async fn a_notifiers_failing_run_starts_at_its_first_failure_since_the_last_success() {
        for (_dir, ledger) in ledgers_for("patrol_outbox_failing_since").await {
            let policy = two_notifier_policy();
            let finding = |key: &str| Finding::new(key, Severity::Error, key);
            record(&ledger, &policy, &[finding("a"), finding("b")]).await;
            let ids: Vec<i64> = rows(&ledger).await.iter().map(|(id, _, _)| *id).collect();
            let start = Utc::now();
            let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
            let lease = at(600);
            let claimed = ledger
                .claim_deliveries(&ids, "me", start, lease)
                .await
                .unwrap();
            let of = |key: &str, notifier: &str| {
                claimed
                    .iter()
                    .find(|(due, _)| due.view.key == key && due.notifier == notifier)
                    .unwrap()
                    .clone()
            };
            let retry = |seconds| AttemptEnd::Retry {
                next: at(seconds),
                error: "no answer".into(),
                http_status: None,
                retry_after: None,
            };
            assert_eq!(ledger.notifier_failing_since("pager").await.unwrap(), None);
            let (due, attempt) = of("a", "pager");
            ledger
                .finish_attempt(&due, attempt, &retry(100), at(10))
                .await
                .unwrap();
            let (due, attempt) = of("b", "pager");
            ledger
                .finish_attempt(&due, attempt, &retry(100), at(20))
                .await
                .unwrap();
            let since = ledger.notifier_failing_since("pager").await.unwrap();
            assert_eq!(since.map(to_millis), Some(to_millis(at(10))));
            let (due, attempt) = of("a", "chat");
            let sent = AttemptEnd::Sent { remote: None };
            ledger
                .finish_attempt(&due, attempt, &sent, at(15))
                .await
                .unwrap();
            assert_eq!(ledger.notifier_failing_since("chat").await.unwrap(), None);

            // A retry after an answerless attempt is unsure of its outcome.
            let (retried, attempt) = ledger
                .claim_delivery(of("a", "pager").0.id, "me", at(100), lease)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(retried.unsure_since.map(to_millis), Some(to_millis(start)));
            ledger
                .finish_attempt(&retried, attempt, &sent, at(101))
                .await
                .unwrap();
            assert_eq!(ledger.notifier_failing_since("pager").await.unwrap(), None);
            assert_eq!(
                of("b", "chat").0.unsure_since,
                None,
                "a first attempt is sure"
            );
        }
    }

    #[tokio::test]
    async fn deliveries_for_a_notifier_this_node_lacks_wait_for_a_node_that_has_it() {
        for (_dir, ledger) in ledgers_for("patrol_outbox_unknown").await {
            // Recorded by a node that has `chat` and `pager`; this one has `chat`.
            let policy = two_notifier_policy();
            record(&ledger, &policy, &[Finding::new("a", Severity::Error, "a")]).await;
            let now = Utc::now();
            let due = ledger.due_deliveries_for(now, 10, &["chat"]).await.unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].1, "chat");
            assert!(ledger
                .due_deliveries_for(now, 10, &[])
                .await
                .unwrap()
                .is_empty());
            assert_eq!(ledger.next_delivery_due_for(&[]).await.unwrap(), None);

            // Within give_up_after: left pending, reported as waiting.
            let waiting = ledger
                .settle_unknown_notifiers(&["chat"], now - chrono::Duration::hours(24))
                .await
                .unwrap();
            assert_eq!(waiting, [("pager".to_string(), 1)]);
            let pager = rows(&ledger)
                .await
                .into_iter()
                .find(|(_, _, notifier)| notifier == "pager")
                .unwrap()
                .0;
            assert_eq!(status_of(&ledger, pager).await.0, "pending");

            // No node sent it in time: failed, saying why; chat untouched.
            let waiting = ledger
                .settle_unknown_notifiers(&["chat"], now + chrono::Duration::seconds(1))
                .await
                .unwrap();
            assert!(waiting.is_empty());
            let (status, error) = status_of(&ledger, pager).await;
            assert_eq!(status, "failed");
            assert!(error.unwrap().contains("`pager`"));
            assert_eq!(ledger.due_deliveries(now, 10).await.unwrap().len(), 1);
        }
    }
}
