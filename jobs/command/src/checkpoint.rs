//! Checkpoints of a program: each `{"checkpoint": VALUE}` line of its
//! stdout is committed at once to the schedule's state, under one key; the
//! next run starts with the last committed value in `PATROL_CHECKPOINT`
//! (its JSON text), so a script can resume where a killed or timed-out run
//! stopped. `{"checkpoint": null}` clears it.

use patrol_job_api::{Checkpoints, JobError, JobState, StateKey};
use serde::Serialize;

/// The one key a `command` schedule's checkpoint is kept under.
pub const CHECKPOINT: StateKey<serde_json::Value> = StateKey::new("checkpoint");

/// The environment variable the last committed value is handed over in.
pub const ENV: &str = "PATROL_CHECKPOINT";

/// The last committed checkpoint, as the JSON text the program gets.
pub async fn last_committed(state: &JobState) -> Result<Option<String>, JobError> {
    let value = state
        .load(&CHECKPOINT)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read the last checkpoint: {err}")))?;
    Ok(value.map(|value| value.to_string()))
}

/// What became of the checkpoints a program printed.
#[derive(Debug, Default, Serialize)]
pub struct Committed {
    pub committed: usize,
    pub failed: usize,
    /// Why the first one that failed was not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Committed {
    /// Commits `value` now (a null clears the checkpoint).
    pub async fn commit(&mut self, checkpoints: &Checkpoints, value: serde_json::Value) {
        let write = if value.is_null() {
            Ok(CHECKPOINT.delete())
        } else {
            CHECKPOINT.put(&value).map_err(|err| err.to_string())
        };
        let result = match write {
            Ok(write) => checkpoints
                .commit(vec![write])
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => self.committed += 1,
            Err(err) => {
                self.failed += 1;
                self.first_error.get_or_insert(err);
            }
        }
    }
}
