//! The delivery worker: sends what the outbox holds. Per notifier it keeps
//! a rate limit, honours `Retry-After`, retries with capped exponential
//! backoff (backon), and sends a key's deliveries strictly in order. After
//! `degraded_after` failures in a row on one notifier, spanning at least
//! `degraded_after_for`, it raises `patrol/delivery-degraded/<name>` on the
//! others, resolved once that notifier delivers again; a page about it not
//! yet sent by then is dropped, never sent stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use backon::BackoffBuilder;
use patrol_job_api::{Clock, Finding, Severity, SystemClock};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
// tokio's, not std's: a paused test runtime moves it with its timers.
use tokio::time::Instant;

use super::config::{AlertingConfig, DeliverySettings};
use super::notifiers::RateLimit;
use super::notify::{Action, Notification, Notifier, Retry, SendError};
use super::outbox::{skip_unsent_pages, AttemptEnd, Due};
use super::policy::AlertPolicy;
use super::record::{record_findings, resolve_key, FindingsInput};
use super::secret::redact;
use crate::ledger::Ledger;

pub use super::PATROL_SCHEDULE as PATROL_SOURCE;
/// Deliveries in flight per notifier; order per key holds regardless.
const IN_FLIGHT_PER_NOTIFIER: usize = 16;
/// A claimed delivery not finished within this is presumed lost and sent again.
const LEASE: Duration = Duration::from_secs(120);
/// Upper bound on a single send, whatever the notifier's own timeout.
const SEND_LIMIT: Duration = Duration::from_secs(60);
/// How often the outbox is looked at without being woken.
const POLL: Duration = Duration::from_millis(500);

struct Channel {
    notifier: Arc<dyn Notifier>,
    /// Decides how many deliveries may be claimed for sending.
    limiter: Mutex<Limiter>,
    /// The same limit, taken just before each request goes out: the time
    /// from claim to request varies (a busy ledger), and the service counts
    /// requests, not claims.
    send_gate: Mutex<Limiter>,
    /// Set from a 429's `Retry-After`: nothing goes to this notifier before.
    blocked_until: Mutex<Option<Instant>>,
    in_flight: AtomicUsize,
}

/// Generic cell rate algorithm: `count` per `per`, bursts up to `count`.
#[derive(Debug)]
struct Limiter {
    interval: Duration,
    burst: Duration,
    /// Theoretical arrival time of the next send.
    tat: Option<Instant>,
}

impl Limiter {
    fn new(limit: Option<RateLimit>) -> Self {
        let (interval, burst) = match limit {
            Some(limit) if limit.count > 0 => {
                let interval = limit.per / limit.count;
                (interval, interval * (limit.count - 1))
            }
            _ => (Duration::ZERO, Duration::ZERO),
        };
        Self {
            interval,
            burst,
            tat: None,
        }
    }

    /// How long until a slot is free; `None` if one is free now.
    fn ready_in(&self, now: Instant) -> Option<Duration> {
        if self.interval.is_zero() {
            return None;
        }
        let tat = self.tat.unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(self.burst).unwrap_or(now);
        (allowed_at > now).then(|| allowed_at - now)
    }

    /// Takes a slot now, or says how long until one is free.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let tat = self.tat.unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(self.burst).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        self.tat = Some(tat + self.interval);
        Ok(())
    }
}

/// Everything a sender task needs; cheap to clone.
#[derive(Clone)]
pub struct DeliveryWorker {
    ledger: Ledger,
    channels: Arc<BTreeMap<String, Channel>>,
    settings: DeliverySettings,
    policy: Arc<AlertPolicy>,
    instance: String,
    node: String,
    outbox: Arc<Notify>,
    /// Where wall time comes from (due times, leases, retry times).
    clock: Arc<dyn Clock>,
}

