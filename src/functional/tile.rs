//! One analog tile as the functional executor sees it: program a weight
//! matrix once, let it drift to an inference time, run noisy forward passes
//! through the periphery, with aihwkit's global drift compensation (GDC).
//!
//! Life cycle, as aihwkit's `InferenceTile`:
//! - [`AnalogTile::program`]: column scales (periphery), conductance pairs
//!   with programming noise and drift exponents (pcm); the tile then holds
//!   the programmed weights (no drift, no read noise) and, with GDC on,
//!   reads the identity through the full noisy forward for the reference
//!   r_0. alpha = 1.
//! - [`AnalogTile::drift_to`]`(t)`: drift and read noise at t (drawn once
//!   per (programming, t) by default); GDC reads the identity again for r_t
//!   and sets alpha = r_0 / r_t.
//! - [`AnalogTile::forward`]: tokens x m inputs -> tokens x n outputs.
//!
//! Streams: programming, drift exponents, the read noise at t, the GDC
//! reference and the forward passes at t each have their own stream derived
//! from the tile's seed (and t), so `drift_to(t)` gives the same result
//! whatever was done before, and forward passes after it are reproducible.

use super::gemm;
use super::pcm::{self, DriftedArray, PcmArray, PcmParams, ReadNoiseDraw, WeightNoise};
use super::periphery::{self, MvmInfo, MvmScratch, Periphery, PeripheryParams};
use super::rng::{self, tag, NoiseRng};
use super::FunctionalError;
use crate::hw::aimc::AimcParams;
use serde::{Deserialize, Serialize};

/// Everything that shapes a tile's numbers beyond its geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalogParams {
    /// Device model.
    pub pcm: PcmParams,
    /// DAC/ADC periphery.
    pub periphery: PeripheryParams,
    /// Global drift compensation: one output scale per tile, from the
    /// identity read right after programming and at the inference time.
    pub drift_compensation: bool,
}

impl Default for AnalogParams {
    fn default() -> Self {
        AnalogParams {
            pcm: PcmParams::default(),
            periphery: PeripheryParams::default(),
            drift_compensation: true,
        }
    }
}

impl AnalogParams {
    /// No noise, no periphery, no GDC: the tile computes the exact FP32
    /// product (a reference and a test fixture).
    pub fn ideal() -> Self {
        AnalogParams {
            pcm: PcmParams {
                model: WeightNoise::Ideal,
                ..PcmParams::default()
            },
            periphery: PeripheryParams::ideal(),
            drift_compensation: false,
        }
    }
}

/// The tile's geometry and converter resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileSpec {
    /// Crossbar rows = MVM inputs.
    pub rows: usize,
    /// Crossbar columns = MVM outputs.
    pub cols: usize,
    pub dac_bits: u32,
    pub adc_bits: u32,
}

impl Default for TileSpec {
    fn default() -> Self {
        TileSpec::from(&AimcParams::default())
    }
}

impl From<&AimcParams> for TileSpec {
    fn from(a: &AimcParams) -> Self {
        TileSpec {
            rows: a.rows as usize,
            cols: a.cols as usize,
            dac_bits: a.dac_bits,
            adc_bits: a.adc_bits,
        }
    }
}

/// One programmed analog tile holding an m x n weight matrix
/// (m <= rows inputs, n <= cols outputs, row-major `Y = X W`).
#[derive(Debug, Clone)]
pub struct AnalogTile {
    spec: TileSpec,
    params: AnalogParams,
    periphery: Periphery,
    seed: u64,
    m: usize,
    n: usize,
    /// Digital per-column scales (max|W| of each column, or 1).
    col_scale: Vec<f32>,
    /// Target weights divided by the column scales.
    w_norm: Vec<f32>,
    /// Programmed devices (`Pcm` model only).
    array: Option<PcmArray>,
    /// The devices drifted to the current time, kept only when every
    /// forward pass reads them anew.
    drifted: Option<DriftedArray>,
    /// The array's current weights in normalised units.
    w_analog: Vec<f32>,
    t_inference_s: Option<f64>,
    /// GDC reference r_0.
    gdc_ref: Option<f32>,
    alpha: f32,
    /// col_scale x alpha: the digital gain after the ADC.
    gain: Vec<f32>,
    fwd_rng: NoiseRng,
    scratch: MvmScratch,
}

