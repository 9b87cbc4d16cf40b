//! From scored points to findings: consecutive anomalous buckets of one
//! group are one episode, paged once under a key that stays the same while
//! the episode lasts (`anomaly/<rule>/<group>/<episode start>`).

use chrono::{DateTime, Utc};
use patrol_anomaly_detect::{Direction, Method, Point, Scored};
use patrol_job_api::Finding;
use serde_json::json;

use crate::rules::{Measure, Rule};
use crate::series::{GroupSeries, Hop};

/// A run of anomalous buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// First bucket's start and last bucket's end (ms).
    pub start: i64,
    pub end: i64,
    /// The most anomalous point.
    pub peak: usize,
}

/// Which episodes a run reports: those reaching past the last run's
/// judged range, or still open at this run's last bucket (so an ongoing
/// episode keeps its alert and a closed one resolves).
#[derive(Debug, Clone, Copy)]
pub struct Reporting {
    /// End of the last bucket judged by the previous run (ms), if any.
    pub previous_end: Option<i64>,
    /// End of the last bucket judged now.
    pub current_end: i64,
}

impl Reporting {
    pub fn reports(&self, episode: &Episode) -> bool {
        match self.previous_end {
            None => true,
            Some(previous) => episode.end > previous || episode.end >= self.current_end,
        }
    }
}

/// Applies what every method shares: `min_count` keeps buckets with too
/// few events (ratio rules: too few numerator events) from alarming
/// upward. The adaptive method does this itself for counts; static ones
/// need it for a fair comparison.
pub fn apply_min_count(rule: &Rule, points: &[Point], scored: &mut [Scored]) {
    if rule.direction == Direction::Down || rule.min_count <= 0.0 {
        return;
    }
    let ratio = matches!(rule.measure, Measure::Ratio { .. });
    for (point, verdict) in points.iter().zip(scored.iter_mut()) {
        let events = if ratio {
            point.value * point.weight
        } else {
            point.value
        };
        let above = verdict.baseline.is_some_and(|b| verdict.value > b);
        if verdict.is_anomaly && above && events + 1e-9 < rule.min_count {
            verdict.is_anomaly = false;
        }
    }
}

/// Consecutive anomalous points (adjacent buckets of `width_ms`).
pub fn episodes(scored: &[Scored], width_ms: i64) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    for (index, point) in scored.iter().enumerate() {
        if !point.is_anomaly {
            continue;
        }
        let start = point.ts * 1000;
        let strength = point.score.map_or(0.0, f64::abs);
        match out.last_mut() {
            Some(episode) if episode.end >= start => {
                episode.end = start + width_ms;
                let peak = scored[episode.peak].score.map_or(0.0, f64::abs);
                if strength > peak {
                    episode.peak = index;
                }
            }
            _ => out.push(Episode {
                start,
                end: start + width_ms,
                peak: index,
            }),
        }
    }
    out
}

/// The seed's window text: `2025-12-05T10:00Z..10:10Z`.
pub fn window_text(start_ms: i64, end_ms: i64) -> String {
    let start = utc(start_ms);
    let end = utc(end_ms);
    if start.date_naive() == end.date_naive() {
        format!(
            "{}..{}",
            start.format("%Y-%m-%dT%H:%MZ"),
            end.format("%H:%MZ")
        )
    } else {
        format!(
            "{}..{}",
            start.format("%Y-%m-%dT%H:%MZ"),
            end.format("%Y-%m-%dT%H:%MZ")
        )
    }
}

pub fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `3.2x over baseline`, `0.2x of baseline`, or the absolute change when
/// the baseline is 0.
pub fn delta_text(value: f64, baseline: Option<f64>, ratio: bool) -> String {
    let show = |v: f64| {
        if ratio {
            format!("{:.1}%", v * 100.0)
        } else {
            format!("{v:.0}")
        }
    };
    match baseline {
        Some(b) if b > 0.0 && value >= b => format!("{:.1}x over baseline", value / b),
        Some(b) if b > 0.0 => format!("{:.1}x of baseline", value / b),
        Some(_) => format!("{} over a baseline of 0", show(value)),
        None => show(value),
    }
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::MeanMultiple { .. } => "static",
        Method::P95Multiple { .. } => "p95",
        Method::RollingSigma { .. } => "rolling_sigma",
        Method::Adaptive(_) => "adaptive",
        Method::Likelihood(_) => "likelihood",
    }
}

