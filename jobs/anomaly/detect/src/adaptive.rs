//! The adaptive method: a seasonal EWMA level blended with a global one, a
//! robust (MAD) scale per slot, winsorized updates and level-shift adoption.
//! The reasoning behind each piece is in the crate README.

// Loops over tiers index several parallel per-tier arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::robust::{floored_scale, median_in_place, robust_scale_sorted};
use crate::types::{AdaptiveParams, Direction, Noise, Point, Scored, Season};

/// Tier 0: hour of week, 1: hour of day, 2: the one global slot.
const TIERS: usize = 3;
const GLOBAL: usize = 2;
const TIER_BASE: [usize; TIERS] = [0, 168, 192];
const SLOTS: usize = 193;
/// A series spanning less than this cannot show a daily cycle.
const MIN_SEASONAL_SPAN_SECS: i64 = 2 * 86_400;
/// Decay of the squared-error averages that weigh seasonal against global.
const ERROR_DECAY: f64 = 0.02;
/// Damping of the global level's trend per point (damped Holt): ramps are
/// followed, but a trend is never extrapolated far.
const TREND_DAMPING: f64 = 0.9;
/// The trend's smoothing weight as a fraction of alpha.
const TREND_GAIN: f64 = 0.5;
/// The longest exceedance window (see [`Tail`]); reached only for z above ~30.
const MAX_TAIL_WINDOW: usize = 16_384;
/// The largest `|z|` the tail keeps: its squares summed over the longest
/// window stay finite.
const MAX_DEVIATION: f64 = 1e150;

fn slot_of(tier: usize, ts: i64) -> usize {
    let days = ts.div_euclid(86_400);
    let hour = (ts.rem_euclid(86_400) / 3_600) as usize;
    match tier {
        // 1970-01-01 was a Thursday; +3 makes Monday 0.
        0 => TIER_BASE[0] + ((days + 3).rem_euclid(7) as usize) * 24 + hour,
        1 => TIER_BASE[1] + hour,
        _ => TIER_BASE[GLOBAL],
    }
}

/// Bias-corrected exponentially weighted mean (exact mean of the first few).
#[derive(Clone, Copy, Default)]
struct Ewm {
    num: f64,
    den: f64,
}

impl Ewm {
    fn push(&mut self, x: f64) {
        self.num = (1.0 - ERROR_DECAY) * self.num + ERROR_DECAY * x;
        self.den = (1.0 - ERROR_DECAY) * self.den + ERROR_DECAY;
    }

    fn get(&self) -> Option<f64> {
        (self.den > 0.0).then(|| self.num / self.den)
    }
}

/// Residual rings of every slot in one allocation, each with a sorted copy
/// kept up to date (binary search and a memmove of at most `cap` values per
/// push) so that the scale needs no copy and no selection.
struct Rings {
    cap: usize,
    data: Vec<f64>,
    sorted: Vec<f64>,
    len: Vec<usize>,
    pos: Vec<usize>,
}

impl Rings {
    fn new(cap: usize, slots: usize) -> Self {
        Rings {
            cap,
            data: vec![0.0; cap * slots],
            sorted: vec![0.0; cap * slots],
            len: vec![0; slots],
            pos: vec![0; slots],
        }
    }

    fn push(&mut self, slot: usize, r: f64) {
        let base = slot * self.cap;
        let mut len = self.len[slot];
        if len == self.cap {
            let old = self.data[base + self.pos[slot]];
            let sorted = &mut self.sorted[base..base + len];
            let i = sorted.partition_point(|v| v.total_cmp(&old).is_lt());
            sorted.copy_within(i + 1.., i);
            len -= 1;
        }
        let sorted = &mut self.sorted[base..base + len + 1];
        let i = sorted[..len].partition_point(|v| v.total_cmp(&r).is_lt());
        sorted.copy_within(i..len, i + 1);
        sorted[i] = r;
        self.data[base + self.pos[slot]] = r;
        self.pos[slot] = (self.pos[slot] + 1) % self.cap;
        self.len[slot] = len + 1;
    }

