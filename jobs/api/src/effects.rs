//! Side effects outside the ledger: writing a file, a command, an HTTP call
//! that changes something. A job performs every one of them through the
//! run's [`Effects`] handle (`ctx.effects`), never directly:
//!
//! - on a dry run the handle records what the job meant to do and performs
//!   nothing (the runner shows the list with the run);
//! - on a real run the intent is written to the ledger (an [`EffectLog`])
//!   before the effect is performed, and its outcome after. An effect whose
//!   key an earlier attempt of the same slot already recorded as done is
//!   not performed again, so a retried run does not repeat it.
//!
//! Delivery is at least once: an attempt that died between performing an
//! effect and recording its outcome leaves it `intended`, and the retry
//! performs it again. Keys that carry a digest of the content (as
//! [`Intent::write_file`] does) make that repeat harmless.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};

/// Longest key stored as given; longer ones are shortened with a digest.
pub const MAX_EFFECT_KEY_LEN: usize = 256;

/// Kinds of effect the built-in jobs perform (any short word will do).
pub mod kind {
    pub const WRITE_FILE: &str = "write_file";
    /// A folder replaced whole (built aside, renamed into place).
    pub const WRITE_DIR: &str = "write_dir";
    pub const COMMAND: &str = "command";
    pub const HTTP: &str = "http";
}

/// One effect a job means to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Names the effect within the run's slot: the same key in a retry of
    /// the slot is the same effect (see the module docs).
    pub key: String,
    pub kind: String,
    /// One line for people: `write detections/cpu.value.csv (1,234 bytes)`.
    pub description: String,
}

impl Intent {
    /// `key` longer than [`MAX_EFFECT_KEY_LEN`] bytes is shortened to its
    /// start plus a digest of the whole, so it stays unique.
    pub fn new(
        kind: impl Into<String>,
        key: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            key: bounded_key(key.into()),
            kind: kind.into(),
            description: description.into(),
        }
    }

    /// Writing `bytes` to `path`; the key carries the content's digest, so
    /// a retry writing the same bytes skips it and different bytes write.
    pub fn write_file(path: &Path, bytes: &[u8]) -> Self {
        Self::new(
            kind::WRITE_FILE,
            format!("write:{}#{}", path.display(), short_digest(bytes)),
            format!(
                "write {} ({} bytes)",
                path.display(),
                thousands(bytes.len() as u64)
            ),
        )
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`: enough to tell
/// contents apart in a key.
pub fn short_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of everything `reader` gives, lowercase hex (read in
/// pieces, so a file of any size takes 64 KiB).
pub fn sha256_hex_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    sha256_hex_of(std::fs::File::open(path)?)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bounded_key(key: String) -> String {
    if key.len() <= MAX_EFFECT_KEY_LEN {
        return key;
    }
    // Room for `…#` and 64 hex digits.
    let mut end = MAX_EFFECT_KEY_LEN - 68;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}…#{digest}", &key[..end])
}

/// Where an effect belongs: the run's slot decides whether an earlier
/// attempt already performed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectSlot {
    pub schedule_id: String,
    pub scheduled_for: DateTime<Utc>,
    pub run_id: i64,
    pub attempt: u32,
}

/// What recording an intent found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intended {
    /// Recorded as `intended` under this id: go ahead, then record the outcome.
    Proceed(i64),
    /// An earlier attempt of the slot recorded this key as done.
    DoneBefore,
}

/// How a performed effect ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectOutcome {
    Done,
    Failed(String),
}

/// The ledger could not record an intent or an outcome.
#[derive(Debug, Clone, thiserror::Error)]
#[error("effect log: {0}")]
pub struct EffectLogError(pub String);

/// Where a real run's effects are written before and after they happen
/// (the runner's ledger; [`MemoryEffectLog`] in tests).
#[async_trait]
pub trait EffectLog: Send + Sync + 'static {
    /// Records that `intent` is about to be performed for `slot`, unless an
    /// earlier attempt of the slot recorded the same key as done.
    async fn record_intent(
        &self,
        slot: &EffectSlot,
        intent: &Intent,
        at: DateTime<Utc>,
    ) -> Result<Intended, EffectLogError>;

    /// Records how the effect recorded as `id` ended.
    async fn record_outcome(
        &self,
        id: i64,
        outcome: &EffectOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), EffectLogError>;
}

/// What became of an effect, as the run reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectStatus {
    /// Dry run: recorded, not performed.
    NotPerformed,
    Done,
    Failed,
    /// An earlier attempt of the same slot did it; not performed again.
    DoneBefore,
}

