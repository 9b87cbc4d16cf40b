use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{ERROR, OK};
use crate::config::parse_timezone;
use crate::cron::CronExpr;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The expression, e.g. "*/5 * * * *" (quote it).
    pub expression: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Start after this instant (RFC 3339); default now.
    #[arg(long)]
    pub after: Option<String>,
    /// How many fires to print.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn cron_next(args: Args) -> Result<u8> {
    let expr = match CronExpr::parse(&args.expression) {
        Ok(expr) => expr,
        Err(err) => {
            eprintln!("error: `{}`: {}", args.expression, err.message);
            return Ok(ERROR);
        }
    };
    let tz = match parse_timezone(&args.tz) {
        Ok(tz) => tz,
        Err(message) => {
            eprintln!("error: --tz: {message}");
            return Ok(ERROR);
        }
    };
    let mut at = match &args.after {
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(at) => at.to_utc(),
            Err(err) => {
                eprintln!("error: --after `{text}` is not RFC 3339 ({err}); e.g. 2026-03-29T00:00:00+01:00");
                return Ok(ERROR);
            }
        },
        None => Utc::now(),
    };
    let mut fires = Vec::with_capacity(args.count.min(10_000));
    for _ in 0..args.count.min(10_000) {
        match expr.next_after(at, &tz) {
            Some(next) => {
                fires.push(next.with_timezone(&tz).to_rfc3339());
                at = next;
            }
            None => break,
        }
    }
    if args.json {
        let out = serde_json::json!({
            "expression": expr.source(),
            "timezone": tz.name(),
            "fires": fires,
        });
        println!("{out}");
    } else {
        for fire in fires {
            println!("{fire}");
        }
    }
    Ok(OK)
}
