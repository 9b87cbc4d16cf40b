//! Robust scale of a small set of residuals, and the floors under it.

use crate::types::Noise;

/// `1 / Φ⁻¹(3/4)`: makes the MAD a consistent estimator of the standard
/// deviation under Gaussian noise.
pub const MAD_SCALE: f64 = 1.4826;
/// `sqrt(π/2)`: makes the mean absolute deviation a consistent estimator of
/// the standard deviation under Gaussian noise.
pub const MEAN_AD_SCALE: f64 = 1.253_314;
/// The scale is at least this fraction of |level|: far above the rounding
/// of the EWMA arithmetic, far below any change worth an alert.
pub const RELATIVE_EPSILON: f64 = 1e-6;
/// And at least this, for a level of exactly 0.
pub const ABSOLUTE_EPSILON: f64 = 1e-9;

/// Median of `values` (reordered in place); `None` when empty.
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (left, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        Some(upper)
    } else {
        let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((lower + upper) / 2.0)
    }
}

/// The larger of `1.4826 × MAD(residuals)` and `1.2533 × mean absolute
/// deviation from the median`: both estimate σ under Gaussian noise; the MAD
/// collapses towards 0 on discrete or zero-inflated residuals (more than half
/// (nearly) equal), the mean absolute deviation does not, and its usual
/// sensitivity to outliers is bounded because the residuals kept are
/// winsorized. 0 only when all residuals are equal. `scratch` must be at
/// least as long as `residuals`.
pub fn robust_scale(residuals: &[f64], scratch: &mut [f64]) -> f64 {
    let n = residuals.len();
    let work = &mut scratch[..n];
    work.copy_from_slice(residuals);
    let Some(med) = median_in_place(work) else {
        return 0.0;
    };
    for (w, r) in work.iter_mut().zip(residuals) {
        *w = (r - med).abs();
    }
    let mean_ad = work.iter().sum::<f64>() / n as f64;
    let mad = median_in_place(work).unwrap_or(0.0);
    (MAD_SCALE * mad).max(MEAN_AD_SCALE * mean_ad)
}

/// [`robust_scale`] of values already sorted ascending, without copying:
/// the median is an index, the MAD a merge of the deviations on either side
/// of it (each side already ordered), the mean absolute deviation one pass.
pub fn robust_scale_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let med = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let sum_ad: f64 = sorted.iter().map(|v| (v - med).abs()).sum();
    // Deviations below the median grow leftwards from `split`, those above
    // grow rightwards: merge them up to the middle rank(s).
    let split = sorted.partition_point(|&v| v < med);
    let (mut left, mut right) = (split, split);
    let (mut lower_mid, mut upper_mid) = (0.0, 0.0);
    for rank in 0..=n / 2 {
        let from_left = left.checked_sub(1).map(|i| med - sorted[i]);
        let from_right = (right < n).then(|| sorted[right] - med);
        let d = match (from_left, from_right) {
            (Some(a), Some(b)) if a <= b => {
                left -= 1;
                a
            }
            (_, Some(b)) => {
                right += 1;
                b
            }
            (Some(a), None) => {
                left -= 1;
                a
            }
            (None, None) => break,
        };
        if rank + 1 == n / 2 {
            lower_mid = d;
        }
        upper_mid = d;
    }
    let mad = if n % 2 == 1 {
        upper_mid
    } else {
        (lower_mid + upper_mid) / 2.0
    };
    (MAD_SCALE * mad).max(MEAN_AD_SCALE * sum_ad / n as f64)
}

/// The smallest scale the kind of series allows at `level`, for a point
/// backed by `weight` trials.
pub fn noise_floor(noise: Noise, level: f64, weight: f64) -> f64 {
    match noise {
        Noise::None => 0.0,
        Noise::Poisson => level.max(0.0).sqrt(),
        Noise::Binomial => {
            if !(weight > 0.0 && weight.is_finite()) {
                return 0.0;
            }
            // Laplace smoothing: a level of exactly 0 or 1 still leaves room
            // for one success or failure in `weight` trials.
            let p = (level.clamp(0.0, 1.0) * weight + 1.0) / (weight + 2.0);
            (p * (1.0 - p) / weight).sqrt()
        }
    }
}

/// The scale actually divided by: the robust scale, the noise floor, and an
/// epsilon relative to the level, whichever is largest. Never 0, never NaN
/// for finite inputs.
pub fn floored_scale(robust: f64, noise: Noise, level: f64, weight: f64) -> f64 {
    robust
        .max(noise_floor(noise, level, weight))
        .max(RELATIVE_EPSILON * level.abs())
        .max(ABSOLUTE_EPSILON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median_in_place(&mut []), None);
    }

    #[test]
    fn robust_scale_is_1_4826_mad() {
        // Median 0, absolute deviations 1,1,1,0,1,1,1: MAD 1 (mean AD 6/7).
        let r = [-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, 1.0];
        let mut scratch = [0.0; 7];
        assert!((robust_scale(&r, &mut scratch) - 1.4826).abs() < 1e-12);
        // Residuals -2..=2: MAD 1 but mean AD 1.2 gives the larger estimate.
        let r = [-2.0, -1.0, 0.0, 1.0, 2.0];
        assert!((robust_scale(&r, &mut scratch) - MEAN_AD_SCALE * 1.2).abs() < 1e-12);
    }

    #[test]
    fn robust_scale_uses_mean_absolute_deviation_when_mad_collapses() {
        let r = [0.0, 0.0, 0.0, 0.0, 5.0];
        let mut scratch = [0.0; 5];
        let s = robust_scale(&r, &mut scratch);
        assert!((s - MEAN_AD_SCALE * 1.0).abs() < 1e-12, "{s}");
        assert_eq!(robust_scale(&[7.0; 4], &mut scratch), 0.0);
    }

    #[test]
    fn sorted_and_unsorted_scales_agree() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for n in 1..80 {
            // Include ties: quantize half of the cases.
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let v = next() * 10.0 - 5.0;
                    if n % 2 == 0 {
                        v.round()
                    } else {
                        v
                    }
                })
                .collect();
            let mut scratch = vec![0.0; n];
            let a = robust_scale(&values, &mut scratch);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let b = robust_scale_sorted(&sorted);
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "n {n}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn floors_keep_the_scale_positive() {
        assert!(floored_scale(0.0, Noise::None, 0.0, 0.0) > 0.0);
        assert!(floored_scale(0.0, Noise::None, 1e6, 0.0) >= 1.0);
        assert_eq!(floored_scale(0.0, Noise::Poisson, 100.0, 0.0), 10.0);
        // Binomial at p = 0 over 100 trials still has a floor.
        let b = floored_scale(0.0, Noise::Binomial, 0.0, 100.0);
        assert!(b > 0.005 && b < 0.02, "{b}");
        // Unknown trials: only the epsilon.
        assert!(floored_scale(0.0, Noise::Binomial, 0.5, 0.0) < 1e-5);
    }
}