impl EffectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPerformed => "not_performed",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::DoneBefore => "done_before",
        }
    }
}

/// One effect of a run, kept with the run (`details.effects`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub key: String,
    pub kind: String,
    pub description: String,
    pub status: EffectStatus,
    /// Why it failed, or that its outcome could not be recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`Effects::perform`] did with an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Performed<T> {
    /// Performed; the action's value.
    Done(T),
    /// Dry run: recorded, not performed.
    NotPerformed,
    /// An earlier attempt of the slot did it; not performed again.
    DoneBefore,
}

impl<T> Performed<T> {
    /// The action ran in this run.
    pub fn ran(&self) -> bool {
        matches!(self, Self::Done(_))
    }
}

/// Why [`Effects::perform`] returned no value.
#[derive(Debug)]
pub enum PerformError<E> {
    /// The intent could not be recorded, so the effect was not performed.
    NotRecorded(EffectLogError),
    /// The action ran and failed (recorded as failed).
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for PerformError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRecorded(err) => write!(f, "not performed: {err}"),
            Self::Failed(err) => err.fmt(f),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for PerformError<E> {}

enum Mode {
    DryRun,
    Recorded {
        log: Arc<dyn EffectLog>,
        slot: EffectSlot,
    },
}

struct Inner {
    mode: Mode,
    /// The runner's clock, for the times intents and outcomes are logged at.
    clock: Arc<dyn Clock>,
    records: Mutex<Vec<EffectRecord>>,
    /// For [`Effects::perform_blocking`] on threads outside the runtime.
    runtime: Option<tokio::runtime::Handle>,
}

/// The run's handle on its side effects; cheap to clone, usable from async
/// code ([`perform`](Self::perform)) and from blocking threads
/// ([`perform_blocking`](Self::perform_blocking)).
#[derive(Clone)]
pub struct Effects(Arc<Inner>);

impl fmt::Debug for Effects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effects")
            .field("dry_run", &self.is_dry_run())
            .finish_non_exhaustive()
    }
}

impl Effects {
    /// A dry run's handle: records intents, performs nothing.
    pub fn dry_run() -> Self {
        Self::with_mode(Mode::DryRun, Arc::new(SystemClock))
    }

    /// A real run's handle: each effect recorded in `log` for `slot` before
    /// and after it is performed, at the system clock's time.
    pub fn recorded(log: Arc<dyn EffectLog>, slot: EffectSlot) -> Self {
        Self::recorded_on(log, slot, Arc::new(SystemClock))
    }

    /// [`recorded`](Self::recorded), timed by `clock` (the runner's).
    pub fn recorded_on(log: Arc<dyn EffectLog>, slot: EffectSlot, clock: Arc<dyn Clock>) -> Self {
        Self::with_mode(Mode::Recorded { log, slot }, clock)
    }

    /// Performs effects, logging them in a fresh [`MemoryEffectLog`]: for
    /// tests, benches and tools that run a job outside the runner.
    pub fn in_memory() -> Self {
        Self::recorded(
            Arc::new(MemoryEffectLog::default()),
            EffectSlot {
                schedule_id: "local".into(),
                scheduled_for: Utc::now(),
                run_id: 0,
                attempt: 1,
            },
        )
    }

