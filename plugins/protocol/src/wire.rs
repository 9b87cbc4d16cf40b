//! Reports and findings as they cross the ABI. The protocol's own types,
//! converted to and from the job API's with `From`, so a field added to
//! `patrol_job_api::Finding` (which denies unknown fields) cannot change
//! what an already-built plugin sends or accepts: the wire changes only
//! with [`crate::PROTOCOL_VERSION`].
//!
//! The shapes are those protocol v1 plugins send (v1 re-exported the job
//! API's types as they were then); v2 adds `state` to a report.

use std::collections::BTreeMap;

use patrol_job_api::{Finding, Link, Outcome, RunReport, Severity, StateWrite};
use serde::{Deserialize, Serialize};

/// A run's report on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReport {
    pub outcome: WireOutcome,
    pub summary: String,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub details: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<WireFinding>,
    #[serde(default)]
    pub findings_partial: bool,
    /// v2: state writes, only to the keys the job's manifest declares
    /// (`state_keys`); values are text (JSON, typically).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<WireStateWrite>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireOutcome {
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireSeverity {
    Info,
    Warning,
    Error,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFinding {
    pub key: String,
    pub severity: WireSeverity,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_trace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<WireLink>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLink {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One state change; `value: None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStateWrite {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

impl From<Outcome> for WireOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => Self::Succeeded,
            Outcome::Failed => Self::Failed,
            Outcome::Cancelled => Self::Cancelled,
        }
    }
}

impl From<WireOutcome> for Outcome {
    fn from(outcome: WireOutcome) -> Self {
        match outcome {
            WireOutcome::Succeeded => Self::Succeeded,
            WireOutcome::Failed => Self::Failed,
            WireOutcome::Cancelled => Self::Cancelled,
        }
    }
}

impl From<Severity> for WireSeverity {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Info => Self::Info,
            Severity::Warning => Self::Warning,
            Severity::Error => Self::Error,
            Severity::Critical => Self::Critical,
        }
    }
}

impl From<WireSeverity> for Severity {
    fn from(severity: WireSeverity) -> Self {
        match severity {
            WireSeverity::Info => Self::Info,
            WireSeverity::Warning => Self::Warning,
            WireSeverity::Error => Self::Error,
            WireSeverity::Critical => Self::Critical,
        }
    }
}

impl From<Finding> for WireFinding {
    fn from(finding: Finding) -> Self {
        Self {
            key: finding.key,
            severity: finding.severity.into(),
            title: finding.title,
            summary: finding.summary,
            window: finding.window,
            delta: finding.delta,
            sample_trace: finding.sample_trace,
            runbook: finding.runbook,
            links: finding
                .links
                .into_iter()
                .map(|link| WireLink {
                    href: link.href,
                    text: link.text,
                })
                .collect(),
            labels: finding.labels,
            details: finding.details,
        }
    }
}

impl From<WireFinding> for Finding {
    fn from(wire: WireFinding) -> Self {
        let mut finding = Finding::new(wire.key, wire.severity.into(), wire.title);
        finding.summary = wire.summary;
        finding.window = wire.window;
        finding.delta = wire.delta;
        finding.sample_trace = wire.sample_trace;
        finding.runbook = wire.runbook;
        finding.links = wire
            .links
            .into_iter()
            .map(|link| Link {
                href: link.href,
                text: link.text,
            })
            .collect();
        finding.labels = wire.labels;
        finding.details = wire.details;
        finding
    }
}

/// A state value that is not UTF-8 text cannot cross the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state key `{key}`: the value is not UTF-8 text")]
pub struct NotText {
    pub key: String,
}

impl WireReport {
    /// The report on the wire; fails on a state value that is not text.
    pub fn from_report(report: RunReport) -> Result<Self, NotText> {
        let state = report
            .state
            .into_iter()
            .map(|write| {
                let value = match write.value {
                    None => None,
                    Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| NotText {
                        key: write.key.clone(),
                    })?),
                };
                Ok(WireStateWrite {
                    key: write.key,
                    value,
                })
            })
            .collect::<Result<_, NotText>>()?;
        Ok(Self {
            outcome: report.outcome.into(),
            summary: report.summary,
            output: report.output,
            details: report.details,
            findings: report.findings.into_iter().map(Into::into).collect(),
            findings_partial: report.findings_partial,
            state,
        })
    }
}

impl From<WireReport> for RunReport {
    fn from(wire: WireReport) -> Self {
        let mut report = RunReport::new(wire.outcome.into(), wire.summary);
        report.output = wire.output;
        report.details = wire.details;
        report.findings = wire.findings.into_iter().map(Into::into).collect();
        report.findings_partial = wire.findings_partial;
        report.state = wire
            .state
            .into_iter()
            .map(|write| StateWrite {
                key: write.key,
                value: write.value.map(String::into_bytes),
            })
            .collect();
        report
    }
}
