//! Jobs' side effects outside the ledger (`patrol_job_api::effects`): the
//! intent written before an effect is performed, the outcome after, one
//! row per (schedule, slot, effect key). A retried attempt of the slot
//! finds the `done` row and does not perform the effect again.

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use patrol_job_api::effects::{
    EffectLog, EffectLogError, EffectOutcome, EffectSlot, Intended, Intent,
};
use patrol_job_api::secret::redact;
use sqlx::Row;

use super::model::{from_millis, to_millis};
use super::runs::OWNER_LIVE;
use super::Ledger;

/// One effect as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectRow {
    pub id: i64,
    pub schedule_id: String,
    pub scheduled_for: DateTime<Utc>,
    pub effect_key: String,
    pub kind: String,
    pub description: String,
    /// The run (attempt) that recorded it last.
    pub run_id: i64,
    pub attempt: u32,
    /// `intended`, `done` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub intended_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The ledger as a run's [`EffectLog`].
#[derive(Clone)]
pub struct LedgerEffectLog {
    ledger: Ledger,
}

impl LedgerEffectLog {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }
}

fn log_err(err: impl std::fmt::Display) -> EffectLogError {
    EffectLogError(err.to_string())
}

#[async_trait]
impl EffectLog for LedgerEffectLog {
    async fn record_intent(
        &self,
        slot: &EffectSlot,
        intent: &Intent,
        at: DateTime<Utc>,
    ) -> Result<Intended, EffectLogError> {
        let mut tx = self.ledger.pool().begin().await.map_err(log_err)?;
        // Fenced like a run's end: only while the run is still running
        // under a live owner (a node that was taken over, e.g. woken from
        // a freeze, performs nothing). The no-op update locks the row, so
        // a reaper settling the run waits for the intent or wins first.
        let held = sqlx::query(&format!(
            "UPDATE runs SET status = 'running' WHERE id = $1 AND status = 'running' AND {OWNER_LIVE}"
        ))
        .bind(slot.run_id)
        .execute(&mut *tx)
        .await
        .map_err(log_err)?
        .rows_affected();
        if held == 0 {
            tx.rollback().await.map_err(log_err)?;
            return Err(EffectLogError(format!(
                "run {} is no longer held by this node (settled elsewhere, or its node was taken over): nothing is performed",
                slot.run_id
            )));
        }
        // A row of an earlier attempt that is not `done` (it failed, or
        // the attempt died before recording how it ended) is taken over;
        // a `done` one is left alone and nothing comes back.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO effects (schedule_id, scheduled_for, effect_key, kind, description, \
             run_id, attempt, status, error, intended_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'intended', NULL, $8, NULL) \
             ON CONFLICT (schedule_id, scheduled_for, effect_key) DO UPDATE SET \
             kind = excluded.kind, description = excluded.description, run_id = excluded.run_id, \
             attempt = excluded.attempt, status = 'intended', error = NULL, \
             intended_at = excluded.intended_at, finished_at = NULL \
             WHERE effects.status <> 'done' \
             RETURNING id",
        )
        .bind(slot.schedule_id.clone())
        .bind(to_millis(slot.scheduled_for))
        // A job's words (a command line, a URL) may hold a credential; the
        // key scrubbed the same way every time stays the effect's identity.
        .bind(redact(&intent.key))
        .bind(intent.kind.clone())
        .bind(redact(&intent.description))
        .bind(slot.run_id)
        .bind(i64::from(slot.attempt))
        .bind(to_millis(at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(log_err)?;
        tx.commit().await.map_err(log_err)?;
        Ok(match id {
            Some(id) => Intended::Proceed(id),
            None => Intended::DoneBefore,
        })
    }

    async fn record_outcome(
        &self,
        id: i64,
        outcome: &EffectOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), EffectLogError> {
        let (status, error) = match outcome {
            EffectOutcome::Done => ("done", None),
            EffectOutcome::Failed(error) => ("failed", Some(redact(error))),
        };
        let updated = sqlx::query(
            "UPDATE effects SET status = $1, error = $2, finished_at = $3 \
             WHERE id = $4 AND status = 'intended'",
        )
        .bind(status)
        .bind(error)
        .bind(to_millis(at))
        .bind(id)
        .execute(self.ledger.pool())
        .await
        .map_err(log_err)?
        .rows_affected();
        if updated == 0 {
            return Err(EffectLogError(format!(
                "effect {id} is no longer waiting for its outcome"
            )));
        }
        Ok(())
    }
}

