//! Recording and delivering alerts against both ledgers, with a notifier
//! that records what it was given and fails on demand.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use patrol_job_api::{Finding, Severity};
use tokio::sync::Notify;

use super::config::{AlertingConfig, AlertingSpec};
use super::matcher::Matcher;
use super::notifiers::NotifierSettings;
use super::notify::{Action, Notification, Notifier, SendError, Sent};
use super::policy::AlertPolicy;
use super::record::{record_findings, FindingsInput, Recorded};
use super::worker::DeliveryWorker;
use crate::ledger::tests::ledgers_for;
use crate::ledger::Ledger;

fn finding(key: &str, title: &str) -> Finding {
    Finding::new(key, Severity::Error, title)
}

fn config() -> AlertingConfig {
    let mut spec = AlertingSpec::default();
    for name in ["chat", "pager"] {
        spec.notifiers
            .insert(name.into(), NotifierSettings::Console(Default::default()));
    }
    AlertingConfig::check(spec, Path::new(""), None).unwrap()
}

async fn record(
    ledger: &Ledger,
    policy: &AlertPolicy,
    findings: &[Finding],
    resolve_absent: bool,
) -> Recorded {
    record_resolving(ledger, policy, findings, resolve_absent, None).await
}

async fn record_resolving(
    ledger: &Ledger,
    policy: &AlertPolicy,
    findings: &[Finding],
    resolve_absent: bool,
    also_resolve: Option<&str>,
) -> Recorded {
    let input = FindingsInput {
        schedule_id: "disk-check",
        job: "command",
        run_id: Some(1),
        findings,
        resolve_absent,
        also_resolve,
        named_route: None,
        notifiers: None,
        node: "node-a",
    };
    let mut tx = ledger.pool().begin().await.unwrap();
    let recorded = record_findings(&mut tx, policy, &input, Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    recorded
}

async fn outbox(ledger: &Ledger) -> Vec<(String, String, String, String)> {
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT alert_key, notifier, action, status FROM deliveries ORDER BY id")
            .fetch_all(ledger.pool())
            .await
            .unwrap();
    rows
}

#[tokio::test]
async fn new_keys_trigger_seen_keys_stay_quiet_changes_update_and_absence_resolves() {
    for (_dir, ledger) in ledgers_for("patrol_alert_lifecycle").await {
        let policy = AlertPolicy::new(&config());
        let full = [
            finding("disk/sda1", "sda1 full"),
            finding("disk/sdb1", "sdb1 full"),
        ];
        let first = record(&ledger, &policy, &full, true).await;
        assert_eq!((first.triggered, first.deliveries), (2, 4));

        let again = record(&ledger, &policy, &full, true).await;
        assert_eq!(again.unchanged, 2);
        assert_eq!(again.deliveries, 0, "a repeat run must page nothing");

        let changed = [
            finding("disk/sda1", "sda1 full (99%)"),
            finding("disk/sdb1", "sdb1 full"),
        ];
        let update = record(&ledger, &policy, &changed, true).await;
        assert_eq!((update.updated, update.deliveries), (1, 2));

        // A partial run does not resolve what it did not see.
        let partial = record(&ledger, &policy, &changed[..1], false).await;
        assert_eq!(partial.resolved, 0);

        let cleared = record(&ledger, &policy, &changed[..1], true).await;
        assert_eq!((cleared.resolved, cleared.deliveries), (1, 2));
        let open = ledger.alerts(true, 10).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].key, "disk/sda1");

        let actions: Vec<String> = outbox(&ledger)
            .await
            .into_iter()
            .filter(|(key, notifier, _, _)| key == "disk/sdb1" && notifier == "pager")
            .map(|(_, _, action, _)| action)
            .collect();
        assert_eq!(actions, ["trigger", "resolve"]);

        // The key firing again later is a new incident: a new page.
        let back = record(&ledger, &policy, &changed, true).await;
        assert_eq!(back.triggered, 1);
        assert_eq!(ledger.alerts(false, 10).await.unwrap().len(), 3);
    }
}

