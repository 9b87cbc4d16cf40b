//! 10,000,000 audit events through every shipped rule, the way a run does
//! it (`run_once`: read, aggregate with polars, judge, report), from
//! Parquet and from NDJSON, each in a child process so its peak RSS is its
//! own.
//!
//! ```sh
//! cargo bench -p patrol-job-anomaly --bench throughput
//! # PATROL_BENCH_EVENTS (10000000), PATROL_BENCH_FORMATS (parquet,ndjson)
//! ```

// A bench: any failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use patrol_anomaly_fixtures::{generate, GenConfig};
use patrol_job_anomaly::input::{read_ndjson, BatchSink};
use patrol_job_anomaly::rules::load_rules;
use patrol_job_anomaly::{run_once, RunInput, SourceSpec};
use patrol_job_api::{CancellationToken, JobState};
use polars::prelude::*;

fn main() {
    if let Ok(path) = std::env::var("PATROL_BENCH_MEASURE") {
        measure(Path::new(&path));
        return;
    }
    if let Ok(path) = std::env::var("PATROL_BENCH_EAGER") {
        eager(Path::new(&path));
        return;
    }
    let events: u64 = std::env::var("PATROL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let formats = std::env::var("PATROL_BENCH_FORMATS").unwrap_or_else(|_| "parquet,ndjson".into());
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/anomaly-bench-{events}"));
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let ndjson = dir.join("ndjson/audit.ndjson");
    if !ndjson.exists() {
        make_ndjson(&ndjson, events);
    }
    let parquet = dir.join("parquet/audit.parquet");
    if formats.contains("parquet") && !parquet.exists() {
        make_parquet(&ndjson, &parquet);
    }
    println!(
        "{} events, NDJSON {} MB, Parquet {} MB",
        events,
        size_mb(&ndjson),
        if parquet.exists() {
            size_mb(&parquet)
        } else {
            0
        }
    );
    for format in formats.split(',') {
        let path = if format == "parquet" {
            parquet.parent().unwrap().to_path_buf()
        } else {
            ndjson.parent().unwrap().to_path_buf()
        };
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env("PATROL_BENCH_MEASURE", &path)
            .output()
            .expect("child run");
        print!("{format:>8}: {}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
    }
    if formats.contains("parquet") {
        // The obvious alternative: load the whole file, then aggregate.
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env("PATROL_BENCH_EAGER", &parquet)
            .output()
            .expect("child run");
        print!("   eager: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Reads the whole Parquet file into one frame (polars' default, eager),
/// then folds it through the same aggregation: the memory the streaming
/// path saves.
fn eager(path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = load_rules(&root.join("policies/anomaly/rules.yaml")).expect("shipped rules");
    let started = Instant::now();
    let frame = LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )
    .unwrap()
    .with_column(col("ts").cast(DataType::Int64))
    .collect()
    .unwrap();
    let loaded = started.elapsed();
    let mut aggregator = patrol_job_anomaly::aggregate::Aggregator::new(rules);
    aggregator.batch(frame).unwrap();
    let tables = aggregator.finish().unwrap();
    println!(
        "{} rule tables from the whole file in {:.2} s (load {:.2} s; no judging), peak RSS {} MiB",
        tables.len(),
        started.elapsed().as_secs_f64(),
        loaded.as_secs_f64(),
        peak_rss_kib() >> 10
    );
}

fn size_mb(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len() >> 20)
}

/// The fixture generator's history, scaled up to about `events` events.
fn make_ndjson(path: &Path, events: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let base = GenConfig::default();
    let mut counter = CountingSink::default();
    generate(&base, &mut counter).unwrap();
    let scale = events as f64 / counter.lines as f64;
    let cfg = GenConfig { scale, ..base };
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    generate(&cfg, &mut out).unwrap();
    println!(
        "generated {} (scale {scale:.1}) in {:?}",
        path.display(),
        started.elapsed()
    );
}

#[derive(Default)]
struct CountingSink {
    lines: u64,
}

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines += memchr_count(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn memchr_count(buf: &[u8]) -> u64 {
    buf.iter().filter(|b| **b == b'\n').count() as u64
}

struct Collect(Vec<DataFrame>);

impl BatchSink for Collect {
    fn batch(&mut self, frame: DataFrame) -> Result<(), String> {
        self.0.push(frame);
        Ok(())
    }
}

fn make_parquet(ndjson: &Path, parquet: &Path) {
    std::fs::create_dir_all(parquet.parent().unwrap()).unwrap();
    let mut collect = Collect(Vec::new());
    let file = std::io::BufReader::new(std::fs::File::open(ndjson).unwrap());
    read_ndjson("bench", file, i64::MAX, &mut collect).unwrap();
    let mut frame = concat(
        collect
            .0
            .into_iter()
            .map(DataFrame::lazy)
            .collect::<Vec<_>>(),
        UnionArgs::default(),
    )
    .unwrap()
    .with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
    .collect()
    .unwrap();
    let file = std::fs::File::create(parquet).unwrap();
    ParquetWriter::new(file).finish(&mut frame).unwrap();
}

fn measure(path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = load_rules(&root.join("policies/anomaly/rules.yaml")).expect("shipped rules");
    let rule_count = rules.len();
    let input = RunInput {
        sources: vec![SourceSpec::Files {
            name: "bench".into(),
            path: PathBuf::from(path),
        }],
        rules,
        series: Vec::new(),
        history_ms: 28 * 24 * 3600 * 1000 * 2,
        detections_dir: None,
        backtest: None,
        backtesting: false,
        postgres: Default::default(),
        series_cache: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let report = runtime
        .block_on(run_once(
            &JobState::empty(),
            input,
            true,
            &CancellationToken::new(),
        ))
        .expect("run");
    let elapsed = started.elapsed();
    let events = report.details["sources"]["bench"]["events"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "{events} events through {rule_count} rules in {:.2} s ({:.1} M events/s), {} findings, peak RSS {} MiB — {}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64() / 1e6,
        report.findings.len(),
        peak_rss_kib() >> 10,
        report.summary
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
