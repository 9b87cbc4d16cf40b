//! A table's change streams in one run: new events read from both mirrors'
//! files from their cursors, fed to the joiner (`cdc.rs`), the verdicts
//! taken at the run's time, and the joiner and cursors written back as job
//! state with the run's record.

use std::path::PathBuf;

use patrol_job_api::units::HumanDuration;
use patrol_job_api::{BuildContext, JobState, ParamError, StatePrefix, StateWrite};
use patrol_job_kit::http_auth::{
    anchor_files, check_headers, header_pairs, resolve_for_run, resolve_headers, SecretHeaders,
};
use patrol_job_kit::http_stream::{fetch_since, HttpBody, HttpCursor};
use patrol_job_kit::SourceStats;
use serde::{Deserialize, Serialize};

use crate::cdc::{Joiner, LagStats, Windows};
use crate::debezium::{self, Parsed};
use crate::events::{self, Cursors};
use crate::residency::{self, Homes, Regions};
use crate::snapshot::{Diff, Side};
use crate::TableSpec;

/// Where one mirror's change events come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum ChangeSource {
    /// An NDJSON file, or a folder of `.ndjson`/`.jsonl` files.
    Files(PathBuf),
    /// An endpoint answering NDJSON (`http://` or `https://`).
    Http(String),
}

