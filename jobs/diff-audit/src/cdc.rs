//! The CDC joiner: change events from both mirrors, matched per key.
//!
//! The joiner keeps only keys whose sides disagree (`pending`): each side's
//! latest image (row digest or deleted, and its source `ts_ms`) and
//! `since`, the source time of the change that opened the disagreement.
//! When the other side's change brings the same image, the key agrees: its
//! lag is the gap between the two sides' source times, and past
//! `lag_window` the match is a `late` diff. Agreeing keys are forgotten, so
//! the state holds what is in flight, not the table.
//!
//! A run's verdicts, at its clock time `now`:
//! - one side only, older than `missing_after`: `missing` on the other side;
//! - both sides, different images, the newer older than `lag_window`:
//!   `mismatch`;
//! - anything younger: still in flight, counted as waiting.
//!
//! Each verdict's `lag_ms` is `now − since`. A restart loses nothing: the
//! pending keys and the sources' cursors are job state, written with the
//! run's record.
//!
//! Known limit: a connector that re-snapshots one mirror only (op `r` for
//! every row) makes every key pending on that side until the other side
//! re-snapshots too; a snapshot compare is the tool for that.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::debezium::Change;
use crate::snapshot::{Diff, Reason, Side};

/// The joiner's time limits, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub lag_window_ms: i64,
    pub missing_after_ms: i64,
    /// How long a late match stays reported (so its finding stays open
    /// instead of flapping run by run).
    pub late_hold_ms: i64,
}

/// Late matches kept at most (the oldest go first).
const RECENT_LATE_MAX: usize = 10_000;

/// A late match, or one first made in a copy outside the tenant's home,
/// reported until `late_hold` after the run that saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecentLate {
    key: Vec<Value>,
    lag_ms: i64,
    digest: Option<String>,
    seen_ms: i64,
    /// Set when held as a cross-region write: the copy that made the
    /// change first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrong_first: Option<Side>,
}

/// One side's latest image of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Image {
    /// `None`: deleted.
    digest: Option<String>,
    ts_ms: i64,
}

/// A key whose sides disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    key: Vec<Value>,
    left: Option<Image>,
    right: Option<Image>,
    since_ms: i64,
}

/// The joiner's state, kept across runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Joiner {
    /// By the key's JSON text.
    pending: BTreeMap<String, Pending>,
    #[serde(default)]
    recent_late: Vec<RecentLate>,
    /// Keys that came to agree, with the newer source time of the two
    /// changes, kept `missing_after + late_hold`: an older change of such a
    /// key delivered again (a connector re-sending, a rotated file read
    /// anew) is a replay, not a new disagreement.
    #[serde(default)]
    agreed: BTreeMap<String, i64>,
}

/// A key whose sides came to agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreed {
    pub key: Vec<Value>,
    /// The gap between the two sides' source times.
    pub lag_ms: i64,
    pub digest: Option<String>,
    /// The side whose source time is the earlier (none when equal).
    pub first: Option<Side>,
}

/// A run's verdicts.
#[derive(Debug, Clone, Default)]
pub struct Verdicts {
    pub diffs: Vec<Diff>,
    /// Pending keys not yet past a window.
    pub waiting: usize,
}

impl Joiner {
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `change` is no newer than what both sides already agreed
    /// on for its key (and the key is not in flight): a replay to skip.
    pub fn is_replay(&self, change: &Change) -> bool {
        let id = Value::Array(change.key.clone()).to_string();
        !self.pending.contains_key(&id)
            && self
                .agreed
                .get(&id)
                .is_some_and(|&agreed| change.ts_ms <= agreed)
    }

