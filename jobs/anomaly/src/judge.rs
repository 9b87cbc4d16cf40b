//! Judging a rule's group series: the rule's method on each group, and for
//! ratio rules a population fallback for groups too small to have a
//! baseline of their own yet.

use patrol_anomaly_detect::{detect, Direction, Method, Scored};

use crate::evaluate::apply_min_count;
use crate::rules::{Measure, Rule};
use crate::series::GroupSeries;

/// Trials the population must have seen, and how long it must have been
/// watched, before it can stand in for a group's own baseline: a fresh
/// deployment warms up instead of paging on its first hours.
const MIN_POOLED_TRIALS: f64 = 200.0;
const MIN_POOLED_HISTORY_SECS: i64 = 24 * 3600;

/// The verdicts for every group, in order.
///
/// A ratio point the adaptive method cannot judge yet (its group has had
/// too few buckets with enough events — a small tenant's step-ups) is
/// tested against the share across all groups so far, with the same z:
/// `(k − n·p) / sqrt(n·p·(1 − p))`. A small group thus borrows the
/// population's baseline instead of staying blind until it has weeks of
/// its own history.
pub fn judge(rule: &Rule, method: &Method, groups: &[GroupSeries]) -> Vec<Vec<Scored>> {
    let mut verdicts: Vec<Vec<Scored>> = groups
        .iter()
        .map(|group| {
            let mut scored = detect(&group.points, method, rule.direction);
            apply_min_count(rule, &group.points, &mut scored);
            scored
        })
        .collect();
    if let (Measure::Ratio { .. }, Method::Adaptive(params)) = (&rule.measure, method) {
        judge_warming_against_population(rule, params.z, groups, &mut verdicts);
    }
    hold_warm_up(rule, groups, &mut verdicts);
    verdicts
}

/// Nothing is judged in the rule's first `warm_up` of data, by any method:
/// a baseline that has not seen every hour of the week pages on the first
/// Monday morning it meets.
fn hold_warm_up(rule: &Rule, groups: &[GroupSeries], verdicts: &mut [Vec<Scored>]) {
    let Some(start) = groups
        .iter()
        .filter_map(|g| g.points.first())
        .map(|p| p.ts)
        .min()
    else {
        return;
    };
    let until = start + rule.warm_up.as_secs() as i64;
    for verdict in verdicts.iter_mut().flatten().filter(|v| v.ts < until) {
        verdict.warming_up = true;
        verdict.is_anomaly = false;
        verdict.score = None;
    }
}

fn judge_warming_against_population(
    rule: &Rule,
    z_threshold: f64,
    groups: &[GroupSeries],
    verdicts: &mut [Vec<Scored>],
) {
    // (ts, hits, trials) of every judged bucket, in time order, with
    // running sums: the population's share before any moment.
    let mut all: Vec<(i64, f64, f64)> = groups
        .iter()
        .flat_map(|g| {
            g.points
                .iter()
                .map(|p| (p.ts, p.value * p.weight, p.weight))
        })
        .collect();
    all.sort_by_key(|(ts, _, _)| *ts);
    let mut prefix = Vec::with_capacity(all.len() + 1);
    prefix.push((0.0, 0.0));
    for (_, hits, trials) in &all {
        let (k, n) = prefix[prefix.len() - 1];
        prefix.push((k + hits, n + trials));
    }
    for (group, scored) in groups.iter().zip(verdicts.iter_mut()) {
        for (point, verdict) in group.points.iter().zip(scored.iter_mut()) {
            if !verdict.warming_up || point.weight <= 0.0 {
                continue;
            }
            let before = all.partition_point(|(ts, _, _)| *ts < point.ts);
            let (k, n) = prefix[before];
            let watched = all.first().map_or(0, |(first, _, _)| point.ts - first);
            if n < MIN_POOLED_TRIALS || watched < MIN_POOLED_HISTORY_SECS {
                continue;
            }
            let p = (k + 1.0) / (n + 2.0);
            let hits = point.value * point.weight;
            let z = (hits - point.weight * p) / (point.weight * p * (1.0 - p)).sqrt();
            let exceeds = match rule.direction {
                Direction::Up => z > z_threshold,
                Direction::Down => z < -z_threshold,
                Direction::Both => z.abs() > z_threshold,
            };
            verdict.warming_up = false;
            verdict.baseline = Some(p);
            verdict.score = Some(z);
            verdict.is_anomaly = exceeds && (z < 0.0 || hits + 1e-9 >= rule.min_count);
        }
    }
}
