//! Choosing alpha and z on labelled history, never below a detection-power
//! guardrail.

use serde::{Deserialize, Serialize};

use crate::detect;
use crate::score::{merge, score, Incident, Score};
use crate::types::{AdaptiveParams, Direction, Method, Point};

/// The candidates [`tune`] tries: every alpha with every z.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grid {
    pub alphas: Vec<f64>,
    pub zs: Vec<f64>,
}

impl Default for Grid {
    /// Alphas from slow (memory ≈ 50 points) to fast (≈ 2–3 points); z from
    /// the textbook 3 to 8, past which nothing but gross outliers remain.
    fn default() -> Self {
        Grid {
            alphas: vec![0.02, 0.05, 0.1, 0.2, 0.4],
            zs: vec![3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0],
        }
    }
}

/// The chosen parameters and how they scored over all the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub params: AdaptiveParams,
    pub score: Score,
    /// Candidates evaluated.
    pub tried: usize,
}

/// What [`tune`] concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TuneOutcome {
    Tuned(Tuned),
    /// No candidate reached `min_power`; keep the configured parameters.
    Refused {
        best_power: f64,
        min_power: f64,
        reason: String,
    },
}

/// Whether `a` beats `b`: fewer false-positive episodes, then higher power,
/// then higher z (the more conservative of equals).
fn better(a: &(AdaptiveParams, Score), b: &(AdaptiveParams, Score)) -> bool {
    let key = |(p, s): &(AdaptiveParams, Score)| (s.false_positives, s.power, p.z);
    let (fa, pa, za) = key(a);
    let (fb, pb, zb) = key(b);
    fa < fb || (fa == fb && (pa > pb || (pa == pb && za > zb)))
}

/// Tunes `alpha` and `z` of `base` on labelled history: `series` are the
/// groups of one rule, each with its incidents. Among candidates whose
/// merged detection power is at least `min_power`, picks the one with the
/// fewest false-positive episodes (ties: higher power, then higher z, then
/// the earlier in the grid). Refuses when no candidate reaches `min_power`,
/// when the grid is empty, and when there are no labelled incidents at all
/// (power cannot be measured, so the guardrail could not be checked).
pub fn tune(
    series: &[(&[Point], &[Incident])],
    base: &AdaptiveParams,
    direction: Direction,
    grid: &Grid,
    min_power: f64,
    tolerance_secs: i64,
) -> TuneOutcome {
    let incidents: usize = series.iter().map(|(_, i)| i.len()).sum();
    if incidents == 0 {
        return TuneOutcome::Refused {
            best_power: 0.0,
            min_power,
            reason: "no labelled incidents: detection power cannot be measured".into(),
        };
    }
    let mut best: Option<(AdaptiveParams, Score)> = None;
    let mut best_power = 0.0f64;
    let mut tried = 0;
    let mut scores = Vec::with_capacity(series.len());
    for &alpha in &grid.alphas {
        for &z in &grid.zs {
            let params = AdaptiveParams {
                alpha,
                z,
                ..base.clone()
            };
            if params.validate().is_err() {
                continue;
            }
            tried += 1;
            let method = Method::Adaptive(params.clone());
            scores.clear();
            for (points, labelled) in series {
                scores.push(score(
                    &detect(points, &method, direction),
                    labelled,
                    tolerance_secs,
                ));
            }
            let merged = merge(&scores);
            best_power = best_power.max(merged.power);
            if merged.power < min_power {
                continue;
            }
            let candidate = (params, merged);
            if best.as_ref().is_none_or(|b| better(&candidate, b)) {
                best = Some(candidate);
            }
        }
    }
    match best {
        Some((params, score)) => TuneOutcome::Tuned(Tuned {
            params,
            score,
            tried,
        }),
        None if tried == 0 => TuneOutcome::Refused {
            best_power,
            min_power,
            reason: "the grid has no valid (alpha, z) candidate".into(),
        },
        None => TuneOutcome::Refused {
            best_power,
            min_power,
            reason: format!(
                "none of {tried} candidates reached detection power {min_power:.3} \
                 (best {best_power:.3}) on {incidents} labelled incidents"
            ),
        },
    }
}
