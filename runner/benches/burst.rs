//! Scheduler burst bench (issue 3): many schedules due in the same second.
//!
//! Runs the real [`Engine`] against SQLite (temp dir) and PostgreSQL
//! (`PATROL_TEST_POSTGRES_URL`, default the dev server), with a no-op job,
//! then reads the ledger back: every (schedule, slot) must have exactly one
//! row and one job execution. Prints fire lateness per backend and case.
//!
//! `cargo bench -p patrol --bench burst`
//!
//! Knobs (environment): `PATROL_BENCH_N` (burst size, 10000),
//! `PATROL_BENCH_ROUNDS` (burst rounds, 3), `PATROL_BENCH_SINGLE_FIRES`
//! (fires of the single schedule, 20), `PATROL_BENCH_BACKENDS`
//! (`sqlite,postgres`), `PATROL_BENCH_LOG` (`info`: the engine's log lines
//! are formatted as in `patrol serve`, into a sink, or into the file
//! `PATROL_BENCH_LOG_FILE`; `off` to skip), `PATROL_BENCH_PRUNE_SAMPLE`
//! (schedules the history-prune timing samples, 1000; 0 to skip),
//! `PATROL_BENCH_NODES` (engines on one PostgreSQL ledger for the cluster
//! burst, 3; each its own pool and instance, as nodes would be; 1 to skip),
//! `PATROL_BENCH_PRUNE_INTERVAL` (the engine's prune interval in seconds,
//! 600 as in `patrol serve`; a few seconds makes passes overlap the bursts).
//!
//! Exits 1 if any fire is missing, doubled, unexpected or not finished.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Timelike, Utc};
use patrol::config::{schedules_in_file, HistoryPolicy, Schedule, ScheduleSet};
use patrol::cron::CronExpr;
use patrol::ledger::{create_scratch_postgres_database, redact_url, Instance, Ledger};
use patrol::registry::{JobBuild, JobRegistry};
use patrol::scheduler::{Engine, EngineSettings, SystemClock};
use patrol_job_api::units::HumanDuration;
use patrol_job_api::{
    BuildContext, Job, JobDescription, JobError, JobInstance, Outcome, ParamError, RunContext,
    RunReport,
};
use sqlx::Row;
use tokio::sync::watch;

const DEV_POSTGRES: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// (schedule id, slot in ms) → lateness in µs seen by each execution.
type Starts = Arc<Mutex<HashMap<(String, i64), Vec<i64>>>>;

/// Does nothing, immediately; notes when it was started.
#[derive(Clone)]
struct NoopJob {
    starts: Starts,
}

impl Job for NoopJob {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "noop",
            summary: "does nothing (bench)",
            params: Vec::new(),
        }
    }

    fn check_params(&self, _params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        Ok(())
    }

    fn build(
        &self,
        _params: &serde_json::Value,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        Ok(Arc::new(self.clone()))
    }
}

#[async_trait]
impl JobInstance for NoopJob {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let late = (ctx.now() - ctx.scheduled_for)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        self.starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((ctx.schedule_id, ctx.scheduled_for.timestamp_millis()))
            .or_default()
            .push(late);
        Ok(RunReport::new(Outcome::Succeeded, "noop"))
    }
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

/// One (backend × case) run of the engine.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    backend: BackendKind,
    schedules: usize,
    /// Time to leave for setup and engine start before the first slot.
    lead: Duration,
    /// Seconds between consecutive slots.
    spacing: u32,
    slots: usize,
    /// Engines on the same ledger, each with its own pool and instance:
    /// the nodes of a cluster (issue 19).
    nodes: usize,
}

/// What one case measured.
#[derive(Debug, Default)]
struct Outcomes {
    label: String,
    expected: usize,
    rows: usize,
    missing: usize,
    doubled: usize,
    unexpected: usize,
    unfinished: usize,
    /// started_at − scheduled_for per row, ms (the ledger's resolution).
    ledger_ms: Vec<i64>,
    /// When the job's code actually ran, µs after its slot.
    job_us: Vec<i64>,
    /// Per slot: the ledger's started_at and the first and last job start.
    per_slot: Vec<SlotTimes>,
    /// One prune pass over all schedules with the default history policy
    /// (scaled from a sample).
    prune: Option<Duration>,
    /// Rows each node wrote as the slot's runner.
    per_node: Vec<(String, i64)>,
}

impl Outcomes {
    fn failed(&self) -> bool {
        self.missing + self.doubled + self.unexpected + self.unfinished > 0
    }
}

