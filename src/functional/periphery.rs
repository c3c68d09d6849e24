//! The tile's mixed-signal periphery around the analog MVM, in aihwkit's
//! order (REFERENCE.md §7): per-token input abs-max scaling (noise
//! management), DAC quantisation, the analog product, additive Gaussian
//! output noise, ADC quantisation with clamping, scaling back, and iterative
//! bound management. Also the per-column weight scales that make each
//! column's max|W| 1 in the array and are undone digitally after the ADC.
//!
//! Units: inside the array inputs are in [-1, 1] and weights normalised
//! (column max|W| = 1), so outputs, the output noise and the ADC bound are
//! in those normalised units.

use super::gemm;
use super::rng::{self, NoiseRng};
use super::FunctionalError;
use serde::{Deserialize, Serialize};

/// Switches and values of the periphery. Defaults: the study's 8-bit
/// periphery (bits come from the tile's `AimcParams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeripheryParams {
    /// Divide each token's input by its own abs-max before the DAC (and
    /// multiply the output back).
    pub noise_management: bool,
    /// Quantise inputs to 2^(dac_bits-1)-1 levels per side over [-1, 1]
    /// (round half to even) and clamp to [-1, 1].
    pub dac: bool,
    /// Scale each weight column to max|W| = 1 in the array; the scale is
    /// undone digitally after the ADC.
    pub column_scaling: bool,
    /// Standard deviation of the additive Gaussian output noise, in
    /// normalised output units (study: 0.04; aihwkit default 0.06; 0 = off).
    pub out_noise: f64,
    /// Quantise outputs to 2^(adc_bits-1)-1 levels per side over
    /// [-out_bound, out_bound] and clamp. Off: ideal, unbounded outputs.
    pub adc: bool,
    /// ADC range, normalised output units (study: 12).
    pub out_bound: f64,
    /// If any output of the batch clips, run the batch again with the
    /// inputs halved (aihwkit's iterative bound management).
    pub bound_management: bool,
    /// Bound management stops once the input reduction exceeds this.
    pub max_bm_factor: f64,
    /// ... or once it exceeds max_bm_res / DAC step (aihwkit: 0.25, i.e.
    /// at most 5 halvings with an 8-bit DAC).
    pub max_bm_res: f64,
}

impl Default for PeripheryParams {
    fn default() -> Self {
        PeripheryParams {
            noise_management: true,
            dac: true,
            column_scaling: true,
            out_noise: 0.04,
            adc: true,
            out_bound: 12.0,
            bound_management: true,
            max_bm_factor: 1000.0,
            max_bm_res: 0.25,
        }
    }
}

impl PeripheryParams {
    /// Every step off: an exact FP32 product.
    pub fn ideal() -> Self {
        PeripheryParams {
            noise_management: false,
            dac: false,
            column_scaling: false,
            out_noise: 0.0,
            adc: false,
            bound_management: false,
            ..PeripheryParams::default()
        }
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), FunctionalError> {
        let bad = |f: &str, w: &str| Err(FunctionalError::Param(format!("periphery.{f}: {w}")));
        if !(self.out_noise.is_finite() && self.out_noise >= 0.0) {
            return bad("out_noise", "must be >= 0");
        }
        if !(self.out_bound.is_finite() && self.out_bound > 0.0) {
            return bad("out_bound", "must be > 0");
        }
        if self.max_bm_factor.is_nan() || self.max_bm_factor < 1.0 {
            return bad("max_bm_factor", "must be >= 1");
        }
        if self.max_bm_res.is_nan() || self.max_bm_res <= 0.0 {
            return bad("max_bm_res", "must be > 0");
        }
        Ok(())
    }
}

/// Quantisation levels on each side of zero for a converter of `bits`:
/// 2^(bits-1) - 1 (127 for 8 bits, i.e. 255 levels in all).
pub fn levels_per_side(bits: u32) -> u32 {
    (1u32 << (bits.clamp(1, 24) - 1)) - 1
}

/// Rounds to the nearest integer, ties to even, for |v| <= 2^22: adding
/// and subtracting 1.5 x 2^23 leaves the sum where f32's spacing is 1, so
/// the FPU's round-to-nearest-even does the rounding. Unlike
/// `f32::round_ties_even` it vectorises without SSE4.1.
#[inline(always)]
pub fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC) - MAGIC
}