    fn sorted(&self, slot: usize) -> &[f64] {
        &self.sorted[slot * self.cap..slot * self.cap + self.len[slot]]
    }
}

/// A point of the current run of same-side exceedances. If the run is
/// adopted as a level shift, its residuals enter the rings re-based on the
/// new level; if it ends first, they are dropped (only the run's first point
/// was learnt, winsorized).
#[derive(Clone, Copy)]
struct Pending {
    slots: [usize; TIERS],
    /// `value - prediction` under the levels as they were when the run began.
    from_snapshot: [f64; TIERS],
    /// The residual of the tier that scored the point, from the snapshot.
    chosen_from_snapshot: f64,
    /// The winsorizing bound at the time (z × scale).
    bound: f64,
    /// The point's trials (ratio series), to standardize its residuals.
    weight: f64,
    /// The observed value, for slots first seen during the run.
    value: f64,
    /// `|value - prediction|` over the scale before widening, for the
    /// exceedance window once the run is over.
    deviation: f64,
    /// That scale, to re-base the deviation if the run is adopted.
    narrow_scale: f64,
}

/// How far the recent exceedances say the scale must be widened.
///
/// The robust scale comes from the middle of winsorized residuals, and only
/// the first point of each run of exceedances reaches the rings. On a series
/// flapping between levels, or on mostly-zero counts, the MAD is ~0 and the
/// mean absolute deviation of clipped residuals cannot grow unless more than
/// ~1/(1.25 z) of them are clipped, so the scale stays as narrow as the calm
/// part and every flap pages. The tail checks the scale against how often
/// recent points actually lie far out: it keeps `|z|` of the last `window`
/// points against the scale before widening (held-back run points included
/// once their run is over). Whatever the distribution, if a fraction `f` of
/// them are at least `t`, their root mean square is at least `t √f`
/// (Markov's inequality on the squares), and a correct scale gives `|z|` a
/// root mean square of about 1; so the scale is multiplied by the largest
/// such bound when it is above 1. Only tails of at least `min_tail` points
/// count: at least `1/z²` of the window — by Chebyshev, as much as any
/// distribution with this standard deviation may put beyond z, so rarer
/// points (the anomalies) never widen anything — and at least `shift_after`,
/// so that one run that is not adopted as a level shift cannot widen the
/// scale by itself. On Gaussian residuals the largest bound is ~0.6: nothing
/// changes there. The window's length makes `1/z²` of it `shift_after`
/// points (192 at the defaults), at least `mad_window`.
struct Tail {
    window: Rings,
    min_tail: usize,
}

impl Tail {
    fn new(p: &AdaptiveParams) -> Self {
        let z2 = p.z * p.z;
        let runs = p.shift_after.max(1) as f64;
        // Long enough that 1/z² of it is at least `shift_after` points.
        let cap = (runs * z2)
            .ceil()
            .clamp(p.mad_window as f64, MAX_TAIL_WINDOW as f64) as usize;
        let min_tail = ((cap as f64 / z2).ceil() as usize).max(p.shift_after.max(1));
        Tail {
            window: Rings::new(cap, 1),
            min_tail,
        }
    }

    fn push(&mut self, deviation: f64) {
        if !deviation.is_nan() {
            // Bounded so that a window of squares cannot overflow.
            self.window.push(0, deviation.min(MAX_DEVIATION));
        }
    }

    /// The factor (at least 1) the scale is multiplied by: the largest
    /// lower bound `d_k √(k / window)` on the root mean square of `|z|`,
    /// where `d_k` is the k-th largest and k runs from `min_tail` (points
    /// not seen yet count as 0, so a short history widens less).
    fn widening(&self) -> f64 {
        let sorted = self.window.sorted(0);
        let n = sorted.len();
        let cap = self.window.cap as f64;
        let mut best = 1.0f64;
        for k in self.min_tail..=n {
            let d = sorted[n - k];
            if d <= best {
                // Every later bound is at most d × 1 ≤ the best so far.
                break;
            }
            best = best.max(d * (k as f64 / cap).sqrt());
        }
        best
    }
}

