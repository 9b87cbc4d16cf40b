//! Jobs' mid-run checkpoints (`patrol_job_api::checkpoint`): state writes
//! committed in their own transaction while the run goes on, fenced on
//! the run row: only a run still `running` under the instance that holds
//! it, while that instance was not marked stopped, may write, as only
//! such a run may record its end.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::{CheckpointError, CheckpointLog, CheckpointRun, StateWrite};

use super::job_state::write_job_state;
use super::runs::OWNER_LIVE;
use super::Ledger;

/// The ledger as a run's [`CheckpointLog`].
#[derive(Clone)]
pub struct LedgerCheckpointLog {
    ledger: Ledger,
}

impl LedgerCheckpointLog {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }
}

fn unwritten(err: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Unwritten(format!("{err:#}"))
}

#[async_trait]
impl CheckpointLog for LedgerCheckpointLog {
    async fn commit(
        &self,
        run: &CheckpointRun,
        writes: &[StateWrite],
        at: DateTime<Utc>,
    ) -> Result<(), CheckpointError> {
        let mut tx = self.ledger.pool().begin().await.map_err(unwritten)?;
        // A no-op update of the run row: it matches only while the run is
        // ours and running, and locks the row until the commit, so a
        // reaper settling the run waits for the checkpoint or wins first.
        let held = sqlx::query(&format!(
            "UPDATE runs SET status = 'running' WHERE id = $1 AND schedule_id = $2 \
             AND status = 'running' AND instance_id = $3 AND {OWNER_LIVE}"
        ))
        .bind(run.run_id)
        .bind(run.schedule_id.clone())
        .bind(run.instance_id.clone())
        .execute(&mut *tx)
        .await
        .map_err(unwritten)?
        .rows_affected();
        if held == 0 {
            tx.rollback().await.map_err(unwritten)?;
            return Err(CheckpointError::NotHeld);
        }
        write_job_state(
            &mut tx,
            self.ledger.backend(),
            &run.schedule_id,
            run.run_id,
            writes,
            at,
        )
        .await
        .map_err(unwritten)?;
        tx.commit().await.map_err(unwritten)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use patrol_job_api::{Checkpoints, JobState, StateKey, SystemClock};

    use super::*;
    use crate::ledger::tests::ledgers_for;
    use crate::ledger::{Instance, NewRun, RunEnd, RunStatus, ScheduleStateStore, Trigger};

    const CURSOR: StateKey<u64> = StateKey::new("cursor");

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 4, minute, 0).unwrap()
    }

    async fn running(ledger: &Ledger, instance: &str, minute: u32) -> CheckpointRun {
        let run = NewRun {
            schedule_id: "long".into(),
            job: "command".into(),
            scheduled_for: at(minute),
            attempt: 1,
            trigger: Trigger::Schedule,
            status: RunStatus::Running,
            not_before: None,
            overrides: None,
            dry_run: false,
            force_overlap: false,
            error: None,
        };
        let owner = Instance {
            id: instance.into(),
            node: "node-a".into(),
        };
        // Registered once per instance (again is a harmless duplicate).
        let _ = ledger
            .register_instance(&owner, "serve", at(minute), chrono::Duration::days(1))
            .await;
        let ids = ledger
            .insert_runs(&[run], &owner, at(minute))
            .await
            .unwrap();
        CheckpointRun {
            schedule_id: "long".into(),
            run_id: ids[0].unwrap(),
            instance_id: instance.into(),
        }
    }

    fn checkpoints(ledger: &Ledger, run: CheckpointRun) -> Checkpoints {
        Checkpoints::committed(
            Arc::new(LedgerCheckpointLog::new(ledger.clone())),
            run,
            Arc::new(SystemClock),
        )
    }

    #[tokio::test]
    async fn checkpoints_commit_during_the_run_and_the_end_applies_last() {
        for (_dir, ledger) in ledgers_for("patrol_checkpoints_commit").await {
            let run = running(&ledger, "i1", 0).await;
            let run_id = run.run_id;
            let handle = checkpoints(&ledger, run);
            let state = JobState::new(Arc::new(ScheduleStateStore::new(ledger.clone(), "long")));
            handle.commit(vec![CURSOR.put(&1).unwrap()]).await.unwrap();
            assert_eq!(
                state.load(&CURSOR).await.unwrap(),
                Some(1),
                "{:?}",
                ledger.backend()
            );
            handle.commit(vec![CURSOR.put(&2).unwrap()]).await.unwrap();
            assert_eq!(state.load(&CURSOR).await.unwrap(), Some(2));
            let end = RunEnd {
                status: RunStatus::Succeeded,
                summary: None,
                output: None,
                details: None,
                error: None,
            };
            assert!(ledger
                .finish_run(
                    run_id,
                    "i1",
                    &end,
                    None,
                    None,
                    &[CURSOR.put(&3).unwrap()],
                    at(1),
                )
                .await
                .unwrap());
            assert_eq!(state.load(&CURSOR).await.unwrap(), Some(3));
            assert_eq!(handle.counts().committed, 2);
        }
    }

    #[tokio::test]
    async fn a_run_settled_elsewhere_or_held_by_another_runner_cannot_checkpoint() {
        for (_dir, ledger) in ledgers_for("patrol_checkpoints_fenced").await {
            let state = JobState::new(Arc::new(ScheduleStateStore::new(ledger.clone(), "long")));
            // Reaped as crashed by another node while it ran.
            let reaped = running(&ledger, "i1", 0).await;
            let handle = checkpoints(&ledger, reaped.clone());
            handle.commit(vec![CURSOR.put(&1).unwrap()]).await.unwrap();
            assert!(ledger
                .settle_pending(reaped.run_id, RunStatus::Crashed, "instance died", at(1))
                .await
                .unwrap());
            let err = handle
                .commit(vec![CURSOR.put(&2).unwrap()])
                .await
                .unwrap_err();
            assert_eq!(err, CheckpointError::NotHeld, "{:?}", ledger.backend());
            assert_eq!(
                state.load(&CURSOR).await.unwrap(),
                Some(1),
                "the reaped run's checkpoint is not written"
            );
            assert_eq!((handle.counts().committed, handle.counts().failed), (1, 1));

            // Running, but under another instance than the one asking.
            let other = running(&ledger, "i2", 5).await;
            let impostor = checkpoints(
                &ledger,
                CheckpointRun {
                    instance_id: "i1".into(),
                    ..other
                },
            );
            assert_eq!(
                impostor.commit(vec![CURSOR.put(&9).unwrap()]).await,
                Err(CheckpointError::NotHeld)
            );
            assert_eq!(state.load(&CURSOR).await.unwrap(), Some(1));

            // Still `running`, but its instance was marked stopped (taken
            // over: a freeze, a partition) before the reaper got to the run.
            let frozen = running(&ledger, "i3", 10).await;
            let handle = checkpoints(&ledger, frozen);
            let owner = Instance {
                id: "i3".into(),
                node: "node-a".into(),
            };
            assert!(ledger
                .stop_instance(&owner, at(11), "marked dead by node-b")
                .await
                .unwrap());
            assert_eq!(
                handle.commit(vec![CURSOR.put(&7).unwrap()]).await,
                Err(CheckpointError::NotHeld)
            );
            assert_eq!(state.load(&CURSOR).await.unwrap(), Some(1));
        }
    }
}
