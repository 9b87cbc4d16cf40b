//! Backtests: replay labelled history through a rule's static reference
//! and its adaptive threshold, score both against the labelled incidents,
//! and tune the adaptive parameters (never below the rule's `min_power`).

use std::collections::BTreeMap;
use std::path::Path;

use patrol_anomaly_detect::{merge, score, tune, Grid, Incident, Method, Score, TuneOutcome};
use serde::{Deserialize, Serialize};

use crate::judge::judge;
use crate::rules::Rule;
use crate::series::{GroupSeries, Hop};

/// A labels file: the fixture generator's `incidents.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Labels {
    pub incidents: Vec<LabelledIncident>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabelledIncident {
    #[serde(default)]
    pub id: Option<String>,
    pub rule: String,
    #[serde(default)]
    pub group: BTreeMap<String, String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The action, for rules grouped by action.
    #[serde(default)]
    pub action: Option<String>,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
}

pub fn load_labels(path: &Path) -> Result<Labels, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        format!(
            "{}:{}: {}: {}",
            path.display(),
            err.inner().line(),
            err.path(),
            err.inner()
        )
    })
}

/// Labelled windows of one series file from a NAB `combined_windows.json`
/// (`{"realKnownCause/nyc_taxi.csv": [["2014-10-30 15:30:00.000000", …], …]}`):
/// the entry whose key ends with the file's name.
pub fn load_windows(path: &Path, series_file: &Path) -> Result<Vec<Incident>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let all: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&text)
        .map_err(|err| format!("{}: not a windows file ({err})", path.display()))?;
    let name = series_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some((_, windows)) = all
        .iter()
        .find(|(key, _)| key.rsplit('/').next() == Some(name))
    else {
        return Ok(Vec::new());
    };
    windows
        .iter()
        .map(|(start, end)| {
            let parse = |t: &str| {
                crate::metrics::parse_stamp(t)
                    .ok_or_else(|| format!("{}: `{t}` is not a time", path.display()))
            };
            Ok(Incident {
                start: parse(start)?,
                end: parse(end)?,
            })
        })
        .collect()
}

/// Backtests one metric series column: the adaptive method against a
/// rolling 3-sigma rule over one day of points, same points, same scoring.
pub fn backtest_series(
    id: &str,
    points: &[patrol_anomaly_detect::Point],
    adaptive: &Method,
    direction: patrol_anomaly_detect::Direction,
    step_secs: i64,
    incidents: &[Incident],
) -> RuleBacktest {
    let day = (24 * 3600 / step_secs.max(1)).max(10) as usize;
    let sigma = Method::RollingSigma {
        sigmas: 3.0,
        window: day,
    };
    let run = |method: &Method| MethodResult {
        method: method.clone(),
        score: score(
            &patrol_anomaly_detect::detect(points, method, direction),
            incidents,
            0,
        ),
    };
    let reference = run(&sigma);
    let configured = run(adaptive);
    let false_positive_reduction = (reference.score.false_positives > 0).then(|| {
        1.0 - configured.score.false_positives as f64 / reference.score.false_positives as f64
    });
    RuleBacktest {
        rule: id.to_string(),
        groups: 1,
        incidents: incidents.len(),
        reference: Some(reference),
        configured,
        tuned: None,
        false_positive_reduction,
    }
}

/// How one method did on one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    pub method: Method,
    pub score: Score,
}

/// One rule's backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleBacktest {
    pub rule: String,
    pub groups: usize,
    pub incidents: usize,
    /// The rule's `compare` reference (static multiple or p95 multiple).
    pub reference: Option<MethodResult>,
    /// The threshold as configured.
    pub configured: MethodResult,
    /// Auto-tune's choice or refusal (adaptive rules with `tune`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned: Option<TuneOutcome>,
    /// How many fewer false alarms the adaptive threshold raises than the
    /// reference, as a share of the reference's (tuned if tuning succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_positive_reduction: Option<f64>,
}

