//! Loading and checking schedule files: parse → validate, all errors at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::located::{join_path, YamlFile};
use super::schedule::{BuiltJob, Schedule, ScheduleSet, ScheduleSpec, SourceLocation};
use crate::cron::CronExpr;
use crate::registry::JobBuild;

/// Largest schedule file we read; anything bigger is a mistake.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Loads every schedule under `paths` (files, or folders of `*.yaml`/`*.yml`).
pub fn load_schedules(paths: &[PathBuf], jobs: &JobBuild) -> Result<ScheduleSet, Diagnostics> {
    load_with(paths, Some(jobs))
}

/// Loads every schedule under `paths` checking everything but the job:
/// its kind is not looked up and its params are not checked. For commands
/// that only read ids and timing (`pause`, `schedules`), so that they work
/// while a plugin cannot be loaded; whatever runs a job uses
/// [`load_schedules`].
pub fn load_schedules_without_jobs(paths: &[PathBuf]) -> Result<ScheduleSet, Diagnostics> {
    load_with(paths, None)
}

fn load_with(paths: &[PathBuf], registry: Option<&JobBuild>) -> Result<ScheduleSet, Diagnostics> {
    let mut diagnostics = Vec::new();
    let files = schedule_files(paths, &mut diagnostics);
    let mut schedules: BTreeMap<String, Arc<Schedule>> = BTreeMap::new();
    for file in files {
        let source = match read_limited(&file) {
            Ok(source) => source,
            Err(message) => {
                diagnostics.push(Diagnostic::file_level(&file, message));
                continue;
            }
        };
        for result in schedules_in_file_with(&file, &source, registry) {
            match result {
                Ok(schedule) => match schedules.get(&schedule.id) {
                    Some(first) => diagnostics.push(Diagnostic {
                        file: schedule.source.file.clone(),
                        line: Some(schedule.source.line),
                        column: None,
                        field: "id".into(),
                        message: format!(
                            "duplicate schedule id `{}`; first defined at {}:{}",
                            schedule.id,
                            first.source.file.display(),
                            first.source.line
                        ),
                    }),
                    None => {
                        schedules.insert(schedule.id.clone(), Arc::new(schedule));
                    }
                },
                Err(mut errors) => diagnostics.append(&mut errors),
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(ScheduleSet { schedules })
    } else {
        Err(Diagnostics(diagnostics))
    }
}

fn read_limited(file: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(file).map_err(|err| format!("cannot read: {err}"))?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!("file is larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(file).map_err(|err| format!("cannot read: {err}"))
}

fn schedule_files(paths: &[PathBuf], diagnostics: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .filter(|path| path.is_file() && is_yaml(path))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(err) => {
                    diagnostics.push(Diagnostic::file_level(path, format!("cannot list: {err}")))
                }
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            diagnostics.push(Diagnostic::file_level(path, "no such file or folder"));
        }
    }
    files
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|ext| ext.to_str()),
        Some("yaml" | "yml")
    )
}

/// Every schedule in one file, each checked on its own.
pub fn schedules_in_file(
    file: &Path,
    source: &str,
    jobs: &JobBuild,
) -> Vec<Result<Schedule, Vec<Diagnostic>>> {
    schedules_in_file_with(file, source, Some(jobs))
}

/// `registry: None` leaves the job kind and params unchecked.
fn schedules_in_file_with(
    file: &Path,
    source: &str,
    registry: Option<&JobBuild>,
) -> Vec<Result<Schedule, Vec<Diagnostic>>> {
    let yaml = match YamlFile::parse(file, source) {
        Ok(yaml) => yaml,
        Err(diagnostic) => return vec![Err(vec![diagnostic])],
    };
    let items: Vec<(String, &serde_norway::Value)> = match &yaml.value {
        serde_norway::Value::Null => Vec::new(),
        serde_norway::Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| (format!("[{index}]"), item))
            .collect(),
        serde_norway::Value::Mapping(_) => vec![(String::new(), &yaml.value)],
        _ => {
            return vec![Err(vec![yaml.diagnostic(
                "",
                "expected a schedule (a mapping with id, job, cron, …) or a list of them",
            )])]
        }
    };
    items
        .into_iter()
        .map(|(prefix, value)| {
            let spec: ScheduleSpec = yaml.deserialize(&prefix, value).map_err(|d| vec![d])?;
            check_schedule(&yaml, &prefix, spec, registry)
        })
        .collect()
}

