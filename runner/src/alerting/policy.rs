//! What recording an alert needs from the configuration: the router and
//! the runbooks, and how an alert is shown to a notifier.

use chrono::{DateTime, Utc};
use patrol_job_api::Finding;

use super::config::AlertingConfig;
use super::notify::AlertView;
use super::record::FindingsInput;
use super::routing::Router;
use super::runbooks::Runbooks;

#[derive(Debug, Clone)]
pub struct AlertPolicy {
    pub router: Router,
    pub runbooks: Runbooks,
}

impl AlertPolicy {
    pub fn new(config: &AlertingConfig) -> Self {
        Self {
            router: Router::new(config),
            runbooks: Runbooks::new(&config.runbooks_dir, config.runbooks_base_url.as_deref()),
        }
    }

    /// The alert as notifiers see it at this event.
    #[allow(clippy::too_many_arguments)]
    pub fn view(
        &self,
        alert_id: i64,
        input: &FindingsInput<'_>,
        finding: &Finding,
        firing: bool,
        first_seen_at: DateTime<Utc>,
        now: DateTime<Utc>,
        resolved_at: Option<DateTime<Utc>>,
    ) -> AlertView {
        AlertView {
            alert_id,
            key: finding.key.clone(),
            // A firing alert's own stored key replaces this (decide.rs).
            notify_key: super::keys::notify_key(input.schedule_id, &finding.key),
            schedule_id: input.schedule_id.to_string(),
            job: input.job.to_string(),
            severity: finding.severity,
            title: finding.title.clone(),
            summary: finding.summary.clone(),
            window: finding.window.clone(),
            delta: finding.delta.clone(),
            sample_trace: finding.sample_trace.clone(),
            runbook: finding
                .runbook
                .as_deref()
                .map(|name| self.runbooks.view(name)),
            links: finding.links.clone(),
            labels: finding.labels.clone(),
            details: finding.details.clone(),
            firing,
            first_seen_at,
            last_seen_at: now,
            resolved_at,
            run_id: input.run_id,
            node: input.node.to_string(),
        }
    }
}
