//! Scheduled work looks like an anomaly the first time and is normal after:
//! a weekly export batch at Monday 06:00, a nightly sync at midnight. The
//! seasonal slots are hours, too coarse to learn a ten-minute batch from a
//! few weeks of history, so an anomaly is excused when the same moment
//! already looked like it — the same time one week earlier, or the same
//! time on each of the two days before. The first occurrences still page;
//! a one-off incident never recurs at the exact same bucket, so it is
//! never excused.

use crate::types::{Point, Scored};

const DAY: i64 = 24 * 3600;
const WEEK: i64 = 7 * DAY;

/// Whether `earlier` looked like `now`: on the same side of now's
/// baseline and at least half as far from it.
fn looked_alike(earlier: &Point, now: &Scored) -> bool {
    let Some(baseline) = now.baseline else {
        return false;
    };
    let deviation = now.value - baseline;
    let before = earlier.value - baseline;
    deviation != 0.0
        && before.signum() == deviation.signum()
        && before.abs() >= deviation.abs() / 2.0
}

/// Clears `is_anomaly` of anomalies that recur (see the module docs).
/// `points` are sorted by `ts`; `scored` is their verdict, same order.
pub(crate) fn excuse_recurring(points: &[Point], scored: &mut [Scored]) {
    let at = |ts: i64| {
        points
            .binary_search_by_key(&ts, |p| p.ts)
            .ok()
            .map(|i| &points[i])
    };
    for verdict in scored.iter_mut().filter(|v| v.is_anomaly) {
        let alike = |offset: i64| at(verdict.ts - offset).is_some_and(|p| looked_alike(p, verdict));
        let weekly = alike(WEEK);
        let daily = alike(DAY) && alike(2 * DAY);
        if weekly || daily {
            verdict.is_anomaly = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(ts: i64, value: f64) -> Scored {
        Scored {
            ts,
            value,
            baseline: Some(2.0),
            score: Some(10.0),
            is_anomaly: true,
            warming_up: false,
        }
    }

    #[test]
    fn a_batch_seen_a_week_earlier_is_excused_and_a_one_off_is_not() {
        let points = [
            Point::new(0, 30.0),
            Point::new(WEEK, 36.0),
            Point::new(WEEK + 600, 2.0),
        ];
        let mut scored = [verdict(WEEK, 36.0), verdict(WEEK + 600, 40.0)];
        excuse_recurring(&points, &mut scored);
        assert!(
            !scored[0].is_anomaly,
            "the same bucket a week ago was as high"
        );
        assert!(scored[1].is_anomaly, "nothing like it a week ago");
    }

    #[test]
    fn daily_recurrence_needs_both_previous_days() {
        let points = [
            Point::new(0, 20.0),
            Point::new(DAY, 2.0),
            Point::new(2 * DAY, 20.0),
        ];
        let mut scored = [verdict(2 * DAY, 20.0)];
        excuse_recurring(&points, &mut scored);
        assert!(
            scored[0].is_anomaly,
            "only one of the two previous days matched"
        );
        let points = [
            Point::new(0, 20.0),
            Point::new(DAY, 18.0),
            Point::new(2 * DAY, 20.0),
        ];
        let mut scored = [verdict(2 * DAY, 20.0)];
        excuse_recurring(&points, &mut scored);
        assert!(!scored[0].is_anomaly);
    }

    #[test]
    fn a_smaller_echo_does_not_excuse_a_bigger_spike() {
        let points = [Point::new(0, 6.0), Point::new(WEEK, 100.0)];
        let mut scored = [verdict(WEEK, 100.0)];
        excuse_recurring(&points, &mut scored);
        assert!(
            scored[0].is_anomaly,
            "6 is far less than half of the deviation of 100"
        );
    }
}