struct State {
    p: AdaptiveParams,
    finest: usize,
    level: [f64; SLOTS],
    /// Damped trend of the global level, per point.
    trend: f64,
    count: [usize; SLOTS],
    rings: Rings,
    /// Squared error of each tier's own level (index GLOBAL: the global level).
    sq_err: [Ewm; TIERS],
    run_sign: i8,
    snapshot: [f64; SLOTS],
    pending: Vec<Pending>,
    run_scratch: Vec<f64>,
    tail: Tail,
}

impl State {
    fn new(p: AdaptiveParams, finest: usize) -> Self {
        let cap = p.mad_window;
        State {
            finest,
            level: [0.0; SLOTS],
            trend: 0.0,
            count: [0; SLOTS],
            rings: Rings::new(cap, SLOTS),
            sq_err: [Ewm::default(); TIERS],
            run_sign: 0,
            snapshot: [f64::NAN; SLOTS],
            pending: Vec::with_capacity(p.shift_after.min(1024)),
            run_scratch: Vec::with_capacity(p.shift_after.min(1024)),
            tail: Tail::new(&p),
            p,
        }
    }

    /// Weight of the seasonal tier `tier` against the global level:
    /// inverse mean squared one-step error (Bates–Granger combination).
    fn seasonal_weight(&self, tier: usize) -> f64 {
        if tier == GLOBAL {
            return 1.0;
        }
        match (self.sq_err[tier].get(), self.sq_err[GLOBAL].get()) {
            (Some(es), Some(eg)) if es + eg > 0.0 => eg / (es + eg),
            (Some(_), Some(_)) => 0.5,
            _ => 0.0,
        }
    }

    /// Prediction of `tier` for `slots` using `levels`; `None` when the slot
    /// has never been observed.
    fn predict(&self, levels: &[f64; SLOTS], tier: usize, slots: &[usize; TIERS]) -> Option<f64> {
        let s = slots[tier];
        let g = slots[GLOBAL];
        if self.count[s] == 0 || self.count[g] == 0 {
            return None;
        }
        let w = self.seasonal_weight(tier);
        Some(w * self.own_forecast(levels, s) + (1.0 - w) * self.own_forecast(levels, g))
    }

    /// A slot's own one-step forecast: its level, plus the damped trend for
    /// the global slot.
    fn own_forecast(&self, levels: &[f64; SLOTS], slot: usize) -> f64 {
        if slot == TIER_BASE[GLOBAL] {
            levels[slot] + TREND_DAMPING * self.trend
        } else {
            levels[slot]
        }
    }

    /// Adopts the run as a level shift: every level becomes its value at the
    /// start of the run plus the median deviation seen during the run, and
    /// the run's residuals enter the rings against that new level. A slot
    /// first seen during the run had no level before it, only the clipped
    /// value it was seeded with; it takes the median of its own values in the
    /// run, which are now normal, and its residuals are measured against it.
    fn adopt_shift(&mut self) {
        self.run_scratch.clear();
        self.run_scratch
            .extend(self.pending.iter().map(|e| e.chosen_from_snapshot));
        let delta = median_in_place(&mut self.run_scratch).unwrap_or(0.0);
        for s in 0..SLOTS {
            if self.snapshot[s].is_finite() {
                self.level[s] = self.snapshot[s] + delta;
            } else if self.count[s] > 0 {
                self.run_scratch.clear();
                for e in &self.pending {
                    if e.slots[self.finest..].contains(&s) {
                        self.run_scratch.push(e.value);
                    }
                }
                if let Some(level) = median_in_place(&mut self.run_scratch) {
                    self.level[s] = level;
                }
            }
        }
        // A step is not a slope.
        self.trend = 0.0;
        // The first point of the run is already in the rings (winsorized)
        // and in the tail.
        let levels = self.level;
        for e in self.pending.iter().skip(1) {
            for t in self.finest..TIERS {
                let fresh = !self.snapshot[e.slots[t]].is_finite();
                let r = match self.predict(&levels, t, &e.slots) {
                    Some(p) if fresh => e.value - p,
                    _ => e.from_snapshot[t] - delta,
                };
                let r = r.clamp(-e.bound, e.bound);
                let unit = self.unit(self.level[e.slots[t]], e.weight);
                self.rings.push(e.slots[t], r / unit);
            }
            let rebased = (e.chosen_from_snapshot - delta).abs() / e.narrow_scale;
            self.tail.push(rebased);
        }
        self.pending.clear();
        self.run_sign = 0;
    }

