//! A run's metric series: each file read whole (first run, a changed
//! file, methods that re-judge their history) or from where the last run
//! stopped (the likelihood method, whose detector is kept in job state),
//! judged column by column on every core, paged through episodes and the
//! budget, and written out point by point.

use std::collections::BTreeMap;
use std::path::PathBuf;

use patrol_anomaly_detect::{typical_step, EpisodeTracker, Point, Scored};
use patrol_job_api::{Finding, Severity};
use serde_json::json;

use crate::backtest::{self, RuleBacktest};
use crate::metric_judge::{self, ColumnId, PageInput, Settings};
use crate::metric_stream::{self, ColumnState, SeriesState};
use crate::metrics::{self, MetricSeries};
use crate::SeriesSpec;

/// A detections file to write: replaced whole, or rows appended.
#[derive(Debug, Clone)]
pub struct Detections {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub append: bool,
}

/// What one series came to.
pub struct SeriesOutcome {
    pub details: serde_json::Value,
    pub findings: Vec<Finding>,
    /// The state to keep (`None`: keep nothing new).
    pub state: SeriesState,
    pub detections: Vec<Detections>,
    pub backtests: Vec<RuleBacktest>,
}

/// What judging one series needs besides its spec.
pub struct SeriesContext<'a> {
    pub severity: Severity,
    pub history_secs: i64,
    pub detections_dir: Option<&'a PathBuf>,
    /// Backtest the series' labels (re-judges the whole file).
    pub backtest: bool,
    pub prior: Option<&'a SeriesState>,
    /// Cursors of older versions (`series/<name>/<column>` → end in ms).
    pub legacy_cursors: &'a BTreeMap<String, i64>,
}

/// Judges one series file.
pub fn judge_series(spec: &SeriesSpec, ctx: &SeriesContext) -> Result<SeriesOutcome, String> {
    let settings = Settings::of(spec);
    if let Some(outcome) = judge_new_rows(spec, &settings, ctx)? {
        return Ok(outcome);
    }
    judge_whole(spec, &settings, ctx)
}

/// The streaming path: only when every column has a detector from the
/// last run and the file is the one read then.
fn judge_new_rows(
    spec: &SeriesSpec,
    settings: &Settings,
    ctx: &SeriesContext,
) -> Result<Option<SeriesOutcome>, String> {
    let Some(prior) = ctx.prior.filter(|_| !ctx.backtest) else {
        return Ok(None);
    };
    let Some(mark) = &prior.mark else {
        return Ok(None);
    };
    if prior.columns.values().any(|c| c.detector.is_none()) || settings.detector(&[]).is_none() {
        return Ok(None);
    }
    let Some((columns, stats, mark)) =
        metric_stream::read_new_rows(&spec.path, &spec.timestamp, &spec.values, mark)?
    else {
        return Ok(None);
    };
    if columns
        .iter()
        .any(|c| !prior.columns.contains_key(&c.column))
    {
        return Ok(None);
    }
    let several = columns.len() > 1;
    let mut outcome = new_outcome(spec, stats.rows, stats.bad_rows, &stats.samples);
    outcome.state.mark = Some(mark);
    for column in columns {
        let mut state = prior.columns[&column.column].clone();
        let fresh: Vec<usize> = (0..column.points.len())
            .filter(|&i| state.last_ts.is_none_or(|last| column.points[i].ts > last))
            .collect();
        let points: Vec<Point> = fresh.iter().map(|&i| column.points[i]).collect();
        let stamps: Vec<String> = fresh.iter().map(|&i| column.stamps[i].clone()).collect();
        let detector = state.detector.as_mut().expect("checked above");
        let scored: Vec<Scored> = points.iter().map(|p| detector.push(p)).collect();
        let judged = Judged {
            column: &column.column,
            several,
            stamps: &stamps,
            scored: &scored,
            step: state.step,
        };
        let previous_end = state.judged_end;
        finish_column(
            spec,
            settings,
            ctx,
            judged,
            previous_end,
            &mut state,
            false,
            &mut outcome,
        );
        outcome.state.columns.insert(column.column.clone(), state);
    }
    Ok(Some(outcome))
}