/// Symmetric uniform quantisation to `levels` steps per side over
/// [-bound, bound]: round(v / step) x step with step = bound / levels,
/// ties to even, clamped to +-bound.
#[inline]
pub fn quantize(v: f32, levels: u32, bound: f32) -> f32 {
    let l = levels as f32;
    round_half_even((v * (l / bound)).clamp(-l, l)) * bound / l
}

/// max|v| (0 for an empty slice). On the bit patterns: for non-NaN
/// floats, |v|'s bits order like |v|, and an integer max vectorises.
fn abs_max(v: &[f32]) -> f32 {
    f32::from_bits(
        v.iter()
            .map(|x| x.to_bits() & 0x7FFF_FFFF)
            .max()
            .unwrap_or(0),
    )
}

/// Per-column max|W| of a rows x cols row-major matrix, 1 for an all-zero
/// column (nothing to scale).
pub fn column_scales(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols, "column_scales: shape");
    let mut s = vec![0.0f32; cols];
    for row in w.chunks_exact(cols) {
        for (m, &v) in s.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    for m in &mut s {
        if *m == 0.0 {
            *m = 1.0;
        }
    }
    s
}

/// What one batch MVM did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MvmInfo {
    /// Passes through the array (1 + bound-management re-runs); 0 for an
    /// all-zero batch, which aihwkit short-cuts to zeros.
    pub passes: u32,
    /// Whether the accepted pass still clipped (bound management gave up).
    pub clipped: bool,
}

/// Reusable buffers of [`Periphery::mvm`].
#[derive(Debug, Clone, Default)]
pub struct MvmScratch {
    xq: Vec<f32>,
    noise: Vec<f32>,
    nm: Vec<f32>,
}

/// The periphery of one tile: parameters plus converter resolutions.
#[derive(Debug, Clone, PartialEq)]
pub struct Periphery {
    params: PeripheryParams,
    dac_levels: u32,
    adc_levels: u32,
}

impl Periphery {
    /// `dac_bits` and `adc_bits` come from the tile (`AimcParams`), 2..=16.
    pub fn new(
        params: PeripheryParams,
        dac_bits: u32,
        adc_bits: u32,
    ) -> Result<Periphery, FunctionalError> {
        params.validate()?;
        for (f, b) in [("dac_bits", dac_bits), ("adc_bits", adc_bits)] {
            if !(2..=16).contains(&b) {
                return Err(FunctionalError::Param(format!(
                    "aimc.{f}: {b} bits is outside 2..=16 (a symmetric converter needs 2)"
                )));
            }
        }
        Ok(Periphery {
            params,
            dac_levels: levels_per_side(dac_bits),
            adc_levels: levels_per_side(adc_bits),
        })
    }

    pub fn params(&self) -> &PeripheryParams {
        &self.params
    }

    /// DAC levels per side (127 for 8 bits).
    pub fn dac_levels(&self) -> u32 {
        self.dac_levels
    }

    /// ADC levels per side.
    pub fn adc_levels(&self) -> u32 {
        self.adc_levels
    }

