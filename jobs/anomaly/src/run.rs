//! One run: read every source, judge every rule and series, report
//! findings, optionally backtest and tune, and hand back the state to keep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use patrol_anomaly_detect::{AdaptiveParams, Method, TuneOutcome};
use patrol_job_api::effects::{short_digest, thousands, Intent};
use patrol_job_api::{
    CancellationToken, Effects, Finding, JobError, JobState, Outcome, RunReport, Severity,
    StateError, StatePrefix, StateWrite,
};
use patrol_job_kit::http_auth::{header_pairs, resolve_for_run};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aggregate::Aggregator;
use crate::backtest::{self, RuleBacktest};
use crate::budget::BudgetState;
use crate::evaluate::{self, Reporting};
use crate::input::{self, SourceStats};
use crate::judge::judge;
use crate::metric_stream::SeriesState;
use crate::metrics;
use crate::rules::{Measure, Rule};
use crate::series::{self, Range};
use crate::series_run::{judge_series, Detections, SeriesCache, SeriesContext, SeriesOutcome};
use crate::{Checked, SeriesSpec, SourceSpec};
use patrol_job_kit::postgres::QuerySource;

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct RunInput {
    pub sources: Vec<SourceSpec>,
    pub rules: Vec<Rule>,
    pub series: Vec<(SeriesSpec, Severity)>,
    pub history_ms: i64,
    pub detections_dir: Option<PathBuf>,
    pub backtest: Option<PathBuf>,
    /// A backtest was asked for (with `backtest` labels for the rules, or
    /// `true`: the series' own labels only).
    pub backtesting: bool,
    /// The `postgres` sources by name, their pools kept across runs.
    pub postgres: BTreeMap<String, Arc<QuerySource>>,
    /// Metric series' detectors between runs of this schedule on this node.
    pub series_cache: SeriesCache,
}

impl From<Checked> for RunInput {
    fn from(checked: Checked) -> Self {
        RunInput {
            sources: checked.params.sources,
            rules: checked.rules,
            series: checked
                .params
                .series
                .into_iter()
                .zip(checked.series_severity)
                .collect(),
            history_ms: checked.params.history.0.as_millis() as i64,
            detections_dir: checked.params.detections_dir,
            backtesting: checked.params.backtest.is_some(),
            backtest: checked.params.backtest.and_then(crate::Backtest::labels),
            postgres: checked.postgres,
            series_cache: SeriesCache::default(),
        }
    }
}

/// Per rule or series: the end (ms) of the last bucket reported. Stored
/// as a JSON number, the bytes older versions wrote as decimal text.
const CURSORS: StatePrefix<i64> = StatePrefix::new("cursor/");
/// Per metric series: where its file was read to, each column's detector,
/// open episode and budget.
const SERIES: StatePrefix<SeriesState> = StatePrefix::new("series/");
/// Per metric series: the last checkpoint, detectors included (see
/// `metric_stream::SeriesState`).
const MODELS: StatePrefix<SeriesState> = StatePrefix::new("series-model/");
/// Per rule: what its alert budget decided (see `budget.rs`).
const BUDGETS: StatePrefix<BudgetState> = StatePrefix::new("budget/");
/// Per rule: the parameters a backtest tuned.
const TUNED: StatePrefix<TunedEntry> = StatePrefix::new("tuned/");

/// What a backtest run keeps for a tuned rule (read back: `params`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TunedEntry {
    params: AdaptiveParams,
    score: serde_json::Value,
    reference: Option<serde_json::Value>,
    labels: Option<String>,
    tuned_at: String,
}

fn state_failed(err: StateError) -> JobError {
    JobError::Failed(format!("anomaly state: {err}"))
}

/// What a rule came to in this run (for the summary and details).
#[derive(Debug, Default, serde::Serialize)]
struct RuleOutcome {
    groups: usize,
    points: usize,
    anomalies: usize,
    warming_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tuned: Option<serde_json::Value>,
}