/// Redraws the array's weights where every evaluation sees fresh noise:
/// the Gaussian model always, the PCM model with per-forward read noise
/// once an inference time is set.
fn redraw_per_evaluation(
    pcm: &PcmParams,
    drifted: Option<&DriftedArray>,
    w_norm: &[f32],
    rng: &mut NoiseRng,
    w_analog: &mut [f32],
) {
    match (pcm.model, drifted) {
        (WeightNoise::Gaussian, _) => {
            pcm::gaussian_weights(w_norm, pcm.gaussian_std, rng, w_analog)
        }
        (WeightNoise::Pcm, Some(d)) => d.read(rng, w_analog),
        _ => {}
    }
}

impl AnalogTile {
    /// Programs `weights` (m x n, row-major) onto a tile of `spec`, with
    /// all noise drawn from streams of `seed`.
    pub fn program(
        spec: TileSpec,
        params: &AnalogParams,
        weights: &[f32],
        m: usize,
        n: usize,
        seed: u64,
    ) -> Result<AnalogTile, FunctionalError> {
        if m == 0 || n == 0 {
            return Err(FunctionalError::Shape(format!(
                "a {m} x {n} weight matrix is empty"
            )));
        }
        if m > spec.rows || n > spec.cols {
            return Err(FunctionalError::Shape(format!(
                "a {m} x {n} weight matrix does not fit a {} x {} tile",
                spec.rows, spec.cols
            )));
        }
        if weights.len() != m * n {
            return Err(FunctionalError::Shape(format!(
                "{} weights given for a {m} x {n} matrix",
                weights.len()
            )));
        }
        if let Some(k) = weights.iter().position(|w| !w.is_finite()) {
            return Err(FunctionalError::Shape(format!(
                "weight ({}, {}) is not finite",
                k / n,
                k % n
            )));
        }
        params.pcm.validate()?;
        let periphery = Periphery::new(params.periphery.clone(), spec.dac_bits, spec.adc_bits)?;

        let col_scale = if params.periphery.column_scaling {
            periphery::column_scales(weights, m, n)
        } else {
            vec![1.0; n]
        };
        let w_norm: Vec<f32> = weights
            .chunks_exact(n)
            .flat_map(|r| r.iter().zip(&col_scale).map(|(&w, &s)| w / s))
            .collect();

        let pcm = &params.pcm;
        let (array, w_analog) = match pcm.model {
            WeightNoise::Pcm => {
                let a = PcmArray::program(
                    &w_norm,
                    m,
                    n,
                    pcm,
                    &mut rng::stream(seed, &[tag::PROGRAM]),
                    &mut rng::stream(seed, &[tag::DRIFT_NU]),
                );
                let w = a.programmed_weights();
                (Some(a), w)
            }
            WeightNoise::Gaussian => {
                let mut w = vec![0.0; m * n];
                let mut r = rng::stream(seed, &[tag::GAUSSIAN, u64::MAX]);
                pcm::gaussian_weights(&w_norm, pcm.gaussian_std, &mut r, &mut w);
                (None, w)
            }
            WeightNoise::Ideal => (None, w_norm.clone()),
        };

        let mut tile = AnalogTile {
            spec,
            params: params.clone(),
            periphery,
            seed,
            m,
            n,
            gain: col_scale.clone(),
            col_scale,
            w_norm,
            array,
            drifted: None,
            w_analog,
            t_inference_s: None,
            gdc_ref: None,
            alpha: 1.0,
            // u64::MAX is the bit pattern of no finite time: "before drift".
            fwd_rng: rng::stream(seed, &[tag::FORWARD, u64::MAX]),
            scratch: MvmScratch::default(),
        };
        if params.drift_compensation {
            let mut r = rng::stream(seed, &[tag::GDC_REF]);
            tile.gdc_ref = Some(tile.identity_readout(&mut r));
        }
        Ok(tile)
    }

