//! Accuracy of a tensor against its reference, and statistics over trials.
//!
//! For an output `y` and its reference `y_ref`, both flattened:
//! - relative error `||y - y_ref|| / ||y_ref||` (L2 norms),
//! - cosine similarity `<y, y_ref> / (||y|| ||y_ref||)`,
//! - SNR in dB, `20 log10(||y_ref|| / ||y - y_ref||)` = `-20 log10(rel_err)`.
//!
//! Sums run in f64. Edge cases: an exact match has rel_err 0 and SNR
//! +inf; a zero reference gives rel_err 0 if `y` is zero too, else +inf;
//! the cosine of a zero vector is 0 (1 if both are zero). A non-finite
//! value in `y` (an FP16 overflow) makes all three NaN.

use serde::Serialize;

/// The accuracy of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub rel_err: f64,
    pub cosine: f64,
    pub snr_db: f64,
}

/// The fraction of rows (tokens) of `width` values whose largest value sits
/// at the same index in `y` as in `y_ref` (the first of equal maxima): how
/// often a task head predicts what the reference predicts.
pub fn argmax_agreement(y: &[f32], y_ref: &[f32], width: usize) -> f64 {
    assert_eq!(y.len(), y_ref.len(), "argmax_agreement: lengths differ");
    if width == 0 || y.is_empty() {
        return f64::NAN;
    }
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            })
            .0
    };
    let rows = y.len() / width;
    let same = y
        .chunks_exact(width)
        .zip(y_ref.chunks_exact(width))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    same as f64 / rows as f64
}

/// Compares `y` with `y_ref` (same length).
pub fn compare(y: &[f32], y_ref: &[f32]) -> Metrics {
    assert_eq!(y.len(), y_ref.len(), "compare: lengths differ");
    let (mut dd, mut rr, mut yy, mut yr) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in y.iter().zip(y_ref) {
        let (a, b) = (a as f64, b as f64);
        let d = a - b;
        dd += d * d;
        rr += b * b;
        yy += a * a;
        yr += a * b;
    }
    if !(dd.is_finite() && yy.is_finite()) {
        return Metrics {
            rel_err: f64::NAN,
            cosine: f64::NAN,
            snr_db: f64::NAN,
        };
    }
    let rel_err = if rr > 0.0 {
        (dd / rr).sqrt()
    } else if dd == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let cosine = match (yy > 0.0, rr > 0.0) {
        (true, true) => yr / (yy * rr).sqrt(),
        (false, false) => 1.0,
        _ => 0.0,
    };
    Metrics {
        rel_err,
        cosine,
        snr_db: -20.0 * rel_err.log10(),
    }
}

/// Mean and sample standard deviation (n - 1; 0 for a single value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

/// Mean and sample standard deviation of `v` (empty: NaN, 0).
pub fn mean_std(v: &[f64]) -> MeanStd {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = if v.len() < 2 {
        0.0
    } else {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    MeanStd { mean, std }
}

/// Per-metric statistics over trials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricStats {
    pub rel_err: MeanStd,
    pub cosine: MeanStd,
    pub snr_db: MeanStd,
}

impl MetricStats {
    /// Statistics of one tensor's metrics over the trials.
    pub fn of(trials: &[Metrics]) -> MetricStats {
        let col = |f: fn(&Metrics) -> f64| mean_std(&trials.iter().map(f).collect::<Vec<_>>());
        MetricStats {
            rel_err: col(|m| m.rel_err),
            cosine: col(|m| m.cosine),
            snr_db: col(|m| m.snr_db),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_agreement_by_hand() {
        // Rows: [1, 3] vs [2, 1] disagree; [5, 0] vs [4, 1] agree;
        // [0, 0] vs [0, 0] agree (first of equal maxima): 2 of 3.
        let y = [1.0, 3.0, 5.0, 0.0, 0.0, 0.0];
        let r = [2.0, 1.0, 4.0, 1.0, 0.0, 0.0];
        assert!((super::argmax_agreement(&y, &r, 2) - 2.0 / 3.0).abs() < 1e-12);
    }
    use super::*;

    #[test]
    fn scaled_copy() {
        // y = y_ref (1 + eps): ||y - y_ref|| = eps ||y_ref||, so rel_err =
        // eps, cosine 1, SNR = -20 log10(eps) = 40 dB for eps = 0.01.
        let r = [3.0f32, -4.0, 0.0, 12.0];
        let y: Vec<f32> = r.iter().map(|v| v * 1.01).collect();
        let m = compare(&y, &r);
        assert!((m.rel_err - 0.01).abs() < 1e-6, "{m:?}");
        assert!((m.cosine - 1.0).abs() < 1e-12);
        assert!((m.snr_db - 40.0).abs() < 1e-3);
    }

    #[test]
    fn orthogonal_zero_and_exact() {
        // [1, 0] against [0, 1]: ||d|| = sqrt 2, cosine 0.
        let m = compare(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((m.rel_err - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(m.cosine, 0.0);
        assert!((m.snr_db + 20.0 * 2f64.sqrt().log10()).abs() < 1e-12);
        let e = compare(&[1.0, 2.0], &[1.0, 2.0]);
        assert_eq!((e.rel_err, e.cosine, e.snr_db), (0.0, 1.0, f64::INFINITY));
        assert_eq!(compare(&[0.0], &[0.0]).rel_err, 0.0);
        assert_eq!(compare(&[1.0], &[0.0]).rel_err, f64::INFINITY);
        assert!(compare(&[f32::INFINITY], &[1.0]).rel_err.is_nan());
        // Opposite sign: cosine -1, rel_err 2.
        let o = compare(&[-1.0, -2.0], &[1.0, 2.0]);
        assert!((o.cosine + 1.0).abs() < 1e-15 && (o.rel_err - 2.0).abs() < 1e-15);
    }

    #[test]
    fn mean_and_sample_std() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squares 32, /7.
        let s = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
        assert_eq!(
            mean_std(&[3.0]),
            MeanStd {
                mean: 3.0,
                std: 0.0
            }
        );
    }
}
