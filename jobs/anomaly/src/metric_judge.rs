//! One metric series column from points to pages: the method's verdicts,
//! the warm-up, episodes (open level, hysteresis, refractory), the alert
//! budget, and the findings with a sample of the points around each.

use patrol_anomaly_detect::{
    detect, probation, AdaptiveParams, Direction, EpisodeParams, EpisodeTracker,
    LikelihoodDetector, LikelihoodParams, Method, Noise, Point, Scored, Season,
};
use patrol_job_api::{Finding, Severity};
use serde_json::json;

use crate::budget::{self, BudgetState};
use crate::evaluate;
use crate::{SeriesMethod, SeriesSpec, WarmUp};

/// NAB's probation looks at the first 5,000 points of a series.
const PROBATION_OF: usize = 5_000;
/// The default warm-up is at least this many points: a file first read
/// when it is young (and streamed from then on) still learns for half a
/// day of 5-minute points before it can page. NAB's shortest file has
/// 1,126 points, so NAB's probation is never below it there.
const MIN_LEARNING: usize = 150;
/// Points shown on each side of an episode in its sample.
const SAMPLE_AROUND: usize = 3;
/// Most points of the episode itself in its sample.
const SAMPLE_INSIDE: usize = 12;

/// The settings of a series, resolved from its spec.
#[derive(Debug, Clone)]
pub struct Settings {
    pub method: SeriesMethod,
    pub direction: Direction,
    pub threshold: f64,
    pub open: f64,
    pub close: f64,
    pub refractory_secs: i64,
    pub warm_up: Option<WarmUp>,
    pub z: Option<f64>,
    pub alpha: Option<f64>,
}

impl Settings {
    pub fn of(spec: &SeriesSpec) -> Self {
        let threshold = spec
            .threshold
            .unwrap_or(LikelihoodParams::default().threshold);
        Settings {
            method: spec.method,
            direction: spec.direction,
            threshold,
            open: spec.open.unwrap_or(DEFAULT_OPEN.max(threshold)),
            close: spec.close.unwrap_or(DEFAULT_CLOSE.min(threshold)),
            refractory_secs: spec.refractory.0.as_secs() as i64,
            warm_up: spec.warm_up,
            z: spec.z,
            alpha: spec.alpha,
        }
    }

    /// Points of `points` the detector only learns from.
    pub fn learning(&self, points: &[Point]) -> usize {
        match self.warm_up {
            Some(WarmUp::Points(n)) => n as usize,
            Some(WarmUp::Duration(d)) => {
                let Some(first) = points.first() else {
                    return 0;
                };
                let until = first.ts + d.0.as_secs() as i64;
                points.partition_point(|p| p.ts < until)
            }
            None => probation(points.len().min(PROBATION_OF)).max(MIN_LEARNING),
        }
    }

    /// The method as the detector crate names it (batch methods; the
    /// likelihood also runs one point at a time, see [`Self::detector`]).
    pub fn method(&self, points: &[Point]) -> Method {
        match self.method {
            SeriesMethod::Likelihood => Method::Likelihood(self.likelihood(self.learning(points))),
            SeriesMethod::Adaptive => {
                let defaults = AdaptiveParams::default();
                Method::Adaptive(AdaptiveParams {
                    alpha: self.alpha.unwrap_or(defaults.alpha),
                    z: self.z.unwrap_or(defaults.z),
                    season: Season::HourOfWeek,
                    noise: Noise::None,
                    ..defaults
                })
            }
            SeriesMethod::RollingSigma => Method::RollingSigma {
                sigmas: self.z.unwrap_or(3.0),
                window: day_of_points(points),
            },
        }
    }

    fn likelihood(&self, learning: usize) -> LikelihoodParams {
        LikelihoodParams {
            threshold: self.threshold,
            learning: Some(learning),
            ..LikelihoodParams::default()
        }
    }

    /// A fresh one-point-at-a-time detector, for the methods that have one.
    pub fn detector(&self, points: &[Point]) -> Option<LikelihoodDetector> {
        (self.method == SeriesMethod::Likelihood).then(|| {
            let learning = self.learning(points);
            LikelihoodDetector::new(self.likelihood(learning), self.direction, learning)
        })
    }

    pub fn episodes(&self) -> EpisodeParams {
        let likelihood = self.method == SeriesMethod::Likelihood;
        EpisodeParams {
            open: likelihood.then_some(self.open),
            close: likelihood.then_some(self.close),
            refractory_secs: self.refractory_secs,
        }
    }
}

