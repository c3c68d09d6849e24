//! The PMCA's numeric operations for the functional executor, each in the
//! precision the hardware computes it in.
//!
//! Tensors are row-major `f32` buffers, tokens x features. In
//! [`Precision::Fp16`] every operation reads FP16 values (tensors in the
//! TCDM are FP16, so its inputs already are), computes in FP32 and rounds
//! its output to FP16 once, round to nearest even, as it is stored back:
//!
//! - Matrix products (LoRA `X A`, `(X A) B + Y`, attention `Q K^T` and
//!   `P V`) run on RedMule: FP16 operands, FP32 accumulation, one FP16
//!   rounding of the result (the LoRA add `+ Y` and the attention scale
//!   `1/sqrt(d)` are fused into the job before that rounding).
//! - Softmax: exponentials, the row maximum and the sum in FP32 on the
//!   Snitch cores' FPUs, probabilities stored in FP16.
//! - LayerNorm / RMSNorm: mean and variance (or mean square) in FP32, the
//!   normalised, scaled and shifted value stored in FP16; gamma and beta are
//!   held in FP16.
//! - NoNorm, activations (GELU with the exact erf, ReLU, SiLU for SwiGLU)
//!   and residual adds: element-wise in FP32 from FP16 inputs, stored in
//!   FP16.
//!
//! [`Precision::Fp32`] skips every rounding: the digital FP32 reference,
//! and a PMCA in FP32 for tests.

use super::gemm;
use half::prelude::*;
use serde::{Deserialize, Serialize};

/// The number format of the PMCA's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    /// FP16 storage, FP32 arithmetic inside each operation.
    #[default]
    Fp16,
    /// FP32 everywhere (no rounding).
    Fp32,
}

impl Precision {
    /// Rounds every value to this precision in place (FP16: nearest, ties
    /// to even; overflow to +-inf).
    pub fn round(self, v: &mut [f32]) {
        if self == Precision::Fp16 {
            round_f16(v);
        }
    }

    /// One value rounded to this precision.
    pub fn round1(self, x: f32) -> f32 {
        match self {
            Precision::Fp16 => f16::from_f32(x).to_f32(),
            Precision::Fp32 => x,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }
}

/// Rounds every value to the nearest FP16 (ties to even) in place.
pub fn round_f16(v: &mut [f32]) {
    let mut buf = [f16::ZERO; 256];
    for chunk in v.chunks_mut(256) {
        let h = &mut buf[..chunk.len()];
        h.convert_from_f32_slice(chunk);
        h.convert_to_f32_slice(chunk);
    }
}

/// `a (m x k) * b (k x n)`, FP32 accumulation, output rounded to `p`.
pub fn matmul(p: Precision, m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = gemm::matmul(m, k, n, a, b);
    p.round(&mut c);
    c
}

/// Columns `lo..hi` of a row-major `rows x width` matrix.
pub fn columns(x: &[f32], width: usize, lo: usize, hi: usize) -> Vec<f32> {
    if lo == 0 && hi == width {
        return x.to_vec();
    }
    x.chunks_exact(width)
        .flat_map(|r| r[lo..hi].iter().copied())
        .collect()
}

/// Writes `part` (rows x (hi - lo)) into columns `lo..hi` of `out`
/// (rows x width).
pub fn put_columns(out: &mut [f32], width: usize, lo: usize, hi: usize, part: &[f32]) {
    let w = hi - lo;
    if w == 0 {
        return;
    }
    for (o, p) in out.chunks_exact_mut(width).zip(part.chunks_exact(w)) {
        o[lo..hi].copy_from_slice(p);
    }
}

/// Element-wise `a + b`, rounded to `p`.
pub fn add(p: Precision, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut o: Vec<f32> = a.iter().zip(b).map(|(&x, &y)| x + y).collect();
    p.round(&mut o);
    o
}

/// Attention scores of every head: `S_h = Q_h K_g^T / sqrt(d)` with
/// `g = h / (heads / kv_heads)` (grouped-query attention), `q` L x
/// (heads d), `k` L x (kv_heads d); the result is heads x L x L. With
/// `causal`, key j > query i is masked to -inf. RedMule: FP32
/// accumulation, the scale fused, one rounding to `p`.
#[allow(clippy::too_many_arguments)]
pub fn attention_scores(
    p: Precision,
    q: &[f32],
    k: &[f32],
    l: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    causal: bool,
) -> Vec<f32> {
    let (qw, kw) = (heads * d, kv_heads * d);
    let per_group = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut s = vec![0.0f32; heads * l * l];
    let mut kt = vec![0.0f32; d * l];
    for g in 0..kv_heads {
        // K_g^T (d x L).
        for (j, row) in k.chunks_exact(kw).enumerate() {
            for c in 0..d {
                kt[c * l + j] = row[g * d + c];
            }
        }
        for h in g * per_group..(g + 1) * per_group {
            let qh = columns(q, qw, h * d, (h + 1) * d);
            let sh = &mut s[h * l * l..(h + 1) * l * l];
            gemm::sgemm(l, d, l, &qh, &kt, sh);
            for (i, row) in sh.chunks_exact_mut(l).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if causal && j > i {
                        f32::NEG_INFINITY
                    } else {
                        p.round1(*v * scale)
                    };
                }
            }
        }
    }
    s
}

