//! Which processes are alive, judged by leases. An instance holds a lease
//! that it renews (`renew_lease`) and whose end is set on the database's
//! clock (see [`LeaseClock`]); a run belongs to the instance that claimed
//! it. Once a lease has expired, whoever sees it marks the instance
//! stopped and its runs `crashed` in one transaction — and the runs of an
//! instance already stopped too, so no `running` row outlives its owner.
//! Every write a node makes for a run checks that the run is still its own
//! and its instance not stopped: a node that was taken over writes nothing.

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::model::{from_millis, to_millis, Instance, NewRun, Run};
use super::runs::{decode_run, insert_pending, RunEndWrites, RUN_COLUMNS};
use super::Ledger;

mod host;
pub use host::HostIdentity;

/// What follows a crashed run, decided by the scheduler: a retry, or —
/// out of retries — a page, like any run that failed for good.
#[derive(Default)]
pub struct CrashFollowUp {
    pub retry: Option<NewRun>,
    /// The alert it raises, written with the crash.
    pub page: Option<Box<dyn RunEndWrites>>,
}

/// An instance found dead (or already stopped), with the runs it left
/// `running`.
#[derive(Debug, Clone)]
pub struct DeadInstance {
    pub id: String,
    pub node: String,
    pub host: String,
    pub boot_id: String,
    pub pid: i64,
    pub last_heartbeat: DateTime<Utc>,
    pub reason: String,
    pub crashed_runs: Vec<Run>,
}

/// How a lease renewal went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// The instance is marked stopped: another node took its runs over,
    /// for this reason (or it shut down).
    Taken {
        reason: Option<String>,
    },
}

/// Whose clock judges leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseClock {
    /// The database's `now()`: one clock for every node (PostgreSQL).
    Database,
    /// The time the caller passes: the single node's clock (SQLite), or a
    /// test's clock.
    Caller,
}

impl Ledger {
    /// The lease time to bind into `COALESCE($n, <database now>)`: none
    /// (the database's clock) or the caller's `now`.
    fn lease_now(&self, now: DateTime<Utc>) -> Option<i64> {
        match self.lease_clock {
            LeaseClock::Database => None,
            LeaseClock::Caller => Some(to_millis(now)),
        }
    }

