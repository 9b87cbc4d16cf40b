//! The alerting part of `patrol.yaml`: `notifiers`, `routes`,
//! `maintenance`, `runbooks` and `delivery`. Parsed with the rest of the
//! file, checked here (every problem located), built into a [`Router`]
//! and notifiers by the commands that deliver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use patrol_job_api::units::HumanDuration;
use serde::Deserialize;

use super::matcher::Matcher;
use super::notifiers::{
    ConsoleSettings, EmailSettings, NotifierSettings, PagerDutySettings, SlackSettings,
    WebhookSettings,
};
use crate::config::{Diagnostic, YamlFile};
use crate::cron::CronExpr;

/// The notifier every alert goes to when none is configured.
pub const CONSOLE: &str = "console";

/// The alerting sections of `patrol.yaml` as read, before they are parsed
/// piece by piece (so one bad notifier does not hide the next one's problems).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawAlerting {
    #[serde(default)]
    pub notifiers: Option<serde_norway::Value>,
    #[serde(default)]
    pub routes: Option<serde_norway::Value>,
    #[serde(default)]
    pub maintenance: Option<serde_norway::Value>,
    #[serde(default)]
    pub runbooks: Option<serde_norway::Value>,
    #[serde(default)]
    pub delivery: Option<serde_norway::Value>,
}

impl RawAlerting {
    /// Parses each notifier, route and window on its own, collecting every
    /// problem with its location.
    pub fn parse(&self, yaml: &YamlFile<'_>) -> (AlertingSpec, Vec<Diagnostic>) {
        let mut errors = Vec::new();
        let mut spec = AlertingSpec::default();
        if let Some(value) = &self.notifiers {
            match value.as_mapping() {
                Some(map) => {
                    for (name, settings) in map {
                        let Some(name) = name.as_str() else {
                            errors.push(yaml.diagnostic("notifiers", "notifier names are strings"));
                            continue;
                        };
                        match parse_notifier(yaml, &format!("notifiers.{name}"), settings) {
                            Ok(settings) => {
                                spec.notifiers.insert(name.to_string(), settings);
                            }
                            Err(diagnostic) => errors.push(diagnostic),
                        }
                    }
                }
                None if value.is_null() => {}
                None => errors.push(
                    yaml.diagnostic("notifiers", "expected a map of notifier name → settings"),
                ),
            }
        }
        spec.routes = parse_list(yaml, "routes", self.routes.as_ref(), &mut errors);
        spec.maintenance = parse_list(yaml, "maintenance", self.maintenance.as_ref(), &mut errors);
        if let Some(value) = &self.runbooks {
            match yaml.deserialize("runbooks", value) {
                Ok(runbooks) => spec.runbooks = runbooks,
                Err(diagnostic) => errors.push(diagnostic),
            }
        }
        if let Some(value) = &self.delivery {
            match yaml.deserialize("delivery", value) {
                Ok(delivery) => spec.delivery = delivery,
                Err(diagnostic) => errors.push(diagnostic),
            }
        }
        (spec, errors)
    }
}

fn parse_list<T: serde::de::DeserializeOwned>(
    yaml: &YamlFile<'_>,
    field: &str,
    value: Option<&serde_norway::Value>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<T> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Vec::new();
    };
    let Some(items) = value.as_sequence() else {
        errors.push(yaml.diagnostic(field, "expected a list"));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            yaml.deserialize(&format!("{field}[{index}]"), item)
                .map_err(|diagnostic| errors.push(diagnostic))
                .ok()
        })
        .collect()
}

