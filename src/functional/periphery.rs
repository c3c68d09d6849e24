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
    /// If an output clips, run again with the inputs halved (aihwkit's
    /// iterative bound management); which inputs, see
    /// `bound_management_scope`.
    pub bound_management: bool,
    /// What bound management re-runs, and how a token whose input is all
    /// zero is treated. `Token` (default): aihwkit's default tile
    /// (`InferenceRPUConfig`, the C++ RPUCuda MVM), which runs one token at
    /// a time: only the tokens whose own outputs clipped are re-run, each
    /// with its own input reduction; an all-zero token gives exactly zero
    /// (with noise management on). `Batch`: aihwkit's pure-torch MVM
    /// (`TorchInferenceRPUConfig`): if any output of the batch clips, every
    /// token is re-run; an all-zero token still sees output noise.
    pub bound_management_scope: BoundManagementScope,
    /// Bound management stops once the input reduction exceeds this.
    pub max_bm_factor: f64,
    /// ... or once it exceeds max_bm_res / DAC step (aihwkit: 0.25, i.e.
    /// at most 5 halvings with an 8-bit DAC).
    pub max_bm_res: f64,
}

/// The unit bound management re-runs (see
/// [`PeripheryParams::bound_management_scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BoundManagementScope {
    /// The whole batch, one reduction for all tokens (aihwkit's torch MVM).
    Batch,
    /// Each token on its own (aihwkit's C++ RPUCuda MVM, its default).
    #[default]
    Token,
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
            bound_management_scope: BoundManagementScope::Token,
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
    /// Passes through the array, 1 + bound-management re-runs: under
    /// `Token` scope the most any token took (a re-run holds only the
    /// tokens that still clip). 0 for an all-zero batch, which aihwkit
    /// short-cuts to zeros.
    pub passes: u32,
    /// Passes summed over the tokens: `passes` x tokens under `Batch`
    /// scope; under `Token` scope each token's own passes (0 for an
    /// all-zero token). Divided by the tokens: the mean passes per token.
    pub token_passes: u64,
    /// Whether an accepted pass still clipped (bound management off, or it
    /// gave up).
    pub clipped: bool,
}

/// Reusable buffers of [`Periphery::mvm`].
#[derive(Debug, Clone, Default)]
pub struct MvmScratch {
    /// DAC codes of the tokens of one pass.
    xq: Vec<f32>,
    /// Output noise of one pass.
    noise: Vec<f32>,
    /// Each token's input scale (abs-max, or 1).
    nm: Vec<f32>,
    /// Tokens whose input is all zero (noise management on).
    zero: Vec<bool>,
    /// Whether each token of the last pass clipped.
    clip: Vec<bool>,
    /// `Token` scope: the tokens of the next re-run, and of the one after.
    active: Vec<usize>,
    next: Vec<usize>,
    /// `Token` scope: the input scales and outputs of a re-run's tokens.
    nm_sel: Vec<f32>,
    y_sel: Vec<f32>,
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
    /// Output noise is drawn from `rng`, n samples per token and pass in
    /// token order: tokens x n for the first pass, then for each re-run
    /// only its tokens (`Token` scope) or all of them (`Batch` scope). One
    /// thread, so the draws depend on the inputs and the stream only.
    ///
    /// Bound management, as aihwkit: a pass at input reduction r (1, 2, 4,
    /// ...) divides the inputs by abs-max x r before the DAC and multiplies
    /// the outputs back. If an output clips (|ADC code| > levels, either
    /// sign), the pass is repeated at 2r, unless r > `max_bm_factor` or
    /// r > `max_bm_res` / DAC step (DAC on): then the clipped pass is
    /// accepted. Under `Token` scope (aihwkit's C++ `forwardVector`, one
    /// token at a time) this runs for each token on its own, so a token's
    /// output and reduction do not depend on the other tokens; under
    /// `Batch` scope (aihwkit's torch MVM) any clip re-runs every token.
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
        let MvmScratch {
            xq,
            noise,
            nm,
            zero,
            clip,
            active,
            next,
            nm_sel,
            y_sel,
        } = scratch;

