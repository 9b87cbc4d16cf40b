//! What most commands need: the config, the schedules, the ledger.
//!
//! Plugins are loaded only by the commands that run or list jobs (`serve`,
//! `run`, `validate`, `jobs`, `plugins`), through [`Context::registry`]:
//! `pause`, `runs`, `alerts` and `silence` must keep working in the middle
//! of an incident even when a plugin's pin no longer matches its file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::alerting::config::alerting_facts;
use crate::config::{
    check_routes, load_schedules, load_schedules_without_jobs, Diagnostic, Diagnostics,
    PatrolConfig, ScheduleSet,
};
use crate::ledger::Ledger;
use crate::plugins::registry_with_plugins;
use crate::registry::{JobBuild, JobRegistry};

pub struct Context {
    pub config: PatrolConfig,
}

impl Context {
    /// Reads the config named, or `./patrol.yaml`, or the built-in defaults.
    /// Loads no plugin.
    pub fn load(config: Option<&Path>) -> Result<Self> {
        let path = config_path(config)?;
        let config = PatrolConfig::load(path.as_deref()).map_err(diagnostics_error)?;
        Ok(Self { config })
    }

    /// The built-in jobs and those of every plugin patrol.yaml pins. Plugin
    /// manifests are read by child processes; a plugin that cannot be
    /// loaded is an error naming its entry.
    pub fn registry(&self) -> Result<JobRegistry> {
        let (registry, _) = registry_with_plugins(&self.config)
            .map_err(|errors| diagnostics_error(Diagnostics(errors)))?;
        Ok(registry)
    }

    /// The schedules, each checked against its job (kind and params) and
    /// built: for commands that run jobs.
    pub fn schedules(&self, registry: &JobRegistry) -> Result<ScheduleSet> {
        let set = load_schedules(
            std::slice::from_ref(&self.config.schedules),
            &self.job_build(registry),
        )
        .map_err(diagnostics_error)?;
        self.with_known_routes(set)
    }

    /// How this config's schedules build their jobs.
    pub fn job_build(&self, registry: &JobRegistry) -> JobBuild {
        JobBuild::new(registry.clone(), &self.config)
    }

    /// The schedules with their jobs unchecked: for commands that only
    /// read ids and timing, and so need no plugin loaded.
    pub fn schedules_without_jobs(&self) -> Result<ScheduleSet> {
        let set = load_schedules_without_jobs(std::slice::from_ref(&self.config.schedules))
            .map_err(diagnostics_error)?;
        self.with_known_routes(set)
    }

    fn with_known_routes(&self, set: ScheduleSet) -> Result<ScheduleSet> {
        let names: Vec<String> = self
            .config
            .alerting
            .routes
            .iter()
            .map(|route| route.name.clone())
            .collect();
        let unknown_routes = check_routes(&set, &names);
        if !unknown_routes.is_empty() {
            return Err(diagnostics_error(Diagnostics(unknown_routes)));
        }
        Ok(set)
    }

    /// Fails, naming file, line and field, when a notifier's secret cannot
    /// be read: commands that deliver alerts check this before starting.
    pub fn check_secrets(&self) -> Result<()> {
        let missing = secret_diagnostics(&self.config);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(diagnostics_error(Diagnostics(missing)))
        }
    }

    pub async fn ledger(&self) -> Result<Ledger> {
        Ledger::connect(&self.config.database).await
    }
}

pub fn config_path(config: Option<&Path>) -> Result<Option<PathBuf>> {
    match config {
        Some(path) if path.exists() => Ok(Some(path.to_path_buf())),
        Some(path) => bail!("config file {} does not exist", path.display()),
        None => {
            let default = PathBuf::from("patrol.yaml");
            Ok(default.exists().then_some(default))
        }
    }
}

fn diagnostics_error(diagnostics: Diagnostics) -> anyhow::Error {
    anyhow::anyhow!(
        "configuration is invalid ({} problem{}):\n{diagnostics}",
        diagnostics.0.len(),
        if diagnostics.0.len() == 1 { "" } else { "s" }
    )
}

/// One diagnostic per notifier secret that cannot be read, located in
/// patrol.yaml. The messages name the variable or file, never a value.
pub fn secret_diagnostics(config: &PatrolConfig) -> Vec<Diagnostic> {
    match &config.file {
        Some(file) => alerting_facts(file)
            .map(|facts| facts.missing_secrets)
            .unwrap_or_default(),
        // The embedded defaults have no notifier that needs a secret.
        None => Vec::new(),
    }
}