/// A notifier's settings: `kind` picks the struct, which is then read
/// with field paths intact (so errors point at the offending line).
fn parse_notifier(
    yaml: &YamlFile<'_>,
    at: &str,
    value: &serde_norway::Value,
) -> Result<NotifierSettings, Diagnostic> {
    let Some(map) = value.as_mapping() else {
        return Err(yaml.diagnostic(at, "expected the notifier's settings (kind: …)"));
    };
    let kind = map
        .get(serde_norway::Value::from("kind"))
        .and_then(serde_norway::Value::as_str)
        .ok_or_else(|| {
            yaml.diagnostic(
                at,
                "missing `kind` (console, slack, pagerduty, email or webhook)",
            )
        })?;
    let mut rest = map.clone();
    rest.remove(serde_norway::Value::from("kind"));
    let rest = serde_norway::Value::Mapping(rest);
    Ok(match kind {
        "console" => NotifierSettings::Console(yaml.deserialize::<ConsoleSettings>(at, &rest)?),
        "slack" => NotifierSettings::Slack(yaml.deserialize::<SlackSettings>(at, &rest)?),
        "pagerduty" => {
            NotifierSettings::Pagerduty(yaml.deserialize::<PagerDutySettings>(at, &rest)?)
        }
        "email" => NotifierSettings::Email(yaml.deserialize::<EmailSettings>(at, &rest)?),
        "webhook" => NotifierSettings::Webhook(yaml.deserialize::<WebhookSettings>(at, &rest)?),
        other => {
            return Err(yaml.diagnostic(
                &format!("{at}.kind"),
                format!("unknown notifier kind `{other}` (expected console, slack, pagerduty, email or webhook)"),
            ))
        }
    })
}

/// The alerting sections of `patrol.yaml`, each piece parsed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertingSpec {
    #[serde(default)]
    pub notifiers: BTreeMap<String, NotifierSettings>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceSpec>,
    #[serde(default)]
    pub runbooks: RunbooksSpec,
    #[serde(default)]
    pub delivery: DeliverySpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    pub notifiers: Vec<String>,
    /// Alert fields (`schedule`, `job`, `severity`, `key`) or label names
    /// whose values form a group; a group's first alert waits `group_wait`
    /// and the alerts joining it meanwhile go out together.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// Remind about a still-firing alert this often.
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
    /// Go on matching later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    pub name: String,
    /// When each window starts.
    pub cron: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub duration: HumanDuration,
    /// Which alerts it mutes; all when left out.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
}

fn default_timezone() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbooksSpec {
    /// Folder of `<name>.md` files (default `runbooks`, next to patrol.yaml).
    pub dir: Option<PathBuf>,
    /// Where people read them, e.g. `https://github.com/org/ops/blob/main/runbooks`.
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySpec {
    /// Failed attempts in a row on one notifier before
    /// `patrol/delivery-degraded` is raised on the others (default 5).
    pub degraded_after: Option<u32>,
    /// ...and only once those failures span at least this long (default
    /// 2m): a burst of parallel first attempts failing within milliseconds
    /// of a blip is not a degraded notifier. `0s`: the count alone.
    pub degraded_after_for: Option<HumanDuration>,
    /// First retry delay (default 1s); doubles up to `retry_max` (default 5m).
    pub retry_min: Option<HumanDuration>,
    pub retry_max: Option<HumanDuration>,
    /// A delivery still failing after this long is given up (default 24h).
    pub give_up_after: Option<HumanDuration>,
}

/// One route, checked.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    pub notifiers: Vec<String>,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub repeat_interval: Duration,
    pub continue_matching: bool,
}

/// One maintenance window, checked.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub duration: Duration,
    pub matcher: Matcher,
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub degraded_after: u32,
    /// How long the failures in a row must have lasted, besides their count.
    pub degraded_after_for: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
    /// An instance silent this long is dead: deliveries it was sending are
    /// taken over at once (patrol.yaml's `node_ttl`).
    pub node_ttl: Duration,
    /// Resolved alerts older than this are forgotten, with their deliveries
    /// (patrol.yaml's `history.max_age`).
    pub retention: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            degraded_after: 5,
            degraded_after_for: Duration::from_secs(120),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            node_ttl: Duration::from_secs(15),
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The alerting configuration, checked, defaults filled in.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    pub notifiers: BTreeMap<String, NotifierSettings>,
    pub routes: Vec<Route>,
    pub maintenance: Vec<Maintenance>,
    pub runbooks_dir: PathBuf,
    pub runbooks_base_url: Option<String>,
    pub delivery: DeliverySettings,
    /// The config file's folder: relative secret files resolve against it.
    pub base: PathBuf,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self::check(AlertingSpec::default(), Path::new(""), None).unwrap_or_else(|_| Self {
            notifiers: BTreeMap::new(),
            routes: Vec::new(),
            maintenance: Vec::new(),
            runbooks_dir: PathBuf::from("runbooks"),
            runbooks_base_url: None,
            delivery: DeliverySettings::default(),
            base: PathBuf::new(),
        })
    }
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

