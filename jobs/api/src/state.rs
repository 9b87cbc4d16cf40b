//! State a job keeps between runs of its schedule (cursors, correlation
//! tables), stored in the runner's ledger.
//!
//! Reads happen during the run through [`RunContext::state`]; writes are
//! committed by the runner at two points: at a checkpoint the job asks for
//! during the run ([`RunContext::checkpoint`], its own transaction), and
//! with the run's end, handed back in [`RunReport::state`](crate::RunReport)
//! and committed in the same transaction as the run's end and its
//! findings. So a cursor never advances past what the job had processed
//! when it last committed: a crash re-reads from there, never skips.
//!
//! Values are read and written through typed keys ([`StateKey`],
//! [`StatePrefix`]): one encoding, JSON (see [`crate::state_key`]).
//!
//! [`RunContext::state`]: crate::RunContext
//! [`RunContext::checkpoint`]: crate::RunContext::checkpoint

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointLog, CheckpointRun};
use crate::state_key::{StateKey, StatePrefix};

/// Reads one schedule's state (the runner scopes it; jobs see only theirs).
#[async_trait]
pub trait StateRead: Send + Sync {
    /// The values of those `keys` that exist.
    async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError>;

    /// Keys starting with `prefix`, in key order, after `after` (exclusive),
    /// at most `limit` of them, with their values.
    async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError>;
}

/// A handle on the schedule's state; cheap to clone.
#[derive(Clone)]
pub struct JobState(Arc<dyn StateRead>);

impl JobState {
    pub fn new(store: Arc<dyn StateRead>) -> Self {
        Self(store)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get_many(&[key.to_string()]).await?.remove(key))
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.0.get_many(keys).await
    }

    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.0.scan(prefix, after, limit).await
    }

    /// The value of `key`, if stored; an entry that does not decode is an
    /// error naming the key.
    pub async fn load<T: DeserializeOwned>(
        &self,
        key: &StateKey<T>,
    ) -> Result<Option<T>, StateError> {
        self.get(key.name())
            .await?
            .map(|bytes| key.decode(&bytes))
            .transpose()
    }

    /// The values of those `keys` that are stored, by key name.
    pub async fn load_many<T: DeserializeOwned>(
        &self,
        keys: &[StateKey<T>],
    ) -> Result<BTreeMap<String, T>, StateError> {
        let names: Vec<String> = keys.iter().map(|key| key.name().to_string()).collect();
        let mut found = self.get_many(&names).await?;
        keys.iter()
            .filter_map(|key| {
                found
                    .remove(key.name())
                    .map(|bytes| Ok((key.name().to_string(), key.decode(&bytes)?)))
            })
            .collect()
    }

    /// The keys of `prefix`'s family in key order, after suffix `after`,
    /// at most `limit`: (suffix, value).
    pub async fn load_prefix<T: DeserializeOwned>(
        &self,
        prefix: &StatePrefix<T>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StateError> {
        let after = after.map(|suffix| format!("{}{suffix}", prefix.prefix()));
        self.scan(prefix.prefix(), after.as_deref(), limit)
            .await?
            .into_iter()
            .map(|(key, bytes)| {
                let suffix = prefix.suffix(&key).unwrap_or_default().to_string();
                Ok((suffix.clone(), prefix.key(&suffix).decode(&bytes)?))
            })
            .collect()
    }

    /// State that is always empty: dry runs of a job with no state yet,
    /// tests, benchmarks.
    pub fn empty() -> Self {
        Self(Arc::new(EmptyState))
    }
}

impl fmt::Debug for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobState")
    }
}

struct EmptyState;

#[async_trait]
impl StateRead for EmptyState {
    async fn get_many(&self, _keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError> {
        Ok(HashMap::new())
    }

    async fn scan(
        &self,
        _prefix: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        Ok(Vec::new())
    }
}

/// One change to the schedule's state, applied at a checkpoint or at the
/// run's end. Made by [`StateKey::put`] and [`StateKey::delete`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateWrite {
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

impl StateWrite {
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            key: key.into(),
            value: Some(value),
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: None,
        }
    }
}

/// The state could not be read, an entry did not decode, or a value did
/// not serialize; the message names the key where there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("job state: {0}")]
pub struct StateError(pub String);

/// Longest key the runner stores.
pub const MAX_STATE_KEY_LEN: usize = 512;

/// Writes kept in memory over a stored state: a dry run's checkpoints,
/// which its later reads see but nothing stores.
#[derive(Debug, Default)]
pub(crate) struct Overlay(Mutex<BTreeMap<String, Option<Vec<u8>>>>);

impl Overlay {
    pub(crate) fn apply(&self, writes: &[StateWrite]) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for write in writes {
            map.insert(write.key.clone(), write.value.clone());
        }
    }
}

/// `overlay` over `base`: the overlay's puts and deletes win.
pub(crate) struct Layered {
    pub base: JobState,
    pub overlay: Arc<Overlay>,
}

#[async_trait]
impl StateRead for Layered {
    async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError> {
        let (mut found, rest) = {
            let overlay = self
                .overlay
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let found: HashMap<String, Vec<u8>> = keys
                .iter()
                .filter_map(|key| match overlay.get(key) {
                    Some(Some(value)) => Some((key.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            let rest: Vec<String> = keys
                .iter()
                .filter(|key| !overlay.contains_key(*key))
                .cloned()
                .collect();
            (found, rest)
        };
        found.extend(self.base.get_many(&rest).await?);
        Ok(found)
    }

    async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let in_range = |key: &str| key.starts_with(prefix) && after.is_none_or(|after| key > after);
        let layer: BTreeMap<String, Option<Vec<u8>>> = {
            let overlay = self
                .overlay
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            overlay
                .iter()
                .filter(|(key, _)| in_range(key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        // Each overlay key may hide one stored row: read that many more.
        let stored = self
            .base
            .scan(prefix, after, limit.saturating_add(layer.len()))
            .await?;
        let mut merged: BTreeMap<String, Vec<u8>> = stored
            .into_iter()
            .filter(|(key, _)| !layer.contains_key(key))
            .collect();
        merged.extend(
            layer
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value))),
        );
        Ok(merged.into_iter().take(limit).collect())
    }
}

/// A schedule's state in memory, for tests and tools that run a job
/// outside the runner: readable as [`StateRead`], written by checkpoints
/// (as a [`CheckpointLog`]) and by [`apply`](Self::apply) (a run's end).
#[derive(Debug, Default)]
pub struct MemoryState(Mutex<BTreeMap<String, Vec<u8>>>);

impl MemoryState {
    /// Applies writes in order, as the runner does.
    pub fn apply(&self, writes: &[StateWrite]) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for write in writes {
            match &write.value {
                Some(value) => map.insert(write.key.clone(), value.clone()),
                None => map.remove(&write.key),
            };
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key and value, in key order.
    pub fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl StateRead for MemoryState {
    async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, StateError> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys
            .iter()
            .filter_map(|key| map.get(key).map(|value| (key.clone(), value.clone())))
            .collect())
    }

    async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(key, _)| after.is_none_or(|after| key.as_str() > after))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

#[async_trait]
impl CheckpointLog for MemoryState {
    async fn commit(
        &self,
        _run: &CheckpointRun,
        writes: &[StateWrite],
        _at: DateTime<Utc>,
    ) -> Result<(), CheckpointError> {
        self.apply(writes);
        Ok(())
    }
}