    /// Takes one side's change; returns the key's agreement when this
    /// change completes it.
    pub fn observe(&mut self, side: Side, change: Change) -> Option<Agreed> {
        let id = Value::Array(change.key.clone()).to_string();
        let image = Image {
            digest: change.digest,
            ts_ms: change.ts_ms,
        };
        let entry = self.pending.entry(id.clone()).or_insert_with(|| Pending {
            key: change.key,
            left: None,
            right: None,
            since_ms: image.ts_ms,
        });
        let slot = match side {
            Side::Left => &mut entry.left,
            Side::Right => &mut entry.right,
        };
        // An older change arriving after a newer one does not undo it.
        if slot.as_ref().is_some_and(|held| held.ts_ms > image.ts_ms) {
            return None;
        }
        *slot = Some(image);
        match (&entry.left, &entry.right) {
            (Some(l), Some(r)) if l.digest == r.digest => {
                let agreed = Agreed {
                    key: entry.key.clone(),
                    lag_ms: (l.ts_ms - r.ts_ms).abs(),
                    digest: l.digest.clone(),
                    first: match l.ts_ms.cmp(&r.ts_ms) {
                        std::cmp::Ordering::Less => Some(Side::Left),
                        std::cmp::Ordering::Greater => Some(Side::Right),
                        std::cmp::Ordering::Equal => None,
                    },
                };
                let newer = l.ts_ms.max(r.ts_ms);
                self.pending.remove(&id);
                self.agreed.insert(id, newer);
                Some(agreed)
            }
            (Some(l), Some(r)) => {
                // Disagreeing since the older of the two unmatched changes.
                entry.since_ms = l.ts_ms.min(r.ts_ms);
                None
            }
            _ => None,
        }
    }

    /// Keeps this run's matches that came later than `lag_window` or that
    /// `wrong_first` says were made first where they may not be, and
    /// forgets those older than `late_hold`.
    pub fn note_matches(
        &mut self,
        agreed: &[Agreed],
        now_ms: i64,
        windows: Windows,
        wrong_first: impl Fn(&Agreed) -> bool,
    ) {
        self.recent_late.extend(agreed.iter().filter_map(|a| {
            let wrong_first = a.first.filter(|_| wrong_first(a));
            (wrong_first.is_some() || a.lag_ms > windows.lag_window_ms).then(|| RecentLate {
                key: a.key.clone(),
                lag_ms: a.lag_ms,
                digest: a.digest.clone(),
                seen_ms: now_ms,
                wrong_first,
            })
        }));
        self.recent_late
            .retain(|late| now_ms - late.seen_ms <= windows.late_hold_ms);
        let keep = windows.missing_after_ms + windows.late_hold_ms;
        self.agreed.retain(|_, at| now_ms - *at <= keep);
        let over = self.recent_late.len().saturating_sub(RECENT_LATE_MAX);
        self.recent_late.drain(..over);
    }

    /// The verdicts at `now_ms` on every pending key, and the late matches
    /// still held.
    pub fn verdicts(&self, now_ms: i64, windows: Windows, key_names: &[String]) -> Verdicts {
        let mut verdicts = Verdicts::default();
        verdicts
            .diffs
            .extend(self.recent_late.iter().map(|late| Diff {
                key: key_columns(key_names, &late.key),
                // A write in the wrong region outranks its lateness.
                reason: match late.wrong_first {
                    Some(_) => Reason::CrossRegionWrite,
                    None => Reason::Late,
                },
                side: late.wrong_first,
                lhs_sha256: late.digest.clone(),
                rhs_sha256: late.digest.clone(),
                rows: None,
                regions: None,
                lag_ms: Some(late.lag_ms),
            }));
        for pending in self.pending.values() {
            let key = key_columns(key_names, &pending.key);
            let lag = now_ms - pending.since_ms;
            let digest = |image: &Option<Image>| image.as_ref().and_then(|i| i.digest.clone());
            let diff = match (&pending.left, &pending.right) {
                (Some(l), Some(r)) if now_ms - l.ts_ms.max(r.ts_ms) > windows.lag_window_ms => {
                    Some((Reason::Mismatch, None))
                }
                (Some(l), None) if now_ms - l.ts_ms > windows.missing_after_ms => {
                    Some((Reason::Missing, Some(Side::Right)))
                }
                (None, Some(r)) if now_ms - r.ts_ms > windows.missing_after_ms => {
                    Some((Reason::Missing, Some(Side::Left)))
                }
                _ => None,
            };
            match diff {
                Some((reason, side)) => verdicts.diffs.push(Diff {
                    key,
                    reason,
                    side,
                    lhs_sha256: digest(&pending.left),
                    rhs_sha256: digest(&pending.right),
                    rows: None,
                    regions: None,
                    lag_ms: Some(lag),
                }),
                None => verdicts.waiting += 1,
            }
        }
        verdicts
    }
}

