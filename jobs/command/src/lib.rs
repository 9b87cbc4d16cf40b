//! The `command` job: runs one program in its own process group, captures
//! bounded stdout/stderr, and maps the exit status to the run's outcome.
//!
//! Cancellation (timeout, shutdown, replacement) sends SIGTERM to the whole
//! process group, then SIGKILL after `kill_grace`, so nothing the program
//! started outlives the run.
//!
//! The program talks back on stdout with JSON lines: findings
//! (`findings.rs`) and checkpoints (`checkpoint.rs`), committed as they
//! are read, so a long script can resume after a crash.

mod capture;
mod checkpoint;
mod findings;
mod params;

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use patrol_job_api::effects::kind;
use patrol_job_api::secret::{resolve_map, Secret};
use patrol_job_api::{
    BuildContext, Checkpoints, Intent, JobDescription, JobError, JobInstance, JobKind, Outcome,
    ParamError, PerformError, Performed, RunContext, RunReport,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use capture::BoundedCapture;
use checkpoint::Committed;
pub use checkpoint::{CHECKPOINT, ENV as CHECKPOINT_ENV};
use findings::{Reading, StdoutLines};
pub use params::CommandParams;

/// The built-in `command` job kind.
#[derive(Debug, Default)]
pub struct CommandJob;

impl JobKind for CommandJob {
    type Config = CommandParams;

    fn kind(&self) -> &'static str {
        "command"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "command",
            summary:
                "Runs a program; exit 0 succeeds, anything else fails. Output is captured, bounded.",
            params: params::docs(),
        }
    }

    fn validate(&self, params: &CommandParams) -> Result<(), Vec<ParamError>> {
        params.check()
    }

    fn build(
        &self,
        mut params: CommandParams,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        // A relative workdir is relative to the config, like every path.
        params.workdir = params.workdir.map(|dir| ctx.path(&dir));
        let secrets = resolve_map(&params.secret_env, "secret_env", ctx.base_dir())?;
        Ok(Arc::new(CommandInstance { params, secrets }))
    }
}

/// A `command` schedule, built.
struct CommandInstance {
    params: CommandParams,
    /// `secret_env`, resolved (and registered with the redactor).
    secrets: Vec<(String, Secret)>,
}

#[async_trait]
impl JobInstance for CommandInstance {
    async fn run(&self, ctx: RunContext) -> Result<RunReport, JobError> {
        let params = &self.params;
        let argv = params.argv();
        let command = shell_words(&argv);
        // Running the program is the job's one effect: a retry of a slot
        // whose program already exited 0 does not run it again.
        let intent = Intent::new(
            kind::COMMAND,
            format!("command:{command}"),
            format!("run {command}"),
        );
        let ran = ctx
            .effects
            .perform(intent, async {
                let report = run_program(&ctx, params, &self.secrets, &argv)
                    .await
                    .map_err(Unsuccessful::Error)?;
                match report.outcome {
                    Outcome::Succeeded => Ok(report),
                    _ => Err(Unsuccessful::Ended(Box::new(report))),
                }
            })
            .await;
        match ran {
            Ok(Performed::Done(report)) => Ok(report),
            Err(PerformError::Failed(Unsuccessful::Ended(report))) => Ok(*report),
            Err(PerformError::Failed(Unsuccessful::Error(err))) => Err(err),
            Err(PerformError::NotRecorded(err)) => {
                Err(JobError::Failed(format!("`{command}` was not run: {err}")))
            }
            Ok(Performed::NotPerformed) => {
                let mut report =
                    RunReport::new(Outcome::Succeeded, format!("dry run: would run {command}"));
                report.details = serde_json::json!({ "argv": argv, "dry_run": true });
                Ok(report)
            }
            Ok(Performed::DoneBefore) => Ok(RunReport::new(
                Outcome::Succeeded,
                format!("not run again: an earlier attempt of this slot ran {command} to exit 0"),
            )),
        }
    }
}

