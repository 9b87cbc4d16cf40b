//! Job kinds a schedule may name. Adding a built-in job is one line here.

use std::collections::BTreeMap;
use std::sync::Arc;

use patrol_job_api::{Job, JobCommands, JobTables};

/// The job kinds this runner knows, by name.
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<&'static str, Arc<dyn Job>>,
}

impl JobRegistry {
    /// The jobs built into the `patrol` binary.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register(Arc::new(patrol_job_command::CommandJob));
        registry.register(Arc::new(patrol_job_provmon::ProvmonJob));
        registry.register(Arc::new(patrol_job_anomaly::AnomalyJob));
        registry
    }

    pub fn register(&mut self, job: Arc<dyn Job>) {
        self.jobs.insert(job.kind(), job);
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Job>> {
        self.jobs.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.jobs.keys().copied()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Job>> {
        self.jobs.values()
    }

    /// The jobs that keep tables of their own, by kind.
    pub fn tables(&self) -> Vec<(&'static str, JobTables)> {
        self.jobs
            .iter()
            .filter_map(|(kind, job)| Some((*kind, job.tables()?)))
            .collect()
    }

    /// The jobs that add commands to `patrol`, by kind.
    pub fn commands(&self) -> Vec<(&'static str, Arc<dyn JobCommands>)> {
        self.jobs
            .iter()
            .filter_map(|(kind, job)| Some((*kind, job.commands()?)))
            .collect()
    }
}
