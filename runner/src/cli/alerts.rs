//! `patrol alerts` (what fired, where it went) and `patrol alert test`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::Notify;

use super::output::{one_line, print_table, timestamp};
use super::{Context, ERROR, FOUND, OK};
use crate::alerting::policy::AlertPolicy;
use crate::alerting::record::record_test_alert;
use crate::alerting::worker::DeliveryWorker;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only alerts still firing.
    #[arg(long)]
    pub open: bool,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

pub async fn alerts(config: Option<&Path>, args: ListArgs) -> Result<u8> {
    let context = Context::load(config)?;
    let ledger = context.ledger().await?;
    let alerts = ledger.alerts(args.open, args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(OK);
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|alert| {
            let deliveries = alert
                .deliveries
                .iter()
                .map(|(notifier, list)| {
                    let last = list.last();
                    format!(
                        "{notifier}:{}",
                        last.map_or("-".to_string(), |d| format!("{} {}", d.action, d.status))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                alert.id.to_string(),
                alert.status.clone(),
                alert.severity.clone(),
                alert.schedule_id.clone(),
                one_line(&alert.key, 60),
                timestamp(Some(alert.first_seen_at)),
                timestamp(alert.resolved_at),
                one_line(&deliveries, 80),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "STATUS",
            "SEVERITY",
            "SCHEDULE",
            "KEY",
            "SINCE",
            "RESOLVED",
            "DELIVERIES",
        ],
        &rows,
    );
    Ok(OK)
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A route name from patrol.yaml (`default` when none are configured).
    pub route: String,
    /// How long to keep trying before reporting what is still pending.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Sends a test alert through `route` and reports, per notifier, whether
/// it arrived. Exit 0 when every notifier took it, 1 otherwise.
pub async fn test(config: Option<&Path>, args: TestArgs) -> Result<u8> {
    let context = Context::load(config)?;
    if context.config.alerting.route(&args.route).is_none() {
        eprintln!(
            "error: unknown route `{}` (configured: {})",
            args.route,
            context
                .config
                .alerting
                .routes
                .iter()
                .map(|route| route.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ERROR);
    }
    context.check_secrets()?;
    let ledger = context.ledger().await?;
    let policy = Arc::new(AlertPolicy::new(&context.config.alerting));
    let mut tx = ledger.pool().begin().await?;
    let alert_id = record_test_alert(
        &mut tx,
        &policy,
        &args.route,
        &context.config.node,
        Utc::now(),
    )
    .await?;
    tx.commit().await?;
    let worker = DeliveryWorker::new(
        ledger.clone(),
        &context.config.alerting,
        policy,
        &format!("cli-{}", uuid::Uuid::new_v4()),
        &context.config.node,
        Arc::new(Notify::new()),
    )?;
    worker.drain(args.wait).await?;
    let alert = ledger
        .alerts(false, 1000)
        .await?
        .into_iter()
        .find(|alert| alert.id == alert_id);
    let mut all_sent = true;
    for (notifier, deliveries) in alert.map(|a| a.deliveries).unwrap_or_default() {
        for delivery in deliveries {
            let ok = delivery.status == "sent";
            all_sent &= ok;
            println!(
                "{notifier}: {}{}",
                delivery.status,
                delivery
                    .last_error
                    .map(|error| format!(" ({error})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if all_sent { OK } else { FOUND })
}
