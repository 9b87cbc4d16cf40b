//! Warm-up and the automatic choice of seasonality.

use patrol_anomaly_detect::{detect, AdaptiveParams, Direction, Method, Point, Season};

#[test]
fn first_points_are_warming_up_and_never_anomalous() {
    let p = AdaptiveParams::default();
    // Wild values from the start: nothing can be judged before history exists.
    let pts: Vec<Point> = (0..100)
        .map(|i| Point::new(i, if i % 3 == 0 { 1e6 } else { i as f64 }))
        .collect();
    let out = detect(&pts, &Method::Adaptive(p.clone()), Direction::Both);
    // The first point starts the level; the next min_samples make residuals.
    let warm = p.min_samples + 1;
    for s in &out[..warm] {
        assert!(s.warming_up && !s.is_anomaly && s.score.is_none(), "{s:?}");
    }
    assert!(out[warm..].iter().all(|s| !s.warming_up));
}

#[test]
fn empty_and_single_point_series() {
    let m = Method::Adaptive(AdaptiveParams::default());
    assert!(detect(&[], &m, Direction::Up).is_empty());
    let out = detect(&[Point::new(0, 1.0)], &m, Direction::Up);
    assert!(out[0].warming_up);
}

#[test]
fn hourly_slots_fall_back_to_coarser_ones_until_they_have_history() {
    // One week of hourly data: each hour-of-week slot is seen once, so the
    // hour-of-day slot (7 samples) and then the global slot must do. With
    // fallback, points after the global warm-up are scored.
    let pts: Vec<Point> = (0..168)
        .map(|h| Point::new(crate::synth::MONDAY + h * 3_600, 50.0 + (h % 24) as f64))
        .collect();
    let p = AdaptiveParams {
        season: Season::HourOfWeek,
        ..AdaptiveParams::default()
    };
    let out = detect(&pts, &Method::Adaptive(p.clone()), Direction::Both);
    assert!(out[p.min_samples + 1..].iter().all(|s| !s.warming_up));
}

#[test]
fn short_series_ignore_seasonality() {
    // Index timestamps (Yahoo S5 style) span far less than two days: the
    // requested seasonality must not split 1,000 points into 168 slots.
    let pts = crate::synth::gaussian_indexed(5, 1_000, 10.0, 1.0);
    let seasonal = detect(
        &pts,
        &Method::Adaptive(AdaptiveParams {
            season: Season::HourOfWeek,
            ..AdaptiveParams::default()
        }),
        Direction::Both,
    );
    let flat = detect(
        &pts,
        &Method::Adaptive(AdaptiveParams {
            season: Season::None,
            ..AdaptiveParams::default()
        }),
        Direction::Both,
    );
    assert_eq!(seasonal, flat);
}