        // (1) Noise management: each token's abs-max.
        nm.clear();
        zero.clear();
        if p.noise_management {
            nm.extend(x.chunks_exact(m).map(abs_max));
            if nm.iter().all(|&a| a == 0.0) {
                out.fill(0.0);
                return MvmInfo::default();
            }
            // An all-zero token: aihwkit's torch MVM sets its scale to 1
            // rather than dividing by 0, so it still sees output noise
            // (Batch scope); the C++ MVM returns zeros for it (Token scope,
            // below).
            for a in nm.iter_mut() {
                zero.push(*a == 0.0);
                if *a == 0.0 {
                    *a = 1.0;
                }
            }
        } else {
            nm.resize(tokens, 1.0);
            zero.resize(tokens, false);
        }

        // aihwkit's limit: reduction > max_bm_res / inp_res, inp_res being
        // the DAC step relative to [-1, 1] (1 / levels).
        let res_limit = if p.dac {
            p.max_bm_res * self.dac_levels as f64
        } else {
            f64::INFINITY
        };
        let accept = |reduction: f32| {
            let r = reduction as f64;
            !p.bound_management || r > p.max_bm_factor || r > res_limit
        };

        // The first pass: every token at reduction 1.
        let mut reduction = 1.0f32;
        let mut passes = 1u32;
        let all = x.chunks_exact(m);
        self.pass(
            all, nm, reduction, w, m, n, col_gain, rng, xq, noise, out, clip,
        );

        if p.bound_management_scope == BoundManagementScope::Batch {
            loop {
                let clipped = clip.iter().any(|&c| c);
                if !clipped || accept(reduction) {
                    return MvmInfo {
                        passes,
                        token_passes: passes as u64 * tokens as u64,
                        clipped,
                    };
                }
                reduction *= 2.0;
                passes += 1;
                let all = x.chunks_exact(m);
                self.pass(
                    all, nm, reduction, w, m, n, col_gain, rng, xq, noise, out, clip,
                );
            }
        }

