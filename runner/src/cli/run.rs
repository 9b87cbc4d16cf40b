use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use patrol_job_api::effects::{EffectRecord, EffectStatus};

use super::{Context, ERROR, FOUND, OK};
use crate::alerting::policy::AlertPolicy;
use crate::alerting::worker::DeliveryWorker;
use crate::config::{overrides, Overlap, Schedule};
use crate::ledger::{Instance, Ledger, NewRun, Run, RunStatus, Trigger};
use crate::registry::JobRegistry;
use crate::scheduler::{Alerting, CancelReason, Executor, Lease, RunHandle, SystemClock};

/// How long `patrol run` (without a server) keeps sending the run's alerts.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedule id.
    pub id: String,
    /// Override a param: `--param key=value` (dots reach into maps; the value is read as YAML).
    /// Only top-level keys the schedule lists in `manual_params`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Ask the job to change nothing and report what it would do.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait for the run to end and exit with its result.
    #[arg(long)]
    pub wait: bool,
    /// Run even if the schedule's overlap policy would refuse it.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(config: Option<&Path>, args: Args) -> Result<u8> {
    let context = Context::load(config)?;
    let registry = context.registry()?;
    let set = context.schedules(&registry)?;
    let Some(schedule) = set.get(&args.id).cloned() else {
        eprintln!("error: no schedule `{}` (see `patrol schedules`)", args.id);
        return Ok(ERROR);
    };
    let mut run_overrides = serde_json::Map::new();
    for assignment in &args.params {
        if let Err(message) = overrides::add_override(&mut run_overrides, assignment) {
            eprintln!("error: --param {assignment}: {message}");
            return Ok(ERROR);
        }
    }
    // Only keys the schedule's `manual_params` allow; the executor checks
    // again (a row is not a command).
    if let Err(message) = overrides::check_allowed(&schedule, &run_overrides) {
        eprintln!("error: {message}");
        return Ok(ERROR);
    }
    let run_overrides =
        (!run_overrides.is_empty()).then_some(serde_json::Value::Object(run_overrides));
    let params = match &run_overrides {
        Some(run_overrides) => match overrides::params_with(&schedule.params, run_overrides) {
            Ok(params) => params,
            Err(message) => {
                eprintln!("error: --param: {message}");
                return Ok(ERROR);
            }
        },
        None => schedule.params.clone(),
    };
    if let Some(job) = registry.get(&schedule.job) {
        // Params of the run's own are checked and built here, so a bad one
        // is refused before a run is recorded.
        if params != schedule.params {
            let checked = job.check_params(&params).and_then(|()| {
                job.build(&params, &context.job_build(&registry).context(&schedule.id))
            });
            if let Err(errors) = checked {
                for error in errors {
                    eprintln!("error: {error}");
                }
                return Ok(ERROR);
            }
        }
    }
    let ledger = context.ledger().await?;
    let now = Utc::now();
    let others: Vec<Run> = ledger
        .running_runs()
        .await?
        .into_iter()
        .filter(|run| run.schedule_id == schedule.id)
        .collect();
    let mut new_run = NewRun {
        schedule_id: schedule.id.clone(),
        job: schedule.job.clone(),
        scheduled_for: now,
        attempt: 1,
        trigger: Trigger::Manual,
        status: RunStatus::Pending,
        not_before: Some(now),
        overrides: run_overrides,
        dry_run: args.dry_run,
        force_overlap: args.force,
        error: None,
    };
    if !args.force && !others.is_empty() {
        match schedule.overlap {
            Overlap::Forbid => {
                let reason = format!(
                    "run #{} is still running (overlap: forbid); use --force to run anyway",
                    others[0].id
                );
                new_run.status = RunStatus::Skipped;
                new_run.error = Some(reason.clone());
                let instance = Instance {
                    id: format!("cli-{}", uuid::Uuid::new_v4()),
                    node: context.config.node.clone(),
                };
                ledger.insert_runs(&[new_run], &instance, now).await?;
                eprintln!("not run: {reason}");
                return Ok(FOUND);
            }
            Overlap::Replace => {
                for other in &others {
                    ledger.request_cancel(other.id).await?;
                }
            }
            Overlap::Allow => {}
        }
    }
    let id = enqueue_unique(&ledger, &mut new_run).await?;
    let ttl = chrono::Duration::from_std(context.config.node_ttl)
        .unwrap_or_else(|_| chrono::Duration::seconds(15));
    if ledger.live_server(None, Utc::now(), ttl).await? {
        if !args.wait {
            println!("run #{id} queued; the running `patrol serve` will start it");
            return Ok(OK);
        }
        eprintln!("run #{id} queued; waiting for it to end");
        return wait_and_report(&ledger, id).await;
    }
    // No scheduler is up: this process runs it.
    let instance = Instance {
        id: format!("cli-{}", uuid::Uuid::new_v4()),
        node: context.config.node.clone(),
    };
    // The lease is renewed by its own task while the run goes on, and
    // fences the processes the job starts.
    let lease = Lease::register(
        &ledger,
        instance.clone(),
        "cli",
        Arc::new(SystemClock),
        context.config.node_ttl,
    )
    .await?;
    let outcome = match ledger.claim_one(id, &instance, Utc::now()).await? {
        Some(run) => run_here(&ledger, &context, registry, run, schedule, &lease).await,
        // A scheduler started meanwhile and took it.
        None => wait_and_report(&ledger, id).await,
    };
    ledger
        .stop_instance(&instance, Utc::now(), "manual run done")
        .await?;
    outcome
}

