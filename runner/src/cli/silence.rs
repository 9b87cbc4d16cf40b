//! `patrol silence add|list|expire`: mute matching alerts for a while.
//! Muted alerts are still recorded; only their pages are held back.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;

use super::output::{print_table, timestamp};
use super::{Context, ERROR, OK};
use crate::alerting::matcher::Matcher;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Mute alerts matching every --match for a while.
    Add(AddArgs),
    /// List silences in force (or all with --all).
    List(ListArgs),
    /// End a silence now.
    Expire(ExpireArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// field=value: job, schedule, severity, key or label.NAME; `*` globs.
    #[arg(long = "match", required = true)]
    pub matchers: Vec<String>,
    /// How long, e.g. 2h or 30m.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Why; shown with every suppressed delivery.
    #[arg(long)]
    pub reason: String,
    /// Who (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExpireArgs {
    pub id: i64,
}

pub async fn silence(config: Option<&Path>, command: Command) -> Result<u8> {
    let context = Context::load(config)?;
    let now = Utc::now();
    match command {
        Command::Add(args) => {
            let matcher = match Matcher::from_terms(&args.matchers) {
                Ok(matcher) => matcher,
                Err(message) => {
                    eprintln!("error: --match: {message}");
                    return Ok(ERROR);
                }
            };
            if args.reason.trim().is_empty() {
                eprintln!("error: --reason must say why");
                return Ok(ERROR);
            }
            if args.duration.is_zero() {
                eprintln!("error: --for must be longer than 0");
                return Ok(ERROR);
            }
            let ends_at = now + chrono::Duration::from_std(args.duration)?;
            let by = args
                .by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let ledger = context.ledger().await?;
            let id = ledger
                .add_silence(&matcher, &args.reason, &by, now, ends_at)
                .await?;
            println!(
                "silence #{id}: {} until {}",
                matcher.describe(),
                timestamp(Some(ends_at))
            );
            Ok(OK)
        }
        Command::List(args) => {
            let ledger = context.ledger().await?;
            let silences = ledger.silences(now, args.all).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&silences)?);
                return Ok(OK);
            }
            let rows: Vec<Vec<String>> = silences
                .iter()
                .map(|silence| {
                    vec![
                        silence.id.to_string(),
                        if silence.is_active(now) {
                            "active"
                        } else {
                            "ended"
                        }
                        .to_string(),
                        silence.matcher.describe(),
                        timestamp(Some(silence.ends_at)),
                        silence.created_by.clone().unwrap_or_default(),
                        silence.reason.clone(),
                    ]
                })
                .collect();
            print_table(&["ID", "STATE", "MATCH", "UNTIL", "BY", "REASON"], &rows);
            Ok(OK)
        }
        Command::Expire(args) => {
            let ledger = context.ledger().await?;
            if ledger.expire_silence(args.id, now).await? {
                println!("silence #{} expired", args.id);
                Ok(OK)
            } else {
                eprintln!("error: no silence #{} in force", args.id);
                Ok(ERROR)
            }
        }
    }
}
