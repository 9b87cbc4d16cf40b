//! Commands a job adds to the `patrol` command line (`patrol verify …`),
//! and what the runner lends them: the config, this job kind's schedules,
//! the job's state and its own tables in the ledger.
//!
//! Only built-in jobs contribute commands: plugins run out of process, one
//! call per run, and add none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::state::JobState;

/// Exit code 0: done, verified.
pub const EXIT_OK: u8 = 0;
/// Exit code 1: something was found, a check failed.
pub const EXIT_FOUND: u8 = 1;
/// Exit code 2: usage error or unusable input.
pub const EXIT_UNUSABLE: u8 = 2;

/// A job's top-level subcommands: offered through [`crate::Job::commands`].
#[async_trait]
pub trait JobCommands: Send + Sync {
    /// The subcommands, built with clap's builder API (or a derive's
    /// `Subcommand::augment_subcommands`). Their names must not be a
    /// runner command's or another job's: the runner refuses to start
    /// with a clash.
    fn commands(&self) -> Vec<clap::Command>;

    /// Runs the subcommand `name` (one of [`Self::commands`]) with its own
    /// matches. Returns the exit code ([`EXIT_OK`], [`EXIT_FOUND`],
    /// [`EXIT_UNUSABLE`]); an `Err` is printed as `error: …` with exit 2.
    async fn run_command(
        &self,
        name: &str,
        matches: &clap::ArgMatches,
        ctx: CommandContext,
    ) -> Result<u8, CommandError>;
}

/// A command could not do its work; printed as `error: …`, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

impl CommandError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<crate::state::StateError> for CommandError {
    fn from(err: crate::state::StateError) -> Self {
        Self(err.to_string())
    }
}

/// One schedule of the command's job kind, its params as written (not
/// checked by the job: the command checks what it uses).
#[derive(Debug, Clone)]
pub struct JobSchedule {
    pub id: String,
    pub params: serde_json::Value,
    /// The schedule file it came from.
    pub file: PathBuf,
}

/// Which database the ledger is: the SQL a job writes must serve both
/// (`$1` placeholders work on both through sqlx's `Any` driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

/// The ledger's pool, with the job's own tables (see [`crate::JobTables`])
/// migrated.
#[derive(Debug, Clone)]
pub struct JobDatabase {
    pub pool: sqlx::AnyPool,
    pub backend: DatabaseBackend,
}

/// What the runner provides to a job command, each piece loaded only when
/// asked for (`patrol verify bundle` needs no config and no ledger).
#[async_trait]
pub trait CommandHost: Send + Sync {
    /// The node name from patrol.yaml.
    fn node(&self) -> Result<String, CommandError>;
    /// The schedules naming this job kind.
    fn schedules(&self) -> Result<Vec<JobSchedule>, CommandError>;
    /// The ledger, this job's tables migrated.
    async fn database(&self) -> Result<JobDatabase, CommandError>;
    /// The state a schedule's runs keep (read only).
    async fn state(&self, schedule_id: &str) -> Result<JobState, CommandError>;
}

/// Everything a job command may use; cheap to clone.
#[derive(Clone)]
pub struct CommandContext {
    config_path: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    host: Arc<dyn CommandHost>,
}

impl CommandContext {
    pub fn new(
        config_path: Option<PathBuf>,
        clock: Arc<dyn Clock>,
        host: Arc<dyn CommandHost>,
    ) -> Self {
        Self {
            config_path,
            clock,
            host,
        }
    }

    /// patrol.yaml, when one is used (else the built-in defaults).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The current time, from the runner's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn node(&self) -> Result<String, CommandError> {
        self.host.node()
    }

    pub fn schedules(&self) -> Result<Vec<JobSchedule>, CommandError> {
        self.host.schedules()
    }

    pub async fn database(&self) -> Result<JobDatabase, CommandError> {
        self.host.database().await
    }

    pub async fn state(&self, schedule_id: &str) -> Result<JobState, CommandError> {
        self.host.state(schedule_id).await
    }
}

impl fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandContext")
            .field("config_path", &self.config_path)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}
