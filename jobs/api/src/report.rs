use serde::{Deserialize, Serialize};

use crate::finding::Finding;

/// How a run ended, as the job saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The job stopped because `RunContext::cancel` fired.
    Cancelled,
}

/// What a job hands back to the runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub outcome: Outcome,
    /// One line for listings, e.g. `exit 0 in 1.2s`.
    pub summary: String,
    /// Captured output for people, already bounded in size by the job.
    pub output: Option<String>,
    /// Structured facts for machines (`exit_code`, counts, …).
    pub details: serde_json::Value,
    /// Problems found. On a succeeded run that is not `findings_partial`,
    /// a key the schedule reported before and not now resolves its alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// The run could not look at everything (a source was down): keys it
    /// did not report are unknown, not cleared, and are not resolved.
    #[serde(default)]
    pub findings_partial: bool,
    /// Changes to the schedule's state, committed with the run's end and
    /// findings, after any checkpoints of the run (not for dry runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<crate::StateWrite>,
}

impl RunReport {
    pub fn new(outcome: Outcome, summary: impl Into<String>) -> Self {
        Self {
            outcome,
            summary: summary.into(),
            output: None,
            details: serde_json::Value::Null,
            findings: Vec::new(),
            findings_partial: false,
            state: Vec::new(),
        }
    }
}
