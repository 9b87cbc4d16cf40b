//! Alerts for the notifiers' tests, shaped like the seed's "Actionable
//! Alert": title, severity, window, delta, sample trace and playbook.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use patrol_job_api::{Link, Severity};

use super::super::notify::{Action, AlertView, Notification, RunbookView};

pub(super) fn sample_alert() -> AlertView {
    let first = Utc
        .with_ymd_and_hms(2025, 12, 5, 10, 0, 3)
        .single()
        .expect("a valid time");
    let last = Utc
        .with_ymd_and_hms(2025, 12, 5, 10, 10, 4)
        .single()
        .expect("a valid time");
    AlertView {
        alert_id: 42,
        key: "traffic/export-spike/eu".into(),
        notify_key: "traffic-eu/traffic/export-spike/eu".into(),
        schedule_id: "traffic-eu".into(),
        job: "traffic".into(),
        severity: Severity::Critical,
        title: "Traffic: export-spike (EU)".into(),
        summary: "Exports ran at 3.2x the baseline for 10 minutes.".into(),
        window: Some("2025-12-05T10:00Z..10:10Z".into()),
        delta: Some("3.2x over baseline".into()),
        sample_trace: Some("0f3a9c".into()),
        runbook: Some(RunbookView {
            name: "traffic-export".into(),
            url: Some("https://runbooks.example/traffic-export.md".into()),
            excerpt: "1. Check the export queue\n2. Page the data owner".into(),
        }),
        links: vec![Link {
            href: "https://grafana.example/d/export".into(),
            text: Some("Dashboard".into()),
        }],
        labels: BTreeMap::from([
            ("region".to_string(), "eu".to_string()),
            ("team".to_string(), "payments".to_string()),
        ]),
        details: serde_json::json!({"rate": 3.2, "baseline": 1.0}),
        firing: true,
        first_seen_at: first,
        last_seen_at: last,
        resolved_at: None,
        run_id: Some(7),
        node: "node-a".into(),
    }
}

/// `alert` resolved at its last sighting, as a resolve event carries it.
pub(super) fn resolved(mut alert: AlertView) -> AlertView {
    alert.firing = false;
    alert.resolved_at = Some(alert.last_seen_at);
    alert
}

pub(super) fn notification(action: Action, alert: AlertView) -> Notification {
    Notification {
        delivery_id: 17,
        action,
        alert,
        remote: None,
        unsure_since: None,
    }
}
