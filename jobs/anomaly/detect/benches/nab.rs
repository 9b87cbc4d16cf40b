//! `PATROL_NAB_DIR=/path/to/NAB cargo bench -p patrol-anomaly-detect --bench nab`:
//! the adaptive detector against the rolling 3-sigma rule on the Numenta
//! Anomaly Benchmark (real labelled metric series). NAB is not in the repo;
//! without `PATROL_NAB_DIR` this prints how to get it and exits 0.
//!
//! Fairness: every method sees the same points and is scored by the same
//! `score` call against the same windows (tolerance 0; one incident per
//! labelled window, both ends included). The adaptive method runs with
//! `AdaptiveParams::default()` as patrol's `series` input builds it
//! (`Season::HourOfWeek`, `Noise::None`); the rolling rule uses 3 sigma over
//! one day of points (from the series' median step) and over 100 points. All
//! use `Direction::Both`. No parameter here was chosen by looking at NAB
//! results.
//!
//! With `PATROL_NAB_RESULTS=DIR` it also writes each method's detections in
//! NAB's results layout (`DIR/<detector>/<category>/<detector>_<file>.csv`,
//! `timestamp,value,anomaly_score,label`) for NAB's own scoring
//! (`jobs/anomaly/nab/nab_score.py`), twice: `<detector>` with the method's
//! own decisions (1 for an anomalous point, else 0: what patrol pages on),
//! and `<detector>Z` with a graded score (|z| / (|z| + 4), plus 0.5 on an
//! anomalous point), so NAB's threshold optimizer can show how well the
//! scores rank, apart from where the method draws its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use patrol_anomaly_detect::{
    detect, merge, score, AdaptiveParams, Direction, Incident, LikelihoodParams, Method, Noise,
    Point, Score, Season,
};

/// The category groups reported, each a list of NAB data folders.
const GROUPS: [(&str, &[&str]); 3] = [
    (
        "real*",
        &[
            "realAWSCloudwatch",
            "realAdExchange",
            "realKnownCause",
            "realTraffic",
            "realTweets",
        ],
    ),
    ("artificialWithAnomaly", &["artificialWithAnomaly"]),
    ("artificialNoAnomaly", &["artificialNoAnomaly"]),
];

const METHODS: [&str; 4] = [
    "adaptive (defaults)",
    "rolling 3σ / 1 day",
    "rolling 3σ / 100",
    "likelihood (defaults)",
];

struct Series {
    /// `category/name.csv`, the key of `combined_windows.json`.
    key: String,
    points: Vec<Point>,
    /// Each point's timestamp as the file writes it (NAB results repeat it).
    stamps: Vec<String>,
    incidents: Vec<Incident>,
}

/// NAB's name for each method's results folder, in `METHODS` order.
const DETECTORS: [&str; 4] = [
    "patrolAdaptive",
    "patrolRolling3SigmaDay",
    "patrolRolling3Sigma100",
    "patrolLikelihood",
];

fn parse_ts(text: &str) -> Result<i64, String> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp())
        .map_err(|err| format!("timestamp {text:?}: {err}"))
}

fn read_points(path: &Path) -> Result<(Vec<Point>, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (ts, value) = line
            .split_once(',')
            .ok_or_else(|| format!("{}:{}: no comma", path.display(), n + 1))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|err| format!("{}:{}: value: {err}", path.display(), n + 1))?;
        let stamp = ts.trim().to_string();
        let ts = parse_ts(ts).map_err(|err| format!("{}:{}: {err}", path.display(), n + 1))?;
        points.push((Point::new(ts, value), stamp));
    }
    points.sort_by_key(|(p, _)| p.ts);
    Ok(points.into_iter().unzip())
}

/// A point's NAB anomaly score: its decision, or (`graded`) its |z| in
/// [0, 0.5) with the decision on top.
fn nab_score(judged: &patrol_anomaly_detect::Scored, graded: bool) -> f64 {
    let decision = if judged.is_anomaly { 1.0 } else { 0.0 };
    if !graded {
        return decision;
    }
    let z = judged.score.map_or(0.0, f64::abs);
    0.5 * decision + 0.5 * z / (z + 4.0)
}

/// The likelihood method's score is already NAB's log-likelihood scale.
fn nab_score_of(method: &Method, judged: &patrol_anomaly_detect::Scored, graded: bool) -> f64 {
    match method {
        Method::Likelihood(_) if graded => judged.score.unwrap_or(0.0),
        _ => nab_score(judged, graded),
    }
}

/// Writes one method's detections of `series` in NAB's results layout.
fn write_results(
    dir: &Path,
    detector: &str,
    series: &Series,
    scored: &[patrol_anomaly_detect::Scored],
    method: &Method,
    graded: bool,
) -> Result<(), String> {
    let (category, file) = series.key.split_once('/').unwrap_or(("", &series.key));
    let folder = dir.join(detector).join(category);
    std::fs::create_dir_all(&folder).map_err(|err| format!("{}: {err}", folder.display()))?;
    let path = folder.join(format!("{detector}_{file}"));
    let mut text = String::from("timestamp,value,anomaly_score,label\n");
    for ((stamp, point), judged) in series.stamps.iter().zip(&series.points).zip(scored) {
        let inside = series
            .incidents
            .iter()
            .any(|incident| point.ts >= incident.start && point.ts < incident.end);
        text.push_str(&format!(
            "{stamp},{},{},{}\n",
            point.value,
            nab_score_of(method, judged, graded),
            u8::from(inside)
        ));
    }
    std::fs::write(&path, text).map_err(|err| format!("{}: {err}", path.display()))
}