    /// GDC readout: the identity (one-hot rows) through the full noisy
    /// forward, periphery included, without digital scales (aihwkit reads
    /// the raw tile output); r = max(mean|out|, 1e-4).
    fn identity_readout(&mut self, rng: &mut NoiseRng) -> f32 {
        let (m, n) = (self.m, self.n);
        let mut eye = vec![0.0f32; m * m];
        for i in 0..m {
            eye[i * m + i] = 1.0;
        }
        let mut out = vec![0.0f32; m * n];
        let ones = vec![1.0f32; n];
        self.periphery.mvm(
            &eye,
            m,
            &self.w_analog,
            m,
            n,
            &ones,
            rng,
            &mut self.scratch,
            &mut out,
        );
        let mean = out.iter().map(|&v| v.abs() as f64).sum::<f64>() / out.len() as f64;
        mean.max(1e-4) as f32
    }

    /// Moves the tile to `t_inference_s` seconds after programming: drift
    /// and read noise (PCM), a fresh draw (Gaussian), then GDC's alpha.
    /// t = 0 applies the read noise without drift, as aihwkit does.
    pub fn drift_to(&mut self, t_inference_s: f64) -> Result<(), FunctionalError> {
        if !(t_inference_s.is_finite() && t_inference_s >= 0.0) {
            return Err(FunctionalError::Param(format!(
                "drift time {t_inference_s} s: must be finite and >= 0"
            )));
        }
        let tb = t_inference_s.to_bits();
        let pcm = &self.params.pcm;
        match (pcm.model, &self.array) {
            (WeightNoise::Pcm, Some(a)) => {
                let d = a.drift(t_inference_s, pcm);
                d.read(
                    &mut rng::stream(self.seed, &[tag::READ, tb]),
                    &mut self.w_analog,
                );
                self.drifted = (pcm.read_noise_draw == ReadNoiseDraw::PerForward).then_some(d);
            }
            (WeightNoise::Gaussian, _) => {
                let mut r = rng::stream(self.seed, &[tag::GAUSSIAN, tb]);
                pcm::gaussian_weights(&self.w_norm, pcm.gaussian_std, &mut r, &mut self.w_analog);
            }
            _ => {}
        }
        self.t_inference_s = Some(t_inference_s);
        self.fwd_rng = rng::stream(self.seed, &[tag::FORWARD, tb]);
        if let Some(r0) = self.gdc_ref {
            let mut r = rng::stream(self.seed, &[tag::GDC_REF, tb]);
            let rt = self.identity_readout(&mut r);
            self.alpha = r0 / rt;
        }
        for (g, &s) in self.gain.iter_mut().zip(&self.col_scale) {
            *g = s * self.alpha;
        }
        Ok(())
    }

    /// `x` (tokens x m, row-major) through the tile: tokens x n outputs in
    /// the units of the programmed weights (column scales and GDC applied).
    pub fn forward(&mut self, x: &[f32], tokens: usize) -> Result<Vec<f32>, FunctionalError> {
        let mut out = vec![0.0; tokens * self.n];
        self.forward_into(x, tokens, &mut out)?;
        Ok(out)
    }

    /// Whether splitting a batch into smaller batches leaves every token's
    /// output distribution unchanged: true unless weights are redrawn per
    /// forward pass (`Gaussian` model, or read noise `PerForward`) or bound
    /// management re-runs whole batches (`Batch` scope). Only the order of
    /// the noise draws, not their distribution, then depends on the split.
    pub fn batch_invariant(&self) -> bool {
        let pcm = &self.params.pcm;
        let redraw = match pcm.model {
            WeightNoise::Gaussian => true,
            WeightNoise::Pcm => pcm.read_noise_draw == ReadNoiseDraw::PerForward,
            WeightNoise::Ideal => false,
        };
        !redraw
            && self.params.periphery.bound_management_scope
                == super::periphery::BoundManagementScope::Token
    }