    fn update_levels(&mut self, slots: &[usize; TIERS], x: f64) {
        let alpha = self.p.alpha;
        for t in self.finest..TIERS {
            let s = slots[t];
            if self.count[s] == 0 {
                self.level[s] = x;
            } else if t == GLOBAL {
                // Damped Holt: level and trend.
                let old = self.level[s];
                let forecast = old + TREND_DAMPING * self.trend;
                self.level[s] = forecast + alpha * (x - forecast);
                let gain = alpha * TREND_GAIN;
                self.trend = TREND_DAMPING * self.trend
                    + gain * (self.level[s] - old - TREND_DAMPING * self.trend);
            } else {
                self.level[s] += alpha * (x - self.level[s]);
            }
            self.count[s] += 1;
        }
    }

    /// Whether residuals are kept in binomial standard deviations (ratio
    /// series with a known number of trials).
    fn standardized(&self, weight: f64) -> bool {
        self.p.noise == Noise::Binomial && weight > 0.0 && weight.is_finite()
    }

    /// What one residual is measured in: a binomial standard deviation at
    /// `level` over `weight` trials, or 1 (raw units).
    fn unit(&self, level: f64, weight: f64) -> f64 {
        if self.standardized(weight) {
            crate::robust::noise_floor(Noise::Binomial, level, weight).max(1e-9)
        } else {
            1.0
        }
    }

