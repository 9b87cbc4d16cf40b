//! The robust z-score: 1.4826 × MAD, its floors, and non-finite input.

use patrol_anomaly_detect::{detect, AdaptiveParams, Direction, Method, Noise, Point, Season};

/// A level that practically never moves and a threshold that never clips,
/// so the residuals are exactly `value - first value`.
fn frozen(min_samples: usize) -> AdaptiveParams {
    AdaptiveParams {
        alpha: 1e-6,
        z: 100.0,
        season: Season::None,
        noise: Noise::None,
        min_samples,
        mad_window: min_samples,
        shift_after: 0,
        ..AdaptiveParams::default()
    }
}

fn series(values: &[f64]) -> Vec<Point> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| Point::new(i as i64, v))
        .collect()
}

#[test]
fn z_is_deviation_over_1_4826_mad_of_residuals() {
    // Level 10; residuals -1, -1, -1, 0, 1, 1, 1 → MAD 1 → scale 1.4826
    // (the mean absolute deviation, 6/7 × 1.2533, is smaller).
    let pts = series(&[10.0, 9.0, 9.0, 9.0, 10.0, 11.0, 11.0, 11.0, 13.0]);
    let out = detect(&pts, &Method::Adaptive(frozen(7)), Direction::Both);
    assert_eq!(out.len(), pts.len());
    assert!(out[..8].iter().all(|s| s.warming_up && s.score.is_none()));
    let z = out[8].score.expect("scored after min_samples residuals");
    assert!((z - 3.0 / 1.4826).abs() < 1e-3, "z = {z}");
    let baseline = out[8].baseline.expect("baseline");
    assert!((baseline - 10.0).abs() < 1e-3);
}

#[test]
fn constant_series_gives_zero_scores_and_no_alarms() {
    let pts = series(&[5.0; 300]);
    for direction in [Direction::Up, Direction::Down, Direction::Both] {
        let out = detect(
            &pts,
            &Method::Adaptive(AdaptiveParams::default()),
            direction,
        );
        assert!(out.iter().all(|s| !s.is_anomaly));
        for s in out.iter().filter(|s| !s.warming_up) {
            assert_eq!(s.score, Some(0.0));
        }
    }
}

#[test]
fn mad_zero_gives_a_finite_score_for_a_change() {
    let mut values = vec![5.0; 100];
    values.push(6.0);
    let out = detect(
        &series(&values),
        &Method::Adaptive(AdaptiveParams::default()),
        Direction::Both,
    );
    let z = out[100].score.expect("scored");
    assert!(z.is_finite() && z > 0.0, "z = {z}");
    assert!(
        out[100].is_anomaly,
        "any change of a constant series is unusual"
    );
}

#[test]
fn mostly_constant_series_uses_the_mean_absolute_deviation() {
    // 90% of residuals are 0 (MAD 0) but some are ±1: an ordinary ±1 must not
    // score astronomically.
    let values: Vec<f64> = (0..400)
        .map(|i| {
            if i % 10 == 5 {
                6.0
            } else if i % 10 == 7 {
                4.0
            } else {
                5.0
            }
        })
        .collect();
    let out = detect(
        &series(&values),
        &Method::Adaptive(AdaptiveParams::default()),
        Direction::Both,
    );
    let worst = out
        .iter()
        .skip(100)
        .filter_map(|s| s.score)
        .fold(0.0f64, |m, z| m.max(z.abs()));
    assert!(worst < 10.0, "largest |z| {worst}");
}

#[test]
fn poisson_floor_keeps_an_ordinary_count_quiet_after_a_flat_run() {
    let mut values = vec![5.0; 100];
    values.push(8.0);
    let method = |noise| {
        Method::Adaptive(AdaptiveParams {
            noise,
            ..AdaptiveParams::default()
        })
    };
    let pts = series(&values);
    let with_floor = detect(&pts, &method(Noise::Poisson), Direction::Up);
    let z = with_floor[100].score.expect("scored");
    assert!((z - 3.0 / 5f64.sqrt()).abs() < 1e-6, "z = {z}");
    assert!(!with_floor[100].is_anomaly);
    let without = detect(&pts, &method(Noise::None), Direction::Up);
    assert!(without[100].is_anomaly);
}

#[test]
fn binomial_floor_uses_the_number_of_trials() {
    // A ratio stuck at exactly 0.0 over 1000 trials, then 0.003 (3 in 1000).
    let mut pts: Vec<Point> = (0..100)
        .map(|i| Point {
            ts: i,
            value: 0.0,
            weight: 1000.0,
        })
        .collect();
    pts.push(Point {
        ts: 100,
        value: 0.003,
        weight: 1000.0,
    });
    let params = AdaptiveParams {
        noise: Noise::Binomial,
        ..AdaptiveParams::default()
    };
    let out = detect(&pts, &Method::Adaptive(params.clone()), Direction::Up);
    let z = out[100].score.expect("scored");
    assert!(
        z.is_finite() && z < 4.0,
        "3 in 1000 after 0s is not alarming: z = {z}"
    );
    pts[100].value = 0.05; // 50 in 1000 is.
    let out = detect(&pts, &Method::Adaptive(params), Direction::Up);
    assert!(out[100].is_anomaly);
}

