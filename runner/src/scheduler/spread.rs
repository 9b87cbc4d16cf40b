//! Deterministic spreading: jitter per (schedule, slot) and retry backoff.
//! Deterministic so every node computes the same fire time for a slot and
//! a restart does not move it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::RetryPolicy;

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The delay in `[0, max)` added to `slot` of `schedule_id`.
pub fn jitter(schedule_id: &str, slot: DateTime<Utc>, max: Duration) -> Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let hash = stable_hash(&[
        schedule_id.as_bytes(),
        &slot.timestamp_millis().to_le_bytes(),
    ]);
    Duration::from_millis(hash % max_ms)
}

/// Wait before retry number `attempt` (the attempt that failed: 1 = first
/// run): exponential from `backoff`, capped at `max_backoff`, with the
/// upper half jittered so retries of many runs do not stampede.
pub fn retry_delay(
    policy: &RetryPolicy,
    schedule_id: &str,
    slot: DateTime<Utc>,
    attempt: u32,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let base = policy
        .backoff
        .0
        .saturating_mul(1u32 << exponent)
        .min(policy.max_backoff.0);
    let half = base / 2;
    let spread = jitter(&format!("{schedule_id}#retry{attempt}"), slot, half);
    half + spread
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_job_api::units::HumanDuration;

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let slot = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .to_utc();
        let max = Duration::from_secs(10);
        let a = jitter("backups", slot, max);
        assert_eq!(a, jitter("backups", slot, max));
        assert!(a < max);
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|n| jitter(&format!("s{n}"), slot, max))
            .collect();
        assert!(spread.len() > 40, "jitter does not spread schedules");
        assert_eq!(jitter("x", slot, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        let policy = RetryPolicy {
            max: 5,
            backoff: HumanDuration(Duration::from_secs(10)),
            max_backoff: HumanDuration(Duration::from_secs(60)),
        };
        let slot = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .to_utc();
        let delays: Vec<Duration> = (1..=5)
            .map(|a| retry_delay(&policy, "s", slot, a))
            .collect();
        assert!(delays[0] >= Duration::from_secs(5) && delays[0] <= Duration::from_secs(10));
        assert!(delays[1] >= Duration::from_secs(10) && delays[1] <= Duration::from_secs(20));
        assert!(delays[4] >= Duration::from_secs(30) && delays[4] <= Duration::from_secs(60));
    }
}
