use std::path::Path;

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;

use super::output::{one_line, print_table};
use super::{Context, OK};
use crate::ledger::{RunFilter, RunStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ScheduleView {
    id: String,
    job: String,
    cron: String,
    timezone: String,
    state: &'static str,
    overlap: crate::config::Overlap,
    last_run: Option<LastRun>,
    next_fires: Vec<String>,
    file: String,
}

#[derive(Serialize)]
struct LastRun {
    id: i64,
    status: RunStatus,
    scheduled_for: String,
}

pub async fn schedules(config: Option<&Path>, args: Args) -> Result<u8> {
    let context = Context::load(config)?;
    let set = context.schedules_without_jobs()?;
    let ledger = context.ledger().await?;
    let states = ledger.schedule_states().await?;
    let now = Utc::now();
    let mut views = Vec::new();
    for schedule in set.iter() {
        let paused = states.get(&schedule.id).is_some_and(|state| state.paused);
        let state = match (schedule.enabled, paused) {
            (false, _) => "disabled",
            (true, true) => "paused",
            (true, false) => "active",
        };
        let last = ledger
            .runs(&RunFilter {
                schedule_id: Some(schedule.id.clone()),
                status: None,
                limit: 1,
            })
            .await?
            .into_iter()
            .next()
            .map(|run| LastRun {
                id: run.id,
                status: run.status,
                scheduled_for: run.scheduled_for.to_rfc3339(),
            });
        let mut next_fires = Vec::new();
        if state == "active" {
            let mut at = now;
            for _ in 0..3 {
                let Some(next) = schedule.cron.next_after(at, &schedule.timezone) else {
                    break;
                };
                next_fires.push(next.with_timezone(&schedule.timezone).to_rfc3339());
                at = next;
            }
        }
        views.push(ScheduleView {
            id: schedule.id.clone(),
            job: schedule.job.clone(),
            cron: schedule.cron.source().to_string(),
            timezone: schedule.timezone.name().to_string(),
            state,
            overlap: schedule.overlap,
            last_run: last,
            next_fires,
            file: format!(
                "{}:{}",
                schedule.source.file.display(),
                schedule.source.line
            ),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(OK);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            vec![
                view.id.clone(),
                view.job.clone(),
                view.cron.clone(),
                view.timezone.clone(),
                view.state.to_string(),
                view.last_run
                    .as_ref()
                    .map_or("-".into(), |last| format!("#{} {}", last.id, last.status)),
                one_line(&view.next_fires.join(", "), 100),
            ]
        })
        .collect();
    print_table(&["ID", "JOB", "CRON", "TZ", "STATE", "LAST", "NEXT"], &rows);
    Ok(OK)
}
