//! Reloading schedule files on change (file watcher) and on SIGHUP. A
//! valid new set replaces the old one at once; an invalid one is reported
//! and the last good set keeps running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::{load_schedules, ScheduleSet};
use crate::registry::JobRegistry;

/// Editors write files in several steps; wait for quiet before reading.
const SETTLE: Duration = Duration::from_millis(300);

/// Starts watching `dir`; keep the returned watcher alive.
pub fn watch_schedules(
    dir: PathBuf,
    registry: JobRegistry,
    publish: watch::Sender<Arc<ScheduleSet>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<notify::RecommendedWatcher> {
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<()>();
    let file_events = changed_tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = file_events.send(());
            }
        }
    })
    .context("cannot start the schedule file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;

    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangup.recv() => tracing::info!("SIGHUP: reloading schedules"),
                Some(()) = changed_rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while changed_rx.try_recv().is_ok() {}
                }
            }
            match load_schedules(std::slice::from_ref(&dir), &registry) {
                Ok(set) => {
                    let _ = publish.send(Arc::new(set));
                }
                Err(diagnostics) => {
                    for diagnostic in &diagnostics.0 {
                        tracing::error!(%diagnostic, "schedule files are invalid; keeping the last good set");
                    }
                }
            }
        }
    });
    Ok(watcher)
}
