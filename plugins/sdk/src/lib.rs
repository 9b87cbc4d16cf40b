//! Writing a patrol plugin: implement [`PluginJob`] for each job kind and
//! name them in [`export_plugin!`]; build the crate as a `cdylib`.
//!
//! ```ignore
//! use patrol_plugin_sdk::{export_plugin, JobError, Outcome, PluginContext, PluginJob, RunReport};
//!
//! struct Hello;
//!
//! impl PluginJob for Hello {
//!     fn kind(&self) -> &str { "hello" }
//!     fn summary(&self) -> &str { "says hello" }
//!     fn run(&self, _ctx: &PluginContext, _params: serde_json::Value) -> Result<RunReport, JobError> {
//!         Ok(RunReport::new(Outcome::Succeeded, "hello"))
//!     }
//! }
//!
//! export_plugin!(name: "hello", jobs: [Hello]);
//! ```
//!
//! The plugin runs in a `patrol plugin-host` child process, one per run:
//! a panic in [`PluginJob::run`] is caught here and becomes a failed run;
//! anything worse (a segfault, an abort, a hang, memory exhaustion) ends
//! the child, and the runner records the run failed or timed out. A job is
//! cancelled by killing its process, so it needs no cancellation checks;
//! it must not leave work outside the process half done in a way a rerun
//! cannot repair.

#[doc(hidden)]
pub mod ffi;

pub use patrol_job_api::StateWrite;
pub use patrol_job_api::{
    parse_params, Finding, JobError, Link, Outcome, ParamError, RunReport, Severity,
};
pub use patrol_plugin_protocol::{
    JobManifest, Manifest, ParamManifest, RunRequest, RunResponse, WireReport, PROTOCOL_VERSION,
};

/// What a plugin job may know about its run (the runner's `RunContext`
/// without the parts that live in the runner: the cancel token). Its
/// `state` holds the values of the job's [`PluginJob::state_keys`] that
/// exist; the job changes them through its report's `state`.
pub type PluginContext = RunRequest;

/// One job kind a plugin provides.
pub trait PluginJob: Send + Sync + 'static {
    /// The name schedules use, `job: <kind>`; unique across the runner.
    fn kind(&self) -> &str;

    /// One line for `patrol jobs`.
    fn summary(&self) -> &str;

    /// The params a schedule may give. The host refuses unknown names and
    /// missing required ones at `patrol validate`; [`PluginJob::run`]
    /// still parses and checks the values (`parse_params`).
    fn params(&self) -> Vec<ParamManifest> {
        Vec::new()
    }

    /// The job state keys this job keeps between runs: their values come
    /// in `ctx.state`, and its report may write (or delete) exactly these.
    /// Values are text (JSON, typically).
    fn state_keys(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs once. `Err(JobError::InvalidParams)` for params it refuses,
    /// `Err(JobError::Failed)` when it cannot do its work at all; a job that
    /// did its work and found it failed returns `Ok` with `Outcome::Failed`.
    fn run(&self, ctx: &PluginContext, params: serde_json::Value) -> Result<RunReport, JobError>;
}

/// A plugin: its name, version and jobs. Built by [`export_plugin!`].
pub struct Plugin {
    pub name: &'static str,
    pub version: &'static str,
    pub jobs: Vec<Box<dyn PluginJob>>,
}

impl Plugin {
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.name.to_string(),
            version: self.version.to_string(),
            protocol_version: PROTOCOL_VERSION,
            jobs: self
                .jobs
                .iter()
                .map(|job| JobManifest {
                    kind: job.kind().to_string(),
                    summary: job.summary().to_string(),
                    params: job.params(),
                    state_keys: job.state_keys(),
                })
                .collect(),
        }
    }

    /// Runs the request's job, turning errors into the wire's answer. A
    /// panic is caught by the caller ([`ffi::run`]).
    pub fn answer(&self, request: &RunRequest) -> RunResponse {
        let Some(job) = self.jobs.iter().find(|job| job.kind() == request.job) else {
            return RunResponse::Error(format!(
                "plugin {} has no job `{}`",
                self.name, request.job
            ));
        };
        match job.run(request, request.params.clone()) {
            Ok(report) => {
                let declared = job.state_keys();
                if let Some(write) = report
                    .state
                    .iter()
                    .find(|write| !declared.contains(&write.key))
                {
                    return RunResponse::Error(format!(
                        "job {} wrote state key `{}`, which it does not declare (state_keys: {})",
                        request.job,
                        write.key,
                        declared.join(", ")
                    ));
                }
                match WireReport::from_report(report) {
                    Ok(report) => RunResponse::Report(report),
                    Err(err) => RunResponse::Error(err.to_string()),
                }
            }
            Err(JobError::InvalidParams(errors)) => {
                RunResponse::InvalidParams(errors.into_iter().map(Into::into).collect())
            }
            Err(JobError::Failed(message)) => RunResponse::Error(message),
        }
    }
}

/// A parameter's documentation, for [`PluginJob::params`].
pub fn param(name: &str, type_name: &str, required: bool, description: &str) -> ParamManifest {
    ParamManifest {
        name: name.to_string(),
        type_name: type_name.to_string(),
        required,
        default: None,
        description: description.to_string(),
    }
}

/// Exports the C ABI entry points of a plugin whose jobs are the given
/// values (each implementing [`PluginJob`]):
///
/// ```ignore
/// export_plugin!(name: "residency", jobs: [ResidencyJob]);
/// export_plugin!(name: "residency", version: "1.2.0", jobs: [ResidencyJob, Other::default()]);
/// ```
///
/// `version` defaults to the crate's `CARGO_PKG_VERSION`. Use it once per
/// crate, in a crate built as `crate-type = ["cdylib"]`.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, jobs: [$($job:expr),+ $(,)?] $(,)?) => {
        $crate::export_plugin!(name: $name, version: env!("CARGO_PKG_VERSION"), jobs: [$($job),+]);
    };
    (name: $name:expr, version: $version:expr, jobs: [$($job:expr),+ $(,)?] $(,)?) => {
        fn __patrol_plugin() -> &'static $crate::Plugin {
            static PLUGIN: ::std::sync::OnceLock<$crate::Plugin> = ::std::sync::OnceLock::new();
            PLUGIN.get_or_init(|| $crate::Plugin {
                name: $name,
                version: $version,
                jobs: vec![$(::std::boxed::Box::new($job)),+],
            })
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn patrol_plugin_protocol_version() -> u32 {
            $crate::PROTOCOL_VERSION
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn patrol_plugin_manifest() -> *mut ::std::os::raw::c_char {
            $crate::ffi::manifest(__patrol_plugin)
        }

        /// # Safety
        /// `request` is a NUL-terminated string (or null), valid for the call.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn patrol_plugin_run(
            request: *const ::std::os::raw::c_char,
        ) -> *mut ::std::os::raw::c_char {
            // SAFETY: the host passes a NUL-terminated string it owns for
            // the duration of the call (the protocol's contract).
            unsafe { $crate::ffi::run(__patrol_plugin, request) }
        }

        /// # Safety
        /// `text` was returned by this library's manifest or run function
        /// and is freed at most once.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn patrol_plugin_free(text: *mut ::std::os::raw::c_char) {
            // SAFETY: forwarded contract: `text` came from this library.
            unsafe { $crate::ffi::free(text) }
        }
    };
}
