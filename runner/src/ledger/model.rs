//! What the ledger stores about runs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Written, waiting for a node to claim it (manual runs, retries).
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Its process died while it ran.
    Crashed,
    Cancelled,
    /// Not run because the previous run was still going (`overlap: forbid`).
    Skipped,
    /// Its slot passed while no runner was up, beyond `catchup`.
    Missed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Crashed,
        Self::Cancelled,
        Self::Skipped,
        Self::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Crashed => "crashed",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
        }
    }

    /// Finished: nothing will change it any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    /// A finished run that did not do its work, so a retry may follow.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::Crashed)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown status `{text}`; one of: {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Catchup,
    Manual,
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Catchup => "catchup",
            Self::Manual => "manual",
            Self::Retry => "retry",
        }
    }
}

impl FromStr for Trigger {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Schedule, Self::Catchup, Self::Manual, Self::Retry]
            .into_iter()
            .find(|trigger| trigger.as_str() == text)
            .ok_or_else(|| format!("unknown trigger `{text}`"))
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub schedule_id: String,
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: u32,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub not_before: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub node: Option<String>,
    pub instance_id: Option<String>,
    /// A full params copy, in rows written before migration 8 only (null
    /// since): shown, never run — the executor takes params from the
    /// schedule.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// A manual run's overrides (`config::overrides`), merged over the
    /// schedule's params when they are keys its `manual_params` allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrides: Option<serde_json::Value>,
    pub dry_run: bool,
    pub force_overlap: bool,
    pub summary: Option<String>,
    pub output: Option<String>,
    pub details: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// A run to write, before anything acts on it.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub schedule_id: String,
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: u32,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub not_before: Option<DateTime<Utc>>,
    /// A manual run's param overrides (`config::overrides`); `None` runs
    /// the schedule's params as they are.
    pub overrides: Option<serde_json::Value>,
    pub dry_run: bool,
    pub force_overlap: bool,
    pub error: Option<String>,
}

/// How a run ended, to record.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub summary: Option<String>,
    pub output: Option<String>,
    pub details: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl RunEnd {
    /// An end with nothing but a status and an error.
    pub fn failed(status: RunStatus, error: impl Into<String>) -> Self {
        Self {
            status,
            summary: None,
            output: None,
            details: None,
            error: Some(error.into()),
        }
    }
}

/// Who is acting on the ledger: this process.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub node: String,
}

pub fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