#[derive(Debug, Clone, Copy)]
struct SlotTimes {
    ledger_ms: i64,
    first_job_us: i64,
    last_job_us: i64,
}

impl Default for SlotTimes {
    fn default() -> Self {
        Self {
            ledger_ms: i64::MIN,
            first_job_us: i64::MAX,
            last_job_us: i64::MIN,
        }
    }
}

/// A ledger to run a case against; dropped with its database.
struct BenchLedger {
    ledger: Ledger,
    url: String,
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
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            BackendKind::Postgres => {
                let url = create_scratch_postgres_database(server, "patrol_bench").await?;
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                Ok(Self {
                    ledger: Ledger::connect(&url).await?,
                    url,
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `count` slots `spacing` seconds apart, the first at least `lead` from now.
fn plan_slots(lead: Duration, spacing: u32, count: usize) -> Vec<DateTime<Utc>> {
    let lead = chrono::Duration::from_std(lead).unwrap_or_default();
    let first = (Utc::now() + lead).trunc_subsecs(0) + chrono::Duration::seconds(1);
    (0..count)
        .map(|index| {
            let offset = i64::from(spacing) * i64::try_from(index).unwrap_or(i64::MAX);
            first + chrono::Duration::seconds(offset)
        })
        .collect()
}

/// A 6-field cron firing at exactly these seconds (all within one minute
/// of each other), every minute; the bench stops before it repeats.
fn cron_for(slots: &[DateTime<Utc>]) -> Result<String> {
    let span = match (slots.first(), slots.last()) {
        (Some(first), Some(last)) => (*last - *first).num_seconds(),
        _ => bail!("no slots"),
    };
    if span >= 60 {
        bail!("slots must lie within one minute (span {span}s)");
    }
    let mut seconds: Vec<u32> = slots.iter().map(|slot| slot.second()).collect();
    seconds.sort_unstable();
    let seconds: Vec<String> = seconds.iter().map(u32::to_string).collect();
    Ok(format!("{} * * * * *", seconds.join(",")))
}

fn schedule_yaml(count: usize, cron: &str) -> String {
    let mut yaml = String::with_capacity(count * 80);
    for index in 0..count {
        yaml.push_str(&format!(
            "- id: burst-{index:05}\n  job: noop\n  cron: \"{cron}\"\n  overlap: allow\n"
        ));
    }
    yaml
}

fn build_schedules(count: usize, cron: &str, registry: &JobRegistry) -> Result<ScheduleSet> {
    let yaml = schedule_yaml(count, cron);
    let mut schedules = BTreeMap::new();
    let jobs = JobBuild::here(registry.clone());
    for result in schedules_in_file(Path::new("bench-schedules.yaml"), &yaml, &jobs) {
        match result {
            Ok(schedule) => {
                schedules.insert(schedule.id.clone(), Arc::new(schedule));
            }
            Err(diagnostics) => bail!("bad generated schedule: {diagnostics:?}"),
        }
    }
    if schedules.len() != count {
        bail!("expected {count} schedules, built {}", schedules.len());
    }
    Ok(ScheduleSet { schedules })
}

/// `patrol serve`'s settings with the default `patrol.yaml`.
fn settings() -> EngineSettings {
    EngineSettings {
        node_ttl: Duration::from_secs(15),
        shutdown_grace: Duration::from_secs(30),
        poll_interval: Duration::from_millis(500),
        history: HistoryPolicy {
            keep_last: Some(1000),
            max_age: Some(HumanDuration(Duration::from_secs(90 * 24 * 3600))),
        },
        prune_interval: Duration::from_secs(
            u64::try_from(env_usize("PATROL_BENCH_PRUNE_INTERVAL", 600)).unwrap_or(600),
        ),
        guard: None,
    }
}

async fn run_case(case: &Case, server: &str) -> Result<Outcomes> {
    let label = match case.nodes {
        0 | 1 => format!("{} × {}", case.backend.name(), case.name),
        nodes => format!("{} × {}, {nodes} nodes", case.backend.name(), case.name),
    };
    let bench_ledger = BenchLedger::open(case.backend, server)
        .await
        .with_context(|| format!("{label}: cannot open the ledger"))?;
    let result = drive(case, &bench_ledger, label).await;
    bench_ledger.close().await;
    result
}

async fn drive(case: &Case, bench_ledger: &BenchLedger, label: String) -> Result<Outcomes> {
    let ledger = &bench_ledger.ledger;
    let starts: Starts = Arc::default();
    let mut registry = JobRegistry::default();
    registry.register(Arc::new(NoopJob {
        starts: starts.clone(),
    }));

    // Schedules come from generated YAML through the real loader; the fire
    // seconds are filled in once the start-up time is known.
    let built = Instant::now();
    let template = build_schedules(case.schedules, "0 0 0 1 1 *", &registry)?;
    let ids: Vec<String> = template.schedules.keys().cloned().collect();
    let build_time = built.elapsed();

    // The engine's start-up includes one history-prune pass (a query per
    // schedule); it must end before the first slot, or that slot is fired
    // by the start-up path instead of the loop under test.
    let startup = estimate_startup(ledger, &ids).await?;
    let lead = case.lead + startup * 3 / 2;
    let slots = plan_slots(lead, case.spacing, case.slots);
    let cron_text = cron_for(&slots)?;
    let cron = CronExpr::parse(&cron_text).map_err(|err| anyhow::anyhow!("{}", err.message))?;
    let set = ScheduleSet {
        schedules: template
            .schedules
            .iter()
            .map(|(id, schedule)| {
                let mut schedule = Schedule::clone(schedule);
                schedule.cron = cron.clone();
                (id.clone(), Arc::new(schedule))
            })
            .collect(),
    };
    if case.schedules > 1 {
        println!(
            "{label}: {} schedules built in {:.2} s; estimated engine start-up {:.2} s; cron `{cron_text}`",
            case.schedules,
            build_time.as_secs_f64(),
            startup.as_secs_f64()
        );
    }

    let set = Arc::new(set);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut engines = Vec::new();
    let mut node_ledgers = Vec::new();
    for node in 0..case.nodes.max(1) {
        // Each node its own pool, as separate processes would have.
        let node_ledger = match node {
            0 => ledger.clone(),
            _ => Ledger::connect(&bench_ledger.url).await?,
        };
        let engine = Engine::new(
            node_ledger.clone(),
            JobBuild::here(registry.clone()),
            Arc::new(SystemClock),
            Instance {
                id: uuid::Uuid::new_v4().to_string(),
                node: format!("bench-{node}"),
            },
            settings(),
        );
        let (schedules_tx, schedules_rx) = watch::channel(set.clone());
        let shutdown_rx = shutdown_rx.clone();
        engines.push(tokio::spawn(async move {
            // Keeps the sender alive: a closed channel is not a reload.
            let _schedules_tx = schedules_tx;
            engine.run(schedules_rx, shutdown_rx).await
        }));
        node_ledgers.push(node_ledger);
    }

    let last = slots.last().copied().context("no slots")?;
    let wait_until = last + chrono::Duration::milliseconds(1500);
    if let Ok(wait) = (wait_until - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    // Every run must have reached the ledger as ended (a slow backend may
    // still be writing ends); bounded.
    let expected = case.schedules * slots.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_finished(ledger).await? < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown_tx
        .send(true)
        .map_err(|_| anyhow::anyhow!("engine gone before shutdown"))?;
    for engine in engines {
        if let Some(lease) = engine.await.context("engine task panicked")?? {
            ledger
                .stop_instance(lease.instance(), Utc::now(), "bench done")
                .await?;
        }
    }
    for node_ledger in node_ledgers.iter().skip(1) {
        node_ledger.close().await;
    }

    let mut outcomes = verify(ledger, &ids, &slots, &starts).await?;
    outcomes.label = label;
    outcomes.per_node = sqlx::query_as(
        "SELECT node, COUNT(*) FROM runs WHERE node IS NOT NULL GROUP BY node ORDER BY node",
    )
    .fetch_all(ledger.pool())
    .await?;
    let prune_sample = env_usize("PATROL_BENCH_PRUNE_SAMPLE", 1000).min(ids.len());
    if case.schedules > 1 && prune_sample > 0 {
        outcomes.prune = Some(time_prune(ledger, &ids, prune_sample).await?);
    }
    Ok(outcomes)
}

/// The engine's start-up prune on an empty ledger, from a sample of the
/// same per-schedule calls.
async fn estimate_startup(ledger: &Ledger, ids: &[String]) -> Result<Duration> {
    let sample = ids.len().min(500);
    if sample == 0 {
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    for id in &ids[..sample] {
        ledger.prune(id, Some(1000), None).await?;
    }
    let per_schedule = started.elapsed() / u32::try_from(sample).unwrap_or(1);
    Ok(per_schedule * u32::try_from(ids.len()).unwrap_or(u32::MAX))
}

async fn count_finished(ledger: &Ledger) -> Result<usize> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status NOT IN ('pending', 'running')")
            .fetch_one(ledger.pool())
            .await?;
    Ok(usize::try_from(count).unwrap_or(0))
}

async fn verify(
    ledger: &Ledger,
    ids: &[String],
    slots: &[DateTime<Utc>],
    starts: &Starts,
) -> Result<Outcomes> {
    let rows = sqlx::query(
        "SELECT schedule_id, scheduled_for, attempt, triggered_by, status, started_at FROM runs",
    )
    .fetch_all(ledger.pool())
    .await?;
    let slot_ms: Vec<i64> = slots.iter().map(DateTime::timestamp_millis).collect();
    let mut outcomes = Outcomes {
        expected: ids.len() * slots.len(),
        rows: rows.len(),
        ..Outcomes::default()
    };
    let mut by_key: HashMap<(String, i64), usize> = HashMap::with_capacity(rows.len());
    let mut per_slot: HashMap<i64, SlotTimes> = HashMap::new();
    for row in &rows {
        let schedule: String = row.try_get(0)?;
        let slot: i64 = row.try_get(1)?;
        let trigger: String = row.try_get(3)?;
        let status: String = row.try_get(4)?;
        let started_at: Option<i64> = row.try_get(5)?;
        if !slot_ms.contains(&slot) || trigger != "schedule" {
            outcomes.unexpected += 1;
            continue;
        }
        *by_key.entry((schedule, slot)).or_default() += 1;
        if status != "succeeded" {
            outcomes.unfinished += 1;
        }
        let times = per_slot.entry(slot).or_default();
        if let Some(started_at) = started_at {
            outcomes.ledger_ms.push(started_at - slot);
            times.ledger_ms = times.ledger_ms.max(started_at - slot);
        }
    }
    let starts = starts.lock().unwrap_or_else(PoisonError::into_inner);
    for id in ids {
        for &slot in &slot_ms {
            let key = (id.clone(), slot);
            let rows = by_key.get(&key).copied().unwrap_or(0);
            let runs = starts.get(&key).map_or(0, Vec::len);
            if rows == 0 || runs == 0 {
                outcomes.missing += 1;
            }
            if rows > 1 || runs > 1 {
                outcomes.doubled += 1;
            }
            if let Some(first) = starts.get(&key).and_then(|late| late.first()) {
                outcomes.job_us.push(*first);
                let times = per_slot.entry(slot).or_default();
                times.first_job_us = times.first_job_us.min(*first);
                times.last_job_us = times.last_job_us.max(*first);
            }
        }
    }
    // Executions of slots nobody expected.
    outcomes.unexpected += starts
        .keys()
        .filter(|(_, slot)| !slot_ms.contains(slot))
        .count();
    outcomes.per_slot = slot_ms
        .iter()
        .filter_map(|slot| per_slot.get(slot).copied())
        .collect();
    Ok(outcomes)
}

/// What one pass of the engine's history pruning costs once there is
/// history: the same per-schedule `Ledger::prune` calls with the default
/// policy, timed over `sample` schedules and scaled to all of them.
async fn time_prune(ledger: &Ledger, ids: &[String], sample: usize) -> Result<Duration> {
    let policy = settings().history;
    let cutoff = policy
        .max_age
        .and_then(|age| chrono::Duration::from_std(age.0).ok())
        .map(|age| Utc::now() - age);
    let started = Instant::now();
    for id in &ids[..sample] {
        ledger.prune(id, policy.keep_last, cutoff).await?;
    }
    let per_schedule = started.elapsed() / u32::try_from(sample.max(1)).unwrap_or(1);
    Ok(per_schedule * u32::try_from(ids.len()).unwrap_or(u32::MAX))
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

fn ms(value: Option<i64>, unit_us: bool) -> String {
    match value {
        #[allow(clippy::cast_precision_loss)]
        Some(value) if unit_us => format!("{:.1} ms", value as f64 / 1000.0),
        Some(value) => format!("{value} ms"),
        None => "–".into(),
    }
}

fn report(all: &[Outcomes]) {
    println!();
    println!("| backend × case | fires | rows | missing | doubled | unexpected | unfinished | ledger p50 | ledger p99 | ledger max | job-start p50 | job-start p99 | job-start max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for outcome in all {
        let mut ledger = outcome.ledger_ms.clone();
        ledger.sort_unstable();
        let mut job = outcome.job_us.clone();
        job.sort_unstable();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            outcome.label,
            outcome.expected,
            outcome.rows,
            outcome.missing,
            outcome.doubled,
            outcome.unexpected,
            outcome.unfinished,
            ms(percentile(&ledger, 50.0), false),
            ms(percentile(&ledger, 99.0), false),
            ms(ledger.last().copied(), false),
            ms(percentile(&job, 50.0), true),
            ms(percentile(&job, 99.0), true),
            ms(job.last().copied(), true),
        );
    }
    println!();
    for outcome in all {
        if outcome.per_slot.len() <= 5 {
            for (index, times) in outcome.per_slot.iter().enumerate() {
                println!(
                    "{} slot {}: engine woke (ledger started_at) +{} ms; jobs started +{} … +{}",
                    outcome.label,
                    index + 1,
                    times.ledger_ms,
                    ms(Some(times.first_job_us), true),
                    ms(Some(times.last_job_us), true),
                );
            }
        }
        if outcome.per_node.len() > 1 {
            let shares: Vec<String> = outcome
                .per_node
                .iter()
                .map(|(node, rows)| format!("{node} {rows}"))
                .collect();
            println!("{}: runs per node: {}", outcome.label, shares.join(", "));
        }
        let per_slot = outcome.expected / outcome.per_slot.len().max(1);
        if per_slot > 1 {
            for (index, times) in outcome.per_slot.iter().enumerate() {
                // Due to started: each row written (claimed by one node)
                // and its job spawned. The ledger's `started_at` cannot
                // measure this: a batch's rows share the time it was planned.
                #[allow(clippy::cast_precision_loss)]
                let seconds = times.last_job_us.max(1) as f64 / 1_000_000.0;
                #[allow(clippy::cast_precision_loss)]
                let rate = per_slot as f64 / seconds;
                println!(
                    "{} slot {}: claim throughput {rate:.0} fires/s ({per_slot} rows claimed and their jobs started by +{:.1} ms)",
                    outcome.label,
                    index + 1,
                    seconds * 1000.0
                );
            }
        }
        if let Some(prune) = outcome.prune {
            println!(
                "{}: one history-prune pass over all schedules (default policy, scaled from a sample): {:.2} s",
                outcome.label,
                prune.as_secs_f64()
            );
        }
    }
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
    let burst = env_usize("PATROL_BENCH_N", 10_000);
    let rounds = env_usize("PATROL_BENCH_ROUNDS", 3);
    let single_fires = env_usize("PATROL_BENCH_SINGLE_FIRES", 20);
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
                "note: PostgreSQL at {} is unreachable ({err:#}); skipping the PostgreSQL cases",
                redact_url(&server)
            ),
        }
    }
    println!(
        "patrol burst bench: {burst} schedules × {rounds} rounds, 1 schedule × {single_fires} fires; backends: {}",
        backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    );

    let mut all = Vec::new();
    // Bursts one at a time: each has the machine to itself. Then a
    // cluster: several nodes on one PostgreSQL, the same burst.
    let burst_on = |backend, nodes| Case {
        name: "burst",
        backend,
        schedules: burst,
        lead: Duration::from_secs(2),
        spacing: 5,
        slots: rounds,
        nodes,
    };
    let mut bursts: Vec<Case> = backends
        .iter()
        .map(|&backend| burst_on(backend, 1))
        .collect();
    let nodes = env_usize("PATROL_BENCH_NODES", 3);
    if nodes > 1 && backends.contains(&BackendKind::Postgres) {
        bursts.push(burst_on(BackendKind::Postgres, nodes));
    }
    for case in &bursts {
        let started = Instant::now();
        let outcome = run_case(case, &server).await?;
        println!(
            "{} done in {:.1} s",
            outcome.label,
            started.elapsed().as_secs_f64()
        );
        all.push(outcome);
    }
    // Single schedules side by side: one tiny run a second each.
    let single_backends = if single_fires == 0 {
        &[][..]
    } else {
        &backends[..]
    };
    let singles = single_backends.iter().map(|&backend| {
        let case = Case {
            name: "single",
            backend,
            schedules: 1,
            lead: Duration::from_secs(2),
            spacing: 1,
            slots: single_fires,
            nodes: 1,
        };
        let server = server.clone();
        async move { run_case(&case, &server).await }
    });
    let started = Instant::now();
    for outcome in futures::future::join_all(singles).await {
        all.push(outcome?);
    }
    println!(
        "single-schedule cases done in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    report(&all);
    let failed: Vec<&str> = all
        .iter()
        .filter(|o| o.failed())
        .map(|o| o.label.as_str())
        .collect();
    if failed.is_empty() {
        println!("\nevery fire recorded exactly once");
        Ok(true)
    } else {
        println!(
            "\nFAILED: fires missing, doubled, unexpected or unfinished in: {}",
            failed.join("; ")
        );
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
