//! Audit events in, as polars batches of one shape whatever the format:
//! `ts` (i64, milliseconds since the epoch, UTC), `subject`, `action`,
//! `decision`, `region`, `tenant` (strings, never null), `trace_id` and
//! `step_up` (strings, may be null). Rows that cannot take that shape are
//! counted per source with the first few reasons, never passed on and never
//! fatal.
//!
//! NDJSON is parsed here, line by line in parallel chunks, because polars'
//! reader fails a whole file on one bad line; CSV and Parquet are scanned
//! by polars' streaming engine. Either way at most one batch (about
//! [`BATCH_ROWS`] rows) per worker is held at a time.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use patrol_job_kit::{table, LineReader, Piece};

use polars::prelude::*;
use serde::Deserialize;

/// Rows per batch handed to the aggregation.
pub const BATCH_ROWS: usize = 1 << 20;
/// Longest NDJSON line taken; a longer one is malformed (an audit event is
/// a few hundred bytes).
pub const MAX_LINE: usize = patrol_job_kit::DEFAULT_MAX_LINE;

/// Columns every event must have, in batch order.
pub const REQUIRED: [&str; 5] = ["subject", "action", "decision", "region", "tenant"];
/// Columns an event may lack.
pub const OPTIONAL: [&str; 2] = ["trace_id", "step_up"];

/// What reading one source found (malformed: lines or rows that could not
/// take the batch shape).
pub use patrol_job_kit::SourceStats;

/// Where batches go.
pub trait BatchSink: Send {
    fn batch(&mut self, frame: DataFrame) -> Result<(), String>;
}

pub use patrol_job_kit::table::{data_files as event_files, Format};

/// Reads every event file under `path` into `sink`. Events stamped after
/// `latest` (ms since the epoch) are bad rows (see [`latest_plausible`]).
pub fn read_files(
    path: &Path,
    latest: i64,
    sink: &mut dyn BatchSink,
) -> Result<SourceStats, String> {
    let mut stats = SourceStats::default();
    for file in event_files(path)? {
        let name = file.display().to_string();
        let found = match Format::of(&file) {
            Some(Format::Ndjson) => {
                let reader = File::open(&file).map_err(|err| format!("{name}: {err}"))?;
                read_ndjson(&name, reader, latest, sink)
            }
            Some(Format::Csv | Format::Parquet) => {
                read_scanned(&name, table::scan(&file)?, latest, sink)
            }
            None => continue,
        }?;
        stats.merge(found);
        stats.files += 1;
    }
    Ok(stats)
}

