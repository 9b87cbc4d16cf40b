//! Alert delivery bench (alerting issue, acceptance point 4): 10,000
//! findings across 1,000 keys, recorded the way the runner records a run's
//! end, delivered by the real `DeliveryWorker` through the real notifiers
//! (PagerDuty, webhook, Slack) to the local stand-ins.
//!
//! For every delivery row it matches the one request that carried it (the
//! webhook by its `X-Patrol-Delivery` header, PagerDuty by dedup key and
//! order, Slack by the alert key in the message and order) and measures
//! latency = request arrival at the stand-in − commit of the run's end
//! (the transaction that wrote the outbox row). Checks every delivery
//! arrived exactly once and that the configured rate limits held.
//!
//! `cargo bench -p patrol --bench alerting`
//!
//! Knobs (environment): `PATROL_BENCH_KEYS` (1000), `PATROL_BENCH_RUNS`
//! (full runs, 10; one more run then reports only the first half of the
//! keys, clearing the rest), `PATROL_BENCH_SPACING_MS` (between run ends,
//! 2000), `PATROL_BENCH_CHANGED_PCT` (keys whose finding changes per run,
//! 10), `PATROL_BENCH_PAGING_PCT` (keys routed to PagerDuty, 8),
//! `PATROL_BENCH_PD_LIMIT` (PagerDuty `rate_limit`, `120/min`),
//! `PATROL_BENCH_CHAT_KEYS` (keys routed to Slack, 20),
//! `PATROL_BENCH_SLACK_CHANNELS` (4; one Slack notifier per channel, each
//! with Slack's default limit of 1/s), `PATROL_BENCH_BACKENDS`
//! (`sqlite,postgres`), `PATROL_BENCH_DRAIN_S` (how long to wait for the
//! outbox to empty after the last run, 90), `PATROL_BENCH_LOG` (`info`:
//! the worker's log lines are formatted as in `patrol serve`, into a sink
//! or `PATROL_BENCH_LOG_FILE`; `off` to skip).
//!
//! Exits 1 if any delivery is missing, doubled, unmatched, refused, not
//! sent, retried, or if a rate limit was broken.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use patrol::alerting::config::{AlertingConfig, AlertingSpec};
use patrol::alerting::notifiers::RateLimit;
use patrol::alerting::policy::AlertPolicy;
use patrol::alerting::record::{FindingsInput, RunAlerts};
use patrol::alerting::worker::DeliveryWorker;
use patrol::ledger::{
    create_scratch_postgres_database, redact_url, Instance, Ledger, NewRun, RunEnd, RunStatus,
    Trigger,
};
use patrol_job_api::{Finding, Severity};
use patrol_standins::{PagerDutyStandin, RecordedCall, SlackStandin, WebhookReceiver};
use sqlx::Row;
use tokio::sync::{watch, Notify};

const DEV_POSTGRES: &str = "postgres://postgres@127.0.0.1:55432/postgres";
const COMMAND: &str = "cargo bench -p patrol --bench alerting";
const PD_ROUTING_KEY: &str = "R0ut1ngKeyBenchAlerting000000042";
const SLACK_TOKEN: &str = "xoxb-bench-4711-SlackBenchToken";
/// A Standard Webhooks secret (`whsec_` and the base64 of `HOOK_KEY`).
const HOOK_SECRET: &str = "whsec_YmVuY2gtaG9vay1zaWduaW5nLXNlY3JldA==";
const HOOK_KEY: &[u8] = b"bench-hook-signing-secret";
const SCHEDULE: &str = "bench-findings";
const KEY_PREFIX: &str = "bench/key-";
/// A request arriving less than this ahead of the rate limit is transit
/// jitter (the worker takes its send slot just before the HTTP request).
const LIMIT_JITTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
struct Knobs {
    keys: usize,
    runs: usize,
    spacing: Duration,
    changed_pct: u64,
    paging_pct: usize,
    pd_limit: String,
    chat_keys: usize,
    slack_channels: usize,
    drain: Duration,
}

impl Knobs {
    fn from_env() -> Self {
        Self {
            keys: env_usize("PATROL_BENCH_KEYS", 1000).max(2),
            runs: env_usize("PATROL_BENCH_RUNS", 10).max(1),
            spacing: Duration::from_millis(env_u64("PATROL_BENCH_SPACING_MS", 2000)),
            changed_pct: env_u64("PATROL_BENCH_CHANGED_PCT", 10).min(100),
            paging_pct: env_usize("PATROL_BENCH_PAGING_PCT", 8).min(100),
            pd_limit: std::env::var("PATROL_BENCH_PD_LIMIT").unwrap_or_else(|_| "120/min".into()),
            chat_keys: env_usize("PATROL_BENCH_CHAT_KEYS", 20),
            slack_channels: env_usize("PATROL_BENCH_SLACK_CHANNELS", 4).max(1),
            drain: Duration::from_secs(env_u64("PATROL_BENCH_DRAIN_S", 90)),
        }
    }

    fn key(k: usize) -> String {
        format!("{KEY_PREFIX}{k:05}")
    }

    /// PagerDuty gets the first `paging_pct` keys of every hundred.
    fn paging(&self, k: usize) -> bool {
        k % 100 < self.paging_pct
    }

