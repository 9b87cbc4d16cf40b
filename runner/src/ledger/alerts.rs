//! Alert rows and their outbox rows, as recording a run's findings reads
//! and writes them inside the run's transaction. What to write is decided
//! by `alerting::decide`; this file only stores it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use patrol_job_api::Finding;
use sqlx::{AnyConnection, Row};

use super::{from_millis, to_millis};
use crate::alerting::decide::{AlertRef, Decision, FiringAlert, Paged, PlannedDelivery};
use crate::alerting::record::FindingsInput;

/// Serializes alert bookkeeping per schedule until the transaction ends.
/// Two runs of one schedule ending at once (overlap: allow, or two nodes)
/// would otherwise both read the same firing set and write conflicting
/// events, e.g. an update queued after the resolve. SQLite needs nothing:
/// its one writer connection already serializes these transactions.
pub async fn lock_schedule_alerts(conn: &mut AnyConnection, schedule_id: &str) -> Result<()> {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7091))")
            .bind(format!("patrol-alerts:{schedule_id}"))
            .execute(&mut *conn)
            .await
            .context("cannot lock the schedule's alerts")?;
    }
    Ok(())
}

/// The schedule's firing alerts, each with where it was paged.
pub async fn firing_alerts(
    conn: &mut AnyConnection,
    schedule_id: &str,
) -> Result<Vec<FiringAlert>> {
    let rows = sqlx::query(
        "SELECT id, alert_key, fingerprint, finding, first_seen_at, notify_key FROM alerts \
         WHERE status = 'firing' AND schedule_id = $1 ORDER BY id",
    )
    .bind(schedule_id)
    .fetch_all(&mut *conn)
    .await
    .context("cannot read firing alerts")?;
    let mut alerts: Vec<FiringAlert> = rows
        .iter()
        .map(|row| {
            let key: String = row.try_get(1)?;
            // Alerts opened before migration 8 keep their bare key.
            let notify_key = row
                .try_get::<Option<String>, _>(5)?
                .unwrap_or_else(|| key.clone());
            Ok(FiringAlert {
                id: row.try_get(0)?,
                key,
                notify_key,
                fingerprint: row.try_get(2)?,
                finding: serde_json::from_str(&row.try_get::<String, _>(3)?)?,
                first_seen_at: from_millis(row.try_get(4)?),
                paged: BTreeMap::new(),
            })
        })
        .collect::<Result<_>>()?;
    if alerts.is_empty() {
        return Ok(alerts);
    }
    // One query for every alert's pages: a trigger or reminder that was
    // not suppressed or skipped is (or will be) at that notifier.
    let rows = sqlx::query(
        "SELECT d.alert_id, d.notifier, MAX(d.created_at), MIN(d.route), MIN(d.group_key) \
         FROM deliveries d JOIN alerts a ON a.id = d.alert_id \
         WHERE a.status = 'firing' AND a.schedule_id = $1 \
         AND d.action IN ('trigger', 'repeat') AND d.status NOT IN ('suppressed', 'skipped') \
         GROUP BY d.alert_id, d.notifier",
    )
    .bind(schedule_id)
    .fetch_all(&mut *conn)
    .await
    .context("cannot read alerts' deliveries")?;
    for row in &rows {
        let alert_id: i64 = row.try_get(0)?;
        let Ok(at) = alerts.binary_search_by_key(&alert_id, |alert| alert.id) else {
            continue;
        };
        alerts[at].paged.insert(
            row.try_get(1)?,
            Paged {
                last_page: row.try_get::<Option<i64>, _>(2)?.map(from_millis),
                route: row.try_get(3)?,
                group_key: row.try_get(4)?,
            },
        );
    }
    Ok(alerts)
}

