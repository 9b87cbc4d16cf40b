//! Metric series through the job: a growing file read from where the last
//! run stopped (with the same pages as judging it whole), the alert budget,
//! samples, detection files named after the series, and backtests of
//! series alone.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use patrol_job_anomaly::{run_once, RunInput, SeriesSpec};
use patrol_job_api::{CancellationToken, JobState, MemoryState, RunReport, Severity};

/// Five-minute points from 2026-11-02: a daily shape with pseudo-noise,
/// a spike at `spike` and a level shift from `shift` on.
fn series_rows(n: usize, spike: usize, shift: usize) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap();
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1001) as f64 / 100.0 - 5.0;
            let hour = (i % 288) as f64 / 12.0;
            let mut value = 100.0 + 30.0 * (std::f64::consts::PI * hour / 12.0).sin() + noise;
            if i == spike {
                value += 400.0;
            }
            if i >= shift {
                value += 150.0;
            }
            let ts = start + chrono::Duration::minutes(5 * i as i64);
            format!("{},{value:.2}\n", ts.format("%Y-%m-%d %H:%M:%S"))
        })
        .collect()
}

fn write(path: &Path, rows: &[String]) {
    std::fs::write(path, format!("timestamp,value\n{}", rows.concat())).unwrap();
}

fn spec(name: &str, path: &Path, extra: serde_json::Value) -> SeriesSpec {
    let mut value = serde_json::json!({"name": name, "path": path});
    if let (Some(map), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    serde_json::from_value(value).unwrap()
}

fn input(spec: SeriesSpec, detections: &Path) -> RunInput {
    RunInput {
        sources: Vec::new(),
        rules: Vec::new(),
        series: vec![(spec, Severity::Warning)],
        history_ms: 28 * 86_400_000,
        detections_dir: Some(detections.to_path_buf()),
        backtest: None,
        backtesting: false,
        postgres: Default::default(),
        series_cache: Default::default(),
    }
}

async fn run(store: &Arc<MemoryState>, input: RunInput) -> RunReport {
    let report = run_once(
        &JobState::new(store.clone()),
        input,
        false,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    store.apply(&report.state);
    report
}

fn page_keys(report: &RunReport) -> Vec<String> {
    report.findings.iter().map(|f| f.key.clone()).collect()
}

fn column(report: &RunReport) -> &serde_json::Value {
    &report.details["series"][0]["columns"][0]
}

/// What a series paged and wrote when its rows arrive over several runs.
struct Streamed {
    /// Page keys in the order first reported.
    pages: Vec<String>,
    detections: String,
    /// Runs that wrote a checkpoint (`series-model/latency`).
    checkpoints: Vec<usize>,
}

/// The rows of `rows` arriving in five runs; `restarted` says before which
/// runs the node restarted (its in-memory detectors lost).
async fn stream(dir: &Path, rows: &[String], restarted: &[usize]) -> Streamed {
    let file = dir.join("latency.csv");
    let store = Arc::new(MemoryState::default());
    let out = dir.join(format!("stream-{restarted:?}"));
    let mut reported: Vec<Vec<String>> = Vec::new();
    let mut checkpoints = Vec::new();
    let mut input = input(
        spec("latency", &file, serde_json::json!({"warm_up": 400})),
        &out,
    );
    let cuts = [2500, 2900, 3100, 3600, 4000];
    for (n, upto) in cuts.into_iter().enumerate() {
        if restarted.contains(&n) {
            input.series_cache = Default::default();
        }
        write(&file, &rows[..upto]);
        let report = run(&store, input.clone()).await;
        let expected_read = if n == 0 { "whole" } else { "new rows" };
        assert_eq!(
            column(&report)["read"],
            expected_read,
            "run {n}: {}",
            report.details
        );
        if report.state.iter().any(|w| w.key == "series-model/latency") {
            checkpoints.push(n);
        }
        reported.push(page_keys(&report));
    }
    // A key reported again after a run without it would page again.
    let mut pages: Vec<String> = Vec::new();
    for key in reported.iter().flatten() {
        let runs: Vec<usize> = (0..reported.len())
            .filter(|&r| reported[r].contains(key))
            .collect();
        assert!(
            runs.windows(2).all(|w| w[1] == w[0] + 1),
            "{key} paged twice: runs {runs:?}"
        );
        if !pages.contains(key) {
            pages.push(key.clone());
        }
    }
    Streamed {
        pages,
        detections: std::fs::read_to_string(out.join("latency.csv")).unwrap(),
        checkpoints,
    }
}

#[tokio::test]
async fn a_growing_file_is_judged_from_where_the_last_run_stopped_with_the_pages_of_a_whole_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = series_rows(4000, 3000, 3500);
    let file = dir.path().join("latency.csv");
    write(&file, &rows);
    let whole_dir = dir.path().join("whole");
    let whole = run(
        &Arc::new(MemoryState::default()),
        input(
            spec("latency", &file, serde_json::json!({"warm_up": 400})),
            &whole_dir,
        ),
    )
    .await;
    let whole_pages = page_keys(&whole);
    assert!(
        whole_pages.len() >= 2,
        "the spike and the shift page: {whole_pages:?}"
    );
    let at_once = std::fs::read_to_string(whole_dir.join("latency.csv")).unwrap();

    // One node all along: its detectors stay in memory; only the first
    // (whole) read writes a checkpoint.
    let kept = stream(dir.path(), &rows, &[]).await;
    assert_eq!(kept.pages, whole_pages);
    assert_eq!(kept.checkpoints, vec![0]);
    // assert_eq! would print both files.
    assert_eq!(kept.detections.lines().count(), 4001);
    assert!(
        kept.detections == at_once,
        "streamed detections differ from one read's"
    );

    // Restarted before runs 3 and 4: run 3 resumes from the checkpoint of
    // run 0 and judges again rows runs 1 and 2 judged — paging nothing
    // twice and appending no row twice.
    let resumed = stream(dir.path(), &rows, &[3, 4]).await;
    assert_eq!(resumed.pages, whole_pages);
    assert_eq!(resumed.checkpoints, vec![0, 3, 4]);
    assert!(
        resumed.detections == at_once,
        "resumed detections differ from one read's"
    );

    // A file rewritten from scratch is read whole again.
    let store = Arc::new(MemoryState::default());
    let input = input(
        spec("latency", &file, serde_json::json!({"warm_up": 400})),
        dir.path(),
    );
    run(&store, input.clone()).await;
    write(&file, &rows[..1000]);
    let report = run(&store, input).await;
    assert_eq!(column(&report)["read"], "whole");
}

#[tokio::test]
async fn a_page_carries_the_points_around_the_episode_and_the_budget_holds_back_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = series_rows(3000, usize::MAX, usize::MAX);
    // Five separate spikes on 2026-11-11 (points 2592.. are that day).
    for k in 0..5 {
        let i = 2600 + k * 50;
        let (stamp, value) = rows[i].trim_end().split_once(',').unwrap();
        let value: f64 = value.parse().unwrap();
        rows[i] = format!("{stamp},{:.2}\n", value + 300.0 + 100.0 * k as f64);
    }
    let file = dir.path().join("queue.csv");
    write(&file, &rows);
    let store = Arc::new(MemoryState::default());
    let report = run(
        &store,
        input(
            spec(
                "queue",
                &file,
                serde_json::json!({"pages_per_day": 2, "refractory": "1h"}),
            ),
            dir.path(),
        ),
    )
    .await;
    let pages: Vec<_> = report
        .findings
        .iter()
        .filter(|f| !f.key.contains("/held/"))
        .collect();
    assert_eq!(pages.len(), 2, "{:?}", page_keys(&report));
    let held: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.key.contains("/held/"))
        .collect();
    assert_eq!(held.len(), 1, "{:?}", page_keys(&report));
    assert_eq!(held[0].key, "anomaly/series/queue/value/held/2026-11-11");
    assert!(
        held[0]
            .summary
            .starts_with("3 more anomalies of queue held back on 2026-11-11"),
        "{}",
        held[0].summary
    );
    assert_eq!(column(&report)["held_back"], 3);
    let sample = pages[0].sample_trace.as_deref().unwrap();
    assert!(sample.starts_with("2026-11-11 00:25:00 "), "{sample}");
    assert!(sample.contains(" [2026-11-11 00:40:00 "), "{sample}");
    // Three points before, the episode's (the spike first), three after.
    let points = pages[0].details["sample"].as_array().unwrap();
    let inside: Vec<bool> = points.iter().map(|p| p["in_episode"] == true).collect();
    let n = inside.len();
    assert!(
        n > 7 && !inside[..3].contains(&true) && !inside[n - 3..].contains(&true),
        "{sample}"
    );
    assert!(inside[3..n - 3].iter().all(|i| *i), "{sample}");
    assert!(points[3]["value"].as_f64().unwrap() > 400.0 && points[3]["score"] == 1.0);
    // The detections file is named after the series.
    let detections = std::fs::read_to_string(dir.path().join("queue.csv")).unwrap();
    assert_eq!(detections.lines().count(), 3001);
    assert!(detections.starts_with("timestamp,value,baseline,score,is_anomaly,warming_up\n"));
}