/// The whole file (within `history`), judged from scratch.
fn judge_whole(
    spec: &SeriesSpec,
    settings: &Settings,
    ctx: &SeriesContext,
) -> Result<SeriesOutcome, String> {
    let (columns, stats, mark) = metrics::read_series(&spec.path, &spec.timestamp, &spec.values)?;
    let windows = match (ctx.backtest, &spec.labels) {
        (true, Some(labels)) => Some(backtest::load_windows(labels, &spec.path)?),
        _ => None,
    };
    let several = columns.len() > 1;
    let mut outcome = new_outcome(spec, stats.rows, stats.bad_rows, &stats.samples);
    outcome.state.mark = mark;
    for column in columns {
        let column = within_history(column, ctx.history_secs);
        let points = &column.points;
        let step = typical_step(points);
        let (scored, detector) = match settings.detector(points) {
            Some(mut detector) => {
                let scored = points.iter().map(|p| detector.push(p)).collect();
                (scored, Some(detector))
            }
            None => (metric_judge::judge_batch(settings, points), None),
        };
        if let Some(windows) = &windows {
            outcome.backtests.push(backtest::backtest_series(
                &format!("series:{}/{}", spec.name, column.column),
                points,
                &settings.method(points),
                spec.direction,
                step,
                windows,
            ));
        }
        let prior = ctx.prior.and_then(|p| p.columns.get(&column.column));
        let previous_end = prior.and_then(|c| c.judged_end).or_else(|| {
            let legacy = format!("series/{}/{}", spec.name, column.column);
            ctx.legacy_cursors.get(&legacy).copied()
        });
        let mut state = ColumnState {
            detector,
            tracker: EpisodeTracker::default(),
            budget: prior.map(|c| c.budget.clone()).unwrap_or_default(),
            last_ts: None,
            judged_end: None,
            step,
        };
        let judged = Judged {
            column: &column.column,
            several,
            stamps: &column.stamps,
            scored: &scored,
            step,
        };
        finish_column(
            spec,
            settings,
            ctx,
            judged,
            previous_end,
            &mut state,
            true,
            &mut outcome,
        );
        outcome.state.columns.insert(column.column.clone(), state);
    }
    Ok(outcome)
}

/// One column's points judged this run.
struct Judged<'a> {
    column: &'a str,
    several: bool,
    stamps: &'a [String],
    scored: &'a [Scored],
    step: i64,
}

/// Pages, detections and details of one judged column; advances `state`.
#[allow(clippy::too_many_arguments)]
fn finish_column(
    spec: &SeriesSpec,
    settings: &Settings,
    ctx: &SeriesContext,
    judged: Judged,
    previous_end: Option<i64>,
    state: &mut ColumnState,
    whole: bool,
    outcome: &mut SeriesOutcome,
) {
    let input = PageInput {
        id: ColumnId {
            series: &spec.name,
            column: judged.column,
            several: judged.several,
        },
        severity: ctx.severity,
        runbook: spec.runbook.as_deref(),
        pages_per_day: spec.pages_per_day,
        scored: judged.scored,
        stamps: judged.stamps,
        step: judged.step,
        previous_end,
    };
    let paged = metric_judge::page(
        &input,
        &settings.episodes(),
        &mut state.tracker,
        &mut state.budget,
    );
    if let Some(last) = judged.scored.last() {
        state.last_ts = Some(last.ts);
        state.judged_end = Some((last.ts + judged.step.max(1)) * 1000);
    } else {
        state.judged_end = previous_end;
    }
    let written = ctx.detections_dir.map(|dir| {
        let file = if judged.several {
            format!("{}.{}.csv", spec.name, judged.column)
        } else {
            format!("{}.csv", spec.name)
        };
        let path = dir.join(file);
        let shown = path.display().to_string();
        if whole || !judged.scored.is_empty() {
            outcome.detections.push(Detections {
                bytes: metrics::detections_csv(judged.stamps, judged.scored, whole),
                path,
                append: !whole,
            });
        }
        shown
    });
    outcome.findings.extend(paged.findings);
    if let Some(columns) = outcome.details["columns"].as_array_mut() {
        columns.push(json!({
            "column": judged.column,
            "method": settings.method.name(),
            "read": if whole { "whole" } else { "new rows" },
            "points": judged.scored.len(),
            "anomalous_points": judged.scored.iter().filter(|p| p.is_anomaly).count(),
            "episodes": paged.episodes,
            "paged": paged.paged,
            "held_back": paged.held,
            "warming_up": judged.scored.iter().all(|p| p.warming_up),
            "detections": written,
        }));
    }
}

fn new_outcome(spec: &SeriesSpec, rows: u64, bad_rows: u64, samples: &[String]) -> SeriesOutcome {
    SeriesOutcome {
        details: json!({
            "name": spec.name, "rows": rows, "bad_rows": bad_rows, "samples": samples, "columns": [],
        }),
        findings: Vec::new(),
        state: SeriesState::default(),
        detections: Vec::new(),
        backtests: Vec::new(),
    }
}

/// The column's points from `history` before its newest one.
fn within_history(mut column: MetricSeries, history_secs: i64) -> MetricSeries {
    let Some(newest) = column.points.last().map(|p| p.ts) else {
        return column;
    };
    let from = column
        .points
        .partition_point(|p| p.ts < newest.saturating_sub(history_secs));
    column.points.drain(..from);
    column.stamps.drain(..from);
    column
}
