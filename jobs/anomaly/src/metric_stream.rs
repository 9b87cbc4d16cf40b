//! Metric series read incrementally across runs: a CSV file that only
//! grows is read from where the last run stopped, and each column's
//! detector, open episode and budget come back from job state, so a
//! 1-minute schedule judges the new points only.
//!
//! The file is recognised by its first two lines (header and first row)
//! and must be at least as long as what was read; anything else (a rotated,
//! truncated or rewritten file, a Parquet file) is read whole again.
//! A last line without its newline is left for the next run: a writer may
//! be in the middle of it.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use patrol_anomaly_detect::{EpisodeTracker, LikelihoodDetector, Point};
use serde::{Deserialize, Serialize};

use crate::budget::BudgetState;
use crate::metrics::{parse_stamp, MetricSeries, MetricStats};

/// Bytes of the file's start that identify it.
const HEAD_BYTES: usize = 1024;
/// Most new bytes read in one run; more is read by the next runs.
const MAX_NEW_BYTES: u64 = 64 << 20;

/// What a series keeps between runs. Every run writes it without the
/// detectors (state key `series/<name>`, small); the whole of it, detectors
/// included, is a checkpoint (`series-model/<name>`) written when the file
/// was read whole and then every [`CHECKPOINT_RUNS`] runs or
/// [`CHECKPOINT_ROWS`] rows. Between checkpoints the job instance keeps the
/// detectors in memory; a node that starts (or finds the last run was not
/// its own) resumes from the checkpoint and re-judges the rows since, which
/// pages nothing twice (same episodes, same keys, same budget decisions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// The file as last read (CSV only).
    #[serde(default)]
    pub mark: Option<FileMark>,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnState>,
    /// Runs and rows since the last checkpoint.
    #[serde(default)]
    pub since_checkpoint: (u32, u64),
}

/// Runs between checkpoints of the detectors.
pub const CHECKPOINT_RUNS: u32 = 30;
/// New rows (of all columns) after which a run checkpoints anyway.
pub const CHECKPOINT_ROWS: u64 = 5_000;

impl SeriesState {
    /// The state without the detectors: what every run writes.
    pub fn without_detectors(&self) -> SeriesState {
        // Built field by field: cloning the detectors only to drop them
        // would copy tens of kilobytes per series every run.
        let columns = self
            .columns
            .iter()
            .map(|(name, column)| {
                let small = ColumnState {
                    detector: None,
                    tracker: column.tracker.clone(),
                    budget: column.budget.clone(),
                    last_ts: column.last_ts,
                    judged_end: column.judged_end,
                    step: column.step,
                };
                (name.clone(), small)
            })
            .collect();
        SeriesState {
            mark: self.mark.clone(),
            columns,
            since_checkpoint: self.since_checkpoint,
        }
    }

    /// Whether this (in-memory) state is where `latest` (the last run's
    /// written state) says the series is: same file position, same last
    /// point per column.
    pub fn continues(&self, latest: &SeriesState) -> bool {
        self.mark == latest.mark
            && self.columns.len() == latest.columns.len()
            && self.columns.iter().all(|(name, column)| {
                latest
                    .columns
                    .get(name)
                    .is_some_and(|other| other.last_ts == column.last_ts)
            })
    }
}

/// Where reading stopped in a file, and how to know it is the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    /// The header line and first row.
    pub head: String,
    /// Bytes read (up to the last whole line).
    pub offset: u64,
}

/// One value column between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnState {
    /// The detector after the last point judged (methods that judge one
    /// point at a time; others re-judge their history every run).
    #[serde(default)]
    pub detector: Option<LikelihoodDetector>,
    #[serde(default)]
    pub tracker: EpisodeTracker,
    #[serde(default)]
    pub budget: BudgetState,
    /// Timestamp of the last point judged.
    #[serde(default)]
    pub last_ts: Option<i64>,
    /// End (ms) of the last point judged: episodes closed by then were
    /// reported.
    #[serde(default)]
    pub judged_end: Option<i64>,
    /// The series' step (seconds), learnt when it was read whole.
    #[serde(default)]
    pub step: i64,
}

/// The identifying start of a file's bytes: up to the end of its second
/// line, at most [`HEAD_BYTES`]; `None` while it has no complete row.
pub fn head_of(bytes: &[u8]) -> Option<String> {
    let bytes = &bytes[..bytes.len().min(HEAD_BYTES)];
    let first = memchr::memchr(b'\n', bytes)?;
    let second =
        memchr::memchr(b'\n', &bytes[first + 1..]).map_or(bytes.len(), |at| first + 1 + at + 1);
    Some(String::from_utf8_lossy(&bytes[..second]).into_owned())
}

/// The length of `bytes` up to and including its last newline.
pub fn whole_lines(bytes: &[u8]) -> usize {
    memchr::memrchr(b'\n', bytes).map_or(0, |at| at + 1)
}

