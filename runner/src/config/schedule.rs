//! A schedule file's contents: what ops write (`ScheduleSpec`) and the
//! checked form the scheduler runs (`Schedule`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use patrol_job_api::units::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::cron::CronExpr;

/// One schedule as written in `schedules/*.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub id: String,
    pub job: String,
    pub cron: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default = "default_catchup")]
    pub catchup: HumanDuration,
    #[serde(default)]
    pub jitter: HumanDuration,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub retries: RetryPolicy,
    #[serde(default)]
    pub history: Option<HistoryPolicy>,
    #[serde(default)]
    pub params: serde_norway::Value,
    /// Top-level param keys a manual run (`patrol run --param`) may
    /// override; none by default (docs/scheduling.md).
    #[serde(default)]
    pub manual_params: Vec<String>,
    /// The route (in patrol.yaml) its alerts take, instead of matching.
    #[serde(default)]
    pub route: Option<String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_true() -> bool {
    true
}

fn default_catchup() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

/// What to do when a slot comes while the previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the new slot and record it `skipped`.
    #[default]
    Forbid,
    /// Run both.
    Allow,
    /// Cancel the running one, then start the new one.
    Replace,
}

/// `retries: { max: 3, backoff: 10s, max_backoff: 5m }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default)]
    pub max: u32,
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
}

fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max: 0,
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// How many finished runs of a schedule the ledger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPolicy {
    /// Keep at least the newest N finished runs.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Drop finished runs older than this (the newest run is always kept).
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

/// A checked schedule, ready to run.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: String,
    pub job: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub enabled: bool,
    pub description: Option<String>,
    pub overlap: Overlap,
    pub catchup: Duration,
    pub jitter: Duration,
    /// `None` when written as `0`.
    pub timeout: Option<Duration>,
    pub retries: RetryPolicy,
    pub history: Option<HistoryPolicy>,
    pub params: serde_json::Value,
    /// Top-level param keys a manual run may override (`manual_params`).
    pub manual_params: Vec<String>,
    /// The route its alerts take (`routes[].name`), instead of matching.
    pub route: Option<String>,
    /// Where it was defined, for messages.
    pub source: SourceLocation,
    /// Its job, built from `params`; `None` when loaded without checking
    /// jobs (commands that only read ids and timing).
    pub built: Option<BuiltJob>,
}

/// A schedule's job instance and the files its build read (a change to
/// one loads the schedules again).
#[derive(Clone)]
pub struct BuiltJob {
    pub instance: Arc<dyn patrol_job_api::JobInstance>,
    pub depends_on: Vec<PathBuf>,
}

impl std::fmt::Debug for BuiltJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltJob")
            .field("depends_on", &self.depends_on)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: usize,
    /// The line of `route:`, when given.
    pub route_line: Option<usize>,
}

/// Every schedule loaded from the schedule folder, by id.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSet {
    pub schedules: BTreeMap<String, Arc<Schedule>>,
}

impl ScheduleSet {
    pub fn get(&self, id: &str) -> Option<&Arc<Schedule>> {
        self.schedules.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Schedule>> {
        self.schedules.values()
    }

    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }
}