/// Row-wise softmax of `s` (rows of `len`) in place: maximum, exponentials
/// and sum in FP32, the probabilities rounded to `p`. A row of -inf only
/// (nothing visible) becomes zeros.
pub fn softmax_rows(p: Precision, s: &mut [f32], len: usize) {
    for row in s.chunks_exact_mut(len) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v = p.round1(*v * inv);
        }
    }
}

/// Attention output: `O_h = P_h V_g` for every head, `pm` heads x L x L,
/// `v` L x (kv_heads d); the result is L x (heads d). FP32 accumulation,
/// rounded to `p`.
pub fn attention_context(
    p: Precision,
    pm: &[f32],
    v: &[f32],
    l: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
) -> Vec<f32> {
    let (ow, vw) = (heads * d, kv_heads * d);
    let per_group = heads / kv_heads;
    let mut out = vec![0.0f32; l * ow];
    for g in 0..kv_heads {
        let vg = columns(v, vw, g * d, (g + 1) * d);
        for h in g * per_group..(g + 1) * per_group {
            let oh = matmul(p, l, l, d, &pm[h * l * l..(h + 1) * l * l], &vg);
            put_columns(&mut out, ow, h * d, (h + 1) * d, &oh);
        }
    }
    out
}

/// LayerNorm over each row of `width`: `(x - mean) / sqrt(var + eps) *
/// gamma + beta`, population variance; statistics in FP32, output rounded
/// to `p`.
pub fn layer_norm(
    p: Precision,
    x: &[f32],
    width: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let n = width as f32;
    for row in x.chunks_exact(width) {
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(|(&v, (&g, &b))| p.round1((v - mean) * inv * g + b)),
        );
    }
    out
}

/// RMSNorm over each row: `x / sqrt(mean(x^2) + eps) * gamma`; the mean
/// square in FP32, output rounded to `p`.
pub fn rms_norm(p: Precision, x: &[f32], width: usize, gamma: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        let ms = row.iter().map(|&v| v * v).sum::<f32>() / width as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(gamma).map(|(&v, &g)| p.round1(v * inv * g)));
    }
    out
}

/// MobileBERT's NoNorm: `x * gamma + beta` element-wise, rounded to `p`.
pub fn no_norm(p: Precision, x: &[f32], width: usize, gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        out.extend(
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(|(&v, (&g, &b))| p.round1(v * g + b)),
        );
    }
    out
}