#[tokio::test]
async fn backtest_true_scores_series_alone_and_totals_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.csv");
    write(&file, &series_rows(4000, 3000, 3500));
    let labels = dir.path().join("labels.json");
    std::fs::write(
        &labels,
        r#"{"cpu.csv": [["2026-11-12 09:00:00.000000", "2026-11-12 11:00:00.000000"],
                        ["2026-11-14 03:00:00.000000", "2026-11-14 05:00:00.000000"]]}"#,
    )
    .unwrap();
    let mut input = input(
        spec("cpu", &file, serde_json::json!({"labels": labels})),
        dir.path(),
    );
    input.backtesting = true;
    let report = run(&Arc::new(MemoryState::default()), input).await;
    let totals = &report.details["backtest"]["series_totals"];
    assert_eq!(totals["backtests"], 1, "{}", report.details);
    assert_eq!(totals["incidents"], 2);
    let output = report.output.unwrap();
    assert!(output.contains("all series: reference "), "{output}");
    assert!(!output.contains("all rules"), "{output}");
}

#[test]
fn series_settings_a_method_does_not_take_are_refused_naming_the_field() {
    use patrol_job_anomaly::{AnomalyJob, Params};
    use patrol_job_api::JobKind;
    let params: Params = serde_json::from_value(serde_json::json!({
        "series": [
            {"name": "a", "path": "a.csv", "z": 3.0, "alpha": 0.2},
            {"name": "b", "path": "b.csv", "method": "adaptive", "threshold": 0.6},
            {"name": "c", "path": "c.csv", "threshold": 0.6, "open": 0.55, "close": 0.7},
            {"name": "d", "path": "d.csv", "pages_per_day": 0, "warm_up": 0, "threshold": 1.5},
            {"name": "e", "path": "e.csv", "method": "rolling_sigma", "z": 4.0, "warm_up": "2d"},
        ]
    }))
    .unwrap();
    let errors = AnomalyJob.validate(&params).unwrap_err();
    let mut found: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            "series[0].alpha: does not apply to method likelihood",
            "series[0].z: does not apply to method likelihood",
            "series[1].threshold: does not apply to method adaptive",
            "series[2].close: 0.7 is above the threshold 0.6: an episode would close before it opens",
            "series[2].open: 0.55 is below the threshold 0.6: only anomalous points open an episode",
            "series[3].pages_per_day: must be at least 1 (held-back anomalies page as one summary)",
            "series[3].threshold: 1.5 is not a likelihood in (0, 1]",
            "series[3].warm_up: must be at least 1 point",
        ]
    );
}