    /// Registers this process as `instance` holding a lease of `ttl`.
    /// A `serve` instance is refused while another live one has the same
    /// `node` label on this host: the ledger could not tell them apart.
    pub async fn register_instance(
        &self,
        instance: &Instance,
        role: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<()> {
        let here = HostIdentity::current();
        if role == "serve" {
            self.refuse_twin(instance, &here, now, ttl).await?;
        }
        let db_now = self.db_now();
        sqlx::query(&format!(
            "INSERT INTO instances (id, node, pid, role, started_at, heartbeat_at, host, boot_id, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, COALESCE($8, {db_now}) + $9)"
        ))
        .bind(instance.id.clone())
        .bind(instance.node.clone())
        .bind(i64::from(std::process::id()))
        .bind(role)
        .bind(to_millis(now))
        .bind(here.host)
        .bind(here.boot_id)
        .bind(self.lease_now(now))
        .bind(ttl.num_milliseconds())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn refuse_twin(
        &self,
        instance: &Instance,
        here: &HostIdentity,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<()> {
        let db_now = self.db_now();
        let rows = sqlx::query(&format!(
            "SELECT pid, started_at FROM instances WHERE role = 'serve' AND node = $1 AND host = $2 \
             AND boot_id = $3 AND stopped_at IS NULL \
             AND COALESCE(lease_until, heartbeat_at + $4) >= COALESCE($5, {db_now})"
        ))
        .bind(instance.node.clone())
        .bind(here.host.clone())
        .bind(here.boot_id.clone())
        .bind(ttl.num_milliseconds())
        .bind(self.lease_now(now))
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            let pid: i64 = row.try_get(0)?;
            // Several engines in one process (tests) share a pid: a twin
            // is another process.
            if pid == i64::from(std::process::id()) || !process_alive(pid) {
                continue;
            }
            let started = from_millis(row.try_get(1)?);
            bail!(
                "another `patrol serve` (pid {pid}, started {}) runs as node `{}` on this host ({}); \
                 two instances with one label cannot be told apart in the ledger — give each its own \
                 `node:` in patrol.yaml, or stop the other first",
                started.to_rfc3339(),
                instance.node,
                here.host
            );
        }
        Ok(())
    }

    /// Extends `instance`'s lease to `ttl` from now (the lease clock's
    /// now). [`Renewal::Taken`] once it was marked stopped: from then on
    /// it must write nothing for its runs.
    pub async fn renew_lease(
        &self,
        instance: &Instance,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Renewal> {
        let db_now = self.db_now();
        let updated = sqlx::query(&format!(
            "UPDATE instances SET heartbeat_at = $1, lease_until = COALESCE($2, {db_now}) + $3 \
             WHERE id = $4 AND stopped_at IS NULL"
        ))
        .bind(to_millis(now))
        .bind(self.lease_now(now))
        .bind(ttl.num_milliseconds())
        .bind(instance.id.clone())
        .execute(self.pool())
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(Renewal::Renewed);
        }
        let reason: Option<Option<String>> =
            sqlx::query_scalar("SELECT stop_reason FROM instances WHERE id = $1")
                .bind(instance.id.clone())
                .fetch_optional(self.pool())
                .await?;
        Ok(Renewal::Taken {
            reason: reason.flatten(),
        })
    }

    /// Records `instance` as stopped for `reason`. Returns false if it was
    /// already marked stopped: that first record (when and why another
    /// node found it dead) is kept.
    pub async fn stop_instance(
        &self,
        instance: &Instance,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE instances SET stopped_at = $1, stop_reason = $2 WHERE id = $3 AND stopped_at IS NULL",
        )
        .bind(to_millis(now))
        .bind(reason)
        .bind(instance.id.clone())
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Whether some `serve` instance other than `except` holds a live
    /// lease.
    pub async fn live_server(
        &self,
        except: Option<&Instance>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool> {
        let db_now = self.db_now();
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM instances WHERE role = 'serve' AND stopped_at IS NULL \
             AND COALESCE(lease_until, heartbeat_at + $1) >= COALESCE($2, {db_now}) AND id <> $3"
        ))
        .bind(ttl.num_milliseconds())
        .bind(self.lease_now(now))
        .bind(except.map_or(String::new(), |instance| instance.id.clone()))
        .fetch_one(self.pool())
        .await?;
        Ok(count > 0)
    }

    /// Finds instances that are gone — lease expired (when `judge_leases`),
    /// or on this host and boot with a process id that no longer exists —
    /// and marks each
    /// stopped and its `running` runs `crashed`, in one transaction that
    /// re-checks the lease (a renewal that got in first wins). Then ends
    /// the `running` runs of instances already stopped.
    ///
    /// `follow_up` decides, per crashed run, the retry to enqueue or the
    /// alert to raise; both are written with the crash, so none is lost.
    pub async fn reap_dead_instances(
        &self,
        me: &Instance,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
        judge_leases: bool,
        follow_up: &(dyn Fn(&Run) -> CrashFollowUp + Send + Sync),
    ) -> Result<Vec<DeadInstance>> {
        let here = HostIdentity::current();
        let db_now = self.db_now();
        let expired = format!("COALESCE(lease_until, heartbeat_at + $1) < COALESCE($2, {db_now})");
        let rows = sqlx::query(&format!(
            "SELECT id, node, host, boot_id, pid, heartbeat_at, CASE WHEN {expired} THEN 1 ELSE 0 END \
             FROM instances WHERE stopped_at IS NULL AND id <> $3"
        ))
        .bind(ttl.num_milliseconds())
        .bind(self.lease_now(now))
        .bind(me.id.clone())
        .fetch_all(self.pool())
        .await?;
        let mut dead = Vec::new();
        for row in rows {
            let mut instance = DeadInstance {
                id: row.try_get(0)?,
                node: row.try_get(1)?,
                host: row.try_get(2)?,
                boot_id: row.try_get(3)?,
                pid: row.try_get(4)?,
                last_heartbeat: from_millis(row.try_get(5)?),
                reason: String::new(),
                crashed_runs: Vec::new(),
            };
            let expired = judge_leases && row.try_get::<i64, _>(6)? == 1;
            let vanished = here.sees(&instance.host, &instance.boot_id)
                && instance.pid != i64::from(std::process::id())
                && !process_alive(instance.pid);
            if !(expired || vanished) {
                continue;
            }
            instance.reason = if vanished {
                format!(
                    "process {} of node {} on {} died while the run was going",
                    instance.pid, instance.node, instance.host
                )
            } else {
                format!(
                    "node {} (pid {} on {}) did not renew its lease (last heartbeat {})",
                    instance.node,
                    instance.pid,
                    if instance.host.is_empty() {
                        "?"
                    } else {
                        &instance.host
                    },
                    instance.last_heartbeat.to_rfc3339()
                )
            };
            let mut tx = self.pool().begin().await?;
            let stopped = sqlx::query(&format!(
                "UPDATE instances SET stopped_at = COALESCE($2, {db_now}), stop_reason = $3 \
                 WHERE id = $4 AND stopped_at IS NULL AND ($5 = 1 OR {expired})"
            ))
            .bind(ttl.num_milliseconds())
            .bind(self.lease_now(now))
            .bind(format!(
                "marked dead by {} ({}): {}",
                me.node, me.id, instance.reason
            ))
            .bind(instance.id.clone())
            .bind(i64::from(vanished))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if stopped == 0 {
                // It renewed (or stopped) meanwhile.
                tx.rollback().await?;
                continue;
            }
            instance.crashed_runs =
                crash_runs_of(&mut tx, &instance.id, &instance.reason, now, follow_up).await?;
            tx.commit().await?;
            dead.push(instance);
        }
        dead.extend(self.end_runs_of_stopped_instances(now, follow_up).await?);
        Ok(dead)
    }

    /// `running` runs whose instance is stopped (or unknown): their owner
    /// can no longer end them, so they are ended here, one owner at a time.
    async fn end_runs_of_stopped_instances(
        &self,
        now: DateTime<Utc>,
        follow_up: &(dyn Fn(&Run) -> CrashFollowUp + Send + Sync),
    ) -> Result<Vec<DeadInstance>> {
        let owners = sqlx::query(
            "SELECT DISTINCT r.instance_id, i.node, i.host, i.boot_id, i.pid, i.heartbeat_at, i.stop_reason \
             FROM runs r LEFT JOIN instances i ON i.id = r.instance_id \
             WHERE r.status = 'running' AND (i.id IS NULL OR i.stopped_at IS NOT NULL)",
        )
        .fetch_all(self.pool())
        .await?;
        let mut ended = Vec::new();
        for row in owners {
            let id: Option<String> = row.try_get(0)?;
            let Some(id) = id else { continue };
            let stop_reason: Option<String> = row.try_get(6)?;
            let reason = format!(
                "its instance {id} had already stopped ({})",
                stop_reason.as_deref().unwrap_or("no reason recorded")
            );
            let mut tx = self.pool().begin().await?;
            let crashed_runs = crash_runs_of(&mut tx, &id, &reason, now, follow_up).await?;
            tx.commit().await?;
            if crashed_runs.is_empty() {
                continue;
            }
            ended.push(DeadInstance {
                id,
                node: row.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
                host: row.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                boot_id: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                pid: row.try_get::<Option<i64>, _>(4)?.unwrap_or_default(),
                last_heartbeat: from_millis(row.try_get::<Option<i64>, _>(5)?.unwrap_or_default()),
                reason,
                crashed_runs,
            });
        }
        Ok(ended)
    }
}

async fn crash_runs_of(
    tx: &mut sqlx::AnyConnection,
    instance_id: &str,
    reason: &str,
    now: DateTime<Utc>,
    follow_up: &(dyn Fn(&Run) -> CrashFollowUp + Send + Sync),
) -> Result<Vec<Run>> {
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM runs WHERE status = 'running' AND instance_id = $1")
            .bind(instance_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut crashed = Vec::new();
    for id in ids {
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
            continue;
        }
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let run = decode_run(&row)?;
        let follow_up = follow_up(&run);
        if let Some(retry) = follow_up.retry {
            insert_pending(&mut *tx, &retry, now).await?;
        }
        if let Some(page) = follow_up.page {
            page.write(&mut *tx, now).await?;
        }
        crashed.push(run);
    }
    Ok(crashed)
}

pub(super) fn process_alive(pid: i64) -> bool {
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

#[cfg(test)]
mod tests;
