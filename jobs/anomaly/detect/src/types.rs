//! The inputs and outputs of [`crate::detect`]: points, methods and their
//! parameters, and the per-point verdicts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Bucket start, unix seconds (UTC). Series whose timestamps are plain
    /// indices (1, 2, 3, …) are fine: they are taken as-is.
    pub ts: i64,
    /// The measured value. Non-finite values are not scored (see [`Scored`]).
    pub value: f64,
    /// For ratio series, the number of trials behind `value` (used by
    /// [`Noise::Binomial`]); 0 means unknown.
    #[serde(default)]
    pub weight: f64,
}

impl Point {
    /// A point with unknown weight.
    pub fn new(ts: i64, value: f64) -> Self {
        Point {
            ts,
            value,
            weight: 0.0,
        }
    }
}

/// Which deviations count as anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the baseline.
    Up,
    /// Only values below the baseline.
    Down,
    /// Either side.
    Both,
}

/// A lower bound on the scale from what the series measures, so a run of
/// identical buckets cannot make the next ordinary one look impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Noise {
    /// No floor beyond a tiny epsilon relative to the level.
    None,
    /// Counts: the scale is at least `sqrt(level)`. `weight` is ignored.
    Poisson,
    /// Ratios in [0, 1] over `weight` trials: the scale is at least
    /// `sqrt(p(1-p)/n)` with `p` smoothed as `(p·n + 1)/(n + 2)` so that a
    /// level of exactly 0 or 1 still has a floor. No floor when `weight` is 0.
    Binomial,
}

/// The finest seasonality the adaptive method models. Slots with too few
/// samples fall back to the next coarser one (hour-of-week → hour-of-day →
/// one global slot), and a series spanning less than two days is treated as
/// [`Season::None`] whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// `day_of_week * 24 + hour` (UTC): 168 slots.
    HourOfWeek,
    /// Hour of day (UTC): 24 slots.
    HourOfDay,
    /// One slot.
    None,
}

/// Parameters of [`Method::Adaptive`]. Missing fields take their
/// [`Default`] when deserialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveParams {
    /// EWMA weight of a new value in its slot's level, in (0, 1].
    pub alpha: f64,
    /// Robust z threshold (> 0); also the winsorizing bound for updates.
    pub z: f64,
    /// Finest seasonality.
    pub season: Season,
    /// Floor on the scale from the kind of series.
    pub noise: Noise,
    /// Residuals a slot must have before it is used to score (at least 2 are
    /// always required; capped at `mad_window`).
    pub min_samples: usize,
    /// Residuals kept per slot for the MAD.
    pub mad_window: usize,
    /// Values below this never alarm upward (e.g. a minimum count).
    pub min_value: f64,
    /// After this many consecutive points beyond the threshold on the same
    /// side, the baseline is moved to the new level (a level shift is
    /// adopted). 0 disables adoption.
    pub shift_after: usize,
    /// Excuse anomalies that recur at the same time of day (the two days
    /// before) or of the week (the week before): scheduled batches are
    /// normal once seen. See `recurrence.rs`.
    pub recurrence: bool,
}

impl Default for AdaptiveParams {
    fn default() -> Self {
        AdaptiveParams {
            alpha: 0.1,
            z: 4.0,
            season: Season::HourOfWeek,
            noise: Noise::None,
            min_samples: 12,
            mad_window: 64,
            min_value: f64::MIN,
            shift_after: 12,
            recurrence: true,
        }
    }
}

/// Why a set of [`AdaptiveParams`] was rejected by [`AdaptiveParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The offending field.
    pub field: &'static str,
    /// What is accepted.
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ParamError {}

/// The largest `mad_window` accepted: larger rings only cost time.
pub const MAX_MAD_WINDOW: usize = 4096;
/// The largest `shift_after` accepted.
pub const MAX_SHIFT_AFTER: usize = 100_000;