    /// One batch through the periphery and the array: `x` is tokens x m,
    /// `w` the array's m x n weights in normalised units, `col_gain` the
    /// digital per-column factor applied after the ADC (column scales times
    /// GDC alpha; ones for raw tile output). Writes tokens x n to `out`.
    /// Output noise is drawn from `rng`.
    #[allow(clippy::too_many_arguments)]
    pub fn mvm(
        &self,
        x: &[f32],
        tokens: usize,
        w: &[f32],
        m: usize,
        n: usize,
        col_gain: &[f32],
        rng: &mut NoiseRng,
        scratch: &mut MvmScratch,
        out: &mut [f32],
    ) -> MvmInfo {
        assert_eq!(x.len(), tokens * m, "mvm: x is not tokens x m");
        assert_eq!(w.len(), m * n, "mvm: w is not m x n");
        assert_eq!(col_gain.len(), n, "mvm: col_gain is not n");
        assert_eq!(out.len(), tokens * n, "mvm: out is not tokens x n");
        let p = &self.params;
        if tokens == 0 || n == 0 || m == 0 {
            out.fill(0.0);
            return MvmInfo::default();
        }

        // (1) Noise management: each token's abs-max.
        let nm = &mut scratch.nm;
        nm.clear();
        if p.noise_management {
            nm.extend(x.chunks_exact(m).map(abs_max));
            if nm.iter().all(|&a| a == 0.0) {
                out.fill(0.0);
                return MvmInfo::default();
            }
            // A zero token still sees output noise (aihwkit sets its scale
            // to 1 rather than dividing by 0).
            for a in nm.iter_mut() {
                if *a == 0.0 {
                    *a = 1.0;
                }
            }
        } else {
            nm.resize(tokens, 1.0);
        }

        let dac_l = self.dac_levels as f32;
        let adc_l = self.adc_levels as f32;
        let bound = p.out_bound as f32;
        // With the DAC on, the GEMM takes the integer codes (exact in f32)
        // and the DAC step 1/L is applied once per output rather than once
        // per input: the same product up to f32 rounding.
        let x_unit = if p.dac { 1.0 / dac_l } else { 1.0 };
        let adc_in = adc_l / bound;
        let adc_step = bound / adc_l;
        // aihwkit's limit: reduction > max_bm_res / inp_res, inp_res being
        // the DAC step relative to [-1, 1] (1 / levels).
        let res_limit = if p.dac {
            p.max_bm_res * dac_l as f64
        } else {
            f64::INFINITY
        };
        scratch.xq.resize(tokens * m, 0.0);
        let out_noise = p.out_noise as f32;
        if out_noise > 0.0 {
            scratch.noise.resize(tokens * n, 0.0);
        }

        let mut reduction = 1.0f32;
        let mut passes = 0u32;
        loop {
            passes += 1;
            // (2) Scale and DAC: code = round(x / (abs-max x reduction) x
            // L), ties to even, clamped to +-L.
            for ((xr, qr), &a) in x
                .chunks_exact(m)
                .zip(scratch.xq.chunks_exact_mut(m))
                .zip(nm.iter())
            {
                let s = 1.0 / (a * reduction);
                if p.dac {
                    let k = s * dac_l;
                    for (q, &v) in qr.iter_mut().zip(xr) {
                        *q = round_half_even((v * k).clamp(-dac_l, dac_l));
                    }
                } else {
                    for (q, &v) in qr.iter_mut().zip(xr) {
                        *q = v * s;
                    }
                }
            }
            // (3) The analog product (in DAC codes).
            gemm::sgemm(tokens, m, n, &scratch.xq, w, out);
            // (4) Output noise, in normalised units, drawn per pass.
            let noise: &[f32] = if out_noise > 0.0 {
                rng::fill_standard_normal(rng, &mut scratch.noise);
                &scratch.noise
            } else {
                &[]
            };
            // (5) ADC and (6) scale back: input scale, reduction, digital
            // column gain.
            let mut clipped = 0u32;
            for (t, (yr, &a)) in out.chunks_exact_mut(n).zip(nm.iter()).enumerate() {
                let zr = if noise.is_empty() {
                    None
                } else {
                    Some(&noise[t * n..(t + 1) * n])
                };
                let back = a * reduction;
                if p.adc {
                    let k_out = adc_step * back;
                    let f = x_unit * adc_in;
                    let fz = out_noise * adc_in;
                    // Rounding after a far-out clamp keeps the rounding
                    // trick valid; clipping is |code| > L.
                    let mut adc = |y: &mut f32, v: f32, g: f32| {
                        let c = round_half_even(v.clamp(-2.0 * adc_l, 2.0 * adc_l));
                        clipped += (c.abs() > adc_l) as u32;
                        *y = c.clamp(-adc_l, adc_l) * k_out * g;
                    };
                    match zr {
                        Some(zr) => {
                            for ((y, &z), &g) in yr.iter_mut().zip(zr).zip(col_gain) {
                                adc(y, *y * f + z * fz, g);
                            }
                        }
                        None => {
                            for (y, &g) in yr.iter_mut().zip(col_gain) {
                                adc(y, *y * f, g);
                            }
                        }
                    }
                } else {
                    match zr {
                        Some(zr) => {
                            for ((y, &z), &g) in yr.iter_mut().zip(zr).zip(col_gain) {
                                *y = (*y * x_unit + z * out_noise) * back * g;
                            }
                        }
                        None => {
                            for (y, &g) in yr.iter_mut().zip(col_gain) {
                                *y *= x_unit * back * g;
                            }
                        }
                    }
                }
            }
            let clipped = clipped > 0;
            let r = reduction as f64;
            if !clipped || !p.bound_management || r > p.max_bm_factor || r > res_limit {
                return MvmInfo { passes, clipped };
            }
            reduction *= 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::rng::stream;

    fn run(
        p: PeripheryParams,
        x: &[f32],
        tokens: usize,
        w: &[f32],
        m: usize,
        n: usize,
    ) -> (Vec<f32>, MvmInfo) {
        let per = Periphery::new(p, 8, 8).unwrap();
        let mut out = vec![0.0; tokens * n];
        let info = per.mvm(
            x,
            tokens,
            w,
            m,
            n,
            &vec![1.0; n],
            &mut stream(1, &[]),
            &mut MvmScratch::default(),
            &mut out,
        );
        (out, info)
    }

    #[test]
    fn levels() {
        assert_eq!(levels_per_side(8), 127);
        assert_eq!(levels_per_side(4), 7);
        assert_eq!(levels_per_side(2), 1);
    }

    #[test]
    fn rounding_trick_is_ties_to_even() {
        for i in -4000..=4000 {
            let v = i as f32 * 0.25;
            assert_eq!(round_half_even(v), v.round_ties_even(), "{v}");
        }
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), 0.0);
        assert_eq!(round_half_even(126.4999), 126.0);
    }

