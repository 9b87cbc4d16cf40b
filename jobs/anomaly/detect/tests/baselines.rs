//! The static references behave as their documentation says.

use patrol_anomaly_detect::{detect, Direction, Method, Point};

fn series(values: &[f64]) -> Vec<Point> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| Point::new(i as i64 * 60, v))
        .collect()
}

#[test]
fn mean_multiple_compares_with_the_trailing_window_mean() {
    // Window 120 s at 60 s spacing: the two previous points.
    let pts = series(&[10.0, 10.0, 20.0, 46.0, 10.0, 2.0]);
    let m = Method::MeanMultiple {
        multiple: 3.0,
        window_secs: 120,
    };
    let out = detect(&pts, &m, Direction::Both);
    assert!(out[0].warming_up);
    assert_eq!(out[2].baseline, Some(10.0));
    assert!(!out[2].is_anomaly, "20 is not above 3 × 10");
    assert_eq!(out[3].baseline, Some(15.0));
    assert!(out[3].is_anomaly, "46 > 3 × 15");
    assert_eq!(out[3].score, Some(46.0 / 15.0));
    // Down: below mean / multiple (mean of 46 and 10 is 28; 2 < 28 / 3).
    assert!(out[5].is_anomaly);
    let up = detect(&pts, &m, Direction::Up);
    assert!(!up[5].is_anomaly);
}

#[test]
fn mean_multiple_window_is_by_time_across_gaps() {
    let pts = vec![Point::new(0, 10.0), Point::new(1_000, 50.0)];
    let m = Method::MeanMultiple {
        multiple: 3.0,
        window_secs: 600,
    };
    let out = detect(&pts, &m, Direction::Up);
    assert!(out[1].warming_up, "nothing in the last 600 s");
}

#[test]
fn p95_multiple_uses_the_nearest_rank_percentile() {
    // 20 previous values 1..=20: nearest-rank p95 is the 19th, 19.
    let mut values: Vec<f64> = (1..=20).map(f64::from).collect();
    values.push(38.5);
    values.push(37.0);
    let pts = series(&values);
    let m = Method::P95Multiple {
        multiple: 2.0,
        window_secs: 20 * 60,
    };
    let out = detect(&pts, &m, Direction::Up);
    assert_eq!(out[20].baseline, Some(19.0));
    assert!(out[20].is_anomaly, "38.5 > 2 × 19");
    // Next window: 2..=20 and 38.5 → p95 is 20.
    assert_eq!(out[21].baseline, Some(20.0));
    assert!(!out[21].is_anomaly);
}

#[test]
fn rolling_sigma_needs_a_full_window_and_flags_beyond_n_sigma() {
    let mut values: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
        .collect();
    values.push(15.0);
    let pts = series(&values);
    let m = Method::RollingSigma {
        sigmas: 3.0,
        window: 20,
    };
    let out = detect(&pts, &m, Direction::Up);
    assert!(out[..20].iter().all(|s| s.warming_up));
    // Mean 10, sample std of ±1 over 20 points = sqrt(20/19).
    let z = out[30].score.expect("scored");
    assert!((z - 5.0 / (20.0f64 / 19.0).sqrt()).abs() < 1e-9, "z = {z}");
    assert!(out[30].is_anomaly);
    assert!(out[20..30].iter().all(|s| !s.is_anomaly));
}

#[test]
fn rolling_sigma_is_finite_on_a_constant_window() {
    let mut values = vec![3.0; 50];
    values.push(3.0);
    values.push(4.0);
    let out = detect(
        &series(&values),
        &Method::RollingSigma {
            sigmas: 3.0,
            window: 10,
        },
        Direction::Both,
    );
    assert_eq!(out[50].score, Some(0.0));
    assert!(out[51].score.is_some_and(f64::is_finite));
}

#[test]
fn rolling_sigma_stays_accurate_on_large_offsets() {
    // Values near 1e9 with unit noise: naive sums of squares would lose it.
    let pts: Vec<Point> = (0..5_000)
        .map(|i| Point::new(i, 1e9 + if i % 2 == 0 { -1.0 } else { 1.0 }))
        .collect();
    let out = detect(
        &pts,
        &Method::RollingSigma {
            sigmas: 3.0,
            window: 100,
        },
        Direction::Both,
    );
    let z = out[4_999].score.expect("scored");
    assert!((z.abs() - 1.0).abs() < 0.01, "z = {z}");
}
