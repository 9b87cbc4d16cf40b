//! The likelihood method: how unusual the *recent* surprise of a series is
//! against its own long-run surprise, after Numenta's anomaly likelihood
//! (the post-processing behind HTM's NAB score), plus a new-extreme rule.
//!
//! 1. Raw surprise per point: the z-score of the value against the previous
//!    `z_window` points' mean and standard deviation (in the asked
//!    direction), scaled by `z_scale` and capped at 1.
//! 2. Likelihood: the mean of the last `average` raw scores is compared
//!    with a normal fit (mean, variance floored so a flat history is not
//!    infinitely sure) of the last `history` such means, refitted every
//!    `refit_every` points. Its tail probability `q` says how rare the recent
//!    surprise is; only a sharp rise counts — a second point in a row at
//!    `q ≤ 1e-5` is lowered to `1e-3`, so one event is one detection, not a
//!    run of them. The score is NAB's log scale
//!    `ln(1.0000000001 - (1 - q)) / ln(1e-10)`: 0.5 is `q = 1e-5`.
//! 3. New extreme: a value beyond the range seen so far by more than
//!    `extreme_tolerance` of that range scores 1 (windowed statistics adapt
//!    to a level they have never seen; the range does not).
//!
//! A point is anomalous when its score reaches `threshold` (default 0.5: a
//! recent surprise with a one-in-100,000 tail probability). Nothing is
//! judged in the first `learning` finite points (default: [`probation`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::types::{Direction, Point, Scored};

/// Parameters of [`crate::Method::Likelihood`]; missing fields take their
/// [`Default`] when deserialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LikelihoodParams {
    /// Previous points the raw z-score is taken against.
    pub z_window: usize,
    /// The z that counts as full surprise (raw score 1).
    pub z_scale: f64,
    /// Raw scores averaged into the recent surprise.
    pub average: usize,
    /// Recent-surprise values the long-run fit is made of.
    pub history: usize,
    /// Points between refits.
    pub refit_every: usize,
    /// Finite points before anything is judged; `None`: the probation of
    /// NAB, 15 % of the series' points, at most 750 (see [`probation`]).
    pub learning: Option<usize>,
    /// Fraction of the range seen so far a value must pass it by to be a new
    /// extreme; negative disables the rule.
    pub extreme_tolerance: f64,
    /// Score at or above which a point is anomalous, in (0, 1].
    pub threshold: f64,
}

impl Default for LikelihoodParams {
    fn default() -> Self {
        LikelihoodParams {
            z_window: 288,
            z_scale: 16.0,
            average: 10,
            history: 8640,
            refit_every: 100,
            learning: None,
            extreme_tolerance: 0.05,
            threshold: 0.5,
        }
    }
}

/// Points a series of `len` points learns from before it is judged:
/// 15 % of it, at most 750 (NAB's probation), and never fewer than the
/// raw z-score needs.
pub fn probation(len: usize) -> usize {
    (len * 15 / 100).clamp(MIN_Z_POINTS, 750)
}

/// A floor on the fitted mean and variance of the recent surprise (as
/// Numenta's): a history of near-zero surprise must not make any small
/// surprise look like a one-in-a-billion event.
const MIN_MEAN: f64 = 0.03;
const MIN_VARIANCE: f64 = 0.0003;
/// Tail probabilities of a sharp rise, and what a second one in a row is
/// lowered to.
const RED: f64 = 1e-5;
const YELLOW: f64 = 1e-3;
/// The raw z needs this many previous points.
const MIN_Z_POINTS: usize = 10;

pub(crate) fn likelihood(
    points: &[Point],
    params: &LikelihoodParams,
    direction: Direction,
) -> Vec<Scored> {
    let learning = params.learning.unwrap_or_else(|| probation(points.len()));
    let mut detector = LikelihoodDetector::new(params.clone(), direction, learning);
    points.iter().map(|point| detector.push(point)).collect()
}

/// The likelihood method one point at a time: everything it has learnt,
/// small enough to keep in job state between runs, so a run judges only
/// the points that arrived since the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodDetector {
    params: LikelihoodParams,
    direction: Direction,
    learning: usize,
    window: RollingMoments,
    recent: VecDeque<f64>,
    recent_sum: f64,
    means: VecDeque<f64>,
    fit: Option<(f64, f64)>,
    since_fit: usize,
    previous_tail: f64,
    range: Option<(f64, f64)>,
    seen: usize,
}

