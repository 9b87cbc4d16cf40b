use std::path::Path;

use anyhow::Result;

use super::output::{one_line, print_table, timestamp};
use super::{Context, ERROR, OK};
use crate::ledger::{RunFilter, RunStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub schedule: Option<String>,
    /// pending, running, succeeded, failed, timed_out, crashed, cancelled, skipped, missed
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

pub async fn runs(config: Option<&Path>, args: Args) -> Result<u8> {
    let status = match args
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
    {
        Ok(status) => status,
        Err(message) => {
            eprintln!("error: --status: {message}");
            return Ok(ERROR);
        }
    };
    let context = Context::load(config)?;
    let ledger = context.ledger().await?;
    let runs = ledger
        .runs(&RunFilter {
            schedule_id: args.schedule,
            status,
            limit: args.limit,
        })
        .await?;
    if args.json {
        // Rows written before scrubbing existed, and manual overrides (kept
        // as given: the run is built from them), may carry a credential.
        let mut listed = serde_json::to_value(&runs)?;
        patrol_job_api::secret::redact_json(&mut listed);
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(OK);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let duration = match (run.started_at, run.finished_at) {
                (Some(start), Some(end)) => {
                    format!("{:.1}s", (end - start).num_milliseconds() as f64 / 1000.0)
                }
                _ => "-".into(),
            };
            let note = run
                .error
                .as_deref()
                .or(run.summary.as_deref())
                .unwrap_or("");
            vec![
                run.id.to_string(),
                run.schedule_id.clone(),
                timestamp(Some(run.scheduled_for)),
                run.trigger.as_str().to_string(),
                run.attempt.to_string(),
                run.status.to_string(),
                timestamp(run.started_at),
                duration,
                one_line(note, 80),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "SCHEDULE", "SLOT", "TRIGGER", "ATTEMPT", "STATUS", "STARTED", "TOOK", "NOTE",
        ],
        &rows,
    );
    Ok(OK)
}
