//! Alerting: findings become alerts (trigger, update, resolve by key),
//! routed to notifiers through an outbox in the ledger, delivered by a
//! worker that retries, keeps order per key and survives restarts.

pub mod config;
pub mod listing;
pub mod matcher;
pub mod notifiers;
pub mod notify;
pub mod outbox;
pub mod policy;
pub mod record;
pub mod routing;
pub mod runbooks;
pub mod secret;
pub mod silences;
#[cfg(test)]
mod tests;
pub mod worker;