    #[test]
    fn dac_quantisation_of_specific_values() {
        // 8 bits: 127 levels per side, step 2/254 = 1/127.
        // 0.5 * 127 = 63.5 -> 64 (tie to even).
        assert_eq!(quantize(0.5, 127, 1.0), 64.0 / 127.0);
        assert_eq!(quantize(-0.5, 127, 1.0), -64.0 / 127.0);
        // 0.1 * 127 = 12.7 -> 13; 0.25 * 127 = 31.75 -> 32.
        assert_eq!(quantize(0.1, 127, 1.0), 13.0 / 127.0);
        assert_eq!(quantize(0.25, 127, 1.0), 32.0 / 127.0);
        // Clamped to +-1.
        assert_eq!(quantize(1.3, 127, 1.0), 1.0);
        assert_eq!(quantize(-7.0, 127, 1.0), -1.0);
        assert_eq!(quantize(0.0, 127, 1.0), 0.0);
        // Ties to even where half-away-from-zero would differ:
        // 2 bits (1 level): 0.5 -> 0; 3 bits (3 levels): 0.5*3 = 1.5 -> 2.
        assert_eq!(quantize(0.5, 1, 1.0), 0.0);
        assert_eq!(quantize(0.51, 1, 1.0), 1.0);
        assert_eq!(quantize(0.5, 3, 1.0), 2.0 / 3.0);
        assert_eq!(quantize(-0.5, 3, 1.0), -2.0 / 3.0);
    }

    #[test]
    fn adc_quantisation_and_clamping() {
        // 8 bits over [-12, 12]: step 12/127 = 24/254.
        let step = 12.0f32 / 127.0;
        assert_eq!(quantize(13.0, 127, 12.0), 12.0);
        assert_eq!(quantize(-100.0, 127, 12.0), -12.0);
        // 0.05 / step = 0.529 -> 1 step; 11.99 / step = 126.9 -> 127;
        // 0.04 / step = 0.423 -> 0; 1.0 / step = 10.58 -> 11.
        assert_eq!(quantize(0.05, 127, 12.0), step);
        assert_eq!(quantize(11.99, 127, 12.0), 12.0);
        assert_eq!(quantize(0.04, 127, 12.0), 0.0);
        assert_eq!(quantize(-1.0, 127, 12.0), -11.0 * 12.0 / 127.0);
    }