        // Token scope. All tokens share the pass count so far, so they
        // share the reduction and the give-up test too; a re-run takes the
        // tokens that clipped in the previous one.
        let mut token_passes = 0u64;
        active.clear();
        for (t, yr) in out.chunks_exact_mut(n).enumerate() {
            if zero[t] {
                yr.fill(0.0);
            } else {
                token_passes += 1;
                if clip[t] {
                    active.push(t);
                }
            }
        }
        while !active.is_empty() && !accept(reduction) {
            reduction *= 2.0;
            passes += 1;
            token_passes += active.len() as u64;
            nm_sel.clear();
            nm_sel.extend(active.iter().map(|&t| nm[t]));
            y_sel.resize(active.len() * n, 0.0);
            let rows = active.iter().map(|&t| &x[t * m..(t + 1) * m]);
            self.pass(
                rows, nm_sel, reduction, w, m, n, col_gain, rng, xq, noise, y_sel, clip,
            );
            next.clear();
            for ((&t, yr), &c) in active.iter().zip(y_sel.chunks_exact(n)).zip(clip.iter()) {
                out[t * n..(t + 1) * n].copy_from_slice(yr);
                if c {
                    next.push(t);
                }
            }
            std::mem::swap(active, next);
        }
        MvmInfo {
            passes,
            token_passes,
            clipped: !active.is_empty(),
        }
    }

    /// One pass of `scales.len()` tokens (`rows`, each m inputs, with their
    /// input scales) at input `reduction`: DAC, product, output noise, ADC,
    /// scale back into `out` (tokens x n); `clip[t]` says whether token t
    /// clipped.
    #[allow(clippy::too_many_arguments)]
    fn pass<'a>(
        &self,
        rows: impl Iterator<Item = &'a [f32]>,
        scales: &[f32],
        reduction: f32,
        w: &[f32],
        m: usize,
        n: usize,
        col_gain: &[f32],
        rng: &mut NoiseRng,
        xq: &mut Vec<f32>,
        noise: &mut Vec<f32>,
        out: &mut [f32],
        clip: &mut Vec<bool>,
    ) {
        let p = &self.params;
        let tokens = scales.len();
        debug_assert_eq!(out.len(), tokens * n);
        let dac_l = self.dac_levels as f32;
        let adc_l = self.adc_levels as f32;
        let bound = p.out_bound as f32;
        // With the DAC on, the GEMM takes the integer codes (exact in f32)
        // and the DAC step 1/L is applied once per output rather than once
        // per input: the same product up to f32 rounding.
        let x_unit = if p.dac { 1.0 / dac_l } else { 1.0 };
        let adc_in = adc_l / bound;
        let adc_step = bound / adc_l;
        let out_noise = p.out_noise as f32;

        // (2) Scale and DAC: code = round(x / (abs-max x reduction) x L),
        // ties to even, clamped to +-L.
        xq.resize(tokens * m, 0.0);
        for ((xr, qr), &a) in rows.zip(xq.chunks_exact_mut(m)).zip(scales) {
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
        gemm::sgemm(tokens, m, n, xq, w, out);
        // (4) Output noise, in normalised units, drawn per pass.
        let noise: &[f32] = if out_noise > 0.0 {
            noise.resize(tokens * n, 0.0);
            rng::fill_standard_normal(rng, noise);
            noise
        } else {
            &[]
        };
        // (5) ADC and (6) scale back: input scale, reduction, digital
        // column gain.
        clip.clear();
        for (t, (yr, &a)) in out.chunks_exact_mut(n).zip(scales).enumerate() {
            let zr = if noise.is_empty() {
                None
            } else {
                Some(&noise[t * n..(t + 1) * n])
            };
            let back = a * reduction;
            let mut clipped = 0u32;
            if p.adc {
                let k_out = adc_step * back;
                let f = x_unit * adc_in;
                let fz = out_noise * adc_in;
                // Rounding after a far-out clamp keeps the rounding trick
                // valid; clipping is |code| > L.
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
            clip.push(clipped > 0);
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

    /// No output noise, the given scope.
    fn quiet(scope: BoundManagementScope) -> PeripheryParams {
        PeripheryParams {
            out_noise: 0.0,
            bound_management_scope: scope,
            ..PeripheryParams::default()
        }
    }

    const SCOPES: [BoundManagementScope; 2] =
        [BoundManagementScope::Batch, BoundManagementScope::Token];

    fn info(passes: u32, token_passes: u64, clipped: bool) -> MvmInfo {
        MvmInfo {
            passes,
            token_passes,
            clipped,
        }
    }

    /// `tokens` rows of length m, token t having `ones[t]` leading ones.
    fn leading_ones(ones: &[usize], m: usize) -> Vec<f32> {
        ones.iter()
            .flat_map(|&k| (0..m).map(move |i| if i < k { 1.0 } else { 0.0 }))
            .collect()
    }

    fn assert_close(out: &[f32], expect: &[f64]) {
        assert_eq!(out.len(), expect.len());
        for (&o, &e) in out.iter().zip(expect) {
            assert!(
                (o as f64 - e).abs() < 1e-4 * e.abs().max(1.0),
                "{out:?} vs {expect:?}"
            );
        }
    }

    #[test]
    fn bound_management_halves_inputs_until_nothing_clips() {
        // One token, so both scopes agree. 20 rows of ones, input all
        // ones: y = 20 > 12 clips; second pass with the input halved:
        // DAC(0.5) = 64/127, y = 20 x 64/127 = 10.08, ADC code
        // round(10.08 x 127/12) = 107, back x 2.
        let (m, n) = (20, 3);
        let y = 20.0 * (64.0f64 / 127.0);
        let code = (y * 127.0 / 12.0).round_ties_even();
        assert_eq!(code, 107.0);
        let expect = code * 12.0 / 127.0 * 2.0;
        for scope in SCOPES {
            let (out, i) = run(quiet(scope), &vec![1.0; m], 1, &vec![1.0; m * n], m, n);
            assert_eq!(i, info(2, 2, false), "{scope:?}");
            assert_close(&out, &[expect; 3]);
        }
    }

    #[test]
    fn bound_management_gives_up_at_max_bm_res_over_the_dac_step() {
        // One token, both scopes. 512 ones: y = 512 / reduction clips
        // until reduction 64, but aihwkit stops once reduction > 0.25 x
        // 127 = 31.75, i.e. after the pass at 32 (6 passes): DAC(1/32) =
        // round(3.97)/127 = 4/127, y = 512 x 4/127 = 16.1 -> clamped to
        // 12, back x 32 = 384.
        let m = 512;
        for scope in SCOPES {
            let p = quiet(scope);
            let (out, i) = run(p.clone(), &vec![1.0; m], 1, &vec![1.0; m], m, 1);
            assert_eq!(i, info(6, 6, true), "{scope:?}");
            assert!((out[0] - 384.0).abs() < 1e-3, "{}", out[0]);
            // Without bound management: one pass, clamped at 12.
            let p = PeripheryParams {
                bound_management: false,
                ..p
            };
            let (out, i) = run(p, &vec![1.0; m], 1, &vec![1.0; m], m, 1);
            assert_eq!(i, info(1, 1, true), "{scope:?}");
            assert!((out[0] - 12.0).abs() < 1e-4);
        }
    }

    #[test]
    fn token_scope_re_runs_only_the_clipping_token() {
        // All-ones 20 x 3 weights. Token 0 = one 1 (abs-max 1): DAC code
        // 127, y = 1, ADC code round(127/12 = 10.58) = 11 -> 11 x 12/127
        // = 1.0394. Token 1 = twenty 1s: y = 20 clips; at reduction 2,
        // DAC(0.5) = 64/127, y = 10.08, code 107 -> 107 x 12/127 x 2 =
        // 20.2205. (aihwkit 1.1.0 gives exactly these with
        // InferenceRPUConfig; TorchInferenceRPUConfig re-runs token 0 too.)
        let (m, n) = (20, 3);
        let w = vec![1.0; m * n];
        let x = leading_ones(&[1, 20], m);
        let t0 = 11.0 * 12.0 / 127.0;
        let t1 = 107.0 * 12.0 / 127.0 * 2.0;
        let (out, i) = run(quiet(BoundManagementScope::Token), &x, 2, &w, m, n);
        assert_eq!(i, info(2, 3, false));
        assert_close(&out, &[t0, t0, t0, t1, t1, t1]);
        // Token 0 is exactly what it is on its own (no clip, one pass).
        let (alone, i) = run(quiet(BoundManagementScope::Token), &x[..m], 1, &w, m, n);
        assert_eq!(i, info(1, 1, false));
        assert_eq!(&out[..n], &alone[..]);
        // Batch scope re-runs token 0 at reduction 2 as well: DAC(0.5) =
        // 64/127, y = 0.504, code round(5.33) = 5 -> 5 x 12/127 x 2 =
        // 0.9449.
        let (out, i) = run(quiet(BoundManagementScope::Batch), &x, 2, &w, m, n);
        assert_eq!(i, info(2, 4, false));
        let b0 = 5.0 * 12.0 / 127.0 * 2.0;
        assert_close(&out, &[b0, b0, b0, t1, t1, t1]);
    }

    #[test]
    fn token_scope_keeps_a_non_clipping_token_with_output_noise() {
        // With output noise on: token 0's outputs are bit-identical whether
        // token 1 clips (twenty 1s) or not (five 1s), since the first
        // pass draws the same noise and only token 1 is re-run. Under
        // Batch scope token 0 changes.
        let (m, n) = (20, 3);
        let w = vec![1.0; m * n];
        let clipping = leading_ones(&[1, 20], m);
        let calm = leading_ones(&[1, 5], m);
        let noisy = |scope| PeripheryParams {
            bound_management_scope: scope,
            ..PeripheryParams::default()
        };
        let (a, ia) = run(noisy(BoundManagementScope::Token), &clipping, 2, &w, m, n);
        let (b, ib) = run(noisy(BoundManagementScope::Token), &calm, 2, &w, m, n);
        assert_eq!((ia, ib), (info(2, 3, false), info(1, 2, false)));
        assert_eq!(a[..n], b[..n]);
        assert_ne!(a[n..], b[n..]);
        let (a, ia) = run(noisy(BoundManagementScope::Batch), &clipping, 2, &w, m, n);
        let (b, ib) = run(noisy(BoundManagementScope::Batch), &calm, 2, &w, m, n);
        assert_eq!((ia, ib), (info(2, 4, false), info(1, 2, false)));
        assert_ne!(a[..n], b[..n]);
    }

    #[test]
    fn token_scope_counts_passes_per_token() {
        // All-ones 64 x 1 weights; tokens of 8, 20 and 64 leading ones
        // (abs-max 1 each).
        // - 8 ones: y = 8, code round(84.67) = 85, 1 pass -> 8.0315.
        // - 20 ones: as above, 2 passes -> 20.2205.
        // - 64 ones: 64 clips; reduction 2: 64 x 64/127 = 32.3 clips;
        //   4: DAC(0.25) = round(31.75) = 32, y = 16.1 clips; 8: DAC(1/8) =
        //   round(15.875) = 16, y = 64 x 16/127 = 8.063, code round(85.33)
        //   = 85, 4 passes -> 85 x 12/127 x 8 = 64.252.
        let m = 64;
        let w = vec![1.0; m];
        let x = leading_ones(&[8, 20, 64], m);
        let s = 12.0 / 127.0;
        let (out, i) = run(quiet(BoundManagementScope::Token), &x, 3, &w, m, 1);
        assert_eq!(i, info(4, 1 + 2 + 4, false));
        assert_close(&out, &[85.0 * s, 107.0 * s * 2.0, 85.0 * s * 8.0]);
        // Batch scope: all three at reduction 8 (DAC code 16 for a 1):
        // 8 x 16/127 = 1.008 -> code 11; 20 x 16/127 = 2.520 -> code 27.
        let (out, i) = run(quiet(BoundManagementScope::Batch), &x, 3, &w, m, 1);
        assert_eq!(i, info(4, 3 * 4, false));
        assert_close(&out, &[11.0 * s * 8.0, 27.0 * s * 8.0, 85.0 * s * 8.0]);
    }

    #[test]
    fn token_scope_gives_up_per_token() {
        // All-ones 512 x 1 weights; token 0 = 512 ones (never stops
        // clipping), token 1 = 5 ones: y = 5, code round(52.9) = 53, one
        // pass -> 53 x 12/127 = 5.0079. aihwkit 1.1.0: InferenceRPUConfig
        // [384, 5.0079]; TorchInferenceRPUConfig [384, 6.0472].
        let m = 512;
        let w = vec![1.0; m];
        let x = leading_ones(&[512, 5], m);
        let s = 12.0 / 127.0;
        let token = quiet(BoundManagementScope::Token);
        let (out, i) = run(token.clone(), &x, 2, &w, m, 1);
        // Token 0 gives up after the pass at 32 > 0.25 x 127 (6 passes).
        assert_eq!(i, info(6, 6 + 1, true));
        assert_close(&out, &[384.0, 53.0 * s]);
        // Batch: token 1 at reduction 32: DAC(1/32) = 4/127, y = 0.157,
        // code round(1.67) = 2 -> 2 x 12/127 x 32 = 6.0472.
        let (out, i) = run(quiet(BoundManagementScope::Batch), &x, 2, &w, m, 1);
        assert_eq!(i, info(6, 2 * 6, true));
        assert_close(&out, &[384.0, 2.0 * s * 32.0]);
        // max_bm_res 0.1: limit 12.7, so the pass at 16 is the last (5
        // passes): DAC(1/16) = round(7.94) = 8, y = 32.3 -> 12 x 16 = 192.
        let p = PeripheryParams {
            max_bm_res: 0.1,
            ..token.clone()
        };
        let (out, i) = run(p, &x, 2, &w, m, 1);
        assert_eq!(i, info(5, 5 + 1, true));
        assert_close(&out, &[192.0, 53.0 * s]);
        // max_bm_factor 4: the pass at 8 > 4 is the last (4 passes):
        // DAC(1/8) = 16, y = 64.5 -> 12 x 8 = 96 (aihwkit: 96, both MVMs).
        let p = PeripheryParams {
            max_bm_factor: 4.0,
            ..token.clone()
        };
        let (out, i) = run(p, &x, 2, &w, m, 1);
        assert_eq!(i, info(4, 4 + 1, true));
        assert_close(&out, &[96.0, 53.0 * s]);
        // Bound management off: one pass each, token 0 clamped at 12.
        let p = PeripheryParams {
            bound_management: false,
            ..token
        };
        let (out, i) = run(p, &x, 2, &w, m, 1);
        assert_eq!(i, info(1, 2, true));
        assert_close(&out, &[12.0, 53.0 * s]);
    }

    #[test]
    fn token_scope_returns_zeros_for_an_all_zero_token() {
        // aihwkit's C++ MVM short-cuts a token of zeros (with noise
        // management) to zero outputs; the torch MVM runs it with scale 1,
        // so it carries output noise.
        let (m, n) = (4, 64);
        let w = vec![1.0; m * n];
        let x = leading_ones(&[1, 0], m);
        let noisy = |scope| PeripheryParams {
            bound_management_scope: scope,
            ..PeripheryParams::default()
        };
        let (out, i) = run(noisy(BoundManagementScope::Token), &x, 2, &w, m, n);
        assert_eq!(i, info(1, 1, false));
        assert!(out[n..].iter().all(|&v| v == 0.0));
        let (out, i) = run(noisy(BoundManagementScope::Batch), &x, 2, &w, m, n);
        assert_eq!(i, info(1, 2, false));
        assert!(out[n..].iter().any(|&v| v != 0.0));
        // Without noise management the C++ MVM runs the token too.
        let p = PeripheryParams {
            noise_management: false,
            ..noisy(BoundManagementScope::Token)
        };
        let (out, i) = run(p, &x, 2, &w, m, n);
        assert_eq!(i, info(1, 2, false));
        assert!(out[n..].iter().any(|&v| v != 0.0));
    }

    #[test]
    fn token_scope_draws_noise_for_the_re_run_tokens_only() {
        // Two tokens, token 1 clips once: the first pass draws 2 x n
        // normals, the re-run n. The stream afterwards is where a fresh
        // stream is after filling buffers of those lengths.
        let (m, n) = (20, 3);
        let per = Periphery::new(PeripheryParams::default(), 8, 8).unwrap();
        let x = leading_ones(&[1, 20], m);
        let mut rng = stream(5, &[]);
        let mut out = vec![0.0; 2 * n];
        let i = per.mvm(
            &x,
            2,
            &vec![1.0; m * n],
            m,
            n,
            &[1.0; 3],
            &mut rng,
            &mut MvmScratch::default(),
            &mut out,
        );
        assert_eq!(i, info(2, 3, false));
        let mut fresh = stream(5, &[]);
        rng::fill_standard_normal(&mut fresh, &mut [0.0; 6]);
        rng::fill_standard_normal(&mut fresh, &mut [0.0; 3]);
        assert_eq!(
            rand::Rng::next_u64(&mut rng),
            rand::Rng::next_u64(&mut fresh)
        );
    }

    #[test]
    fn token_scope_is_deterministic_and_thread_independent() {
        // 64 noisy tokens, a few of them scaled up so that they clip: the
        // same stream gives the same bits, in any rayon pool and with a
        // reused scratch; another stream differs.
        let (t, m, n) = (64, 128, 96);
        let mut g = stream(3, &[]);
        let mut x = vec![0.0f32; t * m];
        let mut w = vec![0.0f32; m * n];
        rng::fill_standard_normal(&mut g, &mut x);
        rng::fill_standard_normal(&mut g, &mut w);
        w.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0).abs());
        // Tokens 5, 17 and 40: every input 1, so y = column sum of |w|
        // (about 0.6 x 128 = 77) >> 12.
        for k in [5, 17, 40] {
            x[k * m..(k + 1) * m].fill(1.0);
        }
        let per = Periphery::new(PeripheryParams::default(), 8, 8).unwrap();
        let go = |seed: u64, scratch: &mut MvmScratch| {
            let mut out = vec![0.0; t * n];
            let i = per.mvm(
                &x,
                t,
                &w,
                m,
                n,
                &vec![1.0; n],
                &mut stream(seed, &[]),
                scratch,
                &mut out,
            );
            (out, i)
        };
        let (a, ia) = go(1, &mut MvmScratch::default());
        assert!(
            ia.passes > 1 && ia.token_passes < ia.passes as u64 * t as u64,
            "{ia:?}"
        );
        let mut scratch = MvmScratch::default();
        go(2, &mut scratch);
        assert_eq!(go(1, &mut scratch), (a.clone(), ia));
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let r: Vec<_> = pool.install(|| {
                use rayon::prelude::*;
                (0..4)
                    .into_par_iter()
                    .map(|_| go(1, &mut MvmScratch::default()))
                    .collect()
            });
            assert!(r.iter().all(|v| *v == (a.clone(), ia)));
        }
        assert_ne!(go(2, &mut MvmScratch::default()).0, a);
    }

    #[test]
    fn scope_defaults_to_token_and_round_trips_through_ron() {
        let d = PeripheryParams::default();
        assert_eq!(d.bound_management_scope, BoundManagementScope::Token);
        let text = ron::to_string(&d).unwrap();
        assert!(text.contains("bound_management_scope:Token"), "{text}");
        assert_eq!(ron::from_str::<PeripheryParams>(&text).unwrap(), d);
        let p: PeripheryParams = ron::from_str("(bound_management_scope: Batch)").unwrap();
        assert_eq!(p.bound_management_scope, BoundManagementScope::Batch);
        assert_eq!(ron::from_str::<PeripheryParams>("()").unwrap(), d);
        assert!(ron::from_str::<PeripheryParams>("(bound_management_scope: Tile)").is_err());
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
