//! Metric series at scale (issue 21): 1,000 series × 10,000 points.
//!
//! 1. **judge**: the points in memory, judged the way a run judges a column
//!    (detector, episodes, budget) on every core — the likelihood method
//!    (the default) beside the adaptive one and the rolling 3-sigma rule.
//! 2. **cold run**: the same series as 1,000 CSV files through `run_once`
//!    (read, judge, page, state), no detections written.
//! 3. **streaming run**: one new row appended to every file, the next run
//!    (its state from the cold run): read from where the last run stopped.
//!
//! ```sh
//! cargo bench -p patrol-job-anomaly --bench series_throughput
//! # PATROL_BENCH_SERIES (1000), PATROL_BENCH_POINTS (10000)
//! ```

// A bench: any failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use patrol_anomaly_detect::{EpisodeTracker, Point, Scored};
use patrol_job_anomaly::budget::BudgetState;
use patrol_job_anomaly::metric_judge::{self, ColumnId, PageInput, Settings};
use patrol_job_anomaly::{run_once, RunInput, SeriesMethod, SeriesSpec};
use patrol_job_api::{CancellationToken, JobState, MemoryState, Severity};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Series `k`: a daily shape at 5-minute steps, pseudo-noise, a level
/// shift and a spike at places that differ per series.
fn series(k: usize, n: usize) -> Vec<Point> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1001) as f64 / 100.0 - 5.0;
            let hour = (i % 288) as f64 / 12.0;
            let mut value = 100.0 + 30.0 * (std::f64::consts::PI * hour / 12.0).sin() + noise;
            if i == n / 2 + k % 1000 {
                value += 300.0;
            }
            if i > n * 3 / 4 + k % 500 {
                value += 80.0;
            }
            Point::new(1_780_000_000 + i as i64 * 300, value)
        })
        .collect()
}

fn spec(name: &str, path: &Path, method: &str) -> SeriesSpec {
    serde_json::from_value(serde_json::json!({"name": name, "path": path, "method": method}))
        .unwrap()
}

/// Judges every series on every core as a run does; returns (seconds,
/// pages).
fn judge_all(all: &[Vec<Point>], method: &str) -> (f64, usize) {
    let settings = Settings::of(&spec("bench", Path::new("x.csv"), method));
    let stamps: Vec<String> = Vec::new();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let pages = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(points) = all.get(i) else { return };
                let scored: Vec<Scored> = metric_judge::judge_batch(&settings, points);
                let input = PageInput {
                    id: ColumnId {
                        series: "bench",
                        column: "value",
                        several: false,
                    },
                    severity: Severity::Warning,
                    runbook: None,
                    pages_per_day: 3,
                    scored: &scored,
                    stamps: &stamps,
                    step: 300,
                    previous_end: None,
                };
                let paged = metric_judge::page(
                    &input,
                    &settings.episodes(),
                    &mut EpisodeTracker::default(),
                    &mut BudgetState::default(),
                );
                pages.fetch_add(paged.findings.len(), std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    (started.elapsed().as_secs_f64(), pages.into_inner())
}

fn main() {
    let count = env("PATROL_BENCH_SERIES", 1000);
    let points = env("PATROL_BENCH_POINTS", 10_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{count} series × {points} points, {cores} cores");
    let all: Vec<Vec<Point>> = (0..count).map(|k| series(k, points)).collect();
    for method in ["likelihood", "adaptive", "rolling_sigma"] {
        let (secs, pages) = judge_all(&all, method);
        println!(
            "judge  {method:<14} {secs:>7.3} s  {:>6.1} ns/point  {pages} findings",
            secs * 1e9 / (count * points) as f64 * cores as f64
        );
    }

    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/series-bench-{count}x{points}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let specs: Vec<(SeriesSpec, Severity)> = all
        .iter()
        .enumerate()
        .map(|(k, points)| {
            let path = dir.join(format!("s{k:04}.csv"));
            let mut text = String::from("timestamp,value\n");
            for p in points {
                text.push_str(&format!("{},{:.3}\n", p.ts, p.value));
            }
            std::fs::write(&path, text).unwrap();
            (
                spec(&format!("s{k:04}"), &path, "likelihood"),
                Severity::Warning,
            )
        })
        .collect();
    assert!(specs
        .iter()
        .all(|(s, _)| s.method == SeriesMethod::Likelihood));
    let input = RunInput {
        sources: Vec::new(),
        rules: Vec::new(),
        series: specs,
        history_ms: 3650 * 86_400_000,
        detections_dir: None,
        backtest: None,
        backtesting: false,
        postgres: Default::default(),
        series_cache: Default::default(),
    };
    let store = Arc::new(MemoryState::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let timed_run = |what: &str| {
        let started = Instant::now();
        let report = runtime
            .block_on(run_once(
                &JobState::new(store.clone()),
                input.clone(),
                false,
                &CancellationToken::new(),
            ))
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        let state_bytes: usize = report
            .state
            .iter()
            .map(|w| w.value.as_ref().map_or(0, Vec::len))
            .sum();
        store.apply(&report.state);
        println!(
            "{what:<16} {secs:>7.3} s  {} findings, state written {} KiB ({} KiB per series)",
            report.findings.len(),
            state_bytes >> 10,
            (state_bytes / count.max(1)) >> 10
        );
    };
    timed_run("cold run");
    for (k, points) in all.iter().enumerate() {
        use std::io::Write;
        let last = points.last().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(format!("s{k:04}.csv")))
            .unwrap();
        writeln!(file, "{},{:.3}", last.ts + 300, last.value).unwrap();
    }
    timed_run("streaming run");
    timed_run("no new rows");
}