/// Streams a polars scan through the shape check into `sink`.
fn read_scanned(
    name: &str,
    mut scan: LazyFrame,
    latest: i64,
    sink: &mut dyn BatchSink,
) -> Result<SourceStats, String> {
    let fail = |err: PolarsError| format!("{name}: {err}");
    let schema = scan.collect_schema().map_err(fail)?;
    let mut missing = Vec::new();
    for column in std::iter::once("ts").chain(REQUIRED) {
        if schema.get(column).is_none() {
            missing.push(column);
        }
    }
    if !missing.is_empty() {
        // A file without a required column has no usable row: that is a
        // problem with the file, reported as such.
        return Err(format!(
            "{name}: no column {} (columns: {})",
            missing.join(", "),
            schema
                .iter_names()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let ts = match schema.get("ts") {
        Some(DataType::String) => col("ts")
            .str()
            .to_datetime(
                Some(TimeUnit::Milliseconds),
                Some(TimeZone::UTC),
                StrptimeOptions {
                    strict: false,
                    ..Default::default()
                },
                lit("raise"),
            )
            .cast(DataType::Int64),
        Some(DataType::Datetime(_, _)) => col("ts")
            .cast(DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(TimeZone::UTC),
            ))
            .cast(DataType::Int64),
        // Integers are taken as milliseconds since the epoch.
        _ => col("ts").strict_cast(DataType::Int64),
    };
    let mut columns = vec![col("__row"), ts.alias("ts")];
    columns.extend(REQUIRED.map(|c| col(c).cast(DataType::String)));
    for optional in OPTIONAL {
        columns.push(if schema.get(optional).is_some() {
            col(optional).cast(DataType::String)
        } else {
            lit(NULL).cast(DataType::String).alias(optional)
        });
    }
    let shaped = scan.with_row_index("__row", Some(1)).select(columns);
    let mut stats = SourceStats::default();
    table::stream_batches(name, shaped, BATCH_ROWS, |frame| {
        let frame = checked_rows(name, frame, latest, &mut stats).map_err(fail)?;
        if frame.height() > 0 {
            stats.events += frame.height() as u64;
            sink.batch(frame)?;
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Drops (and counts) rows lacking `ts` or a required column.
fn checked_rows(
    name: &str,
    frame: DataFrame,
    latest: i64,
    stats: &mut SourceStats,
) -> PolarsResult<DataFrame> {
    let ts_ms = frame.column("ts")?.i64()?.clone();
    let future = ts_ms.gt(latest);
    let mut bad = &frame.column("ts")?.is_null() | &future;
    for column in REQUIRED {
        bad = &bad | &frame.column(column)?.is_null();
    }
    if bad.any() {
        let rows = frame.column("__row")?.u32()?.clone();
        let ts = frame.column("ts")?.clone();
        for (index, is_bad) in bad.iter().enumerate() {
            if is_bad != Some(true) {
                continue;
            }
            let row = rows.get(index).unwrap_or(0);
            let reason = if ts.get(index).map(|v| v.is_null()).unwrap_or(true) {
                "ts missing or not a timestamp".to_string()
            } else if future.get(index) == Some(true) {
                "ts is more than a day in the future".to_string()
            } else {
                let missing: Vec<&str> = REQUIRED
                    .into_iter()
                    .filter(|c| {
                        frame
                            .column(c)
                            .and_then(|s| s.get(index).map(|v| v.is_null()))
                            .unwrap_or(true)
                    })
                    .collect();
                format!("missing {}", missing.join(", "))
            };
            stats.malformed_line(|| format!("{name}: row {row}: {reason}"));
        }
    }
    let good = frame.filter(&!bad)?;
    good.drop("__row")
}

/// One NDJSON event as read; strings borrowed from the line where they
/// need no unescaping.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    decision: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    region: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    trace_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    step_up: Option<std::borrow::Cow<'a, str>>,
}

/// Reads NDJSON from `reader`: chunks of whole lines, parsed on every core.
/// A line longer than [`MAX_LINE`] is a bad row, read through in bounded
/// memory.
pub fn read_ndjson(
    name: &str,
    reader: impl Read,
    latest: i64,
    sink: &mut dyn BatchSink,
) -> Result<SourceStats, String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut lines = LineReader::new(reader).max_line(MAX_LINE);
    let mut stats = SourceStats::default();
    let mut done = false;
    while !done {
        // Up to one chunk per worker; overlong lines keep their place so
        // the samples stay in file order.
        let mut pieces: Vec<Piece> = Vec::new();
        let mut chunks = 0;
        while chunks < workers {
            match lines.next_piece(CHUNK_BYTES, u64::MAX) {
                Ok(Some(piece)) => {
                    chunks += usize::from(matches!(piece, Piece::Lines { .. }));
                    pieces.push(piece);
                }
                Ok(None) => {
                    done = true;
                    break;
                }
                Err(err) => return Err(format!("{name}: {err}")),
            }
        }
        let parsed: Vec<Option<Result<(DataFrame, SourceStats), String>>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Lines {
                            first_line, bytes, ..
                        } => {
                            Some(scope.spawn(move || parse_chunk(name, *first_line, bytes, latest)))
                        }
                        Piece::Overlong { .. } => None,
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| {
                        handle.map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(format!("{name}: parser panicked")))
                        })
                    })
                    .collect()
            });
        for (piece, result) in pieces.iter().zip(parsed) {
            match (piece, result) {
                (Piece::Overlong { line, .. }, _) => {
                    let problem = piece.problem().unwrap_or_default();
                    stats.malformed_line(|| format!("{name}:{line}: {problem}"));
                }
                (Piece::Lines { .. }, Some(result)) => {
                    let (frame, found) = result?;
                    stats.merge(found);
                    if frame.height() > 0 {
                        sink.batch(frame)?;
                    }
                }
                (Piece::Lines { .. }, None) => {}
            }
        }
    }
    Ok(stats)
}

