//! Generic metric series (CSV or Parquet: a timestamp column and one or
//! more value columns), so the detector serves any operational metric.
//! Each value column is judged on its own and written out point by point
//! (`timestamp,value,baseline,score,is_anomaly`) for inspection and scoring.

use std::path::Path;

use patrol_anomaly_detect::{Point, Scored};

use crate::metric_stream::{head_of, whole_lines, FileMark};
use polars::prelude::*;

/// One value column of a series file, ready to judge.
#[derive(Debug, Clone)]
pub struct MetricSeries {
    pub column: String,
    /// Timestamps as written (for the detections file), parallel to `points`.
    pub stamps: Vec<String>,
    pub points: Vec<Point>,
}

/// What reading a series file found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricStats {
    pub rows: u64,
    pub bad_rows: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

/// The columns never judged as values.
pub fn is_label_column(name: &str) -> bool {
    matches!(name, "label" | "is_anomaly" | "changepoint")
}

/// Reads `path`; `values` empty means every numeric column but the
/// timestamp and label columns (`label`, `is_anomaly`, `changepoint`).
/// A CSV file is read up to its last whole line, and the mark returned
/// says where that is (for [`crate::metric_stream::read_new_rows`]).
pub fn read_series(
    path: &Path,
    timestamp: &str,
    values: &[String],
) -> Result<(Vec<MetricSeries>, MetricStats, Option<FileMark>), String> {
    let name = path.display().to_string();
    let fail = |err: PolarsError| format!("{name}: {err}");
    let (frame, mark) = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let lazy = LazyFrame::scan_parquet(
                PlRefPath::new(path.to_string_lossy().as_ref()),
                ScanArgsParquet::default(),
            )
            .map_err(fail)?;
            (lazy.collect().map_err(fail)?, None)
        }
        Some("csv") => {
            let mut bytes = std::fs::read(path).map_err(|err| format!("{name}: {err}"))?;
            // A writer may be in the middle of the last line: the next
            // run reads it whole.
            bytes.truncate(whole_lines(&bytes));
            let mark = head_of(&bytes).map(|head| FileMark {
                head,
                offset: bytes.len() as u64,
            });
            let frame = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(10_000))
                .into_reader_with_file_handle(std::io::Cursor::new(bytes))
                .finish()
                .map_err(fail)?;
            (frame, mark)
        }
        _ => return Err(format!("{name}: a series is a .csv or .parquet file")),
    };
    let stamps_col = frame
        .column(timestamp)
        .map_err(|_| format!("{name}: no timestamp column `{timestamp}`"))?;
    let (stamps, seconds) = timestamps(stamps_col).map_err(fail)?;
    let columns: Vec<String> = if values.is_empty() {
        frame
            .columns()
            .iter()
            .filter(|c| c.name().as_str() != timestamp)
            .filter(|c| !is_label_column(c.name().as_str()))
            .filter(|c| c.dtype().is_primitive_numeric())
            .map(|c| c.name().to_string())
            .collect()
    } else {
        values.to_vec()
    };
    if columns.is_empty() {
        return Err(format!("{name}: no numeric value column"));
    }
    let mut stats = MetricStats {
        rows: frame.height() as u64,
        ..MetricStats::default()
    };
    let mut out = Vec::new();
    for column in columns {
        let values = frame
            .column(&column)
            .map_err(|_| format!("{name}: no value column `{column}`"))?
            .cast(&DataType::Float64)
            .map_err(fail)?;
        let values = values.f64().map_err(fail)?;
        let mut series = MetricSeries {
            column: column.clone(),
            stamps: Vec::with_capacity(frame.height()),
            points: Vec::with_capacity(frame.height()),
        };
        for row in 0..frame.height() {
            let (Some(ts), Some(value)) = (seconds[row], values.get(row)) else {
                stats.bad_rows += 1;
                if stats.samples.len() < 5 {
                    let what = if seconds[row].is_none() {
                        format!("`{timestamp}` is not a time")
                    } else {
                        format!("`{column}` is not a number")
                    };
                    stats
                        .samples
                        .push(format!("{name}: row {}: {what}", row + 2));
                }
                continue;
            };
            series.stamps.push(stamps[row].clone());
            series.points.push(Point::new(ts, value));
        }
        // The detector wants time order; files are usually sorted already.
        let mut order: Vec<usize> = (0..series.points.len()).collect();
        order.sort_by_key(|&i| series.points[i].ts);
        if order.windows(2).any(|w| w[0] > w[1]) {
            series.points = order.iter().map(|&i| series.points[i]).collect();
            series.stamps = order.iter().map(|&i| series.stamps[i].clone()).collect();
        }
        out.push(series);
    }
    Ok((out, stats, mark))
}

