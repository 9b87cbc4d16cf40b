//! State a job keeps between runs of its schedule (cursors, correlation
//! tables), stored in the runner's ledger.
//!
//! Reads happen during the run through [`RunContext::state`]; writes are
//! handed back in [`RunReport::state`](crate::RunReport) and committed by
//! the runner in the same transaction as the run's end and its findings.
//! So a cursor never advances past events whose findings were not
//! recorded: a crash re-reads, never skips.
//!
//! [`RunContext::state`]: crate::RunContext

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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

/// One change to the schedule's state, applied at the run's end.
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

/// The state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("job state: {0}")]
pub struct StateError(pub String);

/// Longest key the runner stores.
pub const MAX_STATE_KEY_LEN: usize = 512;
