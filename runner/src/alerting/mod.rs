//! Alerting: findings become alerts (trigger, update, resolve by key),
//! routed to notifiers through an outbox in the ledger, delivered by a
//! worker that retries, keeps order per key and survives restarts.

/// Runbooks of the alerts patrol raises itself; each must exist in `runbooks/`.
pub const BUILT_IN_RUNBOOKS: [&str; 3] = ["run-failed", "delivery-degraded", "alert-test"];

/// Schedule id and job name of the alerts patrol raises about itself; no
/// schedule may take it (its runs would resolve them).
pub const PATROL_SCHEDULE: &str = "patrol";

pub mod config;
pub mod decide;
pub mod keys;
pub mod matcher;
pub mod notifiers;
pub mod notify;
/// The outbox rows the delivery worker claims live with the rest of the
/// SQL, in the ledger.
pub use crate::ledger::outbox;
pub mod policy;
pub mod record;
pub mod routing;
pub mod runbooks;
pub use patrol_job_api::secret;
pub mod silences;
#[cfg(test)]
mod tests;
pub mod worker;
