//! Yahoo S5 / NAB-like series without calendar seasonality: index
//! timestamps, a slow drift, noise, spikes, dips and one level shift. The
//! adaptive method with its defaults against the rolling 3σ rule.

use patrol_anomaly_detect::{
    detect, merge, score, AdaptiveParams, Direction, Incident, Method, Point, Score,
};

use crate::synth::Rng;

struct Labelled {
    points: Vec<Point>,
    incidents: Vec<Incident>,
}

fn series(seed: u64) -> Labelled {
    let mut rng = Rng::new(seed);
    let n = 1_500;
    let sd = 1.0 + 4.0 * rng.uniform();
    let mut level = 50.0;
    let mut points: Vec<Point> = (1..=n as i64)
        .map(|ts| {
            // A slow random walk under the noise.
            level += 0.05 * sd * rng.normal();
            Point::new(ts, level + sd * rng.normal())
        })
        .collect();
    let mut incidents = Vec::new();
    // Eight spikes or dips of 5–9σ, one or two points, after a warm-up.
    while incidents.len() < 8 {
        let at = 150 + rng.below(n - 300);
        if incidents
            .iter()
            .any(|i: &Incident| (i.start - at as i64).abs() < 60)
        {
            continue;
        }
        let len = 1 + rng.below(2);
        let size = (5.0 + 4.0 * rng.uniform()) * sd * if rng.uniform() < 0.7 { 1.0 } else { -1.0 };
        for p in &mut points[at..at + len] {
            p.value += size;
        }
        incidents.push(Incident {
            start: points[at].ts,
            end: points[at].ts + len as i64,
        });
    }
    // A permanent shift of 6σ in the last quarter.
    let at = n - 300 - rng.below(50);
    if !incidents.iter().any(|i| (i.start - at as i64).abs() < 60) {
        for p in &mut points[at..] {
            p.value += 6.0 * sd;
        }
        incidents.push(Incident {
            start: points[at].ts,
            end: points[at].ts + 1,
        });
    }
    Labelled { points, incidents }
}

fn run(sets: &[Labelled], method: &Method) -> Score {
    merge(
        &sets
            .iter()
            .map(|s| {
                // Both methods judged on the same points (after the longest
                // warm-up), with a few points of tolerance.
                let out = detect(&s.points, method, Direction::Both);
                let judged: Vec<_> = out.into_iter().filter(|p| p.ts > 100).collect();
                score(&judged, &s.incidents, 3)
            })
            .collect::<Vec<_>>(),
    )
}

#[test]
fn adaptive_beats_rolling_three_sigma_on_index_series() {
    let sets: Vec<Labelled> = (0..20).map(|s| series(500 + s)).collect();
    let ours = run(&sets, &Method::Adaptive(AdaptiveParams::default()));
    eprintln!("adaptive: {ours:?}");
    // The textbook rule: a better balance of alarms and detections.
    for window in [50, 100] {
        let sigma = run(
            &sets,
            &Method::RollingSigma {
                sigmas: 3.0,
                window,
            },
        );
        eprintln!("rolling 3σ/{window}: {sigma:?}");
        assert!(ours.f1 > sigma.f1, "window {window}");
        assert!(
            ours.false_positives * 10 <= sigma.false_positives * 4,
            "window {window}"
        );
    }
    // Not asserted, and said in the README: on this near-Gaussian data a
    // rolling rule with a hand-picked higher threshold and longer window
    // does about as well as the adaptive defaults; the advantage here is
    // over the 3σ rule as usually deployed.
}
