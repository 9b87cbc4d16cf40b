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
use super::executor::{
    retry_after, run_failed_finding, CancelReason, Executor, Recorded, RunHandle,
};
use super::lease::{chrono_ttl, renewal_period, Lease, LeaseView, Standing};
use super::plan::{decide_overlap, plan_due_slots, OverlapDecision, Phase};
use super::spread::jitter;
use crate::alerting::record::CrashPage;
use crate::config::{HistoryPolicy, Overlap, Schedule, ScheduleSet};
use crate::ledger::{
    CrashFollowUp, HostIdentity, Instance, Ledger, NewRun, Run, RunEnd, RunStatus, Trigger,
};
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
    /// The process guard that keeps jobs' processes within this node's
    /// lease (the patrol binary); `None` starts them directly (tests).
    pub guard: Option<std::path::PathBuf>,
}

/// Longest a ledger step of the loop (polling, reaping) may hold it up: a
/// database that does not answer must not stop fires or lease checks.
const LOOP_STEP_LIMIT: Duration = Duration::from_secs(5);

/// How long a retry that its schedule's overlap rule holds back waits
/// before it asks again.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// Whether a catch-up run that overlap would skip should be asked about
/// again instead: for up to `node_ttl` from the first time it was put off
/// (`put_off` remembers when). By then every live node has recorded the
/// ends it held back during an outage, and a dead node's runs are being
/// reaped.
fn put_off_catch_up(
    put_off: &mut HashMap<String, DateTime<Utc>>,
    id: &str,
    fell_behind: bool,
    now: DateTime<Utc>,
    node_ttl: Duration,
) -> bool {
    if !fell_behind {
        return false;
    }
    let limit = chrono::Duration::from_std(node_ttl).unwrap_or_default();
    let since = *put_off.entry(id.to_string()).or_insert(now);
    now - since < limit
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
    tasks: JoinSet<(i64, Recorded)>,
    /// This instance's lease while it holds one; `None` before it
    /// registered, or after it was taken over until it registers anew.
    lease: Option<Lease>,
    /// The lease's changes, as the loop has seen them.
    lease_events: Option<LeaseView>,
    /// The runs were stopped for a lost lease; cleared once it renews.
    fenced: bool,
    /// A write may have reached the ledger without its answer reaching us:
    /// look for `running` rows of ours that nothing here runs.
    adopt_needed: bool,
    /// Schedules whose catch-up run `handle_due` put off (already queued).
    deferred: HashSet<String>,
    /// Since when each schedule's catch-up run has been put off.
    catch_up_put_off: HashMap<String, DateTime<Utc>>,
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
                fence: patrol_job_api::ProcessFence::none(),
                lease: None,
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
            deferred: HashSet::new(),
            catch_up_put_off: HashMap::new(),
            tasks: JoinSet::new(),
            lease: None,
            lease_events: None,
            fenced: false,
            adopt_needed: false,
        }
    }

    /// Runs until `shutdown` flips to true, then drains. `schedules` carries
    /// each new valid schedule set (file reloads). Returns the instance's
    /// lease, still renewed: the caller stops the instance with
    /// [`Ledger::stop_instance`] once nothing else (the delivery worker)
    /// works under its name, or another node would take that work over
    /// while it is still being done.
    pub async fn run(
        mut self,
        mut schedules: watch::Receiver<Arc<ScheduleSet>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Lease>> {
        let lease = Lease::register(
            &self.ledger,
            self.me.clone(),
            "serve",
            self.clock.clone(),
            self.settings.node_ttl,
        )
        .await?;
        self.hold(lease);
        self.refresh_paused().await?;
        let initial = schedules.borrow_and_update().clone();
        self.start_schedules(&initial).await?;
        tracing::info!(node = %self.me.node, instance = %self.me.id, schedules = initial.len(), "patrol is scheduling");

        let mut poll = tokio::time::interval(self.settings.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reap_ticks = tokio::time::interval(renewal_period(self.settings.node_ttl));
        reap_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pruning touches every schedule: off the loop, so fires never wait on it.
        let (prune_tx, prune_rx) = watch::channel(self.prune_plan());
        let pruner = tokio::spawn(prune_history(
            self.ledger.clone(),
            self.clock.clone(),
            prune_rx,
            self.settings.prune_interval,
        ));

        let mut taken: Option<String> = None;
        loop {
            let may_start = self.may_start();
            let wake = match may_start {
                true => self.time_until_next_fire(),
                // Without the lease nothing starts: look again shortly.
                false => self.time_until_next_fire().max(Duration::from_millis(250)),
            };
            if wake.is_zero() {
                // Overdue: fire before anything else gets a turn.
                self.fire_due().await;
                continue;
            }
            let lost_at = self.lease_events.as_ref().map(LeaseView::lost_at);
            let watch_lease = self.lease_events.is_some();
            let may_fence = !self.fenced && !self.running.is_empty() && lost_at.is_some();
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
                _ = poll.tick() => {
                    if tokio::time::timeout(LOOP_STEP_LIMIT, self.poll_ledger()).await.is_err() {
                        tracing::warn!("the ledger did not answer a poll in time");
                        self.adopt_needed = true;
                    }
                }
                () = wait_lease_change(&mut self.lease_events), if watch_lease => {
                    if let Some(reason) = self.lease_changed() {
                        taken = Some(reason);
                        break;
                    }
                }
                () = sleep_until(lost_at), if may_fence => self.self_fence(),
                _ = reap_ticks.tick() => {
                    if tokio::time::timeout(LOOP_STEP_LIMIT, self.reap()).await.is_err() {
                        tracing::warn!("the ledger did not answer in time while looking for dead nodes");
                    }
                }
            }
        }
        pruner.abort();
        if let Some(reason) = taken {
            // Its runs are someone else's now: stop them at once (their
            // ends are refused), and leave; a supervisor starts a new
            // instance, which shares nothing with this one.
            for handle in self.running.values() {
                handle.cancel(CancelReason::LeaseLost);
            }
            self.wait_for_ends().await;
            anyhow::bail!(
                "this instance ({}) was taken over by another node ({reason}); it stops, and a restart registers a new instance",
                self.me.id
            );
        }
        self.drain().await;
        Ok(self.lease.take())
    }

    /// Holds `lease`: runs started from now on are fenced by it.
    fn hold(&mut self, lease: Lease) {
        let view = lease.view();
        self.executor.fence = view.fence(self.settings.guard.clone());
        self.executor.lease = Some(view);
        self.me = lease.instance().clone();
        self.lease_events = Some(lease.view());
        self.lease = Some(lease);
        self.fenced = false;
    }

    /// Whether this node may start runs: it holds its lease.
    fn may_start(&self) -> bool {
        !self.fenced
            && self
                .lease
                .as_ref()
                .is_some_and(|lease| lease.view().standing() == Standing::Held)
    }

    /// Follows the lease: `Some(reason)` once this instance was taken over.
    fn lease_changed(&mut self) -> Option<String> {
        let standing = self.lease.as_ref().map(|lease| lease.view().standing())?;
        match standing {
            Standing::Taken(reason) => {
                tracing::error!(instance = %self.me.id, node = %self.me.node, reason = %reason, running = self.running.len(),
                    "this instance was taken over by another node; stopping its runs (their ends are the taker's to record)");
                Some(reason)
            }
            Standing::Held if self.fenced => {
                tracing::info!(instance = %self.me.id, "lease renewed; starting runs again");
                self.fenced = false;
                None
            }
            Standing::Held | Standing::Stale | Standing::Lost => None,
        }
    }

    /// The lease ran out unrenewed: stop every run here before another
    /// node may retry it.
    fn self_fence(&mut self) {
        let Some(standing) = self.lease.as_ref().map(|lease| lease.view().standing()) else {
            return;
        };
        if !matches!(standing, Standing::Lost | Standing::Taken(_)) {
            return;
        }
        tracing::error!(instance = %self.me.id, running = self.running.len(), ttl = ?self.settings.node_ttl,
            "cannot renew this node's lease: stopping its runs so that no other node runs them twice");
        for handle in self.running.values() {
            handle.cancel(CancelReason::LeaseLost);
        }
        self.fenced = true;
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
        if !self.may_start() {
            return;
        }
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
        let handled = self.handle_due(due, now).await;
        // Taken whether or not the batch was written: a deferred catch-up is
        // already queued again, and a stale entry would later keep its
        // schedule from being queued at all.
        let deferred = std::mem::take(&mut self.deferred);
        if handled {
            for id in ids {
                if !deferred.contains(&id) {
                    self.push_next(&id);
                }
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
            let first_missed = rows.len();
            let fell_behind = !plan.missed.is_empty();
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
                    OverlapDecision::Skip(_)
                        if put_off_catch_up(
                            &mut self.catch_up_put_off,
                            &id,
                            fell_behind,
                            now,
                            self.settings.node_ttl,
                        ) =>
                    {
                        // Fell behind (the ledger was out, most likely) and
                        // the run in the way may only be waiting for its end
                        // to be recorded: ask again shortly rather than skip
                        // the run that covers every missed slot.
                        rows.truncate(first_missed);
                        let retry_at =
                            now + chrono::Duration::from_std(RETRY_WAIT).unwrap_or_default();
                        self.heap
                            .push(Reverse((retry_at, id.clone(), entry.generation)));
                        self.deferred.insert(id);
                        continue;
                    }
                    OverlapDecision::Skip(reason) => {
                        // The slots coalesced into this one are not covered
                        // by a run either: say so, not "coalesced into".
                        for row in &mut rows[first_missed..] {
                            if row
                                .error
                                .as_deref()
                                .is_some_and(|e| e.contains("coalesced into"))
                            {
                                row.error = Some(format!(
                                    "patrol fell behind, and the run of {} that would have covered this slot was skipped ({reason})",
                                    slot.to_rfc3339()
                                ));
                            }
                        }
                        rows.push(slot_row(
                            &schedule,
                            slot,
                            trigger,
                            RunStatus::Skipped,
                            Some(reason),
                        ))
                    }
                    OverlapDecision::Replace(old) => {
                        to_replace.insert(id.clone(), old);
                        rows.push(slot_row(&schedule, slot, trigger, RunStatus::Running, None));
                    }
                    OverlapDecision::Start => {
                        rows.push(slot_row(&schedule, slot, trigger, RunStatus::Running, None));
                    }
                }
            }
            self.catch_up_put_off.remove(&id);
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
        let written = tokio::time::timeout(
            LOOP_STEP_LIMIT,
            self.ledger.insert_runs(&rows, &self.me, now),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {LOOP_STEP_LIMIT:?}")));
        let ids = match written {
            Ok(ids) => ids,
            Err(err) => {
                // Nothing was started. Rewind so the slots are planned again
                // once the ledger answers: nothing runs unrecorded.
                tracing::error!(error = %err, slots = rows.len(), "cannot write due slots to the ledger; retrying in 1s");
                // The write may have gone through with its answer lost.
                self.adopt_needed = true;
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
            let recorded = executor.execute(run, schedule, handle).await;
            (id, recorded)
        });
    }

    /// Logs what the ledger now holds for the run, not what the job said.
    fn run_finished(&mut self, done: Result<(i64, Recorded), tokio::task::JoinError>) {
        match done {
            Ok((id, recorded)) => {
                if let Some(handle) = self.running.remove(&id) {
                    let schedule = &handle.schedule_id;
                    match recorded {
                        Recorded::Ended(status) => {
                            tracing::info!(%schedule, run = id, %status, "run ended")
                        }
                        Recorded::SettledElsewhere(status) => {
                            tracing::warn!(%schedule, run = id, job_status = %status,
                            "run ended here but the ledger had already settled it elsewhere; nothing recorded by this node")
                        }
                        Recorded::NotRecorded(status) => {
                            tracing::error!(%schedule, run = id, job_status = %status,
                            "run ended but its end could not be recorded; the node that takes this one's lease over ends it")
                        }
                    }
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
        let running = tokio::time::timeout(LOOP_STEP_LIMIT, self.ledger.running_runs())
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {LOOP_STEP_LIMIT:?}")));
        match running {
            Ok(runs) => {
                for run in runs {
                    // Ours, with its job already stopped: the row is only
                    // waiting for its end to be recorded (after an outage).
                    if self.running.get(&run.id).is_some_and(RunHandle::job_ended) {
                        continue;
                    }
                    by_schedule.entry(run.schedule_id).or_default().push(run.id);
                }
            }
            Err(err) => {
                // Fall back to what this node knows.
                tracing::warn!(error = %err, "cannot read running runs; using this node's view");
                for (id, handle) in self
                    .running
                    .iter()
                    .filter(|(_, handle)| !handle.job_ended())
                {
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
            self.adopt_needed = true;
        }
        if self.adopt_needed && self.may_start() {
            match self.adopt_untracked_runs().await {
                Ok(()) => self.adopt_needed = false,
                Err(err) => tracing::warn!(error = %err, "cannot look for runs of ours to adopt"),
            }
        }
    }

    /// Starts the `running` rows this instance owns but does not run: a
    /// write (a slot's row, a claim) that reached the ledger while its
    /// answer did not. Without this they would stay `running` while the
    /// node lives, and hold their schedules up.
    async fn adopt_untracked_runs(&mut self) -> Result<()> {
        let ours = self.ledger.running_runs_of(&self.me).await?;
        for run in ours {
            if self.running.contains_key(&run.id) {
                continue;
            }
            tracing::warn!(schedule = %run.schedule_id, run = run.id,
                "found a run of ours in the ledger that was never started (its write's answer was lost); starting it");
            self.spawn(run);
        }
        Ok(())
    }

    async fn claim_pending(&mut self) -> Result<()> {
        if !self.may_start() {
            return Ok(());
        }
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
                // A retry finishes its slot: it waits for the other run to
                // end instead of leaving the slot without a success.
                OverlapDecision::Skip(reason) if run.trigger == Trigger::Retry => {
                    let not_before =
                        now + chrono::Duration::from_std(RETRY_WAIT).unwrap_or_default();
                    let waiting = format!("waiting: {reason}");
                    self.ledger
                        .release_claim(run.id, &self.me, not_before, &waiting)
                        .await?;
                    tracing::debug!(schedule = %run.schedule_id, run = run.id, reason = %reason, "retry waits for the schedule's other run");
                    continue;
                }
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

    /// Marks the runs of dead instances `crashed`, enqueueing retries.
    /// Only while this node's own lease is steady: after a database outage,
    /// every lease looks expired until its node had its chance to renew.
    async fn reap(&mut self) {
        let Some(view) = self.lease.as_ref().map(Lease::view) else {
            return;
        };
        if view.standing() != Standing::Held {
            return;
        }
        // A vanished process (on this host) is dead whatever the leases say.
        let judge_leases = view.may_reap();
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
        let ttl = chrono_ttl(self.settings.node_ttl);
        match self
            .ledger
            .reap_dead_instances(&self.me, now, ttl, judge_leases, &follow_up)
            .await
        {
            Ok(dead) => {
                if let (Some(alerting), false) = (&self.executor.alerting, dead.is_empty()) {
                    alerting.outbox.notify_one();
                }
                let here = HostIdentity::current();
                for instance in dead {
                    tracing::warn!(instance = %instance.id, node = %instance.node, host = %instance.host,
                        pid = instance.pid, reason = %instance.reason, runs = instance.crashed_runs.len(),
                        "marked an instance dead; its runs crashed");
                    for run in &instance.crashed_runs {
                        if here.sees(&instance.host, &instance.boot_id) {
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
    /// The lease is renewed meanwhile (its own task): the grace period may
    /// outlast the node TTL, and a silent node's runs would be reaped and
    /// retried elsewhere while they are still finishing here.
    async fn drain(&mut self) {
        tracing::info!(running = self.running.len(), grace = ?self.settings.shutdown_grace, "shutting down");
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = self.tasks.join_next() => self.run_finished(done),
                () = &mut grace => {
                    for handle in self.running.values() {
                        handle.cancel(CancelReason::Shutdown);
                    }
                    self.wait_for_ends().await;
                    break;
                }
            }
        }
        tracing::info!("scheduling stopped; every run recorded");
    }

    /// Waits for the cancelled runs to record their ends. A run whose end
    /// cannot be written (the database is gone) is waited for only while
    /// this node holds its lease: once it is lost, exiting is safe — the
    /// lease then expires for good and another node ends the rows.
    async fn wait_for_ends(&mut self) {
        let second = Duration::from_secs(1);
        let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
        loop {
            tokio::select! {
                done = self.tasks.join_next() => match done {
                    Some(done) => self.run_finished(done),
                    None => return,
                },
                _ = checks.tick() => {
                    let held = self.lease.as_ref().is_some_and(|lease| {
                        matches!(lease.view().standing(), Standing::Held | Standing::Stale)
                    });
                    if !held {
                        tracing::error!(running = self.tasks.len(),
                            "shutting down without this node's lease: the ends of its last runs were not recorded; another node ends them as crashed");
                        self.tasks.abort_all();
                        return;
                    }
                }
            }
        }
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

async fn wait_lease_change(view: &mut Option<LeaseView>) {
    match view {
        Some(view) => view.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
