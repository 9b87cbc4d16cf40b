//! The anomaly baselining job (`anomaly`): audit events (NDJSON, CSV or
//! Parquet, from files or an HTTP endpoint) are folded by polars into
//! per-rule, per-group time buckets; each bucket is judged against a
//! seasonal baseline (EWMA level + 1.4826 × MAD robust z, hour-of-week →
//! hour-of-day → global) or a static one, and runs of anomalous buckets
//! become findings with the seed's alert fields. Generic metric series are
//! judged the same way and written out point by point. With labelled
//! history (`backtest`), every rule is replayed through its static
//! reference and its adaptive threshold side by side, and the adaptive
//! parameters are tuned and stored, never below `min_power`.

pub mod aggregate;
pub mod backtest;
pub mod budget;
pub mod evaluate;
pub mod input;
pub mod judge;
pub mod metric_judge;
pub mod metric_stream;
pub mod metrics;
pub mod rules;
mod run;
pub mod series;
pub mod series_run;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use patrol_job_api::secret::SecretRef;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::{
    BuildContext, JobDescription, JobError, JobInstance, JobKind, ParamDoc, ParamError, RunContext,
    RunReport,
};
use patrol_job_kit::http_auth::{anchor_files, check_headers, resolve_headers, SecretHeaders};
use serde::Deserialize;

pub use run::{run_once, run_with_effects, RunInput};

/// The `anomaly` job kind.
#[derive(Debug, Default)]
pub struct AnomalyJob;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_rules")]
    pub rules: PathBuf,
    /// Audit events.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Generic metric series.
    #[serde(default)]
    pub series: Vec<SeriesSpec>,
    /// How far back baselines look (from the newest event).
    #[serde(default = "default_history")]
    pub history: HumanDuration,
    /// Where per-point detections of `series` are written.
    #[serde(default)]
    pub detections_dir: Option<PathBuf>,
    /// A labels file (`incidents.json`): replay and score every rule,
    /// tune adaptive thresholds, store what was tuned; metric series are
    /// scored against their own `labels`. `true`: the series only.
    #[serde(default)]
    pub backtest: Option<Backtest>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Event files (`.ndjson`, `.jsonl`, `.json`, `.csv`, `.parquet`) in a
    /// folder, or one file.
    Files { name: String, path: PathBuf },
    /// An endpoint answering NDJSON events.
    Http {
        name: String,
        url: String,
        /// Header name → `env:NAME`/`file:PATH` (a token never goes in the URL).
        #[serde(default)]
        headers: SecretHeaders,
        #[serde(default)]
        timeout: Option<HumanDuration>,
    },
    /// A PostgreSQL query whose rows are events (columns named as the
    /// NDJSON fields; `ts` as RFC 3339 text, e.g.
    /// `to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS.MSOF') AS ts`). Run read-only
    /// with a statement timeout; bound it to the history in the query.
    Postgres {
        name: String,
        /// `env:NAME` or `file:PATH` holding the connection URL.
        url: SecretRef,
        query: String,
        #[serde(default)]
        timeout: Option<HumanDuration>,
        /// Most rows read per run; more is a failed source.
        #[serde(default = "default_max_rows")]
        max_rows: u64,
    },
}

fn default_max_rows() -> u64 {
    10_000_000
}

impl SourceSpec {
    pub fn name(&self) -> &str {
        match self {
            SourceSpec::Files { name, .. }
            | SourceSpec::Http { name, .. }
            | SourceSpec::Postgres { name, .. } => name,
        }
    }
}

