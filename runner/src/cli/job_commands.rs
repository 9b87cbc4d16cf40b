//! Commands that built-in jobs add to `patrol` (`JobCommands`), mounted
//! beside the runner's own and dispatched to their job with a
//! [`CommandContext`] the runner fills in on demand.
//!
//! Plugins contribute none: they run out of process, one call per run, and
//! loading them here would make every command depend on every plugin pin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use patrol_job_api::commands::{CommandHost, JobDatabase, JobSchedule};
use patrol_job_api::{CommandContext, CommandError, JobCommands, JobState, SystemClock};
use tokio::sync::OnceCell;

use super::context::Context;
use crate::ledger::{Ledger, ScheduleStateStore};
use crate::registry::JobRegistry;

/// Each job command name with the job that owns it.
pub struct JobCommandSet {
    commands: BTreeMap<String, (&'static str, Arc<dyn JobCommands>, clap::Command)>,
}

impl JobCommandSet {
    /// The commands of the built-in jobs, refused if a name is a runner
    /// command's (`runner`) or two jobs'.
    pub fn new(registry: &JobRegistry, runner: &clap::Command) -> Result<Self, String> {
        let mut commands = BTreeMap::new();
        for (kind, job) in registry.commands() {
            for command in job.commands() {
                let name = command.get_name().to_string();
                let taken_by_runner = runner
                    .get_subcommands()
                    .any(|own| own.get_name() == name || own.get_all_aliases().any(|a| a == name))
                    || name == "help";
                if taken_by_runner {
                    return Err(format!(
                        "job {kind} adds a command `{name}`, which is one of patrol's own"
                    ));
                }
                if let Some((other, _, _)) = commands.get(&name) {
                    return Err(format!(
                        "jobs {other} and {kind} both add a command `{name}`"
                    ));
                }
                commands.insert(name, (kind, job.clone(), command));
            }
        }
        Ok(Self { commands })
    }

    /// `runner` with every job command mounted.
    pub fn mount(&self, runner: clap::Command) -> clap::Command {
        self.commands.values().fold(runner, |cli, (_, _, command)| {
            cli.subcommand(command.clone())
        })
    }

    /// Whether a job owns the command `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.commands.contains_key(name)
    }

    /// Runs the job command `name` with its matches; `config` is the
    /// `--config` given, if any.
    pub async fn run(
        &self,
        name: &str,
        matches: &clap::ArgMatches,
        config: Option<&Path>,
    ) -> Result<u8, CommandError> {
        let Some((kind, job, _)) = self.commands.get(name) else {
            return Err(CommandError::new(format!("no job adds a command `{name}`")));
        };
        // The file actually used (`./patrol.yaml` when none is named);
        // a named file that is missing is reported when the config loads.
        let used = super::context::config_path(config)
            .ok()
            .flatten()
            .or_else(|| config.map(Path::to_path_buf));
        let host = RunnerHost {
            config: config.map(Path::to_path_buf),
            kind,
            context: OnceLock::new(),
            ledger: OnceCell::new(),
        };
        let ctx = CommandContext::new(used, Arc::new(SystemClock), Arc::new(host));
        job.run_command(name, matches, ctx).await
    }
}

/// What the runner lends a job command, each piece loaded when first
/// asked for. Loads no plugin.
struct RunnerHost {
    config: Option<PathBuf>,
    kind: &'static str,
    context: OnceLock<Result<Context, String>>,
    ledger: OnceCell<Ledger>,
}

impl RunnerHost {
    fn context(&self) -> Result<&Context, CommandError> {
        self.context
            .get_or_init(|| Context::load(self.config.as_deref()).map_err(|err| format!("{err:#}")))
            .as_ref()
            .map_err(|err| CommandError::new(err.clone()))
    }

    async fn ledger(&self) -> Result<&Ledger, CommandError> {
        let context = self.context()?;
        self.ledger
            .get_or_try_init(|| context.ledger())
            .await
            .map_err(|err| CommandError::new(format!("{err:#}")))
    }
}

#[async_trait]
impl CommandHost for RunnerHost {
    fn node(&self) -> Result<String, CommandError> {
        Ok(self.context()?.config.node.clone())
    }

    fn schedules(&self) -> Result<Vec<JobSchedule>, CommandError> {
        // Unchecked by their job: the command checks what it uses, and a
        // plugin's schedule needs no plugin loaded to be skipped.
        let set = self
            .context()?
            .schedules_without_jobs()
            .map_err(|err| CommandError::new(format!("{err:#}")))?;
        Ok(set
            .iter()
            .filter(|schedule| schedule.job == self.kind)
            .map(|schedule| JobSchedule {
                id: schedule.id.clone(),
                params: schedule.params.clone(),
                file: schedule.source.file.clone(),
            })
            .collect())
    }

    async fn database(&self) -> Result<JobDatabase, CommandError> {
        Ok(self.ledger().await?.job_database())
    }

    async fn state(&self, schedule_id: &str) -> Result<JobState, CommandError> {
        let ledger = self.ledger().await?.clone();
        Ok(JobState::new(Arc::new(ScheduleStateStore::new(
            ledger,
            schedule_id.to_string(),
        ))))
    }
}

#[cfg(test)]
mod tests;
