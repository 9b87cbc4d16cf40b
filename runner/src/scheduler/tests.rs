//! The whole scheduler — engine, executor, SQLite ledger — on a paused
//! tokio clock: each test lets hours of schedule time pass in moments, and
//! none of them sleeps on the wall clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::{
    BuildContext, Job, JobDescription, JobError, JobInstance, JobState, Outcome, ParamError,
    RunContext, RunReport, StateKey, TokioClock,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{retry_delay, Clock, Engine, EngineSettings};
use crate::config::{schedules_in_file, HistoryPolicy, Schedule, ScheduleSet};
use crate::ledger::{
    Instance, Ledger, NewRun, Run, RunFilter, RunStatus, ScheduleStateStore, Trigger,
};
use crate::registry::{JobBuild, JobRegistry};

/// When a run of the test job started, as the job saw it.
#[derive(Debug, Clone)]
struct Start {
    schedule_id: String,
    at: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
}

/// `job: test`: sleeps `sleep_ms` on tokio time (returning at once when
/// cancelled), then fails while `attempt <= fail_attempts`.
#[derive(Default)]
struct TestJob {
    starts: Arc<Mutex<Vec<Start>>>,
}

/// A `test` schedule, built: its params and where it reports its starts.
struct TestInstance {
    starts: Arc<Mutex<Vec<Start>>>,
    params: TestParams,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestParams {
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail_attempts: u32,
    /// Checkpoints `progress` = 1, 2, … this many times before sleeping,
    /// reading each back.
    #[serde(default)]
    checkpoints: u64,
    /// Hands back `progress` = this at the end.
    #[serde(default)]
    end_progress: Option<u64>,
}

const PROGRESS: StateKey<u64> = StateKey::new("progress");

impl Job for TestJob {
    fn kind(&self) -> &'static str {
        "test"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "test",
            summary: "sleeps on tokio time, fails on request (scheduler tests)",
            params: Vec::new(),
        }
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        patrol_job_api::parse_params::<TestParams>(params)
            .map(|_| ())
            .map_err(|err| vec![err])
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        Ok(Arc::new(TestInstance {
            starts: self.starts.clone(),
            params: patrol_job_api::parse_params(params).map_err(|err| vec![err])?,
        }))
    }
}

#[async_trait]
impl JobInstance for TestInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let params = &self.params;
        self.starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Start {
                schedule_id: ctx.schedule_id.clone(),
                at: ctx.now(),
                deadline: ctx.deadline,
            });
        for progress in 1..=params.checkpoints {
            let write = PROGRESS
                .put(&progress)
                .map_err(|err| JobError::Failed(err.to_string()))?;
            ctx.checkpoint(vec![write])
                .await
                .map_err(|err| JobError::Failed(err.to_string()))?;
            let seen = ctx
                .state
                .load(&PROGRESS)
                .await
                .map_err(|err| JobError::Failed(err.to_string()))?;
            if seen != Some(progress) {
                return Err(JobError::Failed(format!(
                    "read back {seen:?} after checkpoint {progress}"
                )));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(params.sleep_ms)) => {}
            () = ctx.cancel.cancelled() => {
                return Ok(RunReport::new(Outcome::Cancelled, "cancelled"));
            }
        }
        if ctx.attempt <= params.fail_attempts {
            return Ok(RunReport::new(Outcome::Failed, "failed on purpose"));
        }
        let mut report = RunReport::new(Outcome::Succeeded, "done");
        if let Some(progress) = params.end_progress {
            report.state.push(
                PROGRESS
                    .put(&progress)
                    .map_err(|err| JobError::Failed(err.to_string()))?,
            );
        }
        Ok(report)
    }
}

pub(crate) fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .to_utc()
}

fn registry(job: &Arc<TestJob>) -> JobRegistry {
    let mut registry = JobRegistry::default();
    registry.register(job.clone());
    registry
}

/// Schedules from YAML, checked like a schedule file.
fn schedule_set(yaml: &str, registry: &JobRegistry) -> ScheduleSet {
    let schedules: BTreeMap<String, Arc<Schedule>> = schedules_in_file(
        std::path::Path::new("test.yaml"),
        yaml,
        &JobBuild::here(registry.clone()),
    )
    .into_iter()
    .map(|schedule| {
        let schedule = schedule.expect("valid test schedule");
        (schedule.id.clone(), Arc::new(schedule))
    })
    .collect();
    ScheduleSet { schedules }
}