fn incidents_of<'a>(
    labels: &'a Labels,
    rule: &'a Rule,
) -> impl Iterator<Item = &'a LabelledIncident> {
    labels.incidents.iter().filter(move |i| i.rule == rule.id)
}

fn matches_group(incident: &LabelledIncident, series: &GroupSeries) -> bool {
    let action = incident
        .action
        .iter()
        .map(|a| ("action".to_string(), a.clone()));
    let named: Vec<(String, String)> = incident
        .group
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(action)
        .collect();
    named.iter().all(|(field, value)| {
        series
            .labels
            .iter()
            .any(|(name, have)| name == field && have == value)
    })
}

fn as_incident(incident: &LabelledIncident) -> Incident {
    Incident {
        start: incident.start.timestamp(),
        end: incident.end.timestamp(),
    }
}

/// Scores `method` on every group and merges. A labelled incident counts
/// once however many groups it matches (a label naming only tenant and
/// region matches every action of a per-action rule): detected when any of
/// them alerts in its window; incidents in groups with no data are missed.
fn method_score(
    rule: &Rule,
    method: &Method,
    series: &[(GroupSeries, Vec<Incident>)],
    wanted: &[Incident],
) -> Score {
    let tolerance = rule.window.as_secs() as i64;
    let mut detected = vec![false; wanted.len()];
    let groups: Vec<GroupSeries> = series.iter().map(|(g, _)| g.clone()).collect();
    let verdicts = judge(rule, method, &groups);
    let scores: Vec<Score> = series
        .iter()
        .zip(verdicts)
        .map(|((_, incidents), scored)| {
            for (index, incident) in wanted.iter().enumerate() {
                let (from, to) = (
                    incident.start - tolerance,
                    incident.end.max(incident.start + 1) + tolerance,
                );
                if incidents.contains(incident)
                    && scored
                        .iter()
                        .any(|p| p.is_anomaly && p.ts >= from && p.ts < to)
                {
                    detected[index] = true;
                }
            }
            score(&scored, incidents, tolerance)
        })
        .collect();
    let mut merged = merge(&scores);
    merged.incidents = wanted.len();
    merged.detected = detected.iter().filter(|d| **d).count();
    with_power(merged)
}

fn with_power(mut score: Score) -> Score {
    score.power = if score.incidents == 0 {
        1.0
    } else {
        score.detected as f64 / score.incidents as f64
    };
    score.f1 = if score.precision + score.power > 0.0 {
        2.0 * score.precision * score.power / (score.precision + score.power)
    } else {
        0.0
    };
    score
}

