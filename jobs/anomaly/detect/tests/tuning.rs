//! Auto-tuning with the min_power guardrail.

use patrol_anomaly_detect::{
    detect, merge, score, tune, AdaptiveParams, Direction, Grid, Incident, Method, Noise, Score,
    TuneOutcome,
};

use crate::synth::{gaussian_indexed, seasonal_with_spikes, FIVE_MIN};

fn small_grid() -> Grid {
    Grid {
        alphas: vec![0.05, 0.2],
        zs: vec![3.0, 4.0, 5.0, 6.0, 8.0],
    }
}

fn base() -> AdaptiveParams {
    AdaptiveParams {
        noise: Noise::Poisson,
        ..AdaptiveParams::default()
    }
}

#[test]
fn tune_meets_min_power_with_the_fewest_false_positives() {
    let groups: Vec<_> = (0..2)
        .map(|s| seasonal_with_spikes(40 + s, 2, 10, 0.6))
        .collect();
    let series: Vec<_> = groups
        .iter()
        .map(|g| (g.points.as_slice(), g.incidents.as_slice()))
        .collect();
    let grid = small_grid();
    let min_power = 0.8;
    let TuneOutcome::Tuned(t) = tune(&series, &base(), Direction::Up, &grid, min_power, FIVE_MIN)
    else {
        panic!("spikes of this size are detectable");
    };
    eprintln!("{t:?}");
    assert_eq!(t.tried, grid.alphas.len() * grid.zs.len());
    assert!(t.score.power >= min_power);
    assert_eq!(
        t.params.noise,
        Noise::Poisson,
        "untuned fields come from base"
    );

    // The reported score is what the chosen parameters really do.
    let rescore = |params: &AdaptiveParams| -> Score {
        let m = Method::Adaptive(params.clone());
        merge(
            &series
                .iter()
                .map(|(p, i)| score(&detect(p, &m, Direction::Up), i, FIVE_MIN))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(rescore(&t.params), t.score);
    // No candidate meeting the guardrail has fewer false positives.
    for &alpha in &grid.alphas {
        for &z in &grid.zs {
            let s = rescore(&AdaptiveParams { alpha, z, ..base() });
            if s.power >= min_power {
                assert!(
                    s.false_positives >= t.score.false_positives,
                    "alpha {alpha} z {z}: {s:?}"
                );
            }
        }
    }
}

#[test]
fn tune_refuses_when_min_power_is_unreachable() {
    // Incidents labelled where nothing happens: no parameters can detect
    // them beyond chance.
    let pts = gaussian_indexed(9, 3_000, 100.0, 5.0);
    let incidents: Vec<Incident> = (1..10)
        .map(|k| Incident {
            start: k * 300,
            end: k * 300 + 2,
        })
        .collect();
    let outcome = tune(
        &[(&pts, &incidents)],
        &AdaptiveParams::default(),
        Direction::Up,
        &small_grid(),
        0.9,
        0,
    );
    match outcome {
        TuneOutcome::Refused {
            best_power,
            min_power,
            reason,
        } => {
            assert!(best_power < 0.9);
            assert_eq!(min_power, 0.9);
            assert!(reason.contains("0.900"), "{reason}");
        }
        TuneOutcome::Tuned(t) => panic!("returned parameters below the guardrail: {t:?}"),
    }
}

#[test]
fn tune_refuses_without_labelled_incidents_or_candidates() {
    let pts = gaussian_indexed(10, 500, 100.0, 5.0);
    let no_incidents = tune(
        &[(&pts, &[])],
        &AdaptiveParams::default(),
        Direction::Up,
        &Grid::default(),
        0.5,
        0,
    );
    assert!(matches!(no_incidents, TuneOutcome::Refused { .. }));
    let incidents = [Incident { start: 10, end: 20 }];
    let empty_grid = Grid {
        alphas: vec![],
        zs: vec![4.0],
    };
    let outcome = tune(
        &[(&pts, &incidents)],
        &AdaptiveParams::default(),
        Direction::Up,
        &empty_grid,
        0.5,
        0,
    );
    assert!(matches!(outcome, TuneOutcome::Refused { .. }));
}

#[test]
fn tuned_outcome_round_trips_through_json() {
    let g = seasonal_with_spikes(77, 1, 4, 1.0);
    let outcome = tune(
        &[(&g.points, &g.incidents)],
        &base(),
        Direction::Up,
        &Grid {
            alphas: vec![0.1],
            zs: vec![4.0],
        },
        0.0,
        FIVE_MIN,
    );
    let json = serde_json::to_string(&outcome).expect("serialize");
    let back: TuneOutcome = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, outcome);
}