/// An SQLite ledger in a fresh folder, and tokio's clock paused. Abort the
/// returned task when done.
///
/// SQLite's work happens on sqlx's own threads, outside tokio. While the
/// runtime waits for it, a paused clock would jump to the next timer —
/// minutes ahead, or to the pool's 30 s acquire timeout. The returned task
/// keeps the runtime busy while a connection is out of the pool, so ledger
/// work takes no schedule time; otherwise it lets the clock move on in
/// steps of 20 ms, which bounds the jump before it sees the pool busy.
pub(crate) async fn paused_sqlite_ledger() -> (tempfile::TempDir, Ledger, JoinHandle<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::connect(&format!("sqlite://{}", dir.path().join("l.db").display()))
        .await
        .expect("ledger");
    tokio::time::pause();
    let pool = ledger.pool().clone();
    let ticker = tokio::spawn(async move {
        loop {
            let busy = pool.num_idle() < pool.size() as usize;
            if busy {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    (dir, ledger, ticker)
}

/// A running engine on a paused tokio clock over an SQLite ledger.
struct Scheduler {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    clock: Arc<TokioClock>,
    job: Arc<TestJob>,
    shutdown: watch::Sender<bool>,
    engine: Option<JoinHandle<Result<()>>>,
    ticker: JoinHandle<()>,
}

impl Scheduler {
    /// Opens a fresh ledger, pauses tokio's clock, and sets the schedule
    /// clock to `start`; the engine starts with [`Scheduler::start`].
    async fn new(start: &str) -> Self {
        let (dir, ledger, ticker) = paused_sqlite_ledger().await;
        Self {
            _dir: dir,
            ledger,
            clock: Arc::new(TokioClock::starting_at(t(start))),
            job: Arc::new(TestJob::default()),
            shutdown: watch::channel(false).0,
            engine: None,
            ticker,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Starts the engine on `yaml`'s schedules.
    fn start(&mut self, yaml: &str) {
        let registry = registry(&self.job);
        let set = schedule_set(yaml, &registry);
        let settings = EngineSettings {
            node_ttl: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            history: HistoryPolicy {
                keep_last: None,
                max_age: None,
            },
            prune_interval: Duration::from_secs(3600),
            guard: None,
        };
        let engine = Engine::new(
            self.ledger.clone(),
            JobBuild::here(registry),
            self.clock.clone(),
            Instance {
                id: "instance-a".into(),
                node: "node-a".into(),
            },
            settings,
        );
        let (_schedules_tx, schedules_rx) = watch::channel(Arc::new(set));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        self.shutdown = shutdown_tx;
        self.engine = Some(tokio::spawn(async move {
            // Keeps the sender alive: a closed channel is not a reload.
            let _schedules_tx = _schedules_tx;
            engine.run(schedules_rx, shutdown_rx).await.map(drop)
        }));
    }

    /// Every run of `schedule`, oldest first.
    async fn runs(&self, schedule: &str) -> Vec<Run> {
        let mut runs = self
            .ledger
            .runs(&RunFilter {
                schedule_id: Some(schedule.into()),
                status: None,
                limit: 10_000,
            })
            .await
            .expect("runs");
        runs.reverse();
        runs
    }

    /// Lets schedule time pass until `check` holds for the runs of
    /// `schedule`; fails once the schedule clock reaches `until`.
    async fn wait_for_runs(
        &self,
        schedule: &str,
        until: &str,
        check: impl Fn(&[Run]) -> bool,
    ) -> Vec<Run> {
        loop {
            let runs = self.runs(schedule).await;
            if check(&runs) {
                return runs;
            }
            assert!(
                self.now() < t(until),
                "still waiting at {} for the runs of {schedule}: {runs:#?}",
                self.now()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lets schedule time pass until `at`.
    async fn run_until(&self, at: &str) {
        let wait = (t(at) - self.now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }

    fn starts(&self, schedule: &str) -> Vec<Start> {
        self.job
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|start| start.schedule_id == schedule)
            .cloned()
            .collect()
    }

    /// Shuts the engine down; every run ends recorded.
    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(engine) = self.engine.take() {
            engine.await.expect("engine task").expect("engine");
        }
        self.ticker.abort();
        self.ledger.close().await;
    }
}

fn test_schedule(id: &str, cron: &str, extra: &str, params: &str) -> String {
    format!("- id: {id}\n  job: test\n  cron: \"{cron}\"\n{extra}  params: {params}\n")
}

/// Timer ticks are whole milliseconds and the ledger keeps milliseconds.
const MS: chrono::Duration = chrono::Duration::milliseconds(20);
/// Each ledger call may let the paused clock move up to one 20 ms step.
const LEDGER_STEPS: chrono::Duration = chrono::Duration::seconds(1);

#[track_caller]
fn assert_near(
    actual: Option<DateTime<Utc>>,
    expected: DateTime<Utc>,
    tolerance: chrono::Duration,
) {
    let actual = actual.expect("a time");
    assert!(
        actual >= expected - tolerance && actual <= expected + tolerance,
        "{actual} is not within {tolerance} of {expected}"
    );
}

fn statuses(runs: &[Run]) -> Vec<(DateTime<Utc>, Trigger, RunStatus)> {
    runs.iter()
        .map(|run| (run.scheduled_for, run.trigger, run.status))
        .collect()
}

#[tokio::test]
async fn a_time_in_the_spring_forward_gap_fires_once_when_the_gap_ends() {
    // Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not
    // exist and fires at 03:00 CEST (01:00Z), once.
    let mut scheduler = Scheduler::new("2026-03-29T00:59:00Z").await;
    scheduler.start(&test_schedule(
        "gap",
        "30 2 * * *",
        "  timezone: Europe/Berlin\n",
        "{}",
    ));
    // Nothing more that day: the next 02:30 is tomorrow's.
    scheduler.run_until("2026-03-29T01:10:00Z").await;
    let runs = scheduler.runs("gap").await;
    assert_eq!(
        statuses(&runs),
        [(
            t("2026-03-29T01:00:00Z"),
            Trigger::Schedule,
            RunStatus::Succeeded
        )]
    );
    assert_near(runs[0].started_at, t("2026-03-29T01:00:00Z"), MS);
    assert_eq!(scheduler.starts("gap").len(), 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_time_in_the_repeated_hour_fires_at_its_first_occurrence_only() {
    // Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens
    // at 00:30Z (CEST) and again at 01:30Z (CET). It fires at the first.
    let mut scheduler = Scheduler::new("2026-10-25T00:29:00Z").await;
    scheduler.start(&test_schedule(
        "overlap",
        "30 2 * * *",
        "  timezone: Europe/Berlin\n",
        "{}",
    ));
    scheduler.run_until("2026-10-25T01:35:00Z").await;
    let runs = scheduler.runs("overlap").await;
    assert_eq!(
        statuses(&runs),
        [(
            t("2026-10-25T00:30:00Z"),
            Trigger::Schedule,
            RunStatus::Succeeded
        )]
    );
    assert_near(runs[0].started_at, t("2026-10-25T00:30:00Z"), MS);
    assert_eq!(scheduler.starts("overlap").len(), 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn after_downtime_the_latest_slot_runs_once_and_older_ones_are_missed() {
    // Patrol took the schedules on (at 10:00 and 09:30) and was down
    // until 10:22.
    let mut scheduler = Scheduler::new("2026-11-23T10:22:00Z").await;
    for (id, seen) in [
        ("within", "2026-11-23T10:00:00Z"),
        ("beyond", "2026-11-23T09:30:00Z"),
    ] {
        scheduler
            .ledger
            .mark_schedules_seen(&[id.to_string()], t(seen))
            .await
            .expect("seen");
    }
    scheduler.start(&format!(
        "{}{}",
        test_schedule("within", "*/5 * * * *", "  catchup: 15m\n", "{}"),
        test_schedule("beyond", "0 * * * *", "  catchup: 15m\n", "{}")
    ));
    let within = scheduler
        .wait_for_runs("within", "2026-11-23T10:23:00Z", |runs| {
            runs.iter().any(|run| run.status == RunStatus::Succeeded)
        })
        .await;
    let coalesced =
        "patrol was not running; coalesced into the catch-up run of 2026-11-23T10:20:00+00:00";
    assert_eq!(
        statuses(&within),
        [
            (
                t("2026-11-23T10:05:00Z"),
                Trigger::Schedule,
                RunStatus::Missed
            ),
            (
                t("2026-11-23T10:10:00Z"),
                Trigger::Schedule,
                RunStatus::Missed
            ),
            (
                t("2026-11-23T10:15:00Z"),
                Trigger::Schedule,
                RunStatus::Missed
            ),
            (
                t("2026-11-23T10:20:00Z"),
                Trigger::Catchup,
                RunStatus::Succeeded
            ),
        ]
    );
    assert!(within[..3]
        .iter()
        .all(|run| run.error.as_deref() == Some(coalesced)));
    // The catch-up run ran when patrol came back, not at its slot.
    assert_near(
        within[3].started_at,
        t("2026-11-23T10:22:00Z"),
        LEDGER_STEPS,
    );
    assert_eq!(scheduler.starts("within").len(), 1);

    // 10:00 was owed but is 22 minutes old: recorded, not run.
    let beyond = scheduler.runs("beyond").await;
    assert_eq!(
        statuses(&beyond),
        [(
            t("2026-11-23T10:00:00Z"),
            Trigger::Schedule,
            RunStatus::Missed
        )]
    );
    assert_eq!(
        beyond[0].error.as_deref(),
        Some("patrol was not running; older than the catchup window of 15m")
    );
    assert!(scheduler.starts("beyond").is_empty());
    scheduler.stop().await;
}

#[tokio::test]
async fn overlap_forbid_skips_a_slot_while_the_previous_run_runs() {
    // Every 10 s from 10:00, each run takes 15 s: :10 finds :00 running,
    // :20 does not.
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "forbid",
        "*/10 0 10 * * *",
        "",
        "{sleep_ms: 15000}",
    ));
    let runs = scheduler
        .wait_for_runs("forbid", "2026-11-23T10:01:00Z", |runs| {
            runs.len() >= 3 && runs[..3].iter().all(|run| run.status.is_terminal())
        })
        .await;
    assert_eq!(
        statuses(&runs[..3]),
        [
            (
                t("2026-11-23T10:00:00Z"),
                Trigger::Schedule,
                RunStatus::Succeeded
            ),
            (
                t("2026-11-23T10:00:10Z"),
                Trigger::Schedule,
                RunStatus::Skipped
            ),
            (
                t("2026-11-23T10:00:20Z"),
                Trigger::Schedule,
                RunStatus::Succeeded
            ),
        ]
    );
    assert_eq!(
        runs[1].error.as_deref(),
        Some(
            format!(
                "previous run #{} still running (overlap: forbid)",
                runs[0].id
            )
            .as_str()
        )
    );
    let started = scheduler.starts("forbid")[0].at;
    assert_near(
        runs[0].finished_at,
        started + chrono::Duration::seconds(15),
        MS,
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn overlap_replace_cancels_the_old_run_only_once_the_new_row_is_written() {
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "replace",
        "*/10 0 10 * * *",
        "  overlap: replace\n",
        "{sleep_ms: 600000}",
    ));
    let first = scheduler
        .wait_for_runs("replace", "2026-11-23T10:00:05Z", |runs| !runs.is_empty())
        .await;
    assert_eq!(first[0].status, RunStatus::Running);
    // The ledger refuses the next slot's row for a while.
    sqlx::query(
        "CREATE TRIGGER refuse_replace BEFORE INSERT ON runs \
         WHEN NEW.schedule_id = 'replace' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(scheduler.ledger.pool())
    .await
    .expect("trigger");
    scheduler.run_until("2026-11-23T10:00:25Z").await;
    let refused = scheduler.runs("replace").await;
    assert_eq!(
        statuses(&refused),
        [(
            t("2026-11-23T10:00:00Z"),
            Trigger::Schedule,
            RunStatus::Running
        )],
        "a replacement that could not be recorded must not cancel the run it replaces"
    );

    sqlx::query("DROP TRIGGER refuse_replace")
        .execute(scheduler.ledger.pool())
        .await
        .expect("drop trigger");
    let runs = scheduler
        .wait_for_runs("replace", "2026-11-23T10:00:40Z", |runs| {
            runs[0].status.is_terminal() && runs.len() > 1
        })
        .await;
    // Once the ledger answers again, the newest slot due fires and the
    // refused ones are coalesced into it.
    let (old, rest) = runs.split_first().expect("runs");
    let (new, coalesced) = rest.split_last().expect("a replacement");
    assert_eq!(
        (old.status, new.status),
        (RunStatus::Cancelled, RunStatus::Running)
    );
    assert_eq!(
        old.error.as_deref(),
        Some("cancelled: replaced by a newer run (overlap: replace)")
    );
    assert!(new.scheduled_for >= t("2026-11-23T10:00:20Z"), "{runs:#?}");
    assert!(
        coalesced.iter().all(|run| run.status == RunStatus::Missed),
        "{runs:#?}"
    );
    let written = new.started_at.expect("started");
    let cancelled = old.finished_at.expect("finished");
    assert!(
        cancelled >= written,
        "the old run ended at {cancelled}, before its replacement was written at {written}"
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_after_its_backoff_until_it_succeeds() {
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "flaky",
        "0 10 * * *",
        "  retries: {max: 3, backoff: 20s, max_backoff: 1m}\n",
        "{fail_attempts: 2}",
    ));
    let runs = scheduler
        .wait_for_runs("flaky", "2026-11-23T10:05:00Z", |runs| {
            runs.iter().any(|run| run.status == RunStatus::Succeeded)
        })
        .await;
    let attempts: Vec<(u32, Trigger, RunStatus)> = runs
        .iter()
        .map(|run| (run.attempt, run.trigger, run.status))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Trigger::Schedule, RunStatus::Failed),
            (2, Trigger::Retry, RunStatus::Failed),
            (3, Trigger::Retry, RunStatus::Succeeded),
        ]
    );
    let slot = t("2026-11-23T10:00:00Z");
    assert!(runs.iter().all(|run| run.scheduled_for == slot));
    let schedule = schedule_set(
        &test_schedule(
            "flaky",
            "0 10 * * *",
            "  retries: {max: 3, backoff: 20s, max_backoff: 1m}\n",
            "{}",
        ),
        &registry(&scheduler.job),
    );
    let policy = schedule.get("flaky").expect("flaky").retries;
    for pair in runs.windows(2) {
        let (failed, retry) = (&pair[0], &pair[1]);
        let delay = retry_delay(&policy, "flaky", slot, failed.attempt);
        let due = failed.finished_at.expect("finished")
            + chrono::Duration::from_std(delay).expect("delay");
        assert_eq!(retry.not_before, Some(due));
        let started = retry.started_at.expect("started");
        // Claimed by the next poll (every second) after it came due.
        assert!(
            started >= due && started - due <= chrono::Duration::seconds(3),
            "attempt {} due at {due} started at {started}",
            retry.attempt
        );
    }
    // The backoff doubles: 10–20 s after the first failure, 20–40 s after the second.
    let first_wait = runs[1].started_at.expect("started") - runs[0].finished_at.expect("ended");
    let second_wait = runs[2].started_at.expect("started") - runs[1].finished_at.expect("ended");
    assert!(first_wait >= chrono::Duration::seconds(10), "{first_wait}");
    assert!(
        second_wait >= chrono::Duration::seconds(20),
        "{second_wait}"
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn a_run_past_its_timeout_is_cancelled_and_recorded_timed_out_at_its_deadline() {
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "slow",
        "0 10 * * *",
        "  timeout: 30s\n",
        "{sleep_ms: 3600000}",
    ));
    let runs = scheduler
        .wait_for_runs("slow", "2026-11-23T10:02:00Z", |runs| {
            runs.iter().any(|run| run.status.is_terminal())
        })
        .await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].status, RunStatus::TimedOut);
    assert_eq!(runs[0].error.as_deref(), Some("timed out after 30s"));
    let starts = scheduler.starts("slow");
    let deadline = starts[0].deadline.expect("the job was told its deadline");
    assert_eq!(deadline, starts[0].at + chrono::Duration::seconds(30));
    // Ended at the deadline, not when the job would have finished.
    assert_near(runs[0].finished_at, deadline, MS);
    scheduler.stop().await;
}

impl Scheduler {
    /// The `progress` the test job keeps, as the ledger holds it.
    async fn progress(&self, schedule: &str) -> Option<u64> {
        JobState::new(Arc::new(ScheduleStateStore::new(
            self.ledger.clone(),
            schedule,
        )))
        .load(&PROGRESS)
        .await
        .expect("progress decodes")
    }
}

#[tokio::test]
async fn checkpoints_outlive_the_timeout_of_their_run() {
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "long",
        "0 10 * * *",
        "  timeout: 30s\n",
        "{sleep_ms: 3600000, checkpoints: 2, end_progress: 99}",
    ));
    let runs = scheduler
        .wait_for_runs("long", "2026-11-23T10:02:00Z", |runs| {
            runs.iter().any(|run| run.status.is_terminal())
        })
        .await;
    assert_eq!(runs[0].status, RunStatus::TimedOut, "{runs:#?}");
    assert_eq!(
        scheduler.progress("long").await,
        Some(2),
        "the second checkpoint is kept; the end's write never came"
    );
    let details = runs[0].details.clone().expect("details");
    assert_eq!(details["checkpoints"]["committed"], 2, "{details}");
    assert_eq!(details["checkpoints"]["writes"], 2, "{details}");
    scheduler.stop().await;
}

#[tokio::test]
async fn the_end_of_a_run_writes_after_its_checkpoints_and_a_dry_run_drops_them() {
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "steps",
        "0 10 * * *",
        "  manual_params: [checkpoints, end_progress]\n",
        "{checkpoints: 3, end_progress: 7}",
    ));
    let runs = scheduler
        .wait_for_runs("steps", "2026-11-23T10:02:00Z", |runs| {
            runs.iter().any(|run| run.status.is_terminal())
        })
        .await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(scheduler.progress("steps").await, Some(7));

    let dry = NewRun {
        schedule_id: "steps".into(),
        job: "test".into(),
        scheduled_for: scheduler.now(),
        attempt: 1,
        trigger: Trigger::Manual,
        status: RunStatus::Pending,
        not_before: None,
        overrides: Some(serde_json::json!({"checkpoints": 2, "end_progress": 50})),
        dry_run: true,
        force_overlap: true,
        error: None,
    };
    let id = scheduler
        .ledger
        .enqueue(&dry, scheduler.now())
        .await
        .expect("enqueue")
        .expect("a new row");
    let runs = scheduler
        .wait_for_runs("steps", "2026-11-23T10:05:00Z", |runs| {
            runs.iter()
                .any(|run| run.id == id && run.status.is_terminal())
        })
        .await;
    let run = runs.iter().find(|run| run.id == id).expect("the dry run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        scheduler.progress("steps").await,
        Some(7),
        "a dry run changes no state"
    );
    let details = run.details.clone().expect("details");
    assert_eq!(details["checkpoints"]["dropped_dry_run"], 2, "{details}");
    assert_eq!(details["checkpoints"]["committed"], 0, "{details}");
    scheduler.stop().await;
}

#[tokio::test]
async fn a_retry_held_back_by_overlap_waits_for_the_other_run_instead_of_being_skipped() {
    // Every 30 s from 10:00, overlap forbid; every first attempt runs 50 s
    // and fails. The 10:00 slot's retry comes due while the 10:01 slot
    // runs: it must wait for that run to end, not leave its slot unrun.
    let mut scheduler = Scheduler::new("2026-11-23T09:59:00Z").await;
    scheduler.start(&test_schedule(
        "busy",
        "*/30 * 10 * * *",
        "  retries: {max: 1, backoff: 30s, max_backoff: 30s}\n",
        "{sleep_ms: 50000, fail_attempts: 1}",
    ));
    let first_slot = t("2026-11-23T10:00:00Z");
    let runs = scheduler
        .wait_for_runs("busy", "2026-11-23T10:05:00Z", |runs| {
            runs.iter().any(|run| {
                run.scheduled_for == first_slot && run.attempt == 2 && run.status.is_terminal()
            })
        })
        .await;
    let retry = runs
        .iter()
        .find(|run| run.scheduled_for == first_slot && run.attempt == 2)
        .expect("the retry");
    assert_eq!(retry.status, RunStatus::Succeeded, "{runs:#?}");
    let other = runs
        .iter()
        .find(|run| run.scheduled_for == t("2026-11-23T10:01:00Z") && run.attempt == 1)
        .expect("the 10:01 run");
    assert!(
        retry.started_at >= other.finished_at,
        "the retry ran beside the other run: {runs:#?}"
    );
    scheduler.stop().await;
}