    fn with_mode(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self(Arc::new(Inner {
            mode,
            clock,
            records: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }))
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.0.mode, Mode::DryRun)
    }

    /// Every effect asked for so far, in order, with what became of it.
    pub fn records(&self) -> Vec<EffectRecord> {
        self.0
            .records
            .lock()
            .map(|records| records.clone())
            .unwrap_or_default()
    }

    fn push(&self, intent: Intent, status: EffectStatus, error: Option<String>) {
        if let Ok(mut records) = self.0.records.lock() {
            records.push(EffectRecord {
                key: intent.key,
                kind: intent.kind,
                description: intent.description,
                status,
                error,
            });
        }
    }

    /// Performs `action` as the effect `intent` describes: on a dry run it
    /// only records the intent; on a real run it records the intent, runs
    /// the action unless an earlier attempt of the slot did, and records
    /// the outcome (`Err` = failed, with its message).
    pub async fn perform<T, E, F>(
        &self,
        intent: Intent,
        action: F,
    ) -> Result<Performed<T>, PerformError<E>>
    where
        E: fmt::Display,
        F: Future<Output = Result<T, E>>,
    {
        let (log, slot) = match &self.0.mode {
            Mode::DryRun => {
                self.push(intent, EffectStatus::NotPerformed, None);
                return Ok(Performed::NotPerformed);
            }
            Mode::Recorded { log, slot } => (log, slot),
        };
        let asked = log.record_intent(slot, &intent, self.now()).await;
        let id = match self.admitted(&intent, asked) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let result = action.await;
        let outcome = outcome_of(&result);
        let unrecorded = log.record_outcome(id, &outcome, self.now()).await.err();
        self.settle(intent, result, unrecorded)
    }

    /// [`perform`](Self::perform) for code on a blocking thread (a
    /// `spawn_blocking` task, a worker thread). Never call it from async
    /// code: it waits for the log.
    pub fn perform_blocking<T, E, F>(
        &self,
        intent: Intent,
        action: F,
    ) -> Result<Performed<T>, PerformError<E>>
    where
        E: fmt::Display,
        F: FnOnce() -> Result<T, E>,
    {
        let (log, slot) = match &self.0.mode {
            Mode::DryRun => {
                self.push(intent, EffectStatus::NotPerformed, None);
                return Ok(Performed::NotPerformed);
            }
            Mode::Recorded { log, slot } => (log.clone(), slot.clone()),
        };
        let asked = {
            let (log, intent, at) = (log.clone(), intent.clone(), self.now());
            self.wait_for(async move { log.record_intent(&slot, &intent, at).await })
        };
        let id = match self.admitted(&intent, asked.and_then(|intended| intended)) {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let result = action();
        let outcome = outcome_of(&result);
        let at = self.now();
        let unrecorded = self
            .wait_for(async move { log.record_outcome(id, &outcome, at).await })
            .and_then(|recorded| recorded)
            .err();
        self.settle(intent, result, unrecorded)
    }

    /// What recording the intent decided: go ahead under the log's id, or
    /// the answer to give without performing (done by an earlier attempt,
    /// or not recorded — an effect is never performed unrecorded).
    fn admitted<T, E>(
        &self,
        intent: &Intent,
        asked: Result<Intended, EffectLogError>,
    ) -> Result<i64, Result<Performed<T>, PerformError<E>>> {
        match asked {
            Ok(Intended::Proceed(id)) => Ok(id),
            Ok(Intended::DoneBefore) => {
                self.push(intent.clone(), EffectStatus::DoneBefore, None);
                Err(Ok(Performed::DoneBefore))
            }
            Err(err) => {
                self.push(intent.clone(), EffectStatus::Failed, Some(err.to_string()));
                Err(Err(PerformError::NotRecorded(err)))
            }
        }
    }

    /// The time effects are recorded at: the runner's clock.
    fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    fn settle<T, E: fmt::Display>(
        &self,
        intent: Intent,
        result: Result<T, E>,
        unrecorded: Option<EffectLogError>,
    ) -> Result<Performed<T>, PerformError<E>> {
        let unrecorded =
            unrecorded.map(|err| format!("performed, but its outcome was not recorded ({err})"));
        match result {
            Ok(value) => {
                self.push(intent, EffectStatus::Done, unrecorded);
                Ok(Performed::Done(value))
            }
            Err(err) => {
                let message = match unrecorded {
                    Some(note) => format!("{err}; {note}"),
                    None => err.to_string(),
                };
                self.push(intent, EffectStatus::Failed, Some(message));
                Err(PerformError::Failed(err))
            }
        }
    }

    /// Runs a log call from a blocking thread: on the runtime the handle
    /// was made in (or the thread's), else on a small one of its own.
    fn wait_for<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, EffectLogError> {
        let runtime = self
            .0
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        match runtime {
            Some(runtime) => {
                let (tx, rx) = std::sync::mpsc::channel();
                runtime.spawn(async move {
                    let _ = tx.send(call.await);
                });
                rx.recv().map_err(|_| {
                    EffectLogError("the runtime stopped before the log answered".into())
                })
            }
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(call))
                .map_err(|err| EffectLogError(format!("cannot start a runtime: {err}"))),
        }
    }

    /// Writes `bytes` to `path` atomically (see [`write_file_atomically`]).
    pub async fn write_file(
        &self,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<Performed<()>, PerformError<std::io::Error>> {
        let intent = Intent::write_file(path, &bytes);
        let path = path.to_path_buf();
        self.perform(intent, async move {
            tokio::task::spawn_blocking(move || write_file_atomically(&path, &bytes))
                .await
                .map_err(std::io::Error::other)?
        })
        .await
    }

    /// [`write_file`](Self::write_file) from a blocking thread.
    pub fn write_file_blocking(
        &self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Performed<()>, PerformError<std::io::Error>> {
        self.perform_blocking(Intent::write_file(path, bytes), || {
            write_file_atomically(path, bytes)
        })
    }
}

fn outcome_of<T, E: fmt::Display>(result: &Result<T, E>) -> EffectOutcome {
    match result {
        Ok(_) => EffectOutcome::Done,
        Err(err) => EffectOutcome::Failed(err.to_string()),
    }
}

/// Writes `bytes` to `path` so a reader sees the old file or the new one:
/// a temporary file beside it, synced, renamed over it. Creates the parent
/// folders.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = parent_of(path);
    std::fs::create_dir_all(&parent)?;
    let temp = sibling(path, "tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        sync_dir(&parent);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Replaces the folder `target` whole: `build` fills a hidden sibling
/// folder, which is renamed into place (the old folder moved aside first
/// and removed after). A reader sees the old folder or the new one; if
/// anything fails the old one is put back.
pub fn replace_dir_atomically(
    target: &Path,
    build: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let parent = parent_of(target);
    std::fs::create_dir_all(&parent)?;
    let building = sibling(target, "new");
    let previous = sibling(target, "old");
    let result = (|| {
        std::fs::create_dir(&building)?;
        build(&building)?;
        if target.exists() {
            std::fs::rename(target, &previous)?;
        }
        std::fs::rename(&building, target)?;
        sync_dir(&parent);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&building);
        if previous.exists() && !target.exists() {
            let _ = std::fs::rename(&previous, target);
        }
    }
    if previous.exists() && target.exists() {
        let _ = std::fs::remove_dir_all(&previous);
    }
    result
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `dir/.name.<what>-<pid>-<n>`: hidden, unique to this process and call.
fn sibling(path: &Path, what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    parent_of(path).join(format!(".{name}.{what}-{}-{n}", std::process::id()))
}

/// Makes a rename durable; best effort (not every platform allows it).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// What a [`MemoryEffectLog`] holds about one key of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEffect {
    pub id: i64,
    pub run_id: i64,
    pub attempt: u32,
    pub status: &'static str,
    pub error: Option<String>,
}

/// An [`EffectLog`] in memory, with the ledger's rules: for job tests and
/// benches. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct MemoryEffectLog {
    entries: Arc<Mutex<MemoryEntries>>,
}

#[derive(Debug, Default)]
struct MemoryEntries {
    next_id: i64,
    by_slot: HashMap<(String, DateTime<Utc>, String), LoggedEffect>,
    /// `(id, "intended" | "done" | "failed")` in the order they were written.
    events: Vec<(i64, &'static str)>,
}

impl MemoryEffectLog {
    /// The entry of `key` in `slot`, if any.
    pub fn entry(&self, slot: &EffectSlot, key: &str) -> Option<LoggedEffect> {
        let entries = self.entries.lock().ok()?;
        entries
            .by_slot
            .get(&(
                slot.schedule_id.clone(),
                slot.scheduled_for,
                key.to_string(),
            ))
            .cloned()
    }

    /// Every write to the log, in order: `(id, status)`.
    pub fn events(&self) -> Vec<(i64, &'static str)> {
        self.entries
            .lock()
            .map(|entries| entries.events.clone())
            .unwrap_or_default()
    }
}

fn poisoned<T>(_: T) -> EffectLogError {
    EffectLogError("the in-memory effect log is poisoned".into())
}

#[async_trait]
impl EffectLog for MemoryEffectLog {
    async fn record_intent(
        &self,
        slot: &EffectSlot,
        intent: &Intent,
        _at: DateTime<Utc>,
    ) -> Result<Intended, EffectLogError> {
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let key = (
            slot.schedule_id.clone(),
            slot.scheduled_for,
            intent.key.clone(),
        );
        if entries
            .by_slot
            .get(&key)
            .is_some_and(|entry| entry.status == "done")
        {
            return Ok(Intended::DoneBefore);
        }
        entries.next_id += 1;
        let id = entries.next_id;
        entries.by_slot.insert(
            key,
            LoggedEffect {
                id,
                run_id: slot.run_id,
                attempt: slot.attempt,
                status: "intended",
                error: None,
            },
        );
        entries.events.push((id, "intended"));
        Ok(Intended::Proceed(id))
    }

    async fn record_outcome(
        &self,
        id: i64,
        outcome: &EffectOutcome,
        _at: DateTime<Utc>,
    ) -> Result<(), EffectLogError> {
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let (status, error) = match outcome {
            EffectOutcome::Done => ("done", None),
            EffectOutcome::Failed(error) => ("failed", Some(error.clone())),
        };
        let entry = entries
            .by_slot
            .values_mut()
            .find(|entry| entry.id == id)
            .ok_or_else(|| EffectLogError(format!("no effect {id}")))?;
        entry.status = status;
        entry.error = error;
        entries.events.push((id, status));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