/// A metric series file and how to judge it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_timestamp")]
    pub timestamp: String,
    /// Value columns; empty: every numeric column.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default = "default_direction")]
    pub direction: patrol_anomaly_detect::Direction,
    /// How points are judged (default: the anomaly likelihood).
    #[serde(default)]
    pub method: SeriesMethod,
    /// Likelihood: the anomaly likelihood (0..1, NAB's log scale) at which a
    /// point is anomalous; default 0.5 (a one-in-100,000 surprise).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Likelihood: the anomaly likelihood a point must reach to open an
    /// episode, i.e. to page (default 0.7, a one-in-10-million surprise);
    /// at least `threshold`. Points between `threshold` and `open` are
    /// anomalous in the detections file and extend an open episode.
    #[serde(default)]
    pub open: Option<f64>,
    /// Likelihood: an open episode goes on through points scoring at least
    /// this (hysteresis); default 0.3, at most `threshold`.
    #[serde(default)]
    pub close: Option<f64>,
    /// Quiet time before an episode ends; a surge within it continues the
    /// same episode (no second page).
    #[serde(default = "default_refractory")]
    pub refractory: HumanDuration,
    /// Points (`750`) or a duration (`2d`) judged by no one while the
    /// detector learns; default NAB's probation, 15 % of the first 5,000
    /// points (at most 750).
    #[serde(default)]
    pub warm_up: Option<WarmUp>,
    /// Most episodes of one column that page per UTC day; past it one
    /// summary page says how many were held back.
    #[serde(default = "default_series_pages_per_day")]
    pub pages_per_day: u32,
    /// Adaptive (and rolling_sigma): the robust z (sigmas) threshold.
    #[serde(default)]
    pub z: Option<f64>,
    /// Adaptive: the EWMA weight.
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default = "default_series_severity")]
    pub severity: String,
    #[serde(default)]
    pub runbook: Option<String>,
    /// Labelled windows in NAB's `combined_windows.json` form, for backtests.
    #[serde(default)]
    pub labels: Option<PathBuf>,
}

/// What a backtest is asked for with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Backtest {
    /// `true`: metric series against their own `labels` (no rule labels).
    Series(bool),
    /// Labelled incidents for the rules (series use their own labels too).
    Labels(PathBuf),
}

impl Backtest {
    /// The rules' labels file, if one was given.
    pub fn labels(self) -> Option<PathBuf> {
        match self {
            Backtest::Labels(path) => Some(path),
            Backtest::Series(_) => None,
        }
    }
}

/// The detectors a metric series can be judged with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesMethod {
    /// How rare the recent surprise is against the series' own history
    /// (after Numenta's anomaly likelihood); judges only new points.
    #[default]
    Likelihood,
    /// The seed's seasonal EWMA + MAD baseline (KR3.1).
    Adaptive,
    /// The static reference: `z` (default 3) sigmas over one day of points.
    RollingSigma,
}

impl SeriesMethod {
    pub fn name(self) -> &'static str {
        match self {
            SeriesMethod::Likelihood => "likelihood",
            SeriesMethod::Adaptive => "adaptive",
            SeriesMethod::RollingSigma => "rolling_sigma",
        }
    }
}

/// A warm-up given as a number of points or as a duration.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum WarmUp {
    Points(u64),
    Duration(HumanDuration),
}

fn default_refractory() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2 * 3600))
}

fn default_series_pages_per_day() -> u32 {
    3
}

fn default_rules() -> PathBuf {
    PathBuf::from("policies/anomaly/rules.yaml")
}

fn default_history() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(28 * 24 * 3600))
}

fn default_timestamp() -> String {
    "timestamp".into()
}

fn default_direction() -> patrol_anomaly_detect::Direction {
    patrol_anomaly_detect::Direction::Both
}

fn default_series_severity() -> String {
    "warning".into()
}

/// Params that passed every check, with the rules loaded.
pub(crate) struct Checked {
    pub params: Params,
    pub rules: Vec<rules::Rule>,
    pub series_severity: Vec<patrol_job_api::Severity>,
    /// The `postgres` sources by name, their pools kept across runs.
    pub postgres: std::collections::BTreeMap<String, Arc<patrol_job_kit::postgres::QuerySource>>,
}

