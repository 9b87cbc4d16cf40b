//! Running one claimed run: timeout, cancellation, recording the end and
//! the retry that follows, in one transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patrol_job_api::effects::{EffectRecord, EffectSlot};
use patrol_job_api::{
    CancellationToken, CheckpointCounts, CheckpointRun, Checkpoints, Effects, Finding, JobError,
    JobInstance, JobState, Outcome, ProcessFence, RunContext, RunReport, StateWrite,
};
use tokio::sync::Notify;

use super::clock::Clock;
use super::lease::{LeaseView, Standing};
use super::orphans::run_key;
use super::scrub;
use super::spread::retry_delay;
use crate::alerting::policy::AlertPolicy;
use crate::alerting::record::{usable_findings, FindingsInput, RunAlerts};
use crate::config::{overrides, Schedule};
use crate::ledger::{
    Ledger, LedgerCheckpointLog, LedgerEffectLog, NewRun, Run, RunEnd, RunStatus,
    ScheduleStateStore, Trigger,
};
use crate::registry::JobBuild;

/// Why `run`'s row asks for what its schedule does not allow, if it
/// does: a job kind other than the schedule's, or overrides outside its
/// `manual_params`. A row is not a command: such a run is recorded
/// `failed` with this reason, and nothing runs.
fn refusal(run: &Run, schedule: &Schedule) -> Option<String> {
    if run.job != schedule.job {
        return Some(format!(
            "refused: the run names job `{}` but schedule `{}` runs `{}`; a run takes its job from its schedule",
            run.job, schedule.id, schedule.job
        ));
    }
    let overrides = run.overrides.as_ref()?;
    let Some(map) = overrides.as_object() else {
        return Some("refused: the run's overrides are not a map of param keys".into());
    };
    overrides::check_allowed(schedule, map)
        .err()
        .map(|message| format!("refused: {message}"))
}

/// After cancelling, how long a job may take to wind down before it is dropped.
const WIND_DOWN: Duration = Duration::from_secs(15);
/// The longest wait between tries to record a run's end.
const END_RETRY_MAX: Duration = Duration::from_secs(1);

/// Why a run was cancelled; decides the status recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    TimedOut,
    Shutdown,
    Replaced,
    Requested,
    /// This node could not renew its lease for `node_ttl`: it stops the
    /// run itself before another node may retry it (self-fencing).
    LeaseLost,
}

/// What the ledger holds for a run once its task is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its end, as this node saw it.
    Ended(RunStatus),
    /// Nothing from this node: it was no longer this node's run (reaped,
    /// cancelled) when it ended.
    SettledElsewhere(RunStatus),
    /// Nothing: the ledger could not be written and this instance was
    /// taken over; the node that took it ends the row.
    NotRecorded(RunStatus),
}

/// The runner's grip on a run in progress.
#[derive(Debug, Clone)]
pub struct RunHandle {
    pub schedule_id: String,
    token: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
    /// Set once the job has stopped (its processes gone), while its end
    /// may still be on its way to the ledger.
    job_ended: Arc<AtomicBool>,
}

