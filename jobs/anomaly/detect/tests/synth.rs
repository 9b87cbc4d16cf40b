//! Deterministic synthetic series: a splitmix64 PRNG, Gaussian and Poisson
//! noise, and a daily × weekly seasonal count series with injected spikes.

use patrol_anomaly_detect::{Incident, Point};

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Poisson(lambda): Knuth's product method below 30, a rounded normal
    /// approximation above.
    pub fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0.0;
            let mut p = self.uniform();
            while p > limit {
                k += 1.0;
                p *= self.uniform();
            }
            k
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0)
        }
    }
}

pub const FIVE_MIN: i64 = 300;
/// Monday 2024-01-01 00:00 UTC.
pub const MONDAY: i64 = 1_704_067_200;

/// Expected count at `ts`: a daily cycle from ~8 at night to ~150 in the
/// afternoon, halved at weekends.
pub fn seasonal_rate(ts: i64) -> f64 {
    let hour = (ts.rem_euclid(86_400)) as f64 / 3_600.0;
    let dow = ((ts - MONDAY).div_euclid(86_400)).rem_euclid(7);
    let daily = 0.5 - 0.5 * (std::f64::consts::TAU * (hour - 3.0) / 24.0).cos();
    let weekly = if dow >= 5 { 0.5 } else { 1.0 };
    8.0 + 142.0 * daily.powf(1.5) * weekly
}

/// A labelled seasonal count series.
pub struct Labelled {
    pub points: Vec<Point>,
    pub incidents: Vec<Incident>,
}

/// `weeks` of 5-minute Poisson counts around [`seasonal_rate`], with
/// `spikes` incidents of 1–3 points after the first three days. A spike adds
/// `factor × rate + 6 × sqrt(rate)`: clear against the local noise, but not
/// a fixed multiple of the mean.
pub fn seasonal_with_spikes(seed: u64, weeks: i64, spikes: usize, factor: f64) -> Labelled {
    let mut rng = Rng::new(seed);
    let n = (weeks * 7 * 86_400 / FIVE_MIN) as usize;
    let mut points: Vec<Point> = (0..n)
        .map(|i| {
            let ts = MONDAY + i as i64 * FIVE_MIN;
            Point::new(ts, rng.poisson(seasonal_rate(ts)))
        })
        .collect();
    let first = (3 * 86_400 / FIVE_MIN) as usize;
    let mut incidents: Vec<Incident> = Vec::new();
    while incidents.len() < spikes {
        let at = first + rng.below(n - first - 4);
        let len = 1 + rng.below(3);
        let start = points[at].ts;
        let end = start + len as i64 * FIVE_MIN;
        // Keep incidents apart so each is its own event.
        if incidents
            .iter()
            .any(|i| (i.start - start).abs() < 6 * 3_600)
        {
            continue;
        }
        for p in &mut points[at..at + len] {
            let rate = seasonal_rate(p.ts);
            p.value += (factor * rate + 6.0 * rate.sqrt()).round();
        }
        incidents.push(Incident { start, end });
    }
    incidents.sort_by_key(|i| i.start);
    Labelled { points, incidents }
}

/// Gaussian noise around `level` with timestamps 1..=n (Yahoo S5 style).
pub fn gaussian_indexed(seed: u64, n: usize, level: f64, sd: f64) -> Vec<Point> {
    let mut rng = Rng::new(seed);
    (1..=n)
        .map(|i| Point::new(i as i64, level + sd * rng.normal()))
        .collect()
}