#[test]
fn a_ratios_scale_follows_each_buckets_own_number_of_trials() {
    // Buckets alternate between 1000 trials and 5 trials around a 4% share,
    // with the small buckets' shares jumping by whole 20% steps. Judged by
    // one pooled spread, the small buckets' noise would hide a real rise in
    // a large bucket; in binomial units each bucket is judged at its own n.
    let mut rng = 7u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 10_000) as f64 / 10_000.0
    };
    let mut pts = Vec::new();
    for i in 0..400 {
        let trials = if i % 2 == 0 { 1000.0 } else { 5.0 };
        let hits = (0..trials as usize).filter(|_| next() < 0.04).count() as f64;
        pts.push(Point {
            ts: i * 3600,
            value: hits / trials,
            weight: trials,
        });
    }
    // 80 in 1000 (z ≈ 6.5 binomial) in a large bucket; 1 in 5 in a small one.
    pts.push(Point {
        ts: 400 * 3600,
        value: 0.08,
        weight: 1000.0,
    });
    pts.push(Point {
        ts: 401 * 3600,
        value: 0.2,
        weight: 5.0,
    });
    let params = AdaptiveParams {
        noise: Noise::Binomial,
        season: Season::None,
        ..AdaptiveParams::default()
    };
    let out = detect(&pts, &Method::Adaptive(params), Direction::Up);
    assert!(
        out[400].is_anomaly,
        "8% over 1000 trials is far above 4%: {:?}",
        out[400]
    );
    assert!(
        !out[401].is_anomaly,
        "1 in 5 is ordinary noise: {:?}",
        out[401]
    );
    let false_alarms = out[..400].iter().filter(|v| v.is_anomaly).count();
    assert!(
        false_alarms <= 4,
        "{false_alarms} false alarms in 400 buckets of plain binomial noise"
    );
}

#[test]
fn non_finite_values_are_marked_and_skipped_by_every_method() {
    let mut pts = crate::synth::gaussian_indexed(3, 400, 50.0, 2.0);
    pts[200].value = f64::NAN;
    pts[250].value = f64::INFINITY;
    pts[300].value = f64::NEG_INFINITY;
    let methods = [
        Method::Adaptive(AdaptiveParams::default()),
        Method::RollingSigma {
            sigmas: 3.0,
            window: 30,
        },
        Method::MeanMultiple {
            multiple: 3.0,
            window_secs: 20,
        },
        Method::P95Multiple {
            multiple: 2.0,
            window_secs: 20,
        },
    ];
    for method in &methods {
        let out = detect(&pts, method, Direction::Both);
        assert_eq!(out.len(), pts.len());
        for &i in &[200, 250, 300] {
            assert!(!out[i].is_anomaly && out[i].score.is_none() && !out[i].warming_up);
        }
        for s in &out {
            assert!(s.score.is_none_or(f64::is_finite), "{method:?}: {s:?}");
            assert!(s.baseline.is_none_or(f64::is_finite), "{method:?}: {s:?}");
        }
        // Scoring resumes normally right after.
        assert!(out[201].score.is_some() && out[301].score.is_some());
    }
}

#[test]
fn bad_parameters_are_reported_and_clamped() {
    let bad = AdaptiveParams {
        alpha: 0.0,
        z: f64::NAN,
        mad_window: 1,
        ..AdaptiveParams::default()
    };
    let problems = bad.validate().expect_err("invalid");
    let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
    assert_eq!(fields, ["alpha", "z", "mad_window"]);
    assert!(bad.sanitized().validate().is_ok());
    assert!(AdaptiveParams::default().validate().is_ok());
    // detect does not panic on them.
    let out = detect(
        &series(&[1.0, 2.0, 3.0, 2.0, 1.0]),
        &Method::Adaptive(bad),
        Direction::Both,
    );
    assert_eq!(out.len(), 5);
}

#[test]
fn params_and_methods_round_trip_through_json() {
    let method = Method::Adaptive(AdaptiveParams {
        noise: Noise::Poisson,
        min_value: 5.0,
        ..AdaptiveParams::default()
    });
    let json = serde_json::to_string(&method).expect("serialize");
    assert!(json.contains(r#""kind":"adaptive""#), "{json}");
    let back: Method = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, method);
    // Missing fields take their defaults; unknown ones are refused.
    let partial: AdaptiveParams = serde_json::from_str(r#"{"z": 5}"#).expect("partial");
    assert_eq!(partial.z, 5.0);
    assert_eq!(partial.alpha, AdaptiveParams::default().alpha);
    assert!(serde_json::from_str::<AdaptiveParams>(r#"{"zz": 5}"#).is_err());
}
