//! Alerting: findings become alerts (trigger, update, resolve by key),
//! routed to notifiers through an outbox in the ledger, delivered by a
//! worker that retries, keeps order per key and survives restarts.

pub mod notifiers;
pub mod notify;
pub mod secret;
