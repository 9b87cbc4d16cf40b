//! `patrol.yaml`: settings for the whole runner. Every field is optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_job_api::units::HumanDuration;
use serde::Deserialize;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::located::YamlFile;
use super::schedule::HistoryPolicy;
use crate::alerting::config::{AlertingConfig, RawAlerting};
use crate::plugins::{declared_plugins, refuse_protected_read_paths, DeclaredPlugin};

/// Where the ledger lives unless configured.
pub const DEFAULT_DATABASE: &str = "sqlite://patrol.db";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSpec {
    database: Option<String>,
    schedules: Option<PathBuf>,
    #[serde(default)]
    history: Option<HistoryPolicy>,
    #[serde(default)]
    log: LogConfig,
    node: Option<String>,
    shutdown_grace: Option<HumanDuration>,
    node_ttl: Option<HumanDuration>,
    #[serde(default)]
    notifiers: Option<serde_norway::Value>,
    #[serde(default)]
    routes: Option<serde_norway::Value>,
    #[serde(default)]
    maintenance: Option<serde_norway::Value>,
    #[serde(default)]
    runbooks: Option<serde_norway::Value>,
    #[serde(default)]
    delivery: Option<serde_norway::Value>,
    #[serde(default)]
    plugins: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `patrol=debug`.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The runner's settings, defaults filled in and paths resolved.
#[derive(Debug, Clone)]
pub struct PatrolConfig {
    /// The file read, or `None` for the embedded defaults.
    pub file: Option<PathBuf>,
    pub database: String,
    pub schedules: PathBuf,
    pub history: HistoryPolicy,
    pub log: LogConfig,
    /// This process's node name in the ledger (default: host name).
    pub node: String,
    /// How long running jobs may finish after SIGTERM before being cancelled.
    pub shutdown_grace: Duration,
    /// A node whose heartbeat is older than this is dead; its runs crashed.
    pub node_ttl: Duration,
    /// Notifiers, routes, maintenance windows, runbooks, delivery.
    pub alerting: AlertingConfig,
    /// Plugin libraries, declared (loading them is `crate::plugins`).
    pub plugins: Vec<DeclaredPlugin>,
}

impl PatrolConfig {
    /// Reads `path`, or the embedded defaults when `path` is `None`.
    /// `PATROL_DATABASE_URL` overrides `database`.
    pub fn load(path: Option<&Path>) -> Result<Self, Diagnostics> {
        let (spec, base, alerting, plugins) = match path {
            Some(path) => {
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let (spec, alerting, plugins) = read_spec(path, &base)?;
                (spec, base, alerting, plugins)
            }
            None => (
                empty_spec(),
                PathBuf::new(),
                AlertingConfig::default(),
                Vec::new(),
            ),
        };
        let database = std::env::var("PATROL_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .or(spec.database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let database = resolve_sqlite_path(&database, &base);
        let schedules = base.join(spec.schedules.unwrap_or_else(|| PathBuf::from("schedules")));
        let history = spec.history.unwrap_or(HistoryPolicy {
            keep_last: Some(1000),
            max_age: Some(HumanDuration(Duration::from_secs(90 * 24 * 3600))),
        });
        let node_ttl = spec.node_ttl.map_or(Duration::from_secs(15), |d| d.0);
        let exposed = refuse_protected_read_paths(
            &plugins,
            &protected_files(path, &database, &schedules, &alerting),
        );
        if !exposed.is_empty() {
            return Err(Diagnostics(exposed));
        }
        Ok(Self {
            file: path.map(Path::to_path_buf),
            database,
            schedules,
            history,
            log: spec.log,
            node: spec.node.unwrap_or_else(default_node_name),
            shutdown_grace: spec.shutdown_grace.map_or(Duration::from_secs(30), |d| d.0),
            node_ttl,
            // Alerts follow the run history's age limit; nodes die the same way.
            alerting: AlertingConfig {
                delivery: crate::alerting::config::DeliverySettings {
                    node_ttl,
                    retention: history
                        .max_age
                        .map_or(alerting.delivery.retention, |age| age.0),
                    ..alerting.delivery
                },
                ..alerting
            },
            plugins,
        })
    }
}

type Spec = (ConfigSpec, AlertingConfig, Vec<DeclaredPlugin>);

fn read_spec(path: &Path, base: &Path) -> Result<Spec, Diagnostics> {
    let source = std::fs::read_to_string(path).map_err(|err| {
        Diagnostics(vec![Diagnostic::file_level(
            path,
            format!("cannot read: {err}"),
        )])
    })?;
    let yaml = YamlFile::parse(path, &source).map_err(|d| Diagnostics(vec![d]))?;
    if yaml.value.is_null() {
        return Ok((empty_spec(), AlertingConfig::default(), Vec::new()));
    }
    let spec: ConfigSpec = yaml
        .deserialize("", &yaml.value)
        .map_err(|d| Diagnostics(vec![d]))?;
    let mut errors = Vec::new();
    if let Some(database) = &spec.database {
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            errors
                .push(yaml.diagnostic("database", "expected a sqlite://PATH or postgres://… URL"));
        }
    }
    if let Some(HistoryPolicy {
        keep_last: Some(0), ..
    }) = spec.history
    {
        errors.push(yaml.diagnostic("history.keep_last", "must be at least 1"));
    }
    let raw = RawAlerting {
        notifiers: spec.notifiers.clone(),
        routes: spec.routes.clone(),
        maintenance: spec.maintenance.clone(),
        runbooks: spec.runbooks.clone(),
        delivery: spec.delivery.clone(),
    };
    let (alerting, problems) = raw.parse(&yaml);
    errors.extend(problems);
    let alerting = AlertingConfig::check(alerting, base, Some(&yaml))
        .map_err(|problems| errors.extend(problems))
        .ok();
    let plugins = match &spec.plugins {
        Some(value) => declared_plugins(&yaml, value, base)
            .map_err(|problems| errors.extend(problems))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    match alerting {
        Some(alerting) if errors.is_empty() => Ok((spec, alerting, plugins)),
        _ => Err(Diagnostics(errors)),
    }
}

fn empty_spec() -> ConfigSpec {
    ConfigSpec {
        database: None,
        schedules: None,
        history: None,
        log: LogConfig::default(),
        node: None,
        shutdown_grace: None,
        node_ttl: None,
        notifiers: None,
        routes: None,
        maintenance: None,
        runbooks: None,
        delivery: None,
        plugins: None,
    }
}

/// A relative SQLite path is relative to the config file's folder.
fn resolve_sqlite_path(url: &str, base: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_string();
    };
    if rest.starts_with('/') || rest.starts_with(":memory:") || base.as_os_str().is_empty() {
        return format!("sqlite://{rest}");
    }
    format!("sqlite://{}", base.join(rest).display())
}

/// What a plugin must never be allowed to read: patrol.yaml, the SQLite
/// ledger (its -wal and -shm beside it), the schedules (they name key
/// files) and the notifiers' secret files.
fn protected_files(
    config: Option<&Path>,
    database: &str,
    schedules: &Path,
    alerting: &AlertingConfig,
) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config.into_iter().map(Path::to_path_buf).collect();
    if let Some(ledger) = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|rest| !rest.starts_with(":memory:"))
    {
        files.push(PathBuf::from(ledger));
    }
    files.push(schedules.to_path_buf());
    for settings in alerting.notifiers.values() {
        for (_, secret) in settings.secrets() {
            if let patrol_job_api::secret::SecretRef::File(file) = secret {
                files.push(alerting.base.join(file));
            }
        }
    }
    files
}

fn default_node_name() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "patrol".to_string())
}