impl DeliveryWorker {
    /// Builds every configured notifier (resolving secrets).
    pub fn new(
        ledger: Ledger,
        config: &AlertingConfig,
        policy: Arc<AlertPolicy>,
        instance: &str,
        node: &str,
        outbox: Arc<Notify>,
    ) -> Result<Self> {
        let mut notifiers = Vec::new();
        for (name, settings) in &config.notifiers {
            let notifier = settings
                .build(name, &config.base)
                .map_err(|err| anyhow::anyhow!("notifier `{name}`: {}", redact(&err)))?;
            notifiers.push((name.clone(), notifier));
        }
        Ok(Self::with_notifiers(
            ledger, config, policy, notifiers, instance, node, outbox,
        ))
    }

    /// A worker over notifiers already built (tests, benchmarks).
    pub fn with_notifiers(
        ledger: Ledger,
        config: &AlertingConfig,
        policy: Arc<AlertPolicy>,
        notifiers: Vec<(String, Arc<dyn Notifier>)>,
        instance: &str,
        node: &str,
        outbox: Arc<Notify>,
    ) -> Self {
        let channels = notifiers
            .into_iter()
            .map(|(name, notifier)| {
                let limit = config
                    .notifiers
                    .get(&name)
                    .and_then(|settings| settings.rate_limit());
                let channel = Channel {
                    notifier,
                    limiter: Mutex::new(Limiter::new(limit)),
                    send_gate: Mutex::new(Limiter::new(limit)),
                    blocked_until: Mutex::new(None),
                    in_flight: AtomicUsize::new(0),
                };
                (name, channel)
            })
            .collect();
        Self {
            ledger,
            channels: Arc::new(channels),
            settings: config.delivery.clone(),
            policy,
            instance: instance.to_string(),
            node: node.to_string(),
            outbox,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads wall time from `clock` instead of the system's (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends until `shutdown`; then waits for sends in flight (bounded by
    /// their timeouts) and releases anything still claimed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        // `None`: not done yet, so both happen at start.
        let mut last_reclaim: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|at| at.elapsed() >= every);
        loop {
            if *shutdown.borrow() {
                break;
            }
            if due(last_prune, Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                let cutoff = self.clock.now()
                    - chrono::Duration::from_std(self.settings.retention).unwrap_or_default();
                match self.ledger.prune_alerts(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(alerts = n, "pruned resolved alerts"),
                    Err(err) => tracing::warn!(error = %err, "cannot prune old alerts"),
                }
                self.settle_unknown_notifiers().await;
            }
            if due(last_reclaim, Duration::from_secs(5)) {
                last_reclaim = Some(Instant::now());
                match self.reclaim().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        deliveries = n,
                        "re-sending deliveries whose sender stopped mid-send"
                    ),
                    Err(err) => tracing::warn!(error = %err, "cannot reclaim stale deliveries"),
                }
            }
            let wait = match self.dispatch(&mut tasks).await {
                Ok(wait) => wait,
                Err(err) => {
                    tracing::warn!(error = %redact(&format!("{err:#}")), "delivery worker cannot read the outbox");
                    POLL
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.outbox.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    // Reap every send that has finished: one look serves all.
                    while tasks.try_join_next().is_some() {}
                }
                _ = shutdown.changed() => {}
            }
        }
        let drain = tokio::time::timeout(SEND_LIMIT, async {
            while tasks.join_next().await.is_some() {}
        });
        if drain.await.is_err() {
            tasks.abort_all();
        }
        if let Err(err) = self
            .ledger
            .release_deliveries(&self.instance, self.clock.now())
            .await
        {
            tracing::warn!(error = %err, "cannot release claimed deliveries");
        }
    }

    /// Sends what is due until nothing is left or `deadline` passes (the
    /// CLI, when no server is running). Returns how many remain.
    pub async fn drain(&self, deadline: Duration) -> Result<i64> {
        let until = Instant::now() + deadline;
        let mut tasks = JoinSet::new();
        loop {
            let _ = self.reclaim().await;
            let wait = self.dispatch(&mut tasks).await?;
            while tasks.join_next().await.is_some() {}
            let open = self.ledger.open_delivery_count().await?;
            if open == 0 || Instant::now() >= until {
                return Ok(open);
            }
            tokio::time::sleep(wait.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn reclaim(&self) -> Result<u64> {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(self.settings.node_ttl).unwrap_or_default();
        self.ledger.reclaim_expired_deliveries(now, now - ttl).await
    }

    /// Starts a sender for every due delivery a notifier can take now.
    /// Returns how long to wait before looking again.
    async fn dispatch(&self, tasks: &mut JoinSet<()>) -> Result<Duration> {
        let now = self.clock.now();
        let instant = Instant::now();
        let mut wait = POLL;
        // How many more each notifier can take now. Those that can take
        // none (blocked by a Retry-After, out of rate, or with every slot in
        // flight) are left out of the query: their backlog must not fill
        // the window and hide the others' due deliveries.
        let mut room: HashMap<&str, usize> = HashMap::new();
        let mut skip: Vec<&str> = Vec::new();
        for (name, channel) in self.channels.iter() {
            let blocked = channel
                .blocked_until
                .lock()
                .ok()
                .and_then(|b| *b)
                .filter(|until| *until > instant)
                .map(|until| until - instant);
            let limited = channel
                .limiter
                .lock()
                .ok()
                .and_then(|limiter| limiter.ready_in(instant));
            if let Some(later) = blocked.max(limited) {
                wait = wait.min(later);
                skip.push(name);
                continue;
            }
            let free =
                IN_FLIGHT_PER_NOTIFIER.saturating_sub(channel.in_flight.load(Ordering::SeqCst));
            if free == 0 {
                skip.push(name);
                continue;
            }
            room.insert(name, free);
        }
        let ready: Vec<&str> = room.keys().copied().collect();
        let window = room.values().sum::<usize>().clamp(16, 500);
        let due = self
            .ledger
            .due_deliveries_for(now, u32::try_from(window).unwrap_or(500), &ready)
            .await?;
        let mut picked = Vec::new();
        for (id, notifier) in due {
            let Some(channel) = self.channels.get(&notifier) else {
                continue;
            };
            let Some(free) = room.get_mut(notifier.as_str()).filter(|free| **free > 0) else {
                continue;
            };
            let slot = channel
                .limiter
                .lock()
                .map_or(Ok(()), |mut limiter| limiter.try_take(instant));
            if let Err(later) = slot {
                wait = wait.min(later);
                *free = 0;
                continue;
            }
            *free -= 1;
            picked.push(id);
        }
        // One claim (and its attempt rows) for the lot, before any is sent.
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let claimed = self
            .ledger
            .claim_deliveries(&picked, &self.instance, now, lease_until)
            .await?;
        for (due, attempt_id) in claimed {
            let Some(channel) = self.channels.get(&due.notifier) else {
                continue;
            };
            if let Some(subject) = degraded_page_subject(&due) {
                match self.recovered_before_page(subject, due.id).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // Better a page that may be stale than one held for the lease.
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot tell whether a degraded page is stale")
                    }
                }
            }
            if !channel.notifier.wants(due.action) {
                self.ledger
                    .skip_delivery(
                        due.id,
                        "this notifier does not send this kind of event",
                        self.clock.now(),
                    )
                    .await?;
                continue;
            }
            channel.in_flight.fetch_add(1, Ordering::SeqCst);
            let worker = self.clone();
            tasks.spawn(async move {
                worker.send(due, attempt_id).await;
            });
        }
        // Skipped notifiers wake the loop themselves: by `wait` (rate,
        // Retry-After) or by a send finishing (slots).
        let waiting: Vec<&str> = self
            .channels
            .keys()
            .map(String::as_str)
            .filter(|name| !skip.contains(name))
            .collect();
        if let Some(next) = self.ledger.next_delivery_due_for(&waiting).await? {
            let until = (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(5)));
        }
        Ok(wait)
    }

    /// Deliveries for a notifier this node does not have are left to a
    /// node that has it (configs differ during a rollout); if none sends
    /// them within `give_up_after`, they fail rather than wait forever.
    async fn settle_unknown_notifiers(&self) {
        let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
        let give_up_before = self.clock.now()
            - chrono::Duration::from_std(self.settings.give_up_after).unwrap_or_default();
        match self
            .ledger
            .settle_unknown_notifiers(&known, give_up_before)
            .await
        {
            Ok(waiting) => {
                for (notifier, pending) in waiting {
                    tracing::warn!(notifier = %notifier, pending,
                        "deliveries wait for a notifier this node does not have configured");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot look at unknown notifiers' deliveries")
            }
        }
    }

    async fn send(&self, due: Due, attempt_id: i64) {
        let Some(channel) = self.channels.get(&due.notifier) else {
            return;
        };
        let started = Instant::now();
        let end = self.attempt(channel, &due).await;
        channel.in_flight.fetch_sub(1, Ordering::SeqCst);
        match &end {
            AttemptEnd::Sent { .. } => tracing::info!(
                delivery = due.id, notifier = %due.notifier, action = due.action.as_str(),
                key = %due.view.key, ms = started.elapsed().as_millis() as u64, "alert delivered"
            ),
            AttemptEnd::Retry { error, next, .. } => tracing::warn!(
                delivery = due.id, notifier = %due.notifier, key = %due.view.key,
                attempt = due.attempts + 1, retry_at = %next, error = %error, "delivery failed; will retry"
            ),
            AttemptEnd::Failed { error, .. } => tracing::error!(
                delivery = due.id, notifier = %due.notifier, key = %due.view.key,
                error = %error, "delivery failed for good"
            ),
        }
        // The outcome must reach the ledger; if it cannot, the lease
        // expires and the delivery is sent again (at least once).
        let mut health = None;
        for pause in [0u64, 200, 1000, 5000] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match self
                .ledger
                .finish_attempt(&due, attempt_id, &end, self.clock.now())
                .await
            {
                Ok(recorded) => {
                    health = Some(recorded);
                    break;
                }
                Err(err) => {
                    tracing::warn!(delivery = due.id, error = %err, "cannot record a delivery attempt")
                }
            }
        }
        let Some(health) = health else {
            return;
        };
        if health.superseded {
            tracing::warn!(
                delivery = due.id, notifier = %due.notifier,
                "another sender took this delivery over; its outcome stands, not this one"
            );
            return;
        }
        let outcome = match end {
            AttemptEnd::Sent { .. } => self.notifier_recovered(&due.notifier).await,
            _ if health.consecutive_failures >= self.settings.degraded_after => {
                self.degraded_if_failing_long_enough(&due.notifier, health.consecutive_failures)
                    .await
            }
            _ => Ok(()),
        };
        if let Err(err) = outcome {
            tracing::warn!(notifier = %due.notifier, error = %err, "cannot record the notifier's health alert");
        }
    }

    async fn attempt(&self, channel: &Channel, due: &Due) -> AttemptEnd {
        let notification = Notification {
            delivery_id: due.id,
            action: due.action,
            alert: due.view.clone(),
            remote: due.remote.clone(),
            unsure_since: due.unsure_since,
        };
        wait_for_send_slot(channel).await;
        let result = tokio::time::timeout(SEND_LIMIT, channel.notifier.send(&notification)).await;
        match result {
            Ok(Ok(sent)) => AttemptEnd::Sent {
                remote: sent.remote,
            },
            Ok(Err(mut error)) => {
                // A service's Retry-After is honoured up to give_up_after; an
                // absurd value must not overflow the clock arithmetic below.
                if let Retry::Later {
                    retry_after: Some(after),
                } = &mut error.retry
                {
                    *after = (*after).min(self.settings.give_up_after);
                    let after = *after;
                    if let Ok(mut blocked) = channel.blocked_until.lock() {
                        *blocked = Some(Instant::now() + after);
                    }
                }
                self.retry_end(due, error)
            }
            Err(_) => self.retry_end(
                due,
                SendError::transient(format!("no answer within {}s", SEND_LIMIT.as_secs())),
            ),
        }
    }

    /// Retry later (after backoff or `Retry-After`), or give up when the
    /// error is permanent or the delivery has been failing too long.
    fn retry_end(&self, due: &Due, error: SendError) -> AttemptEnd {
        let message = redact(&error.message);
        let now = self.clock.now();
        let too_old =
            (now - due.created_at).to_std().unwrap_or_default() > self.settings.give_up_after;
        match error.retry {
            Retry::Never => AttemptEnd::Failed {
                error: message,
                http_status: error.http_status,
            },
            Retry::Later { .. } if too_old => AttemptEnd::Failed {
                error: format!(
                    "{message} (given up after retrying for {})",
                    humantime::format_duration(self.settings.give_up_after)
                ),
                http_status: error.http_status,
            },
            Retry::Later { retry_after } => {
                let backoff = backoff_delay(&self.settings, due.attempts);
                let delay =
                    retry_after.map_or(backoff, |after| after.max(Duration::from_millis(1)));
                AttemptEnd::Retry {
                    next: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                    error: message,
                    http_status: error.http_status,
                    retry_after,
                }
            }
        }
    }

    /// Raises the degraded alert once the failures in a row on `notifier`
    /// have lasted `degraded_after_for`: a count alone is reached within
    /// milliseconds when parallel first attempts all meet one blip.
    async fn degraded_if_failing_long_enough(&self, notifier: &str, failures: u32) -> Result<()> {
        let Some(since) = self.ledger.notifier_failing_since(notifier).await? else {
            return Ok(());
        };
        let failing_for = (self.clock.now() - since).to_std().unwrap_or_default();
        if failing_for < self.settings.degraded_after_for {
            return Ok(());
        }
        self.notifier_degraded(notifier, failures).await
    }

    /// A degraded page about `subject` that is due while `subject` delivers
    /// again (its latest attempt succeeded: the success raced the page, or
    /// the page waited behind other deliveries) is skipped, and the alert
    /// resolved without telling anyone. Returns whether it was skipped.
    async fn recovered_before_page(&self, subject: &str, delivery: i64) -> Result<bool> {
        if self.ledger.notifier_failing_since(subject).await?.is_some() {
            return Ok(false);
        }
        self.ledger
            .skip_delivery(
                delivery,
                &format!("notifier `{subject}` delivered again before this page was sent"),
                self.clock.now(),
            )
            .await?;
        tracing::info!(
            notifier = subject,
            delivery,
            "stale delivery-degraded page dropped"
        );
        self.notifier_recovered(subject).await?;
        Ok(true)
    }

    async fn notifier_degraded(&self, notifier: &str, failures: u32) -> Result<()> {
        let others: Vec<String> = self
            .channels
            .keys()
            .filter(|name| name.as_str() != notifier)
            .cloned()
            .collect();
        let mut finding = Finding::new(
            degraded_key(notifier),
            Severity::Error,
            format!("Alert delivery to `{notifier}` is failing"),
        );
        // No running count in the text: it would turn every further failure
        // into an update of this alert.
        finding.summary = format!(
            "At least {} delivery attempts in a row to notifier `{notifier}` failed, over at \
             least {}. Alerts for it are kept in the outbox and retried; they arrive once it \
             recovers.",
            self.settings.degraded_after,
            humantime::format_duration(self.settings.degraded_after_for)
        );
        finding.runbook = Some("delivery-degraded".into());
        finding
            .labels
            .insert("notifier".into(), notifier.to_string());
        if others.is_empty() {
            tracing::error!(
                notifier,
                failures,
                "alert delivery is failing and there is no other notifier to tell"
            );
        }
        let input = FindingsInput {
            schedule_id: PATROL_SOURCE,
            job: PATROL_SOURCE,
            run_id: None,
            findings: std::slice::from_ref(&finding),
            resolve_absent: false,
            also_resolve: None,
            named_route: None,
            notifiers: Some(&others),
            node: &self.node,
        };
        let mut tx = self.ledger.pool().begin().await?;
        let recorded = record_findings(&mut tx, &self.policy, &input, self.clock.now()).await?;
        tx.commit().await?;
        if recorded.triggered > 0 {
            tracing::error!(
                notifier,
                failures,
                "alert delivery degraded; telling the other notifiers"
            );
            self.outbox.notify_one();
        }
        Ok(())
    }

    async fn notifier_recovered(&self, notifier: &str) -> Result<()> {
        // The common case, after every successful send: nothing to resolve,
        // found with one read instead of a transaction.
        if !self
            .ledger
            .has_firing_alert(PATROL_SOURCE, &degraded_key(notifier))
            .await?
        {
            return Ok(());
        }
        let others: Vec<String> = self
            .channels
            .keys()
            .filter(|name| name.as_str() != notifier)
            .cloned()
            .collect();
        let input = FindingsInput {
            schedule_id: PATROL_SOURCE,
            job: PATROL_SOURCE,
            run_id: None,
            findings: &[],
            resolve_absent: false,
            also_resolve: None,
            named_route: None,
            notifiers: Some(&others),
            node: &self.node,
        };
        let key = degraded_key(notifier);
        let mut tx = self.ledger.pool().begin().await?;
        let recorded = resolve_key(&mut tx, &self.policy, &input, &key, self.clock.now()).await?;
        // Whoever was not told yet need not be told now, nor of the resolve.
        let dropped = skip_unsent_pages(
            &mut tx,
            PATROL_SOURCE,
            &key,
            &format!("notifier `{notifier}` delivered again before this was sent"),
        )
        .await?;
        tx.commit().await?;
        if recorded.resolved > 0 {
            tracing::info!(notifier, dropped, "alert delivery recovered");
            self.outbox.notify_one();
        }
        Ok(())
    }
}

