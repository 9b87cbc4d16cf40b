//! Reading alerts back for `patrol alerts` and the API.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{from_millis, Ledger};

#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    pub id: i64,
    pub key: String,
    pub schedule_id: String,
    pub job: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub severity: String,
    pub title: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_run_id: Option<i64>,
    /// Per notifier, its deliveries for this alert in order.
    pub deliveries: BTreeMap<String, Vec<DeliverySummary>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliverySummary {
    pub id: i64,
    pub action: String,
    /// pending, sending, sent, suppressed, skipped, failed.
    pub status: String,
    pub attempts: i64,
    pub reason: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// Alerts, newest first; only firing ones when `open_only`.
    pub async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<AlertSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT id, alert_key, schedule_id, job, status, severity, title, first_seen_at, \
             last_seen_at, resolved_at, last_run_id FROM alerts {} ORDER BY id DESC LIMIT $1",
            if open_only {
                "WHERE status = 'firing'"
            } else {
                ""
            }
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .context("cannot read alerts")?;
        let mut alerts = Vec::with_capacity(rows.len());
        for row in &rows {
            alerts.push(AlertSummary {
                id: row.try_get(0)?,
                key: row.try_get(1)?,
                schedule_id: row.try_get(2)?,
                job: row.try_get(3)?,
                status: row.try_get(4)?,
                severity: row.try_get(5)?,
                title: row.try_get(6)?,
                first_seen_at: from_millis(row.try_get(7)?),
                last_seen_at: from_millis(row.try_get(8)?),
                resolved_at: row.try_get::<Option<i64>, _>(9)?.map(from_millis),
                last_run_id: row.try_get(10)?,
                deliveries: BTreeMap::new(),
            });
        }
        if let (Some(first), Some(last)) = (alerts.last(), alerts.first()) {
            let rows = sqlx::query(
                "SELECT alert_id, notifier, id, action, status, attempts, reason, last_error, sent_at \
                 FROM deliveries WHERE alert_id >= $1 AND alert_id <= $2 ORDER BY id",
            )
            .bind(first.id)
            .bind(last.id)
            .fetch_all(self.pool())
            .await?;
            let mut by_alert: BTreeMap<i64, &mut AlertSummary> =
                alerts.iter_mut().map(|alert| (alert.id, alert)).collect();
            for row in &rows {
                let alert_id: i64 = row.try_get(0)?;
                let Some(alert) = by_alert.get_mut(&alert_id) else {
                    continue;
                };
                alert
                    .deliveries
                    .entry(row.try_get(1)?)
                    .or_default()
                    .push(DeliverySummary {
                        id: row.try_get(2)?,
                        action: row.try_get(3)?,
                        status: row.try_get(4)?,
                        attempts: row.try_get(5)?,
                        reason: row.try_get(6)?,
                        last_error: row.try_get(7)?,
                        sent_at: row.try_get::<Option<i64>, _>(8)?.map(from_millis),
                    });
            }
        }
        Ok(alerts)
    }
}