/// One run outside the runner (tests, benches): a dry run records its
/// effects and performs none; otherwise they are performed, logged in
/// memory.
pub async fn run_once(
    state: &JobState,
    input: RunInput,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<RunReport, JobError> {
    let effects = match dry_run {
        true => Effects::dry_run(),
        false => Effects::in_memory(),
    };
    run_with_effects(state, input, &effects, cancel, chrono::Utc::now()).await
}

/// One run at `now` (the runner's clock): files it writes (detections) go
/// through `effects`; on a dry run nothing is written and no state is
/// handed back.
pub async fn run_with_effects(
    state: &JobState,
    input: RunInput,
    effects: &Effects,
    cancel: &CancellationToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport, JobError> {
    let dry_run = effects.is_dry_run();
    let stored = load_state(state).await?;
    let labels = match &input.backtest {
        Some(path) => Some(backtest::load_labels(path).map_err(JobError::Failed)?),
        None => None,
    };
    let mut aggregator = Aggregator::new(input.rules.clone());
    let latest = input::latest_plausible(now);
    let mut source_stats: BTreeMap<String, SourceStats> = BTreeMap::new();
    let mut source_errors: Vec<String> = Vec::new();
    for source in &input.sources {
        if cancel.is_cancelled() {
            return Ok(RunReport::new(
                Outcome::Cancelled,
                "cancelled while reading",
            ));
        }
        // A reader that panicked took the aggregation with it: the run
        // fails whole (alerts stay as they are, no state is written).
        let result = read_source(source, &input, latest, aggregator).await?;
        aggregator = result.0;
        match result.1 {
            Ok(stats) => {
                source_stats.insert(source.name().to_string(), stats);
            }
            Err(err) => source_errors.push(format!("{}: {err}", source.name())),
        }
    }
    let span = aggregator.span;
    let tables = tokio::task::spawn_blocking(move || aggregator.finish())
        .await
        .map_err(|err| JobError::Failed(format!("aggregation panicked: {err}")))?
        .map_err(JobError::Failed)?;

    let mut findings: Vec<Finding> = Vec::new();
    let mut writes: Vec<StateWrite> = Vec::new();
    let mut outcomes: BTreeMap<String, RuleOutcome> = BTreeMap::new();
    let mut backtests: Vec<RuleBacktest> = Vec::new();
    if let Some((oldest, newest)) = span {
        let range = Range {
            from: oldest.max(newest - input.history_ms),
            newest,
        };
        for (rule, table) in input.rules.iter().zip(&tables) {
            let mut outcome = RuleOutcome::default();
            let previous_end = stored.cursors.get(&rule.id).copied();
            if let Measure::Travel { within } = rule.measure {
                let hops = series::travel_hops(table, range.from);
                let reporting_from = previous_end.unwrap_or(i64::MIN);
                outcome.anomalies = hops.len();
                let found = hops
                    .iter()
                    .filter(|hop| hop.arrived_at >= reporting_from)
                    .map(|hop| (hop.arrived_at, evaluate::hop_finding(rule, hop)))
                    .collect();
                let mut budget = stored.budgets.get(&rule.id).cloned().unwrap_or_default();
                findings.extend(evaluate::within_budget(rule, found, &mut budget, newest));
                writes.push(BUDGETS.key(&rule.id).put(&budget).map_err(state_failed)?);
                if let Some(labels) = &labels {
                    backtests.push(backtest::backtest_travel(
                        rule,
                        &hops,
                        labels,
                        within.as_millis() as i64,
                    ));
                }
                writes.push(cursor_write(&rule.id, newest + 1)?);
                outcomes.insert(rule.id.clone(), outcome);
                continue;
            }
            let groups = series::group_series(rule, table, range)
                .map_err(|err| JobError::Failed(format!("rule {}: {err}", rule.id)))?;
            let width = rule.window.as_millis() as i64;
            let current_end = (newest + 1).div_euclid(width) * width;
            let reporting = Reporting {
                previous_end,
                current_end,
            };
            let threshold = effective_threshold(rule, &stored);
            if let Some(tuned) = stored.tuned.get(&rule.id) {
                outcome.tuned = Some(details_of(tuned)?);
            }
            let mut judged = 0usize;
            let mut found = Vec::new();
            for (group, scored) in groups.iter().zip(judge(rule, &threshold, &groups)) {
                outcome.points += scored.len();
                judged += scored.iter().filter(|p| !p.warming_up).count();
                for episode in evaluate::episodes(&scored, width) {
                    outcome.anomalies += 1;
                    if reporting.reports(&episode) {
                        let finding = evaluate::episode_finding(
                            rule,
                            &threshold,
                            group,
                            &scored,
                            &episode,
                            matches!(rule.measure, Measure::Ratio { .. }),
                        );
                        found.push((episode.start, finding));
                    }
                }
            }
            let mut budget = stored.budgets.get(&rule.id).cloned().unwrap_or_default();
            findings.extend(evaluate::within_budget(rule, found, &mut budget, newest));
            writes.push(BUDGETS.key(&rule.id).put(&budget).map_err(state_failed)?);
            outcome.groups = groups.len();
            outcome.warming_up = judged == 0;
            if let Some(labels) = &labels {
                let result = backtest::backtest_rule(rule, groups, labels);
                if let Some(TuneOutcome::Tuned(tuned)) = &result.tuned {
                    let entry = TunedEntry {
                        params: tuned.params.clone(),
                        score: details_of(&tuned.score)?,
                        reference: result
                            .reference
                            .as_ref()
                            .map(|r| details_of(&r.score))
                            .transpose()?,
                        labels: input.backtest.as_ref().map(|p| p.display().to_string()),
                        tuned_at: now.to_rfc3339(),
                    };
                    writes.push(TUNED.key(&rule.id).put(&entry).map_err(state_failed)?);
                    outcome.tuned = Some(details_of(&entry)?);
                }
                backtests.push(result);
            }
            writes.push(cursor_write(&rule.id, current_end)?);
            outcomes.insert(rule.id.clone(), outcome);
        }
    }

    let mut series_details = Vec::new();
    let series_input = input.clone();
    let series_backtest = input.backtesting;
    let (models, from_checkpoint) = series_models(state, &input, &stored).await?;
    let (stored, judged) = tokio::task::spawn_blocking(move || {
        let judged = judge_all_series(
            &series_input,
            &stored,
            models,
            &from_checkpoint,
            series_backtest,
        );
        (stored, judged)
    })
    .await
    .map_err(|err| JobError::Failed(format!("judging series panicked: {err}")))?;
    drop(stored);
    let mut kept = std::collections::HashMap::new();
    for ((spec, _), result) in input.series.iter().zip(judged) {
        match result {
            Ok(outcome) => {
                series_details.push(outcome.details);
                findings.extend(outcome.findings);
                backtests.extend(outcome.backtests);
                let small = outcome.state.without_detectors();
                writes.push(SERIES.key(&spec.name).put(&small).map_err(state_failed)?);
                if outcome.checkpoint {
                    let model = MODELS.key(&spec.name);
                    writes.push(model.put(&outcome.state).map_err(state_failed)?);
                }
                kept.insert(spec.name.clone(), outcome.state);
                write_detections(effects, &spec.name, outcome.detections, &mut source_errors).await;
            }
            Err(err) => source_errors.push(format!("series {}: {err}", spec.name)),
        }
    }
    // A dry run changes no state: what it judged to is not where the
    // next run starts (that run resumes from the checkpoint).
    input
        .series_cache
        .put(if dry_run { Default::default() } else { kept });

    let events: u64 = source_stats.values().map(|s| s.events).sum();
    let bad: u64 = source_stats.values().map(|s| s.malformed).sum();
    let warming: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.warming_up)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut summary = format!(
        "{events} events from {} source(s), {bad} bad row(s); {} finding(s)",
        source_stats.len(),
        findings.len()
    );
    if span.is_none() && !input.sources.is_empty() {
        summary.push_str("; warming up: no events yet");
    } else if !warming.is_empty() {
        summary.push_str(&format!(
            "; warming up ({} of {} rules: too little history to judge): {}",
            warming.len(),
            outcomes.len(),
            warming.join(", ")
        ));
    }
    if !series_details.is_empty() {
        summary.push_str(&format!("; {} series judged", series_details.len()));
    }
    if !source_errors.is_empty() {
        summary.push_str(&format!("; {} source(s) failed", source_errors.len()));
    }
    let failed = !source_errors.is_empty();
    let mut report = RunReport::new(
        if failed {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        },
        summary,
    );
    report.output = match input.backtesting {
        true => Some(backtest::report_text(&backtests)),
        false => None,
    };
    if let Some(output) = &mut report.output {
        if !source_errors.is_empty() {
            output.push_str(&source_errors.join("\n"));
        }
    } else if !source_errors.is_empty() {
        report.output = Some(source_errors.join("\n"));
    }
    report.details = json!({
        "sources": source_stats,
        "errors": source_errors,
        "rules": outcomes,
        "series": series_details,
        "span": span.map(|(a, b)| [evaluate::utc(a).to_rfc3339(), evaluate::utc(b).to_rfc3339()]),
        "backtest": if input.backtesting {
            json!({
                "rules": backtests,
                "totals": backtest::Totals::of(&backtests, false),
                "series_totals": backtest::Totals::of(&backtests, true),
            })
        } else {
            serde_json::Value::Null
        },
    });
    report.findings = findings;
    // A source that failed leaves its share unknown: keep open alerts open.
    report.findings_partial = failed;
    if !dry_run && !failed {
        report.state = writes;
    }
    Ok(report)
}

/// The rule's threshold, with alpha and z replaced by tuned ones if a
/// backtest stored them.
fn effective_threshold(rule: &Rule, stored: &Stored) -> Method {
    match (&rule.threshold, stored.tuned.get(&rule.id)) {
        (Method::Adaptive(base), Some(tuned)) if rule.tune => Method::Adaptive(AdaptiveParams {
            alpha: tuned.params.alpha,
            z: tuned.params.z,
            ..base.clone()
        }),
        _ => rule.threshold.clone(),
    }
}

fn cursor_write(id: &str, end: i64) -> Result<StateWrite, JobError> {
    CURSORS.key(id).put(&end).map_err(state_failed)
}

/// A value as shown in the run's details.
fn details_of(value: &impl Serialize) -> Result<serde_json::Value, JobError> {
    serde_json::to_value(value)
        .map_err(|err| JobError::Failed(format!("cannot show tuned parameters: {err}")))
}

#[derive(Debug, Default)]
struct Stored {
    cursors: BTreeMap<String, i64>,
    tuned: BTreeMap<String, TunedEntry>,
    series: BTreeMap<String, SeriesState>,
    budgets: BTreeMap<String, BudgetState>,
}

/// Every cursor and tuned entry; one that does not decode fails the run,
/// naming its key (a cursor dropped silently would report every episode
/// in the history window again).
async fn load_state(state: &JobState) -> Result<Stored, JobError> {
    Ok(Stored {
        cursors: state
            .load_prefix(&CURSORS, None, 10_000)
            .await
            .map_err(state_failed)?
            .into_iter()
            .collect(),
        tuned: state
            .load_prefix(&TUNED, None, 10_000)
            .await
            .map_err(state_failed)?
            .into_iter()
            .collect(),
        series: state
            .load_prefix(&SERIES, None, 100_000)
            .await
            .map_err(state_failed)?
            .into_iter()
            .collect(),
        budgets: state
            .load_prefix(&BUDGETS, None, 10_000)
            .await
            .map_err(state_failed)?
            .into_iter()
            .collect(),
    })
}

/// Reads one source on a blocking thread (polars and the NDJSON parser use
/// every core); the aggregator travels there and back.
async fn read_source(
    source: &SourceSpec,
    input: &RunInput,
    latest: i64,
    aggregator: Aggregator,
) -> Result<(Aggregator, Result<SourceStats, String>), JobError> {
    match source {
        SourceSpec::Files { path, .. } => {
            let path = path.clone();
            read_blocking(aggregator, move |aggregator| {
                input::read_files(&path, latest, aggregator)
            })
            .await
        }
        SourceSpec::Http {
            url,
            timeout,
            headers,
            ..
        } => {
            let timeout = timeout.map_or(std::time::Duration::from_secs(60), |t| t.0);
            // Read at every run: a rotated token file takes effect without
            // a reload.
            let headers = match resolve_for_run(headers) {
                Ok(headers) => headers,
                Err(problem) => return Ok((aggregator, Err(problem))),
            };
            let fetched = patrol_job_kit::http::fetch_ndjson(
                url,
                &[],
                &header_pairs(&headers),
                timeout,
                MAX_BODY,
            )
            .await;
            let body = match fetched {
                Ok(answer) => answer.body,
                Err(err) => return Ok((aggregator, Err(err.to_string()))),
            };
            // Samples name the endpoint without its credentials or query.
            let name = patrol_job_kit::http::endpoint(url);
            read_blocking(aggregator, move |aggregator| {
                input::read_ndjson(&name, std::io::Cursor::new(body), latest, aggregator)
            })
            .await
        }
        SourceSpec::Postgres { name, .. } => {
            let Some(query) = input.postgres.get(name) else {
                return Ok((aggregator, Err("the source was not built".into())));
            };
            // Rows as NDJSON lines, read as a whole like an HTTP answer
            // (and capped the same way), then parsed on every core.
            let mut body = Vec::new();
            let read = query
                .read(name, None, |_, row| {
                    if body.len() + row.len() >= MAX_BODY {
                        return Err(format!(
                            "{name}: more than {MAX_BODY} bytes of rows; bound the query (time range, max_rows)"
                        ));
                    }
                    body.extend_from_slice(row);
                    body.push(b'\n');
                    Ok(())
                })
                .await;
            let read = match read {
                Ok(read) if read.stats.more_waiting => {
                    let max_rows = query.spec.max_rows;
                    return Ok((aggregator, Err(format!(
                        "{name}: more than max_rows ({max_rows}) rows; bound the query or raise max_rows"
                    ))));
                }
                Ok(read) => read,
                Err(err) => return Ok((aggregator, Err(err))),
            };
            let name = name.clone();
            read_blocking(aggregator, move |aggregator| {
                let mut stats =
                    input::read_ndjson(&name, std::io::Cursor::new(body), latest, aggregator)?;
                // Rows too long to be events, dropped before parsing.
                stats.merge(SourceStats {
                    malformed: read.stats.malformed,
                    samples: read.stats.samples,
                    ..SourceStats::default()
                });
                Ok(stats)
            })
            .await
        }
    }
}

/// Runs `read` on a blocking thread; a panic in it fails the run (the
/// aggregator is lost with it, so nothing half-read is judged).
async fn read_blocking(
    mut aggregator: Aggregator,
    read: impl FnOnce(&mut Aggregator) -> Result<SourceStats, String> + Send + 'static,
) -> Result<(Aggregator, Result<SourceStats, String>), JobError> {
    tokio::task::spawn_blocking(move || {
        let result = read(&mut aggregator);
        (aggregator, result)
    })
    .await
    .map_err(|err| JobError::Failed(format!("reading a source panicked: {err}")))
}

/// Largest HTTP answer read; a bigger one fails the source.
const MAX_BODY: usize = 1 << 30;

/// Writes the series' detection files through the run's effects (none on
/// a dry run); a file that cannot be written fails its series.
async fn write_detections(
    effects: &Effects,
    name: &str,
    detections: Vec<Detections>,
    errors: &mut Vec<String>,
) {
    for detections in detections {
        let written = if detections.append {
            append_detections(effects, detections).await
        } else {
            effects
                .write_file(&detections.path, detections.bytes)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string())
        };
        if let Err(err) = written {
            errors.push(format!("series {name}: writing detections: {err}"));
            return;
        }
    }
}