    /// As [`forward`](Self::forward), into `out` (tokens x n); says how
    /// many bound-management passes the batch took.
    pub fn forward_into(
        &mut self,
        x: &[f32],
        tokens: usize,
        out: &mut [f32],
    ) -> Result<MvmInfo, FunctionalError> {
        if x.len() != tokens * self.m {
            return Err(FunctionalError::Shape(format!(
                "{} inputs given for {tokens} tokens x {} rows",
                x.len(),
                self.m
            )));
        }
        if out.len() != tokens * self.n {
            return Err(FunctionalError::Shape(format!(
                "output buffer of {} for {tokens} tokens x {} columns",
                out.len(),
                self.n
            )));
        }
        redraw_per_evaluation(
            &self.params.pcm,
            self.drifted.as_ref(),
            &self.w_norm,
            &mut self.fwd_rng,
            &mut self.w_analog,
        );
        Ok(self.periphery.mvm(
            x,
            tokens,
            &self.w_analog,
            self.m,
            self.n,
            &self.gain,
            &mut self.fwd_rng,
            &mut self.scratch,
            out,
        ))
    }

    /// The weights the tile currently realises, in the programmed weights'
    /// units: the array's (programmed, drifted, read) conductance difference
    /// converted back to weights, times the digital column scales, times
    /// GDC's alpha. With per-evaluation noise, the last draw.
    pub fn effective_weights(&self) -> Vec<f32> {
        self.w_analog
            .chunks_exact(self.n)
            .flat_map(|r| r.iter().zip(&self.gain).map(|(&w, &g)| w * g))
            .collect()
    }

    /// The exact product `x W` with the target weights (the digital
    /// reference), tokens x n.
    pub fn exact_forward(&self, x: &[f32], tokens: usize) -> Result<Vec<f32>, FunctionalError> {
        if x.len() != tokens * self.m {
            return Err(FunctionalError::Shape(format!(
                "{} inputs given for {tokens} tokens x {} rows",
                x.len(),
                self.m
            )));
        }
        let w: Vec<f32> = self
            .w_norm
            .chunks_exact(self.n)
            .flat_map(|r| r.iter().zip(&self.col_scale).map(|(&w, &s)| w * s))
            .collect();
        Ok(gemm::matmul(tokens, self.m, self.n, x, &w))
    }

    /// GDC's output scale (1 before any drift or with GDC off).
    pub fn gdc_alpha(&self) -> f32 {
        self.alpha
    }

    /// The digital per-column scales.
    pub fn column_scales(&self) -> &[f32] {
        &self.col_scale
    }

    /// The array's current weights in normalised units (column max 1).
    pub fn analog_weights(&self) -> &[f32] {
        &self.w_analog
    }

    /// The programmed devices (PCM model only).
    pub fn pcm_array(&self) -> Option<&PcmArray> {
        self.array.as_ref()
    }

    /// The inference time set by the last `drift_to`, seconds.
    pub fn t_inference_s(&self) -> Option<f64> {
        self.t_inference_s
    }

    /// (m, n): the programmed matrix's inputs and outputs.
    pub fn shape(&self) -> (usize, usize) {
        (self.m, self.n)
    }

    pub fn spec(&self) -> TileSpec {
        self.spec
    }