const CHUNK_BYTES: usize = 64 << 20;

/// Parses a chunk of whole lines into one batch.
fn parse_chunk(
    name: &str,
    first_line: u64,
    chunk: &[u8],
    latest: i64,
) -> Result<(DataFrame, SourceStats), String> {
    let mut stats = SourceStats::default();
    // Strings go straight from the line into polars' buffers: no owned
    // String per field.
    let rows = memchr::memchr_iter(b'\n', chunk).count() + 1;
    let mut ts: Vec<i64> = Vec::with_capacity(rows);
    let mut required: Vec<StringChunkedBuilder> = REQUIRED
        .iter()
        .map(|name| StringChunkedBuilder::new((*name).into(), rows))
        .collect();
    let mut optional: Vec<StringChunkedBuilder> = OPTIONAL
        .iter()
        .map(|name| StringChunkedBuilder::new((*name).into(), rows))
        .collect();
    for (offset, raw) in chunk.split(|b| *b == b'\n').enumerate() {
        let line_no = first_line + offset as u64;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = match serde_json::from_slice(raw) {
            Ok(line) => line,
            Err(err) => {
                stats.malformed_line(|| format!("{name}:{line_no}: not a JSON object ({err})"));
                continue;
            }
        };
        let Some(millis) = line.ts.as_deref().and_then(parse_ts) else {
            stats
                .malformed_line(|| format!("{name}:{line_no}: ts missing or not an RFC 3339 time"));
            continue;
        };
        if millis > latest {
            stats.malformed_line(|| {
                format!("{name}:{line_no}: ts is more than a day in the future")
            });
            continue;
        }
        let fields = [
            &line.subject,
            &line.action,
            &line.decision,
            &line.region,
            &line.tenant,
        ];
        if let Some(missing) = REQUIRED
            .iter()
            .zip(&fields)
            .find(|(_, value)| value.as_deref().is_none_or(str::is_empty))
        {
            stats.malformed_line(|| format!("{name}:{line_no}: missing {}", missing.0));
            continue;
        }
        ts.push(millis);
        for (column, value) in required.iter_mut().zip(fields) {
            column.append_value(value.as_deref().unwrap_or_default());
        }
        for (column, value) in optional.iter_mut().zip([&line.trace_id, &line.step_up]) {
            match value.as_deref() {
                Some(value) => column.append_value(value),
                None => column.append_null(),
            }
        }
    }
    stats.events = ts.len() as u64;
    let mut columns = vec![Column::new("ts".into(), ts)];
    columns.extend(required.into_iter().map(|b| b.finish().into_column()));
    columns.extend(optional.into_iter().map(|b| b.finish().into_column()));
    let frame = DataFrame::new_infer_height(columns).map_err(|err| format!("{name}: {err}"))?;
    Ok((frame, stats))
}

/// Events stamped later than this (ms) are bad rows: a clock or parsing
/// error one day ahead would otherwise stretch every series to that day.
/// `now` is the run's clock.
pub fn latest_plausible(now: chrono::DateTime<chrono::Utc>) -> i64 {
    now.timestamp_millis() + 24 * 3600 * 1000
}

/// RFC 3339 (`2026-11-02T10:00:03.120Z`, any offset) to epoch milliseconds.
pub fn parse_ts(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}
