//! Backtest scoring of a detector's verdicts against labelled incidents.

use serde::{Deserialize, Serialize};

use crate::types::Scored;

/// A labelled incident, `[start, end)` in the series' time unit. An incident
/// with `end <= start` is taken as the instant `[start, start + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub start: i64,
    pub end: i64,
}

impl Incident {
    /// The window in which an alert counts for this incident.
    fn window(&self, tolerance: i64) -> (i64, i64) {
        let end = self.end.max(self.start.saturating_add(1));
        (
            self.start.saturating_sub(tolerance),
            end.saturating_add(tolerance),
        )
    }
}

/// How a detector did on labelled history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Points judged (all of them, warming up or not).
    pub points: usize,
    /// Points flagged anomalous.
    pub alert_points: usize,
    /// Maximal runs of consecutive anomalous points: what a pager would see.
    pub episodes: usize,
    /// Episodes with no point inside any incident window (with tolerance).
    pub false_positives: usize,
    /// Anomalous points outside every incident window.
    pub false_positive_points: usize,
    /// Points outside every incident window.
    pub negative_points: usize,
    /// `false_positive_points / negative_points` (0 when no negatives).
    pub fpr: f64,
    pub incidents: usize,
    /// Incidents with at least one anomalous point in `[start - tol, end + tol)`.
    pub detected: usize,
    /// `detected / incidents`; 1.0 when there are no incidents.
    pub power: f64,
    /// Episode precision: `(episodes - false_positives) / episodes`; 1.0
    /// when there are no episodes.
    pub precision: f64,
    /// Harmonic mean of `precision` and `power`.
    pub f1: f64,
}

impl Score {
    fn from_counts(c: Counts) -> Score {
        let fpr = if c.negative_points == 0 {
            0.0
        } else {
            c.false_positive_points as f64 / c.negative_points as f64
        };
        let power = if c.incidents == 0 {
            1.0
        } else {
            c.detected as f64 / c.incidents as f64
        };
        let precision = if c.episodes == 0 {
            1.0
        } else {
            (c.episodes - c.false_positives) as f64 / c.episodes as f64
        };
        let f1 = if precision + power > 0.0 {
            2.0 * precision * power / (precision + power)
        } else {
            0.0
        };
        Score {
            points: c.points,
            alert_points: c.alert_points,
            episodes: c.episodes,
            false_positives: c.false_positives,
            false_positive_points: c.false_positive_points,
            negative_points: c.negative_points,
            fpr,
            incidents: c.incidents,
            detected: c.detected,
            power,
            precision,
            f1,
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            points: self.points,
            alert_points: self.alert_points,
            episodes: self.episodes,
            false_positives: self.false_positives,
            false_positive_points: self.false_positive_points,
            negative_points: self.negative_points,
            incidents: self.incidents,
            detected: self.detected,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    points: usize,
    alert_points: usize,
    episodes: usize,
    false_positives: usize,
    false_positive_points: usize,
    negative_points: usize,
    incidents: usize,
    detected: usize,
}

/// Scores `scored` (one series, in time order) against `incidents`.
pub fn score(scored: &[Scored], incidents: &[Incident], tolerance_secs: i64) -> Score {
    let tol = tolerance_secs.max(0);
    // The union of incident windows, for "is this point negative".
    let mut windows: Vec<(i64, i64)> = incidents.iter().map(|i| i.window(tol)).collect();
    windows.sort_unstable();
    let mut union: Vec<(i64, i64)> = Vec::with_capacity(windows.len());
    for &(s, e) in &windows {
        match union.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => union.push((s, e)),
        }
    }
    let in_union = |ts: i64| {
        let i = union.partition_point(|&(s, _)| s <= ts);
        i > 0 && ts < union[i - 1].1
    };

    let mut c = Counts {
        points: scored.len(),
        incidents: incidents.len(),
        ..Counts::default()
    };
    let mut in_episode = false;
    let mut episode_hit = false;
    for s in scored {
        let positive = in_union(s.ts);
        if !positive {
            c.negative_points += 1;
        }
        if s.is_anomaly {
            c.alert_points += 1;
            if !positive {
                c.false_positive_points += 1;
            }
            if !in_episode {
                in_episode = true;
                episode_hit = false;
                c.episodes += 1;
            }
            episode_hit |= positive;
        } else if in_episode {
            in_episode = false;
            if !episode_hit {
                c.false_positives += 1;
            }
        }
    }
    if in_episode && !episode_hit {
        c.false_positives += 1;
    }

    let mut alert_ts: Vec<i64> = scored
        .iter()
        .filter(|s| s.is_anomaly)
        .map(|s| s.ts)
        .collect();
    alert_ts.sort_unstable();
    c.detected = incidents
        .iter()
        .filter(|i| {
            let (s, e) = i.window(tol);
            let k = alert_ts.partition_point(|&t| t < s);
            k < alert_ts.len() && alert_ts[k] < e
        })
        .count();
    Score::from_counts(c)
}

/// Sums the scores of several series (e.g. the groups of one rule) and
/// recomputes the ratios from the summed counts.
pub fn merge(scores: &[Score]) -> Score {
    let mut c = Counts::default();
    for s in scores {
        let x = s.counts();
        c.points += x.points;
        c.alert_points += x.alert_points;
        c.episodes += x.episodes;
        c.false_positives += x.false_positives;
        c.false_positive_points += x.false_positive_points;
        c.negative_points += x.negative_points;
        c.incidents += x.incidents;
        c.detected += x.detected;
    }
    Score::from_counts(c)
}
