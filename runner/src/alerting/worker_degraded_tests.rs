//! The degraded-delivery page (issue 19, item 6): it needs failures in a
//! row that last `degraded_after_for`, not a burst of parallel first
//! attempts meeting one blip; and a page not sent by the time the notifier
//! delivers again is never sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patrol_job_api::{Clock, Finding, Severity};
use tokio::sync::{watch, Notify};

use super::tests::disk_check_input;
use super::{degraded_key, DeliveryWorker, PATROL_SOURCE};
use crate::alerting::config::{AlertingConfig, AlertingSpec};
use crate::alerting::notify::{Action, Notification, Notifier, SendError, Sent};
use crate::alerting::policy::AlertPolicy;
use crate::alerting::record::record_findings;
use crate::ledger::Ledger;
use crate::scheduler::tests::{paused_sqlite_ledger, t};
use crate::scheduler::TokioClock;

/// Fails every send, as a notifier whose service is down.
struct Down;

#[async_trait::async_trait]
impl Notifier for Down {
    fn kind(&self) -> &'static str {
        "down"
    }

    async fn send(&self, _: &Notification) -> Result<Sent, SendError> {
        Err(SendError::transient("connection refused"))
    }
}

/// Keeps the key and action of everything it is sent.
#[derive(Default)]
struct Received(Mutex<Vec<(String, Action)>>);

impl Received {
    fn degraded_pages(&self) -> Vec<Action> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| key.starts_with("patrol/delivery-degraded/"))
            .map(|(_, action)| *action)
            .collect()
    }
}

#[async_trait::async_trait]
impl Notifier for Received {
    fn kind(&self) -> &'static str {
        "received"
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, SendError> {
        self.0
            .lock()
            .unwrap()
            .push((notification.alert.key.clone(), notification.action));
        Ok(Sent::default())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    ticker: tokio::task::JoinHandle<()>,
    clock: Arc<dyn Clock>,
    start: DateTime<Utc>,
    chat: Arc<Received>,
    worker: DeliveryWorker,
}

/// Notifiers `broken` (down) and `chat`; failures page after 3 in a row
/// spanning the default 2 minutes.
async fn setup() -> Setup {
    let (dir, ledger, ticker) = paused_sqlite_ledger().await;
    let start = t("2026-12-07T10:00:00Z");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let spec: AlertingSpec = serde_norway::from_str(
        "notifiers:\n  broken:\n    kind: console\n  chat:\n    kind: console\n\
         delivery:\n  degraded_after: 3\n  retry_min: 1s\n  retry_max: 10s\n",
    )
    .unwrap();
    let config = AlertingConfig::check(spec, std::path::Path::new(""), None).unwrap();
    assert_eq!(
        config.delivery.degraded_after_for,
        Duration::from_secs(120),
        "the documented default"
    );
    let policy = Arc::new(AlertPolicy::new(&config));
    let chat = Arc::new(Received::default());
    let worker = DeliveryWorker::with_notifiers(
        ledger.clone(),
        &config,
        policy,
        vec![
            ("broken".into(), Arc::new(Down) as Arc<dyn Notifier>),
            ("chat".into(), chat.clone() as Arc<dyn Notifier>),
        ],
        "instance-a",
        "node-a",
        Arc::new(Notify::new()),
    )
    .with_clock(clock.clone());
    Setup {
        _dir: dir,
        ledger,
        ticker,
        clock,
        start,
        chat,
        worker,
    }
}

impl Setup {
    async fn degraded_firing(&self) -> bool {
        self.ledger
            .has_firing_alert(PATROL_SOURCE, &degraded_key("broken"))
            .await
            .unwrap()
    }

    /// Runs the worker until the clock reads `until`, then stops it.
    async fn run_until(&self, until: DateTime<Utc>) {
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(self.worker.clone().run(stopped));
        while self.clock.now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    async fn set_health(&self, failures: i64, success: bool) {
        let now = self.clock.now().timestamp_millis();
        sqlx::query(
            "INSERT INTO notifier_health (notifier, consecutive_failures, last_failure_at, \
             last_success_at) VALUES ('broken', $1, $2, $3) ON CONFLICT (notifier) DO UPDATE \
             SET consecutive_failures = excluded.consecutive_failures, \
             last_success_at = excluded.last_success_at",
        )
        .bind(failures)
        .bind(now)
        .bind(success.then_some(now))
        .execute(self.ledger.pool())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn parallel_first_attempts_failing_at_once_page_only_once_failures_last() {
    let s = setup().await;
    let findings: Vec<Finding> = (0..5)
        .map(|n| Finding::new(format!("disk/{n}"), Severity::Error, "full"))
        .collect();
    let input = disk_check_input(&findings);
    let mut tx = s.ledger.pool().begin().await.unwrap();
    record_findings(&mut tx, &s.worker.policy, &input, s.start)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Five first attempts fail together, then their retries for 30 s:
    // far more than 3 failures, but not for 2 minutes.
    s.run_until(s.start + chrono::Duration::seconds(30)).await;
    let failures: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.notifier = 'broken' AND a.outcome = 'retry'",
    )
    .fetch_one(s.ledger.pool())
    .await
    .unwrap();
    assert!(failures >= 5, "{failures} failed attempts");
    assert!(
        !s.degraded_firing().await,
        "paged after {failures} failures within 30 s"
    );
    assert!(s.chat.degraded_pages().is_empty());

    // Still failing past 2 minutes: now it pages, on the other notifier.
    s.run_until(s.start + chrono::Duration::minutes(3)).await;
    assert!(s.degraded_firing().await);
    assert_eq!(s.chat.degraded_pages(), [Action::Trigger]);
    let raised: i64 = sqlx::query_scalar(
        "SELECT first_seen_at FROM alerts WHERE alert_key = 'patrol/delivery-degraded/broken'",
    )
    .fetch_one(s.ledger.pool())
    .await
    .unwrap();
    let raised = crate::ledger::from_millis(raised);
    assert!(
        raised >= s.start + chrono::Duration::minutes(2),
        "raised at {raised}, {} after the first failure",
        raised - s.start
    );
    s.ticker.abort();
}

#[tokio::test]
async fn a_page_not_yet_sent_when_the_notifier_recovers_is_never_sent() {
    let s = setup().await;
    // Raised, but not sent yet (the worker is not running)…
    s.set_health(5, false).await;
    s.worker.notifier_degraded("broken", 5).await.unwrap();
    assert!(s.degraded_firing().await);
    // …when a success on `broken` lands, racing the page: the success saw
    // nothing to resolve yet.
    s.set_health(0, true).await;
    s.run_until(s.start + chrono::Duration::seconds(10)).await;
    assert!(
        s.chat.degraded_pages().is_empty(),
        "a stale page went out: {:?}",
        s.chat.degraded_pages()
    );
    assert!(!s.degraded_firing().await, "resolved, quietly");
    assert_eq!(s.ledger.open_delivery_count().await.unwrap(), 0);

    // Raised again, and this time the recovery resolves it before any
    // send: neither the page nor its resolve is left to send.
    s.set_health(5, false).await;
    s.worker.notifier_degraded("broken", 5).await.unwrap();
    s.set_health(0, true).await;
    s.worker.notifier_recovered("broken").await.unwrap();
    assert!(!s.degraded_firing().await);
    assert_eq!(
        s.ledger.open_delivery_count().await.unwrap(),
        0,
        "the unsent page and its resolve are dropped"
    );
    s.run_until(s.start + chrono::Duration::seconds(20)).await;
    assert!(s.chat.degraded_pages().is_empty());
    s.ticker.abort();
}