/// Checks that need no I/O.
fn validate(params: &Params) -> Result<(), Vec<ParamError>> {
    let mut errors = Vec::new();
    if params.sources.is_empty() && params.series.is_empty() {
        errors.push(ParamError::new(
            "sources",
            "nothing to judge: give audit event `sources` or metric `series`",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (n, source) in params.sources.iter().enumerate() {
        check_name(
            source.name(),
            &format!("sources[{n}].name"),
            &mut names,
            &mut errors,
        );
        match source {
            SourceSpec::Http { url, headers, .. } => match patrol_job_kit::check::http_url(url) {
                Err(message) => errors.push(ParamError::new(format!("sources[{n}].url"), message)),
                Ok(()) => errors.extend(check_headers(url, headers, &format!("sources[{n}]"))),
            },
            SourceSpec::Postgres {
                query, max_rows, ..
            } => {
                if query.trim().is_empty() {
                    errors.push(ParamError::new(format!("sources[{n}].query"), "is empty"));
                }
                if *max_rows == 0 {
                    errors.push(ParamError::new(
                        format!("sources[{n}].max_rows"),
                        "must be at least 1",
                    ));
                }
            }
            SourceSpec::Files { .. } => {}
        }
    }
    for (n, series) in params.series.iter().enumerate() {
        check_name(
            &series.name,
            &format!("series[{n}].name"),
            &mut names,
            &mut errors,
        );
        errors.extend(check_series_method(series, n));
        if let Some(z) = series.z.filter(|z| !(z.is_finite() && *z > 0.0)) {
            errors.push(ParamError::new(
                format!("series[{n}].z"),
                format!("{z} must be above 0"),
            ));
        }
        if let Some(alpha) = series.alpha.filter(|a| !(*a > 0.0 && *a <= 1.0)) {
            errors.push(ParamError::new(
                format!("series[{n}].alpha"),
                format!("{alpha} must be in (0, 1]"),
            ));
        }
        if let Err(message) = patrol_job_api::Severity::parse_with_seed_names(&series.severity) {
            errors.push(ParamError::new(format!("series[{n}].severity"), message));
        }
    }
    if params.history.0.as_secs() < 3600 {
        errors.push(ParamError::new(
            "history",
            "at least 1h of history is needed",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Params {
    /// Every relative path made relative to the config's folder.
    fn resolve_paths(&mut self, ctx: &BuildContext) {
        let resolve = |path: &mut PathBuf| *path = ctx.path(path);
        resolve(&mut self.rules);
        for source in &mut self.sources {
            match source {
                SourceSpec::Files { path, .. } => resolve(path),
                SourceSpec::Postgres {
                    url: SecretRef::File(path),
                    ..
                } => resolve(path),
                SourceSpec::Http { headers, .. } => anchor_files(headers, ctx),
                _ => {}
            }
        }
        for series in &mut self.series {
            resolve(&mut series.path);
            series.labels.iter_mut().for_each(resolve);
        }
        self.detections_dir.iter_mut().for_each(resolve);
        if let Some(Backtest::Labels(path)) = &mut self.backtest {
            resolve(path);
        }
        // `backtest: false` asks for nothing.
        if self.backtest == Some(Backtest::Series(false)) {
            self.backtest = None;
        }
    }
}

/// Reads the rules and checks the files named, every problem reported.
pub(crate) fn build(mut params: Params, ctx: &BuildContext) -> Result<Checked, Vec<ParamError>> {
    params.resolve_paths(ctx);
    let mut errors = Vec::new();
    let mut postgres = std::collections::BTreeMap::new();
    for (n, source) in params.sources.iter().enumerate() {
        match source {
            SourceSpec::Files { path, .. } => {
                if let Err(message) = input::event_files(path) {
                    errors.push(ParamError::new(format!("sources[{n}].path"), message));
                }
            }
            SourceSpec::Postgres {
                name,
                url,
                query,
                timeout,
                max_rows,
            } => match url.resolve(std::path::Path::new("")) {
                Ok(url) => {
                    let spec = patrol_job_kit::postgres::QuerySpec {
                        query: query.clone(),
                        cursor_column: None,
                        max_rows: *max_rows,
                        max_row_bytes: input::MAX_LINE,
                        statement_timeout: timeout
                            .as_ref()
                            .map_or(std::time::Duration::from_secs(60), |t| t.0),
                    };
                    let source =
                        patrol_job_kit::postgres::QuerySource::new(url.expose().to_string(), spec);
                    postgres.insert(name.clone(), Arc::new(source));
                }
                Err(message) => errors.push(ParamError::new(format!("sources[{n}].url"), message)),
            },
            SourceSpec::Http { headers, .. } => {
                let field = format!("sources[{n}]");
                if let Err(problems) = resolve_headers(headers, &field, std::path::Path::new("")) {
                    errors.extend(problems);
                }
            }
        }
    }
    let mut series_severity = Vec::new();
    for (n, series) in params.series.iter().enumerate() {
        if !series.path.is_file() {
            errors.push(ParamError::new(
                format!("series[{n}].path"),
                format!("{} is not a file", series.path.display()),
            ));
        }
        if let Some(labels) = series.labels.as_ref().filter(|l| !l.is_file()) {
            errors.push(ParamError::new(
                format!("series[{n}].labels"),
                format!("{} is not a file", labels.display()),
            ));
        }
        if let Some(runbook) = &series.runbook {
            if let Err(error) = ctx.check_runbook(&format!("series[{n}].runbook"), runbook) {
                errors.push(error);
            }
        }
        // `validate` refused any other severity.
        series_severity.push(
            patrol_job_api::Severity::parse_with_seed_names(&series.severity)
                .unwrap_or(patrol_job_api::Severity::Warning),
        );
    }
    match &params.backtest {
        Some(Backtest::Labels(path)) if !path.is_file() => errors.push(ParamError::new(
            "backtest",
            format!("{} is not a labels file", path.display()),
        )),
        Some(Backtest::Series(true)) if params.series.iter().all(|s| s.labels.is_none()) => errors
            .push(ParamError::new(
                "backtest",
                "`true` backtests metric series on their `labels`, and no series has labels",
            )),
        _ => {}
    }
    let rules = if params.sources.is_empty() {
        Vec::new()
    } else {
        ctx.depends_on(&params.rules);
        rules::load_rules(&params.rules).unwrap_or_else(|problems| {
            errors.extend(problems.into_iter().map(|p| ParamError::new("rules", p)));
            Vec::new()
        })
    };
    for rule in &rules {
        if let Some(runbook) = &rule.runbook {
            if let Err(error) = ctx.check_runbook("rules", runbook) {
                errors.push(ParamError::new(
                    "rules",
                    format!(
                        "{}: rule `{}`: {}",
                        params.rules.display(),
                        rule.id,
                        error.message
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(Checked {
            params,
            rules,
            series_severity,
            postgres,
        })
    } else {
        Err(errors)
    }
}

/// What only some methods take, and the likelihood's levels.
fn check_series_method(series: &SeriesSpec, n: usize) -> Vec<ParamError> {
    let mut errors = Vec::new();
    let method = series.method;
    let field = |name: &str| format!("series[{n}].{name}");
    let only = |name: &str, given: bool, fits: bool, errors: &mut Vec<ParamError>| {
        if given && !fits {
            errors.push(ParamError::new(
                field(name),
                format!("does not apply to method {}", method.name()),
            ));
        }
    };
    let likelihood = method == SeriesMethod::Likelihood;
    only(
        "alpha",
        series.alpha.is_some(),
        method == SeriesMethod::Adaptive,
        &mut errors,
    );
    only("z", series.z.is_some(), !likelihood, &mut errors);
    only(
        "threshold",
        series.threshold.is_some(),
        likelihood,
        &mut errors,
    );
    only("close", series.close.is_some(), likelihood, &mut errors);
    only("open", series.open.is_some(), likelihood, &mut errors);
    let levels = [
        ("threshold", series.threshold),
        ("open", series.open),
        ("close", series.close),
    ];
    for (name, level) in levels {
        if let Some(level) = level.filter(|l| !(*l > 0.0 && *l <= 1.0)) {
            errors.push(ParamError::new(
                field(name),
                format!("{level} is not a likelihood in (0, 1]"),
            ));
        }
    }
    let threshold = series.threshold.unwrap_or(0.5);
    if let Some(open) = series.open.filter(|open| *open < threshold) {
        errors.push(ParamError::new(
            field("open"),
            format!(
                "{open} is below the threshold {threshold}: only anomalous points open an episode"
            ),
        ));
    }
    if let (Some(close), Some(open)) = (series.close, series.threshold) {
        if close > open {
            errors.push(ParamError::new(
                field("close"),
                format!(
                    "{close} is above the threshold {open}: an episode would close before it opens"
                ),
            ));
        }
    }
    if series.pages_per_day == 0 {
        errors.push(ParamError::new(
            field("pages_per_day"),
            "must be at least 1 (held-back anomalies page as one summary)",
        ));
    }
    if series.warm_up == Some(WarmUp::Points(0)) {
        errors.push(ParamError::new(
            field("warm_up"),
            "must be at least 1 point",
        ));
    }
    errors
}

fn check_name(
    name: &str,
    field: &str,
    names: &mut std::collections::HashSet<String>,
    errors: &mut Vec<ParamError>,
) {
    if let Err(message) = patrol_job_kit::check::unique_name(name, names) {
        errors.push(ParamError::new(field, message));
    }
}

impl JobKind for AnomalyJob {
    type Config = Params;

    fn kind(&self) -> &'static str {
        "anomaly"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "anomaly",
            summary: "Judges audit-event rates and ratios (and any metric series) against seasonal EWMA + robust-z baselines and pages on anomalies",
            params: vec![
                ParamDoc {
                    name: "sources",
                    type_name: "list of {kind: files, name, path}, {kind: http, name, url, timeout} or {kind: postgres, name, url: env:NAME | file:PATH, query, timeout, max_rows}",
                    required: false,
                    default: None,
                    description: "Audit events (NDJSON, CSV or Parquet)",
                },
                ParamDoc {
                    name: "rules",
                    type_name: "path",
                    required: false,
                    default: Some("policies/anomaly/rules.yaml"),
                    description: "The rules file",
                },
                ParamDoc {
                    name: "series",
                    type_name: "list of {name, path, timestamp, values, direction, method: likelihood|adaptive|rolling_sigma, threshold, open, close, refractory, warm_up, pages_per_day, z, alpha, severity, runbook, labels}",
                    required: false,
                    default: None,
                    description: "Metric series (CSV or Parquet) judged column by column",
                },
                ParamDoc {
                    name: "history",
                    type_name: "duration",
                    required: false,
                    default: Some("28d"),
                    description: "How far back baselines look from the newest event",
                },
                ParamDoc {
                    name: "detections_dir",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "Write timestamp,value,baseline,score,is_anomaly per series point here",
                },
                ParamDoc {
                    name: "backtest",
                    type_name: "path",
                    required: false,
                    default: None,
                    description: "Labelled incidents: report static vs adaptive per rule, tune and store parameters",
                },
            ],
        }
    }

    fn validate(&self, params: &Params) -> Result<(), Vec<ParamError>> {
        validate(params)
    }

    fn build(
        &self,
        params: Params,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        let input = RunInput::from(build(params, ctx)?);
        Ok(Arc::new(AnomalyInstance { input }))
    }
}

/// An `anomaly` schedule, built: its rules read, its paths resolved.
struct AnomalyInstance {
    input: RunInput,
}

#[async_trait]
impl JobInstance for AnomalyInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        run_with_effects(
            &ctx.state,
            self.input.clone(),
            &ctx.effects,
            &ctx.cancel,
            ctx.now(),
        )
        .await
    }
}