/// What the program gets of patrol's own environment: the base variables
/// (unless `clear_env`) and those `pass_env` names, when set. `PATH`
/// falls back to the usual system folders so a program is still found.
fn inherited_env(params: &CommandParams) -> Vec<(String, String)> {
    let base = params::BASE_ENV.iter().filter(|_| !params.clear_env);
    let mut env: Vec<(String, String)> = base
        .map(|name| name.to_string())
        .chain(params.pass_env.iter().cloned())
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
        .collect();
    if !params.clear_env && !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// `PATH` for a program when patrol itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A run of the program that does not count as done.
enum Unsuccessful {
    /// It could not be started or waited for.
    Error(JobError),
    /// It ended other than with exit 0 (failed, killed, cancelled).
    Ended(Box<RunReport>),
}

impl std::fmt::Display for Unsuccessful {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(err) => err.fmt(f),
            Self::Ended(report) => f.write_str(&report.summary),
        }
    }
}

async fn run_program(
    ctx: &RunContext,
    params: &CommandParams,
    secrets: &[(String, Secret)],
    argv: &[String],
) -> Result<RunReport, JobError> {
    let started = Instant::now();
    // Under the runner's process guard: the program ends when this node
    // loses its lease or dies, before another node may retry the slot.
    let mut command = Command::from(ctx.fence.command(&argv[0]));
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill everything it spawned.
        .process_group(0)
        .kill_on_drop(true);
    command.env_clear();
    command.envs(inherited_env(params));
    command.envs(&params.env);
    command.envs(secrets.iter().map(|(name, value)| (name, value.expose())));
    command.env("PATROL_RUN_ID", ctx.run_id.to_string());
    command.env("PATROL_RUN_KEY", &ctx.run_key);
    command.env("PATROL_SCHEDULE_ID", &ctx.schedule_id);
    command.env("PATROL_SCHEDULED_FOR", ctx.scheduled_for.to_rfc3339());
    command.env("PATROL_ATTEMPT", ctx.attempt.to_string());
    let resume_from = match params.checkpoints {
        true => checkpoint::last_committed(&ctx.state).await?,
        false => None,
    };
    match resume_from {
        Some(value) => command.env(checkpoint::ENV, value),
        None => command.env_remove(checkpoint::ENV),
    };
    if let Some(dir) = &params.workdir {
        command.current_dir(dir);
    }
    let mut child = ctx
        .fence
        .spawn(command)
        .map_err(|err| JobError::Failed(format!("cannot start `{}`: {err}", argv[0])))?;
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let limit = usize::try_from(params.output_limit.0).unwrap_or(usize::MAX);
    let reading = Reading {
        findings: params.findings,
        checkpoints: params.checkpoints,
    };
    let stdout = spawn_capture(child.stdout.take(), limit, reading, ctx.checkpoints.clone());
    let stderr = spawn_capture(
        child.stderr.take(),
        limit,
        Reading::default(),
        ctx.checkpoints.clone(),
    );

    let (status, cancelled) = tokio::select! {
        status = child.wait() => (status, false),
        () = ctx.cancel.cancelled() => {
            (terminate_group(&mut child, group, params.kill_grace.0).await, true)
        }
    };
    // Whatever the program left running in its group ends with the run;
    // otherwise a background child holding the pipes would keep us waiting.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let status = status.map_err(|err| JobError::Failed(format!("waiting for program: {err}")))?;
    let (stdout, findings, checkpoints) = collect_capture(stdout).await;
    let (stderr, _, _) = collect_capture(stderr).await;
    let elapsed = started.elapsed();

    let (outcome, verdict) = if cancelled {
        (Outcome::Cancelled, "cancelled".to_string())
    } else {
        describe_status(status)
    };
    let mut summary = format!("{verdict} in {:.1}s", elapsed.as_secs_f64());
    if !findings.findings.is_empty() {
        summary.push_str(&format!(", {} finding(s)", findings.findings.len()));
    }
    if findings.malformed > 0 {
        summary.push_str(&format!(
            ", {} malformed finding line(s)",
            findings.malformed
        ));
    }
    if checkpoints.committed > 0 {
        summary.push_str(&format!(", {} checkpoint(s)", checkpoints.committed));
    }
    if checkpoints.failed > 0 {
        summary.push_str(&format!(
            ", {} checkpoint(s) not saved ({})",
            checkpoints.failed,
            checkpoints.first_error.as_deref().unwrap_or("?")
        ));
    }
    if findings.malformed_checkpoints > 0 {
        summary.push_str(&format!(
            ", {} malformed checkpoint line(s)",
            findings.malformed_checkpoints
        ));
    }
    let mut report = RunReport::new(outcome, summary);
    report.output = Some(render_output(&stdout, &stderr));
    report.details = serde_json::json!({
        "exit_code": status.code(),
        "signal": exit_signal(status),
        "stdout_bytes": stdout.total_bytes(),
        "stderr_bytes": stderr.total_bytes(),
        "duration_ms": elapsed.as_millis() as u64,
        "findings": findings.findings.len(),
        "malformed_findings": findings.malformed,
        "findings_over_limit": findings.dropped_over_limit,
        "finding_problems": findings.problems,
        "checkpoint_lines": checkpoints,
        "malformed_checkpoints": findings.malformed_checkpoints,
        "checkpoint_problems": findings.checkpoint_problems,
    });
    report.findings_partial = findings.partial;
    report.findings = findings.findings;
    Ok(report)
}

