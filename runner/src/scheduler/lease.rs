//! This instance's lease, kept by a task of its own on a connection of its
//! own: a blocked scheduler loop, a slow pool or a long transaction never
//! makes a live node look dead.
//!
//! The lease's end is judged by whoever reaps on the database's clock; this
//! side judges its own lease on the local monotonic clock, from when the
//! last accepted renewal was *sent* (so never later than the database's
//! view). A node whose renewals fail stops claiming at `ttl/2` and stops
//! its runs at `ttl` (self-fencing), before any other node may take them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use patrol_job_api::ProcessFence;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::clock::Clock;
use crate::ledger::{Instance, Ledger, Renewal};

/// How this instance stands with its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Renewed within `ttl/2`: it may claim and start runs.
    Held,
    /// Not renewed for `ttl/2`: it starts nothing new.
    Stale,
    /// Not renewed for `ttl`: another node may take its runs; it must
    /// have stopped them.
    Lost,
    /// Marked stopped by another node (or by itself), for this reason: it
    /// must write nothing more for its runs.
    Taken(String),
}

#[derive(Debug, Clone)]
struct LeaseState {
    /// When the newest renewal the database accepted was sent.
    renewed_at: Instant,
    /// Since when renewals have gone through without a miss.
    steady_since: Option<Instant>,
    taken: Option<String>,
}

/// A read-only view of the lease, for whoever must check it.
#[derive(Debug, Clone)]
pub struct LeaseView {
    state: watch::Receiver<LeaseState>,
    until: watch::Receiver<Instant>,
    ttl: Duration,
    every: Duration,
}

impl LeaseView {
    pub fn standing(&self) -> Standing {
        let state = self.state.borrow();
        if let Some(reason) = &state.taken {
            return Standing::Taken(reason.clone());
        }
        let age = state.renewed_at.elapsed();
        if age >= self.ttl {
            Standing::Lost
        } else if age >= self.ttl / 2 {
            Standing::Stale
        } else {
            Standing::Held
        }
    }

    /// When the lease runs out unless renewed.
    pub fn lost_at(&self) -> Instant {
        self.state.borrow().renewed_at + self.ttl
    }

    /// Whether this node may judge others dead: it holds its lease and has
    /// renewed without a miss for two renewal periods. After an outage of
    /// the database every node's lease looks expired; this gives each one
    /// its chance to renew first.
    pub fn may_reap(&self) -> bool {
        self.standing() == Standing::Held
            && self
                .state
                .borrow()
                .steady_since
                .is_some_and(|since| since.elapsed() >= self.every * 2)
    }

    /// A fence for the processes of this instance's runs (see
    /// [`patrol_job_api::fence`]), guarded by the `guard` binary.
    pub fn fence(&self, guard: Option<PathBuf>) -> ProcessFence {
        match guard {
            Some(guard) => ProcessFence::new(guard, self.until.clone()),
            None => ProcessFence::none(),
        }
    }

    pub async fn changed(&mut self) {
        if self.state.changed().await.is_err() {
            // The keeper is gone; nothing more will change.
            std::future::pending::<()>().await;
        }
    }
}

/// The lease of one registered instance; renewals stop when it is dropped
/// (and fenced processes of its runs are then killed).
pub struct Lease {
    instance: Instance,
    view: LeaseView,
    keeper: JoinHandle<()>,
}

/// How often a lease of `ttl` is renewed.
pub fn renewal_period(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(200))
}

impl Lease {
    /// Registers `instance` in the ledger and starts renewing its lease.
    pub async fn register(
        ledger: &Ledger,
        instance: Instance,
        role: &str,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Result<Self> {
        let every = renewal_period(ttl);
        let sent = Instant::now();
        ledger
            .register_instance(&instance, role, clock.now(), chrono_ttl(ttl))
            .await?;
        let renewer = ledger.separate(every).await?;
        let (state_tx, state) = watch::channel(LeaseState {
            renewed_at: sent,
            steady_since: Some(sent),
            taken: None,
        });
        let (until_tx, until) = watch::channel(sent + ttl);
        let keeper = tokio::spawn(keep(
            Keeper {
                ledger: renewer,
                instance: instance.clone(),
                clock,
                ttl,
                every,
            },
            state_tx,
            until_tx,
        ));
        Ok(Self {
            instance,
            view: LeaseView {
                state,
                until,
                ttl,
                every,
            },
            keeper,
        })
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    pub fn view(&self) -> LeaseView {
        self.view.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

pub fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::seconds(15))
}

struct Keeper {
    ledger: Ledger,
    instance: Instance,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    every: Duration,
}

async fn keep(keeper: Keeper, state: watch::Sender<LeaseState>, until: watch::Sender<Instant>) {
    let mut ticks = tokio::time::interval_at(Instant::now() + keeper.every, keeper.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let sent = Instant::now();
        let renewal = tokio::time::timeout(
            keeper.every,
            keeper
                .ledger
                .renew_lease(&keeper.instance, keeper.clock.now(), chrono_ttl(keeper.ttl)),
        )
        .await;
        match renewal {
            Ok(Ok(Renewal::Renewed)) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(instance = %keeper.instance.id, after = ?since.elapsed(),
                        "lease renewed again");
                }
                state.send_modify(|state| {
                    state.renewed_at = sent;
                    state.steady_since.get_or_insert(sent);
                });
                let _ = until.send(sent + keeper.ttl);
            }
            Ok(Ok(Renewal::Taken { reason })) => {
                let reason = reason.unwrap_or_else(|| "marked stopped".into());
                tracing::error!(instance = %keeper.instance.id, reason = %reason,
                    "this instance was taken over: it writes nothing more for its runs");
                state.send_modify(|state| state.taken = Some(reason));
                return;
            }
            Ok(Err(err)) => failed(&keeper, &state, &mut failing_since, &format!("{err:#}")),
            Err(_) => failed(&keeper, &state, &mut failing_since, "no answer in time"),
        }
    }
}

fn failed(
    keeper: &Keeper,
    state: &watch::Sender<LeaseState>,
    failing_since: &mut Option<Instant>,
    error: &str,
) {
    let first = failing_since.is_none();
    let since = *failing_since.get_or_insert_with(Instant::now);
    if first {
        tracing::warn!(instance = %keeper.instance.id, error, "cannot renew the lease");
    } else {
        tracing::debug!(instance = %keeper.instance.id, error, failing_for = ?since.elapsed(),
            "cannot renew the lease");
    }
    state.send_modify(|state| state.steady_since = None);
}