/// Backtests a rate or ratio rule over its group series.
pub fn backtest_rule(rule: &Rule, groups: Vec<GroupSeries>, labels: &Labels) -> RuleBacktest {
    let wanted: Vec<&LabelledIncident> = incidents_of(labels, rule).collect();
    let mut matched = vec![false; wanted.len()];
    let series: Vec<(GroupSeries, Vec<Incident>)> = groups
        .into_iter()
        .map(|group| {
            let incidents = wanted
                .iter()
                .enumerate()
                .filter(|(_, incident)| matches_group(incident, &group))
                .map(|(index, incident)| {
                    matched[index] = true;
                    as_incident(incident)
                })
                .collect();
            (group, incidents)
        })
        .collect();
    let unmatched = matched.iter().filter(|m| !**m).count();
    let all: Vec<Incident> = wanted.iter().map(|i| as_incident(i)).collect();
    let reference = (rule.compare != rule.threshold).then(|| MethodResult {
        method: rule.compare.clone(),
        score: method_score(rule, &rule.compare, &series, &all),
    });
    let configured = MethodResult {
        method: rule.threshold.clone(),
        score: method_score(rule, &rule.threshold, &series, &all),
    };
    let tuned = match &rule.threshold {
        Method::Adaptive(base) if rule.tune => {
            let refs: Vec<(&[patrol_anomaly_detect::Point], &[Incident])> = series
                .iter()
                .map(|(group, incidents)| (group.points.as_slice(), incidents.as_slice()))
                .collect();
            let outcome = tune(
                &refs,
                base,
                rule.direction,
                &Grid::default(),
                rule.min_power,
                rule.window.as_secs() as i64,
            );
            // Score the choice the way runs judge (with the population
            // fallback for ratio rules), so it compares with the others.
            let outcome = match outcome {
                TuneOutcome::Tuned(mut tuned) => {
                    tuned.score =
                        method_score(rule, &Method::Adaptive(tuned.params.clone()), &series, &all);
                    TuneOutcome::Tuned(tuned)
                }
                refused => refused,
            };
            Some(match outcome {
                // Scored over every labelled incident (those in groups
                // without data count as missed): the guardrail again.
                TuneOutcome::Tuned(tuned) if tuned.score.power < rule.min_power => {
                    TuneOutcome::Refused {
                        best_power: tuned.score.power,
                        min_power: rule.min_power,
                        reason: format!(
                            "{unmatched} labelled incident(s) have no data; the rest do not reach it"
                        ),
                    }
                }
                other => other,
            })
        }
        _ => None,
    };
    let adaptive_fp = match &tuned {
        Some(TuneOutcome::Tuned(tuned)) => Some(tuned.score.false_positives),
        _ if rule.is_adaptive() => Some(configured.score.false_positives),
        _ => None,
    };
    let false_positive_reduction = match (&reference, adaptive_fp) {
        (Some(reference), Some(adaptive)) if reference.score.false_positives > 0 => {
            Some(1.0 - adaptive as f64 / reference.score.false_positives as f64)
        }
        _ => None,
    };
    RuleBacktest {
        rule: rule.id.clone(),
        groups: series.len(),
        incidents: wanted.len(),
        reference,
        configured,
        tuned,
        false_positive_reduction,
    }
}

/// Backtests a travel rule: a labelled incident is detected by a hop of its
/// subject within the rule's window of it; other hops are false alarms.
pub fn backtest_travel(rule: &Rule, hops: &[Hop], labels: &Labels, within_ms: i64) -> RuleBacktest {
    let wanted: Vec<&LabelledIncident> = incidents_of(labels, rule).collect();
    let near = |hop: &Hop, incident: &LabelledIncident| {
        incident.subject.as_deref() == Some(hop.subject.as_str())
            && hop.arrived_at >= incident.start.timestamp_millis() - within_ms
            && hop.arrived_at < incident.end.timestamp_millis() + within_ms
    };
    let detected = wanted
        .iter()
        .filter(|incident| hops.iter().any(|hop| near(hop, incident)))
        .count();
    let false_positives = hops
        .iter()
        .filter(|hop| !wanted.iter().any(|incident| near(hop, incident)))
        .count();
    let episodes = hops.len();
    let power = if wanted.is_empty() {
        1.0
    } else {
        detected as f64 / wanted.len() as f64
    };
    let precision = if episodes == 0 {
        1.0
    } else {
        (episodes - false_positives) as f64 / episodes as f64
    };
    let score = Score {
        points: episodes,
        alert_points: episodes,
        episodes,
        false_positives,
        false_positive_points: false_positives,
        negative_points: 0,
        fpr: 0.0,
        incidents: wanted.len(),
        detected,
        power,
        precision,
        f1: if precision + power > 0.0 {
            2.0 * precision * power / (precision + power)
        } else {
            0.0
        },
    };
    RuleBacktest {
        rule: rule.id.clone(),
        groups: 0,
        incidents: wanted.len(),
        reference: None,
        configured: MethodResult {
            method: rule.threshold.clone(),
            score,
        },
        tuned: None,
        false_positive_reduction: None,
    }
}