    fn score(&mut self, pt: &Point, direction: Direction) -> Scored {
        let x = pt.value;
        let mut slots = [0; TIERS];
        for (t, slot) in slots.iter_mut().enumerate().skip(self.finest) {
            *slot = slot_of(t, pt.ts);
        }
        let mut pred = [f64::NAN; TIERS];
        for (t, p) in pred.iter_mut().enumerate().skip(self.finest) {
            *p = self.predict(&self.level, t, &slots).unwrap_or(f64::NAN);
        }
        let min_ready = self.p.min_samples;
        let chosen = (self.finest..TIERS)
            .find(|&t| pred[t].is_finite() && self.rings.len[slots[t]] >= min_ready);

        let Some(chosen) = chosen else {
            // Warming up: learn without clipping, judge nothing.
            for t in self.finest..TIERS {
                if pred[t].is_finite() {
                    let unit = self.unit(pred[t], pt.weight);
                    self.rings.push(slots[t], (x - pred[t]) / unit);
                }
            }
            self.track_errors(&slots, x);
            self.update_levels(&slots, x);
            let mut out = Scored::warming(pt);
            out.baseline = pred[GLOBAL].is_finite().then_some(pred[GLOBAL]);
            return out;
        };

        let baseline = pred[chosen];
        let robust = robust_scale_sorted(self.rings.sorted(slots[chosen]));
        let scale = if self.standardized(pt.weight) {
            // Ratios over n trials: the rings hold residuals in binomial
            // standard deviations, so the robust scale is the
            // over-dispersion (at least 1) and the scale follows this
            // point's n instead of mixing large and small buckets.
            floored_scale(
                self.unit(baseline, pt.weight) * robust.max(1.0),
                self.p.noise,
                baseline,
                pt.weight,
            )
        } else {
            floored_scale(robust, self.p.noise, baseline, pt.weight)
        };
        // How far out this point is against the scale before widening, for
        // the tail; then widen by what the recent tail demands.
        let narrow_scale = scale;
        let deviation = (x - baseline).abs() / narrow_scale;
        let scale = narrow_scale * self.tail.widening();
        let z = (x - baseline) / scale;
        let thr = self.p.z;
        let is_anomaly = direction.exceeds(z, thr) && !(z > 0.0 && x < self.p.min_value);

        // Winsorize: what the baseline learns from is at most z × scale away.
        let bound = thr * scale;
        let xc = x.clamp(baseline - bound, baseline + bound);
        let sign: i8 = if z > thr {
            1
        } else if z < -thr {
            -1
        } else {
            0
        };

        let mut clipped = [0.0; TIERS];
        for t in self.finest..TIERS {
            clipped[t] = if pred[t].is_finite() {
                xc - pred[t]
            } else {
                0.0
            };
        }

        let continuing_run = self.p.shift_after > 0 && sign != 0 && sign == self.run_sign;
        if self.p.shift_after > 0 && sign != self.run_sign {
            // The previous run (if any) ended without being adopted: its
            // first point was learnt (winsorized), the rest is forgotten by
            // the levels and rings, but counts in the tail: the scale must
            // know how often points lie that far out.
            for e in self.pending.iter().skip(1) {
                self.tail.push(e.deviation);
            }
            self.pending.clear();
            self.run_sign = 0;
            if sign != 0 {
                self.run_sign = sign;
                for s in 0..SLOTS {
                    self.snapshot[s] = if self.count[s] > 0 {
                        self.level[s]
                    } else {
                        f64::NAN
                    };
                }
            }
        }
        if sign != 0 && self.p.shift_after > 0 {
            let mut from_snapshot = [0.0; TIERS];
            for t in self.finest..TIERS {
                // A slot first seen during the run has no snapshot level:
                // its residual against the current prediction stands in.
                from_snapshot[t] = match self.predict(&self.snapshot, t, &slots) {
                    Some(p) if p.is_finite() => x - p,
                    _ => clipped[t],
                };
            }
            self.pending.push(Pending {
                slots,
                from_snapshot,
                chosen_from_snapshot: from_snapshot[chosen],
                bound,
                weight: pt.weight,
                value: x,
                deviation,
                narrow_scale,
            });
        }

        if continuing_run {
            // Later points of a run teach nothing until the run is either
            // over (an incident: the baseline stays where it was) or long
            // enough to be adopted as the new level.
            for t in self.finest..TIERS {
                let s = slots[t];
                if self.count[s] == 0 {
                    self.level[s] = xc;
                    self.count[s] = 1;
                }
            }
        } else {
            self.tail.push(deviation);
            for t in self.finest..TIERS {
                if pred[t].is_finite() {
                    let unit = self.unit(pred[t], pt.weight);
                    self.rings.push(slots[t], clipped[t] / unit);
                }
            }
            self.track_errors(&slots, xc);
            self.update_levels(&slots, xc);
        }
        if self.p.shift_after > 0 && self.pending.len() >= self.p.shift_after {
            self.adopt_shift();
        }

        Scored {
            ts: pt.ts,
            value: x,
            baseline: Some(baseline),
            score: Some(z),
            is_anomaly,
            warming_up: false,
        }
    }

    /// One-step squared errors of each tier's own level, for the blend.
    fn track_errors(&mut self, slots: &[usize; TIERS], x: f64) {
        for t in self.finest..TIERS {
            let s = slots[t];
            if self.count[s] > 0 {
                let e = x - self.own_forecast(&self.level, s);
                self.sq_err[t].push(e * e);
            }
        }
    }
}

pub(crate) fn adaptive(
    points: &[Point],
    params: &AdaptiveParams,
    direction: Direction,
) -> Vec<Scored> {
    let p = params.sanitized();
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.ts.saturating_sub(a.ts),
        _ => 0,
    };
    let finest = if span < MIN_SEASONAL_SPAN_SECS {
        GLOBAL
    } else {
        match p.season {
            Season::HourOfWeek => 0,
            Season::HourOfDay => 1,
            Season::None => GLOBAL,
        }
    };
    let recurrence = p.recurrence;
    let mut state = State::new(p, finest);
    let mut out = Vec::with_capacity(points.len());
    for pt in points {
        if !pt.value.is_finite() {
            out.push(Scored::not_finite(pt));
            continue;
        }
        out.push(state.score(pt, direction));
    }
    if recurrence {
        crate::recurrence::excuse_recurring(points, &mut out);
    }
    out
}