    /// Slack gets `chat_keys` keys spread evenly, round-robin over the
    /// channels: `Some(channel)`, 1-based.
    fn chat(&self, k: usize) -> Option<usize> {
        if self.chat_keys == 0 {
            return None;
        }
        let stride = (self.keys / self.chat_keys).max(1);
        let offset = stride / 2;
        (k % stride == offset && k / stride < self.chat_keys)
            .then(|| (k / stride) % self.slack_channels + 1)
    }

    /// Whether key `k`'s finding changes in run `run` (≥ 2): a fixed
    /// pseudo-random `changed_pct` % of keys per run.
    fn changed(&self, k: usize, run: usize) -> bool {
        run > 1 && splitmix64(((k as u64) << 20) ^ run as u64) % 100 < self.changed_pct
    }

    fn total_runs(&self) -> usize {
        self.runs + 1
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn slack_channel_id(channel: usize) -> String {
    format!("C0BENCH{channel:02}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// A ledger for one backend; dropped with its database.
struct BenchLedger {
    ledger: Ledger,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl BenchLedger {
    async fn open(backend: BackendKind, server: &str) -> Result<Self> {
        match backend {
            BackendKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                Ok(Self {
                    ledger: Ledger::connect(&url).await?,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            BackendKind::Postgres => {
                let url = create_scratch_postgres_database(server, "patrol_bench").await?;
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                Ok(Self {
                    ledger: Ledger::connect(&url).await?,
                    _dir: None,
                    postgres: Some((server.to_string(), name)),
                })
            }
        }
    }

    async fn close(self) {
        self.ledger.close().await;
        if let Some((server, name)) = self.postgres {
            use sqlx::{Connection, Executor};
            match sqlx::PgConnection::connect(&server).await {
                Ok(mut conn) => {
                    if let Err(err) = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await
                    {
                        eprintln!("note: cannot drop scratch database {name}: {err}");
                    }
                    let _ = conn.close().await;
                }
                Err(err) => eprintln!("note: cannot drop scratch database {name}: {err}"),
            }
        }
    }
}

/// The stand-ins one backend's case sends to.
struct Services {
    pagerduty: PagerDutyStandin,
    webhook: WebhookReceiver,
    slack: SlackStandin,
}

impl Services {
    async fn start(knobs: &Knobs) -> Result<Self> {
        let pagerduty = PagerDutyStandin::start(&[PD_ROUTING_KEY]).await?;
        let webhook = WebhookReceiver::start().await?;
        webhook.require_standard_webhooks(HOOK_KEY);
        let mut slack = SlackStandin::builder(SLACK_TOKEN).with_rate_limit(1.0);
        for channel in 1..=knobs.slack_channels {
            slack = slack.channel(&slack_channel_id(channel), &format!("bench-{channel}"));
        }
        Ok(Self {
            pagerduty,
            webhook,
            slack: slack.start().await?,
        })
    }

    /// `notifiers:` and `routes:`: every key to the webhook, paging keys
    /// also to PagerDuty, chat keys also to their Slack channel.
    fn config_yaml(&self, knobs: &Knobs) -> String {
        let mut yaml = format!(
            "notifiers:\n  webhook:\n    kind: webhook\n    url: \"{hook}\"\n    secret: file:hook.secret\n  \
             pagerduty:\n    kind: pagerduty\n    routing_key: file:pd.key\n    base_url: \"{pd}\"\n    \
             rate_limit: {limit}\n",
            hook = self.webhook.url("/patrol"),
            pd = self.pagerduty.base_url(),
            limit = knobs.pd_limit,
        );
        for channel in 1..=knobs.slack_channels {
            yaml.push_str(&format!(
                "  slack-{channel}:\n    kind: slack\n    token: file:slack.token\n    channel: {id}\n    \
                 base_url: \"{api}\"\n",
                id = slack_channel_id(channel),
                api = self.slack.api_url(),
            ));
        }
        yaml.push_str(
            "routes:\n  - name: everything\n    notifiers: [webhook]\n    continue: true\n  \
             - name: paging\n    match: {labels: {page: \"yes\"}}\n    notifiers: [pagerduty]\n    continue: true\n",
        );
        for channel in 1..=knobs.slack_channels {
            yaml.push_str(&format!(
                "  - name: chat-{channel}\n    match: {{labels: {{chat: slack-{channel}}}}}\n    \
                 notifiers: [slack-{channel}]\n"
            ));
        }
        yaml
    }
}

/// The checked alerting config, its secrets in a temporary folder (kept
/// alive by the returned handle).
fn alerting_config(
    services: &Services,
    knobs: &Knobs,
) -> Result<(AlertingConfig, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("pd.key"), PD_ROUTING_KEY)?;
    std::fs::write(dir.path().join("slack.token"), format!("{SLACK_TOKEN}\n"))?;
    std::fs::write(dir.path().join("hook.secret"), HOOK_SECRET)?;
    let spec: AlertingSpec = serde_norway::from_str(&services.config_yaml(knobs))
        .context("the bench's alerting config does not parse")?;
    let config = AlertingConfig::check(spec, dir.path(), None).map_err(|problems| {
        anyhow!(
            "the bench's alerting config is invalid: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    Ok((config, dir))
}

/// `PATROL_BENCH_PROFILE=1`: what each outbox call the worker makes per
/// delivery costs, called one at a time on run 1's outbox (1,100 rows).
async fn profile(backend: BackendKind, server: &str, knobs: &Knobs) -> Result<()> {
    let bench = BenchLedger::open(backend, server).await?;
    let result = profile_calls(&bench.ledger, knobs).await;
    bench.close().await;
    let timings = result?;
    println!("\n### Outbox calls, one at a time ({})\n", backend.name());
    println!("| call | calls | mean | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, mut values) in timings {
        values.sort_unstable();
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
        let mean = values.iter().sum::<i64>() as f64 / values.len().max(1) as f64;
        println!(
            "| {name} | {} | {:.2} ms | {} | {} |",
            values.len(),
            mean / 1000.0,
            ms(percentile(&values, 50.0)),
            ms(percentile(&values, 99.0)),
        );
    }
    Ok(())
}

async fn profile_calls(ledger: &Ledger, knobs: &Knobs) -> Result<Vec<(&'static str, Vec<i64>)>> {
    use patrol::alerting::outbox::AttemptEnd;
    use patrol::alerting::record::resolve_key;
    use patrol::alerting::worker::degraded_key;

    let services = Services::start(knobs).await?;
    let (config, _secrets) = alerting_config(&services, knobs)?;
    let policy = AlertPolicy::new(&config);
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        node: "bench".into(),
    };
    ledger
        .register_instance(
            &instance,
            "serve",
            Utc::now(),
            chrono::Duration::seconds(15),
        )
        .await?;
    let mut revisions = vec![0u32; knobs.keys];
    let findings = findings_for(knobs, 1, &mut revisions);
    record_run(ledger, &policy, &instance, &findings, 1).await?;
    let elapsed = |since: Instant| i64::try_from(since.elapsed().as_micros()).unwrap_or(i64::MAX);

    let mut due_times = Vec::new();
    let mut next_times = Vec::new();
    let mut due = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        due = ledger.due_deliveries(Utc::now(), 500).await?;
        due_times.push(elapsed(started));
        let started = Instant::now();
        ledger.next_delivery_due().await?;
        next_times.push(elapsed(started));
    }
    let (mut claims, mut remotes, mut finishes, mut recovers) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let others: Vec<String> = config.notifiers.keys().cloned().collect();
    for (id, notifier) in due.iter().take(300) {
        let now = Utc::now();
        let started = Instant::now();
        let Some((claimed, attempt)) = ledger
            .claim_delivery(*id, &instance.id, now, now + chrono::Duration::seconds(120))
            .await?
        else {
            continue;
        };
        claims.push(elapsed(started));
        let started = Instant::now();
        ledger.delivery_remote(claimed.alert_id, notifier).await?;
        remotes.push(elapsed(started));
        let started = Instant::now();
        let end = AttemptEnd::Sent { remote: None };
        ledger
            .finish_attempt(&claimed, attempt, &end, Utc::now())
            .await?;
        finishes.push(elapsed(started));
        // What `notifier_recovered` does after every successful send.
        let started = Instant::now();
        let input = FindingsInput {
            schedule_id: "patrol",
            job: "patrol",
            run_id: None,
            findings: &[],
            resolve_absent: false,
            also_resolve: None,
            named_route: None,
            notifiers: Some(&others),
            node: &instance.node,
        };
        let mut tx = ledger.pool().begin().await?;
        resolve_key(
            &mut tx,
            &policy,
            &input,
            &degraded_key(notifier),
            Utc::now(),
        )
        .await?;
        tx.commit().await?;
        recovers.push(elapsed(started));
    }
    Ok(vec![
        ("due_deliveries (500 of 1,100 pending)", due_times),
        ("next_delivery_due", next_times),
        ("claim_delivery", claims),
        ("delivery_remote", remotes),
        ("finish_attempt (sent)", finishes),
        ("notifier_recovered (no open alert)", recovers),
    ])
}

/// The findings of run `run` (1-based): every key in the full runs, the
/// first half in the last one. Changed keys get a new summary revision.
fn findings_for(knobs: &Knobs, run: usize, revisions: &mut [u32]) -> Vec<Finding> {
    let reported = if run > knobs.runs {
        knobs.keys / 2
    } else {
        knobs.keys
    };
    (0..reported)
        .map(|k| {
            if knobs.changed(k, run) {
                revisions[k] += 1;
            }
            let key = Knobs::key(k);
            let severity = if knobs.paging(k) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let mut finding = Finding::new(key.clone(), severity, format!("Bench alert {key}"));
            finding.summary = format!(
                "Synthetic finding for the delivery bench, revision {}.",
                revisions[k]
            );
            if knobs.paging(k) {
                finding.labels.insert("page".into(), "yes".into());
            }
            if let Some(channel) = knobs.chat(k) {
                finding
                    .labels
                    .insert("chat".into(), format!("slack-{channel}"));
            }
            finding.details = serde_json::json!({ "run": run });
            finding
        })
        .collect()
}

/// One recorded run: when its end (and outbox rows) were committed.
#[derive(Debug, Clone)]
struct RunRecord {
    index: usize,
    now_ms: i64,
    committed: Instant,
    record_time: Duration,
    findings: usize,
    alerts: serde_json::Value,
}

/// A delivery row as the bench reads it back.
#[derive(Debug, Clone)]
struct DeliveryRow {
    id: i64,
    key: String,
    notifier: String,
    action: String,
    status: String,
    attempts: i64,
    run: Option<usize>,
}

/// A request at a stand-in, reduced to what matching needs.
#[derive(Debug, Clone)]
struct Call {
    seq: usize,
    arrival: Instant,
    accepted: bool,
    /// The wire action (`trigger`/`resolve`, `chat.postMessage`/`chat.update`,
    /// the webhook body's `action`).
    wire: String,
    key: Option<String>,
    delivery: Option<i64>,
    /// The notifier it was for (Slack: by channel).
    notifier: String,
}

/// One delivered row and when its request arrived.
#[derive(Debug, Clone)]
struct Sample {
    notifier: String,
    key: String,
    run: usize,
    recorded: Instant,
    arrival: Instant,
}

impl Sample {
    fn latency_us(&self) -> i64 {
        signed_us(self.arrival, self.recorded)
    }
}

fn signed_us(later: Instant, earlier: Instant) -> i64 {
    if later >= earlier {
        i64::try_from((later - earlier).as_micros()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from((earlier - later).as_micros()).unwrap_or(i64::MAX)
    }
}

/// Correctness counts for one notifier.
#[derive(Debug, Default, Clone)]
struct Checks {
    rows: usize,
    calls: usize,
    missing: usize,
    doubled: usize,
    unmatched: usize,
    refused: usize,
    wrong_action: usize,
    not_sent: usize,
    retried: usize,
}

impl Checks {
    fn failures(&self) -> usize {
        self.missing
            + self.doubled
            + self.unmatched
            + self.refused
            + self.wrong_action
            + self.not_sent
            + self.retried
    }

    fn add(&mut self, other: &Checks) {
        self.rows += other.rows;
        self.calls += other.calls;
        self.missing += other.missing;
        self.doubled += other.doubled;
        self.unmatched += other.unmatched;
        self.refused += other.refused;
        self.wrong_action += other.wrong_action;
        self.not_sent += other.not_sent;
        self.retried += other.retried;
    }
}

/// How a rate-limited notifier's sends sat against its limit.
#[derive(Debug, Clone)]
struct LimitReport {
    limit: RateLimit,
    sends: usize,
    /// Most sends seen in any window of `limit.per`.
    max_in_window: usize,
    /// How far ahead of the token bucket the earliest send came (0 = never).
    max_early: Duration,
    /// Per send: arrival − the earliest the limit (and the key's previous
    /// event) allowed it, µs. What the worker adds on top of the limit.
    excess_us: Vec<i64>,
    min_gap: Option<Duration>,
}

/// What one backend's case measured.
struct Outcome {
    backend: BackendKind,
    runs: Vec<RunRecord>,
    checks: BTreeMap<String, Checks>,
    samples: Vec<Sample>,
    limits: BTreeMap<String, LimitReport>,
    slack_violations: usize,
    pd_open: usize,
    pd_open_expected: usize,
    slack_messages: usize,
    slack_messages_expected: usize,
    open_left: i64,
    elapsed: Duration,
}

impl Outcome {
    fn failed(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (notifier, checks) in &self.checks {
            if checks.failures() > 0 {
                problems.push(format!("{notifier}: {checks:?}"));
            }
        }
        if self.slack_violations > 0 {
            problems.push(format!(
                "Slack refused {} posts over its rate limit",
                self.slack_violations
            ));
        }
        for (notifier, limit) in &self.limits {
            if limit.max_early > LIMIT_JITTER {
                problems.push(format!(
                    "{notifier}: a send came {:.0} ms before its rate limit allowed",
                    limit.max_early.as_secs_f64() * 1000.0
                ));
            }
        }
        if self.pd_open != self.pd_open_expected {
            problems.push(format!(
                "PagerDuty has {} open incidents, expected {}",
                self.pd_open, self.pd_open_expected
            ));
        }
        if self.slack_messages != self.slack_messages_expected {
            problems.push(format!(
                "Slack has {} messages, expected {}",
                self.slack_messages, self.slack_messages_expected
            ));
        }
        if self.open_left > 0 {
            problems.push(format!(
                "{} deliveries still open at the end",
                self.open_left
            ));
        }
        problems
    }
}

async fn run_case(backend: BackendKind, server: &str, knobs: &Knobs) -> Result<Outcome> {
    let bench = BenchLedger::open(backend, server).await?;
    let result = deliver(&bench.ledger, backend, knobs).await;
    bench.close().await;
    result
}

async fn deliver(ledger: &Ledger, backend: BackendKind, knobs: &Knobs) -> Result<Outcome> {
    let started = Instant::now();
    let services = Services::start(knobs).await?;
    let (config, _secrets) = alerting_config(&services, knobs)?;

    // As `patrol serve`: an instance that heartbeats, a policy, the worker
    // on its own task, woken through the shared `Notify`.
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        node: "bench".into(),
    };
    ledger
        .register_instance(
            &instance,
            "serve",
            Utc::now(),
            chrono::Duration::seconds(15),
        )
        .await?;
    let heartbeat = {
        let ledger = ledger.clone();
        let instance = instance.clone();
        let every = config.delivery.node_ttl / 4;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = ledger
                    .renew_lease(&instance, Utc::now(), chrono::Duration::seconds(15))
                    .await
                {
                    eprintln!("note: heartbeat failed: {err:#}");
                }
            }
        })
    };
    let policy = Arc::new(AlertPolicy::new(&config));
    let outbox = Arc::new(Notify::new());
    let worker = DeliveryWorker::new(
        ledger.clone(),
        &config,
        policy.clone(),
        &instance.id,
        &instance.node,
        outbox.clone(),
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(worker.run(stop_rx));

    let mut revisions = vec![0u32; knobs.keys];
    let mut runs = Vec::new();
    let mut next = tokio::time::Instant::now() + Duration::from_millis(500);
    for index in 1..=knobs.total_runs() {
        tokio::time::sleep_until(next).await;
        next += knobs.spacing;
        let findings = findings_for(knobs, index, &mut revisions);
        runs.push(record_run(ledger, &policy, &instance, &findings, index).await?);
        outbox.notify_one();
    }

    // Until the outbox is empty (every outcome recorded, so every request
    // has arrived), bounded; then a little longer for stray re-sends.
    let deadline = Instant::now() + knobs.drain;
    let mut open_left = ledger.open_delivery_count().await?;
    while open_left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        open_left = ledger.open_delivery_count().await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    worker.await.context("the delivery worker panicked")?;
    heartbeat.abort();

    let rows = read_deliveries(ledger, &runs).await?;
    let calls = collect_calls(&services, knobs)?;
    let (checks, samples) = match_calls(&rows, &calls, &runs);
    let mut limits = BTreeMap::new();
    for (name, settings) in &config.notifiers {
        if let Some(limit) = settings.rate_limit() {
            let mut mine: Vec<&Sample> = samples.iter().filter(|s| &s.notifier == name).collect();
            mine.sort_by_key(|s| s.arrival);
            limits.insert(name.clone(), check_limit(&mine, limit));
        }
    }
    // Paging keys the last run still reports.
    let pd_open_expected = (0..knobs.keys / 2).filter(|&k| knobs.paging(k)).count();
    Ok(Outcome {
        backend,
        runs,
        checks,
        samples,
        limits,
        slack_violations: services.slack.rate_limit_violations(),
        pd_open: services.pagerduty.open_incidents().len(),
        pd_open_expected,
        slack_messages: services.slack.messages().len(),
        slack_messages_expected: (0..knobs.keys).filter(|&k| knobs.chat(k).is_some()).count(),
        open_left,
        elapsed: started.elapsed(),
    })
}

/// Records one run the way the executor does: a `running` row, then its
/// end with the findings in one transaction (`Ledger::finish_run`), then
/// the worker is woken.
async fn record_run(
    ledger: &Ledger,
    policy: &AlertPolicy,
    instance: &Instance,
    findings: &[Finding],
    index: usize,
) -> Result<RunRecord> {
    let started_at = Utc::now();
    let run = NewRun {
        schedule_id: SCHEDULE.into(),
        job: "command".into(),
        scheduled_for: started_at,
        attempt: 1,
        trigger: Trigger::Schedule,
        status: RunStatus::Running,
        not_before: None,
        overrides: None,
        dry_run: false,
        force_overlap: false,
        error: None,
    };
    let run_id = ledger
        .insert_runs(std::slice::from_ref(&run), instance, started_at)
        .await?
        .first()
        .copied()
        .flatten()
        .context("the run row was not written")?;
    let end = RunEnd {
        status: RunStatus::Succeeded,
        summary: Some(format!("{} findings", findings.len())),
        output: None,
        details: None,
        error: None,
    };
    let alerts = RunAlerts {
        policy,
        input: FindingsInput {
            schedule_id: SCHEDULE,
            job: "command",
            run_id: Some(run_id),
            findings,
            resolve_absent: true,
            also_resolve: None,
            named_route: None,
            notifiers: None,
            node: &instance.node,
        },
    };
    let begin = Instant::now();
    let now = Utc::now();
    if !ledger
        .finish_run(
            run_id,
            &instance.id,
            &end,
            None,
            Some(&alerts as _),
            &[],
            now,
        )
        .await?
    {
        anyhow::bail!("run {run_id} was no longer running");
    }
    let committed = Instant::now();
    let details = ledger
        .run(run_id)
        .await?
        .and_then(|run| run.details)
        .and_then(|details| details.get("alerts").cloned())
        .unwrap_or_default();
    Ok(RunRecord {
        index,
        now_ms: now.timestamp_millis(),
        committed,
        record_time: committed - begin,
        findings: findings.len(),
        alerts: details,
    })
}

async fn read_deliveries(ledger: &Ledger, runs: &[RunRecord]) -> Result<Vec<DeliveryRow>> {
    let by_ms: HashMap<i64, usize> = runs.iter().map(|run| (run.now_ms, run.index)).collect();
    let rows = sqlx::query(
        "SELECT id, alert_key, notifier, action, status, attempts, created_at FROM deliveries ORDER BY id",
    )
    .fetch_all(ledger.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let created_at: i64 = row.try_get(6)?;
            Ok(DeliveryRow {
                id: row.try_get(0)?,
                key: row.try_get(1)?,
                notifier: row.try_get(2)?,
                action: row.try_get(3)?,
                status: row.try_get(4)?,
                attempts: row.try_get(5)?,
                run: by_ms.get(&created_at).copied(),
            })
        })
        .collect()
}

/// The bench key named in `text`, if any.
fn key_in(text: &str) -> Option<String> {
    let start = text.find(KEY_PREFIX)? + KEY_PREFIX.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("{KEY_PREFIX}{digits}"))
}

fn collect_calls(services: &Services, knobs: &Knobs) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
    let base = |call: &RecordedCall, notifier: String, wire: String| Call {
        seq: call.seq,
        arrival: call.received_at,
        accepted: call.is_accepted(),
        wire,
        key: None,
        delivery: None,
        notifier,
    };
    for call in services.webhook.calls() {
        let json = call.json().unwrap_or_default();
        let mut reduced = base(
            &call,
            "webhook".into(),
            json["action"].as_str().unwrap_or_default().to_string(),
        );
        reduced.delivery = call
            .header("x-patrol-delivery")
            .and_then(|id| id.parse().ok());
        reduced.key = json["alert"]["key"].as_str().map(str::to_string);
        calls.push(reduced);
    }
    for call in services.pagerduty.calls() {
        let json = call.json().unwrap_or_default();
        let mut reduced = base(
            &call,
            "pagerduty".into(),
            json["event_action"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        reduced.key = json["dedup_key"].as_str().map(str::to_string);
        calls.push(reduced);
    }
    let channels: HashMap<String, String> = (1..=knobs.slack_channels)
        .map(|channel| (slack_channel_id(channel), format!("slack-{channel}")))
        .collect();
    for call in services.slack.calls() {
        let json = call.json().unwrap_or_default();
        let channel = json["channel"].as_str().unwrap_or_default();
        let notifier = channels
            .get(channel)
            .cloned()
            .unwrap_or_else(|| format!("slack-unknown-{channel}"));
        let method = call.path.rsplit('/').next().unwrap_or_default().to_string();
        let mut reduced = base(&call, notifier, method);
        reduced.key = key_in(&call.body_text());
        calls.push(reduced);
    }
    Ok(calls)
}

/// What request a delivery's action becomes on the wire.
fn expected_wire(notifier: &str, action: &str) -> &'static str {
    match (notifier, action) {
        ("pagerduty", "resolve") => "resolve",
        ("pagerduty", _) => "trigger",
        (slack, "trigger" | "repeat" | "test") if slack.starts_with("slack-") => "chat.postMessage",
        (slack, _) if slack.starts_with("slack-") => "chat.update",
        (_, "trigger") => "trigger",
        (_, "update") => "update",
        (_, "repeat") => "repeat",
        (_, "resolve") => "resolve",
        _ => "test",
    }
}

/// Pairs every delivery row with the requests that carried it: the
/// webhook by delivery id; the others per (notifier, key) in order, which
/// the worker keeps (one open delivery per key and notifier at a time).
fn match_calls(
    rows: &[DeliveryRow],
    calls: &[Call],
    runs: &[RunRecord],
) -> (BTreeMap<String, Checks>, Vec<Sample>) {
    let committed: HashMap<usize, Instant> =
        runs.iter().map(|run| (run.index, run.committed)).collect();
    let mut checks: BTreeMap<String, Checks> = BTreeMap::new();
    let mut samples = Vec::new();

    let mut calls_by_id: HashMap<i64, Vec<&Call>> = HashMap::new();
    let mut calls_by_key: HashMap<(String, String), Vec<&Call>> = HashMap::new();
    for call in calls {
        let entry = checks.entry(call.notifier.clone()).or_default();
        entry.calls += 1;
        if !call.accepted {
            entry.refused += 1;
        }
        if call.notifier == "webhook" {
            match call.delivery {
                Some(id) => calls_by_id.entry(id).or_default().push(call),
                None => entry.unmatched += 1,
            }
        } else {
            match &call.key {
                Some(key) => calls_by_key
                    .entry((call.notifier.clone(), key.clone()))
                    .or_default()
                    .push(call),
                None => entry.unmatched += 1,
            }
        }
    }
    for list in calls_by_key.values_mut() {
        list.sort_by_key(|call| call.seq);
    }

    let mut rows_by_key: HashMap<(String, String), Vec<&DeliveryRow>> = HashMap::new();
    let mut matched_ids = std::collections::HashSet::new();
    for row in rows {
        let entry = checks.entry(row.notifier.clone()).or_default();
        entry.rows += 1;
        if row.status != "sent" {
            entry.not_sent += 1;
        }
        if row.attempts != 1 {
            entry.retried += 1;
        }
        if row.notifier == "webhook" {
            matched_ids.insert(row.id);
            let found = calls_by_id.get(&row.id).map(Vec::as_slice).unwrap_or(&[]);
            match found {
                [] => entry.missing += 1,
                [call] => {
                    if call.wire != expected_wire(&row.notifier, &row.action)
                        || call.key.as_deref() != Some(&row.key)
                    {
                        entry.wrong_action += 1;
                    }
                    push_sample(&mut samples, row, call, &committed);
                }
                _ => entry.doubled += 1,
            }
        } else {
            rows_by_key
                .entry((row.notifier.clone(), row.key.clone()))
                .or_default()
                .push(row);
        }
    }
    // Webhook requests naming a delivery that does not exist.
    let stray = calls_by_id
        .keys()
        .filter(|id| !matched_ids.contains(id))
        .count();
    checks.entry("webhook".into()).or_default().unmatched += stray;

    for (pair, list) in &rows_by_key {
        let entry = checks.entry(pair.0.clone()).or_default();
        let found = calls_by_key.remove(pair).unwrap_or_default();
        for (index, row) in list.iter().enumerate() {
            match found.get(index) {
                Some(call) => {
                    if call.wire != expected_wire(&row.notifier, &row.action) {
                        entry.wrong_action += 1;
                    }
                    push_sample(&mut samples, row, call, &committed);
                }
                None => entry.missing += 1,
            }
        }
        if found.len() > list.len() {
            entry.doubled += found.len() - list.len();
        }
    }
    // Requests for a key that has no delivery at that notifier.
    for ((notifier, _), list) in calls_by_key {
        checks.entry(notifier).or_default().unmatched += list.len();
    }
    (checks, samples)
}

fn push_sample(
    samples: &mut Vec<Sample>,
    row: &DeliveryRow,
    call: &Call,
    committed: &HashMap<usize, Instant>,
) {
    let Some(run) = row.run else {
        return;
    };
    let Some(&recorded) = committed.get(&run) else {
        return;
    };
    samples.push(Sample {
        notifier: row.notifier.clone(),
        key: row.key.clone(),
        run,
        recorded,
        arrival: call.arrival,
    });
}

/// Replays the arrivals through the limit's token bucket (the worker's
/// GCRA: `count` per `per`, bursts up to `count`).
fn check_limit(sorted: &[&Sample], limit: RateLimit) -> LimitReport {
    let interval = limit.per / limit.count.max(1);
    let tolerance = interval * limit.count.saturating_sub(1);
    let mut tat: Option<Instant> = None;
    let mut max_early = Duration::ZERO;
    let mut excess_us = Vec::with_capacity(sorted.len());
    let mut last_of_key: HashMap<&str, Instant> = HashMap::new();
    let mut min_gap: Option<Duration> = None;
    for (index, sample) in sorted.iter().enumerate() {
        let arrival = sample.arrival;
        let allowed = tat.map(|tat| tat.checked_sub(tolerance).unwrap_or(tat));
        if let Some(allowed) = allowed {
            if allowed > arrival {
                max_early = max_early.max(allowed - arrival);
            }
        }
        let mut floor = sample.recorded;
        if let Some(allowed) = allowed {
            floor = floor.max(allowed);
        }
        if let Some(previous) = last_of_key.get(sample.key.as_str()) {
            floor = floor.max(*previous);
        }
        excess_us.push(signed_us(arrival, floor));
        last_of_key.insert(&sample.key, arrival);
        tat = Some(tat.map_or(arrival, |tat| tat.max(arrival)) + interval);
        if index > 0 {
            let gap = arrival.saturating_duration_since(sorted[index - 1].arrival);
            min_gap = Some(min_gap.map_or(gap, |min| min.min(gap)));
        }
    }
    let mut max_in_window = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].arrival.duration_since(sorted[start].arrival) >= limit.per {
            start += 1;
        }
        max_in_window = max_in_window.max(end - start + 1);
    }
    excess_us.sort_unstable();
    LimitReport {
        limit,
        sends: sorted.len(),
        max_in_window,
        max_early,
        excess_us,
        min_gap,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], pct: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[allow(clippy::cast_precision_loss)]
fn ms(us: Option<i64>) -> String {
    match us {
        Some(us) if us.abs() >= 10_000_000 => format!("{:.1} s", us as f64 / 1e6),
        Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
        None => "–".into(),
    }
}

fn latencies<'a>(samples: impl Iterator<Item = &'a Sample>) -> Vec<i64> {
    let mut values: Vec<i64> = samples.map(Sample::latency_us).collect();
    values.sort_unstable();
    values
}

fn stats_cells(sorted: &[i64]) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        sorted.len(),
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 95.0)),
        ms(percentile(sorted, 99.0)),
        ms(sorted.last().copied()),
    )
}

