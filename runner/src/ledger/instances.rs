//! Which processes are alive. A run belongs to the instance that claimed
//! it; when that instance dies, its runs are marked `crashed`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::model::{from_millis, to_millis, Instance, NewRun, Run};
use super::runs::{decode_run, insert_pending, RunEndWrites, RUN_COLUMNS};
use super::Ledger;

/// What follows a crashed run, decided by the scheduler: a retry, or —
/// out of retries — a page, like any run that failed for good.
#[derive(Default)]
pub struct CrashFollowUp {
    pub retry: Option<NewRun>,
    /// The alert it raises, written with the crash.
    pub page: Option<Box<dyn RunEndWrites>>,
}

/// An instance found dead, with the runs it left `running`.
#[derive(Debug, Clone)]
pub struct DeadInstance {
    pub id: String,
    pub node: String,
    pub pid: i64,
    pub last_heartbeat: DateTime<Utc>,
    pub crashed_runs: Vec<Run>,
}

impl Ledger {
    pub async fn register_instance(
        &self,
        instance: &Instance,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO instances (id, node, pid, role, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(instance.id.clone())
        .bind(instance.node.clone())
        .bind(i64::from(std::process::id()))
        .bind(role)
        .bind(to_millis(now))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, instance: &Instance, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE id = $2")
            .bind(to_millis(now))
            .bind(instance.id.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn stop_instance(&self, instance: &Instance, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE instances SET stopped_at = $1 WHERE id = $2")
            .bind(to_millis(now))
            .bind(instance.id.clone())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether some `serve` instance other than `except` is alive
    /// (heartbeat within `ttl`).
    pub async fn live_server(
        &self,
        except: Option<&Instance>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE role = 'serve' AND stopped_at IS NULL \
             AND heartbeat_at >= $1 AND id <> $2",
        )
        .bind(to_millis(now - ttl))
        .bind(except.map_or(String::new(), |instance| instance.id.clone()))
        .fetch_one(self.pool())
        .await?;
        Ok(count > 0)
    }

    /// Finds instances that are gone — heartbeat older than `ttl`, or on
    /// this node with a process id that no longer exists — marks their
    /// `running` runs `crashed` and the instances stopped.
    ///
    /// `follow_up` decides, per crashed run, the retry to enqueue or the
    /// alert to raise; both are written in the same transaction as the
    /// crash, so none is lost.
    pub async fn reap_dead_instances(
        &self,
        me: &Instance,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
        follow_up: &(dyn Fn(&Run) -> CrashFollowUp + Send + Sync),
    ) -> Result<Vec<DeadInstance>> {
        let rows = sqlx::query(
            "SELECT id, node, pid, heartbeat_at FROM instances WHERE stopped_at IS NULL AND id <> $1",
        )
        .bind(me.id.clone())
        .fetch_all(self.pool())
        .await?;
        let mut dead = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let node: String = row.try_get(1)?;
            let pid: i64 = row.try_get(2)?;
            let last_heartbeat = from_millis(row.try_get(3)?);
            let stale = last_heartbeat < now - ttl;
            let vanished = node == me.node && !process_alive(pid);
            if !(stale || vanished) {
                continue;
            }
            let reason = if vanished {
                format!("process {pid} on {node} died while the run was going")
            } else {
                format!(
                    "node {node} (pid {pid}) stopped heartbeating at {}",
                    last_heartbeat.to_rfc3339()
                )
            };
            let crashed_runs = self.crash_runs_of(&id, &reason, now, follow_up).await?;
            sqlx::query(
                "UPDATE instances SET stopped_at = $1 WHERE id = $2 AND stopped_at IS NULL",
            )
            .bind(to_millis(now))
            .bind(id.clone())
            .execute(self.pool())
            .await?;
            dead.push(DeadInstance {
                id,
                node,
                pid,
                last_heartbeat,
                crashed_runs,
            });
        }
        Ok(dead)
    }

    async fn crash_runs_of(
        &self,
        instance_id: &str,
        reason: &str,
        now: DateTime<Utc>,
        follow_up: &(dyn Fn(&Run) -> CrashFollowUp + Send + Sync),
    ) -> Result<Vec<Run>> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE status = 'running' AND instance_id = $1")
                .bind(instance_id)
                .fetch_all(self.pool())
                .await?;
        let mut crashed = Vec::new();
        for id in ids {
            let mut tx = self.pool().begin().await?;
            let updated = sqlx::query(
                "UPDATE runs SET status = 'crashed', finished_at = $1, error = $2 WHERE id = $3 AND status = 'running'",
            )
            .bind(to_millis(now))
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                tx.rollback().await?;
                continue;
            }
            let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let run = decode_run(&row)?;
            let follow_up = follow_up(&run);
            if let Some(retry) = follow_up.retry {
                insert_pending(&mut tx, &retry, now).await?;
            }
            if let Some(page) = follow_up.page {
                page.write(&mut tx, now).await?;
            }
            tx.commit().await?;
            crashed.push(run);
        }
        Ok(crashed)
    }
}

fn process_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}
