//! The command line: one module per subcommand.
//!
//! Exit codes: 0 ok, 1 a job failed or something was found, 2 usage,
//! configuration or infrastructure error.

mod alerts;
mod context;
mod cron_next;
mod evidence;
mod jobs;
mod output;
mod pause;
mod plugins;
mod run;
mod runs;
mod schedules;
mod serve;
mod silence;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use context::Context;

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
    /// Evidence pack tools.
    #[command(subcommand)]
    Evidence(evidence::Command),
    /// List plugins and their jobs; `plugins pin PATH` trusts a build.
    Plugins(plugins::Args),
    /// Verify a Sigstore bundle, a cosign blob signature, or one release's
    /// chain, now (exit 0 verified, 1 failed, 2 unusable input).
    #[command(subcommand)]
    Verify(verify::Command),
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

pub fn main(cli: Cli) -> ExitCode {
    // Before any runtime or thread exists: the host sets limits on, and
    // loads plugin code into, this very process.
    let command = match cli.command {
        Command::PluginHost(args) => return crate::plugins::host::main(args),
        command => command,
    };
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
    let result = runtime.block_on(async move {
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
            Command::Evidence(command) => evidence::evidence(command),
            Command::Plugins(args) => plugins::plugins(cli.config.as_deref(), args),
            Command::Verify(command) => verify::verify(cli.config.as_deref(), command).await,
            Command::PluginHost(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(ERROR)
        }
    }
}
