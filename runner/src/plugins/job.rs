//! `PluginJob`: a plugin's job kind as the registry sees it. Each run is a
//! fresh `patrol plugin-host` child; the runner never maps plugin code.

use async_trait::async_trait;
use patrol_job_api::{
    BuildContext, Job, JobDescription, JobError, JobInstance, Outcome, ParamDoc, ParamError,
    RunContext, RunReport,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use patrol_plugin_protocol::{
    HostReply, JobManifest, ParamManifest, RunRequest, RunResponse, WireReport,
};

use super::load::LoadedPlugin;
use super::spawn::{HostCall, HostCommand, HostEnd};
use super::DeclaredPlugin;

/// One job kind of one loaded plugin.
#[derive(Clone)]
pub struct PluginJob {
    plugin: String,
    declared: DeclaredPlugin,
    manifest: JobManifest,
    /// The job state keys it keeps (protocol v2 plugins only: a v1
    /// request cannot carry state).
    state_keys: Vec<String>,
    // `Job` hands out `&'static str`s; a plugin's names are read at start,
    // once per process, so they are leaked once.
    kind: &'static str,
    description: JobDescription,
    host: HostCommand,
}

impl PluginJob {
    pub fn new(plugin: &LoadedPlugin, job: &JobManifest, host: HostCommand) -> Self {
        let leak = |text: &str| -> &'static str { Box::leak(text.to_string().into_boxed_str()) };
        let kind = leak(&job.kind);
        let description = JobDescription {
            kind,
            summary: leak(&format!(
                "{} (plugin {} {})",
                job.summary, plugin.manifest.name, plugin.manifest.version
            )),
            params: job
                .params
                .iter()
                .map(|param| ParamDoc {
                    name: leak(&param.name),
                    type_name: leak(&param.type_name),
                    required: param.required,
                    default: param.default.as_deref().map(leak),
                    description: leak(&param.description),
                })
                .collect(),
        };
        let state_keys = if plugin.manifest.protocol_version >= 2 {
            job.state_keys.clone()
        } else {
            Vec::new()
        };
        Self {
            plugin: plugin.manifest.name.clone(),
            declared: plugin.declared.clone(),
            manifest: job.clone(),
            state_keys,
            kind,
            description,
            host,
        }
    }

    /// The request a run sends, with the values of the job's state keys.
    pub fn request(
        &self,
        ctx: &RunContext,
        params: serde_json::Value,
        state: BTreeMap<String, String>,
    ) -> RunRequest {
        RunRequest {
            job: self.manifest.kind.clone(),
            params,
            run_id: ctx.run_id,
            schedule_id: ctx.schedule_id.clone(),
            scheduled_for: ctx.scheduled_for,
            attempt: ctx.attempt,
            deadline: ctx.deadline,
            dry_run: ctx.dry_run,
            run_key: ctx.run_key.clone(),
            state,
        }
    }

    /// The stored values of the job's state keys, as text.
    async fn state_values(&self, ctx: &RunContext) -> Result<BTreeMap<String, String>, JobError> {
        if self.state_keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let stored = ctx
            .state
            .get_many(&self.state_keys)
            .await
            .map_err(|err| JobError::Failed(err.to_string()))?;
        stored
            .into_iter()
            .map(|(key, bytes)| match String::from_utf8(bytes) {
                Ok(text) => Ok((key, text)),
                Err(_) => Err(JobError::Failed(format!(
                    "plugin {}: state key `{key}` holds bytes that are not text",
                    self.plugin
                ))),
            })
            .collect()
    }

    /// The report, if it writes only the job's declared state keys, with
    /// at most [`MAX_FINDINGS`] findings.
    fn accepted(&self, report: WireReport) -> Result<RunReport, JobError> {
        let report = capped(RunReport::from(report));
        if let Some(write) = report
            .state
            .iter()
            .find(|write| !self.state_keys.contains(&write.key))
        {
            return Err(JobError::Failed(format!(
                "plugin {} wrote state key `{}`, which its job does not declare (state_keys: {})",
                self.plugin,
                write.key,
                self.state_keys.join(", ")
            )));
        }
        Ok(report)
    }
}

#[async_trait]
impl Job for PluginJob {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn describe(&self) -> JobDescription {
        self.description.clone()
    }

    /// Checked against the manifest here, in the runner: unknown names,
    /// missing required ones, and the JSON type of the typed ones. The
    /// plugin checks the values when it runs.
    fn check_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        check_against_manifest(&self.manifest.params, params)
    }

    /// A plugin reads its own files when it runs: the build keeps the
    /// params (checked against the manifest) for every run.
    fn build(
        &self,
        params: &serde_json::Value,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        self.check_params(params)?;
        Ok(Arc::new(PluginInstance {
            job: self.clone(),
            params: params.clone(),
        }))
    }
}