/// The likelihood that pages by default: a tail probability of about 1e-7
/// (the anomalous level 0.5 is 1e-5). A series of 5-minute points has about
/// 2,000 points a week: at 1e-5 per point and four surprises, chance alone
/// pages every few days; at 1e-7, once in years.
const DEFAULT_OPEN: f64 = 0.7;
/// Where an open likelihood episode stops by default: a tail probability
/// of about 1e-3 (the anomalous level 0.5 is 1e-5).
const DEFAULT_CLOSE: f64 = 0.3;

/// About one day of points at the series' median step (at least 10).
pub fn day_of_points(points: &[Point]) -> usize {
    let step = patrol_anomaly_detect::typical_step(points);
    (86_400 / step.max(1)).max(10) as usize
}

/// Judges `points` from scratch with the batch method (warm-up applied to
/// every method alike).
pub fn judge_batch(settings: &Settings, points: &[Point]) -> Vec<Scored> {
    if let Some(mut detector) = settings.detector(points) {
        return points.iter().map(|p| detector.push(p)).collect();
    }
    let mut scored = detect(points, &settings.method(points), settings.direction);
    let learning = settings.learning(points);
    for verdict in scored.iter_mut().take(learning) {
        if verdict.score.is_some() {
            verdict.is_anomaly = false;
            verdict.warming_up = true;
        }
    }
    scored
}

/// One column's episodes this run, what the budget decided, and the
/// findings to report.
pub struct Paged {
    pub findings: Vec<Finding>,
    pub episodes: usize,
    pub paged: usize,
    pub held: u64,
}

/// The identity of a column in keys and texts.
pub struct ColumnId<'a> {
    pub series: &'a str,
    pub column: &'a str,
    /// Whether the file has other value columns (they name the alert too).
    pub several: bool,
}

impl ColumnId<'_> {
    fn key(&self) -> String {
        format!("anomaly/series/{}/{}", self.series, self.column)
    }

    fn shown(&self) -> String {
        if self.several {
            format!("{} {}", self.series, self.column)
        } else {
            self.series.to_string()
        }
    }
}

/// What a run pages for one column.
pub struct PageInput<'a> {
    pub id: ColumnId<'a>,
    pub severity: Severity,
    pub runbook: Option<&'a str>,
    pub pages_per_day: u32,
    /// Points judged this run, their verdicts and their timestamps as
    /// written in the file.
    pub scored: &'a [Scored],
    pub stamps: &'a [String],
    /// Seconds between points (an episode's end is its last point's end).
    pub step: i64,
    /// End (ms) of what the previous run judged: closed episodes ending by
    /// then were reported by it.
    pub previous_end: Option<i64>,
}

/// Turns this run's points into episodes (from `tracker`'s state) and the
/// episodes the budget lets through into findings.
pub fn page(
    input: &PageInput,
    params: &EpisodeParams,
    tracker: &mut EpisodeTracker,
    budget: &mut BudgetState,
) -> Paged {
    let found = patrol_anomaly_detect::episodes::episodes(input.scored, params, tracker);
    let step_ms = input.step.max(1) * 1000;
    let reported: Vec<_> = found
        .iter()
        .filter(|e| {
            e.open
                || input
                    .previous_end
                    .is_none_or(|previous| e.last * 1000 + step_ms > previous)
        })
        .collect();
    let starts: Vec<(i64, String)> = reported
        .iter()
        .map(|e| (e.start * 1000, e.start.to_string()))
        .collect();
    let verdict = budget.decide(&starts, input.pages_per_day);
    let mut findings = Vec::new();
    for (episode, page) in reported.iter().zip(&verdict.page) {
        if *page {
            findings.push(episode_finding(input, episode, step_ms));
        }
    }
    let newest_day = input
        .scored
        .last()
        .map(|p| evaluate::utc(p.ts * 1000).format("%Y-%m-%d").to_string());
    for held in &verdict.held {
        if held.grew || Some(&held.day) == newest_day.as_ref() {
            findings.push(held_finding(input, held));
        }
    }
    Paged {
        episodes: found.len(),
        paged: verdict.page.iter().filter(|p| **p).count(),
        held: verdict.held.iter().filter(|h| h.grew).map(|h| h.held).sum(),
        findings,
    }
}