#[tokio::test]
async fn a_partial_success_clears_the_run_failed_alert_but_nothing_it_did_not_look_at() {
    for (_dir, ledger) in ledgers_for("patrol_alert_also_resolve").await {
        let policy = AlertPolicy::new(&config());
        let failed = finding("patrol/run-failed/disk-check", "disk-check failed");
        let disk = finding("disk/sda1", "sda1 full");
        record(&ledger, &policy, std::slice::from_ref(&disk), true).await;
        let first = record(&ledger, &policy, &[failed.clone(), disk], false).await;
        assert_eq!(first.triggered, 1);

        // Succeeded with partial results: the failure is over, the disk
        // alert stays (this run may not have looked at sda1).
        let partial = record_resolving(&ledger, &policy, &[], false, Some(&failed.key)).await;
        assert_eq!((partial.resolved, partial.deliveries), (1, 2));
        let open: Vec<String> = ledger
            .alerts(true, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|alert| alert.key)
            .collect();
        assert_eq!(open, ["disk/sda1"]);

        // Reported again by the run itself, it is not resolved.
        let back = record(&ledger, &policy, std::slice::from_ref(&failed), false).await;
        assert_eq!(back.triggered, 1);
        let kept = record_resolving(
            &ledger,
            &policy,
            std::slice::from_ref(&failed),
            false,
            Some(&failed.key),
        )
        .await;
        assert_eq!((kept.resolved, kept.unchanged), (0, 1));
    }
}

#[tokio::test]
async fn silenced_alerts_are_recorded_but_paged_only_once_the_silence_ends() {
    for (_dir, ledger) in ledgers_for("patrol_alert_silence").await {
        let policy = AlertPolicy::new(&config());
        let now = Utc::now();
        let matcher = Matcher::from_terms(&["key=disk/*".to_string()]).unwrap();
        let silence = ledger
            .add_silence(
                &matcher,
                "replacing disks",
                "ops",
                now,
                now + chrono::Duration::hours(2),
            )
            .await
            .unwrap();
        let findings = [finding("disk/sda1", "sda1 full")];
        let muted = record(&ledger, &policy, &findings, true).await;
        assert_eq!(
            (muted.triggered, muted.deliveries, muted.suppressed),
            (1, 0, 2)
        );
        let rows: Vec<(Option<String>,)> =
            sqlx::query_as("SELECT reason FROM deliveries WHERE status = 'suppressed'")
                .fetch_all(ledger.pool())
                .await
                .unwrap();
        assert!(rows[0].0.as_deref().unwrap().contains("replacing disks"));

        assert!(ledger.expire_silence(silence, Utc::now()).await.unwrap());
        let after = record(&ledger, &policy, &findings, true).await;
        assert_eq!(after.deliveries, 2, "paged once the silence ended");
        let again = record(&ledger, &policy, &findings, true).await;
        assert_eq!(again.deliveries, 0);
    }
}

/// Records what it sends; fails while `failures` has entries.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, Action)>>,
    failures: Mutex<VecDeque<SendError>>,
}

#[async_trait]
impl Notifier for Recorder {
    fn kind(&self) -> &'static str {
        "recorder"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        self.sent
            .lock()
            .unwrap()
            .push((notification.alert.key.clone(), notification.action));
        Ok(Sent {
            remote: Some(serde_json::json!({ "ts": notification.delivery_id })),
        })
    }
}

#[tokio::test]
async fn the_worker_retries_failures_and_keeps_each_keys_order() {
    for (_dir, ledger) in ledgers_for("patrol_alert_worker").await {
        let mut config = config();
        config.delivery.retry_min = Duration::from_millis(20);
        config.delivery.retry_max = Duration::from_millis(50);
        config.notifiers.retain(|name, _| name == "chat");
        config.routes[0].notifiers = vec!["chat".into()];
        let policy = Arc::new(AlertPolicy::new(&config));
        let recorder = Arc::new(Recorder::default());
        for _ in 0..3 {
            recorder
                .failures
                .lock()
                .unwrap()
                .push_back(SendError::transient("503 from the stand-in"));
        }
        let worker = DeliveryWorker::with_notifiers(
            ledger.clone(),
            &config,
            policy.clone(),
            vec![("chat".to_string(), recorder.clone() as Arc<dyn Notifier>)],
            "test-instance",
            "node-a",
            Arc::new(Notify::new()),
        );
        let findings = [finding("k/1", "one"), finding("k/2", "two")];
        record(&ledger, &policy, &findings, true).await;
        record(
            &ledger,
            &policy,
            &[finding("k/1", "one, worse"), finding("k/2", "two")],
            true,
        )
        .await;
        record(&ledger, &policy, &[], true).await;
        let left = worker.drain(Duration::from_secs(20)).await.unwrap();
        assert_eq!(left, 0);
        let sent = recorder.sent.lock().unwrap().clone();
        let of = |key: &str| -> Vec<Action> {
            sent.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, a)| *a)
                .collect()
        };
        assert_eq!(
            of("k/1"),
            [Action::Trigger, Action::Update, Action::Resolve]
        );
        assert_eq!(of("k/2"), [Action::Trigger, Action::Resolve]);
        let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM delivery_attempts")
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        assert_eq!(
            attempts,
            5 + 3,
            "every attempt, failed or not, is a ledger row"
        );
    }
}