/// A plugin job's schedule: each run is a call to a fresh host child.
struct PluginInstance {
    job: PluginJob,
    params: serde_json::Value,
}

#[async_trait]
impl JobInstance for PluginInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        self.job.call(ctx, self.params.clone()).await
    }
}

impl PluginJob {
    async fn call(
        &self,
        ctx: RunContext,
        params: serde_json::Value,
    ) -> Result<RunReport, JobError> {
        let state = self.state_values(&ctx).await?;
        let request = self.request(&ctx, params, state);
        let call = HostCall {
            library: &self.declared.path,
            sha256: Some(&self.declared.sha256),
            memory_limit: self.declared.memory_limit,
            read_paths: &self.declared.read_paths,
            env: &self.declared.env,
            request: Some(&request),
        };
        let end = self
            .host
            .call(call, Some(&ctx.run_key), &ctx.fence, &ctx.cancel)
            .await;
        let result = self.result_of(end);
        if super::landlock_available() {
            return result;
        }
        // Said in every run: the sandbox is weaker here than documented.
        match result {
            Ok(mut report) => {
                report.summary.push_str(&format!(" ({NO_LANDLOCK})"));
                Ok(report)
            }
            Err(JobError::Failed(message)) => {
                Err(JobError::Failed(format!("{message} ({NO_LANDLOCK})")))
            }
            Err(other) => Err(other),
        }
    }

    fn result_of(&self, end: HostEnd) -> Result<RunReport, JobError> {
        let name = &self.plugin;
        match end {
            HostEnd::Reply(HostReply::Response(RunResponse::Report(report))) => {
                self.accepted(report)
            }
            HostEnd::Reply(HostReply::Response(RunResponse::InvalidParams(errors))) => Err(
                JobError::InvalidParams(errors.into_iter().map(Into::into).collect()),
            ),
            HostEnd::Reply(HostReply::Response(RunResponse::Error(message))) => {
                Err(JobError::Failed(format!("plugin {name} failed: {message}")))
            }
            HostEnd::Reply(HostReply::Response(RunResponse::Panicked(message))) => Err(
                JobError::Failed(format!("plugin {name} panicked: {message}")),
            ),
            HostEnd::Reply(HostReply::Refused(refusal)) => Err(JobError::Failed(format!(
                "plugin {name} refused to load: {refusal}"
            ))),
            HostEnd::Reply(HostReply::Manifest(_)) => Err(JobError::Failed(format!(
                "plugin {name}: the host answered a run with a manifest"
            ))),
            HostEnd::Cancelled => Ok(RunReport::new(
                Outcome::Cancelled,
                format!("plugin {name} killed: the run was cancelled"),
            )),
            HostEnd::Died(cause) => Err(JobError::Failed(format!("plugin {name} {cause}"))),
        }
    }
}

/// More findings than this from one run are counted, not kept (as for the
/// command job).
pub const MAX_FINDINGS: usize = 10_000;

/// What a run says when the kernel has no Landlock.
const NO_LANDLOCK: &str =
    "Landlock not applied: this kernel does not support it, so the plugin could read every file its user can";