/// Text as written and seconds since the epoch (integers are taken as
/// seconds, or milliseconds when that large; plain indices stay indices).
fn timestamps(column: &Column) -> PolarsResult<(Vec<String>, Vec<Option<i64>>)> {
    let height = column.len();
    let text = column.cast(&DataType::String)?;
    let text = text.str()?;
    let stamps: Vec<String> = (0..height)
        .map(|i| text.get(i).unwrap_or_default().to_string())
        .collect();
    let seconds: Vec<Option<i64>> = match column.dtype() {
        dtype if dtype.is_integer() => {
            let ints = column.cast(&DataType::Int64)?;
            let ints = ints.i64()?;
            (0..height)
                .map(|i| {
                    ints.get(i)
                        .map(|v| if v > 100_000_000_000 { v / 1000 } else { v })
                })
                .collect()
        }
        DataType::Datetime(_, _) => {
            let ms = column
                .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))?
                .cast(&DataType::Int64)?;
            let ms = ms.i64()?;
            (0..height).map(|i| ms.get(i).map(|v| v / 1000)).collect()
        }
        _ => stamps.iter().map(|s| parse_stamp(s)).collect(),
    };
    Ok((stamps, seconds))
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS[.ffffff]` (NAB), or `YYYY-MM-DD`;
/// times without an offset are UTC.
pub fn parse_stamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    text.parse::<i64>().ok()
}

/// The detections file's header line.
pub const DETECTIONS_HEADER: &[u8] = b"timestamp,value,baseline,score,is_anomaly,warming_up\n";

/// One series' verdicts as CSV (`timestamp,value,baseline,score,
/// is_anomaly,warming_up`), for the run to write through its effects.
/// `header: false` gives the rows alone, to append to an earlier file.
pub fn detections_csv(stamps: &[String], scored: &[Scored], header: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if header {
        out.extend_from_slice(DETECTIONS_HEADER);
    }
    for (stamp, verdict) in stamps.iter().zip(scored) {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        let line = format!(
            "{},{},{},{},{},{}\n",
            csv_field(stamp),
            verdict.value,
            opt(verdict.baseline),
            opt(verdict.score),
            u8::from(verdict.is_anomaly),
            u8::from(verdict.warming_up),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Appends detection rows (no header) to the detections file at `path`,
/// writing the header first if the file is new. Rows at or before the
/// file's last row are skipped: a run that appended and then failed before
/// its state was kept (or a node that resumes from an older checkpoint)
/// judges those rows again, and each row must be in the file once.
pub fn append_detections(path: &Path, rows: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let last = last_row_time(path)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if file.metadata()?.len() == 0 {
        file.write_all(DETECTIONS_HEADER)?;
    }
    let text = String::from_utf8_lossy(rows);
    let fresh: String = text
        .split_inclusive('\n')
        .filter(|line| match (last, row_time(line)) {
            (Some(last), Some(time)) => time > last,
            _ => true,
        })
        .collect();
    file.write_all(fresh.as_bytes())?;
    file.sync_data()
}

/// The time of a detections row (its first field).
fn row_time(line: &str) -> Option<i64> {
    let stamp = crate::metric_stream::split_csv_line(line.trim_end_matches(['\n', '\r']))
        .into_iter()
        .next()?;
    match stamp.trim().parse::<i64>() {
        Ok(v) if v > 100_000_000_000 => Some(v / 1000),
        Ok(v) => Some(v),
        Err(_) => parse_stamp(&stamp),
    }
}

/// The time of the last row of the detections file at `path`, if any.
fn last_row_time(path: &Path) -> std::io::Result<Option<i64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    // A row is far shorter than this.
    let tail = len.min(64 * 1024);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .filter(|line| line.as_bytes() != DETECTIONS_HEADER.trim_ascii_end())
        .and_then(row_time))
}