fn check_schedule(
    yaml: &YamlFile<'_>,
    prefix: &str,
    spec: ScheduleSpec,
    jobs: Option<&JobBuild>,
) -> Result<Schedule, Vec<Diagnostic>> {
    let at = |field: &str, message: String| yaml.diagnostic(&join_path(prefix, field), message);
    let mut errors = Vec::new();

    if let Err(message) = check_id(&spec.id) {
        errors.push(at("id", message));
    }
    let cron = CronExpr::parse(&spec.cron)
        .map_err(|err| errors.push(at("cron", format!("`{}`: {}", spec.cron, err.message))))
        .ok();
    let timezone = parse_timezone(&spec.timezone)
        .map_err(|message| errors.push(at("timezone", message)))
        .ok();
    if spec.retries.max_backoff < spec.retries.backoff {
        errors.push(at(
            "retries.max_backoff",
            format!(
                "{} is shorter than backoff {}",
                spec.retries.max_backoff, spec.retries.backoff
            ),
        ));
    }
    for (field, value) in [
        ("catchup", spec.catchup),
        ("jitter", spec.jitter),
        ("timeout", spec.timeout),
        ("retries.backoff", spec.retries.backoff),
        ("retries.max_backoff", spec.retries.max_backoff),
    ] {
        if value.0 > MAX_DURATION {
            errors.push(at(
                field,
                format!("{value} is longer than the 10 years patrol accepts"),
            ));
        }
    }
    if let Some(history) = &spec.history {
        if history.keep_last == Some(0) {
            errors.push(at("history.keep_last", "must be at least 1".into()));
        }
    }
    let params = params_as_json(&spec.params).map_err(|message| errors.push(at("params", message)));
    let job_kind = jobs.and_then(|jobs| jobs.registry.get(&spec.job));
    let known = job_kind.map(|job| {
        job.describe()
            .params
            .iter()
            .map(|param| param.name)
            .collect()
    });
    let pinned = job_kind.map_or(&[][..], |job| job.pinned_params());
    for (index, message) in check_manual_params(&spec.manual_params, known, pinned) {
        errors.push(at(&format!("manual_params[{index}]"), message));
    }
    let Some(jobs) = jobs else {
        return build_schedule(yaml, prefix, spec, cron, timezone, params, errors);
    };
    let registry = &jobs.registry;
    let mut built = None;
    match (registry.get(&spec.job), &params) {
        (None, _) => errors.push(at(
            "job",
            format!(
                "unknown job kind `{}`; known: {} (a plugin's jobs are known once patrol.yaml pins the plugin: `patrol plugins pin PATH`, docs/plugins.md)",
                spec.job,
                registry.kinds().collect::<Vec<_>>().join(", ")
            ),
        )),
        (Some(job), Ok(params)) => {
            // Only well-formed params are built: the build reads files.
            let checked = job.check_params(params).and_then(|()| {
                let ctx = jobs.context(&spec.id);
                let instance = job.build(params, &ctx)?;
                Ok(BuiltJob {
                    instance,
                    depends_on: ctx.dependencies(),
                })
            });
            match checked {
                Ok(job) => built = Some(job),
                Err(param_errors) => {
                    for error in param_errors {
                        errors.push(at(&join_path("params", &error.path), error.message));
                    }
                }
            }
        }
        (Some(_), Err(())) => {}
    }
    build_schedule(yaml, prefix, spec, cron, timezone, params, errors)
        .map(|schedule| Schedule { built, ..schedule })
}