/// The report people read: one block per rule, methods side by side.
pub fn report_text(results: &[RuleBacktest]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<22} {:<10} {:>7} {:>6} {:>9} {:>7} {:>9}\n",
        "rule", "method", "alerts", "false", "fpr", "power", "incidents"
    ));
    for result in results {
        let mut line = |name: &str, score: &Score| {
            out.push_str(&format!(
                "{:<22} {:<10} {:>7} {:>6} {:>8.3}% {:>6.0}% {:>4}/{:<4}\n",
                result.rule,
                name,
                score.episodes,
                score.false_positives,
                score.fpr * 100.0,
                score.power * 100.0,
                score.detected,
                score.incidents
            ));
        };
        if let Some(reference) = &result.reference {
            line(method_label(&reference.method), &reference.score);
        }
        line(
            if result.tuned.is_some() {
                "configured"
            } else {
                method_label(&result.configured.method)
            },
            &result.configured.score,
        );
        match &result.tuned {
            Some(TuneOutcome::Tuned(tuned)) => {
                line("tuned", &tuned.score);
                out.push_str(&format!(
                    "{:<22}   tuned alpha={} z={} ({} candidates)\n",
                    "", tuned.params.alpha, tuned.params.z, tuned.tried
                ));
            }
            Some(TuneOutcome::Refused {
                best_power,
                min_power,
                reason,
            }) => out.push_str(&format!(
                "{:<22}   tuning refused: best power {:.0}% < min_power {:.0}% ({reason})\n",
                "",
                best_power * 100.0,
                min_power * 100.0
            )),
            None => {}
        }
        if let Some(reduction) = result.false_positive_reduction {
            out.push_str(&format!(
                "{:<22}   false alarms {:+.0}% vs {}\n",
                "",
                -reduction * 100.0,
                result
                    .reference
                    .as_ref()
                    .map_or("reference", |r| method_label(&r.method))
            ));
        }
    }
    for (what, series) in [("all rules", false), ("all series", true)] {
        let totals = Totals::of(results, series);
        if totals.backtests == 0 {
            continue;
        }
        out.push_str(&format!(
            "{what}: reference {} false alarms, {}/{} incidents; {} {} false alarms, {}/{} incidents",
            totals.reference_fp,
            totals.reference_detected,
            totals.incidents,
            if series { "configured" } else { "adaptive" },
            totals.adaptive_fp,
            totals.adaptive_detected,
            totals.incidents
        ));
        if totals.reference_fp > 0 {
            out.push_str(&format!(
                " ({:+.0}% false alarms)",
                -100.0 * (1.0 - totals.adaptive_fp as f64 / totals.reference_fp as f64)
            ));
        }
        out.push('\n');
    }
    out
}

/// Sums over rules, or over metric series: each one's reference (or its
/// only method) against what pages after the backtest (tuned if tuning
/// succeeded; for series, the configured method, `adaptive_*` by the
/// field names older reports used).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Rules (or series columns) summed.
    pub backtests: usize,
    pub incidents: usize,
    pub reference_fp: usize,
    pub reference_detected: usize,
    pub adaptive_fp: usize,
    pub adaptive_detected: usize,
}

impl Totals {
    pub fn of(results: &[RuleBacktest], series: bool) -> Self {
        let mut totals = Totals::default();
        for result in results
            .iter()
            .filter(|r| r.rule.starts_with("series:") == series)
        {
            totals.backtests += 1;
            let adaptive = match &result.tuned {
                Some(TuneOutcome::Tuned(tuned)) => &tuned.score,
                _ => &result.configured.score,
            };
            let reference = result
                .reference
                .as_ref()
                .map_or(&result.configured.score, |r| &r.score);
            totals.incidents += adaptive.incidents;
            totals.reference_fp += reference.false_positives;
            totals.reference_detected += reference.detected;
            totals.adaptive_fp += adaptive.false_positives;
            totals.adaptive_detected += adaptive.detected;
        }
        totals
    }
}

fn method_label(method: &Method) -> &'static str {
    match method {
        Method::MeanMultiple { .. } => "static",
        Method::P95Multiple { .. } => "p95",
        Method::RollingSigma { .. } => "3-sigma",
        Method::Adaptive(_) => "adaptive",
        Method::Likelihood(_) => "likelihood",
    }
}