    pub fn params(&self) -> &AnalogParams {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::rng::stream;

    fn normal(seed: u64, len: usize, std: f32) -> Vec<f32> {
        let mut v = vec![0.0; len];
        rng::fill_standard_normal(&mut stream(seed, &[]), &mut v);
        v.iter_mut().for_each(|x| *x *= std);
        v
    }

    fn rel_fro(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| ((x - y) as f64).powi(2))
            .sum();
        let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    fn mean_abs(v: &[f32]) -> f64 {
        v.iter().map(|&x| x.abs() as f64).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn programming_checks_shapes() {
        let s = TileSpec::default();
        let p = AnalogParams::default();
        let e = AnalogTile::program(s, &p, &vec![0.0; 513 * 2], 513, 2, 0).unwrap_err();
        assert!(matches!(e, FunctionalError::Shape(_)), "{e}");
        assert!(AnalogTile::program(s, &p, &[0.0; 5], 2, 3, 0).is_err());
        assert!(AnalogTile::program(s, &p, &[f32::NAN; 4], 2, 2, 0).is_err());
        let mut t = AnalogTile::program(s, &p, &[1.0; 4], 2, 2, 0).unwrap();
        assert!(t.drift_to(-1.0).is_err());
        assert!(t.forward(&[1.0; 3], 2).is_err());
    }

    #[test]
    fn ideal_tile_is_the_exact_product() {
        let (t, m, n) = (16, 48, 40);
        let w = normal(1, m * n, 0.02);
        let x = normal(2, t * m, 1.0);
        let mut tile =
            AnalogTile::program(TileSpec::default(), &AnalogParams::ideal(), &w, m, n, 3).unwrap();
        tile.drift_to(86_400.0).unwrap();
        assert_eq!(tile.effective_weights(), w);
        let y = tile.forward(&x, t).unwrap();
        assert!(rel_fro(&y, &tile.exact_forward(&x, t).unwrap()) < 1e-6);
        // Column scaling alone is undone exactly up to f32 rounding.
        let mut p = AnalogParams::ideal();
        p.periphery.column_scaling = true;
        let tile = AnalogTile::program(TileSpec::default(), &p, &w, m, n, 3).unwrap();
        assert!(rel_fro(&tile.effective_weights(), &w) < 1e-6);
        assert!(tile.column_scales().iter().all(|&s| s > 0.0 && s < 0.2));
    }

    #[test]
    fn forward_realises_the_effective_weights() {
        // PCM noise, drift and GDC on, the periphery ideal: forward must
        // be exactly x @ effective_weights.
        let (t, m, n) = (32, 64, 48);
        let w = normal(4, m * n, 0.02);
        let x = normal(5, t * m, 1.0);
        let p = AnalogParams {
            periphery: PeripheryParams {
                column_scaling: true,
                ..PeripheryParams::ideal()
            },
            ..AnalogParams::default()
        };
        let mut tile = AnalogTile::program(TileSpec::default(), &p, &w, m, n, 6).unwrap();
        tile.drift_to(86_400.0).unwrap();
        assert!(tile.gdc_alpha() > 1.0);
        let y = tile.forward(&x, t).unwrap();
        let e = gemm::matmul(t, m, n, &x, &tile.effective_weights());
        assert!(rel_fro(&y, &e) < 1e-5);
    }

    #[test]
    fn after_programming_alpha_is_one_and_weights_are_programmed() {
        let (m, n) = (32, 32);
        let w = normal(7, m * n, 0.02);
        let tile = AnalogTile::program(TileSpec::default(), &AnalogParams::default(), &w, m, n, 8)
            .unwrap();
        assert_eq!(tile.gdc_alpha(), 1.0);
        assert_eq!(tile.t_inference_s(), None);
        let a = tile.pcm_array().unwrap();
        let pw = a.programmed_weights();
        let eff = tile.effective_weights();
        for i in 0..m * n {
            let expect = pw[i] * tile.column_scales()[i % n];
            assert!((eff[i] - expect).abs() <= 1e-6 * expect.abs().max(1e-3));
        }
        // Programming noise alone: a few percent of the weights.
        let e = rel_fro(&eff, &w);
        assert!(e > 0.01 && e < 0.2, "{e}");
    }

    #[test]
    fn gdc_restores_the_mean_output_scale_after_drift() {
        let (t, m, n) = (128, 256, 256);
        let w = normal(9, m * n, 0.02);
        let x = normal(10, t * m, 1.0);
        let run = |gdc: bool, at: f64| {
            let p = AnalogParams {
                drift_compensation: gdc,
                ..AnalogParams::default()
            };
            let mut tile = AnalogTile::program(TileSpec::default(), &p, &w, m, n, 11).unwrap();
            tile.drift_to(at).unwrap();
            (mean_abs(&tile.forward(&x, t).unwrap()), tile.gdc_alpha())
        };
        let (y0, a0) = run(true, 0.0);
        let (y_raw, _) = run(false, 31_536_000.0);
        let (y_gdc, a_year) = run(true, 31_536_000.0);
        // One year: ln(t/t0) = ln(31536020/20) = 14.27. Where mu is at its
        // floor 0.049 (x > 0.08) with sigma 0.008, E[(t/t0)^-nu] =
        // exp(-0.049 L + (0.008 L)^2 / 2) = 0.50; smaller conductances have
        // larger mu and drift further, so the mean output keeps < 0.55.
        assert!(y_raw / y0 < 0.55, "uncompensated {}", y_raw / y0);
        // GDC scales the output back; alpha ~ 1 / drift factor.
        assert!(
            (y_gdc / y0 - 1.0).abs() < 0.05,
            "compensated {}",
            y_gdc / y0
        );
        assert!(a_year > 1.8 && a_year < 3.0, "alpha {a_year}");
        assert!((a0 - 1.0).abs() < 0.05, "alpha at 0 s {a0}");
    }

    #[test]
    fn same_seed_is_bit_identical_and_order_independent() {
        let (t, m, n) = (20, 64, 32);
        let w = normal(12, m * n, 0.02);
        let x = normal(13, t * m, 1.0);
        let p = AnalogParams::default();
        let make = |seed| AnalogTile::program(TileSpec::default(), &p, &w, m, n, seed).unwrap();
        let (mut a, mut b, mut c) = (make(1), make(1), make(2));
        a.drift_to(3600.0).unwrap();
        a.drift_to(86_400.0).unwrap();
        b.drift_to(86_400.0).unwrap();
        c.drift_to(86_400.0).unwrap();
        let (ya, yb, yc) = (
            a.forward(&x, t).unwrap(),
            b.forward(&x, t).unwrap(),
            c.forward(&x, t).unwrap(),
        );
        assert_eq!(a.effective_weights(), b.effective_weights());
        assert_eq!(ya, yb);
        assert_ne!(ya, yc);
        // Output noise is fresh for every pass; the weights stay (read
        // noise drawn once per time).
        let eff = a.effective_weights();
        assert_ne!(a.forward(&x, t).unwrap(), ya);
        assert_eq!(a.effective_weights(), eff);
    }

    #[test]
    fn per_forward_read_noise_redraws_the_weights() {
        let (m, n) = (32, 32);
        let w = normal(14, m * n, 0.02);
        let mut p = AnalogParams::default();
        p.pcm.read_noise_draw = ReadNoiseDraw::PerForward;
        let mut tile = AnalogTile::program(TileSpec::default(), &p, &w, m, n, 15).unwrap();
        tile.drift_to(3600.0).unwrap();
        let e0 = tile.effective_weights();
        tile.forward(&normal(16, 4 * m, 1.0), 4).unwrap();
        let e1 = tile.effective_weights();
        assert_ne!(e0, e1);
        // Drift is the same, only the read noise changed: small difference.
        assert!(rel_fro(&e1, &e0) < 0.2);
    }

    #[test]
    fn effective_gaussian_noise_is_a_fraction_of_the_tile_max() {
        let (m, n) = (256, 256);
        let w = normal(17, m * n, 0.02);
        let mut p = AnalogParams {
            drift_compensation: false,
            ..AnalogParams::default()
        };
        p.pcm.model = WeightNoise::Gaussian;
        let mut tile = AnalogTile::program(TileSpec::default(), &p, &w, m, n, 18).unwrap();
        tile.drift_to(31_536_000.0).unwrap(); // no drift in this model
        let s = tile.column_scales().to_vec();
        let eff = tile.effective_weights();
        // In normalised units (column max 1 = tile max) the noise std is
        // 0.067.
        let d: Vec<f64> = (0..m * n)
            .map(|k| ((eff[k] - w[k]) / s[k % n]) as f64)
            .collect();
        let sd = (d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt();
        assert!((sd / 0.067 - 1.0).abs() < 0.02, "sd {sd}");
        // Redrawn for every evaluation.
        tile.forward(&normal(19, m, 1.0), 1).unwrap();
        assert_ne!(tile.effective_weights(), eff);
    }
}