/// The checked schedule, or every error found on the way.
fn build_schedule(
    yaml: &YamlFile<'_>,
    prefix: &str,
    spec: ScheduleSpec,
    cron: Option<CronExpr>,
    timezone: Option<Tz>,
    params: Result<serde_json::Value, ()>,
    errors: Vec<Diagnostic>,
) -> Result<Schedule, Vec<Diagnostic>> {
    match (cron, timezone, params) {
        (Some(cron), Some(timezone), Ok(params)) if errors.is_empty() => Ok(Schedule {
            source: SourceLocation {
                file: yaml.path.to_path_buf(),
                line: yaml
                    .index
                    .locate(&join_path(prefix, "id"))
                    .map_or(1, |(line, _)| line),
                route_line: yaml
                    .index
                    .locate(&join_path(prefix, "route"))
                    .map(|(line, _)| line),
            },
            id: spec.id,
            job: spec.job,
            cron,
            timezone,
            enabled: spec.enabled,
            description: spec.description,
            overlap: spec.overlap,
            catchup: spec.catchup.0,
            jitter: spec.jitter.0,
            timeout: (!spec.timeout.0.is_zero()).then_some(spec.timeout.0),
            retries: spec.retries,
            history: spec.history,
            params,
            manual_params: spec.manual_params,
            route: spec.route,
            built: None,
        }),
        _ => Err(errors),
    }
}

/// Problems with `manual_params`, by index: each a top-level param key,
/// named once, and one the job describes (`known`, when it describes any).
fn check_manual_params(
    keys: &[String],
    known: Option<Vec<&str>>,
    pinned: &[&str],
) -> Vec<(usize, String)> {
    let known = known.filter(|known| !known.is_empty());
    let mut problems = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        if key.is_empty() || key.contains('.') || key.contains('=') {
            problems.push((index, format!("`{key}` is not a top-level param key")));
        } else if pinned.contains(&key.as_str()) {
            problems.push((
                index,
                format!(
                    "`{key}` is pinned by this job: what its kept verdicts and state rest on ({}) cannot be overridden by a manual run",
                    pinned.join(", ")
                ),
            ));
        } else if keys[..index].contains(key) {
            problems.push((index, format!("`{key}` is named twice")));
        } else if let Some(known) = &known {
            if !known.contains(&key.as_str()) {
                problems.push((
                    index,
                    format!(
                        "`{key}` is not a param of this job; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    problems
}

fn check_id(id: &str) -> Result<(), String> {
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if id.is_empty() || id.len() > 63 || !valid_chars || id.starts_with('-') || id.ends_with('-') {
        return Err(format!(
            "`{id}` is not a valid id: use 1-63 characters of a-z, 0-9 and -, not starting or ending with -"
        ));
    }
    if id == crate::alerting::PATROL_SCHEDULE {
        return Err(format!(
            "`{id}` is reserved: patrol files its own alerts (delivery degraded, tests) under it"
        ));
    }
    Ok(())
}

/// An IANA zone; suggests the right spelling for a case slip.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let suggestion = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(name))
            .map(|tz| format!(" (did you mean `{}`?)", tz.name()))
            .unwrap_or_default();
        format!(
            "unknown timezone `{name}`{suggestion}; use an IANA name such as UTC or Europe/Berlin"
        )
    })
}

fn params_as_json(params: &serde_norway::Value) -> Result<serde_json::Value, String> {
    match params {
        serde_norway::Value::Null => Ok(serde_json::json!({})),
        serde_norway::Value::Mapping(_) => serde_json::to_value(params)
            .map_err(|err| format!("cannot be represented as JSON: {err}")),
        _ => Err("must be a mapping of the job's parameters".into()),
    }
}

/// The upper bound we accept for a single duration, so arithmetic on
/// timestamps can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Schedules that name a route `patrol.yaml` does not define
/// (`route_names`: the routes it does define).
pub fn check_routes(schedules: &ScheduleSet, route_names: &[String]) -> Vec<Diagnostic> {
    schedules
        .iter()
        .filter_map(|schedule| {
            let route = schedule.route.as_ref()?;
            if route_names.contains(route) {
                return None;
            }
            Some(Diagnostic {
                file: schedule.source.file.clone(),
                line: Some(schedule.source.route_line.unwrap_or(schedule.source.line)),
                column: None,
                field: "route".into(),
                message: format!(
                    "unknown route `{route}` (patrol.yaml defines: {})",
                    route_names.join(", ")
                ),
            })
        })
        .collect()
}
