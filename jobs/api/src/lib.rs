//! The contract between patrol's runner and its jobs.
//!
//! A job is small: it describes its parameters, checks them without I/O,
//! builds an instance once per config load ([`build`]), and the instance
//! runs with a [`RunContext`], returning a [`RunReport`]. Everything else —
//! when it runs, retries, timeouts, recording, alerting — belongs to the
//! runner.

pub mod build;
pub mod checkpoint;
mod clock;
pub mod commands;
mod context;
pub mod effects;
pub mod fence;
mod finding;
mod params;
mod report;
pub mod rule_list;
pub mod secret;
mod state;
pub mod state_key;
mod tables;
pub mod units;
pub mod yaml_lines;

use std::sync::Arc;

pub use build::{BuildContext, JobInstance, JobKind, RunOnce, Typed};
pub use checkpoint::{
    CheckpointCounts, CheckpointError, CheckpointLog, CheckpointRun, Checkpoints,
};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use commands::{CommandContext, CommandError, JobCommands};
pub use context::RunContext;
pub use effects::{Effects, Intent, PerformError, Performed};
pub use fence::ProcessFence;
pub use finding::{Finding, Link, Severity, MAX_KEY_LEN};
pub use params::{parse_params, JobDescription, ParamDoc, ParamError};
pub use report::{Outcome, RunReport};
pub use state::{JobState, MemoryState, StateError, StateRead, StateWrite, MAX_STATE_KEY_LEN};
pub use state_key::{StateKey, StatePrefix};
pub use tables::JobTables;
pub use tokio_util::sync::CancellationToken;

/// A kind of job a schedule can name with `job: <kind>`, as the runner
/// holds it. Built-in jobs implement [`JobKind`] (a typed config) and
/// register as [`Typed`]; plugin jobs implement this directly.
pub trait Job: Send + Sync + 'static {
    /// The name schedule files use for this job kind, e.g. `command`.
    fn kind(&self) -> &'static str;

    /// What the job does and which parameters it takes (`patrol jobs`).
    fn describe(&self) -> JobDescription;

    /// Checks a schedule's `params` without I/O (no file read, no secret
    /// resolved): what `patrol schedules` and a reload's first pass use.
    ///
    /// Errors name the offending field as a dotted path (`env.HOME`), so the
    /// runner can point at the file and line it came from.
    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>>;

    /// Checks `params` and builds the instance that runs them: reads rules
    /// and keys, resolves secrets, makes clients. Called once per config
    /// load (and for a manual run with its own params), never per run.
    fn build(
        &self,
        params: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>>;

    /// The subcommands this job adds to `patrol` (built-in jobs only).
    fn commands(&self) -> Option<Arc<dyn JobCommands>> {
        None
    }

    /// The job's own ledger tables, migrated by the ledger on connect.
    fn tables(&self) -> Option<JobTables> {
        None
    }

    /// Top-level params a manual run may never override, whatever the
    /// schedule's `manual_params` say (see [`JobKind::pinned_params`]).
    fn pinned_params(&self) -> &'static [&'static str] {
        &[]
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
