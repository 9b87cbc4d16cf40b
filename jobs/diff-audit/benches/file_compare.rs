//! Acceptance 4a of the diff-audit issue: two Parquet files of 25M rows × 8
//! columns with 100 scattered differences, compared by the streaming
//! compare (`stream.rs`, what `patrol diff-audit compare` and the job use
//! for two files) and, in the same run, by the obvious alternative: both
//! copies read whole and sort-merged (`snapshot.rs`). Reports wall time,
//! rows per second per side and the peak resident memory of each.
//!
//! `cargo bench -p patrol-job-diff-audit --bench file_compare`
//! (`PATROL_BENCH_ROWS` to change the size; `PATROL_BENCH_SKIP_MEMORY=1` to
//! skip the in-memory alternative). The files are generated once under
//! `target/diff-audit-bench/`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use patrol_job_diff_audit::snapshot::{self, CompareSpec};
use patrol_job_diff_audit::stream;
use polars::prelude::*;

const CHUNK: usize = 1_000_000;
const DIFFERENCES: usize = 100;

fn main() {
    let rows: usize = std::env::var("PATROL_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(25_000_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/diff-audit-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let (left, right, planted) = files(&dir, rows);
    let spec = CompareSpec {
        key: vec!["tenant".into(), "id".into()],
        columns: None,
    };
    println!(
        "diff-audit file compare: {rows} rows x 8 columns per side, {planted} planted differences"
    );
    println!(
        "files: {} MB + {} MB (Parquet)",
        size_mb(&left),
        size_mb(&right)
    );

    reset_peak();
    let start = Instant::now();
    let (diffs, summary, stats) = stream::compare(&left, &right, &spec, ("eu", "us")).unwrap();
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(
        diffs.len(),
        planted,
        "every planted difference, nothing else"
    );
    println!(
        "streaming   {wall:>7.2} s  {:>6.2} M rows/s per side  peak RSS {:>6} MB  ({} buckets, {} differing, rows read again {}+{}; equal {}; checksums {} ms, second read {} ms)",
        rows as f64 / wall / 1e6,
        peak_mb(),
        stats.buckets,
        stats.differing,
        stats.fetched_left,
        stats.fetched_right,
        summary.equal,
        stats.checksum_ms,
        stats.read_ms
    );

    if std::env::var("PATROL_BENCH_SKIP_MEMORY").is_ok() {
        return;
    }
    reset_peak();
    let start = Instant::now();
    let l = snapshot::read_table(&left).unwrap();
    let r = snapshot::read_table(&right).unwrap();
    let (whole, _) = snapshot::compare(&l, &r, &spec, ("eu", "us")).unwrap();
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(whole.len(), planted);
    println!(
        "in memory   {wall:>7.2} s  {:>6.2} M rows/s per side  peak RSS {:>6} MB  (both copies read whole, sorted, merged)",
        rows as f64 / wall / 1e6,
        peak_mb()
    );
}

fn size_mb(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len() >> 20)
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) of this process.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb >> 10)
}

/// The two copies (generated once per size) and how many differences.
fn files(dir: &Path, rows: usize) -> (PathBuf, PathBuf, usize) {
    let left = dir.join(format!("eu-{rows}.parquet"));
    let right = dir.join(format!("us-{rows}.parquet"));
    if !(left.is_file() && right.is_file()) {
        println!("generating {rows}-row copies under {}", dir.display());
        write(&left, rows, false);
        write(&right, rows, true);
    }
    (left, right, DIFFERENCES)
}

/// Rows `from..to`: tenant, id, note, amount, at, region, active, score; in
/// the US copy the planted rows changed (every `rows / 100`th, offset 7):
/// amounts, NULL notes, a timestamp cut to milliseconds, deleted rows.
fn chunk(from: usize, to: usize, rows: usize, us: bool) -> DataFrame {
    let step = rows / DIFFERENCES;
    let planted = |i: usize| us && i % step == 7;
    let kept: Vec<usize> = (from..to)
        .filter(|&i| !(planted(i) && (i / step) % 4 == 3))
        .collect();
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    let tenant: Vec<&str> = kept.iter().map(|&i| tenants[i % 5]).collect();
    let id: Vec<i64> = kept.iter().map(|&i| i as i64).collect();
    let note: Vec<Option<&str>> = kept
        .iter()
        .map(|&i| {
            if planted(i) && (i / step) % 4 == 1 {
                None
            } else {
                Some(if i % 3 == 0 { "ok" } else { "checked" })
            }
        })
        .collect();
    let amount: Vec<i64> = kept
        .iter()
        .map(|&i| (i as i64 * 7919) % 100_000 + i64::from(planted(i) && (i / step) % 4 == 0))
        .collect();
    let at: Vec<i64> = kept
        .iter()
        .map(|&i| {
            let micros = 1_793_577_600_000_000 + i as i64 * 1_000_123;
            if planted(i) && (i / step) % 4 == 2 {
                micros / 1_000 * 1_000
            } else {
                micros
            }
        })
        .collect();
    let region: Vec<&str> = kept
        .iter()
        .map(|&i| if i % 2 == 0 { "EU" } else { "US" })
        .collect();
    let active: Vec<bool> = kept.iter().map(|&i| i % 7 != 0).collect();
    let score: Vec<f64> = kept.iter().map(|&i| (i % 1_000) as f64 / 8.0).collect();
    let at = Series::new("at".into(), at)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    DataFrame::new_infer_height(vec![
        Column::new("tenant".into(), tenant),
        Column::new("id".into(), id),
        Column::new("note".into(), note),
        Column::new("amount".into(), amount),
        at.into(),
        Column::new("region".into(), region),
        Column::new("active".into(), active),
        Column::new("score".into(), score),
    ])
    .unwrap()
}

fn write(path: &Path, rows: usize, us: bool) {
    let file = std::fs::File::create(path).unwrap();
    let mut frame = chunk(0, rows.min(CHUNK), rows, us);
    let mut writer = ParquetWriter::new(file).batched(frame.schema()).unwrap();
    writer.write_batch(&frame).unwrap();
    let mut from = CHUNK;
    while from < rows {
        frame = chunk(from, (from + CHUNK).min(rows), rows, us);
        writer.write_batch(&frame).unwrap();
        from += CHUNK;
    }
    writer.finish().unwrap();
}
