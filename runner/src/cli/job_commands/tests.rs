//! Job commands next to the runner's: names are refused when they clash.

use std::sync::Arc;

use async_trait::async_trait;
use clap::CommandFactory;
use patrol_job_api::{
    BuildContext, CommandContext, CommandError, Job, JobCommands, JobDescription, JobInstance,
    ParamError,
};

use super::JobCommandSet;
use crate::cli::Cli;
use crate::registry::JobRegistry;

/// A job adding commands with the given names.
struct Adds(&'static str, &'static [&'static str]);

impl Job for Adds {
    fn kind(&self) -> &'static str {
        self.0
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: self.0,
            summary: "adds commands",
            params: Vec::new(),
        }
    }

    fn check_params(&self, _params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        Ok(())
    }

    fn build(
        &self,
        _params: &serde_json::Value,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        Err(vec![ParamError::new("", "not built in these tests")])
    }

    fn commands(&self) -> Option<Arc<dyn JobCommands>> {
        Some(Arc::new(AddsCommands(self.1)))
    }
}

struct AddsCommands(&'static [&'static str]);

#[async_trait]
impl JobCommands for AddsCommands {
    fn commands(&self) -> Vec<clap::Command> {
        self.0
            .iter()
            .map(|name| {
                clap::Command::new(*name)
                    .arg(
                        clap::arg!(--code <CODE> "exit with this")
                            .value_parser(clap::value_parser!(u8)),
                    )
                    .arg(clap::arg!(--node "ask for the node name"))
            })
            .collect()
    }

    /// Exits with `--code`; with `--node`, asks the context for the node
    /// name (which loads the config).
    async fn run_command(
        &self,
        _name: &str,
        matches: &clap::ArgMatches,
        ctx: CommandContext,
    ) -> Result<u8, CommandError> {
        if matches.get_flag("node") {
            ctx.node()?;
        }
        Ok(matches.get_one::<u8>("code").copied().unwrap_or(0))
    }
}

fn registry(jobs: Vec<Adds>) -> JobRegistry {
    let mut registry = JobRegistry::default();
    for job in jobs {
        registry.register(Arc::new(job));
    }
    registry
}

fn refusal(jobs: Vec<Adds>) -> String {
    match JobCommandSet::new(&registry(jobs), &Cli::command()) {
        Ok(_) => panic!("the clash was accepted"),
        Err(message) => message,
    }
}

#[test]
fn a_job_command_named_like_a_runner_command_is_refused() {
    assert_eq!(
        refusal(vec![Adds("sneaky", &["audit", "runs"])]),
        "job sneaky adds a command `runs`, which is one of patrol's own"
    );
    assert!(refusal(vec![Adds("sneaky", &["help"])]).contains("`help`"));
}

#[test]
fn two_jobs_adding_the_same_command_are_refused() {
    assert_eq!(
        refusal(vec![Adds("first", &["audit"]), Adds("second", &["audit"])]),
        "jobs first and second both add a command `audit`"
    );
}

#[test]
fn the_built_in_jobs_commands_are_listed_in_help() {
    let jobs = JobCommandSet::new(&JobRegistry::builtin(), &Cli::command()).unwrap();
    let mut cli = jobs.mount(Cli::command());
    cli.clone().debug_assert();
    let help = cli.render_help().to_string();
    for name in ["verify", "evidence", "runs", "serve"] {
        assert!(
            help.contains(&format!("  {name} ")),
            "{name} missing from:\n{help}"
        );
    }
    assert!(jobs.owns("verify") && jobs.owns("evidence"));
    assert!(!jobs.owns("runs") && !jobs.owns("plugin-host"));
    // The global --config reaches a job's command, wherever it is given.
    let matches = cli
        .try_get_matches_from(["patrol", "verify", "release", "abc", "-c", "p.yaml"])
        .unwrap();
    assert_eq!(
        matches.get_one::<std::path::PathBuf>("config").unwrap(),
        std::path::Path::new("p.yaml")
    );
}

#[tokio::test]
async fn a_job_command_runs_with_its_matches_and_loads_the_config_only_when_asked() {
    let jobs =
        JobCommandSet::new(&registry(vec![Adds("audits", &["audit"])]), &Cli::command()).unwrap();
    let cli = jobs.mount(Cli::command());
    let parse = |args: &[&str]| {
        let matches = cli.clone().try_get_matches_from(args).unwrap();
        let (name, sub) = matches.subcommand().unwrap();
        (name.to_string(), sub.clone())
    };
    let missing = std::path::Path::new("/nonexistent/patrol.yaml");
    // Asking nothing of the config: runs even though the file is missing.
    let (name, matches) = parse(&["patrol", "audit", "--code", "1"]);
    assert_eq!(jobs.run(&name, &matches, Some(missing)).await.unwrap(), 1);
    // Asking for the node: the config is loaded, and its absence reported.
    let (name, matches) = parse(&["patrol", "audit", "--node"]);
    let err = jobs.run(&name, &matches, Some(missing)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/patrol.yaml does not exist"),
        "{err}"
    );
    let err = jobs.run("runs", &matches, None).await.unwrap_err();
    assert_eq!(err.to_string(), "no job adds a command `runs`");
}