fn episode_finding(
    input: &PageInput,
    episode: &patrol_anomaly_detect::episodes::Episode,
    step_ms: i64,
) -> Finding {
    let start = evaluate::utc(episode.start * 1000);
    let baseline = input
        .scored
        .iter()
        .find(|p| p.ts == episode.peak_ts)
        .and_then(|p| p.baseline);
    let high = baseline.is_none_or(|b| episode.peak_value >= b);
    let mut finding = Finding::new(
        format!("{}/{}", input.id.key(), start.format("%Y-%m-%dT%H:%M:%SZ")),
        input.severity,
        format!(
            "Anomaly: {} ({})",
            input.id.shown(),
            if high { "high" } else { "low" }
        ),
    );
    let end_ms = episode.last * 1000 + step_ms;
    finding.summary = format!(
        "{} = {} at {}, baseline {}; {} point{} over {}{}",
        input.id.column,
        episode.peak_value,
        evaluate::utc(episode.peak_ts * 1000).to_rfc3339(),
        baseline.map_or("unknown".into(), |b| format!("{b:.3}")),
        episode.points,
        if episode.points == 1 { "" } else { "s" },
        evaluate::window_text(episode.start * 1000, end_ms),
        if episode.open { " (ongoing)" } else { "" },
    );
    finding.window = Some(evaluate::window_text(episode.start * 1000, end_ms));
    finding.delta = Some(evaluate::delta_text(episode.peak_value, baseline, false));
    let sample = sample(input, episode);
    finding.sample_trace = Some(sample_text(&sample));
    route(&mut finding, input);
    finding.details = json!({
        "value": episode.peak_value,
        "baseline": baseline,
        "score": episode.peak_score,
        "peak_at": evaluate::utc(episode.peak_ts * 1000).to_rfc3339(),
        "points": episode.points,
        "open": episode.open,
        "sample": sample.iter().map(|s| json!({
            "ts": s.stamp, "value": s.value, "score": s.score, "in_episode": s.inside,
        })).collect::<Vec<_>>(),
    });
    finding
}

fn held_finding(input: &PageInput, held: &budget::HeldDay) -> Finding {
    let mut finding = Finding::new(
        format!("{}/held/{}", input.id.key(), held.day),
        input.severity,
        format!("Anomalies held back: {}", input.id.shown()),
    );
    finding.summary = budget::held_text(&input.id.shown(), held);
    route(&mut finding, input);
    finding.details = json!({"held": held.held, "pages_per_day": held.limit, "day": held.day});
    finding
}

/// The runbook and the labels alert routes match on (series, column).
fn route(finding: &mut Finding, input: &PageInput) {
    finding.runbook = input.runbook.map(str::to_string);
    let labels = [("series", input.id.series), ("column", input.id.column)];
    for (name, value) in labels {
        finding.labels.insert(name.into(), value.into());
    }
}

/// One point of an episode's sample.
struct SamplePoint<'a> {
    stamp: &'a str,
    value: f64,
    score: Option<f64>,
    inside: bool,
}

/// The points before, in and after the episode among this run's points
/// (an episode carried over from the run before shows what this run has).
fn sample<'a>(
    input: &'a PageInput,
    episode: &patrol_anomaly_detect::episodes::Episode,
) -> Vec<SamplePoint<'a>> {
    let scored = input.scored;
    let first = scored.partition_point(|p| p.ts < episode.start);
    let last = scored.partition_point(|p| p.ts <= episode.last);
    let inside_end = last.min(first + SAMPLE_INSIDE);
    let before = first.saturating_sub(SAMPLE_AROUND)..first;
    let after = last..(last + SAMPLE_AROUND).min(scored.len());
    let point = |i: usize, inside: bool| SamplePoint {
        stamp: input.stamps.get(i).map_or("", String::as_str),
        value: scored[i].value,
        score: scored[i].score,
        inside,
    };
    before
        .map(|i| point(i, false))
        .chain((first..inside_end).map(|i| point(i, true)))
        .chain(after.map(|i| point(i, false)))
        .collect()
}