fn kind_of(notifier: &str) -> &str {
    if notifier.starts_with("slack-") {
        "slack (all channels)"
    } else {
        notifier
    }
}

fn report(outcome: &Outcome, knobs: &Knobs) {
    let name = outcome.backend.name();
    println!("\n## {name} ({:.1} s)\n", outcome.elapsed.as_secs_f64());
    println!("Runs (latency = request arrival − commit of the run's end; webhook = every key):\n");
    println!("| run | findings | triggered | updated | unchanged | resolved | outbox rows | record tx | webhook sent | webhook p99 | webhook last | webhook rate |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &outcome.runs {
        let count = |field: &str| run.alerts[field].as_u64().unwrap_or(0);
        let webhook = latencies(
            outcome
                .samples
                .iter()
                .filter(|s| s.run == run.index && s.notifier == "webhook"),
        );
        let last = webhook.last().copied();
        #[allow(clippy::cast_precision_loss)]
        let rate = match last {
            Some(last) if last > 0 => {
                format!("{:.0}/s", webhook.len() as f64 / (last as f64 / 1e6))
            }
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} | {} | {} | {} |",
            run.index,
            run.findings,
            count("triggered"),
            count("updated"),
            count("unchanged"),
            count("resolved"),
            count("deliveries"),
            run.record_time.as_secs_f64() * 1000.0,
            webhook.len(),
            ms(percentile(&webhook, 99.0)),
            ms(last),
            rate,
        );
    }
    let findings: usize = outcome.runs.iter().map(|run| run.findings).sum();
    println!(
        "\nTotal: {findings} findings over {} keys in {} runs.\n",
        knobs.keys,
        outcome.runs.len()
    );

    println!("Per notifier kind:\n");
    println!("| notifier | rate limit | deliveries | requests | exactly once | latency n | p50 | p95 | p99 | max |");
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|---:|");
    let mut kinds: BTreeMap<&str, (Checks, Option<RateLimit>)> = BTreeMap::new();
    for (notifier, checks) in &outcome.checks {
        let entry = kinds.entry(kind_of(notifier)).or_default();
        entry.0.add(checks);
        if let Some(limit) = outcome.limits.get(notifier) {
            entry.1 = Some(limit.limit);
        }
    }
    for (kind, (checks, limit)) in &kinds {
        let sorted = latencies(
            outcome
                .samples
                .iter()
                .filter(|s| kind_of(&s.notifier) == *kind),
        );
        let limit = match (limit, *kind) {
            (Some(limit), "slack (all channels)") => format!("{limit} per channel"),
            (Some(limit), _) => limit.to_string(),
            (None, _) => "none".into(),
        };
        println!(
            "| {kind} | {limit} | {} | {} | {} | {} |",
            checks.rows,
            checks.calls,
            if checks.failures() == 0 {
                "yes".to_string()
            } else {
                format!("NO: {checks:?}")
            },
            stats_cells(&sorted),
        );
    }
    let all = latencies(outcome.samples.iter());
    println!("| **all** | | {} | | | {} |", all.len(), stats_cells(&all));

    if !outcome.limits.is_empty() {
        println!("\nRate limits (sends replayed through the configured token bucket):\n");
        println!("| notifier | limit | sends | most in any window of the limit's period | earliest send ahead of the bucket | min gap | latency beyond the limit's floor p50 | p99 | max |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for (notifier, limit) in &outcome.limits {
            println!(
                "| {notifier} | {} | {} | {} | {:.1} ms | {} | {} | {} | {} |",
                limit.limit,
                limit.sends,
                limit.max_in_window,
                limit.max_early.as_secs_f64() * 1000.0,
                limit.min_gap.map_or("–".into(), |gap| format!(
                    "{:.0} ms",
                    gap.as_secs_f64() * 1000.0
                )),
                ms(percentile(&limit.excess_us, 50.0)),
                ms(percentile(&limit.excess_us, 99.0)),
                ms(limit.excess_us.last().copied()),
            );
        }
    }
    println!(
        "\nSlack stand-in rate-limit violations (429s): {}. PagerDuty open incidents: {} (expected {}). \
         Slack messages: {} (expected {}). Deliveries still open: {}.",
        outcome.slack_violations,
        outcome.pd_open,
        outcome.pd_open_expected,
        outcome.slack_messages,
        outcome.slack_messages_expected,
        outcome.open_left,
    );
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} ({} MHz), {cores} cores available; kernel {}",
        field("model name"),
        field("cpu MHz"),
        kernel.trim()
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn init_logging() {
    let level = std::env::var("PATROL_BENCH_LOG").unwrap_or_else(|_| "info".into());
    if level == "off" {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = std::env::var("PATROL_BENCH_LOG_FILE")
        .ok()
        .and_then(|path| std::fs::File::create(path).ok());
    let _ = match file {
        Some(file) => builder.with_writer(Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::sink).try_init(),
    };
}

async fn postgres_reachable(server: &str) -> Result<()> {
    use sqlx::Connection;
    let connect = sqlx::PgConnection::connect(server);
    let conn = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .context("timed out")??;
    conn.close().await?;
    Ok(())
}

async fn bench() -> Result<bool> {
    init_logging();
    sqlx::any::install_default_drivers();
    let knobs = Knobs::from_env();
    let server = std::env::var("PATROL_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEV_POSTGRES.to_string());
    let wanted =
        std::env::var("PATROL_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut backends = Vec::new();
    if wanted.contains("sqlite") {
        backends.push(BackendKind::Sqlite);
    }
    if wanted.contains("postgres") {
        match postgres_reachable(&server).await {
            Ok(()) => backends.push(BackendKind::Postgres),
            Err(err) => println!(
                "note: PostgreSQL at {} is unreachable ({err:#}); skipping the PostgreSQL case",
                redact_url(&server)
            ),
        }
    }
    let paging = (0..knobs.keys).filter(|&k| knobs.paging(k)).count();
    let chat = (0..knobs.keys).filter(|&k| knobs.chat(k).is_some()).count();
    println!("# patrol alert delivery bench\n");
    println!("command: `{COMMAND}`");
    println!("machine: {}", machine());
    println!("load average at start: {}", load_average());
    println!(
        "case: {} keys; {} runs reporting every key, then 1 run reporting the first half \
         (the rest resolve); ~{}% of keys change per run; one run end every {} ms",
        knobs.keys,
        knobs.runs,
        knobs.changed_pct,
        knobs.spacing.as_millis()
    );
    println!(
        "routes: every key → webhook (no limit); {paging} keys → pagerduty (rate_limit {}); \
         {chat} keys → {} Slack channels (one notifier each, default 1/s; stand-in enforces 1/s per channel)",
        knobs.pd_limit, knobs.slack_channels
    );
    println!(
        "backends: {}",
        backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    if std::env::var("PATROL_BENCH_PROFILE").is_ok_and(|value| value == "1") {
        for &backend in &backends {
            profile(backend, &server, &knobs).await?;
        }
        return Ok(true);
    }
    let mut failed = Vec::new();
    for &backend in &backends {
        let outcome = run_case(backend, &server, &knobs).await?;
        report(&outcome, &knobs);
        for problem in outcome.failed() {
            failed.push(format!("{}: {problem}", backend.name()));
        }
    }
    println!("\nload average at end: {}", load_average());
    if failed.is_empty() {
        println!("\nevery delivery arrived exactly once; no rate limit broken");
        Ok(true)
    } else {
        println!("\nFAILED:");
        for problem in failed {
            println!("- {problem}");
        }
        Ok(false)
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(bench()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
