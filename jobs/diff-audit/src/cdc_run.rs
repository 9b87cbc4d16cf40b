//! A table's change streams in one run: new events read from both mirrors'
//! files from their cursors, fed to the joiner (`cdc.rs`), the verdicts
//! taken at the run's time, and the joiner and cursors written back as job
//! state with the run's record.

use std::path::PathBuf;

use patrol_job_api::units::HumanDuration;
use patrol_job_api::{BuildContext, JobState, ParamError, StatePrefix, StateWrite};
use patrol_job_kit::SourceStats;
use serde::{Deserialize, Serialize};

use crate::cdc::{Joiner, LagStats, Windows};
use crate::debezium::{self, Parsed};
use crate::events::{self, Cursors};
use crate::snapshot::{Diff, Side};
use crate::TableSpec;

/// `cdc:` of a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcSpec {
    /// The left mirror's Debezium events: an NDJSON file or a folder of
    /// `.ndjson`/`.jsonl` files.
    pub left: PathBuf,
    pub right: PathBuf,
    /// The events' `source.table` (default: the table's name).
    #[serde(default)]
    pub source_table: Option<String>,
    /// A change matched later than this is `late`.
    #[serde(default = "default_lag_window")]
    pub lag_window: HumanDuration,
    /// A change unmatched this long is `missing` on the other side.
    #[serde(default = "default_missing_after")]
    pub missing_after: HumanDuration,
    /// A late match stays reported this long (its finding resolves after
    /// an hour without late changes, instead of flapping).
    #[serde(default = "default_late_hold")]
    pub late_hold: HumanDuration,
}

fn default_late_hold() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3_600))
}

fn default_lag_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

fn default_missing_after() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

impl CdcSpec {
    pub fn validate(&self, field: &str) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if self.lag_window.0.is_zero() {
            errors.push(ParamError::new(
                format!("{field}.lag_window"),
                "must be longer than 0s",
            ));
        }
        if self.missing_after.0 < self.lag_window.0 {
            errors.push(ParamError::new(
                format!("{field}.missing_after"),
                "must be at least lag_window",
            ));
        }
        errors
    }

    pub fn anchor(&mut self, ctx: &BuildContext) {
        self.left = ctx.path(&self.left);
        self.right = ctx.path(&self.right);
    }

    pub fn check_paths(&self) -> Result<(), String> {
        for path in [&self.left, &self.right] {
            if !path.exists() {
                return Err(format!("{}: no such file or folder", path.display()));
            }
        }
        Ok(())
    }

    fn windows(&self) -> Windows {
        Windows {
            lag_window_ms: self.lag_window.0.as_millis() as i64,
            missing_after_ms: self.missing_after.0.as_millis() as i64,
            late_hold_ms: self.late_hold.0.as_millis() as i64,
        }
    }
}

/// What the joiner keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    joiner: Joiner,
    left: Cursors,
    right: Cursors,
}

/// One table's CDC run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CdcOutcome {
    #[serde(skip)]
    pub diffs: Vec<Diff>,
    pub left: SourceStats,
    pub right: SourceStats,
    /// Matched changes this run and their lag.
    pub lag: LagStats,
    /// Each matched change's lag (for the daily report).
    #[serde(skip)]
    pub lags: Vec<i64>,
    /// Keys in flight after the run, and those not yet past a window.
    pub pending: usize,
    pub waiting: usize,
    /// SHA-256 of the pending keys as stored: what the proof commits to.
    #[serde(skip)]
    pub commitment: String,
    #[serde(skip)]
    pub write: Option<StateWrite>,
}

/// `cdc/<table>`: the joiner and both sides' cursors.
const STORED: StatePrefix<Stored> = StatePrefix::new("cdc/");

/// Reads both streams' new events, joins them, and takes the verdicts at
/// `now_ms`.
pub async fn run(
    table: &TableSpec,
    spec: &CdcSpec,
    state: &JobState,
    now_ms: i64,
) -> Result<CdcOutcome, String> {
    let key = STORED.key(&table.name);
    let stored: Stored = state
        .load(&key)
        .await
        .map_err(|err| err.to_string())?
        .unwrap_or_default();
    let (table, spec) = (table.clone(), spec.clone());
    tokio::task::spawn_blocking(move || join(&table, &spec, stored, now_ms, &key))
        .await
        .map_err(|err| format!("CDC join panicked: {err}"))?
}

fn join(
    table: &TableSpec,
    spec: &CdcSpec,
    mut stored: Stored,
    now_ms: i64,
    key: &patrol_job_api::StateKey<Stored>,
) -> Result<CdcOutcome, String> {
    let source_table = spec.source_table.as_deref().unwrap_or(&table.name);
    let mut outcome = CdcOutcome::default();
    let mut agreements = Vec::new();
    for side in [Side::Left, Side::Right] {
        let (path, cursors) = match side {
            Side::Left => (&spec.left, &stored.left),
            Side::Right => (&spec.right, &stored.right),
        };
        let mut stats = SourceStats::default();
        let joiner = &mut stored.joiner;
        let (next, read) = events::read_new(path, cursors, |file, number, line| {
            let Some(line) = line else {
                stats.malformed_line(|| {
                    format!("{file}:{number}: longer than {} bytes", events::MAX_LINE)
                });
                return;
            };
            match debezium::parse(line, source_table, &table.key, table.columns.as_deref()) {
                Ok(Parsed::Change(change)) => {
                    stats.events += 1;
                    agreements.extend(joiner.observe(side, change));
                }
                Ok(Parsed::Skipped) => stats.skipped += 1,
                Err(why) => stats.malformed_line(|| format!("{file}:{number}: {why}")),
            }
        })?;
        stats.lines = read.lines;
        stats.files = read.files as u64;
        stats.restarted_files = read.restarted.len() as u64;
        stats.more_waiting = read.more_waiting;
        match side {
            Side::Left => {
                stored.left = next;
                outcome.left = stats;
            }
            Side::Right => {
                stored.right = next;
                outcome.right = stats;
            }
        }
    }
    stored
        .joiner
        .note_matches(&agreements, now_ms, spec.windows());
    let verdicts = stored.joiner.verdicts(now_ms, spec.windows(), &table.key);
    outcome.diffs = verdicts.diffs;
    outcome.waiting = verdicts.waiting;
    outcome.pending = stored.joiner.pending();
    let mut lags: Vec<i64> = agreements.iter().map(|a| a.lag_ms).collect();
    outcome.lag = LagStats::of(&mut lags);
    outcome.lags = lags;
    outcome.commitment = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(
            serde_json::to_vec(&stored.joiner).unwrap_or_default(),
        ))
    };
    outcome.write = Some(key.put(&stored).map_err(|err| err.to_string())?);
    Ok(outcome)
}