impl LikelihoodDetector {
    /// A detector that judges nothing for its first `learning` finite points.
    pub fn new(params: LikelihoodParams, direction: Direction, learning: usize) -> Self {
        LikelihoodDetector {
            window: RollingMoments::new(params.z_window.max(2)),
            params,
            direction,
            learning,
            recent: VecDeque::new(),
            recent_sum: 0.0,
            means: VecDeque::new(),
            fit: None,
            since_fit: 0,
            previous_tail: 1.0,
            range: None,
            seen: 0,
        }
    }

    /// Judges the next point (points come in time order).
    pub fn push(&mut self, point: &Point) -> Scored {
        if !point.value.is_finite() {
            return Scored::not_finite(point);
        }
        self.judge(point, self.direction)
    }

    /// Whether it is still learning (judges nothing yet).
    pub fn learning(&self) -> bool {
        self.seen < self.learning
    }

    fn judge(&mut self, point: &Point, direction: Direction) -> Scored {
        let value = point.value;
        let (baseline, z) = match self.window.mean_and_sd() {
            Some((mean, sd)) if self.window.len() >= MIN_Z_POINTS => {
                (Some(mean), (value - mean) / sd.max(f64::EPSILON))
            }
            _ => (None, 0.0),
        };
        let surprise = match direction {
            Direction::Up => z.max(0.0),
            Direction::Down => (-z).max(0.0),
            Direction::Both => z.abs(),
        };
        let raw = (surprise / self.params.z_scale).min(1.0);
        let tail = self.recent_tail(raw);
        let extreme = self.new_extreme(value, direction);
        self.window.push(value);
        self.seen += 1;
        if self.seen <= self.learning {
            return Scored {
                baseline,
                ..Scored::warming(point)
            };
        }
        let likely = log_scale(tail);
        let score = if extreme { 1.0 } else { likely };
        Scored {
            ts: point.ts,
            value,
            baseline,
            score: Some(score),
            is_anomaly: score >= self.params.threshold,
            warming_up: false,
        }
    }

    /// The tail probability of the recent mean raw score, sharp rises only.
    fn recent_tail(&mut self, raw: f64) -> f64 {
        let average = self.params.average.max(1);
        self.recent.push_back(raw);
        self.recent_sum += raw;
        if self.recent.len() > average {
            self.recent_sum -= self.recent.pop_front().unwrap_or(0.0);
        }
        let mean = self.recent_sum / self.recent.len() as f64;
        self.means.push_back(mean);
        if self.means.len() > self.params.history.max(2) {
            self.means.pop_front();
        }
        if self.fit.is_none() || self.since_fit >= self.params.refit_every.max(1) {
            self.fit = Some(normal_fit(&self.means));
            self.since_fit = 0;
        }
        self.since_fit += 1;
        let (fit_mean, fit_sd) = self.fit.unwrap_or((MIN_MEAN, MIN_VARIANCE.sqrt()));
        // Symmetric tail: a surprise far below its usual level is rare too.
        let distance = (mean - fit_mean).abs() / fit_sd;
        let tail = 0.5 * erfc(distance / std::f64::consts::SQRT_2);
        let kept = if tail <= RED && self.previous_tail <= RED {
            YELLOW
        } else {
            tail
        };
        self.previous_tail = tail;
        kept
    }

    /// Whether `value` leaves the range seen so far (in `direction`) by more
    /// than the tolerance; the range then takes it in.
    fn new_extreme(&mut self, value: f64, direction: Direction) -> bool {
        let Some((low, high)) = self.range else {
            self.range = Some((value, value));
            return false;
        };
        let slack = self.params.extreme_tolerance * (high - low);
        let above = value > high + slack && matches!(direction, Direction::Up | Direction::Both);
        let below = value < low - slack && matches!(direction, Direction::Down | Direction::Both);
        self.range = Some((low.min(value), high.max(value)));
        self.params.extreme_tolerance >= 0.0 && high > low && (above || below)
    }
}