/// Waits until the notifier's rate limit lets a request go out now. The
/// claim already kept to the limit, so this waits at most as long as the
/// claim-to-request time varies.
async fn wait_for_send_slot(channel: &Channel) {
    loop {
        let wait = channel
            .send_gate
            .lock()
            .map_or(None, |mut gate| gate.try_take(Instant::now()).err());
        match wait {
            None => return,
            Some(wait) => tokio::time::sleep(wait).await,
        }
    }
}

const DEGRADED_PREFIX: &str = "patrol/delivery-degraded/";

pub fn degraded_key(notifier: &str) -> String {
    format!("{DEGRADED_PREFIX}{notifier}")
}

/// The notifier a `patrol/delivery-degraded/<notifier>` trigger is about.
fn degraded_page_subject(due: &Due) -> Option<&str> {
    if due.action != Action::Trigger || due.view.schedule_id != PATROL_SOURCE {
        return None;
    }
    due.view.key.strip_prefix(DEGRADED_PREFIX)
}

/// The delay before retry number `attempts + 1`: exponential from
/// `retry_min`, capped at `retry_max`, with jitter so that many failed
/// deliveries do not all come back at once.
fn backoff_delay(settings: &DeliverySettings, attempts: u32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(settings.retry_min)
        .with_max_delay(settings.retry_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts as usize)
        .unwrap_or(settings.retry_max)
}

