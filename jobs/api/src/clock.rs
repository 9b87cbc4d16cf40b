//! Time as the runner and its jobs see it. Everything that asks "what time
//! is it" asks a [`Clock`], so tests can decide the answer.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Where the current time comes from.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A fixed start plus the time tokio's clock has moved since the clock was
/// made. Under a paused tokio runtime (`tokio::time::pause`,
/// `#[tokio::test(start_paused = true)]`) timers and `now()` move together:
/// a `sleep(1h)` that ends has moved `now()` by exactly one hour, and no
/// wall-clock time has to pass for it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now. Call it inside the runtime whose clock
    /// it should follow (after pausing it, if it is to be paused).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.origin.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.start
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A clock that reads what it was last set to; for code without timers.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_tokio_time() {
        let clock = TokioClock::starting_at(t("2026-03-29T00:59:00Z"));
        assert_eq!(clock.now(), t("2026-03-29T00:59:00Z"));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), t("2026-03-29T01:59:00Z"));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), t("2026-03-29T01:59:01.5Z"));
    }

    #[test]
    fn manual_clock_reads_what_it_was_set_to() {
        let clock = ManualClock::new(t("2026-11-01T05:00:00Z"));
        clock.advance(chrono::Duration::minutes(30));
        assert_eq!(clock.now(), t("2026-11-01T05:30:00Z"));
        clock.set(t("2026-11-01T06:00:00Z"));
        assert_eq!(clock.now(), t("2026-11-01T06:00:00Z"));
    }
}