impl Ledger {
    /// The effects of one slot of a schedule, oldest first.
    pub async fn slot_effects(
        &self,
        schedule_id: &str,
        scheduled_for: DateTime<Utc>,
    ) -> Result<Vec<EffectRow>> {
        let rows = sqlx::query(
            "SELECT id, schedule_id, scheduled_for, effect_key, kind, description, run_id, \
             attempt, status, error, intended_at, finished_at FROM effects \
             WHERE schedule_id = $1 AND scheduled_for = $2 ORDER BY id",
        )
        .bind(schedule_id)
        .bind(to_millis(scheduled_for))
        .fetch_all(self.pool())
        .await
        .context("reading effects")?;
        rows.iter()
            .map(|row| {
                let attempt: i64 = row.try_get(7)?;
                let finished_at: Option<i64> = row.try_get(11)?;
                Ok::<_, anyhow::Error>(EffectRow {
                    id: row.try_get(0)?,
                    schedule_id: row.try_get(1)?,
                    scheduled_for: from_millis(row.try_get(2)?),
                    effect_key: row.try_get(3)?,
                    kind: row.try_get(4)?,
                    description: row.try_get(5)?,
                    run_id: row.try_get(6)?,
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    status: row.try_get(8)?,
                    error: row.try_get(9)?,
                    intended_at: from_millis(row.try_get(10)?),
                    finished_at: finished_at.map(from_millis),
                })
            })
            .collect()
    }