/// NAB windows are `[start, end]` with both ends included; `Incident` is
/// half-open, so the end moves one second on.
fn read_labels(dir: &Path) -> Result<BTreeMap<String, Vec<Incident>>, String> {
    let path = dir.join("labels/combined_windows.json");
    let text =
        std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let raw: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    raw.into_iter()
        .map(|(key, windows)| {
            let incidents = windows
                .iter()
                .map(|[start, end]| {
                    Ok(Incident {
                        start: parse_ts(start)?,
                        end: parse_ts(end)? + 1,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((key, incidents))
        })
        .collect()
}

fn read_group(
    dir: &Path,
    folders: &[&str],
    labels: &BTreeMap<String, Vec<Incident>>,
) -> Result<Vec<Series>, String> {
    let mut out = Vec::new();
    for folder in folders {
        let data = dir.join("data").join(folder);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
            .map_err(|err| format!("{}: {err}", data.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let key = format!("{folder}/{name}");
            let incidents = labels.get(&key).cloned().unwrap_or_default();
            let (points, stamps) = read_points(&file)?;
            out.push(Series {
                points,
                stamps,
                key,
                incidents,
            });
        }
    }
    Ok(out)
}

/// The methods, in `METHODS` order, for one series.
fn methods_for(points: &[Point]) -> [Method; 4] {
    let defaults = AdaptiveParams::default();
    // Exactly what jobs/anomaly/src/run.rs `judge_series` builds.
    let adaptive = Method::Adaptive(AdaptiveParams {
        season: Season::HourOfWeek,
        noise: Noise::None,
        ..defaults
    });
    let day = (86_400 / patrol_anomaly_detect::typical_step(points)).max(2) as usize;
    [
        adaptive,
        Method::RollingSigma {
            sigmas: 3.0,
            window: day,
        },
        Method::RollingSigma {
            sigmas: 3.0,
            window: 100,
        },
        Method::Likelihood(LikelihoodParams::default()),
    ]
}

fn row(label: &str, s: &Score) -> String {
    format!(
        "{label:<58} {:>7} {:>6} {:>6} {:>4}/{:<4} {:>6.3} {:>6.3} {:>6.3}",
        s.points,
        s.episodes,
        s.false_positives,
        s.detected,
        s.incidents,
        s.power,
        s.precision,
        s.f1
    )
}

fn header(first: &str) -> String {
    format!(
        "{first:<58} {:>7} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6}",
        "points", "alerts", "FP", "detected", "power", "prec", "F1"
    )
}

fn main() {
    let Some(dir) = std::env::var_os("PATROL_NAB_DIR").map(PathBuf::from) else {
        println!(
            "PATROL_NAB_DIR is not set. Get the Numenta Anomaly Benchmark with\n  \
             git clone https://github.com/numenta/NAB\nand run\n  \
             PATROL_NAB_DIR=$PWD/NAB cargo bench -p patrol-anomaly-detect --bench nab"
        );
        return;
    };
    if !dir.join("labels/combined_windows.json").is_file() {
        println!(
            "{} has no labels/combined_windows.json. Get the Numenta Anomaly Benchmark with\n  \
             git clone https://github.com/numenta/NAB\nand point PATROL_NAB_DIR at it.",
            dir.display()
        );
        return;
    }
    let labels = match read_labels(&dir) {
        Ok(labels) => labels,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };

    let results = std::env::var_os("PATROL_NAB_RESULTS").map(PathBuf::from);
    let mut totals = Vec::new();
    for (group, folders) in GROUPS {
        let series = match read_group(&dir, folders, &labels) {
            Ok(series) => series,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(1);
            }
        };
        println!("\n== {group}: {} series ==", series.len());
        println!("{}", header("series / method"));
        let mut scores: [Vec<Score>; 4] = Default::default();
        let mut times = [Duration::ZERO; 4];
        for s in &series {
            for (m, method) in methods_for(&s.points).iter().enumerate() {
                let started = Instant::now();
                let scored = detect(&s.points, method, Direction::Both);
                times[m] += started.elapsed();
                if let Some(dir) = &results {
                    for graded in [false, true] {
                        let name = format!("{}{}", DETECTORS[m], if graded { "Z" } else { "" });
                        if let Err(err) = write_results(dir, &name, s, &scored, method, graded) {
                            eprintln!("{err}");
                            std::process::exit(1);
                        }
                    }
                }
                let result = score(&scored, &s.incidents, 0);
                println!("{}", row(&format!("{} / {}", s.key, METHODS[m]), &result));
                scores[m].push(result);
            }
        }
        for m in 0..METHODS.len() {
            totals.push((group, METHODS[m], merge(&scores[m]), times[m]));
        }
    }

    println!("\n== totals ==");
    println!("{} {:>9}", header("group / method"), "detect");
    for (group, method, total, time) in &totals {
        println!(
            "{} {:>7.1}ms",
            row(&format!("{group} / {method}"), total),
            time.as_secs_f64() * 1e3
        );
    }
}
