//! Deciding what to do with the slots of a schedule that have come due:
//! a pure function of the cron, the cursor and the time, so every catch-up
//! and DST case is tested without waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Overlap, Schedule};
use crate::ledger::Trigger;

/// Slots listed one by one at most; older ones share one summary row.
pub const MAX_ITEMISED_MISSED: usize = 1000;
/// How far back a restart looks for missed slots.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Joining running nodes, a slot this recent fires as an ordinary scheduled
/// run: a live node may be firing it right now (the ledger lets one win).
pub const START_TOLERANCE: Duration = Duration::from_secs(5);

/// Why the scheduler is looking at the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting up alone: slots since the ledger's last one passed while no
    /// runner was up; the catch-up rules decide.
    Recovering,
    /// Starting up while other nodes run: the newest slot, if only seconds
    /// old, is theirs as much as ours; older ones follow the catch-up rules.
    Joining,
    /// Running: the slots came due while we were up (maybe late).
    Live,
}

/// What the scheduler writes for a batch of due slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// The one slot to run now, and how it was triggered.
    pub fire: Option<(DateTime<Utc>, Trigger)>,
    /// Slots recorded `missed`, with the reason for each.
    pub missed: Vec<(DateTime<Utc>, String)>,
}

/// Plans the slots of `schedule` in `(cursor, now]`.
pub fn plan_due_slots(
    schedule: &Schedule,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    phase: Phase,
) -> SlotPlan {
    let lookback_start = now - chrono::Duration::from_std(MAX_LOOKBACK).unwrap_or_default();
    let window_start = cursor.max(lookback_start);
    let mut slots = schedule
        .cron
        .fires_between(window_start, now, &schedule.timezone, usize::MAX);
    // Slots not listed one by one: before the lookback window, and beyond
    // the itemised count. One summary row names their range.
    let mut unlisted: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    if cursor < lookback_start {
        if let Some(first) = schedule.cron.next_after(cursor, &schedule.timezone) {
            if first <= lookback_start {
                unlisted = Some((first, lookback_start));
            }
        }
    }
    if slots.len() > MAX_ITEMISED_MISSED + 1 {
        let cut = slots.len() - (MAX_ITEMISED_MISSED + 1);
        let last_cut = slots[cut - 1];
        unlisted = Some(match unlisted {
            Some((first, _)) => (first, last_cut),
            None => (slots[0], last_cut),
        });
        slots.drain(..cut);
    }
    let mut missed = Vec::new();
    if let Some((first, last)) = unlisted {
        missed.push((
            first,
            format!(
                "patrol was not running; the slots from {} to {} are not listed one by one",
                first.to_rfc3339(),
                last.to_rfc3339()
            ),
        ));
    }
    let Some(&latest) = slots.last() else {
        return SlotPlan { fire: None, missed };
    };
    let age = (now - latest).to_std().unwrap_or_default();
    let fire = match phase {
        Phase::Live => Some((latest, Trigger::Schedule)),
        Phase::Joining if age <= START_TOLERANCE => Some((latest, Trigger::Schedule)),
        Phase::Recovering | Phase::Joining
            if !schedule.catchup.is_zero() && age <= schedule.catchup =>
        {
            Some((latest, Trigger::Catchup))
        }
        Phase::Recovering | Phase::Joining => None,
    };
    let older = &slots[..slots.len() - 1];
    for &slot in older {
        let reason = match (phase, fire) {
            (Phase::Live, _) => format!(
                "patrol fell behind; coalesced into the run of {}",
                latest.to_rfc3339()
            ),
            (Phase::Recovering | Phase::Joining, Some((at, _))) => {
                format!(
                    "patrol was not running; coalesced into the catch-up run of {}",
                    at.to_rfc3339()
                )
            }
            (Phase::Recovering | Phase::Joining, None) => outside_catchup(schedule),
        };
        missed.push((slot, reason));
    }
    if fire.is_none() {
        missed.push((latest, outside_catchup(schedule)));
    }
    SlotPlan { fire, missed }
}

/// What to do with a run that is due while other runs of its schedule
/// are in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlapDecision {
    /// Start it.
    Start,
    /// Do not run it; record it `skipped` with this reason.
    Skip(String),
    /// Start it and cancel these runs, but only once its own row is
    /// written: a replacement that cannot be recorded replaces nothing.
    Replace(Vec<i64>),
}

/// Applies the schedule's `overlap:` policy to a due run, given the ids of
/// the runs of the same schedule in progress on any node. `forced` (a
/// manual `--force` run) starts whatever runs.
pub fn decide_overlap(overlap: Overlap, running: &[i64], forced: bool) -> OverlapDecision {
    if forced || running.is_empty() {
        return OverlapDecision::Start;
    }
    match overlap {
        Overlap::Allow => OverlapDecision::Start,
        Overlap::Forbid => {
            let ids: Vec<String> = running.iter().map(|id| format!("#{id}")).collect();
            OverlapDecision::Skip(format!(
                "previous run {} still running (overlap: forbid)",
                ids.join(", ")
            ))
        }
        Overlap::Replace => OverlapDecision::Replace(running.to_vec()),
    }
}

