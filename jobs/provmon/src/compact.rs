//! Small collections for chains. A chain holds a handful of stages and
//! links; `BTreeMap`/`BTreeSet` allocate a whole node (hundreds of bytes)
//! for the first entry, which over hundreds of thousands of chains costs
//! more than the correlation itself. These keep entries in one small,
//! sorted `Vec` and serialize exactly as the map/set would.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chain::StageLog;
use crate::event::Stage;

/// Stage → log, at most one per stage, in pipeline order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages(Vec<(Stage, StageLog)>);

impl Stages {
    pub fn get(&self, stage: &Stage) -> Option<&StageLog> {
        self.0
            .iter()
            .find(|(present, _)| present == stage)
            .map(|(_, log)| log)
    }

    pub fn contains_key(&self, stage: &Stage) -> bool {
        self.get(stage).is_some()
    }

    /// The log of `stage`, created by `new` when absent.
    pub fn upsert(
        &mut self,
        stage: Stage,
        new: impl FnOnce() -> StageLog,
        update: impl FnOnce(&mut StageLog),
    ) {
        match self.0.binary_search_by(|(present, _)| present.cmp(&stage)) {
            Ok(at) => update(&mut self.0[at].1),
            Err(at) => self.0.insert(at, (stage, new())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (Stage, &StageLog)> {
        self.0.iter().map(|(stage, log)| (*stage, log))
    }
}

impl Serialize for Stages {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(stage, log)| (stage, log)))
    }
}

impl<'de> Deserialize<'de> for Stages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<Stage, StageLog>::deserialize(deserializer)?;
        Ok(Stages(map.into_iter().collect()))
    }
}

/// A sorted set of identifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Links(Vec<String>);

impl Links {
    pub fn contains(&self, value: &str) -> bool {
        self.0
            .binary_search_by(|present| present.as_str().cmp(value))
            .is_ok()
    }

    /// Adds `value` unless present; false if it was.
    pub fn insert(&mut self, value: &str) -> bool {
        match self
            .0
            .binary_search_by(|present| present.as_str().cmp(value))
        {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, value.to_string());
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Links {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut values = Vec::<String>::deserialize(deserializer)?;
        values.sort_unstable();
        values.dedup();
        Ok(Links(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_sorted_and_unique_and_serialize_as_a_list() {
        let mut links = Links::default();
        for value in ["b", "a", "c", "a"] {
            links.insert(value);
        }
        assert_eq!(serde_json::to_string(&links).unwrap(), r#"["a","b","c"]"#);
        let back: Links = serde_json::from_str(r#"["c","a","c"]"#).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.contains("c") && !back.contains("b"));
    }
}