/// Appends new rows to a detections file (its header first if it is new).
async fn append_detections(effects: &Effects, detections: Detections) -> Result<(), String> {
    let Detections { path, bytes, .. } = detections;
    let intent = Intent::new(
        "append_file",
        format!("append:{}#{}", path.display(), short_digest(&bytes)),
        format!(
            "append to {} ({} bytes)",
            path.display(),
            thousands(bytes.len() as u64)
        ),
    );
    effects
        .perform(intent, async move {
            tokio::task::spawn_blocking(move || metrics::append_detections(&path, &bytes))
                .await
                .map_err(std::io::Error::other)?
        })
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// The detectors each series goes on from: this node's own from the last
/// run when they continue what that run wrote, else the checkpoint (named
/// in the second set); none for a series seen for the first time.
async fn series_models(
    state: &JobState,
    input: &RunInput,
    stored: &Stored,
) -> Result<(BTreeMap<String, SeriesState>, BTreeSet<String>), JobError> {
    let mut models: BTreeMap<String, SeriesState> = input.series_cache.take().into_iter().collect();
    let mut stale = Vec::new();
    for (spec, _) in &input.series {
        let Some(prior) = stored.series.get(&spec.name) else {
            models.remove(&spec.name);
            continue;
        };
        if !models.get(&spec.name).is_some_and(|m| m.continues(prior)) {
            models.remove(&spec.name);
            stale.push(MODELS.key(&spec.name));
        }
    }
    let mut from_checkpoint = BTreeSet::new();
    for (key, model) in state.load_many(&stale).await.map_err(state_failed)? {
        let name = MODELS.suffix(&key).unwrap_or_default().to_string();
        from_checkpoint.insert(name.clone());
        models.insert(name, model);
    }
    Ok((models, from_checkpoint))
}

/// Judges every series on every core (each series is independent); the
/// outcomes come back in the order of `input.series`.
fn judge_all_series(
    input: &RunInput,
    stored: &Stored,
    models: BTreeMap<String, SeriesState>,
    from_checkpoint: &BTreeSet<String>,
    backtest: bool,
) -> Vec<Result<SeriesOutcome, String>> {
    let series = &input.series;
    let models = std::sync::Mutex::new(models);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(series.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<SeriesOutcome, String>>> =
        (0..series.len()).map(|_| None).collect();
    let done = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((spec, severity)) = series.get(i) else {
                    return;
                };
                let ctx = SeriesContext {
                    severity: *severity,
                    history_secs: input.history_ms / 1000,
                    detections_dir: input.detections_dir.as_ref(),
                    backtest,
                    prior: stored.series.get(&spec.name),
                    model: models
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&spec.name),
                    from_checkpoint: from_checkpoint.contains(&spec.name),
                    legacy_cursors: &stored.cursors,
                };
                let outcome = judge_series(spec, ctx);
                done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err("not judged".into())))
        .collect()
}