impl From<String> for ChangeSource {
    fn from(text: String) -> Self {
        if text.starts_with("http://") || text.starts_with("https://") {
            ChangeSource::Http(text)
        } else {
            ChangeSource::Files(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for ChangeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeSource::Files(path) => write!(f, "{}", path.display()),
            // Never the credentials or query a URL may carry.
            ChangeSource::Http(url) => f.write_str(&patrol_job_kit::http::endpoint(url)),
        }
    }
}

/// `cdc:` of a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcSpec {
    /// The left mirror's Debezium events: an NDJSON file, a folder of
    /// `.ndjson`/`.jsonl` files, or an `http(s)://` endpoint answering
    /// NDJSON (resumed by `X-Next-Cursor`/`?since=`, else by line count).
    pub left: ChangeSource,
    pub right: ChangeSource,
    /// Headers sent to HTTP sources (`env:`/`file:` secrets, e.g. a token).
    #[serde(default)]
    pub headers: SecretHeaders,
    /// How long one HTTP answer may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
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

fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
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
        for (side, source) in [("left", &self.left), ("right", &self.right)] {
            if let ChangeSource::Http(url) = source {
                match patrol_job_kit::check::http_url(url) {
                    Ok(()) => errors.extend(check_headers(url, &self.headers, field)),
                    Err(message) => {
                        errors.push(ParamError::new(format!("{field}.{side}"), message))
                    }
                }
            }
        }
        errors
    }

    /// Anchors relative paths at the schedule's folder and checks that the
    /// files are there and the headers' secrets can be read.
    pub fn build(&mut self, ctx: &BuildContext, field: &str) -> Vec<ParamError> {
        let mut errors = Vec::new();
        for (side, source) in [("left", &mut self.left), ("right", &mut self.right)] {
            if let ChangeSource::Files(path) = source {
                *path = ctx.path(path);
                if !path.exists() {
                    errors.push(ParamError::new(
                        format!("{field}.{side}"),
                        format!("{}: no such file or folder", path.display()),
                    ));
                }
            }
        }
        anchor_files(&mut self.headers, ctx);
        if let Err(problems) = resolve_headers(&self.headers, field, ctx.base_dir()) {
            errors.extend(problems);
        }
        errors
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
    /// Where HTTP sources stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left_http: Option<HttpCursor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    right_http: Option<HttpCursor>,
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
/// `now_ms`; with the tenants' homes and the copies' regions, changes made
/// first or only outside a tenant's home are cross-region writes.
pub async fn run(
    table: &TableSpec,
    spec: &CdcSpec,
    state: &JobState,
    now_ms: i64,
    residency: Option<(Homes, Regions)>,
) -> Result<CdcOutcome, String> {
    let key = STORED.key(&table.name);
    let stored: Stored = state
        .load(&key)
        .await
        .map_err(|err| err.to_string())?
        .unwrap_or_default();
    // HTTP answers are fetched first; the join then reads them like files.
    let answers = [
        fetch(&spec.left, spec, stored.left_http.as_ref()).await?,
        fetch(&spec.right, spec, stored.right_http.as_ref()).await?,
    ];
    let (table, spec) = (table.clone(), spec.clone());
    tokio::task::spawn_blocking(move || {
        join(
            &table,
            &spec,
            stored,
            answers,
            now_ms,
            &key,
            residency.as_ref(),
        )
    })
    .await
    .map_err(|err| format!("CDC join panicked: {err}"))?
}

/// Largest HTTP answer read; a bigger one fails the table (said, never
/// truncated). A server that sends `X-Next-Cursor` keeps answers small.
const MAX_BODY: usize = 256 << 20;

/// The new part of an HTTP source (none for files).
async fn fetch(
    source: &ChangeSource,
    spec: &CdcSpec,
    cursor: Option<&HttpCursor>,
) -> Result<Option<HttpBody>, String> {
    let ChangeSource::Http(url) = source else {
        return Ok(None);
    };
    // Read at every run: a rotated token file takes effect without a reload.
    let headers = resolve_for_run(&spec.headers)?;
    let cursor = cursor.cloned().unwrap_or_default();
    fetch_since(
        url,
        &header_pairs(&headers),
        &cursor,
        spec.timeout.0,
        MAX_BODY,
    )
    .await
    .map(Some)
    .map_err(|err| err.to_string())
}

fn join(
    table: &TableSpec,
    spec: &CdcSpec,
    mut stored: Stored,
    answers: [Option<HttpBody>; 2],
    now_ms: i64,
    key: &patrol_job_api::StateKey<Stored>,
    residency: Option<&(Homes, Regions)>,
) -> Result<CdcOutcome, String> {
    let source_table = spec.source_table.as_deref().unwrap_or(&table.name);
    let mut outcome = CdcOutcome::default();
    let mut agreements = Vec::new();
    for (side, answer) in [Side::Left, Side::Right].into_iter().zip(answers) {
        let source = match side {
            Side::Left => &spec.left,
            Side::Right => &spec.right,
        };
        let mut stats = SourceStats::default();
        let joiner = &mut stored.joiner;
        let mut on_line = |file: &str, number: u64, line: Option<&[u8]>| {
            let Some(line) = line else {
                stats.malformed_line(|| {
                    format!("{file}:{number}: longer than {} bytes", events::MAX_LINE)
                });
                return;
            };
            match debezium::parse(line, source_table, &table.key, table.columns.as_deref()) {
                // A change both sides already agreed on, delivered again.
                Ok(Parsed::Change(change)) if joiner.is_replay(&change) => stats.skipped += 1,
                Ok(Parsed::Change(change)) => {
                    stats.events += 1;
                    agreements.extend(joiner.observe(side, change));
                }
                Ok(Parsed::Skipped) => stats.skipped += 1,
                Err(why) => stats.malformed_line(|| format!("{file}:{number}: {why}")),
            }
        };
        let read = match (source, answer) {
            (ChangeSource::Files(path), _) => {
                let cursors = match side {
                    Side::Left => &stored.left,
                    Side::Right => &stored.right,
                };
                let (next, read) = events::read_new(path, cursors, &mut on_line)?;
                match side {
                    Side::Left => stored.left = next,
                    Side::Right => stored.right = next,
                }
                read
            }
            (ChangeSource::Http(_), Some(answer)) => {
                let slot = match side {
                    Side::Left => &mut stored.left_http,
                    Side::Right => &mut stored.right_http,
                };
                let cursor = slot.clone().unwrap_or_default();
                let (next, read) =
                    events::read_answer(&source.to_string(), &answer, &cursor, &mut on_line);
                *slot = Some(next);
                read
            }
            (ChangeSource::Http(_), None) => return Err(format!("{source}: not fetched")),
        };
        stats.lines = read.lines;
        stats.files = read.files as u64;
        stats.restarted_files = read.restarted.len() as u64;
        stats.more_waiting = read.more_waiting;
        match side {
            Side::Left => outcome.left = stats,
            Side::Right => outcome.right = stats,
        }
    }
    let made_outside_home = |agreed: &crate::cdc::Agreed| {
        let (Some((homes, regions)), Some(first)) = (residency, agreed.first) else {
            return false;
        };
        let key: Vec<_> = table.key.iter().cloned().zip(agreed.key.clone()).collect();
        residency::outside_home(&key, first, homes, regions).is_some()
    };
    stored
        .joiner
        .note_matches(&agreements, now_ms, spec.windows(), made_outside_home);
    let mut verdicts = stored.joiner.verdicts(now_ms, spec.windows(), &table.key);
    if let Some((homes, regions)) = residency {
        residency::classify(&mut verdicts.diffs, homes, regions);
        let held = verdicts
            .diffs
            .iter_mut()
            .filter(|d| d.reason == crate::snapshot::Reason::CrossRegionWrite);
        for diff in held {
            if let (Some(side), None) = (diff.side, &diff.regions) {
                diff.regions = residency::outside_home(&diff.key, side, homes, regions);
            }
        }
    }
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
