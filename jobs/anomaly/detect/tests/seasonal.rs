//! A daily × weekly seasonal count series with injected spikes: the adaptive
//! method against the static references, at equal or better power.

use patrol_anomaly_detect::{
    detect, merge, score, AdaptiveParams, Direction, Method, Noise, Score,
};

use crate::synth::{seasonal_with_spikes, Labelled, FIVE_MIN};

const TOLERANCE: i64 = FIVE_MIN;

fn adaptive() -> Method {
    // Defaults plus what the rule kind says (counts); nothing fitted here.
    Method::Adaptive(AdaptiveParams {
        noise: Noise::Poisson,
        ..AdaptiveParams::default()
    })
}

/// Scores every method on the same points: those after the first day, the
/// longest warm-up among the references (a rolling 288-point window judges
/// nothing on day one, so counting day one against the adaptive method
/// only would be unfair either way). No incident is injected on day one.
fn run(sets: &[Labelled], method: &Method) -> Score {
    let scores: Vec<Score> = sets
        .iter()
        .map(|s| {
            let out = detect(&s.points, method, Direction::Up);
            let from = s.points[0].ts + 86_400;
            let judged: Vec<_> = out.into_iter().filter(|p| p.ts >= from).collect();
            score(&judged, &s.incidents, TOLERANCE)
        })
        .collect();
    merge(&scores)
}

fn datasets() -> Vec<Labelled> {
    (0..3)
        .map(|seed| seasonal_with_spikes(100 + seed, 4, 20, 0.8))
        .collect()
}

/// The reference with the fewest false positives among `methods` that
/// reaches `power`, if any does.
fn best_reference_at_power(
    sets: &[Labelled],
    methods: &[Method],
    power: f64,
) -> Option<(Method, Score)> {
    methods
        .iter()
        .map(|m| (m.clone(), run(sets, m)))
        .filter(|(_, s)| s.power >= power)
        .min_by_key(|(_, s)| s.false_positives)
}

#[test]
fn adaptive_detects_spikes_with_far_fewer_false_positives_than_the_seed_rules() {
    let sets = datasets();
    let ours = run(&sets, &adaptive());
    eprintln!("adaptive: {ours:?}");
    assert!(ours.power >= 0.9, "{ours:?}");

    // The seed's mean×3 as patrol configures it (buckets compared with a
    // 7-day trailing mean), and the textbook rolling 3σ. (The seed's p95×2
    // is nearly silent here — and nearly blind; it is compared at equal
    // power below.)
    let references = [
        Method::MeanMultiple {
            multiple: 3.0,
            window_secs: 7 * 86_400,
        },
        Method::RollingSigma {
            sigmas: 3.0,
            window: 48,
        },
        Method::RollingSigma {
            sigmas: 3.0,
            window: 288,
        },
    ];
    for method in &references {
        let reference = run(&sets, method);
        eprintln!("{method:?}: {reference:?}");
        assert!(ours.power >= reference.power, "{method:?}: {reference:?}");
        assert!(
            ours.false_positives * 10 <= reference.false_positives * 4,
            "{method:?}: ours {} vs {}",
            ours.false_positives,
            reference.false_positives
        );
    }
}

#[test]
fn static_baselines_need_many_more_false_positives_to_match_adaptive_power() {
    let sets = datasets();
    let ours = run(&sets, &adaptive());
    let mut references = Vec::new();
    for multiple in [1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0] {
        for window_secs in [600, 3_600, 86_400] {
            references.push(Method::MeanMultiple {
                multiple,
                window_secs,
            });
            references.push(Method::P95Multiple {
                multiple,
                window_secs,
            });
        }
    }
    for sigmas in [2.5, 3.0, 3.5, 4.0, 5.0] {
        for window in [12, 48, 288, 2016] {
            references.push(Method::RollingSigma { sigmas, window });
        }
    }
    match best_reference_at_power(&sets, &references, ours.power) {
        None => eprintln!("no reference reaches power {}", ours.power),
        Some((method, s)) => {
            eprintln!(
                "best reference at power ≥ {}: {method:?} {s:?}\nadaptive: {ours:?}",
                ours.power
            );
            // False positives down by at least 40% at equal or better power.
            assert!(
                ours.false_positives * 10 <= s.false_positives * 6,
                "ours {} vs best reference {}",
                ours.false_positives,
                s.false_positives
            );
        }
    }
}

#[test]
fn adaptive_is_not_fooled_by_the_daily_ramp() {
    // Without spikes, the morning ramp and the weekend drop must not page.
    let clean = crate::synth::seasonal_with_spikes(7, 4, 0, 0.0);
    let out = detect(&clean.points, &adaptive(), Direction::Both);
    let s = score(&out, &[], TOLERANCE);
    eprintln!("clean: {s:?}");
    assert!(s.fpr < 0.001, "{s:?}");
}
