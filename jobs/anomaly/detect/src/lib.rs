//! The math of patrol's anomaly job, free of I/O.
//!
//! - [`detect`] judges every point of a series with one [`Method`]: the
//!   static references (a multiple of the trailing mean or p95, the rolling
//!   n-sigma rule) or the adaptive method — a seasonal (hour-of-week →
//!   hour-of-day → global) EWMA level blended with a global one by their
//!   recent errors, a robust scale `1.4826 × MAD` of the residuals per slot
//!   with floors, winsorized updates, and adoption of level shifts — or the
//!   likelihood method (`likelihood.rs`: how rare the recent surprise is
//!   against the series' own history, plus new extremes).
//! - [`score`] and [`merge`] backtest verdicts against labelled incidents.
//! - [`tune`] picks alpha and z with the fewest false positives among the
//!   candidates that keep detection power at or above a guardrail, and
//!   refuses otherwise.
//!
//! See README.md in this folder for why each floor and fallback is there.

mod adaptive;
mod baselines;
pub mod episodes;
mod likelihood;
mod recurrence;
pub mod robust;
mod score;
mod tune;
mod types;

pub use episodes::{EpisodeParams, EpisodeTracker};
pub use likelihood::{probation, LikelihoodDetector, LikelihoodParams};
pub use score::{merge, score, Incident, Score};
pub use tune::{tune, Grid, TuneOutcome, Tuned};
pub use types::{
    AdaptiveParams, Direction, Method, Noise, ParamError, Point, Scored, Season, MAX_MAD_WINDOW,
    MAX_SHIFT_AFTER,
};

/// Judges every point of `points` (sorted by `ts`; gaps and irregular
/// spacing are fine) with `method`. The result has one entry per input
/// point, in order. Non-finite values are never anomalous, are reported with
/// `score: None, warming_up: false`, and do not enter any baseline.
/// Adaptive parameters out of range are clamped (see
/// [`AdaptiveParams::sanitized`]); validate them where they are configured.
pub fn detect(points: &[Point], method: &Method, direction: Direction) -> Vec<Scored> {
    match method {
        Method::MeanMultiple {
            multiple,
            window_secs,
        } => baselines::mean_multiple(points, *multiple, *window_secs, direction),
        Method::P95Multiple {
            multiple,
            window_secs,
        } => baselines::p95_multiple(points, *multiple, *window_secs, direction),
        Method::RollingSigma { sigmas, window } => {
            baselines::rolling_sigma(points, *sigmas, *window, direction)
        }
        Method::Adaptive(params) => adaptive::adaptive(points, params, direction),
        Method::Likelihood(params) => likelihood::likelihood(points, params, direction),
    }
}

/// The median spacing of `points` in their time unit (at least 1): the
/// bucket width of a metric series.
pub fn typical_step(points: &[Point]) -> i64 {
    let mut steps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].ts - w[0].ts)
        .filter(|s| *s > 0)
        .collect();
    if steps.is_empty() {
        return 1;
    }
    let middle = steps.len() / 2;
    *steps.select_nth_unstable(middle).1
}