/// New rows of a CSV file read since `mark`, as series of the value
/// columns asked (`values` empty: every column but the timestamp and
/// labels), with the new mark; `None` when the file is not the one marked
/// (read it whole instead).
pub fn read_new_rows(
    path: &Path,
    timestamp: &str,
    values: &[String],
    mark: &FileMark,
) -> Result<Option<(Vec<MetricSeries>, MetricStats, FileMark)>, String> {
    let name = path.display().to_string();
    let fail = |err: std::io::Error| format!("{name}: {err}");
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    let mut start = vec![0u8; HEAD_BYTES.min(len as usize)];
    file.read_exact(&mut start).map_err(fail)?;
    if len < mark.offset || head_of(&start).as_deref() != Some(mark.head.as_str()) {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(mark.offset)).map_err(fail)?;
    let mut fresh = Vec::new();
    file.take(MAX_NEW_BYTES)
        .read_to_end(&mut fresh)
        .map_err(fail)?;
    let taken = whole_lines(&fresh);
    fresh.truncate(taken);
    let header = mark.head.lines().next().unwrap_or_default();
    let columns = split_csv_line(header);
    let Some(ts_at) = columns.iter().position(|c| c == timestamp) else {
        return Err(format!("{name}: no timestamp column `{timestamp}`"));
    };
    let wanted: Vec<(usize, String)> = if values.is_empty() {
        columns
            .iter()
            .enumerate()
            .filter(|(i, c)| *i != ts_at && !crate::metrics::is_label_column(c))
            .map(|(i, c)| (i, c.clone()))
            .collect()
    } else {
        let mut wanted = Vec::new();
        for value in values {
            match columns.iter().position(|c| c == value) {
                Some(i) => wanted.push((i, value.clone())),
                None => return Err(format!("{name}: no value column `{value}`")),
            }
        }
        wanted
    };
    let mut out: Vec<MetricSeries> = wanted
        .iter()
        .map(|(_, column)| MetricSeries {
            column: column.clone(),
            stamps: Vec::new(),
            points: Vec::new(),
        })
        .collect();
    let mut stats = MetricStats::default();
    let text = String::from_utf8_lossy(&fresh);
    // Line numbers for samples: unknown without counting the old part;
    // the byte offset names the row instead.
    let mut at = mark.offset;
    for line in text.split_inclusive('\n') {
        let row_at = at;
        at += line.len() as u64;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        stats.rows += 1;
        let fields = split_csv_line(line);
        let stamp = fields.get(ts_at).map(String::as_str).unwrap_or_default();
        let Some(ts) = seconds_of(stamp) else {
            stats.bad_rows += 1;
            note(
                &mut stats,
                format!("{name}: byte {row_at}: `{timestamp}` is not a time"),
            );
            continue;
        };
        for ((i, column), series) in wanted.iter().zip(out.iter_mut()) {
            let field = fields.get(*i).map(|f| f.trim()).unwrap_or_default();
            match field.parse::<f64>() {
                Ok(value) => {
                    series.stamps.push(stamp.to_string());
                    series.points.push(Point::new(ts, value));
                }
                Err(_) => {
                    stats.bad_rows += 1;
                    note(
                        &mut stats,
                        format!("{name}: byte {row_at}: `{column}` is not a number"),
                    );
                }
            }
        }
    }
    let mark = FileMark {
        head: mark.head.clone(),
        offset: mark.offset + taken as u64,
    };
    Ok(Some((out, stats, mark)))
}

fn note(stats: &mut MetricStats, sample: String) {
    if stats.samples.len() < 5 {
        stats.samples.push(sample);
    }
}

/// A time as [`parse_stamp`] reads it; integers as seconds, or
/// milliseconds when that large (as a whole-file read takes them).
fn seconds_of(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(v) if v > 100_000_000_000 => Some(v / 1000),
        Ok(v) => Some(v),
        Err(_) => parse_stamp(text),
    }
}

/// The fields of one CSV line (RFC 4180 quoting).
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_honour_quotes() {
        assert_eq!(
            split_csv_line(r#"2026-01-01,"a,b","say ""hi""",3"#),
            vec!["2026-01-01", "a,b", r#"say "hi""#, "3"]
        );
    }

    #[test]
    fn only_rows_after_the_mark_are_read_and_a_half_written_row_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpu.csv");
        let old = "timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:05:00,2\n";
        std::fs::write(&path, old).unwrap();
        let mark = FileMark {
            head: head_of(old.as_bytes()).unwrap(),
            offset: old.len() as u64,
        };
        let grown = format!(
            "{old}2026-01-01 00:10:00,3\nnot a time,4\n2026-01-01 00:20:00,oops\n2026-01-01 00:2"
        );
        std::fs::write(&path, &grown).unwrap();
        let (series, stats, next) = read_new_rows(&path, "timestamp", &[], &mark)
            .unwrap()
            .unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].points, vec![Point::new(1_767_226_200, 3.0)]);
        assert_eq!((stats.rows, stats.bad_rows), (3, 2));
        assert_eq!(next.offset as usize, grown.rfind('\n').unwrap() + 1);
        // Rewritten from scratch: not the marked file any more.
        std::fs::write(&path, "timestamp,value\n2026-02-01 00:00:00,9\n").unwrap();
        assert!(read_new_rows(&path, "timestamp", &[], &next)
            .unwrap()
            .is_none());
    }
}
