//! Mid-run checkpoints: state writes a run commits while it goes on, so a
//! long run keeps its progress through a timeout, a crash or a `kill -9`
//! of the runner.
//!
//! A job calls [`RunContext::checkpoint`](crate::RunContext::checkpoint)
//! (or [`Checkpoints::commit`] on a clone of `ctx.checkpoints`, from a task
//! of its own) once the work the writes cover is done — a cursor after
//! the events before it are processed. The runner commits each checkpoint
//! in its own transaction, and only while the run is still `running` and
//! held by this runner (a run reaped or settled elsewhere gets
//! [`CheckpointError::NotHeld`], and nothing is written). Later reads of
//! `ctx.state` in the run see the values; the writes handed back in the
//! run's report are applied after them, at the run's end.
//!
//! On a dry run checkpoints are checked like a real run's and then kept
//! in memory only (counted as dropped in the run's details): the run's
//! later reads see them, as a real run's would, and no state changes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::state::{JobState, Layered, Overlay, StateWrite, MAX_STATE_KEY_LEN};

/// The run a checkpoint belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRun {
    pub schedule_id: String,
    pub run_id: i64,
    /// The runner instance holding the run: the ledger commits only while
    /// the run row is `running` under this instance.
    pub instance_id: String,
}

/// Why a checkpoint was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The run is no longer `running` under this runner (it was reaped as
    /// crashed, cancelled, or ended elsewhere): its progress is not ours
    /// to record any more.
    #[error("checkpoint not written: the run is no longer running under this runner")]
    NotHeld,
    /// The writes break a state rule (a key too long, a key the job does
    /// not declare); nothing of the checkpoint was written.
    #[error("checkpoint refused: {0}")]
    Refused(String),
    /// The ledger could not be written; nothing of the checkpoint was.
    #[error("checkpoint not written: {0}")]
    Unwritten(String),
}

/// Where a real run's checkpoints are committed (the runner's ledger;
/// [`MemoryState`](crate::MemoryState) in tests).
#[async_trait]
pub trait CheckpointLog: Send + Sync + 'static {
    /// Commits `writes` in one transaction (in order: a later write of a
    /// key wins), if `run` is still running under its instance.
    async fn commit(
        &self,
        run: &CheckpointRun,
        writes: &[StateWrite],
        at: DateTime<Utc>,
    ) -> Result<(), CheckpointError>;
}

/// What became of a run's checkpoints (kept in the run's details under
/// `checkpoints`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCounts {
    /// Checkpoints committed.
    pub committed: u64,
    /// State writes in them.
    pub writes: u64,
    /// Checkpoints not written (refused, not held, ledger error).
    pub failed: u64,
    /// Checkpoints of a dry run, checked and dropped.
    pub dropped_dry_run: u64,
}

impl CheckpointCounts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

enum Mode {
    /// Kept in `overlay`, if any, for the run's own reads.
    DryRun(Option<Arc<Overlay>>),
    Committed {
        log: Arc<dyn CheckpointLog>,
        run: CheckpointRun,
    },
}

struct Inner {
    mode: Mode,
    clock: Arc<dyn Clock>,
    counts: Mutex<CheckpointCounts>,
    /// Commits one at a time, in the order the job asked for them.
    order: tokio::sync::Mutex<()>,
}

/// The run's handle on its checkpoints; cheap to clone.
#[derive(Clone)]
pub struct Checkpoints(Arc<Inner>);

impl fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoints")
            .field("dry_run", &matches!(self.0.mode, Mode::DryRun(_)))
            .field("counts", &self.counts())
            .finish()
    }
}

impl Checkpoints {
    /// A dry run's: checked, counted, dropped.
    pub fn dry_run() -> Self {
        Self::with_mode(Mode::DryRun(None), Arc::new(SystemClock))
    }

    /// A dry run's over `state`: checked, counted, and kept in memory
    /// only; the returned state (the run's `ctx.state`) reads them over
    /// `state`.
    pub fn dry_run_over(state: JobState) -> (Self, JobState) {
        let overlay = Arc::new(Overlay::default());
        let layered = JobState::new(Arc::new(Layered {
            base: state,
            overlay: overlay.clone(),
        }));
        let checkpoints = Self::with_mode(Mode::DryRun(Some(overlay)), Arc::new(SystemClock));
        (checkpoints, layered)
    }

    /// A real run's: committed to `log` for `run`, timed by `clock`.
    pub fn committed(
        log: Arc<dyn CheckpointLog>,
        run: CheckpointRun,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_mode(Mode::Committed { log, run }, clock)
    }

    /// Committed to `log` for a run outside the runner (tests, tools).
    pub fn local(log: Arc<dyn CheckpointLog>) -> Self {
        Self::committed(
            log,
            CheckpointRun {
                schedule_id: "local".into(),
                run_id: 0,
                instance_id: "local".into(),
            },
            Arc::new(SystemClock),
        )
    }

    fn with_mode(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self(Arc::new(Inner {
            mode,
            clock,
            counts: Mutex::new(CheckpointCounts::default()),
            order: tokio::sync::Mutex::new(()),
        }))
    }

