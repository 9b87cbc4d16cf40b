//! The likelihood method: how unusual the *recent* surprise of a series is
//! against its own long-run surprise, after Numenta's anomaly likelihood
//! (the post-processing behind HTM's NAB score), plus a new-extreme rule.
//!
//! 1. Raw surprises per point, each the z-score (in the asked direction) of
//!    a quantity against the previous `z_window` values of that quantity,
//!    scaled by `z_scale` and capped at 1:
//!    - the value itself (a level the last day has not seen);
//!    - its first difference (a jump, even inside the usual range);
//!    - its seasonal residual, the value minus the value one `season_secs`
//!      earlier (a day that does not look like the same day last week).
//!    - the short level, the mean of the last `level` values (a sustained
//!      shift smaller than the noise: the mean of a few points varies less
//!      than one point, so its own window sees the shift as a larger z, and
//!      the value's window absorbing the new level dilutes it less).
//!      Each looks at a different kind of change; none needs a model of the
//!      series.
//! 2. Likelihood, per surprise: the mean of its last `average` raw scores is
//!    compared with a normal fit (mean, variance floored so a flat history
//!    is not infinitely sure) of the last `history` such means, refitted
//!    every `refit_every` points. The rarest surprise wins, its tail
//!    probability multiplied by the number of surprises compared
//!    (Bonferroni: four chances to look rare are not one). Each surprise
//!    against its *own* history keeps a naturally jumpy quantity from
//!    drowning the others.
//! 3. One event, one detection: a tail `q ≤ 1e-5` fires only when the
//!    previous one was not red; after a red the rule re-arms only once the
//!    tail has come back above `rearm` (hysteresis), otherwise it is lowered
//!    to `1e-3`. The score is NAB's log scale
//!    `ln(1.0000000001 - (1 - q)) / ln(1e-10)`: 0.5 is `q = 1e-5`.
//! 4. New extreme: a value beyond the range seen so far by more than
//!    `extreme_tolerance` of that range scores 1 (windowed statistics adapt
//!    to a level they have never seen; the range does not); it counts as the
//!    event's red for rule 3.
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
    /// Previous values each raw z-score is taken against.
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
    /// extreme; negative disables the rule. Default 3 %: on NAB 1-5 % all
    /// score within 0.7 of each other while 6-7 % lose 1.5-3, so the default
    /// sits in the middle of the flat part rather than at its edge.
    pub extreme_tolerance: f64,
    /// The seasonal lag in the series' time unit (seconds): the seasonal
    /// surprise compares a value with the one this long before; 0 disables
    /// it. Default one week, which also repeats a daily cycle and, unlike a
    /// day, keeps weekends apart from weekdays.
    pub season_secs: i64,
    /// Whether the first difference is a surprise of its own.
    pub differences: bool,
    /// After a red tail the next red fires only once the tail has been above
    /// this (one event is one detection), in [1e-5, 1].
    pub rearm: f64,
    /// Values whose mean is the short level, a surprise of its own (see the
    /// module docs); 0 disables it.
    pub level: usize,
    /// Score at or above which a point is anomalous, in (0, 1].
    pub threshold: f64,
}

