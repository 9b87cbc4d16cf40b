//! Turning a run's findings into alerts and outbox rows, inside the
//! transaction that records the run's end: new key → trigger, seen key →
//! update if it changed (or a reminder after `repeat_interval`), key gone
//! from a complete successful run → resolve. Nothing is sent here; the
//! delivery worker sends what this writes.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use patrol_job_api::Finding;
use sqlx::{AnyConnection, Row};

use super::notify::{Action, AlertView};
use super::policy::AlertPolicy;
use super::routing::Target;
use super::silences::{active_silences, Silence};
use crate::ledger::{from_millis, to_millis};

/// A run's findings, ready to record.
#[derive(Debug, Clone)]
pub struct FindingsInput<'a> {
    pub schedule_id: &'a str,
    pub job: &'a str,
    /// `None` for alerts patrol raises itself (delivery degraded, tests).
    pub run_id: Option<i64>,
    pub findings: &'a [Finding],
    /// The run succeeded and looked at everything: firing alerts of this
    /// schedule whose key it did not report are resolved.
    pub resolve_absent: bool,
    /// A key to resolve when absent even if `resolve_absent` is false: a
    /// schedule's run-failed alert clears on any successful run, complete
    /// or partial.
    pub also_resolve: Option<&'a str>,
    /// The schedule's `route:`.
    pub named_route: Option<&'a str>,
    /// Send to exactly these notifiers, bypassing routes (patrol's own
    /// alerts: delivery-degraded goes to every notifier but the broken one).
    pub notifiers: Option<&'a [String]>,
    pub node: &'a str,
}

/// What recording did, for the run's details and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    pub triggered: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub resolved: usize,
    /// Outbox rows written to be sent (suppressed ones not counted).
    pub deliveries: usize,
    pub suppressed: usize,
}

impl Recorded {
    pub fn changed_anything(&self) -> bool {
        self.deliveries > 0
    }
}

struct FiringAlert {
    id: i64,
    key: String,
    fingerprint: String,
    finding: Finding,
    first_seen_at: DateTime<Utc>,
}

/// Records `input` on `conn` (a transaction). Findings with a bad key or
/// title, or repeating a key, are skipped and counted by the caller
/// (see [`usable_findings`]).
pub async fn record_findings(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    lock_schedule_alerts(conn, input.schedule_id).await?;
    let firing = firing_alerts(conn, input.schedule_id).await?;
    let mut firing_by_key: HashMap<&str, &FiringAlert> = firing
        .iter()
        .map(|alert| (alert.key.as_str(), alert))
        .collect();
    let silences = active_silences(conn, now).await?;
    let mut reported = HashSet::new();
    for finding in input.findings {
        if !reported.insert(finding.key.as_str()) {
            continue;
        }
        let fingerprint = fingerprint(finding);
        match firing_by_key.remove(finding.key.as_str()) {
            None => {
                let id = insert_alert(conn, input, finding, &fingerprint, now).await?;
                let view = policy.view(id, input, finding, true, now, now, None);
                recorded.triggered += 1;
                let targets = targets_for(policy, input, &view);
                let mute = mute_reason(policy, &silences, &view, now);
                for target in &targets {
                    enqueue(
                        conn,
                        &view,
                        target,
                        Action::Trigger,
                        mute.as_deref(),
                        now,
                        &mut recorded,
                    )
                    .await?;
                }
            }
            Some(alert) => {
                let changed = alert.fingerprint != fingerprint;
                let finding_json = serde_json::to_string(finding)?;
                sqlx::query(
                    "UPDATE alerts SET last_seen_at = $1, last_run_id = $2, finding = $3, \
                     fingerprint = $4, severity = $5, title = $6 WHERE id = $7",
                )
                .bind(to_millis(now))
                .bind(input.run_id)
                .bind(finding_json)
                .bind(&fingerprint)
                .bind(finding.severity.as_str())
                .bind(&finding.title)
                .bind(alert.id)
                .execute(&mut *conn)
                .await
                .context("cannot update an alert")?;
                let view = policy.view(
                    alert.id,
                    input,
                    finding,
                    true,
                    alert.first_seen_at,
                    now,
                    None,
                );
                let targets = targets_for(policy, input, &view);
                let mute = mute_reason(policy, &silences, &view, now);
                let history = delivery_history(conn, alert.id).await?;
                for target in &targets {
                    let Some(seen) = history.get(&target.notifier) else {
                        // Never paged here (muted until now, or a new route):
                        // page now unless still muted.
                        if mute.is_none() {
                            enqueue(
                                conn,
                                &view,
                                target,
                                Action::Trigger,
                                None,
                                now,
                                &mut recorded,
                            )
                            .await?;
                        }
                        continue;
                    };
                    if changed {
                        enqueue(
                            conn,
                            &view,
                            target,
                            Action::Update,
                            None,
                            now,
                            &mut recorded,
                        )
                        .await?;
                    } else if mute.is_none() && is_due(seen.last_page, target, now) {
                        enqueue(
                            conn,
                            &view,
                            target,
                            Action::Repeat,
                            None,
                            now,
                            &mut recorded,
                        )
                        .await?;
                    }
                }
                if changed {
                    recorded.updated += 1;
                } else {
                    recorded.unchanged += 1;
                }
            }
        }
    }
    if input.resolve_absent {
        for alert in firing_by_key.into_values() {
            resolve(conn, policy, input, alert, now, &mut recorded).await?;
        }
    } else if let Some(alert) = input.also_resolve.and_then(|key| firing_by_key.remove(key)) {
        resolve(conn, policy, input, alert, now, &mut recorded).await?;
    }
    Ok(recorded)
}