/// Mean and standard deviation of `values`, floored.
fn normal_fit(values: &VecDeque<f64>) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean.max(MIN_MEAN), variance.max(MIN_VARIANCE).sqrt())
}

/// NAB's log scale of a likelihood `1 - tail`: 0.5 at `tail = 1e-5`.
fn log_scale(tail: f64) -> f64 {
    let likelihood = 1.0 - tail;
    ((1.0000000001 - likelihood).ln() / (1.0 - 0.9999999999_f64).ln()).clamp(0.0, 1.0)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative
/// error below 1.2e-7: far finer than the thresholds it feeds).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Mean and (population) standard deviation of the last `capacity` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RollingMoments {
    values: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sum_sq: f64,
}

impl RollingMoments {
    fn new(capacity: usize) -> Self {
        RollingMoments {
            values: VecDeque::with_capacity(capacity),
            capacity,
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn push(&mut self, value: f64) {
        if self.values.len() == self.capacity {
            if let Some(old) = self.values.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.values.push_back(value);
        self.sum += value;
        self.sum_sq += value * value;
    }

    fn mean_and_sd(&self) -> Option<(f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let n = self.values.len() as f64;
        let mean = self.sum / n;
        let variance = (self.sum_sq / n - mean * mean).max(0.0);
        Some((mean, variance.sqrt()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
        ] {
            assert!((erfc(x) - want).abs() < 1e-6, "erfc({x}) = {}", erfc(x));
        }
    }

    /// A noisy but steady series: deterministic pseudo-noise in [-1, 1].
    fn steady(n: usize) -> Vec<Point> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x % 2001) as f64 / 1000.0 - 1.0;
                Point::new(i as i64 * 300, 50.0 + noise)
            })
            .collect()
    }

    fn anomalies(scored: &[Scored]) -> Vec<usize> {
        scored
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_anomaly)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_steady_series_pages_nothing_and_learning_points_are_not_judged() {
        let params = LikelihoodParams::default();
        let scored = likelihood(&steady(5000), &params, Direction::Both);
        assert!(anomalies(&scored).is_empty(), "{:?}", anomalies(&scored));
        assert_eq!(probation(5000), 750);
        assert!(scored[..750].iter().all(|s| s.warming_up));
        assert!(scored[750..].iter().all(|s| !s.warming_up));
        assert_eq!((probation(1000), probation(20)), (150, 10));
    }

    #[test]
    fn a_burst_inside_the_range_is_found_once_and_a_new_extreme_at_once() {
        let params = LikelihoodParams::default();
        let mut points = steady(3000);
        // Wild swings within the range seen (48..52 plus the early spike):
        // only the likelihood can see them.
        points[100].value = 80.0;
        for (i, point) in points.iter_mut().enumerate().skip(2000).take(20) {
            point.value = if i % 2 == 0 { 75.0 } else { 30.0 };
        }
        points[2600].value = 200.0;
        let found = anomalies(&likelihood(&points, &params, Direction::Both));
        let burst: Vec<&usize> = found.iter().filter(|i| (2000..2100).contains(*i)).collect();
        assert!(!burst.is_empty() && burst.len() <= 3, "{found:?}");
        assert!(found.contains(&2600), "{found:?}");
        assert!(
            found.iter().all(|i| (2000..2100).contains(i) || *i == 2600),
            "{found:?}"
        );
        // Only drops count when asked for: the jump up to 200 is no extreme.
        let down = anomalies(&likelihood(&points, &params, Direction::Down));
        assert!(!down.contains(&2600), "{down:?}");
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut points = steady(600);
        points[500].value = f64::NAN;
        let scored = likelihood(&points, &LikelihoodParams::default(), Direction::Both);
        assert_eq!(scored[500].score, None);
        assert!(!scored[500].is_anomaly && !scored[500].warming_up);
        assert!(scored[501].score.is_some());
    }

    #[test]
    fn the_log_scale_puts_one_in_100000_at_one_half() {
        assert!((log_scale(1e-5) - 0.5).abs() < 1e-6);
        assert!(log_scale(0.5) < 0.05);
        assert!(log_scale(1e-10) > 0.95);
    }
}