impl Default for LikelihoodParams {
    fn default() -> Self {
        LikelihoodParams {
            z_window: 288,
            z_scale: 16.0,
            average: 25,
            history: 8640,
            refit_every: 100,
            learning: None,
            extreme_tolerance: 0.03,
            season_secs: 7 * 86_400,
            differences: true,
            rearm: 0.01,
            level: 5,
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
/// Tail probabilities of a sharp rise, and what a repeat is lowered to.
const RED: f64 = 1e-5;
const YELLOW: f64 = 1e-3;
/// The raw z needs this many previous points.
const MIN_Z_POINTS: usize = 10;
/// The seasonal memory keeps at most one point per `season_secs / 2016`
/// (five minutes of a week): a denser series is compared with the value
/// within that much of one season ago, and the memory (kept in job state
/// between runs) stays small whatever the series' rate.
const SEASON_SLOTS: i64 = 2016;
/// A bound on that memory for series whose timestamps are not seconds.
const MAX_SEASON_POINTS: usize = 2 * SEASON_SLOTS as usize;
/// The raw surprises kept in arrays: value, first difference, seasonal
/// residual (the short level has its own field, see [`ShortLevel`]).
const SURPRISES: usize = 3;

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
/// kept small (fixed windows, the long-run fits as bucketed sums) so it can
/// stay in job state between runs and a run judges only the points that
/// arrived since the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodDetector {
    params: LikelihoodParams,
    direction: Direction,
    learning: usize,
    /// Windows of the value, its first difference and its seasonal residual.
    windows: [RollingMoments; SURPRISES],
    /// Each surprise's recent mean and long-run fit.
    fits: [Surprise; SURPRISES],
    previous: Option<f64>,
    /// The last `season_secs` of (timestamp, value), oldest first.
    season: VecDeque<(i64, f64)>,
    /// The short-level surprise, made on its first use: a state stored
    /// before it existed loads without it and starts learning it.
    #[serde(default)]
    level: Option<ShortLevel>,
    /// Whether the last red has not yet been followed by a calm tail.
    fired: bool,
    range: Option<(f64, f64)>,
    seen: usize,
}

impl LikelihoodDetector {
    /// A detector that judges nothing for its first `learning` finite points.
    pub fn new(params: LikelihoodParams, direction: Direction, learning: usize) -> Self {
        let window = params.z_window.max(2);
        LikelihoodDetector {
            windows: std::array::from_fn(|_| RollingMoments::new(window)),
            fits: std::array::from_fn(|_| Surprise::new(params.average)),
            params,
            direction,
            learning,
            previous: None,
            season: VecDeque::new(),
            level: None,
            fired: false,
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
        let baseline = self.windows[0].mean_and_sd().map(|(mean, _)| mean);
        let difference = if self.params.differences {
            self.previous.map(|previous| value - previous)
        } else {
            None
        };
        self.previous = Some(value);
        let seasonal = self.seasonal_residual(point);
        // The rarest surprise is the farthest from its fit: one tail
        // (one `exp`) per point, not one per surprise.
        let mut distance: f64 = 0.0;
        let mut compared = 0;
        for (i, quantity) in [Some(value), difference, seasonal].into_iter().enumerate() {
            let Some(quantity) = quantity else { continue };
            let raw = (self.windows[i].z(quantity, direction) / self.params.z_scale).min(1.0);
            self.windows[i].push(quantity);
            let (history, refit_every) = (self.params.history, self.params.refit_every);
            distance = distance.max(self.fits[i].distance(raw, history, refit_every));
            compared += 1;
        }
        if self.params.level > 0 {
            let (window, average) = (self.params.z_window.max(2), self.params.average);
            let level = self
                .level
                .get_or_insert_with(|| ShortLevel::new(window, average));
            if let Some(mean) = level.mean_after(value, self.params.level) {
                let raw = (level.window.z(mean, direction) / self.params.z_scale).min(1.0);
                level.window.push(mean);
                let (history, refit_every) = (self.params.history, self.params.refit_every);
                distance = distance.max(level.fit.distance(raw, history, refit_every));
                compared += 1;
            }
        }
        let tail = if compared == 0 {
            1.0
        } else {
            (normal_tail(distance) * compared as f64).min(1.0)
        };
        let kept = self.one_detection_per_event(tail);
        let extreme = self.new_extreme(value, direction);
        // A new extreme is an event's detection too: the likelihood rising
        // a few points later (the short level still holds the extreme
        // value) is the same event, not a second one.
        if extreme {
            self.fired = true;
        }
        self.seen += 1;
        if self.seen <= self.learning {
            return Scored {
                baseline,
                ..Scored::warming(point)
            };
        }
        let score = if extreme { 1.0 } else { log_scale(kept) };
        Scored {
            ts: point.ts,
            value,
            baseline,
            score: Some(score),
            is_anomaly: score >= self.params.threshold,
            warming_up: false,
        }
    }

    /// The value minus the latest value at least `season_secs` older, once
    /// the series is that long.
    fn seasonal_residual(&mut self, point: &Point) -> Option<f64> {
        let lag = self.params.season_secs;
        if lag <= 0 {
            return None;
        }
        let target = point.ts.saturating_sub(lag);
        while self.season.len() >= 2 && self.season[1].0 <= target {
            self.season.pop_front();
        }
        let residual = self
            .season
            .front()
            .filter(|(ts, _)| *ts <= target)
            .map(|(_, old)| point.value - old);
        let resolution = lag / SEASON_SLOTS;
        if self
            .season
            .back()
            .is_none_or(|(last, _)| point.ts - last >= resolution)
        {
            self.season.push_back((point.ts, point.value));
        }
        if self.season.len() > MAX_SEASON_POINTS {
            self.season.pop_front();
        }
        residual
    }

    /// Only a sharp rise counts: a red tail while the last red has not
    /// calmed down (tail above `rearm`) is lowered to yellow, so one event
    /// is one detection, not a run of them.
    fn one_detection_per_event(&mut self, tail: f64) -> f64 {
        if tail <= RED {
            let repeat = self.fired;
            self.fired = true;
            return if repeat { YELLOW } else { tail };
        }
        if tail > self.params.rearm {
            self.fired = false;
        }
        tail
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

/// The short level: the last values (as many as `level`), the window of
/// their means and that surprise's likelihood fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ShortLevel {
    recent: VecDeque<f64>,
    window: RollingMoments,
    fit: Surprise,
}

impl ShortLevel {
    fn new(window: usize, average: usize) -> Self {
        ShortLevel {
            recent: VecDeque::new(),
            window: RollingMoments::new(window),
            fit: Surprise::new(average),
        }
    }

    /// The mean of the last `count` values after `value`, once there are
    /// that many.
    fn mean_after(&mut self, value: f64, count: usize) -> Option<f64> {
        self.recent.push_back(value);
        while self.recent.len() > count {
            self.recent.pop_front();
        }
        // Summed afresh (a handful of values): no running sum to drift.
        (self.recent.len() == count).then(|| self.recent.iter().sum::<f64>() / count as f64)
    }
}

/// One raw surprise's running mean of the last `average` scores and the
/// normal fit of about the last `history` such means. The means are kept as
/// sums per bucket of `refit_every` (a refit happens as a bucket fills), so
/// the state is a few hundred numbers however long the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Surprise {
    average: usize,
    recent: VecDeque<f64>,
    recent_sum: f64,
    /// (count, sum, sum of squares) of the means, oldest bucket first.
    buckets: VecDeque<(usize, f64, f64)>,
    fit: Option<(f64, f64)>,
}

impl Surprise {
    fn new(average: usize) -> Self {
        Surprise {
            average: average.max(1),
            recent: VecDeque::new(),
            recent_sum: 0.0,
            buckets: VecDeque::new(),
            fit: None,
        }
    }

    /// How many fitted standard deviations the recent mean raw score is
    /// from the fitted mean after `raw`; its tail is [`normal_tail`].
    fn distance(&mut self, raw: f64, history: usize, refit_every: usize) -> f64 {
        self.recent.push_back(raw);
        self.recent_sum += raw;
        if self.recent.len() > self.average {
            self.recent_sum -= self.recent.pop_front().unwrap_or(0.0);
        }
        let mean = self.recent_sum / self.recent.len() as f64;
        let size = refit_every.max(1);
        if self.buckets.back().is_none_or(|(n, _, _)| *n >= size) {
            self.buckets.push_back((0, 0.0, 0.0));
            let kept = history.max(2).div_ceil(size).max(1);
            while self.buckets.len() > kept {
                self.buckets.pop_front();
            }
        }
        if let Some((n, sum, sum_sq)) = self.buckets.back_mut() {
            *n += 1;
            *sum += mean;
            *sum_sq += mean * mean;
        }
        let filled = self.buckets.back().is_some_and(|(n, _, _)| *n >= size);
        if self.fit.is_none() || filled {
            let (n, sum, sum_sq) = self
                .buckets
                .iter()
                .fold((0usize, 0.0, 0.0), |(n, s, q), (bn, bs, bq)| {
                    (n + bn, s + bs, q + bq)
                });
            let n = n.max(1) as f64;
            let fit_mean = sum / n;
            let variance = (sum_sq / n - fit_mean * fit_mean).max(0.0);
            self.fit = Some((fit_mean.max(MIN_MEAN), variance.max(MIN_VARIANCE).sqrt()));
        }
        let (fit_mean, fit_sd) = self.fit.unwrap_or((MIN_MEAN, MIN_VARIANCE.sqrt()));
        // Symmetric tail: a surprise far below its usual level is rare too
        // (a series that goes flat).
        (mean - fit_mean).abs() / fit_sd
    }
}

/// The upper tail probability of a standard normal beyond `distance`.
fn normal_tail(distance: f64) -> f64 {
    0.5 * erfc(distance / std::f64::consts::SQRT_2)
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
///
/// The running sums are of the values minus `shift` and are recomputed
/// from the window once per `capacity` pushes (amortized O(1)), `shift`
/// then becoming the newest value. Plain running sums of `x` and `x²` keep
/// the rounding left over from values that have long left the window: after
/// a spike of 1e9 a window of zeros showed a spurious spread of ~1e-7 (and
/// the detector fired or not on that noise), and a level of 1e6 ± 1 lost
/// its variance to cancellation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RollingMoments {
    values: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sum_sq: f64,
    #[serde(default)]
    shift: f64,
    #[serde(default)]
    since_refresh: usize,
}

impl RollingMoments {
    fn new(capacity: usize) -> Self {
        RollingMoments {
            values: VecDeque::with_capacity(capacity),
            capacity,
            sum: 0.0,
            sum_sq: 0.0,
            shift: 0.0,
            since_refresh: 0,
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn push(&mut self, value: f64) {
        if self.values.len() == self.capacity {
            if let Some(old) = self.values.pop_front() {
                let old = old - self.shift;
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.values.push_back(value);
        self.since_refresh += 1;
        if self.since_refresh >= self.capacity {
            self.since_refresh = 0;
            self.shift = value;
            (self.sum, self.sum_sq) = self.values.iter().fold((0.0, 0.0), |(s, q), v| {
                let d = v - value;
                (s + d, q + d * d)
            });
        } else {
            let d = value - self.shift;
            self.sum += d;
            self.sum_sq += d * d;
        }
    }

    fn mean_and_sd(&self) -> Option<(f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let n = self.values.len() as f64;
        let offset = self.sum / n;
        let variance = (self.sum_sq / n - offset * offset).max(0.0);
        Some((self.shift + offset, variance.sqrt()))
    }

    /// The z-score of `value` against the window in `direction` (0 until
    /// the window has enough points). A flat window gives 0 for its own
    /// value and a huge z for any other (capped later), never a NaN.
    fn z(&self, value: f64, direction: Direction) -> f64 {
        let z = match self.mean_and_sd() {
            Some((mean, sd)) if self.len() >= MIN_Z_POINTS => (value - mean) / sd.max(f64::EPSILON),
            _ => 0.0,
        };
        match direction {
            Direction::Up => z.max(0.0),
            Direction::Down => (-z).max(0.0),
            Direction::Both => z.abs(),
        }
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

    /// Hourly points following a daily shape, with pseudo-noise.
    fn daily(n: usize) -> Vec<Point> {
        steady(n)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let hour = (i % 24) as f64;
                let shape = 40.0 * (std::f64::consts::PI * hour / 12.0).sin().max(0.0);
                Point::new(i as i64 * 3600, p.value + shape)
            })
            .collect()
    }

    #[test]
    fn a_missing_daily_peak_is_found_by_the_seasonal_surprise_only() {
        // Four weeks of a daily cycle; on day 22 the peak does not come
        // (values stay inside the range seen, no jump bigger than usual).
        let mut points = daily(24 * 28);
        for point in points.iter_mut().skip(24 * 22).take(24) {
            point.value = 50.0 + (point.value - 50.0) * 0.3;
        }
        let params = LikelihoodParams {
            learning: Some(24 * 8),
            ..LikelihoodParams::default()
        };
        let found = anomalies(&likelihood(&points, &params, Direction::Both));
        assert!(!found.is_empty(), "{found:?}");
        assert!(
            found.iter().all(|i| (24 * 22..24 * 24).contains(i)),
            "{found:?}"
        );
        let blind = LikelihoodParams {
            season_secs: 0,
            ..params
        };
        assert!(anomalies(&likelihood(&points, &blind, Direction::Both)).is_empty());
        // The same cycle without the missing peak pages nothing.
        assert!(anomalies(&likelihood(&daily(24 * 28), &params, Direction::Both)).is_empty());
    }

    #[test]
    fn a_red_fires_again_only_after_the_tail_calmed_down() {
        let state_params = LikelihoodParams {
            rearm: 0.01,
            ..LikelihoodParams::default()
        };
        let mut state = LikelihoodDetector::new(state_params, Direction::Both, 0);
        let kept: Vec<f64> = [1e-7, 1e-2 / 2.0, 1e-7, 0.5, 1e-7]
            .into_iter()
            .map(|tail| state.one_detection_per_event(tail))
            .collect();
        // The second red follows a tail that never got above 1e-2.
        assert_eq!(kept, vec![1e-7, 5e-3, YELLOW, 0.5, 1e-7]);
    }

    #[test]
    fn a_flat_series_pages_nothing_and_scores_are_finite() {
        let points: Vec<Point> = (0..3000).map(|i| Point::new(i * 60, 7.0)).collect();
        let scored = likelihood(&points, &LikelihoodParams::default(), Direction::Both);
        assert!(scored.iter().all(|s| !s.is_anomaly));
        assert!(scored.iter().filter_map(|s| s.score).all(f64::is_finite));
    }

    #[test]
    fn a_small_sustained_shift_is_found_by_the_short_level() {
        // A shift of about one noise sd (uniform noise in [-1, 1]), inside
        // the range already seen: no single value is unusual.
        let mut points = steady(4000);
        points[100].value = 60.0;
        points[101].value = 40.0;
        for point in points.iter_mut().skip(2500) {
            point.value += 0.6;
        }
        let params = LikelihoodParams::default();
        let found = anomalies(&likelihood(&points, &params, Direction::Both));
        assert!(
            !found.is_empty() && found.iter().all(|i| (2500..2600).contains(i)),
            "{found:?}"
        );
        let without = LikelihoodParams { level: 0, ..params };
        let blind = anomalies(&likelihood(&points, &without, Direction::Both));
        assert!(blind.is_empty(), "{blind:?}");
        // A drop is not a rise.
        let down = anomalies(&likelihood(&points, &params, Direction::Down));
        assert!(down.is_empty(), "{down:?}");
    }

    #[test]
    fn rolling_moments_forget_what_left_the_window() {
        let mut window = RollingMoments::new(10);
        window.push(1e9);
        for _ in 0..25 {
            window.push(0.0);
        }
        assert_eq!(window.mean_and_sd(), Some((0.0, 0.0)));
        // A high level with a small spread keeps its spread.
        for i in 0..25 {
            window.push(1e9 + if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let (mean, sd) = window.mean_and_sd().unwrap();
        assert!(
            (mean - 1e9).abs() < 1e-3 && (sd - 1.0).abs() < 1e-6,
            "{mean} {sd}"
        );
    }

    #[test]
    fn a_state_stored_before_the_short_level_loads_and_learns_it() {
        let params = LikelihoodParams::default();
        let mut detector = LikelihoodDetector::new(params, Direction::Both, 10);
        let points = steady(400);
        for point in &points[..200] {
            detector.push(point);
        }
        let mut state = serde_json::to_value(&detector).unwrap();
        let object = state.as_object_mut().unwrap();
        object.remove("level");
        for window in object["windows"].as_array_mut().unwrap() {
            let window = window.as_object_mut().unwrap();
            window.remove("shift");
            window.remove("since_refresh");
        }
        let mut old: LikelihoodDetector = serde_json::from_value(state).unwrap();
        assert!(old.level.is_none());
        for point in &points[200..] {
            assert!(!old.push(point).is_anomaly);
        }
        assert!(old.level.is_some());
    }

    #[test]
    fn the_log_scale_puts_one_in_100000_at_one_half() {
        assert!((log_scale(1e-5) - 0.5).abs() < 1e-6);
        assert!(log_scale(0.5) < 0.05);
        assert!(log_scale(1e-10) > 0.95);
    }
}