/// Findings worth recording: valid ones, first of each key. Returns them
/// and a note per finding left out.
pub fn usable_findings(findings: Vec<Finding>) -> (Vec<Finding>, Vec<String>) {
    let mut keys = HashSet::new();
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (index, finding) in findings.into_iter().enumerate() {
        if let Err(problem) = finding.check() {
            problems.push(format!("finding {}: {problem}", index + 1));
        } else if !keys.insert(finding.key.clone()) {
            problems.push(format!(
                "finding {}: key `{}` reported twice; the first is kept",
                index + 1,
                finding.key
            ));
        } else {
            usable.push(finding);
        }
    }
    (usable, problems)
}

async fn resolve(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    alert: &FiringAlert,
    now: DateTime<Utc>,
    recorded: &mut Recorded,
) -> Result<()> {
    sqlx::query(
        "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_run_id = $2 WHERE id = $3",
    )
    .bind(to_millis(now))
    .bind(input.run_id)
    .bind(alert.id)
    .execute(&mut *conn)
    .await
    .context("cannot resolve an alert")?;
    recorded.resolved += 1;
    let view = policy.view(
        alert.id,
        input,
        &alert.finding,
        false,
        alert.first_seen_at,
        now,
        Some(now),
    );
    let history = delivery_history(conn, alert.id).await?;
    // Resolve wherever it was paged (even if that route has changed since);
    // a silence does not hold back a resolve, or the page would stay open.
    let targets = targets_for(policy, input, &view);
    for (notifier, seen) in &history {
        let target = targets
            .iter()
            .find(|target| &target.notifier == notifier)
            .cloned()
            .unwrap_or_else(|| Target {
                notifier: notifier.clone(),
                route: seen.route.clone(),
                group_key: seen.group_key.clone(),
                group_wait: std::time::Duration::ZERO,
                repeat_interval: std::time::Duration::MAX,
            });
        enqueue(conn, &view, &target, Action::Resolve, None, now, recorded).await?;
    }
    Ok(())
}

/// Resolves a firing alert outside a run (patrol's own alerts).
pub async fn resolve_key(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    lock_schedule_alerts(conn, input.schedule_id).await?;
    let firing = firing_alerts(conn, input.schedule_id).await?;
    if let Some(alert) = firing.iter().find(|alert| alert.key == key) {
        resolve(conn, policy, input, alert, now, &mut recorded).await?;
    }
    Ok(recorded)
}

