//! Findings: what a job reports it found. The runner, not the job, turns
//! them into alerts (trigger on a new key, update on a seen key, resolve
//! when a later successful run no longer reports the key).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted finding key; keys identify alerts across runs.
pub const MAX_KEY_LEN: usize = 1024;

/// How urgent a finding is. Ordered: `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// Our four names and the seeds' `high`/`medium`/`low` (rules files
    /// are written in the seeds' words).
    pub fn parse_with_seed_names(text: &str) -> Result<Self, String> {
        match text {
            "critical" => Ok(Self::Critical),
            "error" | "high" => Ok(Self::Error),
            "warning" | "medium" => Ok(Self::Warning),
            "info" | "low" => Ok(Self::Info),
            other => Err(format!(
                "`{other}` is not a severity (critical, high/error, medium/warning, low/info)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|severity| severity.as_str() == text)
            .ok_or_else(|| {
                format!("unknown severity `{text}` (expected info, warning, error or critical)")
            })
    }
}

/// A link an on-call engineer may follow (dashboard, commit, log search).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One problem a run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable identity across runs, e.g. `provmon/missing-rekor/<sha>`.
    pub key: String,
    pub severity: Severity,
    /// One line, e.g. `Anomaly: export-spike (EU)`.
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The time window the finding covers, e.g. `2025-12-05T10:00Z..10:10Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// How far from normal, e.g. `3.2x over baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    /// A trace id that shows the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_trace: Option<String>,
    /// The runbook's name: `runbooks/<name>.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Labels routes can match on (`region: eu`, `team: payments`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Structured facts for machines and for the alert's details.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Finding {
    pub fn new(key: impl Into<String>, severity: Severity, title: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            severity,
            title: title.into(),
            summary: String::new(),
            window: None,
            delta: None,
            sample_trace: None,
            runbook: None,
            links: Vec::new(),
            labels: BTreeMap::new(),
            details: serde_json::Value::Null,
        }
    }

    /// Checks what serde cannot: non-empty key and title, key length,
    /// runbook names that stay inside `runbooks/`.
    pub fn check(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("`key` must not be empty".into());
        }
        if self.key.len() > MAX_KEY_LEN {
            return Err(format!(
                "`key` is {} bytes; at most {MAX_KEY_LEN} allowed",
                self.key.len()
            ));
        }
        if self.key.chars().any(char::is_control) {
            return Err("`key` must not contain control characters".into());
        }
        if self.title.trim().is_empty() {
            return Err("`title` must not be empty".into());
        }
        if let Some(runbook) = &self.runbook {
            let valid = !runbook.is_empty()
                && runbook
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && !runbook
                    .split('/')
                    .any(|part| part.is_empty() || part == "..");
            if !valid {
                return Err(format!(
                    "`runbook` `{runbook}` must be a name under runbooks/ (letters, digits, - _ . /)"
                ));
            }
        }
        Ok(())
    }
}
