//! The command line: one module per subcommand, plus the commands built-in
//! jobs add (`job_commands.rs`; e.g. a job's `verify`), which `patrol
//! --help` lists beside these.
//!
//! Exit codes: 0 ok, 1 a job failed or something was found, 2 usage,
//! configuration or infrastructure error.

mod alerts;
mod context;
mod cron_next;
mod job_commands;
mod jobs;
mod log_writer;
mod output;
mod pause;
mod plugins;
mod run;
mod runs;
mod schedules;
mod serve;
mod silence;
mod validate;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use context::Context;
pub use job_commands::JobCommandSet;

use crate::registry::JobRegistry;

#[derive(Debug, Parser)]
#[command(name = "patrol", version, about = "A scheduled batch job runner", long_about = None)]
pub struct Cli {
    /// patrol.yaml to use (default: ./patrol.yaml if present, else built-in defaults).
    #[arg(long, short = 'c', global = true, env = "PATROL_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler until SIGTERM/Ctrl-C.
    Serve,
    /// Check patrol.yaml and schedule files; report every error (exit 2 if any).
    Validate(validate::Args),
    /// List schedules with their state and next fires.
    Schedules(schedules::Args),
    /// Trigger a schedule's job now.
    Run(run::Args),
    /// List recorded runs, newest first.
    Runs(runs::Args),
    /// Stop firing a schedule (persisted) until resumed.
    Pause(pause::Args),
    /// Fire a paused schedule again, from now on.
    Resume(pause::Args),
    /// List job kinds and their parameters.
    Jobs(jobs::Args),
    /// Cron expression tools.
    #[command(subcommand)]
    Cron(CronCommand),
    /// List alerts and where they were delivered.
    Alerts(alerts::ListArgs),
    /// Alert tools.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Mute matching alerts for a while (they are still recorded).
    #[command(subcommand)]
    Silence(silence::Command),
    /// List plugins and their jobs; `plugins pin PATH` trusts a build.
    Plugins(plugins::Args),
    /// Internal: load one plugin library and make one call (the runner
    /// spawns this per run; never loads plugins itself).
    #[command(hide = true)]
    PluginHost(crate::plugins::host::Args),
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test alert through a route and report each notifier's answer.
    Test(alerts::TestArgs),
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times of an expression.
    Next(cron_next::Args),
}

/// Exit code 0.
pub const OK: u8 = 0;
/// Exit code 1: a job failed, or something was found.
pub const FOUND: u8 = 1;
/// Exit code 2: usage, configuration or infrastructure error.
pub const ERROR: u8 = 2;

/// The `patrol` command line: the runner's commands and those of the
/// built-in jobs (plugins add none), parsed from `args`.
pub fn main_from_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let runner = Cli::command();
    let jobs = match JobCommandSet::new(&JobRegistry::builtin(), &runner) {
        Ok(jobs) => jobs,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(ERROR);
        }
    };
    let matches = jobs.mount(runner).get_matches_from(args);
    // Only a job's command starts a runtime here: `plugin-host` must start
    // in a process without threads.
    if let Some((name, job_matches)) = matches.subcommand().filter(|(name, _)| jobs.owns(name)) {
        let config = matches.get_one::<PathBuf>("config").cloned();
        let name = name.to_string();
        let job_matches = job_matches.clone();
        return block_on(
            async move { Ok(jobs.run(&name, &job_matches, config.as_deref()).await?) },
        );
    }
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => main(cli),
        Err(err) => err.exit(),
    }
}

/// Runs `work` on a new runtime; its result as an exit code (an error is
/// printed, exit 2).
fn block_on(work: impl Future<Output = anyhow::Result<u8>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(ERROR);
        }
    };
    match runtime.block_on(work) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(ERROR)
        }
    }
}

pub fn main(cli: Cli) -> ExitCode {
    // Before any runtime or thread exists: the host sets limits on, and
    // loads plugin code into, this very process.
    let command = match cli.command {
        Command::PluginHost(args) => return crate::plugins::host::main(args),
        command => command,
    };
    block_on(async move {
        match command {
            Command::Serve => serve::serve(cli.config.as_deref()).await,
            Command::Validate(args) => validate::validate(cli.config.as_deref(), args),
            Command::Schedules(args) => schedules::schedules(cli.config.as_deref(), args).await,
            Command::Run(args) => run::run(cli.config.as_deref(), args).await,
            Command::Runs(args) => runs::runs(cli.config.as_deref(), args).await,
            Command::Pause(args) => pause::set_paused(cli.config.as_deref(), args, true).await,
            Command::Resume(args) => pause::set_paused(cli.config.as_deref(), args, false).await,
            Command::Jobs(args) => jobs::jobs(cli.config.as_deref(), args),
            Command::Cron(CronCommand::Next(args)) => cron_next::cron_next(args),
            Command::Alerts(args) => alerts::alerts(cli.config.as_deref(), args).await,
            Command::Alert(AlertCommand::Test(args)) => {
                alerts::test(cli.config.as_deref(), args).await
            }
            Command::Silence(command) => silence::silence(cli.config.as_deref(), command).await,
            Command::Plugins(args) => plugins::plugins(cli.config.as_deref(), args),
            Command::PluginHost(_) => unreachable!("handled before the runtime starts"),
        }
    })
}