/// Serializes alert bookkeeping per schedule until the transaction ends.
/// Two runs of one schedule ending at once (overlap: allow, or two nodes)
/// would otherwise both read the same firing set and write conflicting
/// events, e.g. an update queued after the resolve. SQLite needs nothing:
/// its one writer connection already serializes these transactions.
async fn lock_schedule_alerts(conn: &mut AnyConnection, schedule_id: &str) -> Result<()> {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7091))")
            .bind(format!("patrol-alerts:{schedule_id}"))
            .execute(&mut *conn)
            .await
            .context("cannot lock the schedule's alerts")?;
    }
    Ok(())
}

fn targets_for(policy: &AlertPolicy, input: &FindingsInput<'_>, view: &AlertView) -> Vec<Target> {
    match input.notifiers {
        Some(notifiers) => notifiers
            .iter()
            .map(|notifier| Target {
                notifier: notifier.clone(),
                route: "patrol".into(),
                group_key: "patrol".into(),
                group_wait: std::time::Duration::ZERO,
                repeat_interval: std::time::Duration::from_secs(4 * 3600),
            })
            .collect(),
        None => policy.router.targets(view, input.named_route),
    }
}

fn mute_reason(
    policy: &AlertPolicy,
    silences: &[Silence],
    view: &AlertView,
    now: DateTime<Utc>,
) -> Option<String> {
    if let Some(silence) = silences.iter().find(|silence| silence.matches(view)) {
        return Some(format!("silence #{}: {}", silence.id, silence.reason));
    }
    policy
        .router
        .in_maintenance(view, now)
        .map(|window| format!("maintenance window {window}"))
}

fn is_due(last_page: Option<DateTime<Utc>>, target: &Target, now: DateTime<Utc>) -> bool {
    let (Some(last), Ok(interval)) = (
        last_page,
        chrono::Duration::from_std(target.repeat_interval),
    ) else {
        return false;
    };
    now - last >= interval
}

/// The part of a finding that, when it changes, is worth an update.
/// Details are left out: counts that move every run are not news.
fn fingerprint(finding: &Finding) -> String {
    serde_json::json!([
        finding.severity,
        finding.title,
        finding.summary,
        finding.window,
        finding.delta,
        finding.sample_trace,
        finding.runbook,
        finding.links,
        finding.labels,
    ])
    .to_string()
}

async fn firing_alerts(conn: &mut AnyConnection, schedule_id: &str) -> Result<Vec<FiringAlert>> {
    let rows = sqlx::query(
        "SELECT id, alert_key, fingerprint, finding, first_seen_at FROM alerts \
         WHERE status = 'firing' AND schedule_id = $1",
    )
    .bind(schedule_id)
    .fetch_all(&mut *conn)
    .await
    .context("cannot read firing alerts")?;
    rows.iter()
        .map(|row| {
            Ok(FiringAlert {
                id: row.try_get(0)?,
                key: row.try_get(1)?,
                fingerprint: row.try_get(2)?,
                finding: serde_json::from_str(&row.try_get::<String, _>(3)?)?,
                first_seen_at: from_millis(row.try_get(4)?),
            })
        })
        .collect()
}

async fn insert_alert(
    conn: &mut AnyConnection,
    input: &FindingsInput<'_>,
    finding: &Finding,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (alert_key, schedule_id, job, status, severity, title, finding, \
         fingerprint, node, first_seen_at, last_seen_at, first_run_id, last_run_id) \
         VALUES ($1, $2, $3, 'firing', $4, $5, $6, $7, $8, $9, $9, $10, $10) RETURNING id",
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
    .fetch_one(&mut *conn)
    .await
    .context("cannot record an alert")?;
    Ok(id)
}

/// Per notifier: whether and when this alert was paged there.
struct Seen {
    /// Last trigger or reminder not suppressed.
    last_page: Option<DateTime<Utc>>,
    route: String,
    group_key: String,
}

