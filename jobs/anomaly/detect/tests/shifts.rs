//! Long incidents, permanent level shifts and dips.

use patrol_anomaly_detect::{detect, AdaptiveParams, Direction, Method, Point};

use crate::synth::gaussian_indexed;

fn params() -> AdaptiveParams {
    AdaptiveParams::default()
}

#[test]
fn an_incident_shorter_than_shift_after_stays_anomalous_and_leaves_the_baseline() {
    let p = params();
    let len = p.shift_after - 2;
    let mut pts = gaussian_indexed(11, 1_000, 100.0, 5.0);
    for pt in &mut pts[500..500 + len] {
        pt.value += 60.0;
    }
    let out = detect(&pts, &Method::Adaptive(p), Direction::Up);
    assert!(
        out[500..500 + len].iter().all(|s| s.is_anomaly),
        "every incident point pages"
    );
    let after = out[500 + len].baseline.expect("baseline");
    assert!((after - 100.0).abs() < 5.0, "baseline dragged to {after}");
    let later = out[520..].iter().filter(|s| s.is_anomaly).count();
    assert!(later <= 2, "{later} alarms after the incident");
}

#[test]
fn a_permanent_level_shift_is_adopted() {
    let p = params();
    let mut pts = gaussian_indexed(12, 2_000, 100.0, 5.0);
    for pt in &mut pts[1_000..] {
        pt.value += 60.0;
    }
    let out = detect(&pts, &Method::Adaptive(p.clone()), Direction::Both);
    assert!(out[1_000].is_anomaly, "the shift itself pages");
    let settle = 1_000 + p.shift_after + 10;
    let late: Vec<usize> = (settle..2_000).filter(|&i| out[i].is_anomaly).collect();
    assert!(late.len() <= 3, "alarms long after the shift at {late:?}");
    let end = out[1_999].baseline.expect("baseline");
    assert!((end - 160.0).abs() < 5.0, "baseline {end} after the shift");
}

#[test]
fn level_shifts_are_adopted_in_seasonal_series_too() {
    let mut data = crate::synth::seasonal_with_spikes(21, 4, 0, 0.0);
    let n = data.points.len();
    let at = n / 2;
    for pt in &mut data.points[at..] {
        pt.value += 80.0;
    }
    let p = AdaptiveParams {
        noise: patrol_anomaly_detect::Noise::Poisson,
        ..params()
    };
    let out = detect(&data.points, &Method::Adaptive(p), Direction::Both);
    assert!(out[at..at + 3].iter().any(|s| s.is_anomaly));
    let late = out[at + 288..].iter().filter(|s| s.is_anomaly).count();
    assert!(late <= 5, "{late} alarms a day after the shift");
}

#[test]
fn runs_are_held_back_because_winsorizing_alone_learns_a_long_incident() {
    // Guards the design: with run tracking off (shift_after 0) every point
    // is learnt winsorized, and the clipped residuals widen the scale, so a
    // 10-point incident is largely absorbed; with it on, it is not.
    let mut pts = gaussian_indexed(13, 600, 100.0, 5.0);
    for pt in &mut pts[300..310] {
        pt.value += 60.0;
    }
    let after = |shift_after| {
        let p = AdaptiveParams {
            shift_after,
            ..params()
        };
        let out = detect(&pts, &Method::Adaptive(p), Direction::Up);
        let flagged = out[300..310].iter().filter(|s| s.is_anomaly).count();
        (flagged, out[310].baseline.expect("baseline"))
    };
    let (held_flagged, held_baseline) = after(params().shift_after);
    assert_eq!(held_flagged, 10);
    assert!((held_baseline - 100.0).abs() < 5.0, "{held_baseline}");
    let (plain_flagged, plain_baseline) = after(0);
    assert!(
        plain_flagged < 10 || plain_baseline > 115.0,
        "{plain_flagged} {plain_baseline}"
    );
}

#[test]
fn dips_are_seen_down_and_both_but_not_up() {
    let mut pts = gaussian_indexed(14, 800, 100.0, 5.0);
    for pt in &mut pts[400..403] {
        pt.value -= 50.0;
    }
    let dip = |direction| {
        let out = detect(&pts, &Method::Adaptive(params()), direction);
        out[400..403].iter().all(|s| s.is_anomaly)
    };
    assert!(dip(Direction::Down));
    assert!(dip(Direction::Both));
    let up = detect(&pts, &Method::Adaptive(params()), Direction::Up);
    assert!(up[400..403].iter().all(|s| !s.is_anomaly));
    assert!(
        up[400].score.is_some_and(|z| z < -4.0),
        "the score keeps its sign"
    );
}

#[test]
fn min_value_blocks_upward_alarms_below_it() {
    let mut pts: Vec<Point> = gaussian_indexed(15, 500, 2.0, 0.3);
    pts[300].value = 4.0;
    let p = AdaptiveParams {
        min_value: 5.0,
        ..params()
    };
    let out = detect(&pts, &Method::Adaptive(p), Direction::Up);
    assert!(out[300].score.is_some_and(|z| z > 4.0));
    assert!(!out[300].is_anomaly);
    let out = detect(&pts, &Method::Adaptive(params()), Direction::Up);
    assert!(out[300].is_anomaly);
}

#[test]
fn a_slot_first_seen_during_an_adopted_shift_takes_the_new_level() {
    // Hour-of-day slots on 5-minute points: on day 0 every hour is new. A
    // shift of +40 (20σ) starts at 05:30 and is adopted at 06:25, after
    // twelve points; the 06:00 slot first appeared during the run, seeded
    // with the run's value clipped to the old baseline + z × scale. Adoption
    // must give that slot the new level too, or it keeps a level ~30 too
    // low and its ring residuals against it.
    let mut pts: Vec<Point> = gaussian_indexed(16, 3 * 288, 100.0, 2.0)
        .into_iter()
        .enumerate()
        .map(|(i, p)| Point::new(crate::synth::MONDAY + i as i64 * 300, p.value))
        .collect();
    let start = 5 * 12 + 6; // 05:30
    for pt in &mut pts[start..] {
        pt.value += 40.0;
    }
    let p = AdaptiveParams {
        season: patrol_anomaly_detect::Season::HourOfDay,
        ..params()
    };
    let out = detect(&pts, &Method::Adaptive(p), Direction::Both);
    for day in 1..3 {
        let slot = day * 288 + 6 * 12..day * 288 + 7 * 12;
        for (i, verdict) in out.iter().enumerate().take(slot.end).skip(slot.start) {
            let baseline = verdict.baseline.expect("baseline");
            assert!(
                (baseline - 140.0).abs() < 4.0,
                "day {day}, point {i} in the 06:00 slot: baseline {baseline}"
            );
        }
    }
}
