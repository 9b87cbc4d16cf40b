//! From judged points to episodes: what pages once.
//!
//! An episode opens at a point at or above the open level (for the
//! likelihood method its threshold: the minimum anomaly likelihood to page),
//! stays open while points reach the close level (hysteresis: a score
//! sliding back a little does not end it), and closes only after a quiet
//! `refractory` period: a new surge within that time continues the same
//! episode (the alert stays open, nobody is paged twice for one incident
//! that flickers). The tracker is a small serializable state, so a run that
//! judges only new points carries episodes over from the run before.

use serde::{Deserialize, Serialize};

use crate::types::Scored;

/// How points become episodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeParams {
    /// A point opens an episode when it is anomalous (its method's
    /// decision) and its score reaches this (`None`: the decision alone).
    pub open: Option<f64>,
    /// An open episode goes on through points scoring at least this (in the
    /// method's score scale), or anomalous ones.
    pub close: Option<f64>,
    /// Seconds without a point at the close level before an episode ends.
    pub refractory_secs: i64,
}

/// One episode: its first and last hot points and its strongest one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// First point's timestamp (the page's time).
    pub start: i64,
    /// Last point that kept it open.
    pub last: i64,
    /// The strongest point: timestamp, value, score.
    pub peak_ts: i64,
    pub peak_value: f64,
    pub peak_score: f64,
    /// Points that kept it open.
    pub points: u32,
    /// Whether it is still open after the last point seen.
    pub open: bool,
}

/// The episode in progress between points (and between runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeTracker {
    current: Option<Episode>,
}

impl EpisodeTracker {
    /// The episode still open, if any.
    pub fn open_episode(&self) -> Option<&Episode> {
        self.current.as_ref()
    }

    /// Takes one judged point; returns the episode it closed, if any (a
    /// closed episode is returned once, with `open: false`).
    pub fn push(&mut self, point: &Scored, params: &EpisodeParams) -> Option<Episode> {
        let score = point.score.map_or(0.0, f64::abs);
        let hot = point.is_anomaly && params.open.is_none_or(|open| score >= open);
        let warm = point.is_anomaly || params.close.is_some_and(|close| score >= close);
        let mut closed = None;
        if let Some(episode) = &mut self.current {
            if warm {
                episode.last = point.ts;
                episode.points += 1;
                if score > episode.peak_score {
                    episode.peak_ts = point.ts;
                    episode.peak_value = point.value;
                    episode.peak_score = score;
                }
                return None;
            }
            if point.ts - episode.last < params.refractory_secs {
                return None;
            }
            let mut done = *episode;
            done.open = false;
            closed = Some(done);
            self.current = None;
        }
        if hot {
            self.current = Some(Episode {
                start: point.ts,
                last: point.ts,
                peak_ts: point.ts,
                peak_value: point.value,
                peak_score: score,
                points: 1,
                open: true,
            });
        }
        closed
    }
}

/// Every episode of `scored` (in order; the last one may still be open),
/// starting from `tracker`'s state and leaving it at the end.
pub fn episodes(
    scored: &[Scored],
    params: &EpisodeParams,
    tracker: &mut EpisodeTracker,
) -> Vec<Episode> {
    let mut out: Vec<Episode> = scored
        .iter()
        .filter_map(|point| tracker.push(point, params))
        .collect();
    out.extend(tracker.open_episode().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, score: f64, threshold: f64) -> Scored {
        Scored {
            ts,
            value: score * 10.0,
            baseline: Some(0.0),
            score: Some(score),
            is_anomaly: score >= threshold,
            warming_up: false,
        }
    }

    fn scores(values: &[f64]) -> Vec<Scored> {
        values
            .iter()
            .enumerate()
            .map(|(i, s)| point(i as i64 * 60, *s, 0.5))
            .collect()
    }

    const PARAMS: EpisodeParams = EpisodeParams {
        open: Some(0.5),
        close: Some(0.3),
        refractory_secs: 300,
    };

    #[test]
    fn a_flickering_surge_is_one_episode_and_a_later_one_is_another() {
        // Hot, sliding to warm, quiet 2 minutes, hot again: one episode.
        // Then 10 quiet minutes, and a new surge.
        let mut values = vec![0.0, 0.6, 0.4, 0.35, 0.1, 0.1, 0.9, 0.1];
        values.extend([0.0; 10]);
        values.extend([0.7, 0.0]);
        let mut tracker = EpisodeTracker::default();
        let found = episodes(&scores(&values), &PARAMS, &mut tracker);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].start, found[0].last), (60, 360));
        assert_eq!(
            (found[0].peak_ts, found[0].points, found[0].open),
            (360, 4, false)
        );
        assert_eq!((found[1].start, found[1].open), (18 * 60, true));
    }

    #[test]
    fn warm_points_alone_open_nothing_and_the_open_level_can_be_above_the_decision() {
        let mut tracker = EpisodeTracker::default();
        assert!(episodes(&scores(&[0.3, 0.45, 0.4, 0.0]), &PARAMS, &mut tracker).is_empty());
        let strict = EpisodeParams {
            open: Some(0.8),
            ..PARAMS
        };
        let found = episodes(&scores(&[0.6, 0.0, 0.0, 0.9]), &strict, &mut tracker);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, 180);
    }

    #[test]
    fn the_tracker_carries_an_open_episode_into_the_next_batch() {
        let all = scores(&[0.0, 0.7, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6]);
        let mut whole = EpisodeTracker::default();
        let at_once = episodes(&all, &PARAMS, &mut whole);
        let mut split = EpisodeTracker::default();
        let first = episodes(&all[..3], &PARAMS, &mut split);
        assert!(first.len() == 1 && first[0].open);
        // Carried through serde, as a run's state is.
        let mut split: EpisodeTracker =
            serde_json::from_str(&serde_json::to_string(&split).unwrap()).unwrap();
        let second = episodes(&all[3..], &PARAMS, &mut split);
        assert_eq!(second, at_once);
        assert_eq!(split, whole);
    }

    #[test]
    fn without_levels_the_decisions_alone_make_episodes() {
        let plain = EpisodeParams {
            open: None,
            close: None,
            refractory_secs: 0,
        };
        let mut tracker = EpisodeTracker::default();
        let found = episodes(&scores(&[0.6, 0.7, 0.1, 0.9]), &plain, &mut tracker);
        assert_eq!(
            found.iter().map(|e| (e.start, e.last)).collect::<Vec<_>>(),
            vec![(0, 60), (180, 180)]
        );
    }
}