/// Writes what `decision` says: new alerts, refreshed and resolved ones,
/// then the outbox rows in order.
pub async fn store_decision(
    conn: &mut AnyConnection,
    decision: &Decision,
    input: &FindingsInput<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut opened_ids = Vec::with_capacity(decision.opened.len());
    for (finding, fingerprint) in &decision.opened {
        opened_ids.push(insert_alert(conn, input, finding, fingerprint, now).await?);
    }
    for refreshed in &decision.refreshed {
        sqlx::query(
            "UPDATE alerts SET last_seen_at = $1, last_run_id = $2, finding = $3, \
             fingerprint = $4, severity = $5, title = $6 WHERE id = $7",
        )
        .bind(to_millis(now))
        .bind(input.run_id)
        .bind(serde_json::to_string(&refreshed.finding)?)
        .bind(&refreshed.fingerprint)
        .bind(refreshed.finding.severity.as_str())
        .bind(&refreshed.finding.title)
        .bind(refreshed.id)
        .execute(&mut *conn)
        .await
        .context("cannot update an alert")?;
    }
    for id in &decision.resolved {
        sqlx::query(
            "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_run_id = $2 WHERE id = $3",
        )
        .bind(to_millis(now))
        .bind(input.run_id)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("cannot resolve an alert")?;
    }
    for delivery in &decision.deliveries {
        let alert_id = match delivery.alert {
            AlertRef::Firing(id) => id,
            AlertRef::Opened(index) => *opened_ids
                .get(index)
                .context("a delivery names an alert that was not opened")?,
        };
        enqueue(conn, alert_id, delivery, now).await?;
    }
    Ok(())
}

/// Inserts a firing alert; returns its id.
pub async fn insert_alert(
    conn: &mut AnyConnection,
    input: &FindingsInput<'_>,
    finding: &Finding,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (alert_key, schedule_id, job, status, severity, title, finding, \
         fingerprint, node, first_seen_at, last_seen_at, first_run_id, last_run_id, notify_key) \
         VALUES ($1, $2, $3, 'firing', $4, $5, $6, $7, $8, $9, $9, $10, $10, $11) RETURNING id",
    )
    .bind(&finding.key)
    .bind(input.schedule_id)
    .bind(input.job)
    .bind(finding.severity.as_str())
    .bind(&finding.title)
    .bind(serde_json::to_string(finding)?)
    .bind(fingerprint)
    .bind(input.node)
    .bind(to_millis(now))
    .bind(input.run_id)
    .bind(crate::alerting::keys::notify_key(
        input.schedule_id,
        &finding.key,
    ))
    .fetch_one(&mut *conn)
    .await
    .context("cannot record an alert")?;
    Ok(id)
}

/// Marks an alert resolved as soon as it is written (test alerts).
pub async fn close_alert(conn: &mut AnyConnection, id: i64, now: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = $1 WHERE id = $2")
        .bind(to_millis(now))
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("cannot close an alert")?;
    Ok(())
}

/// Writes one outbox row. A muted one is recorded `suppressed` with the
/// reason; a trigger joins its group's pending deadline (`group_wait`).
pub async fn enqueue(
    conn: &mut AnyConnection,
    alert_id: i64,
    delivery: &PlannedDelivery,
    now: DateTime<Utc>,
) -> Result<()> {
    let PlannedDelivery {
        view,
        target,
        action,
        muted_by,
        ..
    } = delivery;
    let status = if muted_by.is_some() {
        "suppressed"
    } else {
        "pending"
    };
    let mut not_before = to_millis(now);
    if *action == crate::alerting::notify::Action::Trigger
        && !target.group_wait.is_zero()
        && muted_by.is_none()
    {
        let open_group: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(not_before) FROM deliveries WHERE status = 'pending' AND action = 'trigger' \
             AND notifier = $1 AND group_key = $2 AND not_before > $3",
        )
        .bind(&target.notifier)
        .bind(&target.group_key)
        .bind(not_before)
        .fetch_one(&mut *conn)
        .await?;
        let wait = i64::try_from(target.group_wait.as_millis()).unwrap_or(i64::MAX / 4);
        not_before = open_group.unwrap_or(not_before.saturating_add(wait));
    }
    let mut view = view.clone();
    view.alert_id = alert_id;
    sqlx::query(
        "INSERT INTO deliveries (alert_id, alert_key, notifier, route, group_key, action, status, \
         reason, view, created_at, not_before) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(alert_id)
    .bind(&view.key)
    .bind(&target.notifier)
    .bind(&target.route)
    .bind(&target.group_key)
    .bind(action.as_str())
    .bind(status)
    .bind(muted_by.as_deref())
    .bind(serde_json::to_string(&view)?)
    .bind(to_millis(now))
    .bind(not_before)
    .execute(&mut *conn)
    .await
    .context("cannot write a delivery to the outbox")?;
    Ok(())
}