impl RunHandle {
    pub fn new(schedule_id: String) -> Self {
        Self {
            schedule_id,
            token: CancellationToken::new(),
            reason: Arc::new(Mutex::new(None)),
            job_ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the job has stopped. Its row may still say `running` (the
    /// ledger was unreachable when it ended); overlap need not wait for it.
    pub fn job_ended(&self) -> bool {
        self.job_ended.load(Ordering::Acquire)
    }

    /// Asks the run to stop; the first reason given wins.
    pub fn cancel(&self, reason: CancelReason) {
        if let Ok(mut slot) = self.reason.lock() {
            slot.get_or_insert(reason);
        }
        self.token.cancel();
    }

    fn reason(&self) -> Option<CancelReason> {
        self.reason.lock().ok().and_then(|slot| *slot)
    }
}

/// What the executor needs from the runner.
#[derive(Clone)]
pub struct Executor {
    pub ledger: Ledger,
    /// Job kinds, and how a run with its own params builds its job.
    pub jobs: JobBuild,
    pub clock: Arc<dyn Clock>,
    /// Where findings go; `None` drops them (benchmarks).
    pub alerting: Option<Alerting>,
    /// Keeps the processes a job starts within this node's lease.
    pub fence: ProcessFence,
    /// This node's lease: while it holds, the end of a run is retried until
    /// the ledger takes it. `None`: a few retries (tests, benchmarks).
    pub lease: Option<LeaseView>,
}

/// Recording findings as alerts at the end of each run.
#[derive(Clone)]
pub struct Alerting {
    pub policy: Arc<AlertPolicy>,
    /// This node's name, recorded with the alerts it raises.
    pub node: String,
    /// Woken after a run wrote deliveries, so the worker sends them now.
    pub outbox: Arc<Notify>,
}

/// A finished job's findings, checked.
#[derive(Debug, Default)]
struct Reported {
    findings: Vec<Finding>,
    /// The job reported partial results, or some findings were unusable:
    /// absent keys are unknown, not cleared.
    partial: bool,
    /// What the job keeps for its next run, written with the run's end.
    state: Vec<StateWrite>,
}

impl Executor {
    /// Runs `run` (already `running` in the ledger) to its end and records
    /// it. `schedule` is `None` for a run whose schedule has gone away.
    pub async fn execute(
        &self,
        run: Run,
        schedule: Option<Arc<Schedule>>,
        handle: RunHandle,
    ) -> Recorded {
        let refused = schedule
            .as_deref()
            .and_then(|schedule| refusal(&run, schedule));
        let (status, mut end, reported) = match (schedule.as_deref(), &refused) {
            (Some(_), Some(reason)) => {
                tracing::warn!(run = run.id, schedule = %run.schedule_id, reason = %reason,
                    "a run row was refused; nothing ran");
                let (status, mut end) = failed_end(reason.clone());
                add_details(&mut end, |map| {
                    map.insert("refused".into(), serde_json::Value::Bool(true));
                });
                (status, end, None)
            }
            (Some(schedule), None) => self.run_job(&run, schedule, &handle).await,
            (None, _) => (
                RunStatus::Cancelled,
                RunEnd::failed(
                    RunStatus::Cancelled,
                    format!("schedule `{}` is no longer defined", run.schedule_id),
                ),
                None,
            ),
        };
        scrub::run_end(&mut end);
        let reported = reported.map(|mut reported| {
            reported.findings = reported.findings.into_iter().map(scrub::finding).collect();
            reported
        });
        // A refused row would be refused again: it is not retried (it
        // pages as the schedule's failure instead).
        let retry = schedule
            .as_deref()
            .filter(|_| refused.is_none())
            .and_then(|schedule| retry_after(schedule, &run, status, self.clock.now()));
        let mut reported = reported.map(|reported| checked_findings(reported, &mut end));
        if status.is_retryable() && retry.is_none() {
            // Out of retries: a failing schedule pages like a finding, and
            // its next successful run resolves it (the key goes absent).
            reported
                .get_or_insert_with(|| Reported {
                    findings: Vec::new(),
                    partial: true,
                    state: Vec::new(),
                })
                .findings
                .push(run_failed_finding(&run, &end));
        }
        let run_failed = run_failed_key(&run.schedule_id);
        let alerts = match (&self.alerting, &reported) {
            // A dry run shows what a job would find; it pages nobody.
            (Some(alerting), Some(reported)) if !run.dry_run => Some(RunAlerts {
                policy: &alerting.policy,
                input: FindingsInput {
                    schedule_id: &run.schedule_id,
                    job: &run.job,
                    run_id: Some(run.id),
                    findings: &reported.findings,
                    resolve_absent: status == RunStatus::Succeeded && !reported.partial,
                    also_resolve: (status == RunStatus::Succeeded).then_some(run_failed.as_str()),
                    named_route: schedule.as_deref().and_then(|s| s.route.as_deref()),
                    notifiers: None,
                    node: &alerting.node,
                },
            }),
            _ => None,
        };
        // A dry run changes nothing, its job's state included.
        let state = match &reported {
            Some(reported) if !run.dry_run => reported.state.as_slice(),
            _ => &[],
        };
        let recorded = self
            .record_end(&run, &end, retry.as_ref(), alerts.as_ref(), state)
            .await;
        if let Some(alerting) = &self.alerting {
            alerting.outbox.notify_one();
        }
        recorded
    }

    /// The job this run runs (its row was checked by [`refusal`]): the
    /// schedule's built job, or, for a manual run with overrides, the
    /// schedule's job built for that run alone from its params with the
    /// overrides merged over them. Never a job kind or params of the row's.
    fn instance_for(&self, run: &Run, schedule: &Schedule) -> Result<Arc<dyn JobInstance>, String> {
        let overrides = run
            .overrides
            .as_ref()
            .filter(|overrides| !overrides.as_object().is_some_and(serde_json::Map::is_empty));
        let params = match overrides {
            None => {
                if let Some(built) = &schedule.built {
                    return Ok(built.instance.clone());
                }
                schedule.params.clone()
            }
            Some(overrides) => overrides::params_with(&schedule.params, overrides)?,
        };
        let Some(job) = self.jobs.registry.get(&schedule.job) else {
            return Err(format!(
                "job kind `{}` is not available in this runner",
                schedule.job
            ));
        };
        job.check_params(&params)
            .and_then(|()| job.build(&params, &self.jobs.context(&schedule.id)))
            .map_err(|errors| JobError::InvalidParams(errors).to_string())
    }

    async fn run_job(
        &self,
        run: &Run,
        schedule: &Schedule,
        handle: &RunHandle,
    ) -> (RunStatus, RunEnd, Option<Reported>) {
        let instance = match self.instance_for(run, schedule) {
            Ok(instance) => instance,
            Err(message) => {
                let (status, end) = failed_end(message);
                return (status, end, None);
            }
        };
        let started = self.clock.now();
        let deadline = schedule
            .timeout
            .and_then(|timeout| chrono::Duration::from_std(timeout).ok())
            .map(|timeout| started + timeout);
        let effects = effects_of(&self.ledger, run, self.clock.clone());
        let stored = JobState::new(Arc::new(ScheduleStateStore::new(
            self.ledger.clone(),
            run.schedule_id.clone(),
        )));
        let (checkpoints, state) = checkpoints_of(&self.ledger, run, stored, self.clock.clone());
        let context = RunContext {
            run_id: run.id,
            schedule_id: run.schedule_id.clone(),
            scheduled_for: run.scheduled_for,
            attempt: run.attempt,
            deadline,
            dry_run: run.dry_run,
            cancel: handle.token.clone(),
            run_key: run_key(run.instance_id.as_deref().unwrap_or("unowned"), run.id),
            state,
            checkpoints: checkpoints.clone(),
            effects: effects.clone(),
            clock: self.clock.clone(),
            fence: self.fence.clone(),
        };
        let mut job_future = instance.run(context);
        let timeout = schedule.timeout.unwrap_or(Duration::MAX);
        let result = tokio::select! {
            result = &mut job_future => Some(result),
            () = sleep_for(timeout) => {
                handle.cancel(CancelReason::TimedOut);
                None
            }
        };
        let result = match result {
            Some(result) => Some(result),
            // Cancelled: give the job its chance to clean up, then drop it.
            None => tokio::time::timeout(WIND_DOWN, job_future).await.ok(),
        };
        handle.job_ended.store(true, Ordering::Release);
        let (status, mut end, reported) = end_of(result, handle.reason(), schedule.timeout);
        attach_effects(&mut end, &effects.records());
        attach_checkpoints(&mut end, checkpoints.counts());
        (status, end, reported)
    }

    /// The end must reach the ledger, and only while the run is still this
    /// instance's (the write is fenced on the row's owner and the owner's
    /// lease). A database outage is waited out for as long as it lasts:
    /// only once this instance was taken over is the row someone else's.
    async fn record_end(
        &self,
        run: &Run,
        end: &RunEnd,
        retry: Option<&NewRun>,
        alerts: Option<&RunAlerts<'_>>,
        state: &[StateWrite],
    ) -> Recorded {
        let owner = run.instance_id.clone().unwrap_or_default();
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self
                .ledger
                .finish_run(
                    run.id,
                    &owner,
                    end,
                    retry,
                    alerts.map(|alerts| alerts as &dyn crate::ledger::RunEndWrites),
                    state,
                    self.clock.now(),
                )
                .await
            {
                Ok(true) => return Recorded::Ended(end.status),
                Ok(false) => {
                    tracing::warn!(run = run.id, status = %end.status,
                        "run was settled elsewhere (reaped or cancelled) before it ended; its end is not recorded by this node");
                    return Recorded::SettledElsewhere(end.status);
                }
                Err(err) => {
                    // While this instance is not taken over, nobody else
                    // may end the row: giving up would leave it `running`.
                    let keep_trying = match &self.lease {
                        Some(lease) => !matches!(lease.standing(), Standing::Taken(_)),
                        None => attempt < 8,
                    };
                    if !keep_trying {
                        tracing::error!(run = run.id, status = %end.status, error = %err,
                            "gave up recording the end of a run: this instance was taken over, and the node that took it ends the run as crashed");
                        return Recorded::NotRecorded(end.status);
                    }
                    tracing::warn!(run = run.id, attempt, error = %err, "cannot record the end of a run; retrying");
                    tokio::time::sleep(delay).await;
                    // Capped low: until it is recorded the row says
                    // `running`, and other nodes' overlap checks believe it.
                    delay = (delay * 2).min(END_RETRY_MAX);
                }
            }
        }
    }
}

/// A dry run's effects are only recorded in the run; a real run's are
/// written to the ledger before and after they are performed.
fn effects_of(ledger: &Ledger, run: &Run, clock: Arc<dyn Clock>) -> Effects {
    if run.dry_run {
        return Effects::dry_run();
    }
    Effects::recorded_on(
        Arc::new(LedgerEffectLog::new(ledger.clone())),
        EffectSlot {
            schedule_id: run.schedule_id.clone(),
            scheduled_for: run.scheduled_for,
            run_id: run.id,
            attempt: run.attempt,
        },
        clock,
    )
}

/// The run's checkpoints and the state it reads. A dry run's checkpoints
/// are checked and kept in memory, over the stored state, for its own
/// reads; a real run's are committed to the ledger while the run is still
/// held by this runner.
fn checkpoints_of(
    ledger: &Ledger,
    run: &Run,
    stored: JobState,
    clock: Arc<dyn Clock>,
) -> (Checkpoints, JobState) {
    if run.dry_run {
        return Checkpoints::dry_run_over(stored);
    }
    let checkpoints = Checkpoints::committed(
        Arc::new(LedgerCheckpointLog::new(ledger.clone())),
        CheckpointRun {
            schedule_id: run.schedule_id.clone(),
            run_id: run.id,
            // A run row without an owner matches no instance: its
            // checkpoints are refused as not held.
            instance_id: run.instance_id.clone().unwrap_or_default(),
        },
        clock,
    );
    (checkpoints, stored)
}

/// Keeps the run's checkpoint counts with it, in `details.checkpoints`.
fn attach_checkpoints(end: &mut RunEnd, counts: CheckpointCounts) {
    if counts.is_empty() {
        return;
    }
    add_details(end, |map| {
        map.insert("checkpoints".into(), serde_json::json!(counts));
    });
}

/// Adds to the run's details, a map.
fn add_details(
    end: &mut RunEnd,
    add: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let mut map = match end.details.take() {
        Some(serde_json::Value::Object(map)) => map,
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        // Details that are not a map (rare) move under `report`.
        Some(other) => serde_json::Map::from_iter([("report".to_string(), other)]),
    };
    add(&mut map);
    end.details = Some(serde_json::Value::Object(map));
}

/// Most effects kept in a run's details; the rest are counted.
const MAX_EFFECTS_SHOWN: usize = 1000;

/// Keeps the run's effects with it, in `details.effects` (what a dry run
/// would have done; what a real run did), for `patrol run` and `patrol runs`.
fn attach_effects(end: &mut RunEnd, effects: &[EffectRecord]) {
    if effects.is_empty() {
        return;
    }
    let shown = &effects[..effects.len().min(MAX_EFFECTS_SHOWN)];
    add_details(end, |map| {
        map.insert("effects".into(), serde_json::json!(shown));
        if shown.len() < effects.len() {
            map.insert(
                "effects_not_shown".into(),
                serde_json::json!(effects.len() - shown.len()),
            );
        }
    });
}

async fn sleep_for(duration: Duration) {
    if duration == Duration::MAX {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(duration).await;
    }
}

fn failed_end(error: String) -> (RunStatus, RunEnd) {
    (RunStatus::Failed, RunEnd::failed(RunStatus::Failed, error))
}

/// The key of the alert for a schedule whose run failed with no retry left.
pub fn run_failed_key(schedule_id: &str) -> String {
    format!("patrol/run-failed/{schedule_id}")
}

pub(super) fn run_failed_finding(run: &Run, end: &RunEnd) -> Finding {
    let mut finding = Finding::new(
        run_failed_key(&run.schedule_id),
        patrol_job_api::Severity::Error,
        format!("Schedule `{}` failed ({})", run.schedule_id, end.status),
    );
    // Only what stays the same from one failure to the next goes into the
    // summary (it is part of the alert's identity for updates); the run id
    // and the job's one-line summary (with its duration) go into details.
    let mut summary = format!("The last attempt ended {}", end.status);
    if let Some(code) = end
        .details
        .as_ref()
        .and_then(|details| details.get("exit_code"))
        .and_then(serde_json::Value::as_i64)
    {
        summary.push_str(&format!(" with exit code {code}"));
    }
    if let Some(error) = end.error.as_deref() {
        summary.push_str(": ");
        summary.push_str(&error.chars().take(500).collect::<String>());
    }
    finding.summary = summary;
    finding.runbook = Some("run-failed".into());
    finding
        .labels
        .insert("schedule".into(), run.schedule_id.clone());
    finding.details = serde_json::json!({
        "run_id": run.id,
        "attempt": run.attempt,
        "status": end.status.as_str(),
        "run_summary": end.summary,
    });
    finding
}

/// Drops unusable findings (bad key or title, a key twice), noting each in
/// the run's details and log; the run then counts as partial, since a key
/// it meant to report may be among the dropped.
fn checked_findings(reported: Reported, end: &mut RunEnd) -> Reported {
    let (findings, problems) = usable_findings(reported.findings);
    if problems.is_empty() {
        return Reported {
            findings,
            partial: reported.partial,
            state: reported.state,
        };
    }
    for problem in &problems {
        tracing::warn!(problem = %problem, "a finding was left out");
    }
    let entry = serde_json::json!(problems);
    match &mut end.details {
        Some(serde_json::Value::Object(map)) => {
            map.insert("finding_problems".into(), entry);
        }
        _ => end.details = Some(serde_json::json!({ "finding_problems": entry })),
    }
    Reported {
        findings,
        partial: true,
        state: reported.state,
    }
}

fn end_of(
    result: Option<Result<RunReport, JobError>>,
    cancel: Option<CancelReason>,
    timeout: Option<Duration>,
) -> (RunStatus, RunEnd, Option<Reported>) {
    let cancelled_status = |reason: Option<CancelReason>| match reason {
        Some(CancelReason::TimedOut) => (
            RunStatus::TimedOut,
            format!(
                "timed out after {}",
                humantime::format_duration(timeout.unwrap_or_default())
            ),
        ),
        Some(CancelReason::Shutdown) => (
            RunStatus::Cancelled,
            "cancelled: patrol shut down".to_string(),
        ),
        Some(CancelReason::Replaced) => (
            RunStatus::Cancelled,
            "cancelled: replaced by a newer run (overlap: replace)".to_string(),
        ),
        Some(CancelReason::Requested) | None => {
            (RunStatus::Cancelled, "cancelled on request".to_string())
        }
        Some(CancelReason::LeaseLost) => (
            RunStatus::Crashed,
            "stopped by its own node, which could not renew its lease in time (self-fencing): \
             another node may take its runs over"
                .to_string(),
        ),
    };
    match result {
        None => {
            let (status, error) = cancelled_status(cancel);
            let error = format!(
                "{error}; the job did not stop within {}s and was dropped",
                WIND_DOWN.as_secs()
            );
            (status, RunEnd::failed(status, error), None)
        }
        Some(Err(err)) => {
            let (status, end) = failed_end(err.to_string());
            (status, end, None)
        }
        Some(Ok(report)) => {
            let (status, error) = match (report.outcome, cancel) {
                (_, Some(reason)) => {
                    let (status, error) = cancelled_status(Some(reason));
                    (status, Some(error))
                }
                (Outcome::Succeeded, None) => (RunStatus::Succeeded, None),
                (Outcome::Failed, None) => (RunStatus::Failed, None),
                (Outcome::Cancelled, None) => (
                    RunStatus::Cancelled,
                    Some("the job cancelled itself".into()),
                ),
            };
            let details = (!report.details.is_null()).then_some(report.details);
            let reported = Reported {
                findings: report.findings,
                partial: report.findings_partial,
                state: report.state,
            };
            (
                status,
                RunEnd {
                    status,
                    summary: Some(report.summary),
                    output: report.output,
                    details,
                    error,
                },
                Some(reported),
            )
        }
    }
}

/// The retry that follows a run which ended as `status`, if any remain.
pub fn retry_after(
    schedule: &Schedule,
    run: &Run,
    status: RunStatus,
    now: DateTime<Utc>,
) -> Option<NewRun> {
    if !status.is_retryable() || run.attempt > schedule.retries.max {
        return None;
    }
    let delay = retry_delay(
        &schedule.retries,
        &schedule.id,
        run.scheduled_for,
        run.attempt,
    );
    Some(NewRun {
        schedule_id: run.schedule_id.clone(),
        job: schedule.job.clone(),
        scheduled_for: run.scheduled_for,
        attempt: run.attempt + 1,
        trigger: Trigger::Retry,
        status: RunStatus::Pending,
        not_before: Some(now + chrono::Duration::from_std(delay).unwrap_or_default()),
        overrides: run.overrides.clone(),
        dry_run: run.dry_run,
        force_overlap: run.force_overlap,
        error: None,
    })
}