/// `report` with at most [`MAX_FINDINGS`] findings; a longer list is cut,
/// marked partial (keys cut off are unknown, not resolved) and counted in
/// the summary and `details.findings_over_limit`.
fn capped(mut report: RunReport) -> RunReport {
    let over = report.findings.len().saturating_sub(MAX_FINDINGS);
    if over == 0 {
        return report;
    }
    report.findings.truncate(MAX_FINDINGS);
    report.findings_partial = true;
    report.summary.push_str(&format!(
        " ({over} findings over the limit of {MAX_FINDINGS} were dropped)"
    ));
    match &mut report.details {
        serde_json::Value::Object(details) => {
            details.insert("findings_over_limit".into(), over.into());
        }
        serde_json::Value::Null => {
            report.details = serde_json::json!({ "findings_over_limit": over });
        }
        other => {
            report.details =
                serde_json::json!({ "plugin": other.take(), "findings_over_limit": over });
        }
    }
    report
}

fn check_against_manifest(
    declared: &[ParamManifest],
    params: &serde_json::Value,
) -> Result<(), Vec<ParamError>> {
    let empty = serde_json::Map::new();
    let object = match params {
        serde_json::Value::Object(object) => object,
        serde_json::Value::Null => &empty,
        _ => {
            return Err(vec![ParamError::new(
                "",
                "expected a mapping of parameters",
            )])
        }
    };
    let mut errors = Vec::new();
    for name in object.keys() {
        if !declared.iter().any(|param| &param.name == name) {
            let known: Vec<&str> = declared.iter().map(|param| param.name.as_str()).collect();
            errors.push(ParamError::new(
                name.clone(),
                format!("unknown parameter (expected one of: {})", known.join(", ")),
            ));
        }
    }
    for param in declared {
        match object.get(&param.name) {
            None if param.required => errors.push(ParamError::new(
                "",
                format!("missing required parameter `{}`", param.name),
            )),
            Some(value) if !json_type_fits(&param.type_name, value) => errors.push(
                ParamError::new(param.name.clone(), format!("expected {}", param.type_name)),
            ),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Types the host knows; any other name (`duration`, `path`) is the
/// plugin's business.
fn json_type_fits(type_name: &str, value: &serde_json::Value) -> bool {
    match type_name {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_over_the_limit_are_dropped_counted_and_make_the_run_partial() {
        let mut report = RunReport::new(Outcome::Succeeded, "many");
        report.findings = (0..MAX_FINDINGS + 5)
            .map(|n| {
                patrol_job_api::Finding::new(format!("k/{n}"), patrol_job_api::Severity::Info, "f")
            })
            .collect();
        let report = capped(report);
        assert_eq!(report.findings.len(), MAX_FINDINGS);
        assert!(report.findings_partial);
        assert_eq!(report.details["findings_over_limit"], 5);
        assert!(
            report
                .summary
                .ends_with("(5 findings over the limit of 10000 were dropped)"),
            "{}",
            report.summary
        );
        let few = capped(RunReport::new(Outcome::Succeeded, "few"));
        assert!(!few.findings_partial && few.summary == "few");
    }

    #[test]
    fn params_are_checked_against_the_manifest() {
        let declared = vec![ParamManifest {
            name: "tenants".into(),
            type_name: "string".into(),
            required: true,
            default: None,
            description: String::new(),
        }];
        assert!(
            check_against_manifest(&declared, &serde_json::json!({"tenants": "t.yaml"})).is_ok()
        );
        let errors =
            check_against_manifest(&declared, &serde_json::json!({"tenant": 1})).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "params.tenant: unknown parameter (expected one of: tenants)",
                "params: missing required parameter `tenants`"
            ]
        );
        let errors =
            check_against_manifest(&declared, &serde_json::json!({"tenants": 1})).unwrap_err();
        assert_eq!(errors[0].to_string(), "params.tenants: expected string");
    }
}