/// `2015-02-24 10:00 41.2 | [10:05 97.5 10:10 96.0] | 10:15 44.1`: the
/// episode's points in brackets.
fn sample_text(sample: &[SamplePoint]) -> String {
    let mut out = String::new();
    let mut was_inside = false;
    for point in sample {
        if point.inside && !was_inside {
            out.push_str(if out.is_empty() { "[" } else { " [" });
        } else if !point.inside && was_inside {
            out.push(']');
        }
        if !out.is_empty() && !out.ends_with('[') {
            out.push(' ');
        }
        out.push_str(&format!("{} {}", point.stamp, point.value));
        was_inside = point.inside;
    }
    if was_inside {
        out.push(']');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(n: usize, hot: &[usize]) -> Vec<Scored> {
        (0..n)
            .map(|i| Scored {
                ts: i as i64 * 300,
                value: if hot.contains(&i) { 90.0 } else { 10.0 },
                baseline: Some(10.0),
                score: Some(if hot.contains(&i) { 0.9 } else { 0.0 }),
                is_anomaly: hot.contains(&i),
                warming_up: false,
            })
            .collect()
    }

    fn stamps(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    const PARAMS: EpisodeParams = EpisodeParams {
        open: Some(0.5),
        close: Some(0.3),
        refractory_secs: 3600,
    };

    fn input<'a>(scored: &'a [Scored], stamps: &'a [String], per_day: u32) -> PageInput<'a> {
        PageInput {
            id: ColumnId {
                series: "cpu",
                column: "value",
                several: false,
            },
            severity: Severity::Warning,
            runbook: Some("anomaly-metric"),
            pages_per_day: per_day,
            scored,
            stamps,
            step: 300,
            previous_end: None,
        }
    }

    #[test]
    fn an_episode_pages_once_with_the_points_around_it_as_its_sample() {
        let points = scored(40, &[10, 11, 14]);
        let stamps = stamps(40);
        let paged = page(
            &input(&points, &stamps, 3),
            &PARAMS,
            &mut EpisodeTracker::default(),
            &mut BudgetState::default(),
        );
        assert_eq!(
            (paged.episodes, paged.paged, paged.findings.len()),
            (1, 1, 1)
        );
        let finding = &paged.findings[0];
        assert_eq!(finding.key, "anomaly/series/cpu/value/1970-01-01T00:50:00Z");
        assert_eq!(
            finding.sample_trace.as_deref(),
            Some("t7 10 t8 10 t9 10 [t10 90 t11 90 t12 10 t13 10 t14 90] t15 10 t16 10 t17 10")
        );
        assert_eq!(finding.details["points"], 3);
        assert_eq!(finding.title, "Anomaly: cpu (high)");
    }

    #[test]
    fn past_the_budget_one_summary_says_how_many_were_held_back() {
        // Five separate episodes (two hours apart) on one day, budget 2.
        let hot: Vec<usize> = (0..5).map(|k| 5 + k * 24).collect();
        let points = scored(130, &hot);
        let stamps = stamps(130);
        let paged = page(
            &input(&points, &stamps, 2),
            &PARAMS,
            &mut EpisodeTracker::default(),
            &mut BudgetState::default(),
        );
        assert_eq!((paged.episodes, paged.paged, paged.held), (5, 2, 3));
        let keys: Vec<&str> = paged.findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        let summary = &paged.findings[2];
        assert_eq!(summary.key, "anomaly/series/cpu/value/held/1970-01-01");
        assert!(
            summary
                .summary
                .starts_with("3 more anomalies of cpu held back"),
            "{}",
            summary.summary
        );
    }

    #[test]
    fn a_closed_episode_the_last_run_reported_is_not_reported_again() {
        let points = scored(40, &[10]);
        let stamps = stamps(40);
        let mut previous = input(&points, &stamps, 3);
        // The previous run judged up to the end of point 20.
        previous.previous_end = Some(21 * 300 * 1000);
        let paged = page(
            &previous,
            &PARAMS,
            &mut EpisodeTracker::default(),
            &mut BudgetState::default(),
        );
        assert_eq!((paged.episodes, paged.findings.len()), (1, 0));
    }

    #[test]
    fn a_warm_up_in_points_or_as_a_duration_and_nabs_probation_by_default() {
        let points: Vec<Point> = (0..8000).map(|i| Point::new(i * 60, 1.0)).collect();
        let mut settings = Settings {
            method: SeriesMethod::Likelihood,
            direction: Direction::Both,
            threshold: 0.5,
            open: 0.7,
            close: 0.3,
            refractory_secs: 0,
            warm_up: None,
            z: None,
            alpha: None,
        };
        assert_eq!(settings.learning(&points), 750);
        assert_eq!(settings.learning(&points[..2000]), 300);
        // A young file streamed from its first rows still learns a while.
        assert_eq!(settings.learning(&points[..40]), 150);
        settings.warm_up = Some(WarmUp::Points(20));
        assert_eq!(settings.learning(&points), 20);
        settings.warm_up = Some(WarmUp::Duration(patrol_job_api::units::HumanDuration(
            std::time::Duration::from_secs(3600),
        )));
        assert_eq!(settings.learning(&points), 60);
        // Every method honours it, beyond its own warm-up (one day of
        // points for the rolling rule).
        settings.method = SeriesMethod::RollingSigma;
        settings.warm_up = Some(WarmUp::Points(3000));
        let scored = judge_batch(&settings, &points);
        assert!(scored[..3000].iter().all(|s| s.warming_up));
        assert!(scored[3000..].iter().all(|s| !s.warming_up));
    }
}