/// Notifiers that have (or will have) this alert's trigger: a trigger
/// row that was not suppressed.
async fn delivery_history(
    conn: &mut AnyConnection,
    alert_id: i64,
) -> Result<BTreeMap<String, Seen>> {
    let rows = sqlx::query(
        "SELECT notifier, MAX(created_at), MIN(route), MIN(group_key) FROM deliveries \
         WHERE alert_id = $1 AND action IN ('trigger', 'repeat') \
         AND status NOT IN ('suppressed', 'skipped') \
         GROUP BY notifier",
    )
    .bind(alert_id)
    .fetch_all(&mut *conn)
    .await
    .context("cannot read an alert's deliveries")?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>(0)?,
                Seen {
                    last_page: row.try_get::<Option<i64>, _>(1)?.map(from_millis),
                    route: row.try_get(2)?,
                    group_key: row.try_get(3)?,
                },
            ))
        })
        .collect()
}

/// Writes one outbox row. A muted trigger is recorded `suppressed` with
/// the reason; a trigger joins its group's pending deadline (`group_wait`).
#[allow(clippy::too_many_arguments)]
async fn enqueue(
    conn: &mut AnyConnection,
    view: &AlertView,
    target: &Target,
    action: Action,
    muted_by: Option<&str>,
    now: DateTime<Utc>,
    recorded: &mut Recorded,
) -> Result<()> {
    let status = if muted_by.is_some() {
        recorded.suppressed += 1;
        "suppressed"
    } else {
        recorded.deliveries += 1;
        "pending"
    };
    let mut not_before = to_millis(now);
    if action == Action::Trigger && !target.group_wait.is_zero() && muted_by.is_none() {
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
    sqlx::query(
        "INSERT INTO deliveries (alert_id, alert_key, notifier, route, group_key, action, status, \
         reason, view, created_at, not_before) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(view.alert_id)
    .bind(&view.key)
    .bind(&target.notifier)
    .bind(&target.route)
    .bind(&target.group_key)
    .bind(action.as_str())
    .bind(status)
    .bind(muted_by)
    .bind(serde_json::to_string(view)?)
    .bind(to_millis(now))
    .bind(not_before)
    .execute(&mut *conn)
    .await
    .context("cannot write a delivery to the outbox")?;
    Ok(())
}

/// Records a test alert for `patrol alert test ROUTE`: an alert row
/// (closed at once, so it never shows as open) and a `test` delivery to
/// each of the route's notifiers. Returns the alert's id.
pub async fn record_test_alert(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    route: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let route = policy
        .router
        .route(route)
        .with_context(|| format!("unknown route `{route}`"))?
        .clone();
    let mut finding = Finding::new(
        format!("patrol/test/{}/{}", route.name, now.timestamp_millis()),
        patrol_job_api::Severity::Info,
        format!("Test alert through route `{}`", route.name),
    );
    finding.summary = format!(
        "Sent by `patrol alert test {}` from {node}. Nothing is wrong; no action needed.",
        route.name
    );
    finding.runbook = Some("alert-test".into());
    let input = FindingsInput {
        schedule_id: super::PATROL_SCHEDULE,
        job: super::PATROL_SCHEDULE,
        run_id: None,
        findings: std::slice::from_ref(&finding),
        resolve_absent: false,
        also_resolve: None,
        named_route: Some(&route.name),
        notifiers: None,
        node,
    };
    let fingerprint = fingerprint(&finding);
    let id = insert_alert(conn, &input, &finding, &fingerprint, now).await?;
    sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = $1 WHERE id = $2")
        .bind(to_millis(now))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let view = policy.view(id, &input, &finding, true, now, now, None);
    let mut recorded = Recorded::default();
    for target in policy.router.targets(&view, Some(&route.name)) {
        enqueue(conn, &view, &target, Action::Test, None, now, &mut recorded).await?;
    }
    Ok(id)
}