impl AdaptiveParams {
    /// Every problem with these parameters. [`crate::detect`] does not fail on
    /// bad parameters; it clamps them (see [`AdaptiveParams::sanitized`]), so
    /// call this where parameters enter from configuration.
    pub fn validate(&self) -> Result<(), Vec<ParamError>> {
        let mut problems = Vec::new();
        let mut bad = |field, message: &str| {
            problems.push(ParamError {
                field,
                message: message.to_string(),
            })
        };
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            bad("alpha", "must be in (0, 1]");
        }
        if !(self.z.is_finite() && self.z > 0.0) {
            bad("z", "must be a finite number above 0");
        }
        if self.mad_window < 2 || self.mad_window > MAX_MAD_WINDOW {
            bad("mad_window", &format!("must be in 2..={MAX_MAD_WINDOW}"));
        }
        if self.min_value.is_nan() {
            bad("min_value", "must be a number");
        }
        if self.shift_after > MAX_SHIFT_AFTER {
            bad("shift_after", &format!("must be at most {MAX_SHIFT_AFTER}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// These parameters forced into their valid ranges (what `detect` uses).
    pub fn sanitized(&self) -> AdaptiveParams {
        let alpha = if self.alpha.is_nan() {
            AdaptiveParams::default().alpha
        } else {
            self.alpha.clamp(1e-6, 1.0)
        };
        let z = if self.z.is_finite() && self.z > 0.0 {
            self.z
        } else {
            AdaptiveParams::default().z
        };
        let mad_window = self.mad_window.clamp(2, MAX_MAD_WINDOW);
        AdaptiveParams {
            alpha,
            z,
            season: self.season,
            noise: self.noise,
            min_samples: self.min_samples.clamp(2, mad_window),
            mad_window,
            min_value: if self.min_value.is_nan() {
                f64::MIN
            } else {
                self.min_value
            },
            shift_after: self.shift_after.min(MAX_SHIFT_AFTER),
            recurrence: self.recurrence,
        }
    }
}

/// How a point is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Up: `value > multiple × mean` of the values in `[ts - window_secs, ts)`;
    /// Down: `value < mean / multiple`. The seed's "baseline×3 over 10m".
    MeanMultiple { multiple: f64, window_secs: i64 },
    /// As [`Method::MeanMultiple`] with the 95th percentile (nearest rank) of
    /// the trailing window. The seed's "p95×2 over 15m".
    P95Multiple { multiple: f64, window_secs: i64 },
    /// `|value - mean| > sigmas × std` (sample standard deviation) over the
    /// previous `window` finite points: the classic rolling 3-sigma rule.
    RollingSigma { sigmas: f64, window: usize },
    /// Seasonal EWMA level with a robust (MAD) scale; see the crate docs.
    Adaptive(AdaptiveParams),
    /// How unusual the recent surprise is against the series' own history,
    /// plus new extremes; see `likelihood.rs`.
    Likelihood(crate::LikelihoodParams),
}

/// The verdict on one input point (same order and length as the input).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub ts: i64,
    pub value: f64,
    /// What the value was compared with (mean, p95 or predicted level).
    pub baseline: Option<f64>,
    /// Multiple methods: `value / baseline` when the baseline is positive.
    /// Sigma and adaptive methods: the signed z-score.
    /// `None` while warming up and for non-finite values.
    pub score: Option<f64>,
    pub is_anomaly: bool,
    /// Too little history to judge: never anomalous. A non-finite value has
    /// `score: None` and `warming_up: false`.
    pub warming_up: bool,
}

impl Scored {
    pub(crate) fn warming(p: &Point) -> Self {
        Scored {
            ts: p.ts,
            value: p.value,
            baseline: None,
            score: None,
            is_anomaly: false,
            warming_up: true,
        }
    }

    pub(crate) fn not_finite(p: &Point) -> Self {
        Scored {
            ts: p.ts,
            value: p.value,
            baseline: None,
            score: None,
            is_anomaly: false,
            warming_up: false,
        }
    }
}

impl Direction {
    /// Whether a signed deviation `score` beyond `threshold` counts.
    pub(crate) fn exceeds(self, score: f64, threshold: f64) -> bool {
        match self {
            Direction::Up => score > threshold,
            Direction::Down => score < -threshold,
            Direction::Both => score.abs() > threshold,
        }
    }
}
