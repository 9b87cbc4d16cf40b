//! The alert budget: at most `pages_per_day` episodes of one rule or series
//! page per UTC day (by episode start). The rest are held back, and held
//! back loudly: one summary finding per day says how many (never silent).
//!
//! Decisions are kept in job state (`budget/<id>`), because a run that
//! judges only new points no longer sees the day's earlier episodes, and an
//! episode already decided must keep its decision (a paged one stays paged
//! while it is open, a held one stays held).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Days of decisions kept, counted back from the newest episode's day: an
/// episode open across midnight still finds its decision.
const DAYS_KEPT: i64 = 3;

/// What was decided per UTC day (`YYYY-MM-DD`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    days: BTreeMap<String, DayDecisions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DayDecisions {
    /// The episodes that paged.
    paged: Vec<String>,
    /// How many were held back.
    held: u64,
    /// The latest episode (start in ms, then id) decided: earlier ones are
    /// not counted again when a run re-derives them.
    decided_until: Option<(i64, String)>,
}

/// A day on which episodes were held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDay {
    pub day: String,
    pub held: u64,
    pub limit: u32,
    /// Whether this run held back more of them.
    pub grew: bool,
}

/// The budget's answer for one run's episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Per episode given (same order): page it or not.
    pub page: Vec<bool>,
    /// Days with anything held back, oldest first.
    pub held: Vec<HeldDay>,
}

fn day_of(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

impl BudgetState {
    /// Decides for `episodes` (start in ms and an id unique among the
    /// episodes of one start, any order): an episode decided before keeps
    /// its decision; a new one pages while its day has paged fewer than
    /// `limit`.
    pub fn decide(&mut self, episodes: &[(i64, String)], limit: u32) -> Verdict {
        let mut order: Vec<usize> = (0..episodes.len()).collect();
        order.sort_by(|&a, &b| episodes[a].cmp(&episodes[b]));
        let mut page = vec![false; episodes.len()];
        let mut grew: BTreeMap<String, bool> = BTreeMap::new();
        for i in order {
            let episode = &episodes[i];
            let day = self.days.entry(day_of(episode.0)).or_default();
            if day
                .decided_until
                .as_ref()
                .is_some_and(|until| episode <= until)
            {
                page[i] = day.paged.contains(&episode.1);
                continue;
            }
            day.decided_until = Some(episode.clone());
            if day.paged.len() < limit as usize {
                day.paged.push(episode.1.clone());
                page[i] = true;
            } else {
                day.held += 1;
                grew.insert(day_of(episode.0), true);
            }
        }
        self.prune(episodes.iter().map(|e| e.0).max());
        let held = self
            .days
            .iter()
            .filter(|(_, d)| d.held > 0)
            .map(|(day, d)| HeldDay {
                day: day.clone(),
                held: d.held,
                limit,
                grew: grew.contains_key(day),
            })
            .collect();
        Verdict { page, held }
    }

    fn prune(&mut self, newest: Option<i64>) {
        let Some(newest) = newest else { return };
        let oldest = day_of(newest - (DAYS_KEPT - 1) * 86_400_000);
        self.days.retain(|day, _| *day >= oldest);
    }
}

/// The summary finding's text for a day: `4 more anomalies of X held back
/// on 2026-12-07 (budget 3 pages/day)`.
pub fn held_text(what: &str, held: &HeldDay) -> String {
    format!(
        "{} more anomal{} of {what} held back on {} (budget: {} page{} a day); see the run's details and detections",
        held.held,
        if held.held == 1 { "y" } else { "ies" },
        held.day,
        held.limit,
        if held.limit == 1 { "" } else { "s" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;

    /// Episodes of one series: the start is the id.
    fn starts(starts: &[i64]) -> Vec<(i64, String)> {
        starts.iter().map(|s| (*s, s.to_string())).collect()
    }

    #[test]
    fn past_the_limit_a_day_holds_back_and_counts_and_the_next_day_pages_again() {
        let mut state = BudgetState::default();
        let times: Vec<i64> = (0..5).map(|h| h * HOUR).chain([DAY + HOUR]).collect();
        let verdict = state.decide(&starts(&times), 3);
        assert_eq!(verdict.page, vec![true, true, true, false, false, true]);
        assert_eq!(
            verdict.held,
            vec![HeldDay {
                day: "1970-01-01".into(),
                held: 2,
                limit: 3,
                grew: true
            }]
        );
    }

    #[test]
    fn a_run_re_deriving_decided_episodes_keeps_their_decisions_and_counts_only_new_ones() {
        let mut state = BudgetState::default();
        let first: Vec<i64> = (0..4).map(|h| h * HOUR).collect();
        assert_eq!(
            state.decide(&starts(&first), 2).page,
            vec![true, true, false, false]
        );
        // The next run sees the same episodes again (re-judged history),
        // plus one new: only the new one is counted.
        let mut second = first.clone();
        second.push(10 * HOUR);
        let verdict = state.decide(&starts(&second), 2);
        assert_eq!(verdict.page, vec![true, true, false, false, false]);
        assert_eq!(verdict.held[0].held, 3);
        // A run that sees only the new episode (streaming) decides the same.
        let verdict = state.decide(&starts(&[10 * HOUR]), 2);
        assert_eq!(verdict.page, vec![false]);
        assert!(!verdict.held[0].grew);
        // Round trip through state.
        let back: BudgetState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn episodes_of_several_groups_starting_together_are_told_apart() {
        let mut state = BudgetState::default();
        let both = vec![(HOUR, "eu".to_string()), (HOUR, "us".to_string())];
        assert_eq!(state.decide(&both, 1).page, vec![true, false]);
        // Seen again: the same decisions, nothing counted twice.
        let verdict = state.decide(&both, 1);
        assert_eq!(verdict.page, vec![true, false]);
        assert_eq!(verdict.held[0].held, 1);
    }

    #[test]
    fn old_days_are_forgotten() {
        let mut state = BudgetState::default();
        state.decide(&starts(&[0, 10 * DAY]), 1);
        assert_eq!(state.days.len(), 1);
        assert!(held_text(
            "cpu",
            &HeldDay {
                day: "2026-12-07".into(),
                held: 4,
                limit: 3,
                grew: true
            }
        )
        .starts_with("4 more anomalies of cpu held back on 2026-12-07 (budget: 3 pages a day)"));
    }
}