fn describe_status(status: ExitStatus) -> (Outcome, String) {
    match (status.code(), exit_signal(status)) {
        (Some(0), _) => (Outcome::Succeeded, "exit 0".to_string()),
        (Some(code), _) => (Outcome::Failed, format!("exit {code}")),
        (None, Some(signal)) => (Outcome::Failed, format!("killed by signal {signal}")),
        (None, None) => (Outcome::Failed, "ended without exit code".to_string()),
    }
}

fn exit_signal(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// SIGTERM to the group, SIGKILL after the grace period.
async fn terminate_group(
    child: &mut Child,
    group: Option<Pid>,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            child.wait().await
        }
    }
}

/// A stream read to its end: the bounded capture, the lines read, the
/// checkpoints committed.
type Captured = (BoundedCapture, StdoutLines, Committed);

/// Reads a stream to its end, keeping a bounded capture and, when asked,
/// reading finding and checkpoint lines from all of it (not just the kept
/// part). Each checkpoint is committed as soon as its line is read.
fn spawn_capture<R>(
    stream: Option<R>,
    limit: usize,
    reading: Reading,
    checkpoints: Checkpoints,
) -> JoinHandle<Captured>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut capture = BoundedCapture::new(limit);
        let mut lines = StdoutLines::new(reading);
        let mut committed = Committed::default();
        let parse = reading.findings || reading.checkpoints;
        if let Some(mut stream) = stream {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                capture.push(&buffer[..read]);
                if parse {
                    lines.push(&buffer[..read]);
                    for value in lines.take_checkpoints() {
                        committed.commit(&checkpoints, value).await;
                    }
                }
            }
        }
        lines.finish();
        for value in lines.take_checkpoints() {
            committed.commit(&checkpoints, value).await;
        }
        (capture, lines, committed)
    })
}

async fn collect_capture(handle: JoinHandle<Captured>) -> Captured {
    handle.await.unwrap_or_else(|_| {
        (
            BoundedCapture::new(0),
            StdoutLines::default(),
            Committed::default(),
        )
    })
}

fn render_output(stdout: &BoundedCapture, stderr: &BoundedCapture) -> String {
    let mut text = String::new();
    if stdout.total_bytes() > 0 {
        text.push_str("--- stdout ---\n");
        text.push_str(&stdout.render());
    }
    if stderr.total_bytes() > 0 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("--- stderr ---\n");
        text.push_str(&stderr.render());
    }
    text
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            if arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
            {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
