//! Job kinds a schedule may name. Adding a built-in job is one line here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use patrol_job_api::{BuildContext, Job, JobCommands, JobTables, Typed};

use crate::config::PatrolConfig;

/// The job kinds this runner knows, by name.
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<&'static str, Arc<dyn Job>>,
}

impl JobRegistry {
    /// The jobs built into the `patrol` binary.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register(Arc::new(Typed(patrol_job_command::CommandJob)));
        registry.register(Arc::new(Typed(patrol_job_provmon::ProvmonJob)));
        registry.register(Arc::new(Typed(patrol_job_anomaly::AnomalyJob)));
        registry.register(Arc::new(Typed(patrol_job_diff_audit::DiffAuditJob)));
        registry.register(Arc::new(Typed(patrol_job_evidence_audit::EvidenceAuditJob)));
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

/// The registry and what builds resolve against: schedules loaded with it
/// come with their jobs built.
#[derive(Clone)]
pub struct JobBuild {
    pub registry: JobRegistry,
    /// Relative paths in params resolve against patrol.yaml's folder (the
    /// working folder on the embedded defaults), like the runner's own.
    pub base_dir: PathBuf,
    /// Rules naming a runbook without a file here are refused.
    pub runbooks_dir: Option<PathBuf>,
}

impl JobBuild {
    pub fn new(registry: JobRegistry, config: &PatrolConfig) -> Self {
        Self {
            registry,
            base_dir: config.alerting.base.clone(),
            runbooks_dir: Some(config.alerting.runbooks_dir.clone()),
        }
    }

    /// Builds against the working folder, no runbook check: tests.
    pub fn here(registry: JobRegistry) -> Self {
        Self {
            registry,
            base_dir: PathBuf::new(),
            runbooks_dir: None,
        }
    }

    pub fn context(&self, schedule_id: &str) -> BuildContext {
        let ctx = BuildContext::new(schedule_id, &self.base_dir);
        match &self.runbooks_dir {
            Some(dir) => ctx.with_runbooks(dir),
            None => ctx,
        }
    }
}
