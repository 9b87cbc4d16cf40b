//! Parse → validate → build: a job's params become a typed config, checked
//! without I/O, then built once per config load into a [`JobInstance`]
//! that serves every run until the schedules (or a file the build read)
//! change. Rules files, keys and clients are read and made in `build`, not
//! per run; a reload that cannot build keeps the last good instance.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::{parse_params, JobDescription, JobError, ParamError, RunContext, RunReport};

/// A built job: runs of its schedule call it until the next reload.
#[async_trait]
pub trait JobInstance: Send + Sync + 'static {
    /// Runs once. The job must return promptly after `ctx.cancel` fires,
    /// releasing whatever it started (processes, connections).
    ///
    /// An `Err` means the job could not do its work at all (a program that
    /// cannot be started); a job that ran and found the work failed
    /// returns `Ok` with [`crate::Outcome::Failed`].
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError>;
}

/// What a job's build may use besides its config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub schedule_id: String,
    base_dir: PathBuf,
    runbooks_dir: Option<PathBuf>,
    read: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl BuildContext {
    /// `base_dir`: the folder relative paths in params resolve against —
    /// patrol.yaml's folder, as for the runner's own paths.
    pub fn new(schedule_id: impl Into<String>, base_dir: impl Into<PathBuf>) -> Self {
        Self {
            schedule_id: schedule_id.into(),
            base_dir: base_dir.into(),
            runbooks_dir: None,
            read: Arc::default(),
        }
    }

    /// With the runbooks folder: [`BuildContext::check_runbook`] then
    /// refuses names without a file there.
    pub fn with_runbooks(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runbooks_dir = Some(dir.into());
        self
    }

    /// A path from the params, resolved against the config's folder.
    pub fn path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.base_dir.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The folder relative `file:` secrets resolve against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Records that the instance was built from `path` (a rules file, a
    /// key): when it changes, the runner builds again.
    pub fn depends_on(&self, path: &Path) {
        if let Ok(mut read) = self.read.lock() {
            read.insert(self.path(path));
        }
    }

    /// The files recorded with [`BuildContext::depends_on`].
    pub fn dependencies(&self) -> Vec<PathBuf> {
        self.read
            .lock()
            .map(|read| read.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A rule's `runbook` must name a file `<runbooks>/<name>.md`, or its
    /// alerts would carry a link that leads nowhere.
    pub fn check_runbook(&self, field: &str, name: &str) -> Result<(), ParamError> {
        let Some(dir) = &self.runbooks_dir else {
            return Ok(());
        };
        let file = dir.join(format!("{name}.md"));
        if file.is_file() {
            Ok(())
        } else {
            Err(ParamError::new(
                field,
                format!(
                    "runbook `{name}` does not exist ({} is missing)",
                    file.display()
                ),
            ))
        }
    }
}

/// A job kind with a typed config: what a built-in job implements.
/// Register it as `Arc::new(Typed(MyJob))`.
pub trait JobKind: Send + Sync + 'static {
    /// `#[serde(deny_unknown_fields)]`, typed durations, sizes, secrets and
    /// paths: what is not well-formed never reaches `validate`.
    type Config: DeserializeOwned + Send + 'static;

    /// The name schedule files use for this job kind, e.g. `command`.
    fn kind(&self) -> &'static str;

    /// What the job does and which parameters it takes (`patrol jobs`).
    fn describe(&self) -> JobDescription;

    /// Checks that need no I/O; errors name the field (dotted path).
    fn validate(&self, config: &Self::Config) -> Result<(), Vec<ParamError>> {
        let _ = config;
        Ok(())
    }

    /// Reads what the job needs (rules, keys, secrets) and makes its
    /// clients, once per config load. Relative paths resolve through
    /// [`BuildContext::path`]; files read are recorded with
    /// [`BuildContext::depends_on`].
    fn build(
        &self,
        config: Self::Config,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>>;

    /// The subcommands this job adds to `patrol`.
    fn commands(&self) -> Option<Arc<dyn crate::JobCommands>> {
        None
    }

    /// The job's own ledger tables, migrated by the ledger on connect.
    fn tables(&self) -> Option<crate::JobTables> {
        None
    }

    /// Top-level params a manual run may never override, whatever the
    /// schedule's `manual_params` say: what the job's kept verdicts and
    /// shared state rest on (keys, trust roots, rules, sources).
    fn pinned_params(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A [`JobKind`] as the runner's [`crate::Job`].
#[derive(Debug)]
pub struct Typed<K>(pub K);

impl<K: JobKind> Typed<K> {
    fn config(&self, params: &serde_json::Value) -> Result<K::Config, Vec<ParamError>> {
        let config: K::Config = parse_params(params).map_err(|err| vec![err])?;
        self.0.validate(&config)?;
        Ok(config)
    }
}

impl<K: JobKind> crate::Job for Typed<K> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn describe(&self) -> JobDescription {
        self.0.describe()
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        self.config(params).map(|_| ())
    }

    fn build(
        &self,
        params: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        let config = self.config(params)?;
        self.0.build(config, ctx)
    }

    fn commands(&self) -> Option<Arc<dyn crate::JobCommands>> {
        self.0.commands()
    }

    fn tables(&self) -> Option<crate::JobTables> {
        self.0.tables()
    }

    fn pinned_params(&self) -> &'static [&'static str] {
        self.0.pinned_params()
    }
}

/// Builds and runs a job kind once, relative paths against the working
/// folder: for tests, benchmarks and one-off tools, not the runner (which
/// builds once per config load).
#[async_trait]
pub trait RunOnce {
    async fn run(&self, ctx: RunContext, params: serde_json::Value) -> Result<RunReport, JobError>;
}

#[async_trait]
impl<K: JobKind> RunOnce for K {
    async fn run(&self, ctx: RunContext, params: serde_json::Value) -> Result<RunReport, JobError> {
        let config: K::Config =
            parse_params(&params).map_err(|err| JobError::InvalidParams(vec![err]))?;
        self.validate(&config).map_err(JobError::InvalidParams)?;
        let build = BuildContext::new(ctx.schedule_id.clone(), "");
        let instance = self
            .build(config, &build)
            .map_err(JobError::InvalidParams)?;
        instance.run(ctx).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let ctx = BuildContext::new("s", "/etc/patrol");
        assert_eq!(
            ctx.path(Path::new("rules.yaml")),
            Path::new("/etc/patrol/rules.yaml")
        );
        assert_eq!(ctx.path(Path::new("/abs/r.yaml")), Path::new("/abs/r.yaml"));
        // The embedded defaults: the working folder.
        let here = BuildContext::new("s", "");
        assert_eq!(here.path(Path::new("rules.yaml")), Path::new("rules.yaml"));
        here.depends_on(Path::new("b.yaml"));
        here.depends_on(Path::new("a.yaml"));
        here.depends_on(Path::new("b.yaml"));
        assert_eq!(
            here.dependencies(),
            [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]
        );
    }

    #[test]
    fn a_runbook_without_a_file_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("disk-full.md"), "# Disk full\n").unwrap();
        let ctx = BuildContext::new("s", "").with_runbooks(dir.path());
        assert!(ctx.check_runbook("rules[0].runbook", "disk-full").is_ok());
        let err = ctx
            .check_runbook("rules[1].runbook", "disk-ful")
            .unwrap_err();
        assert_eq!(err.path, "rules[1].runbook");
        assert!(
            err.message.contains("`disk-ful` does not exist"),
            "{}",
            err.message
        );
        // Without a runbooks folder (a config without alerting) nothing is refused.
        assert!(BuildContext::new("s", "").check_runbook("r", "any").is_ok());
    }
}