/// The error function (libm's, musl's rational approximations, within
/// 1 ulp in f64). GELU evaluates it once per activation, so a series that
/// needs dozens of terms would dominate a forward pass.
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// GELU with the exact erf (BERT's `gelu`): `x Phi(x)`, in f32 as
/// PyTorch computes it (libm's `erff`, within 1 ulp).
pub fn gelu1(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU: `x / (1 + e^{-x})`.
pub fn silu1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// An element-wise function rounded to `p`.
pub fn map(p: Precision, x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    // Element by element, so the split cannot change a bit.
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &v)| *o = p.round1(f(v))));
    out
}

/// SwiGLU: `SiLU(gate) * up`, rounded to `p`.
pub fn swiglu(p: Precision, gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| p.round1(silu1(g) * u))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_rounding_of_known_values() {
        // By hand: f16 has 10 mantissa bits; 1/3 = 1.0101..b x 2^-2 rounds
        // to 0x3555 = 1365/4096; 0.1 = 1.6 x 2^-4 -> 1 + 614/1024; 1 +
        // 2^-11 is a tie between 1 and 1 + 2^-10 -> even (1); 1 + 3 2^-11 a
        // tie between 1 + 2^-10 and 1 + 2^-9 -> even (1 + 2^-9); 65504 is
        // the largest finite f16, 65520 the tie with 2^16 -> inf; 2^-24 is
        // the smallest subnormal, 2^-26 rounds to 0.
        let mut v = vec![
            1.0,
            1.0 / 3.0,
            0.1,
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            -2.5,
            65504.0,
            65520.0,
            2f32.powi(-24),
            2f32.powi(-26),
        ];
        Precision::Fp16.round(&mut v);
        assert_eq!(
            v,
            vec![
                1.0,
                1365.0 / 4096.0,
                1638.0 / 16384.0,
                1.0,
                1.0 + 2f32.powi(-9),
                -2.5,
                65504.0,
                f32::INFINITY,
                2f32.powi(-24),
                0.0,
            ]
        );
        let mut w = vec![1.0 / 3.0];
        Precision::Fp32.round(&mut w);
        assert_eq!(w, vec![1.0 / 3.0]);
    }

    #[test]
    fn erf_matches_tabulated_values() {
        // Abramowitz & Stegun, Table 7.1, and erfc(2.5) = 4.0695201744e-4.
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.5, 1.0 - 4.069_520_174_449_59e-4),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
            (7.0, 1.0),
        ] {
            assert!((erf(x) - e).abs() < 1e-14, "erf({x}) = {} vs {e}", erf(x));
        }
        // Both branches agree at the switch.
        assert!((erf(2.5 - 1e-12) - erf(2.5)).abs() < 1e-13);
        // GELU(1) = Phi(1) = 0.841344746068543; GELU(-1) = -(1 - Phi(1)).
        assert!((gelu1(1.0) - 0.841_344_7).abs() < 1e-7);
        assert!((gelu1(-1.0) + 0.158_655_25).abs() < 1e-7);
    }

    #[test]
    fn norms_by_hand() {
        // Row [1, 2, 3, 6]: mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5.
        let x = [1.0, 2.0, 3.0, 6.0];
        let y = layer_norm(Precision::Fp32, &x, 4, &[1.0; 4], &[0.0; 4], 0.0);
        let s = 3.5f32.sqrt();
        for (a, b) in y.iter().zip([-2.0 / s, -1.0 / s, 0.0, 3.0 / s]) {
            assert!((a - b).abs() < 1e-6);
        }
        // Mean square (1 + 4 + 9 + 36) / 4 = 12.5.
        let y = rms_norm(Precision::Fp32, &x, 4, &[2.0; 4], 0.0);
        let r = 12.5f32.sqrt();
        for (a, b) in y.iter().zip(x.iter().map(|v| 2.0 * v / r)) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(
            no_norm(Precision::Fp32, &x, 2, &[2.0, 1.0], &[0.5, -1.0]),
            vec![2.5, 1.0, 6.5, 5.0]
        );
        assert_eq!(swiglu(Precision::Fp32, &[0.0], &[3.0]), vec![0.0]);
    }
}