/// `(column, value)` pairs of a key.
fn key_columns(names: &[String], values: &[Value]) -> Vec<(String, Value)> {
    names.iter().cloned().zip(values.iter().cloned()).collect()
}

/// Lag percentiles (nearest rank) of matched changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LagStats {
    pub matched: usize,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl LagStats {
    pub fn of(lags: &mut [i64]) -> Self {
        lags.sort_unstable();
        let rank = |p: f64| -> Option<i64> {
            if lags.is_empty() {
                return None;
            }
            let at = ((p * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1;
            Some(lags[at])
        };
        Self {
            matched: lags.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            max_ms: lags.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, digest: Option<&str>, ts_ms: i64) -> Change {
        Change {
            key: vec![Value::from("acme"), Value::from(id)],
            digest: digest.map(str::to_string),
            ts_ms,
        }
    }

    fn names() -> Vec<String> {
        vec!["tenant".into(), "id".into()]
    }

    const WINDOWS: Windows = Windows {
        lag_window_ms: 60_000,
        missing_after_ms: 300_000,
        late_hold_ms: 3_600_000,
    };

    #[test]
    fn a_change_both_sides_make_agrees_with_its_lag_and_a_slow_one_is_late() {
        let mut joiner = Joiner::default();
        assert_eq!(
            joiner.observe(Side::Left, change(1, Some("a"), 1_000)),
            None
        );
        let agreed = joiner
            .observe(Side::Right, change(1, Some("a"), 4_000))
            .unwrap();
        assert_eq!(agreed.lag_ms, 3_000);
        assert_eq!(joiner.pending(), 0);
        joiner.observe(Side::Right, change(2, Some("b"), 10_000));
        let late = joiner
            .observe(Side::Left, change(2, Some("b"), 100_000))
            .unwrap();
        assert_eq!(late.lag_ms, 90_000);
        joiner.note_matches(&[agreed, late], 100_000, WINDOWS, |_| false);
        let held = joiner.verdicts(100_000 + 3_600_000, WINDOWS, &names());
        assert_eq!(held.diffs.len(), 1);
        assert_eq!(held.diffs[0].reason, Reason::Late);
        assert_eq!(held.diffs[0].lag_ms, Some(90_000));
        joiner.note_matches(&[], 100_001 + 3_600_000, WINDOWS, |_| false);
        assert!(joiner.verdicts(0, WINDOWS, &names()).diffs.is_empty());
        // Deleted on both sides agrees too.
        joiner.observe(Side::Left, change(3, None, 1));
        assert!(joiner.observe(Side::Right, change(3, None, 2)).is_some());
    }

    #[test]
    fn verdicts_wait_for_their_windows_then_name_missing_and_mismatch() {
        let mut joiner = Joiner::default();
        joiner.observe(Side::Left, change(1, Some("a"), 0)); // never mirrored
        joiner.observe(Side::Left, change(2, Some("a"), 0)); // mirrored wrong
        joiner.observe(Side::Right, change(2, Some("z"), 20_000));
        joiner.observe(Side::Right, change(3, Some("c"), 0)); // only on the right
        let early = joiner.verdicts(50_000, WINDOWS, &names());
        assert!(early.diffs.is_empty());
        assert_eq!(early.waiting, 3);
        let mid = joiner.verdicts(90_000, WINDOWS, &names());
        assert_eq!(mid.diffs.len(), 1);
        assert_eq!(mid.diffs[0].reason, Reason::Mismatch);
        assert_eq!(mid.diffs[0].lag_ms, Some(90_000));
        let late = joiner.verdicts(400_000, WINDOWS, &names());
        let found: Vec<(Reason, Option<Side>)> =
            late.diffs.iter().map(|d| (d.reason, d.side)).collect();
        assert_eq!(
            found,
            vec![
                (Reason::Missing, Some(Side::Right)),
                (Reason::Mismatch, None),
                (Reason::Missing, Some(Side::Left)),
            ]
        );
        // The mirror catches up: the key agrees and leaves the verdicts.
        joiner.observe(Side::Right, change(1, Some("a"), 390_000));
        assert_eq!(joiner.verdicts(400_000, WINDOWS, &names()).diffs.len(), 2);
    }

    #[test]
    fn a_change_made_first_outside_its_home_is_held_as_a_cross_region_write() {
        let mut joiner = Joiner::default();
        // Key 1: the right copy made it first (by source time), the left
        // one 2 s later: within the lag window, but first in the wrong place.
        joiner.observe(Side::Right, change(1, Some("a"), 1_000));
        let wrong = joiner
            .observe(Side::Left, change(1, Some("a"), 3_000))
            .unwrap();
        assert_eq!(wrong.first, Some(Side::Right));
        // Key 2: the right copy's event is read first, but the left copy's
        // change is the older one: made at home first, only read late.
        joiner.observe(Side::Right, change(2, Some("b"), 5_000));
        let home = joiner
            .observe(Side::Left, change(2, Some("b"), 4_000))
            .unwrap();
        assert_eq!(home.first, Some(Side::Left));
        joiner.note_matches(&[wrong, home], 10_000, WINDOWS, |a| {
            a.first == Some(Side::Right)
        });
        let held = joiner.verdicts(20_000, WINDOWS, &names());
        assert_eq!(held.diffs.len(), 1);
        let diff = &held.diffs[0];
        assert_eq!(
            (diff.reason, diff.side, diff.lag_ms),
            (Reason::CrossRegionWrite, Some(Side::Right), Some(2_000))
        );
        assert_eq!(diff.key[1].1, Value::from(1));
        // Held like a late match, then forgotten.
        joiner.note_matches(&[], 10_001 + 3_600_000, WINDOWS, |_| false);
        assert!(joiner.verdicts(0, WINDOWS, &names()).diffs.is_empty());
    }

    #[test]
    fn an_agreed_change_delivered_again_is_a_replay_not_a_missing_row() {
        let mut joiner = Joiner::default();
        joiner.observe(Side::Left, change(1, Some("a"), 1_000));
        let agreed = joiner
            .observe(Side::Right, change(1, Some("a"), 1_500))
            .unwrap();
        joiner.note_matches(&[agreed], 2_000, WINDOWS, |_| false);
        // The left connector sends the change again.
        assert!(joiner.is_replay(&change(1, Some("a"), 1_000)));
        assert!(
            !joiner.is_replay(&change(1, Some("b"), 2_000)),
            "a newer change is news"
        );
        assert!(
            !joiner.is_replay(&change(2, Some("a"), 1_000)),
            "another key is news"
        );
        assert!(joiner.verdicts(400_000, WINDOWS, &names()).diffs.is_empty());
        // Forgotten after missing_after + late_hold.
        joiner.note_matches(&[], 1_500 + 300_000 + 3_600_000 + 1, WINDOWS, |_| false);
        assert!(!joiner.is_replay(&change(1, Some("a"), 1_000)));
    }

    #[test]
    fn an_older_change_arriving_late_does_not_undo_a_newer_one() {
        let mut joiner = Joiner::default();
        joiner.observe(Side::Left, change(1, Some("new"), 2_000));
        joiner.observe(Side::Left, change(1, Some("old"), 1_000));
        assert!(joiner
            .observe(Side::Right, change(1, Some("new"), 2_500))
            .is_some());
    }

    #[test]
    fn lag_percentiles_use_the_nearest_rank() {
        let mut lags: Vec<i64> = (1..=100).rev().collect();
        let stats = LagStats::of(&mut lags);
        assert_eq!(
            (stats.matched, stats.p50_ms, stats.p95_ms, stats.max_ms),
            (100, Some(50), Some(95), Some(100))
        );
        assert_eq!(LagStats::of(&mut []).p95_ms, None);
    }
}