/// The finding for one episode of a rate or ratio rule.
pub fn episode_finding(
    rule: &Rule,
    method: &Method,
    series: &GroupSeries,
    scored: &[Scored],
    episode: &Episode,
    ratio: bool,
) -> Finding {
    let peak = &scored[episode.peak];
    let group = series.label_text();
    let start = utc(episode.start);
    let mut finding = Finding::new(
        format!(
            "anomaly/{}/{}/{}",
            rule.id,
            group,
            start.format("%Y-%m-%dT%H:%MZ")
        ),
        rule.severity,
        format!(
            "Anomaly: {} ({})",
            rule.id,
            series
                .labels
                .iter()
                .map(|(_, value)| value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let buckets = ((episode.end - episode.start) / (rule.window.as_millis() as i64).max(1)).max(1);
    finding.summary = format!(
        "{}: {} in {} ({} bucket{} of {}), {} method",
        rule.description,
        if ratio {
            format!("{:.1}%", peak.value * 100.0)
        } else {
            format!("{:.0} events", peak.value)
        },
        group,
        buckets,
        if buckets == 1 { "" } else { "s" },
        patrol_job_api::units::HumanDuration(rule.window),
        method_name(method),
    );
    finding.window = Some(window_text(episode.start, episode.end));
    finding.delta = Some(delta_text(peak.value, peak.baseline, ratio));
    finding.sample_trace = (episode_traces(series, scored, episode)).next();
    finding.runbook = rule.runbook.clone();
    finding.labels.insert("rule".into(), rule.id.clone());
    for (field, value) in &series.labels {
        finding.labels.insert((*field).to_string(), value.clone());
    }
    finding.details = json!({
        "value": peak.value,
        "baseline": peak.baseline,
        "score": peak.score,
        "method": method_name(method),
        "peak_at": utc(peak.ts * 1000).to_rfc3339(),
        "buckets": buckets,
    });
    finding
}

/// Trace ids of the episode's buckets, the peak's first.
fn episode_traces<'a>(
    series: &'a GroupSeries,
    scored: &'a [Scored],
    episode: &'a Episode,
) -> impl Iterator<Item = String> + 'a {
    let in_episode = move |i: &usize| {
        let ts = scored[*i].ts * 1000;
        ts >= episode.start && ts < episode.end
    };
    std::iter::once(episode.peak)
        .chain((0..scored.len()).filter(in_episode))
        .filter_map(move |i| series.traces.get(i).cloned().flatten())
}

/// The findings of `rule` a run reports (each with its episode's start in
/// ms) within the rule's daily budget, plus one summary per day that held
/// some back (for the day of `newest`, the newest data, or a day this run
/// held more of).
pub fn within_budget(
    rule: &Rule,
    found: Vec<(i64, Finding)>,
    budget: &mut crate::budget::BudgetState,
    newest: i64,
) -> Vec<Finding> {
    let episodes: Vec<(i64, String)> = found.iter().map(|(s, f)| (*s, f.key.clone())).collect();
    let verdict = budget.decide(&episodes, rule.pages_per_day);
    let mut out: Vec<Finding> = found
        .into_iter()
        .zip(&verdict.page)
        .filter(|(_, page)| **page)
        .map(|((_, finding), _)| finding)
        .collect();
    let today = utc(newest).format("%Y-%m-%d").to_string();
    for held in verdict.held.iter().filter(|h| h.grew || h.day == today) {
        let mut finding = Finding::new(
            format!("anomaly/{}/held/{}", rule.id, held.day),
            rule.severity,
            format!("Anomalies held back: {}", rule.id),
        );
        finding.summary = crate::budget::held_text(&rule.id, held);
        finding.runbook = rule.runbook.clone();
        finding.labels.insert("rule".into(), rule.id.clone());
        finding.details = json!({"held": held.held, "pages_per_day": held.limit, "day": held.day});
        out.push(finding);
    }
    out
}

/// The finding for one impossible hop.
pub fn hop_finding(rule: &Rule, hop: &Hop) -> Finding {
    let at = utc(hop.arrived_at);
    let mut finding = Finding::new(
        format!(
            "anomaly/{}/subject={}/{}",
            rule.id,
            hop.subject,
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        rule.severity,
        format!("Anomaly: {} ({})", rule.id, hop.subject),
    );
    let gap_s = (hop.arrived_at - hop.left_at).abs() / 1000;
    finding.summary = format!(
        "{}: {} in {} then {} {}s later",
        rule.description, hop.subject, hop.from_region, hop.to_region, gap_s
    );
    finding.window = Some(window_text(
        hop.left_at.min(hop.arrived_at),
        hop.arrived_at.max(hop.left_at),
    ));
    finding.delta = Some(format!(
        "{} → {} in {gap_s}s",
        hop.from_region, hop.to_region
    ));
    finding.sample_trace = hop.trace.clone();
    finding.runbook = rule.runbook.clone();
    finding.labels.insert("rule".into(), rule.id.clone());
    finding.labels.insert("subject".into(), hop.subject.clone());
    finding
        .labels
        .insert("region".into(), hop.to_region.clone());
    finding.details = json!({
        "from_region": hop.from_region,
        "to_region": hop.to_region,
        "gap_seconds": gap_s,
    });
    finding
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, anomalous: bool, score: f64) -> Scored {
        Scored {
            ts,
            value: 1.0,
            baseline: Some(1.0),
            score: Some(score),
            is_anomaly: anomalous,
            warming_up: false,
        }
    }

    #[test]
    fn adjacent_anomalous_buckets_are_one_episode_peaking_at_the_strongest() {
        let scored = [
            point(0, false, 0.0),
            point(600, true, 5.0),
            point(1200, true, 9.0),
            point(1800, false, 1.0),
            point(2400, true, 6.0),
        ];
        let found = episodes(&scored, 600_000);
        assert_eq!(
            found,
            vec![
                Episode {
                    start: 600_000,
                    end: 1_800_000,
                    peak: 2
                },
                Episode {
                    start: 2_400_000,
                    end: 3_000_000,
                    peak: 4
                },
            ]
        );
    }

    #[test]
    fn an_open_episode_keeps_being_reported_and_a_closed_one_is_not() {
        let reporting = Reporting {
            previous_end: Some(3_000),
            current_end: 5_000,
        };
        // Ended before the last run's end: reported then, resolves now.
        assert!(!reporting.reports(&Episode {
            start: 1_000,
            end: 2_000,
            peak: 0
        }));
        // Ended right at the last run's end, and data moved on: closed.
        assert!(!reporting.reports(&Episode {
            start: 1_000,
            end: 3_000,
            peak: 0
        }));
        // Reaches into the new buckets.
        assert!(reporting.reports(&Episode {
            start: 2_000,
            end: 4_000,
            peak: 0
        }));
        // No new data since: still open at the newest bucket.
        let stalled = Reporting {
            previous_end: Some(3_000),
            current_end: 3_000,
        };
        assert!(stalled.reports(&Episode {
            start: 2_000,
            end: 3_000,
            peak: 0
        }));
        // First run: everything.
        let first = Reporting {
            previous_end: None,
            current_end: 3_000,
        };
        assert!(first.reports(&Episode {
            start: 0,
            end: 1_000,
            peak: 0
        }));
    }

    #[test]
    fn window_and_delta_read_like_the_seeds_alert() {
        let start = 1_764_928_800_000; // 2025-12-05T10:00Z
        assert_eq!(
            window_text(start, start + 600_000),
            "2025-12-05T10:00Z..10:10Z"
        );
        assert_eq!(delta_text(32.0, Some(10.0), false), "3.2x over baseline");
        assert_eq!(delta_text(5.0, Some(0.0), false), "5 over a baseline of 0");
    }
}