async fn enqueue_unique(ledger: &Ledger, run: &mut NewRun) -> Result<i64> {
    // Two manual runs in the same millisecond would share a slot key.
    for _ in 0..100 {
        if let Some(id) = ledger.enqueue(run, Utc::now()).await? {
            return Ok(id);
        }
        run.scheduled_for += chrono::Duration::milliseconds(1);
    }
    anyhow::bail!(
        "cannot find a free slot for a manual run of `{}`",
        run.schedule_id
    )
}

async fn run_here(
    ledger: &Ledger,
    context: &Context,
    registry: JobRegistry,
    run: Run,
    schedule: Arc<Schedule>,
    lease: &Lease,
) -> Result<u8> {
    let instance = lease.instance();
    context.check_secrets()?;
    let policy = Arc::new(AlertPolicy::new(&context.config.alerting));
    let outbox = Arc::new(tokio::sync::Notify::new());
    let worker = DeliveryWorker::new(
        ledger.clone(),
        &context.config.alerting,
        policy.clone(),
        &instance.id,
        &instance.node,
        outbox.clone(),
    )?;
    let executor = Executor {
        ledger: ledger.clone(),
        jobs: context.job_build(&registry),
        clock: Arc::new(SystemClock),
        alerting: Some(Alerting {
            policy,
            node: instance.node.clone(),
            outbox,
        }),
        fence: lease.view().fence(std::env::current_exe().ok()),
        lease: Some(lease.view()),
    };
    let handle = RunHandle::new(run.schedule_id.clone());
    let id = run.id;
    let interrupt = {
        let handle = handle.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.cancel(CancelReason::Requested);
            }
        })
    };
    eprintln!("run #{id} started here (no `patrol serve` is running)");
    executor.execute(run, Some(schedule), handle).await;
    // No server is up to send this run's alerts: send them now.
    match worker.drain(DELIVERY_WAIT).await {
        Ok(0) => {}
        Ok(left) => eprintln!(
            "{left} alert deliveries still pending; `patrol serve` will go on sending them"
        ),
        Err(err) => eprintln!("warning: cannot deliver alerts now ({err:#}); `patrol serve` will"),
    }
    interrupt.abort();
    report(ledger, id).await
}

async fn wait_and_report(ledger: &Ledger, id: i64) -> Result<u8> {
    loop {
        let run = ledger
            .run(id)
            .await?
            .context("the run disappeared from the ledger")?;
        if run.status.is_terminal() {
            return report(ledger, id).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn report(ledger: &Ledger, id: i64) -> Result<u8> {
    let run = ledger
        .run(id)
        .await?
        .context("the run disappeared from the ledger")?;
    let took = match (run.started_at, run.finished_at) {
        (Some(start), Some(end)) => format!(" in {}", seconds(start, end)),
        _ => String::new(),
    };
    println!(
        "run #{} {}{took}: {}",
        run.id,
        run.status,
        run.summary.as_deref().unwrap_or("")
    );
    if let Some(error) = &run.error {
        println!("error: {error}");
    }
    if let Some(output) = run.output.as_deref().filter(|output| !output.is_empty()) {
        println!("{}", output.trim_end());
    }
    for line in effect_lines(run.details.as_ref()) {
        println!("{line}");
    }
    // Exit 1 also when the run found something (its findings are firing).
    let found = run
        .details
        .as_ref()
        .and_then(|details| details.get("alerts"))
        .map(|alerts| {
            ["triggered", "updated", "unchanged"]
                .iter()
                .filter_map(|field| alerts.get(field).and_then(serde_json::Value::as_u64))
                .sum::<u64>()
        })
        .unwrap_or(0);
    if found > 0 {
        println!("found: {found} finding(s) firing (patrol alerts --open)");
    }
    Ok(if run.status == RunStatus::Succeeded && found == 0 {
        OK
    } else {
        FOUND
    })
}

/// The run's effects (`details.effects`, see docs/effects.md), one line
/// each: what a dry run would have done, what a real run did.
fn effect_lines(details: Option<&serde_json::Value>) -> Vec<String> {
    let Some(details) = details else {
        return Vec::new();
    };
    let records: Vec<EffectRecord> = details
        .get("effects")
        .and_then(|effects| serde_json::from_value(effects.clone()).ok())
        .unwrap_or_default();
    let mut lines: Vec<String> = records
        .iter()
        .map(|record| {
            let status = match record.status {
                EffectStatus::NotPerformed => "would",
                EffectStatus::Done => "did",
                EffectStatus::Failed => "failed",
                EffectStatus::DoneBefore => "already done (earlier attempt)",
            };
            match &record.error {
                Some(error) => format!("effect {status}: {} ({error})", record.description),
                None => format!("effect {status}: {}", record.description),
            }
        })
        .collect();
    if let Some(more) = details
        .get("effects_not_shown")
        .and_then(serde_json::Value::as_u64)
    {
        lines.push(format!("… and {more} more effects"));
    }
    lines
}

fn seconds(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!("{:.1}s", (end - start).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::effect_lines;
    use serde_json::json;

    #[test]
    fn effects_print_one_line_each() {
        let details = json!({
            "effects": [
                {"key": "a", "kind": "write_file", "description": "write d/a.csv (3 bytes)", "status": "not_performed"},
                {"key": "b", "kind": "command", "description": "run true", "status": "failed", "error": "exit 1"},
            ],
            "effects_not_shown": 2,
        });
        assert_eq!(
            effect_lines(Some(&details)),
            [
                "effect would: write d/a.csv (3 bytes)",
                "effect failed: run true (exit 1)",
                "… and 2 more effects",
            ]
        );
        assert!(effect_lines(Some(&json!({"exit_code": 0}))).is_empty());
    }
}
