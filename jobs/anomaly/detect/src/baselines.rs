//! The reference methods the adaptive detector is judged against: a multiple
//! of the trailing mean or p95, and the rolling n-sigma rule.

use std::collections::VecDeque;

use crate::types::{Direction, Point, Scored};

/// Up: `value > multiple × stat`; Down: `value < stat / multiple`.
fn multiple_verdict(p: &Point, stat: f64, multiple: f64, direction: Direction) -> Scored {
    let up = p.value > multiple * stat;
    let down = p.value < stat / multiple;
    let is_anomaly = match direction {
        Direction::Up => up,
        Direction::Down => down,
        Direction::Both => up || down,
    };
    Scored {
        ts: p.ts,
        value: p.value,
        baseline: Some(stat),
        score: (stat > 0.0).then(|| p.value / stat),
        is_anomaly,
        warming_up: false,
    }
}

/// Trailing window `[ts - window_secs, ts)` of finite values.
struct TimeWindow {
    entries: VecDeque<(i64, f64)>,
}

impl TimeWindow {
    fn new() -> Self {
        TimeWindow {
            entries: VecDeque::new(),
        }
    }

    /// Drops entries older than `ts - window_secs`, calling `on_drop` on each.
    fn expire(&mut self, ts: i64, window_secs: i64, mut on_drop: impl FnMut(f64)) {
        let from = ts.saturating_sub(window_secs);
        while let Some(&(t, v)) = self.entries.front() {
            if t >= from {
                break;
            }
            self.entries.pop_front();
            on_drop(v);
        }
    }
}

pub(crate) fn mean_multiple(
    points: &[Point],
    multiple: f64,
    window_secs: i64,
    direction: Direction,
) -> Vec<Scored> {
    let mut window = TimeWindow::new();
    // A running sum, recomputed from the window once per window length so
    // that add/subtract rounding cannot accumulate over a long series.
    let mut sum = 0.0;
    let mut since_recompute = 0usize;
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        window.expire(p.ts, window_secs, |v| sum -= v);
        since_recompute += 1;
        if since_recompute >= window.entries.len().max(64) {
            since_recompute = 0;
            sum = window.entries.iter().map(|&(_, v)| v).sum();
        }
        if !p.value.is_finite() {
            out.push(Scored::not_finite(p));
            continue;
        }
        if window.entries.is_empty() {
            out.push(Scored::warming(p));
        } else {
            let mean = sum / window.entries.len() as f64;
            out.push(multiple_verdict(p, mean, multiple, direction));
        }
        window.entries.push_back((p.ts, p.value));
        sum += p.value;
    }
    out
}

pub(crate) fn p95_multiple(
    points: &[Point],
    multiple: f64,
    window_secs: i64,
    direction: Direction,
) -> Vec<Scored> {
    let mut window = TimeWindow::new();
    // The window's values kept sorted: insert and remove are a binary search
    // and a memmove, the percentile is an index.
    let mut sorted: Vec<f64> = Vec::new();
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        window.expire(p.ts, window_secs, |v| {
            let i = sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            sorted.remove(i);
        });
        if !p.value.is_finite() {
            out.push(Scored::not_finite(p));
            continue;
        }
        if sorted.is_empty() {
            out.push(Scored::warming(p));
        } else {
            // Nearest rank: the smallest value with at least 95% at or below it.
            let rank = (0.95 * sorted.len() as f64).ceil() as usize;
            let p95 = sorted[rank.clamp(1, sorted.len()) - 1];
            out.push(multiple_verdict(p, p95, multiple, direction));
        }
        window.entries.push_back((p.ts, p.value));
        let i = sorted.partition_point(|x| x.total_cmp(&p.value).is_lt());
        sorted.insert(i, p.value);
    }
    out
}

pub(crate) fn rolling_sigma(
    points: &[Point],
    sigmas: f64,
    window: usize,
    direction: Direction,
) -> Vec<Scored> {
    let window = window.max(2);
    let mut ring: VecDeque<f64> = VecDeque::with_capacity(window);
    // Sums of (x - shift) for numerical stability; recomputed from the ring
    // every `window` pushes so rounding cannot accumulate.
    let mut shift = 0.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    let mut since_recompute = 0usize;
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        if !p.value.is_finite() {
            out.push(Scored::not_finite(p));
            continue;
        }
        if ring.len() < window {
            out.push(Scored::warming(p));
        } else {
            let n = ring.len() as f64;
            let mean_d = s1 / n;
            let var = ((s2 - s1 * mean_d) / (n - 1.0)).max(0.0);
            let mean = shift + mean_d;
            // A constant window has std 0: a floor far below any real change
            // keeps z finite (and 0 for a repeat of the constant).
            let std = var.sqrt().max(1e-9 * mean.abs()).max(1e-12);
            let z = (p.value - mean) / std;
            out.push(Scored {
                ts: p.ts,
                value: p.value,
                baseline: Some(mean),
                score: Some(z),
                is_anomaly: direction.exceeds(z, sigmas),
                warming_up: false,
            });
        }
        if ring.len() == window {
            if let Some(old) = ring.pop_front() {
                s1 -= old - shift;
                s2 -= (old - shift) * (old - shift);
            }
        }
        if ring.is_empty() {
            shift = p.value;
        }
        ring.push_back(p.value);
        s1 += p.value - shift;
        s2 += (p.value - shift) * (p.value - shift);
        since_recompute += 1;
        if since_recompute >= window {
            since_recompute = 0;
            shift += s1 / ring.len() as f64;
            s1 = 0.0;
            s2 = 0.0;
            for &v in &ring {
                s1 += v - shift;
                s2 += (v - shift) * (v - shift);
            }
        }
    }
    out
}