    /// Commits `writes` now, in their own transaction (see the module
    /// docs). An empty checkpoint does nothing.
    pub async fn commit(&self, writes: Vec<StateWrite>) -> Result<(), CheckpointError> {
        if writes.is_empty() {
            return Ok(());
        }
        let result = self.commit_checked(&writes).await;
        let mut counts = self.0.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match (&result, &self.0.mode) {
            (Ok(()), Mode::DryRun(_)) => counts.dropped_dry_run += 1,
            (Ok(()), Mode::Committed { .. }) => {
                counts.committed += 1;
                counts.writes += writes.len() as u64;
            }
            (Err(_), _) => counts.failed += 1,
        }
        result
    }

    async fn commit_checked(&self, writes: &[StateWrite]) -> Result<(), CheckpointError> {
        if let Some(bad) = writes.iter().find(|w| w.key.len() > MAX_STATE_KEY_LEN) {
            return Err(CheckpointError::Refused(format!(
                "job state key longer than {MAX_STATE_KEY_LEN} bytes: `{}…`",
                bad.key.chars().take(40).collect::<String>()
            )));
        }
        match &self.0.mode {
            Mode::DryRun(overlay) => {
                if let Some(overlay) = overlay {
                    overlay.apply(writes);
                }
                Ok(())
            }
            Mode::Committed { log, run } => {
                let _turn = self.0.order.lock().await;
                log.commit(run, writes, self.0.clock.now()).await
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> CheckpointCounts {
        *self.0.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{JobState, MemoryState};
    use crate::state_key::StateKey;

    const CURSOR: StateKey<u64> = StateKey::new("cursor");

    #[tokio::test]
    async fn committed_checkpoints_are_read_back_and_counted() {
        let store = Arc::new(MemoryState::default());
        let checkpoints = Checkpoints::local(store.clone());
        let state = JobState::new(store.clone());
        checkpoints
            .commit(vec![CURSOR.put(&1).unwrap()])
            .await
            .unwrap();
        checkpoints
            .commit(vec![CURSOR.put(&2).unwrap(), StateWrite::delete("old")])
            .await
            .unwrap();
        checkpoints.commit(Vec::new()).await.unwrap();
        assert_eq!(state.load(&CURSOR).await.unwrap(), Some(2));
        assert_eq!(
            checkpoints.counts(),
            CheckpointCounts {
                committed: 2,
                writes: 3,
                ..CheckpointCounts::default()
            }
        );
    }

    #[tokio::test]
    async fn a_dry_run_drops_checkpoints_after_checking_them() {
        let checkpoints = Checkpoints::dry_run();
        checkpoints
            .commit(vec![CURSOR.put(&1).unwrap()])
            .await
            .unwrap();
        let long = StateWrite::put("k".repeat(MAX_STATE_KEY_LEN + 1), b"1".to_vec());
        let refused = checkpoints.commit(vec![long]).await.unwrap_err();
        assert!(
            matches!(refused, CheckpointError::Refused(ref why) if why.contains("longer than")),
            "{refused}"
        );
        assert_eq!(
            checkpoints.counts(),
            CheckpointCounts {
                dropped_dry_run: 1,
                failed: 1,
                ..CheckpointCounts::default()
            }
        );
    }

    #[tokio::test]
    async fn a_dry_runs_reads_see_its_checkpoints_and_nothing_is_stored() {
        let store = Arc::new(MemoryState::default());
        store.apply(&[
            StateWrite::put("page/1", b"1".to_vec()),
            StateWrite::put("page/2", b"2".to_vec()),
            StateWrite::put("page/3", b"3".to_vec()),
            CURSOR.put(&1).unwrap(),
        ]);
        let (checkpoints, state) = Checkpoints::dry_run_over(JobState::new(store.clone()));
        let before = store.entries();
        checkpoints
            .commit(vec![
                CURSOR.put(&2).unwrap(),
                StateWrite::delete("page/1"),
                StateWrite::put("page/0", b"0".to_vec()),
                StateWrite::put("page/22", b"22".to_vec()),
            ])
            .await
            .unwrap();
        assert_eq!(state.load(&CURSOR).await.unwrap(), Some(2));
        assert_eq!(state.get("page/1").await.unwrap(), None);
        let keys = |page: Vec<(String, Vec<u8>)>| -> Vec<String> {
            page.into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(
            keys(state.scan("page/", None, 3).await.unwrap()),
            ["page/0", "page/2", "page/22"]
        );
        assert_eq!(
            keys(state.scan("page/", Some("page/2"), 10).await.unwrap()),
            ["page/22", "page/3"]
        );
        assert_eq!(store.entries(), before, "nothing stored");
        assert_eq!(checkpoints.counts().dropped_dry_run, 1);
    }

    #[tokio::test]
    async fn a_refused_checkpoint_writes_nothing() {
        let store = Arc::new(MemoryState::default());
        let checkpoints = Checkpoints::local(store.clone());
        let long = StateWrite::put("k".repeat(MAX_STATE_KEY_LEN + 1), b"1".to_vec());
        assert!(checkpoints
            .commit(vec![CURSOR.put(&5).unwrap(), long])
            .await
            .is_err());
        assert!(store.entries().is_empty());
    }
}
