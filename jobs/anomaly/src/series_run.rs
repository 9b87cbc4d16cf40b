//! A run's metric series: each file read whole (first run, a changed
//! file, methods that re-judge their history) or from where the last run
//! stopped (the likelihood method, whose detector is kept in job state),
//! judged column by column on every core, paged through episodes and the
//! budget, and written out point by point.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use patrol_anomaly_detect::{typical_step, EpisodeTracker, Point, Scored};
use patrol_job_api::{Finding, Severity};
use serde_json::json;

use crate::backtest::{self, RuleBacktest};
use crate::metric_judge::{self, ColumnId, PageInput, Settings};
use crate::metric_stream::{self, ColumnState, SeriesState, CHECKPOINT_ROWS, CHECKPOINT_RUNS};
use crate::metrics::{self, MetricSeries};
use crate::SeriesSpec;

/// Metric series' states, detectors included, as this node's runs of one
/// schedule left them (see `metric_stream::SeriesState` for why).
#[derive(Debug, Clone, Default)]
pub struct SeriesCache(Arc<Mutex<HashMap<String, SeriesState>>>);

impl SeriesCache {
    /// Everything cached, leaving it empty (a run owns it while it runs).
    pub fn take(&self) -> HashMap<String, SeriesState> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What the next run goes on from.
    pub fn put(&self, states: HashMap<String, SeriesState>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = states;
    }
}

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
    /// The state after this run, detectors included.
    pub state: SeriesState,
    /// Whether to write it whole as the checkpoint.
    pub checkpoint: bool,
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
    /// What the last run wrote (`series/<name>`, no detectors).
    pub prior: Option<&'a SeriesState>,
    /// The detectors to go on from: this instance's own from the last run,
    /// or the checkpoint (`from_checkpoint`), which may be behind `prior`.
    pub model: Option<SeriesState>,
    pub from_checkpoint: bool,
    /// Cursors of older versions (`series/<name>/<column>` → end in ms).
    pub legacy_cursors: &'a BTreeMap<String, i64>,
}

/// Judges one series file.
pub fn judge_series(spec: &SeriesSpec, mut ctx: SeriesContext) -> Result<SeriesOutcome, String> {
    let settings = Settings::of(spec);
    if let Some(model) = ctx.model.take() {
        if let Some(outcome) = judge_new_rows(spec, &settings, &ctx, model)? {
            return Ok(outcome);
        }
    }
    judge_whole(spec, &settings, &ctx)
}

/// The streaming path: only when every column has a detector to go on
/// from and the file is the one read then.
fn judge_new_rows(
    spec: &SeriesSpec,
    settings: &Settings,
    ctx: &SeriesContext,
    mut model: SeriesState,
) -> Result<Option<SeriesOutcome>, String> {
    let Some(prior) = ctx.prior else {
        return Ok(None);
    };
    if ctx.backtest || settings.detector(&[]).is_none() {
        return Ok(None);
    }
    let Some(mark) = &model.mark else {
        return Ok(None);
    };
    if model.columns.values().any(|c| c.detector.is_none()) {
        return Ok(None);
    }
    let Some((columns, stats, mark)) =
        metric_stream::read_new_rows(&spec.path, &spec.timestamp, &spec.values, mark)?
    else {
        return Ok(None);
    };
    if columns.len() != model.columns.len()
        || columns
            .iter()
            .any(|c| !model.columns.contains_key(&c.column))
    {
        return Ok(None);
    }
    let several = columns.len() > 1;
    let mut outcome = new_outcome(spec, stats.rows, stats.bad_rows, &stats.samples);
    outcome.state.mark = Some(mark);
    let (runs, rows) = if ctx.from_checkpoint {
        (0, 0)
    } else {
        prior.since_checkpoint
    };
    let rows = rows + stats.rows;
    outcome.checkpoint =
        ctx.from_checkpoint || runs + 1 >= CHECKPOINT_RUNS || rows >= CHECKPOINT_ROWS;
    outcome.state.since_checkpoint = if outcome.checkpoint {
        (0, 0)
    } else {
        (runs + 1, rows)
    };
    for column in columns {
        let Some(mut state) = model.columns.remove(&column.column) else {
            continue;
        };
        // What pages goes by the last run's decisions, which a checkpoint
        // may be behind.
        let latest = prior.columns.get(&column.column);
        if let Some(latest) = latest {
            state.budget = latest.budget.clone();
        }
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
        let previous_end = latest.and_then(|c| c.judged_end);
        // Rows already in the detections file (judged again after resuming
        // from the checkpoint) are not appended again.
        let written_until = latest.and_then(|c| c.last_ts);
        finish_column(
            spec,
            settings,
            ctx,
            judged,
            previous_end,
            &mut state,
            Write::Append {
                after: written_until,
            },
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
    outcome.checkpoint = mark.is_some() && settings.detector(&[]).is_some();
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
            Write::Whole,
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

/// How this run's points go into the detections file.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// The file is replaced by them.
    Whole,
    /// Those after `after` are appended.
    Append { after: Option<i64> },
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
    write: Write,
    outcome: &mut SeriesOutcome,
) {
    let whole = matches!(write, Write::Whole);
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
        let from = match write {
            Write::Whole => 0,
            Write::Append { after } => judged
                .scored
                .partition_point(|p| after.is_some_and(|after| p.ts <= after)),
        };
        if whole || from < judged.scored.len() {
            outcome.detections.push(Detections {
                bytes: metrics::detections_csv(
                    &judged.stamps[from..],
                    &judged.scored[from..],
                    whole,
                ),
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
        checkpoint: false,
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
