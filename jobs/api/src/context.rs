use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::clock::Clock;
use crate::effects::Effects;
use crate::fence::ProcessFence;
use crate::state::{JobState, StateWrite};

/// Everything a job may know about the run it is executing.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The ledger row of this run.
    pub run_id: i64,
    pub schedule_id: String,
    /// The nominal slot this run serves (for manual runs: when it was asked for).
    pub scheduled_for: DateTime<Utc>,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    /// When the runner will cancel the run for taking too long, if ever.
    pub deadline: Option<DateTime<Utc>>,
    /// Do everything except side effects; report what would have happened.
    pub dry_run: bool,
    /// Fires on timeout, shutdown, replacement or operator cancel.
    pub cancel: CancellationToken,
    /// Unique across runners and ledgers. A job that starts processes
    /// exports it to them as `PATROL_RUN_KEY`, so that if the runner dies,
    /// the runner that reaps the run can find and stop them.
    pub run_key: String,
    /// What earlier runs of this schedule kept, and this run's own
    /// checkpoints (see [`crate::StateWrite`]).
    pub state: JobState,
    /// Where [`checkpoint`](Self::checkpoint) commits; clone it to
    /// checkpoint from a task of the job's own.
    pub checkpoints: Checkpoints,
    /// Every side effect outside the ledger goes through here: recorded,
    /// not performed, on a dry run (see [`crate::effects`]).
    pub effects: Effects,
    /// The runner's clock: the time a job acts on comes from here, never
    /// from the machine directly, so tests can set it.
    pub clock: Arc<dyn Clock>,
    /// How a job starts processes: through here, so they end when the
    /// runner loses its lease or dies (see [`crate::fence`]).
    pub fence: ProcessFence,
}

impl RunContext {
    /// The current time, as the runner's clock tells it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Commits `writes` to the schedule's state now, in their own
    /// transaction, while the run goes on (see [`crate::checkpoint`]):
    /// call it once the work they cover is done. A dry run's checkpoints
    /// are dropped. The report's `state` still applies last, at the end.
    pub async fn checkpoint(&self, writes: Vec<StateWrite>) -> Result<(), CheckpointError> {
        self.checkpoints.commit(writes).await
    }
}
