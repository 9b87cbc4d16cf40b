//! `cargo bench -p patrol-anomaly-detect`: time `detect` on 1M points for
//! each method. Prints points per second; no external harness.

use std::hint::black_box;
use std::time::Instant;

use patrol_anomaly_detect::{detect, AdaptiveParams, Direction, Method, Noise, Point};

fn series(n: usize) -> Vec<Point> {
    // A deterministic daily cycle with pseudo-random noise (splitmix64).
    let mut state = 0x1234_5678_u64;
    let mut noise = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    (0..n)
        .map(|i| {
            let ts = 1_704_067_200 + i as i64 * 60;
            let phase = (ts % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
            Point::new(ts, 100.0 + 50.0 * phase.sin() + 10.0 * noise())
        })
        .collect()
}

fn main() {
    let points = series(1_000_000);
    let methods = [
        (
            "adaptive (hour-of-week, poisson)",
            Method::Adaptive(AdaptiveParams {
                noise: Noise::Poisson,
                ..AdaptiveParams::default()
            }),
        ),
        (
            "rolling 3 sigma / 288",
            Method::RollingSigma {
                sigmas: 3.0,
                window: 288,
            },
        ),
        (
            "mean x3 / 7d",
            Method::MeanMultiple {
                multiple: 3.0,
                window_secs: 7 * 86_400,
            },
        ),
        (
            "p95 x2 / 1d",
            Method::P95Multiple {
                multiple: 2.0,
                window_secs: 86_400,
            },
        ),
    ];
    for (name, method) in &methods {
        let start = Instant::now();
        let out = detect(black_box(&points), method, Direction::Both);
        let secs = start.elapsed().as_secs_f64();
        let alerts = out.iter().filter(|s| s.is_anomaly).count();
        println!(
            "{name:<34} {:>8.1} ms for {} points ({:.1} M points/s, {alerts} alerts)",
            secs * 1e3,
            points.len(),
            points.len() as f64 / secs / 1e6
        );
    }
}