#[tokio::test]
async fn a_failed_run_keeps_no_state_and_the_next_one_writes_each_detection_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let rows = series_rows(3000, 2800, usize::MAX);
    let file = dir.path().join("latency.csv");
    let other = dir.path().join("queue.csv");
    write(&other, &rows);
    let store = Arc::new(MemoryState::default());
    let mut input = input(
        spec("latency", &file, serde_json::json!({"warm_up": 400})),
        dir.path(),
    );
    input.series.push((
        spec("queue", &other, serde_json::json!({})),
        Severity::Warning,
    ));
    write(&file, &rows[..2000]);
    run(&store, input.clone()).await;
    // New rows arrive, but the other series' file is gone: the run fails
    // and writes no state, though it judged and appended the new rows.
    write(&file, &rows[..2500]);
    std::fs::remove_file(&other).unwrap();
    let failed = run(&store, input.clone()).await;
    assert_eq!(failed.outcome, patrol_job_api::Outcome::Failed);
    assert!(failed.state.is_empty());
    write(&other, &rows);
    write(&file, &rows[..3000]);
    run(&store, input).await;
    let detections = std::fs::read_to_string(dir.path().join("latency.csv")).unwrap();
    let stamps: Vec<&str> = detections
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let mut unique = stamps.clone();
    unique.dedup();
    assert_eq!(stamps.len(), 3000, "every row once");
    assert_eq!(unique.len(), stamps.len(), "no row written twice");
}