#[tokio::test]
async fn maintenance_windows_mute_matching_alerts_only() {
    for (_dir, ledger) in ledgers_for("patrol_alert_maintenance").await {
        let mut spec = AlertingSpec::default();
        spec.notifiers
            .insert("chat".into(), NotifierSettings::Console(Default::default()));
        // Opens every minute for two minutes: always open.
        spec.maintenance.push(super::config::MaintenanceSpec {
            name: "db-upgrade".into(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            duration: patrol_job_api::units::HumanDuration(Duration::from_secs(120)),
            matcher: Matcher::from_terms(&["key=db/*".to_string()]).unwrap(),
        });
        let policy = AlertPolicy::new(&AlertingConfig::check(spec, Path::new(""), None).unwrap());
        let recorded = record(
            &ledger,
            &policy,
            &[
                finding("db/replica-lag", "lag"),
                finding("disk/sda1", "full"),
            ],
            true,
        )
        .await;
        assert_eq!(
            (recorded.triggered, recorded.deliveries, recorded.suppressed),
            (2, 1, 1)
        );
        let muted: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT alert_key, reason FROM deliveries WHERE status = 'suppressed'")
                .fetch_all(ledger.pool())
                .await
                .unwrap();
        assert_eq!(muted[0].0, "db/replica-lag");
        assert_eq!(muted[0].1.as_deref(), Some("maintenance window db-upgrade"));
    }
}

#[test]
fn every_built_in_alert_ships_its_runbook() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    for name in super::BUILT_IN_RUNBOOKS {
        let path = dir.join(format!("{name}.md"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing", path.display()));
        assert!(text.starts_with("# "), "{} needs a title", path.display());
    }
}

#[tokio::test]
async fn old_resolved_alerts_are_pruned_once_nothing_is_left_to_send() {
    for (_dir, ledger) in ledgers_for("patrol_alert_prune").await {
        let policy = AlertPolicy::new(&config());
        record(&ledger, &policy, &[finding("k/old", "old")], true).await;
        record(&ledger, &policy, &[], true).await;
        let later = Utc::now() + chrono::Duration::days(1);
        assert_eq!(
            ledger.prune_alerts(later).await.unwrap(),
            0,
            "its resolve is still to be sent"
        );
        sqlx::query("UPDATE deliveries SET status = 'sent'")
            .execute(ledger.pool())
            .await
            .unwrap();
        record(&ledger, &policy, &[finding("k/new", "new")], true).await;
        assert_eq!(ledger.prune_alerts(later).await.unwrap(), 1);
        let left: Vec<String> = ledger
            .alerts(false, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|alert| alert.key)
            .collect();
        assert_eq!(left, ["k/new"], "firing alerts are kept");
    }
}

/// The view an outbox row holds, for `key`'s `action` at `notifier`.
async fn sent_view(ledger: &Ledger, key: &str, action: &str) -> super::notify::AlertView {
    let view: String = sqlx::query_scalar(
        "SELECT view FROM deliveries WHERE alert_key = $1 AND action = $2 AND notifier = 'pager' \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(key)
    .bind(action)
    .fetch_one(ledger.pool())
    .await
    .unwrap();
    serde_json::from_str(&view).unwrap()
}

#[tokio::test]
async fn new_alerts_are_known_by_schedule_and_key_and_alerts_opened_before_keep_their_bare_key() {
    for (_dir, ledger) in ledgers_for("patrol_alert_notify_keys").await {
        let policy = AlertPolicy::new(&config());
        let both = [finding("disk/old", "old"), finding("disk/new", "new")];
        record(&ledger, &policy, &both[..1], true).await;
        // `disk/old` was opened before migration 8: no stored notify key.
        sqlx::query("UPDATE alerts SET notify_key = NULL WHERE alert_key = 'disk/old'")
            .execute(ledger.pool())
            .await
            .unwrap();
        record(&ledger, &policy, &both, true).await;
        assert_eq!(
            sent_view(&ledger, "disk/new", "trigger").await.notify_key,
            "disk-check/disk/new"
        );
        record(&ledger, &policy, &[], true).await;
        assert_eq!(
            sent_view(&ledger, "disk/old", "resolve").await.notify_key,
            "disk/old",
            "its resolve reaches the incident it opened"
        );
        assert_eq!(
            sent_view(&ledger, "disk/new", "resolve").await.notify_key,
            "disk-check/disk/new"
        );
    }
}

#[test]
fn a_job_cannot_report_the_runners_keys() {
    let (usable, problems) = super::record::usable_findings(vec![
        finding("patrol/run-failed/sweep", "forged"),
        finding("disk/sda1", "real"),
    ]);
    assert_eq!(usable.len(), 1);
    assert_eq!(usable[0].key, "disk/sda1");
    assert!(problems[0].contains("reserved"), "{problems:?}");
}
