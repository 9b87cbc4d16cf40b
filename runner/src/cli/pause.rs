use std::path::Path;

use anyhow::Result;
use chrono::Utc;

use super::{Context, ERROR, OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedule id.
    pub id: String,
}

pub async fn set_paused(config: Option<&Path>, args: Args, paused: bool) -> Result<u8> {
    let context = Context::load(config)?;
    let set = context.schedules_without_jobs()?;
    if set.get(&args.id).is_none() {
        eprintln!("error: no schedule `{}` (see `patrol schedules`)", args.id);
        return Ok(ERROR);
    }
    let ledger = context.ledger().await?;
    let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    ledger
        .set_paused(&args.id, paused, &who, Utc::now())
        .await?;
    println!("{} {}", args.id, if paused { "paused" } else { "resumed" });
    Ok(OK)
}
