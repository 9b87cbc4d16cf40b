//! The scheduler loop: wakes at the next fire time, claims due slots in the
//! ledger (one row per slot, whichever node writes it first), starts the
//! jobs it claimed, and records their ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::clock::Clock;
use super::executor::{retry_after, run_failed_finding, CancelReason, Executor, RunHandle};
use super::plan::{decide_overlap, plan_due_slots, OverlapDecision, Phase};
use super::spread::jitter;
use crate::alerting::record::CrashPage;
use crate::config::{HistoryPolicy, Overlap, Schedule, ScheduleSet};
use crate::ledger::{CrashFollowUp, Instance, Ledger, NewRun, Run, RunEnd, RunStatus, Trigger};
use crate::registry::JobBuild;

/// Knobs of the loop; the defaults suit production.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub node_ttl: Duration,
    pub shutdown_grace: Duration,
    /// How often pending runs, cancel requests and pauses are looked at.
    pub poll_interval: Duration,
    pub history: HistoryPolicy,
    pub prune_interval: Duration,
}

/// One schedule's place in time.
struct Entry {
    schedule: Arc<Schedule>,
    /// The newest slot already handled (run, skipped or missed).
    cursor: DateTime<Utc>,
    /// Bumped when the schedule changes, to drop stale heap entries.
    generation: u64,
}

type HeapItem = Reverse<(DateTime<Utc>, String, u64)>;

pub struct Engine {
    ledger: Ledger,
    executor: Executor,
    clock: Arc<dyn Clock>,
    me: Instance,
    settings: EngineSettings,
    entries: HashMap<String, Entry>,
    heap: BinaryHeap<HeapItem>,
    next_generation: u64,
    paused: HashSet<String>,
    running: HashMap<i64, RunHandle>,
    tasks: JoinSet<(i64, RunStatus)>,
}

impl Engine {
    /// Records the findings of every run as alerts.
    pub fn with_alerting(mut self, alerting: super::executor::Alerting) -> Self {
        self.executor.alerting = Some(alerting);
        self
    }