#[cfg(test)]
#[path = "worker_degraded_tests.rs"]
mod degraded_tests;

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    /// `findings` of the `disk-check` schedule (a `command` job) on node-a.
    pub(super) fn disk_check_input(findings: &[Finding]) -> FindingsInput<'_> {
        FindingsInput {
            schedule_id: "disk-check",
            job: "command",
            run_id: None,
            findings,
            resolve_absent: false,
            also_resolve: None,
            named_route: None,
            notifiers: None,
            node: "node-a",
        }
    }

    #[test]
    fn limiter_allows_a_burst_then_spaces_sends() {
        let mut limiter = Limiter::new(Some(RateLimit {
            count: 2,
            per: Duration::from_secs(1),
        }));
        let start = Instant::now();
        assert!(limiter.try_take(start).is_ok());
        assert!(limiter.try_take(start).is_ok());
        let wait = limiter.try_take(start).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.try_take(start + Duration::from_millis(500)).is_ok());
        let mut unlimited = Limiter::new(None);
        for _ in 0..1000 {
            assert!(unlimited.try_take(start).is_ok());
        }
    }

    #[test]
    fn limiter_says_when_a_slot_is_free_without_taking_it() {
        let mut limiter = Limiter::new(Some(RateLimit {
            count: 1,
            per: Duration::from_secs(1),
        }));
        let start = Instant::now();
        assert_eq!(limiter.ready_in(start), None);
        assert_eq!(limiter.ready_in(start), None, "peeking takes nothing");
        assert!(limiter.try_take(start).is_ok());
        let wait = limiter.ready_in(start).unwrap();
        assert_eq!(Err(wait), limiter.try_take(start));
        assert_eq!(limiter.ready_in(start + Duration::from_secs(1)), None);
        assert_eq!(Limiter::new(None).ready_in(start), None);
    }

    /// Counts what it is given.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    #[async_trait::async_trait]
    impl Notifier for Counter {
        fn kind(&self) -> &'static str {
            "counter"
        }

        async fn send(
            &self,
            _: &crate::alerting::notify::Notification,
        ) -> Result<crate::alerting::notify::Sent, SendError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(crate::alerting::notify::Sent::default())
        }
    }

    #[tokio::test]
    async fn a_rate_limited_backlog_does_not_hold_back_other_notifiers() {
        use crate::alerting::config::AlertingSpec;
        use crate::ledger::tests::ledgers_for;

        for (_dir, ledger) in ledgers_for("patrol_alert_backlog").await {
            // `slow` may send once an hour; `fast` has no limit. Both get
            // every alert; 600 of `slow`'s wait, more than a look at the
            // outbox reads at once.
            let spec: AlertingSpec = serde_norway::from_str(
                "notifiers:\n  fast:\n    kind: console\n  slow:\n    kind: webhook\n    \
                 url: http://127.0.0.1:9/unused\n    rate_limit: 1/1h\n",
            )
            .unwrap();
            let config = AlertingConfig::check(spec, std::path::Path::new(""), None).unwrap();
            let policy = Arc::new(AlertPolicy::new(&config));
            let findings: Vec<Finding> = (0..600)
                .map(|n| Finding::new(format!("disk/{n}"), Severity::Error, "full"))
                .collect();
            let input = disk_check_input(&findings);
            let mut tx = ledger.pool().begin().await.unwrap();
            record_findings(&mut tx, &policy, &input, Utc::now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let fast = Arc::new(Counter::default());
            let slow = Arc::new(Counter::default());
            let worker = DeliveryWorker::with_notifiers(
                ledger.clone(),
                &config,
                policy,
                vec![
                    ("fast".into(), fast.clone() as Arc<dyn Notifier>),
                    ("slow".into(), slow.clone() as Arc<dyn Notifier>),
                ],
                "instance-a",
                "node-a",
                Arc::new(Notify::new()),
            );
            let (stop, stopped) = watch::channel(false);
            let running = tokio::spawn(worker.run(stopped));
            let deadline = Instant::now() + Duration::from_secs(30);
            while fast.0.load(Ordering::SeqCst) < 600 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.send(true).unwrap();
            running.await.unwrap();
            assert_eq!(fast.0.load(Ordering::SeqCst), 600);
            assert_eq!(slow.0.load(Ordering::SeqCst), 1);
            // Only the rate-limited notifier's backlog is left.
            assert_eq!(ledger.open_delivery_count().await.unwrap(), 599);
        }
    }

    /// Answers its first request with a 429 and `Retry-After`, then
    /// delivers; notes the worker's clock at each request.
    struct Throttled {
        clock: Arc<dyn Clock>,
        retry_after: Duration,
        sends: Mutex<Vec<chrono::DateTime<Utc>>>,
    }

    #[async_trait::async_trait]
    impl Notifier for Throttled {
        fn kind(&self) -> &'static str {
            "throttled"
        }

        async fn send(
            &self,
            _: &crate::alerting::notify::Notification,
        ) -> Result<crate::alerting::notify::Sent, SendError> {
            let mut sends = self
                .sends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sends.push(self.clock.now());
            if sends.len() > 1 {
                return Ok(crate::alerting::notify::Sent::default());
            }
            Err(SendError {
                retry: Retry::Later {
                    retry_after: Some(self.retry_after),
                },
                message: "429 Too Many Requests".into(),
                http_status: Some(429),
            })
        }
    }

    #[tokio::test]
    async fn a_retry_after_holds_the_delivery_until_then_on_the_workers_clock() {
        use crate::alerting::config::AlertingSpec;
        use crate::scheduler::tests::{paused_sqlite_ledger, t};
        use crate::scheduler::TokioClock;

        let (_dir, ledger, ticker) = paused_sqlite_ledger().await;
        let start = t("2026-11-23T10:00:00Z");
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
        let spec: AlertingSpec =
            serde_norway::from_str("notifiers:\n  hook:\n    kind: console\n").unwrap();
        let config = AlertingConfig::check(spec, std::path::Path::new(""), None).unwrap();
        let policy = Arc::new(AlertPolicy::new(&config));
        let finding = Finding::new("disk/1", Severity::Error, "full");
        let input = disk_check_input(std::slice::from_ref(&finding));
        let mut tx = ledger.pool().begin().await.unwrap();
        record_findings(&mut tx, &policy, &input, clock.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let hook = Arc::new(Throttled {
            clock: clock.clone(),
            retry_after: Duration::from_secs(90),
            sends: Mutex::new(Vec::new()),
        });
        let worker = DeliveryWorker::with_notifiers(
            ledger.clone(),
            &config,
            policy,
            vec![("hook".into(), hook.clone() as Arc<dyn Notifier>)],
            "instance-a",
            "node-a",
            Arc::new(Notify::new()),
        )
        .with_clock(clock.clone());
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(worker.run(stopped));
        let sends = || hook.sends.lock().unwrap().clone();
        while sends().len() < 2 && clock.now() < start + chrono::Duration::minutes(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send(true).unwrap();
        running.await.unwrap();
        let sends = sends();
        assert_eq!(sends.len(), 2, "{sends:?}");
        let waited = sends[1] - sends[0];
        assert!(
            waited >= chrono::Duration::seconds(90) && waited < chrono::Duration::seconds(95),
            "sent again {waited} after a Retry-After of 90 s"
        );
        assert_eq!(ledger.open_delivery_count().await.unwrap(), 0);
        ticker.abort();
    }

    #[test]
    fn backoff_grows_from_min_and_stays_under_max() {
        let settings = DeliverySettings {
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            ..DeliverySettings::default()
        };
        let first = backoff_delay(&settings, 0);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "{first:?}"
        );
        let fifth = backoff_delay(&settings, 4);
        assert!(fifth >= Duration::from_secs(16), "{fifth:?}");
        for attempts in 0..100 {
            assert!(backoff_delay(&settings, attempts) <= Duration::from_secs(60));
        }
    }
}
