//! Turning a run's findings into alerts and outbox rows, inside the
//! transaction that records the run's end: the rules are `decide.rs`, the
//! rows `ledger/alerts.rs`; this file joins them. Nothing is sent here;
//! the delivery worker sends what this writes.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use patrol_job_api::Finding;
use sqlx::AnyConnection;

use super::decide::{decide, fingerprint, AlertRef, FiringAlert, PlannedDelivery};
use super::notify::Action;
use super::policy::AlertPolicy;
use crate::ledger::silences::active_silences;
use crate::ledger::{alerts, Run, RunEndWrites};

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

/// A run's findings and what recording them needs, written in the
/// transaction that records the run's end ([`Ledger::finish_run`]).
///
/// [`Ledger::finish_run`]: crate::ledger::Ledger::finish_run
#[derive(Debug, Clone)]
pub struct RunAlerts<'a> {
    pub policy: &'a AlertPolicy,
    pub input: FindingsInput<'a>,
}

#[async_trait::async_trait]
impl RunEndWrites for RunAlerts<'_> {
    async fn write(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let recorded = record_findings(conn, self.policy, &self.input, now).await?;
        if recorded == Recorded::default() {
            return Ok(None);
        }
        Ok(Some(serde_json::to_value(&recorded)?))
    }
}

/// The alert a crashed run out of retries raises, like any run that failed
/// for good.
pub struct CrashPage {
    pub policy: Arc<AlertPolicy>,
    pub finding: Finding,
    pub named_route: Option<String>,
    pub node: String,
}

impl CrashPage {
    /// The page for `run`, to be written with its crash.
    pub fn of(self, run: &Run) -> Box<dyn RunEndWrites> {
        Box::new(CrashAlert {
            page: self,
            schedule_id: run.schedule_id.clone(),
            job: run.job.clone(),
            run_id: run.id,
        })
    }
}

struct CrashAlert {
    page: CrashPage,
    schedule_id: String,
    job: String,
    run_id: i64,
}

#[async_trait::async_trait]
impl RunEndWrites for CrashAlert {
    async fn write(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let input = FindingsInput {
            schedule_id: &self.schedule_id,
            job: &self.job,
            run_id: Some(self.run_id),
            findings: std::slice::from_ref(&self.page.finding),
            resolve_absent: false,
            also_resolve: None,
            named_route: self.page.named_route.as_deref(),
            notifiers: None,
            node: &self.page.node,
        };
        let recorded = record_findings(conn, &self.page.policy, &input, now).await?;
        Ok(Some(serde_json::to_value(&recorded)?))
    }
}

/// Records `input` on `conn` (a transaction): reads the schedule's firing
/// alerts and the silences, decides (`decide.rs`), and stores the decision.
/// Findings with a bad key or title, or repeating a key, are skipped and
/// counted by the caller (see [`usable_findings`]).
pub async fn record_findings(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    alerts::lock_schedule_alerts(conn, input.schedule_id).await?;
    let firing = alerts::firing_alerts(conn, input.schedule_id).await?;
    let silences = active_silences(conn, now).await?;
    let decision = decide(policy, input, &firing, &silences, now);
    alerts::store_decision(conn, &decision, input, now).await?;
    Ok(decision.recorded)
}

/// Findings worth recording: valid ones, first of each key, none under
/// the runner's reserved `patrol/` (a job reporting, then dropping,
/// `patrol/run-failed/<schedule>` would page or resolve as the runner).
/// Returns them and a note per finding left out.
pub fn usable_findings(findings: Vec<Finding>) -> (Vec<Finding>, Vec<String>) {
    let mut keys = HashSet::new();
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (index, finding) in findings.into_iter().enumerate() {
        if let Err(problem) = finding.check() {
            problems.push(format!("finding {}: {problem}", index + 1));
        } else if super::keys::is_reserved(&finding.key) {
            problems.push(format!(
                "finding {}: key `{}` is under `{}`, reserved for patrol's own alerts",
                index + 1,
                finding.key,
                super::keys::RESERVED_PREFIX
            ));
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

/// Resolves a firing alert outside a run (patrol's own alerts).
pub async fn resolve_key(
    conn: &mut AnyConnection,
    policy: &AlertPolicy,
    input: &FindingsInput<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Recorded> {
    alerts::lock_schedule_alerts(conn, input.schedule_id).await?;
    let firing: Vec<FiringAlert> = alerts::firing_alerts(conn, input.schedule_id)
        .await?
        .into_iter()
        .filter(|alert| alert.key == key)
        .collect();
    let resolving = FindingsInput {
        findings: &[],
        resolve_absent: true,
        also_resolve: None,
        ..input.clone()
    };
    let decision = decide(policy, &resolving, &firing, &[], now);
    alerts::store_decision(conn, &decision, &resolving, now).await?;
    Ok(decision.recorded)
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
    let id = alerts::insert_alert(conn, &input, &finding, &fingerprint(&finding), now).await?;
    alerts::close_alert(conn, id, now).await?;
    let view = policy.view(id, &input, &finding, true, now, now, None);
    for target in policy.router.targets(&view, Some(&route.name)) {
        let delivery = PlannedDelivery {
            alert: AlertRef::Firing(id),
            view: view.clone(),
            target,
            action: Action::Test,
            muted_by: None,
        };
        alerts::enqueue(conn, id, &delivery, now).await?;
    }
    Ok(id)
}
