//! NAB through the anomaly job's `series` input, as a user would run it:
//! every NAB data file a `series:` entry with only `name` and `path` (the
//! job's defaults for everything else, `history` wide enough to take each
//! file whole), one run, its detection files and pages turned into NAB's
//! results layout for NAB's scorer:
//!
//! ```sh
//! git clone /work/.mirror/numenta+NAB/repo /tmp/NAB
//! PATROL_NAB_DIR=/tmp/NAB PATROL_NAB_RESULTS=/tmp/nabjob \
//!     cargo bench -p patrol-job-anomaly --bench nab_series
//! python3 jobs/anomaly/nab/nab_score.py --nab-dir /tmp/NAB --results-dir /tmp/nabjob --detector patrolSeries
//! python3 jobs/anomaly/nab/nab_score.py --nab-dir /tmp/NAB --results-dir /tmp/nabjob --detector patrolPages --threshold 0.5
//! ```
//!
//! - `patrolSeries`: each row's `score` from the detections file (0 while
//!   warming up), for NAB's threshold optimizer (how NAB scores every
//!   detector);
//! - `patrolPages`: 1 on the first point of each episode the job paged (what
//!   on-call gets), else 0.
//!
//! It also prints pages per series per week of data by category (issue 21:
//! at most 1 on realAWSCloudwatch). Without `PATROL_NAB_DIR` it says how to
//! get NAB and exits 0.

// A bench: any failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use patrol_job_anomaly::metrics::parse_stamp;
use patrol_job_anomaly::{run_once, RunInput, SeriesSpec};
use patrol_job_api::{CancellationToken, JobState, Severity};

fn main() {
    let Ok(nab) = std::env::var("PATROL_NAB_DIR") else {
        println!(
            "PATROL_NAB_DIR is not set: clone NAB (git clone /work/.mirror/numenta+NAB/repo /tmp/NAB \
             or github.com/numenta/NAB) and set PATROL_NAB_DIR=/tmp/NAB"
        );
        return;
    };
    let nab = PathBuf::from(nab);
    let results = std::env::var("PATROL_NAB_RESULTS").map_or_else(
        |_| std::env::temp_dir().join("patrol-nab-series"),
        PathBuf::from,
    );
    let detections = results.join("detections");
    let _ = std::fs::remove_dir_all(&detections);
    let files = nab_files(&nab.join("data"));
    // `PATROL_NAB_SERIES='{"refractory": "6h"}'`: settings for every series
    // instead of the defaults (to compare; the figures we report use none).
    let extra: serde_json::Value = std::env::var("PATROL_NAB_SERIES")
        .map_or(serde_json::json!({}), |text| {
            serde_json::from_str(&text).unwrap()
        });
    let series: Vec<(SeriesSpec, Severity)> = files
        .iter()
        .map(|(category, path)| {
            let mut spec = serde_json::json!({
                "name": series_name(category, path),
                "path": path,
            });
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().cloned().unwrap_or_default());
            let spec: SeriesSpec = serde_json::from_value(spec).unwrap();
            (spec, Severity::Warning)
        })
        .collect();
    let input = RunInput {
        sources: Vec::new(),
        rules: Vec::new(),
        series,
        // Every file whole: NAB's longest spans about seven months.
        history_ms: 3650 * 86_400_000,
        detections_dir: Some(detections.clone()),
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
            false,
            &CancellationToken::new(),
        ))
        .expect("the run");
    let elapsed = started.elapsed();
    println!(
        "{} NAB files through the job's series input in {:.2} s: {}",
        files.len(),
        elapsed.as_secs_f64(),
        report.summary
    );
    // Pages per series: episode starts (held-back summaries count as pages).
    let mut pages: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut summaries: BTreeMap<String, usize> = BTreeMap::new();
    for finding in &report.findings {
        let series = finding.labels.get("series").cloned().unwrap_or_default();
        if finding.key.contains("/held/") {
            *summaries.entry(series).or_default() += 1;
            continue;
        }
        let start = finding.key.rsplit('/').next().unwrap_or_default();
        let ts = chrono::DateTime::parse_from_rfc3339(start)
            .unwrap()
            .timestamp();
        pages.entry(series).or_default().insert(ts);
    }
    let mut by_category: BTreeMap<&str, (usize, f64, usize)> = BTreeMap::new();
    for (category, path) in &files {
        let name = series_name(category, path);
        let rows = read_rows(path);
        let (first, last) = (rows[0].0, rows[rows.len() - 1].0);
        let weeks = (last - first) as f64 / (7.0 * 86_400.0);
        let paged = pages.get(&name).map_or(0, BTreeSet::len) + summaries.get(&name).unwrap_or(&0);
        let entry = by_category.entry(category.as_str()).or_default();
        entry.0 += paged;
        entry.1 += weeks;
        entry.2 += 1;
        write_results(
            &results,
            category,
            path,
            &detections.join(format!("{name}.csv")),
            pages.get(&name),
        );
    }
    println!(
        "{:<24} {:>6} {:>7} {:>8} {:>12}",
        "category", "series", "pages", "weeks", "pages/series/week"
    );
    for (category, (paged, weeks, count)) in &by_category {
        println!(
            "{category:<24} {count:>6} {paged:>7} {weeks:>8.1} {:>12.2}",
            *paged as f64 / weeks.max(1e-9)
        );
    }
    println!(
        "results in {} (detectors patrolSeries, patrolPages)",
        results.display()
    );
}

/// `(category, path)` of every NAB data file, sorted.
fn nab_files(data: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for category in std::fs::read_dir(data).unwrap() {
        let category = category.unwrap().path();
        if !category.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&category).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "csv") {
                let name = category.file_name().unwrap().to_string_lossy().into_owned();
                files.push((name, file));
            }
        }
    }
    files.sort();
    files
}

fn series_name(category: &str, path: &Path) -> String {
    format!(
        "{category}__{}",
        path.file_stem().unwrap().to_string_lossy()
    )
}

/// `(seconds, timestamp text)` of a NAB data file's rows.
fn read_rows(path: &Path) -> Vec<(i64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let stamp = l.split(',').next().unwrap().to_string();
            (parse_stamp(&stamp).unwrap(), stamp)
        })
        .collect()
}

/// NAB's results file for both detectors: one row per data row.
fn write_results(
    results: &Path,
    category: &str,
    data: &Path,
    detections: &Path,
    pages: Option<&BTreeSet<i64>>,
) {
    let rows = read_rows(data);
    let mut scores: BTreeMap<String, f64> = BTreeMap::new();
    for line in std::fs::read_to_string(detections).unwrap().lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let score = fields[3].parse::<f64>().unwrap_or(0.0);
        let warming = fields[5] == "1";
        scores.insert(fields[0].to_string(), if warming { 0.0 } else { score });
    }
    let file = data.file_name().unwrap().to_string_lossy().into_owned();
    for (detector, paged) in [("patrolSeries", false), ("patrolPages", true)] {
        let dir = results.join(detector).join(category);
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = String::from("timestamp,value,anomaly_score,label\n");
        for (ts, stamp) in &rows {
            let score = if paged {
                f64::from(u8::from(pages.is_some_and(|p| p.contains(ts))))
            } else {
                scores.get(stamp).copied().unwrap_or(0.0)
            };
            out.push_str(&format!("{stamp},0,{score},0\n"));
        }
        std::fs::write(dir.join(format!("{detector}_{file}")), out).unwrap();
    }
}