fn outside_catchup(schedule: &Schedule) -> String {
    if schedule.catchup.is_zero() {
        "patrol was not running; catchup is 0, so missed slots are not run".to_string()
    } else {
        format!(
            "patrol was not running; older than the catchup window of {}",
            humantime::format_duration(schedule.catchup)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schedules_in_file;
    use crate::registry::JobRegistry;

    fn schedule(cron: &str, tz: &str, catchup: &str) -> Schedule {
        let source = format!(
            "id: s\njob: command\ncron: \"{cron}\"\ntimezone: {tz}\ncatchup: \"{catchup}\"\nparams: {{program: x}}\n"
        );
        schedules_in_file(
            std::path::Path::new("s.yaml"),
            &source,
            &crate::registry::JobBuild::here(JobRegistry::builtin()),
        )
        .remove(0)
        .unwrap()
    }

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn live_fires_the_latest_slot_and_coalesces_older_ones() {
        let s = schedule("* * * * *", "UTC", "0");
        let plan = plan_due_slots(
            &s,
            t("2026-11-23T10:00:00Z"),
            t("2026-11-23T10:03:02Z"),
            Phase::Live,
        );
        assert_eq!(
            plan.fire,
            Some((t("2026-11-23T10:03:00Z"), Trigger::Schedule))
        );
        assert_eq!(plan.missed.len(), 2);
        assert!(plan.missed[0].1.contains("fell behind"));
    }

    #[test]
    fn recovery_within_catchup_fires_once_and_records_the_rest() {
        let s = schedule("*/5 * * * *", "UTC", "15m");
        // Down from 10:00 to 10:22: slots 10:05 … 10:20.
        let plan = plan_due_slots(
            &s,
            t("2026-11-23T10:00:00Z"),
            t("2026-11-23T10:22:00Z"),
            Phase::Recovering,
        );
        assert_eq!(
            plan.fire,
            Some((t("2026-11-23T10:20:00Z"), Trigger::Catchup))
        );
        let missed: Vec<_> = plan.missed.iter().map(|(at, _)| *at).collect();
        assert_eq!(
            missed,
            [
                t("2026-11-23T10:05:00Z"),
                t("2026-11-23T10:10:00Z"),
                t("2026-11-23T10:15:00Z")
            ]
        );
        assert!(plan.missed[0].1.contains("coalesced into the catch-up run"));
    }

    #[test]
    fn recovery_beyond_catchup_records_every_slot_missed() {
        let s = schedule("0 * * * *", "UTC", "15m");
        let plan = plan_due_slots(
            &s,
            t("2026-11-23T06:00:00Z"),
            t("2026-11-23T09:30:00Z"),
            Phase::Recovering,
        );
        assert_eq!(plan.fire, None);
        assert_eq!(plan.missed.len(), 3);
        assert!(plan
            .missed
            .iter()
            .all(|(_, why)| why.contains("older than the catchup window of 15m")));
    }

    #[test]
    fn catchup_zero_never_fires_a_missed_slot() {
        let s = schedule("* * * * *", "UTC", "0");
        let plan = plan_due_slots(
            &s,
            t("2026-11-23T10:00:00Z"),
            t("2026-11-23T10:01:30Z"),
            Phase::Recovering,
        );
        assert_eq!(plan.fire, None);
        assert!(plan.missed[0].1.contains("catchup is 0"));
    }

    #[test]
    fn joining_live_nodes_a_slot_due_moments_ago_is_an_ordinary_fire() {
        let s = schedule("* * * * *", "UTC", "0");
        let (cursor, now) = (t("2026-11-23T09:59:00Z"), t("2026-11-23T10:00:02Z"));
        let plan = plan_due_slots(&s, cursor, now, Phase::Joining);
        assert_eq!(
            plan.fire,
            Some((t("2026-11-23T10:00:00Z"), Trigger::Schedule))
        );
        assert!(plan.missed.is_empty());
        // Alone, the same slot passed while nothing ran: catchup 0 means missed.
        let plan = plan_due_slots(&s, cursor, now, Phase::Recovering);
        assert_eq!(plan.fire, None);
        assert_eq!(
            plan.missed,
            [(t("2026-11-23T10:00:00Z"), outside_catchup(&s))]
        );
    }

    #[test]
    fn recovery_across_a_dst_gap_uses_real_fire_times() {
        // Berlin springs forward at 02:00 CET; the 02:30 job fires at 03:00 CEST (01:00Z).
        let s = schedule("30 2 * * *", "Europe/Berlin", "1h");
        let plan = plan_due_slots(
            &s,
            t("2026-03-28T01:30:00Z"),
            t("2026-03-29T01:20:00Z"),
            Phase::Recovering,
        );
        assert_eq!(
            plan.fire,
            Some((t("2026-03-29T01:00:00Z"), Trigger::Catchup))
        );
        assert!(plan.missed.is_empty());
    }

    #[test]
    fn overlap_policy_decides_a_due_run_beside_running_ones() {
        assert_eq!(
            decide_overlap(Overlap::Forbid, &[], false),
            OverlapDecision::Start
        );
        assert_eq!(
            decide_overlap(Overlap::Forbid, &[3, 4], false),
            OverlapDecision::Skip("previous run #3, #4 still running (overlap: forbid)".into())
        );
        assert_eq!(
            decide_overlap(Overlap::Forbid, &[3], true),
            OverlapDecision::Start,
            "--force runs anyway"
        );
        assert_eq!(
            decide_overlap(Overlap::Allow, &[3], false),
            OverlapDecision::Start
        );
        assert_eq!(
            decide_overlap(Overlap::Replace, &[3], false),
            OverlapDecision::Replace(vec![3])
        );
    }

    #[test]
    fn a_long_outage_is_bounded_but_not_silent() {
        let s = schedule("* * * * * *", "UTC", "0");
        let plan = plan_due_slots(
            &s,
            t("2026-11-01T00:00:00Z"),
            t("2026-11-23T00:00:00Z"),
            Phase::Recovering,
        );
        assert!(plan.missed.len() <= MAX_ITEMISED_MISSED + 2);
        assert!(
            plan.missed[0].1.contains("not listed one by one"),
            "{}",
            plan.missed[0].1
        );
        assert_eq!(plan.fire, None);
        assert_eq!(plan.missed.last().unwrap().0, t("2026-11-23T00:00:00Z"));
    }
}
