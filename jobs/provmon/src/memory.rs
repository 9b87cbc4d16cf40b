//! An in-memory job state, for tests and the bench: the runner's ledger
//! store without the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use patrol_job_api::{StateError, StateRead, StateWrite};

#[derive(Debug, Default)]
pub struct MemoryState(Mutex<BTreeMap<String, Vec<u8>>>);

impl MemoryState {
    /// Applies a run's writes, as the runner does at the run's end.
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
