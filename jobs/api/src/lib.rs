//! The contract between patrol's runner and its jobs.
//!
//! A job is small: it describes its parameters, checks them, and runs with a
//! [`RunContext`], returning a [`RunReport`]. Everything else — when it runs,
//! retries, timeouts, recording, alerting — belongs to the runner.

mod clock;
pub mod commands;
mod context;
pub mod effects;
mod finding;
mod params;
mod report;
pub mod rule_list;
pub mod secret;
mod state;
mod tables;
pub mod units;
pub mod yaml_lines;

use std::sync::Arc;

use async_trait::async_trait;

pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use commands::{CommandContext, CommandError, JobCommands};
pub use context::RunContext;
pub use effects::{Effects, Intent, PerformError, Performed};
pub use finding::{Finding, Link, Severity, MAX_KEY_LEN};
pub use params::{parse_params, JobDescription, ParamDoc, ParamError};
pub use report::{Outcome, RunReport};
pub use state::{JobState, StateError, StateRead, StateWrite, MAX_STATE_KEY_LEN};
pub use tables::JobTables;
pub use tokio_util::sync::CancellationToken;

/// A kind of job a schedule can name with `job: <kind>`.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// The name schedule files use for this job kind, e.g. `command`.
    fn kind(&self) -> &'static str;

    /// What the job does and which parameters it takes (`patrol jobs`).
    fn describe(&self) -> JobDescription;

    /// Checks a schedule's `params` without running anything.
    ///
    /// Errors name the offending field as a dotted path (`env.HOME`), so the
    /// runner can point at the file and line it came from.
    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>>;

    /// Runs once. The job must return promptly after `ctx.cancel` fires,
    /// releasing whatever it started (processes, connections).
    ///
    /// An `Err` means the job could not do its work at all (bad params at run
    /// time, a program that cannot be started); a job that ran and found the
    /// work failed returns `Ok` with [`Outcome::Failed`].
    async fn run(&self, ctx: RunContext, params: serde_json::Value) -> Result<RunReport, JobError>;

    /// The subcommands this job adds to `patrol` (built-in jobs only).
    fn commands(&self) -> Option<Arc<dyn JobCommands>> {
        None
    }

    /// The job's own ledger tables, migrated by the ledger on connect.
    fn tables(&self) -> Option<JobTables> {
        None
    }
}

/// Why a job could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid params: {}", display_param_errors(.0))]
    InvalidParams(Vec<ParamError>),
    #[error("{0}")]
    Failed(String),
}

fn display_param_errors(errors: &[ParamError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