impl AlertingConfig {
    /// Checks `spec`; `yaml` (when read from a file) locates the problems.
    /// With no notifiers configured, alerts go to the console; with no
    /// routes, every alert goes to every notifier.
    pub fn check(
        spec: AlertingSpec,
        base: &Path,
        yaml: Option<&YamlFile<'_>>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut error = |field: String, message: String| {
            errors.push(match yaml {
                Some(yaml) => yaml.diagnostic(&field, message),
                None => Diagnostic::file_level(Path::new("patrol.yaml"), message),
            });
        };
        let mut notifiers = spec.notifiers;
        for (name, settings) in &notifiers {
            if !valid_name(name) {
                error(
                    format!("notifiers.{name}"),
                    "a notifier name uses letters, digits, - and _".into(),
                );
            }
            for (field, message) in settings.check() {
                error(join(&format!("notifiers.{name}"), &field), message);
            }
        }
        if notifiers.is_empty() {
            notifiers.insert(
                CONSOLE.to_string(),
                NotifierSettings::Console(Default::default()),
            );
        }
        let mut routes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, route) in spec.routes.into_iter().enumerate() {
            let at = format!("routes[{index}]");
            if !seen.insert(route.name.clone()) {
                error(
                    format!("{at}.name"),
                    format!("route `{}` is defined twice", route.name),
                );
            }
            if route.notifiers.is_empty() {
                error(
                    format!("{at}.notifiers"),
                    "a route needs at least one notifier".into(),
                );
            }
            for (position, notifier) in route.notifiers.iter().enumerate() {
                if !notifiers.contains_key(notifier) {
                    error(
                        format!("{at}.notifiers[{position}]"),
                        format!(
                            "unknown notifier `{notifier}` (configured: {})",
                            notifiers.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            if route
                .repeat_interval
                .is_some_and(|d| d.0 < Duration::from_secs(60))
            {
                // Every run would re-page a still-firing alert.
                error(
                    format!("{at}.repeat_interval"),
                    "repeat_interval must be at least 1m (it is how often a still-firing alert is re-sent)"
                        .into(),
                );
            }
            check_matcher(&route.matcher, &format!("{at}.match"), &mut error);
            routes.push(Route {
                name: route.name,
                matcher: route.matcher,
                notifiers: route.notifiers,
                group_by: route.group_by,
                group_wait: route.group_wait.map_or(Duration::ZERO, |d| d.0),
                repeat_interval: route.repeat_interval.map_or(DEFAULT_REPEAT, |d| d.0),
                continue_matching: route.continue_matching,
            });
        }
        if routes.is_empty() {
            routes.push(Route {
                name: "default".into(),
                matcher: Matcher::default(),
                notifiers: notifiers.keys().cloned().collect(),
                group_by: Vec::new(),
                group_wait: Duration::ZERO,
                repeat_interval: DEFAULT_REPEAT,
                continue_matching: false,
            });
        }
        let mut maintenance = Vec::new();
        for (index, window) in spec.maintenance.into_iter().enumerate() {
            let at = format!("maintenance[{index}]");
            let cron = CronExpr::parse(&window.cron)
                .map_err(|err| error(format!("{at}.cron"), err.to_string()))
                .ok();
            let timezone = window
                .timezone
                .parse::<Tz>()
                .map_err(|_| {
                    error(
                        format!("{at}.timezone"),
                        format!(
                            "unknown time zone `{}` (expected an IANA name such as Europe/Berlin)",
                            window.timezone
                        ),
                    )
                })
                .ok();
            if window.duration.0.is_zero() {
                error(format!("{at}.duration"), "must be longer than 0".into());
            }
            check_matcher(&window.matcher, &format!("{at}.match"), &mut error);
            if let (Some(cron), Some(timezone)) = (cron, timezone) {
                maintenance.push(Maintenance {
                    name: window.name,
                    cron,
                    timezone,
                    duration: window.duration.0,
                    matcher: window.matcher,
                });
            }
        }
        if let Some(url) = &spec.runbooks.base_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                error(
                    "runbooks.base_url".into(),
                    "expected an http(s):// URL".into(),
                );
            }
        }
        let defaults = DeliverySettings::default();
        let delivery = DeliverySettings {
            degraded_after: spec
                .delivery
                .degraded_after
                .unwrap_or(defaults.degraded_after),
            degraded_after_for: spec
                .delivery
                .degraded_after_for
                .map_or(defaults.degraded_after_for, |d| d.0),
            retry_min: spec.delivery.retry_min.map_or(defaults.retry_min, |d| d.0),
            retry_max: spec.delivery.retry_max.map_or(defaults.retry_max, |d| d.0),
            give_up_after: spec
                .delivery
                .give_up_after
                .map_or(defaults.give_up_after, |d| d.0),
            node_ttl: defaults.node_ttl,
            retention: defaults.retention,
        };
        if delivery.degraded_after == 0 {
            error(
                "delivery.degraded_after".into(),
                "must be at least 1".into(),
            );
        }
        if delivery.retry_min.is_zero() || delivery.retry_min > delivery.retry_max {
            error(
                "delivery.retry_min".into(),
                "must be above 0 and at most retry_max".into(),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            notifiers,
            routes,
            maintenance,
            runbooks_dir: base.join(
                spec.runbooks
                    .dir
                    .unwrap_or_else(|| PathBuf::from("runbooks")),
            ),
            runbooks_base_url: spec
                .runbooks
                .base_url
                .map(|url| url.trim_end_matches('/').to_string()),
            delivery,
            base: base.to_path_buf(),
        })
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// Resolves every notifier's secrets; one message per secret that
    /// cannot be read, as (field path, message).
    pub fn missing_secrets(&self) -> Vec<(String, String)> {
        let mut missing = Vec::new();
        for (name, settings) in &self.notifiers {
            for (field, secret) in settings.secrets() {
                if let Err(err) = secret.resolve(&self.base) {
                    missing.push((format!("notifiers.{name}.{field}"), err));
                }
            }
        }
        missing
    }
}

fn check_matcher(matcher: &Matcher, at: &str, error: &mut impl FnMut(String, String)) {
    for (position, value) in matcher.severity.values().iter().enumerate() {
        if !value.contains('*') && value.parse::<patrol_job_api::Severity>().is_err() {
            error(
                format!("{at}.severity[{position}]"),
                format!("`{value}` is not a severity (critical, error, warning, info)"),
            );
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn join(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// What `patrol validate` can learn about alerting from a patrol.yaml even
/// when the file has other errors: the route names it defines, and every
/// notifier secret that cannot be read (located at its field).
pub struct FileAlertingFacts {
    pub route_names: Vec<String>,
    pub missing_secrets: Vec<Diagnostic>,
}

pub fn alerting_facts(path: &Path) -> Option<FileAlertingFacts> {
    let source = std::fs::read_to_string(path).ok()?;
    let yaml = YamlFile::parse(path, &source).ok()?;
    let field = |name: &str| yaml.value.get(name).cloned();
    let base = path.parent().unwrap_or(Path::new(""));
    let route_names = field("routes")
        .and_then(|routes| routes.as_sequence().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|route| route.get("name")?.as_str().map(str::to_string))
        .collect::<Vec<_>>();
    let mut missing_secrets = Vec::new();
    if let Some(notifiers) = field("notifiers").and_then(|n| n.as_mapping().cloned()) {
        for (name, settings) in &notifiers {
            let Some(name) = name.as_str() else { continue };
            let at = format!("notifiers.{name}");
            let Ok(settings) = parse_notifier(&yaml, &at, settings) else {
                continue;
            };
            for (secret_field, secret) in settings.secrets() {
                if let Err(message) = secret.resolve(base) {
                    missing_secrets.push(yaml.diagnostic(&format!("{at}.{secret_field}"), message));
                }
            }
        }
    }
    let route_names = if route_names.is_empty() && field("routes").is_none() {
        vec!["default".to_string()]
    } else {
        route_names
    };
    Some(FileAlertingFacts {
        route_names,
        missing_secrets,
    })
}
