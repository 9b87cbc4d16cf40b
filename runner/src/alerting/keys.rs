//! Alert keys as notifiers see them, and the keys the runner keeps for
//! its own alerts.
//!
//! Alerts are per (schedule, finding key), but a notifier's incident key
//! (PagerDuty's `dedup_key`, the webhook's `notify_key`) is one string for
//! everything patrol sends it: a bare finding key let one schedule's job
//! update or resolve another schedule's incident. Alerts opened since
//! migration 8 are sent as `<schedule>/<key>`; alerts opened before keep
//! the bare key they were opened with (stored per alert), so their
//! resolve still reaches the incident they opened (docs/alerting.md).

/// Finding keys under this prefix are the runner's own (`patrol/run-failed/…`,
/// `patrol/delivery-degraded/…`, `patrol/test/…`); a job may not report one.
pub const RESERVED_PREFIX: &str = "patrol/";

/// The key notifiers identify a new alert of `schedule_id` by. Schedule
/// ids hold no `/`, so the first `/` always ends the schedule.
pub fn notify_key(schedule_id: &str, finding_key: &str) -> String {
    format!("{schedule_id}/{finding_key}")
}

/// Whether a job may report `key` (it is not the runner's).
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_keys_differ_per_schedule_and_runner_keys_are_reserved() {
        assert_eq!(notify_key("sweep", "rel/1"), "sweep/rel/1");
        assert_ne!(notify_key("a", "k"), notify_key("b", "k"));
        assert!(is_reserved("patrol/run-failed/sweep"));
        assert!(!is_reserved("patrolled/x"));
    }
}