    #[test]
    fn bound_management_halves_inputs_until_nothing_clips() {
        // 20 rows of ones, input all ones: y = 20 > 12 clips; second pass
        // with the input halved: DAC(0.5) = 64/127, y = 20 x 64/127 =
        // 10.08, ADC code round(10.08 x 127/12) = 107, back x 2.
        let p = PeripheryParams {
            out_noise: 0.0,
            ..PeripheryParams::default()
        };
        let (m, n) = (20, 3);
        let (out, info) = run(p, &vec![1.0; m], 1, &vec![1.0; m * n], m, n);
        assert_eq!(
            info,
            MvmInfo {
                passes: 2,
                clipped: false
            }
        );
        let y = 20.0 * (64.0f64 / 127.0);
        let code = (y * 127.0 / 12.0).round_ties_even();
        assert_eq!(code, 107.0);
        let expect = code * 12.0 / 127.0 * 2.0;
        for &o in &out {
            assert!((o as f64 - expect).abs() < 1e-5, "{o} vs {expect}");
        }
    }

    #[test]
    fn bound_management_gives_up_at_max_bm_res_over_the_dac_step() {
        // 512 ones: y = 512 / reduction clips until reduction 64, but
        // aihwkit stops once reduction > 0.25 x 127 = 31.75, i.e. after the
        // pass at 32 (6 passes): DAC(1/32) = round(3.97)/127 = 4/127,
        // y = 512 x 4/127 = 16.1 -> clamped to 12, back x 32 = 384.
        let p = PeripheryParams {
            out_noise: 0.0,
            ..PeripheryParams::default()
        };
        let m = 512;
        let (out, info) = run(p.clone(), &vec![1.0; m], 1, &vec![1.0; m], m, 1);
        assert_eq!(
            info,
            MvmInfo {
                passes: 6,
                clipped: true
            }
        );
        assert!((out[0] - 384.0).abs() < 1e-3, "{}", out[0]);
        // Without bound management: one pass, clamped at 12.
        let p = PeripheryParams {
            bound_management: false,
            ..p
        };
        let (out, info) = run(p, &vec![1.0; m], 1, &vec![1.0; m], m, 1);
        assert_eq!(
            info,
            MvmInfo {
                passes: 1,
                clipped: true
            }
        );
        assert!((out[0] - 12.0).abs() < 1e-4);
    }

    #[test]
    fn ideal_periphery_is_the_exact_product() {
        let (t, m, n) = (5, 7, 3);
        let mut rng = stream(2, &[]);
        let mut x = vec![0.0; t * m];
        let mut w = vec![0.0; m * n];
        rng::fill_standard_normal(&mut rng, &mut x);
        rng::fill_standard_normal(&mut rng, &mut w);
        let (out, info) = run(PeripheryParams::ideal(), &x, t, &w, m, n);
        assert_eq!(info.passes, 1);
        for i in 0..t {
            for j in 0..n {
                let e: f32 = (0..m).map(|k| x[i * m + k] * w[k * n + j]).sum();
                assert!((out[i * n + j] - e).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn output_noise_is_in_normalised_units_times_the_input_scale() {
        // Zero weights: the output is the noise, scaled back by the token's
        // abs-max (2 here): std 0.04 x 2.
        let (t, m, n) = (200, 4, 500);
        let mut x = vec![0.5f32; t * m];
        for r in x.chunks_exact_mut(m) {
            r[0] = -2.0;
        }
        let p = PeripheryParams {
            adc: false,
            ..PeripheryParams::default()
        };
        let (out, _) = run(p, &x, t, &vec![0.0; m * n], m, n);
        let k = out.len() as f64;
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / k;
        let sd = (out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k).sqrt();
        assert!(mean.abs() < 0.002);
        assert!((sd - 0.08).abs() / 0.08 < 0.015, "sd {sd}");
    }

    #[test]
    fn all_zero_batch_short_cuts_to_zeros() {
        let (out, info) = run(PeripheryParams::default(), &[0.0; 8], 2, &[1.0; 12], 4, 3);
        assert_eq!(info.passes, 0);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn column_scales_are_column_abs_max() {
        let w = [1.0, -3.0, 0.0, -2.0, 0.5, 0.0];
        assert_eq!(column_scales(&w, 2, 3), vec![2.0, 3.0, 1.0]);
    }

    #[test]
    fn validation() {
        assert!(Periphery::new(PeripheryParams::default(), 1, 8).is_err());
        let p = PeripheryParams {
            out_bound: 0.0,
            ..PeripheryParams::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("out_bound"));
    }
}