    pub fn new(
        ledger: Ledger,
        jobs: JobBuild,
        clock: Arc<dyn Clock>,
        me: Instance,
        settings: EngineSettings,
    ) -> Self {
        Self {
            executor: Executor {
                ledger: ledger.clone(),
                jobs,
                clock: clock.clone(),
                alerting: None,
            },
            ledger,
            clock,
            me,
            settings,
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            next_generation: 0,
            paused: HashSet::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Runs until `shutdown` flips to true, then drains. `schedules` carries
    /// each new valid schedule set (file reloads). The instance stays
    /// registered and alive afterwards: the caller stops it with
    /// [`Ledger::stop_instance`] once nothing else (the delivery worker)
    /// works under its name, or another node would take that work over
    /// while it is still being done.
    pub async fn run(
        mut self,
        mut schedules: watch::Receiver<Arc<ScheduleSet>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let now = self.clock.now();
        self.ledger
            .register_instance(&self.me, "serve", now)
            .await?;
        self.refresh_paused().await?;
        let initial = schedules.borrow_and_update().clone();
        self.start_schedules(&initial).await?;
        tracing::info!(node = %self.me.node, instance = %self.me.id, schedules = initial.len(), "patrol is scheduling");

        let mut poll = tokio::time::interval(self.settings.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let heartbeat_every = (self.settings.node_ttl / 4).max(Duration::from_millis(200));
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pruning touches every schedule: off the loop, so fires never wait on it.
        let (prune_tx, prune_rx) = watch::channel(self.prune_plan());
        let pruner = tokio::spawn(prune_history(
            self.ledger.clone(),
            self.clock.clone(),
            prune_rx,
            self.settings.prune_interval,
        ));

        loop {
            let wake = self.time_until_next_fire();
            if wake.is_zero() {
                // Overdue: fire before anything else gets a turn.
                self.fire_due().await;
                continue;
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                () = tokio::time::sleep(wake) => self.fire_due().await,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.run_finished(done),
                changed = schedules.changed() => {
                    if changed.is_ok() {
                        let set = schedules.borrow_and_update().clone();
                        self.apply_schedules(&set).await;
                        let _ = prune_tx.send(self.prune_plan());
                    }
                }
                _ = poll.tick() => self.poll_ledger().await,
                _ = heartbeat.tick() => self.heartbeat().await,
            }
        }
        pruner.abort();
        self.drain(heartbeat).await;
        Ok(())
    }

    fn time_until_next_fire(&self) -> Duration {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) => {
                (*at - self.clock.now()).to_std().unwrap_or(Duration::ZERO)
            }
            None => Duration::from_secs(3600),
        }
    }

    /// Initial set: resume every schedule where the ledger left it, after
    /// settling the runs of dead processes (their retries need the schedules).
    async fn start_schedules(&mut self, set: &ScheduleSet) -> Result<()> {
        let now = self.clock.now();
        let ids: Vec<String> = set.iter().map(|schedule| schedule.id.clone()).collect();
        self.ledger.mark_schedules_seen(&ids, now).await?;
        let first_seen = self.ledger.schedules_first_seen().await?;
        let last_slots = self.ledger.last_slots().await?;
        let states = self.ledger.schedule_states().await?;
        let ttl = chrono::Duration::from_std(self.settings.node_ttl)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
        let phase = if self.ledger.live_server(Some(&self.me), now, ttl).await? {
            Phase::Joining
        } else {
            Phase::Recovering
        };
        let mut plans = Vec::new();
        for schedule in set.iter() {
            // Resume after the newest recorded slot; a schedule that never
            // fired resumes from when a runner first took it on, so its
            // first slots are not lost to downtime either.
            let mut cursor = last_slots
                .get(&schedule.id)
                .or_else(|| first_seen.get(&schedule.id))
                .copied()
                .unwrap_or(now);
            if let Some(state) = states.get(&schedule.id) {
                // Slots while it was paused are not missed: ops chose that.
                cursor = cursor.max(state.changed_at.min(now));
            }
            let entry = self.insert_entry(schedule.clone(), cursor);
            if schedule.enabled && !self.paused.contains(&schedule.id) {
                plans.push((entry, phase));
            }
        }
        self.reap().await;
        if self.handle_due(plans, now).await {
            for schedule in set.iter() {
                self.push_next(&schedule.id);
            }
        }
        Ok(())
    }

    /// A reloaded set: new and changed schedules start from now; removed
    /// ones stop firing (their running runs finish).
    async fn apply_schedules(&mut self, set: &ScheduleSet) {
        let now = self.clock.now();
        let ids: Vec<String> = set.iter().map(|schedule| schedule.id.clone()).collect();
        if let Err(err) = self.ledger.mark_schedules_seen(&ids, now).await {
            tracing::warn!(error = %err, "cannot record newly seen schedules");
        }
        let mut added = 0;
        let mut changed = 0;
        self.entries.retain(|id, _| set.get(id).is_some());
        for schedule in set.iter() {
            match self.entries.get(&schedule.id) {
                Some(entry) if same_schedule(&entry.schedule, schedule) => {
                    // Unchanged: keep cursor and heap entry, refresh the Arc.
                    if let Some(entry) = self.entries.get_mut(&schedule.id) {
                        entry.schedule = schedule.clone();
                    }
                    continue;
                }
                Some(_) => changed += 1,
                None => added += 1,
            }
            self.insert_entry(schedule.clone(), now);
            self.push_next(&schedule.id);
        }
        tracing::info!(schedules = set.len(), added, changed, "schedules reloaded");
    }

    fn insert_entry(&mut self, schedule: Arc<Schedule>, cursor: DateTime<Utc>) -> String {
        self.next_generation += 1;
        let id = schedule.id.clone();
        self.entries.insert(
            id.clone(),
            Entry {
                schedule,
                cursor,
                generation: self.next_generation,
            },
        );
        id
    }

    /// Queues the fire time of the slot after the entry's cursor.
    fn push_next(&mut self, id: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        if !entry.schedule.enabled {
            return;
        }
        let schedule = &entry.schedule;
        if let Some(slot) = schedule.cron.next_after(entry.cursor, &schedule.timezone) {
            let at = slot
                + chrono::Duration::from_std(jitter(id, slot, schedule.jitter)).unwrap_or_default();
            self.heap
                .push(Reverse((at, id.to_string(), entry.generation)));
        }
    }

    /// Pops every schedule whose next fire time has come and handles them
    /// as one batch, so a burst of thousands costs a few statements.
    async fn fire_due(&mut self) {
        let now = self.clock.now();
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id, generation))) = self.heap.pop() else {
                break;
            };
            let current = self
                .entries
                .get(&id)
                .is_some_and(|entry| entry.generation == generation);
            if current {
                due.push((id, Phase::Live));
            }
        }
        if due.is_empty() {
            return;
        }
        let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
        if self.handle_due(due, now).await {
            for id in ids {
                self.push_next(&id);
            }
        }
    }

    /// Plans each schedule's due slots, writes every row in one batch,
    /// then starts the runs this instance won.
    ///
    /// Returns false when the ledger refused the batch; the schedules are
    /// then already re-queued for a retry and must not be queued again.
    async fn handle_due(&mut self, due: Vec<(String, Phase)>, now: DateTime<Utc>) -> bool {
        let needs_running = due.iter().any(|(id, _)| {
            self.entries
                .get(id)
                .is_some_and(|entry| entry.schedule.overlap != Overlap::Allow)
        });
        let running_by_schedule = if needs_running {
            self.running_by_schedule().await
        } else {
            HashMap::new()
        };

        let mut rows: Vec<NewRun> = Vec::new();
        // Per schedule, the runs its new row replaces once it is written.
        let mut to_replace: HashMap<String, Vec<i64>> = HashMap::new();
        let mut advanced: Vec<(String, DateTime<Utc>)> = Vec::new();
        for (id, phase) in due {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let schedule = entry.schedule.clone();
            if self.paused.contains(&id) || !schedule.enabled {
                // Not owed while paused; move on without recording.
                advanced.push((id, now));
                continue;
            }
            let plan = plan_due_slots(&schedule, entry.cursor, now, phase);
            let mut newest = entry.cursor;
            for (slot, reason) in plan.missed {
                newest = newest.max(slot);
                rows.push(slot_row(
                    &schedule,
                    slot,
                    Trigger::Schedule,
                    RunStatus::Missed,
                    Some(reason),
                ));
            }
            if let Some((slot, trigger)) = plan.fire {
                newest = newest.max(slot);
                let running = running_by_schedule
                    .get(&id)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match decide_overlap(schedule.overlap, running, false) {
                    OverlapDecision::Skip(reason) => rows.push(slot_row(
                        &schedule,
                        slot,
                        trigger,
                        RunStatus::Skipped,
                        Some(reason),
                    )),
                    OverlapDecision::Replace(old) => {
                        to_replace.insert(id.clone(), old);
                        rows.push(slot_row(&schedule, slot, trigger, RunStatus::Running, None));
                    }
                    OverlapDecision::Start => {
                        rows.push(slot_row(&schedule, slot, trigger, RunStatus::Running, None));
                    }
                }
            }
            advanced.push((id, newest));
        }
        let previous: Vec<(String, DateTime<Utc>)> = advanced
            .iter()
            .filter_map(|(id, _)| self.entries.get(id).map(|entry| (id.clone(), entry.cursor)))
            .collect();
        for (id, cursor) in advanced {
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.cursor = cursor;
            }
        }
        if rows.is_empty() {
            return true;
        }
        let ids = match self.ledger.insert_runs(&rows, &self.me, now).await {
            Ok(ids) => ids,
            Err(err) => {
                // Nothing was started. Rewind so the slots are planned again
                // once the ledger answers: nothing runs unrecorded.
                tracing::error!(error = %err, slots = rows.len(), "cannot write due slots to the ledger; retrying in 1s");
                let retry_at = now + chrono::Duration::seconds(1);
                for (id, cursor) in previous {
                    if let Some(entry) = self.entries.get_mut(&id) {
                        entry.cursor = cursor;
                        self.heap.push(Reverse((retry_at, id, entry.generation)));
                    }
                }
                return false;
            }
        };
        for (row, id) in rows.into_iter().zip(ids) {
            match (id, row.status) {
                (Some(id), RunStatus::Running) => {
                    // The new run's row is written: only now may it replace
                    // the old ones. A batch the ledger refused (or a slot
                    // another node won, which then replaces them itself)
                    // leaves them running.
                    for old in to_replace.remove(&row.schedule_id).unwrap_or_default() {
                        self.cancel_run(old, CancelReason::Replaced).await;
                    }
                    self.start_run(id, row, now)
                }
                (Some(id), status) => {
                    tracing::info!(schedule = %row.schedule_id, run = id, %status,
                    slot = %row.scheduled_for.to_rfc3339(), reason = row.error.as_deref().unwrap_or(""), "slot not run")
                }
                (None, _) => {
                    tracing::debug!(schedule = %row.schedule_id, slot = %row.scheduled_for, "slot taken by another node")
                }
            }
        }
        true
    }

    fn start_run(&mut self, id: i64, row: NewRun, now: DateTime<Utc>) {
        let run = Run {
            id,
            schedule_id: row.schedule_id,
            job: row.job,
            scheduled_for: row.scheduled_for,
            attempt: row.attempt,
            trigger: row.trigger,
            status: RunStatus::Running,
            not_before: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            node: Some(self.me.node.clone()),
            instance_id: Some(self.me.id.clone()),
            params: serde_json::Value::Null,
            overrides: row.overrides,
            dry_run: row.dry_run,
            force_overlap: row.force_overlap,
            summary: None,
            output: None,
            details: None,
            error: None,
        };
        self.spawn(run);
    }

    fn spawn(&mut self, run: Run) {
        let schedule = self
            .entries
            .get(&run.schedule_id)
            .map(|entry| entry.schedule.clone());
        let handle = RunHandle::new(run.schedule_id.clone());
        self.running.insert(run.id, handle.clone());
        let executor = self.executor.clone();
        tracing::info!(schedule = %run.schedule_id, run = run.id, trigger = run.trigger.as_str(),
            attempt = run.attempt, slot = %run.scheduled_for.to_rfc3339(), "run started");
        self.tasks.spawn(async move {
            let id = run.id;
            let status = executor.execute(run, schedule, handle).await;
            (id, status)
        });
    }

    fn run_finished(&mut self, done: Result<(i64, RunStatus), tokio::task::JoinError>) {
        match done {
            Ok((id, status)) => {
                if let Some(handle) = self.running.remove(&id) {
                    tracing::info!(schedule = %handle.schedule_id, run = id, %status, "run ended");
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "a run task panicked; its row will be reaped as crashed")
            }
        }
    }

    /// Ids of the runs in progress per schedule, on every node.
    async fn running_by_schedule(&self) -> HashMap<String, Vec<i64>> {
        let mut by_schedule: HashMap<String, Vec<i64>> = HashMap::new();
        match self.ledger.running_runs().await {
            Ok(runs) => {
                for run in runs {
                    by_schedule.entry(run.schedule_id).or_default().push(run.id);
                }
            }
            Err(err) => {
                // Fall back to what this node knows.
                tracing::warn!(error = %err, "cannot read running runs; using this node's view");
                for (id, handle) in &self.running {
                    by_schedule
                        .entry(handle.schedule_id.clone())
                        .or_default()
                        .push(*id);
                }
            }
        }
        by_schedule
    }

    async fn cancel_run(&self, run_id: i64, reason: CancelReason) {
        match self.running.get(&run_id) {
            Some(handle) => handle.cancel(reason),
            None => {
                if let Err(err) = self.ledger.request_cancel(run_id).await {
                    tracing::warn!(run = run_id, error = %err, "cannot ask another node to cancel a run");
                }
            }
        }
    }

    /// Pending runs (manual triggers, retries), cancel requests, pauses.
    async fn poll_ledger(&mut self) {
        if let Err(err) = self.refresh_paused().await {
            tracing::warn!(error = %err, "cannot read pause state");
        }
        match self.ledger.cancel_requests(&self.me).await {
            Ok(ids) => {
                for id in ids {
                    if let Some(handle) = self.running.get(&id) {
                        handle.cancel(CancelReason::Requested);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read cancel requests"),
        }
        if let Err(err) = self.claim_pending().await {
            tracing::warn!(error = %err, "cannot claim pending runs");
        }
    }

    async fn claim_pending(&mut self) -> Result<()> {
        let now = self.clock.now();
        let claimed = self.ledger.claim_pending(&self.me, now, 64).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let running = self.running_by_schedule().await;
        for run in claimed {
            let schedule = self
                .entries
                .get(&run.schedule_id)
                .map(|entry| entry.schedule.clone());
            let others: Vec<i64> = running
                .get(&run.schedule_id)
                .map(|ids| {
                    ids.iter()
                        .copied()
                        .filter(|other| *other != run.id)
                        .collect()
                })
                .unwrap_or_default();
            let overlap = schedule.as_ref().map_or(Overlap::Allow, |s| s.overlap);
            match decide_overlap(overlap, &others, run.force_overlap) {
                OverlapDecision::Skip(reason) => {
                    self.ledger
                        .settle_pending(run.id, RunStatus::Skipped, &reason, now)
                        .await?;
                    continue;
                }
                // The claimed row is already written (`running`, ours).
                OverlapDecision::Replace(others) => {
                    for other in others {
                        self.cancel_run(other, CancelReason::Replaced).await;
                    }
                }
                OverlapDecision::Start => {}
            }
            self.spawn(run);
        }
        Ok(())
    }

    async fn refresh_paused(&mut self) -> Result<()> {
        let states = self.ledger.schedule_states().await?;
        let now = self.clock.now();
        let paused: HashSet<String> = states
            .iter()
            .filter(|(_, state)| state.paused)
            .map(|(id, _)| id.clone())
            .collect();
        let resumed: Vec<String> = self.paused.difference(&paused).cloned().collect();
        self.paused = paused;
        for id in resumed {
            // Resume from now: slots while paused are not owed.
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.cursor = entry.cursor.max(now);
                self.next_generation += 1;
                entry.generation = self.next_generation;
            }
            self.push_next(&id);
        }
        Ok(())
    }

    async fn heartbeat(&mut self) {
        if let Err(err) = self.ledger.heartbeat(&self.me, self.clock.now()).await {
            tracing::warn!(error = %err, "cannot write heartbeat");
        }
        self.reap().await;
    }

    /// Marks the runs of dead instances `crashed`, enqueueing retries.
    async fn reap(&mut self) {
        let entries: HashMap<String, Arc<Schedule>> = self
            .entries
            .iter()
            .map(|(id, entry)| (id.clone(), entry.schedule.clone()))
            .collect();
        let now = self.clock.now();
        let alerting = self.executor.alerting.clone();
        let follow_up = move |run: &Run| {
            let Some(schedule) = entries.get(&run.schedule_id) else {
                return CrashFollowUp::default();
            };
            let retry = retry_after(schedule, run, RunStatus::Crashed, now);
            // Out of retries: page like any run that failed for good.
            let page = match (&alerting, &retry) {
                (Some(alerting), None) if !run.dry_run => {
                    let end = RunEnd::failed(
                        RunStatus::Crashed,
                        run.error.clone().unwrap_or_else(|| "crashed".into()),
                    );
                    Some(
                        CrashPage {
                            policy: alerting.policy.clone(),
                            finding: run_failed_finding(run, &end),
                            named_route: schedule.route.clone(),
                            node: alerting.node.clone(),
                        }
                        .of(run),
                    )
                }
                _ => None,
            };
            CrashFollowUp { retry, page }
        };
        let ttl = chrono::Duration::from_std(self.settings.node_ttl)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
        match self
            .ledger
            .reap_dead_instances(&self.me, now, ttl, &follow_up)
            .await
        {
            Ok(dead) => {
                if let (Some(alerting), false) = (&self.executor.alerting, dead.is_empty()) {
                    alerting.outbox.notify_one();
                }
                for instance in dead {
                    for run in &instance.crashed_runs {
                        if instance.node == self.me.node {
                            let key = super::orphans::run_key(&instance.id, run.id);
                            let killed = super::orphans::kill_run_processes(&key);
                            if !killed.is_empty() {
                                tracing::warn!(run = run.id, pids = ?killed, "killed processes the crashed run left behind");
                            }
                        }
                        tracing::warn!(schedule = %run.schedule_id, run = run.id, node = %instance.node,
                            pid = instance.pid, "run crashed with its process");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot reap dead instances"),
        }
    }

    /// Each schedule's retention policy, for the pruning task.
    fn prune_plan(&self) -> Vec<(String, HistoryPolicy)> {
        self.entries
            .iter()
            .map(|(id, entry)| {
                (
                    id.clone(),
                    entry.schedule.history.unwrap_or(self.settings.history),
                )
            })
            .collect()
    }

    /// Stop firing; let running jobs finish within the grace period, then
    /// cancel them; every run ends recorded, never left `running`.
    /// Heartbeats go on meanwhile: the grace period may outlast the node
    /// TTL, and a silent node's runs would be reaped and retried elsewhere
    /// while they are still finishing here.
    async fn drain(mut self, mut heartbeat: tokio::time::Interval) {
        tracing::info!(running = self.running.len(), grace = ?self.settings.shutdown_grace, "shutting down");
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = self.tasks.join_next() => self.run_finished(done),
                _ = heartbeat.tick() => {
                    if let Err(err) = self.ledger.heartbeat(&self.me, self.clock.now()).await {
                        tracing::warn!(error = %err, "cannot write heartbeat");
                    }
                }
                () = &mut grace => {
                    for handle in self.running.values() {
                        handle.cancel(CancelReason::Shutdown);
                    }
                    while let Some(done) = self.tasks.join_next().await {
                        self.run_finished(done);
                    }
                    break;
                }
            }
        }
        tracing::info!("scheduling stopped; every run recorded");
    }
}

fn slot_row(
    schedule: &Schedule,
    slot: DateTime<Utc>,
    trigger: Trigger,
    status: RunStatus,
    error: Option<String>,
) -> NewRun {
    NewRun {
        schedule_id: schedule.id.clone(),
        job: schedule.job.clone(),
        scheduled_for: slot,
        attempt: 1,
        trigger,
        status,
        not_before: None,
        overrides: None,
        dry_run: false,
        force_overlap: false,
        error,
    }
}

/// Whether a reload left a schedule's timing and job untouched.
fn same_schedule(a: &Schedule, b: &Schedule) -> bool {
    a.cron == b.cron
        && a.timezone == b.timezone
        && a.enabled == b.enabled
        && a.jitter == b.jitter
        && a.job == b.job
        && a.params == b.params
        && a.manual_params == b.manual_params
        && a.overlap == b.overlap
        && a.timeout == b.timeout
        && a.retries == b.retries
        && a.catchup == b.catchup
}

/// Deletes old finished runs every `interval`, per schedule policy.
async fn prune_history(
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    plan: watch::Receiver<Vec<(String, HistoryPolicy)>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60).min(interval),
        interval,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = clock.now();
        let schedules = plan.borrow().clone();
        for (id, policy) in schedules {
            let cutoff = policy
                .max_age
                .and_then(|age| chrono::Duration::from_std(age.0).ok())
                .map(|age| now - age);
            match ledger.prune(&id, policy.keep_last, cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(schedule = %id, deleted, "pruned run history"),
                Err(err) => {
                    tracing::warn!(schedule = %id, error = %err, "cannot prune run history")
                }
            }
        }
    }
}
