use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::watch;

use super::{Context, OK};
use crate::alerting::policy::AlertPolicy;
use crate::alerting::worker::DeliveryWorker;
use crate::config::{LogFormat, PatrolConfig};
use crate::ledger::{Instance, Ledger};
use crate::reload::watch_schedules;
use crate::scheduler::{Alerting, Engine, EngineSettings, SystemClock};

pub async fn serve(config: Option<&Path>) -> Result<u8> {
    let context = Context::load(config)?;
    init_logging(&context.config);
    let registry = context.registry()?;
    let schedules = context.schedules(&registry)?;
    context.check_secrets()?;
    let ledger = context.ledger().await?;
    tracing::info!(
        database = %crate::ledger::redact_url(&context.config.database),
        schedules_dir = %context.config.schedules.display(),
        "ledger ready"
    );
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        node: context.config.node.clone(),
    };
    let settings = EngineSettings {
        node_ttl: context.config.node_ttl,
        shutdown_grace: context.config.shutdown_grace,
        poll_interval: Duration::from_millis(500),
        history: context.config.history,
        prune_interval: Duration::from_secs(600),
        // Jobs' processes run under this binary as their guard.
        guard: std::env::current_exe().ok(),
    };
    let (schedules_tx, schedules_rx) = watch::channel(Arc::new(schedules));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let _watcher = watch_schedules(
        context.config.schedules.clone(),
        context.job_build(&registry),
        schedules_tx,
        shutdown_rx.clone(),
    )?;
    tokio::spawn(wait_for_shutdown_signal(shutdown_tx));
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
    tracing::info!(
        notifiers = %context.config.alerting.notifiers.keys().cloned().collect::<Vec<_>>().join(", "),
        routes = context.config.alerting.routes.len(),
        "alerting ready"
    );
    // The worker outlives the engine's drain: runs that end during the
    // grace period still get their alerts sent.
    let (worker_stop_tx, worker_stop_rx) = watch::channel(false);
    let worker = tokio::spawn(worker.run(worker_stop_rx));
    let engine = Engine::new(
        ledger.clone(),
        context.job_build(&registry),
        Arc::new(SystemClock),
        instance.clone(),
        settings,
    )
    .with_alerting(Alerting {
        policy,
        node: instance.node.clone(),
        outbox,
    });
    let result = engine.run(schedules_rx, shutdown_rx).await;
    let _ = worker_stop_tx.send(true);
    // Until the worker has finished its sends and released its claims,
    // this instance must look alive (the lease is still renewed), or
    // another node would re-send them.
    let _ = worker.await;
    match &result {
        Ok(Some(lease)) => stop(&ledger, lease.instance()).await,
        Ok(None) => {}
        // Registration was refused or failed: the instance holds nothing.
        Err(_) => {}
    }
    tracing::info!("patrol stopped");
    drop(result?);
    ledger.close().await;
    Ok(OK)
}

/// Records a clean stop, keeping an earlier verdict (another node marked
/// this instance dead) if there is one.
async fn stop(ledger: &Ledger, instance: &Instance) {
    match ledger
        .stop_instance(instance, Utc::now(), "shut down cleanly")
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(instance = %instance.id,
            "this instance had been marked dead by another node; that record is kept"),
        Err(err) => tracing::warn!(error = %err, "cannot record this instance as stopped"),
    }
}

async fn wait_for_shutdown_signal(shutdown: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot listen for SIGTERM");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    let _ = shutdown.send(true);
}

fn init_logging(config: &PatrolConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("PATROL_LOG")
        .ok()
        .or_else(|| config.log.level.clone())
        .unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a file or journald
    // would keep them as bytes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(super::log_writer::Redacted(std::io::stderr));
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
