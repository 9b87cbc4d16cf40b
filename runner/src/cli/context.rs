//! What most commands need: the config, the schedules, the ledger.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::config::{load_schedules, Diagnostics, PatrolConfig, ScheduleSet};
use crate::ledger::Ledger;
use crate::registry::JobRegistry;

pub struct Context {
    pub config: PatrolConfig,
    pub registry: JobRegistry,
}

impl Context {
    /// Reads the config named, or `./patrol.yaml`, or the built-in defaults.
    pub fn load(config: Option<&Path>) -> Result<Self> {
        let path = config_path(config)?;
        let config = PatrolConfig::load(path.as_deref()).map_err(diagnostics_error)?;
        Ok(Self {
            config,
            registry: JobRegistry::builtin(),
        })
    }

    pub fn schedules(&self) -> Result<ScheduleSet> {
        load_schedules(std::slice::from_ref(&self.config.schedules), &self.registry)
            .map_err(diagnostics_error)
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