    /// Deletes the effects of `schedule_id` whose slot has no run left
    /// (pruned): a slot still in the ledger keeps them, so its retries do
    /// not repeat what was done.
    pub(super) async fn prune_effects(&self, schedule_id: &str) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM effects WHERE schedule_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM runs WHERE runs.schedule_id = effects.schedule_id \
             AND runs.scheduled_for = effects.scheduled_for)",
        )
        .bind(schedule_id)
        .execute(self.pool())
        .await
        .context("pruning effects")?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use chrono::TimeZone;
    use patrol_job_api::effects::{kind, EffectStatus};
    use patrol_job_api::{Effects, Performed};

    use super::*;
    use crate::ledger::tests::ledgers_for;

    fn slot(minute: u32, attempt: u32) -> EffectSlot {
        EffectSlot {
            schedule_id: "remediate".into(),
            scheduled_for: Utc.with_ymd_and_hms(2026, 12, 7, 2, minute, 0).unwrap(),
            run_id: i64::from(minute * 10 + attempt),
            attempt,
        }
    }

    /// The effects of a run of `slot` that is `running` under a live
    /// instance (`slot.run_id` is set to its row).
    async fn effects(ledger: &Ledger, mut slot: EffectSlot) -> Effects {
        slot.run_id = held_run(ledger, &slot).await;
        Effects::recorded(Arc::new(LedgerEffectLog::new(ledger.clone())), slot)
    }

    async fn held_run(ledger: &Ledger, slot: &EffectSlot) -> i64 {
        use crate::ledger::{Instance, NewRun, RunStatus, Trigger};
        let owner = Instance {
            id: format!("effects-{}", slot.attempt),
            node: "node-a".into(),
        };
        // Registered once per attempt number (a second time is a no-op error).
        let _ = ledger
            .register_instance(&owner, "serve", Utc::now(), chrono::Duration::minutes(5))
            .await;
        let run = NewRun {
            schedule_id: slot.schedule_id.clone(),
            job: "command".into(),
            scheduled_for: slot.scheduled_for,
            attempt: slot.attempt,
            trigger: Trigger::Schedule,
            status: RunStatus::Running,
            not_before: None,
            overrides: None,
            dry_run: false,
            force_overlap: false,
            error: None,
        };
        ledger
            .insert_runs(&[run], &owner, Utc::now())
            .await
            .unwrap()[0]
            .unwrap()
    }

    fn restart() -> Intent {
        Intent::new(kind::COMMAND, "command:restart web", "run restart web")
    }

    #[tokio::test]
    async fn the_intent_is_in_the_ledger_before_the_effect_and_the_outcome_after() {
        for (_dir, ledger) in ledgers_for("patrol_effects_order").await {
            let run = effects(&ledger, slot(0, 1)).await;
            let during = run
                .perform(restart(), async {
                    ledger
                        .slot_effects("remediate", slot(0, 1).scheduled_for)
                        .await
                })
                .await
                .unwrap();
            let Performed::Done(during) = during else {
                panic!("performed: {during:?}");
            };
            assert_eq!(during.len(), 1, "{:?}", ledger.backend());
            assert_eq!(
                (during[0].status.as_str(), during[0].finished_at),
                ("intended", None)
            );
            assert_eq!(during[0].effect_key, "command:restart web");
            let after = ledger
                .slot_effects("remediate", slot(0, 1).scheduled_for)
                .await
                .unwrap();
            assert_eq!(after[0].status, "done");
            assert!(after[0].finished_at.is_some());
            assert_eq!(after[0].attempt, 1);
        }
    }

    #[tokio::test]
    async fn a_run_whose_node_was_taken_over_performs_nothing() {
        for (_dir, ledger) in ledgers_for("patrol_effects_fenced").await {
            let run = effects(&ledger, slot(0, 1)).await;
            // Another node found this one dead (a freeze, a partition) and
            // marked it stopped; its run goes on here for a moment.
            let owner = crate::ledger::Instance {
                id: "effects-1".into(),
                node: "node-a".into(),
            };
            assert!(ledger
                .stop_instance(&owner, Utc::now(), "marked dead by node-b")
                .await
                .unwrap());
            let ran = AtomicUsize::new(0);
            let performed = run
                .perform(restart(), async {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(())
                })
                .await;
            assert!(performed.is_err(), "{:?}: {performed:?}", ledger.backend());
            assert_eq!(ran.load(Ordering::SeqCst), 0, "the effect was performed");
            assert!(ledger
                .slot_effects("remediate", slot(0, 1).scheduled_for)
                .await
                .unwrap()
                .is_empty());
        }
    }

    #[tokio::test]
    async fn a_retry_skips_what_its_slot_did_and_another_slot_does_it_again() {
        for (_dir, ledger) in ledgers_for("patrol_effects_retry").await {
            let ran = AtomicUsize::new(0);
            let counter = &ran;
            let act = move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            };
            let first = effects(&ledger, slot(0, 1)).await;
            first.perform(restart(), act()).await.unwrap();
            let failing = Intent::new(kind::HTTP, "http:POST /scale", "scale to 3");
            let failed = first
                .perform(failing.clone(), async { Err::<(), _>("HTTP 503") })
                .await;
            assert!(failed.is_err());

            let retry = effects(&ledger, slot(0, 2)).await;
            let again = retry.perform(restart(), act()).await.unwrap();
            assert_eq!(again, Performed::DoneBefore, "{:?}", ledger.backend());
            let redone = retry
                .perform(failing, async { Ok::<_, String>(()) })
                .await
                .unwrap();
            assert_eq!(redone, Performed::Done(()));
            assert_eq!(ran.load(Ordering::SeqCst), 1, "not performed twice");
            let statuses: Vec<EffectStatus> = retry.records().iter().map(|r| r.status).collect();
            assert_eq!(statuses, [EffectStatus::DoneBefore, EffectStatus::Done]);
            let rows = ledger
                .slot_effects("remediate", slot(0, 1).scheduled_for)
                .await
                .unwrap();
            let scale = rows.iter().find(|row| row.effect_key == "http:POST /scale");
            assert_eq!(
                scale.map(|row| (row.status.as_str(), row.attempt, row.error.clone())),
                Some(("done", 2, None)),
                "the retry took the failed row over: {rows:?}"
            );

            let next = effects(&ledger, slot(5, 1)).await;
            assert_eq!(
                next.perform(restart(), act()).await.unwrap(),
                Performed::Done(())
            );
            assert_eq!(ran.load(Ordering::SeqCst), 2);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_threads_record_through_the_ledger() {
        for (dir, ledger) in ledgers_for("patrol_effects_blocking").await {
            let run = effects(&ledger, slot(0, 1)).await;
            let path = dir.path().join("out/pack.json");
            let written = {
                let (run, path) = (run.clone(), path.clone());
                tokio::task::spawn_blocking(move || run.write_file_blocking(&path, b"{}"))
                    .await
                    .unwrap()
                    .unwrap()
            };
            assert_eq!(written, Performed::Done(()));
            assert_eq!(std::fs::read(&path).unwrap(), b"{}");
            let rows = ledger
                .slot_effects("remediate", slot(0, 1).scheduled_for)
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(
                (rows[0].kind.as_str(), rows[0].status.as_str()),
                ("write_file", "done")
            );
        }
    }
}
