//! Reloading schedule files on change (file watcher) and on SIGHUP. A
//! valid new set, its jobs built, replaces the old one at once; an invalid
//! one — a bad schedule file, or a rules file or key a job's build cannot
//! use — is reported and the last good set, with its built jobs, keeps
//! running.
//!
//! Besides the schedule folder, the watcher follows every file a job's
//! build read (`BuiltJob::depends_on`): editing a rules file rebuilds the
//! jobs, as editing a schedule does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::{load_schedules, ScheduleSet};
use crate::registry::JobBuild;

/// Editors write files in several steps; wait for quiet before reading.
const SETTLE: Duration = Duration::from_millis(300);

/// What the watcher reacts to: the schedule folder and the files the
/// current set's jobs were built from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Watched {
    schedules: PathBuf,
    files: BTreeSet<PathBuf>,
}

impl Watched {
    fn of(schedules: &Path, set: &ScheduleSet) -> Self {
        let files = set
            .iter()
            .filter_map(|schedule| schedule.built.as_ref())
            .flat_map(|built| built.depends_on.iter().cloned())
            .map(|file| absolute(&file))
            .collect();
        Self {
            schedules: absolute(schedules),
            files,
        }
    }

    /// Folders to watch: files are replaced by renames (editors, `git
    /// checkout`), which only a watch on their folder sees.
    fn folders(&self) -> BTreeSet<PathBuf> {
        let mut folders: BTreeSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|file| file.parent().map(Path::to_path_buf))
            .collect();
        folders.insert(self.schedules.clone());
        folders
    }

    fn concerns(&self, path: &Path) -> bool {
        path.parent() == Some(self.schedules.as_path())
            || path == self.schedules
            || self.files.contains(path)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Starts watching `dir` and the files `current`'s jobs were built from;
/// keep the returned watcher alive.
pub fn watch_schedules(
    dir: PathBuf,
    jobs: JobBuild,
    publish: watch::Sender<Arc<ScheduleSet>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Arc<std::sync::Mutex<notify::RecommendedWatcher>>> {
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = changed_tx.send(event.paths);
            }
        }
    })
    .context("cannot start the schedule file watcher")?;
    let watcher = Arc::new(std::sync::Mutex::new(watcher));
    let mut watched = Watched::default();
    let mut folders = BTreeSet::new();
    follow(
        &watcher,
        &mut folders,
        Watched::of(&dir, &publish.borrow()),
        &mut watched,
    )
    .with_context(|| format!("cannot watch {}", dir.display()))?;

    let handle = watcher.clone();
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
                Some(paths) = changed_rx.recv() => {
                    let mut relevant = paths.iter().any(|path| watched.concerns(path));
                    tokio::time::sleep(SETTLE).await;
                    while let Ok(paths) = changed_rx.try_recv() {
                        relevant |= paths.iter().any(|path| watched.concerns(path));
                    }
                    if !relevant {
                        continue;
                    }
                }
            }
            match load_schedules(std::slice::from_ref(&dir), &jobs) {
                Ok(set) => {
                    let next = Watched::of(&dir, &set);
                    if let Err(err) = follow(&handle, &mut folders, next, &mut watched) {
                        tracing::warn!(error = %err, "cannot watch a file a job was built from; edits to it need SIGHUP");
                    }
                    let _ = publish.send(Arc::new(set));
                }
                Err(diagnostics) => {
                    for diagnostic in &diagnostics.0 {
                        tracing::error!(%diagnostic, "schedule files or the files their jobs read are invalid; keeping the last good set");
                    }
                }
            }
        }
    });
    Ok(watcher)
}

/// Moves the watches to `next`'s folders.
fn follow(
    watcher: &std::sync::Mutex<notify::RecommendedWatcher>,
    folders: &mut BTreeSet<PathBuf>,
    next: Watched,
    watched: &mut Watched,
) -> notify::Result<()> {
    let mut watcher = watcher
        .lock()
        .map_err(|_| notify::Error::generic("the watcher's lock is poisoned"))?;
    let wanted = next.folders();
    for gone in folders.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    let mut result = Ok(());
    for folder in wanted.difference(folders) {
        if let Err(err) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            result = Err(err);
        }
    }
    *folders = wanted;
    *watched = next;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_concerns_the_schedules_or_a_file_a_job_read() {
        let watched = Watched {
            schedules: PathBuf::from("/srv/patrol/schedules"),
            files: [PathBuf::from("/srv/patrol/policies/audit/rules.yaml")]
                .into_iter()
                .collect(),
        };
        assert!(watched.concerns(Path::new("/srv/patrol/schedules/audit.yaml")));
        assert!(watched.concerns(Path::new("/srv/patrol/policies/audit/rules.yaml")));
        assert!(!watched.concerns(Path::new("/srv/patrol/policies/audit/notes.md")));
        assert!(!watched.concerns(Path::new("/srv/patrol/patrol.db-wal")));
        assert_eq!(
            watched.folders().into_iter().collect::<Vec<_>>(),
            [
                PathBuf::from("/srv/patrol/policies/audit"),
                PathBuf::from("/srv/patrol/schedules"),
            ]
        );
    }
}
