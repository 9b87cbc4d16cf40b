//! Backtest scoring. Hand-made cases live in `cases/score/*.json`: a new
//! case is a new file.

use std::path::Path;

use patrol_anomaly_detect::{merge, score, Incident, Scored};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    tolerance_secs: i64,
    /// `[ts, 1 if anomalous else 0]`
    points: Vec<(i64, u8)>,
    incidents: Vec<Incident>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    alert_points: usize,
    episodes: usize,
    false_positives: usize,
    false_positive_points: usize,
    negative_points: usize,
    detected: usize,
    power: f64,
    precision: f64,
}

fn scored(points: &[(i64, u8)]) -> Vec<Scored> {
    points
        .iter()
        .map(|&(ts, a)| Scored {
            ts,
            value: 0.0,
            baseline: None,
            score: None,
            is_anomaly: a == 1,
            warming_up: false,
        })
        .collect()
}

#[test]
fn score_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/score");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("cases folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let name = file.display();
        let text = std::fs::read_to_string(&file).expect("readable case");
        let case: Case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = score(&scored(&case.points), &case.incidents, case.tolerance_secs);
        let e = &case.expect;
        let got = (
            s.alert_points,
            s.episodes,
            s.false_positives,
            s.false_positive_points,
            s.negative_points,
            s.detected,
        );
        let want = (
            e.alert_points,
            e.episodes,
            e.false_positives,
            e.false_positive_points,
            e.negative_points,
            e.detected,
        );
        assert_eq!(
            got, want,
            "{name}: (alerts, episodes, fp, fp points, negatives, detected)"
        );
        assert!(
            (s.power - e.power).abs() < 1e-9,
            "{name}: power {}",
            s.power
        );
        assert!(
            (s.precision - e.precision).abs() < 1e-9,
            "{name}: precision {}",
            s.precision
        );
        assert_eq!(s.points, case.points.len());
        assert_eq!(s.incidents, case.incidents.len());
    }
}

#[test]
fn merge_sums_counts_and_recomputes_ratios() {
    let a = score(
        &scored(&[(0, 1), (1, 0), (2, 0), (3, 1)]),
        &[Incident { start: 0, end: 1 }],
        0,
    );
    let b = score(
        &scored(&[(0, 0), (1, 0)]),
        &[Incident { start: 1, end: 2 }],
        0,
    );
    let m = merge(&[a.clone(), b.clone()]);
    assert_eq!(m.points, 6);
    assert_eq!(m.incidents, 2);
    assert_eq!(m.detected, 1);
    assert_eq!(m.power, 0.5);
    assert_eq!(m.episodes, 2);
    assert_eq!(m.false_positives, 1);
    assert_eq!(m.precision, 0.5);
    assert_eq!(m.negative_points, a.negative_points + b.negative_points);
    assert_eq!(m.fpr, 1.0 / m.negative_points as f64);
    assert!((m.f1 - 0.5).abs() < 1e-12);
    assert_eq!(merge(&[]).power, 1.0);
}
