//! The PCM device model of one tile (REFERENCE.md §7, after IBM aihwkit's
//! `PCMLikeNoiseModel` with `SinglePairConductanceConverter`): weights to
//! differential conductance pairs, programming noise, drift exponents drawn
//! at programming, drift to an inference time, accumulated 1/f read noise,
//! and the conversion back to weights. Also the study's simpler "effective
//! Gaussian" weight noise.
//!
//! Units: conductances in microsiemens (uS), times in seconds. Weights here
//! are whatever the caller programs (the tile passes column-normalised
//! weights); the per-tile scale maps max|W| to `g_max_us`.

use super::rng::{self, NoiseRng};
use super::FunctionalError;
use serde::{Deserialize, Serialize};

/// Which weight noise the tile's devices carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WeightNoise {
    /// aihwkit's PCM model: programming noise, drift and read noise.
    #[default]
    Pcm,
    /// The study's effective noise of hardware-aware training: Gaussian
    /// noise of `gaussian_std` x max|W| of the tile, redrawn for every
    /// evaluation (every forward pass); no drift.
    Gaussian,
    /// No weight noise and no drift: isolates the periphery.
    Ideal,
}

/// When the 1/f read noise is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReadNoiseDraw {
    /// Once per (programming, inference time), kept for every forward pass
    /// at that time: aihwkit's `drift_analog_weights(t)`.
    #[default]
    PerDriftTime,
    /// Anew for every forward pass (each pass sees a fresh read).
    PerForward,
}

/// How the two devices of a pair drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PairDrift {
    /// aihwkit's behaviour: after programming, the noisy weight
    /// `(G+ - G-) / scale` is converted to a pair again (new per-tile scale
    /// g_max / max|W_prog|, one device at 0), and drift and read noise act
    /// on that pair with the exponents drawn at programming for the same
    /// positions. Matches aihwkit's statistics exactly.
    #[default]
    Rederive,
    /// Physical reading: each device drifts from its own programmed
    /// conductance with its own exponent (the "off" device's programming
    /// noise drifts too).
    PerDevice,
}

/// Drift-exponent fit (aihwkit's PCM measurements), with x = g_T / g_max:
/// mu = clip(mu_slope ln x + mu_offset, mu_min, mu_max),
/// sigma = clip(sigma_slope ln x + sigma_offset, sigma_min, sigma_max),
/// nu = |mu + sigma N(0,1)|, x floored at `g_rel_floor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftFit {
    pub mu_slope: f64,
    pub mu_offset: f64,
    pub mu_min: f64,
    pub mu_max: f64,
    pub sigma_slope: f64,
    pub sigma_offset: f64,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Floor of x = |g_T| / g_max before the logarithm (dimensionless).
    pub g_rel_floor: f64,
}

impl Default for DriftFit {
    fn default() -> Self {
        DriftFit {
            mu_slope: -0.0155,
            mu_offset: 0.0244,
            mu_min: 0.049,
            mu_max: 0.1,
            sigma_slope: -0.0125,
            sigma_offset: -0.0059,
            sigma_min: 0.008,
            sigma_max: 0.045,
            g_rel_floor: 1e-7,
        }
    }
}

/// Accumulated 1/f read-noise fit: Q_s = min(q0 / max((g/g_max)^exponent,
/// x_floor), q_max); relative sigma = Q_s sqrt(ln((t + t_read)/(2 t_read)))
/// with t = t_inference + t0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadNoiseFit {
    pub q0: f64,
    pub exponent: f64,
    /// Floor of (g/g_max)^exponent (dimensionless).
    pub x_floor: f64,
    pub q_max: f64,
    /// Read duration of the 1/f fit, seconds (250 ns).
    pub t_read_s: f64,
}

impl Default for ReadNoiseFit {
    fn default() -> Self {
        ReadNoiseFit {
            q0: 0.0088,
            exponent: 0.65,
            x_floor: 1e-3,
            q_max: 0.2,
            t_read_s: 250e-9,
        }
    }
}

/// The device model's parameters. Defaults are aihwkit's `PCMLikeNoiseModel`
/// and the study's settings (REFERENCE.md §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcmParams {
    /// Which noise the devices carry.
    pub model: WeightNoise,
    /// Largest target conductance, uS; max|W| of the tile maps to it.
    pub g_max_us: f64,
    /// Programming-noise polynomial, uS: sigma = c0 + c1 x + c2 x^2 with
    /// x = g_T / g_max, fitted at `prog_coeff_g_max_reference_us`.
    pub prog_coeff_us: [f64; 3],
    /// The g_max (uS) the polynomial was fitted at; sigma scales by
    /// g_max / this.
    pub prog_coeff_g_max_reference_us: f64,
    /// Multiplies the programming-noise sigma (aihwkit knob).
    pub prog_noise_scale: f64,
    /// Drift-exponent fit.
    pub drift: DriftFit,
    /// Multiplies every drift exponent nu (aihwkit knob).
    pub drift_scale: f64,
    /// First read after programming, seconds: drift is (t / t0)^-nu with
    /// t = t_inference + t0.
    pub t0_s: f64,
    /// Read-noise fit.
    pub read: ReadNoiseFit,
    /// Multiplies the read-noise sigma (aihwkit knob).
    pub read_noise_scale: f64,
    /// When read noise is drawn.
    pub read_noise_draw: ReadNoiseDraw,
    /// How the two devices of a pair drift.
    pub pair_drift: PairDrift,
    /// `Gaussian` model only: weight-noise std as a fraction of max|W| of
    /// the tile (the study's 6.7 %).
    pub gaussian_std: f64,
}

impl Default for PcmParams {
    fn default() -> Self {
        PcmParams {
            model: WeightNoise::Pcm,
            g_max_us: 25.0,
            prog_coeff_us: [0.26348, 1.9650, -1.1731],
            prog_coeff_g_max_reference_us: 25.0,
            prog_noise_scale: 1.0,
            drift: DriftFit::default(),
            drift_scale: 1.0,
            t0_s: 20.0,
            read: ReadNoiseFit::default(),
            read_noise_scale: 1.0,
            read_noise_draw: ReadNoiseDraw::PerDriftTime,
            pair_drift: PairDrift::Rederive,
            gaussian_std: 0.067,
        }
    }
}

fn check(ok: bool, field: &str, what: &str) -> Result<(), FunctionalError> {
    if ok {
        Ok(())
    } else {
        Err(FunctionalError::Param(format!("pcm.{field}: {what}")))
    }
}

impl PcmParams {
    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), FunctionalError> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        check(pos(self.g_max_us), "g_max_us", "must be > 0")?;
        check(
            self.prog_coeff_us.iter().all(|c| c.is_finite()),
            "prog_coeff_us",
            "must be finite",
        )?;
        check(
            pos(self.prog_coeff_g_max_reference_us),
            "prog_coeff_g_max_reference_us",
            "must be > 0",
        )?;
        check(
            nonneg(self.prog_noise_scale),
            "prog_noise_scale",
            "must be >= 0",
        )?;
        check(nonneg(self.drift_scale), "drift_scale", "must be >= 0")?;
        check(
            nonneg(self.read_noise_scale),
            "read_noise_scale",
            "must be >= 0",
        )?;
        check(pos(self.t0_s), "t0_s", "must be > 0")?;
        check(nonneg(self.gaussian_std), "gaussian_std", "must be >= 0")?;
        let d = &self.drift;
        check(
            d.mu_min <= d.mu_max && d.mu_min.is_finite() && d.mu_max.is_finite(),
            "drift.mu_min",
            "must be <= drift.mu_max",
        )?;
        check(
            d.sigma_min <= d.sigma_max && nonneg(d.sigma_min) && d.sigma_max.is_finite(),
            "drift.sigma_min",
            "must be in 0..=drift.sigma_max",
        )?;
        check(pos(d.g_rel_floor), "drift.g_rel_floor", "must be > 0")?;
        let r = &self.read;
        check(nonneg(r.q0), "read.q0", "must be >= 0")?;
        check(r.exponent.is_finite(), "read.exponent", "must be finite")?;
        check(pos(r.x_floor), "read.x_floor", "must be > 0")?;
        check(nonneg(r.q_max), "read.q_max", "must be >= 0")?;
        check(pos(r.t_read_s), "read.t_read_s", "must be > 0")?;
        Ok(())
    }

    /// Programming-noise standard deviation (uS) of a device programmed to
    /// `g_target_us`, including `prog_noise_scale`.
    pub fn prog_sigma_us(&self, g_target_us: f64) -> f64 {
        let x = g_target_us / self.g_max_us;
        let [c0, c1, c2] = self.prog_coeff_us;
        (c0 + c1 * x + c2 * x * x) * self.g_max_us / self.prog_coeff_g_max_reference_us
            * self.prog_noise_scale
    }

    /// Mean and standard deviation (before folding and `drift_scale`) of
    /// the drift exponent of a device programmed to `g_target_us`.
    pub fn drift_mu_sigma(&self, g_target_us: f64) -> (f64, f64) {
        let d = &self.drift;
        let x = (g_target_us.abs() / self.g_max_us).max(d.g_rel_floor);
        let ln = x.ln();
        let mu = (d.mu_slope * ln + d.mu_offset).clamp(d.mu_min, d.mu_max);
        let sigma = (d.sigma_slope * ln + d.sigma_offset).clamp(d.sigma_min, d.sigma_max);
        (mu, sigma)
    }

    /// Read-noise coefficient Q_s of a device whose programmed conductance
    /// is `g_prog_us`.
    pub fn read_q(&self, g_prog_us: f64) -> f64 {
        let r = &self.read;
        let x = (g_prog_us.abs() / self.g_max_us).powf(r.exponent);
        (r.q0 / x.max(r.x_floor)).min(r.q_max)
    }

    /// The time factor of the read noise at `t_inference_s`, including
    /// `read_noise_scale`: relative sigma = Q_s x this.
    pub fn read_time_factor(&self, t_inference_s: f64) -> f64 {
        let t = t_inference_s + self.t0_s;
        let tr = self.read.t_read_s;
        let l = ((t + tr) / (2.0 * tr)).ln();
        self.read_noise_scale * l.max(0.0).sqrt()
    }

    /// ln(t / t0) with t = t_inference + t0: drift multiplies a conductance
    /// by exp(-nu x this). Zero at t_inference <= 0 (no drift).
    pub fn drift_log_time(&self, t_inference_s: f64) -> f64 {
        if t_inference_s > 0.0 {
            ((t_inference_s + self.t0_s) / self.t0_s).ln()
        } else {
            0.0
        }
    }
}

/// The programmed state of one tile's devices: a differential pair per
/// weight, their drift exponents and read-noise coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct PcmArray {
    rows: usize,
    cols: usize,
    /// Conductance per unit weight, uS: g = w x scale.
    scale_us: f64,
    /// Conductances (uS) of the positive and negative device of each pair
    /// (row-major, rows x cols), as drift starts from them.
    g: [Vec<f32>; 2],
    /// Drift exponents (drift_scale included).
    nu: [Vec<f32>; 2],
    /// Read-noise coefficients Q_s.
    q: [Vec<f32>; 2],
}

/// Programs every target conductance: g = max(0, g_T + sigma(g_T) N(0,1)).
fn program_conductances(targets: &[f32], p: &PcmParams, rng: &mut NoiseRng) -> Vec<f32> {
    let mut z = vec![0.0f32; targets.len()];
    rng::fill_standard_normal(rng, &mut z);
    targets
        .iter()
        .zip(&z)
        .map(|(&gt, &z)| {
            let gt = gt as f64;
            (gt + p.prog_sigma_us(gt) * z as f64).max(0.0) as f32
        })
        .collect()
}

/// Draws each device's drift exponent from its target conductance.
fn drift_exponents(targets: &[f32], p: &PcmParams, rng: &mut NoiseRng) -> Vec<f32> {
    let mut z = vec![0.0f32; targets.len()];
    rng::fill_standard_normal(rng, &mut z);
    // Half the devices of a pair target 0: their (mu, sigma) once.
    let at_zero = p.drift_mu_sigma(0.0);
    targets
        .iter()
        .zip(&z)
        .map(|(&gt, &z)| {
            let (mu, sigma) = if gt == 0.0 {
                at_zero
            } else {
                p.drift_mu_sigma(gt as f64)
            };
            ((mu + sigma * z as f64).abs() * p.drift_scale) as f32
        })
        .collect()
}

/// Per-tile scale g_max / max|W| (max|W| floored at 1e-7 as in aihwkit).
fn tile_scale(weights: &[f32], g_max: f64) -> f64 {
    let amax = weights.iter().fold(0.0f32, |m, &w| m.max(w.abs())) as f64;
    g_max / amax.max(1e-7)
}

/// Splits weights into a pair of target conductances at `scale`.
fn split_pair(weights: &[f32], scale: f64, g_max: f64) -> [Vec<f32>; 2] {
    let pos = weights
        .iter()
        .map(|&w| (w as f64 * scale).clamp(0.0, g_max) as f32)
        .collect();
    let neg = weights
        .iter()
        .map(|&w| (-(w as f64) * scale).clamp(0.0, g_max) as f32)
        .collect();
    [pos, neg]
}

impl PcmArray {
    /// Programs `weights` (rows x cols, row-major): target pair at the
    /// per-tile scale, programming noise on both devices from `prog_rng`,
    /// drift exponents from the targets from `nu_rng`; then, for
    /// [`PairDrift::Rederive`], the pair is rebuilt from the programmed
    /// weight as aihwkit does before drifting.
    pub fn program(
        weights: &[f32],
        rows: usize,
        cols: usize,
        p: &PcmParams,
        prog_rng: &mut NoiseRng,
        nu_rng: &mut NoiseRng,
    ) -> PcmArray {
        assert_eq!(weights.len(), rows * cols, "PcmArray::program: shape");
        let g_max = p.g_max_us;
        let scale = tile_scale(weights, g_max);
        let targets = split_pair(weights, scale, g_max);
        let g_prog = [
            program_conductances(&targets[0], p, prog_rng),
            program_conductances(&targets[1], p, prog_rng),
        ];
        let nu = [
            drift_exponents(&targets[0], p, nu_rng),
            drift_exponents(&targets[1], p, nu_rng),
        ];
        let (g, scale_us) = match p.pair_drift {
            PairDrift::PerDevice => (g_prog, scale),
            PairDrift::Rederive => {
                let w_prog: Vec<f32> = g_prog[0]
                    .iter()
                    .zip(&g_prog[1])
                    .map(|(&a, &b)| ((a as f64 - b as f64) / scale) as f32)
                    .collect();
                let scale2 = tile_scale(&w_prog, g_max);
                (split_pair(&w_prog, scale2, g_max), scale2)
            }
        };
        // Q_s of a device at 0 is never used (it stays at 0).
        let q_of = |v: &Vec<f32>| -> Vec<f32> {
            v.iter()
                .map(|&gp| {
                    if gp == 0.0 {
                        0.0
                    } else {
                        p.read_q(gp as f64) as f32
                    }
                })
                .collect()
        };
        let q = [q_of(&g[0]), q_of(&g[1])];
        PcmArray {
            rows,
            cols,
            scale_us,
            g,
            nu,
            q,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Conductance per unit weight, uS.
    pub fn scale_us(&self) -> f64 {
        self.scale_us
    }

    /// Programmed conductances (uS) of the positive and negative devices
    /// (for `Rederive`, the rebuilt pair).
    pub fn conductances(&self) -> (&[f32], &[f32]) {
        (&self.g[0], &self.g[1])
    }

    /// Drift exponents of the positive and negative devices.
    pub fn drift_exponents(&self) -> (&[f32], &[f32]) {
        (&self.nu[0], &self.nu[1])
    }

    /// Weights right after programming: (G+ - G-) / scale, no drift, no
    /// read noise.
    pub fn programmed_weights(&self) -> Vec<f32> {
        let inv = 1.0 / self.scale_us;
        self.g[0]
            .iter()
            .zip(&self.g[1])
            .map(|(&a, &b)| ((a as f64 - b as f64) * inv) as f32)
            .collect()
    }

    /// The array drifted to `t_inference_s` seconds after programming:
    /// each device's g_d = g (t/t0)^-nu with t = t_inference + t0 (no
    /// drift at t_inference = 0), and its read-noise sigma g_d Q_s sigma_t.
    pub fn drift(&self, t_inference_s: f64, p: &PcmParams) -> DriftedArray {
        let l = p.drift_log_time(t_inference_s) as f32;
        let s_t = p.read_time_factor(t_inference_s) as f32;
        let side = |s: usize| {
            let (g, nu, q) = (&self.g[s], &self.nu[s], &self.q[s]);
            // A device at exactly 0 stays at 0: drift multiplies it and
            // read noise scales with it; leaving it out saves draws.
            // Branch-free compaction: about half the devices are at 0 in
            // no predictable order, so a branch would mispredict often.
            let live = g.iter().filter(|&&g0| g0 != 0.0).count();
            let mut d = DriftedSide {
                idx: vec![0; live + 1],
                gd: vec![0.0; live + 1],
                sd: vec![0.0; live + 1],
            };
            let mut c = 0usize;
            for (k, ((&g0, &nu), &q)) in g.iter().zip(nu).zip(q).enumerate() {
                let gd = if l > 0.0 { g0 * (-nu * l).exp() } else { g0 };
                d.idx[c] = k as u32;
                d.gd[c] = gd;
                d.sd[c] = gd * q * s_t;
                c += (g0 != 0.0) as usize;
            }
            d.idx.truncate(live);
            d.gd.truncate(live);
            d.sd.truncate(live);
            d
        };
        DriftedArray {
            len: self.rows * self.cols,
            inv_scale: (1.0 / self.scale_us) as f32,
            noisy: s_t > 0.0,
            sides: [side(0), side(1)],
        }
    }

    /// Weights read at `t_inference_s`: drift, then one read with 1/f
    /// noise, g = max(0, g_d + g_d Q_s sigma_t N(0,1)) (applied at
    /// t_inference = 0 too, as in aihwkit). Writes rows x cols weights.
    pub fn read_weights(
        &self,
        t_inference_s: f64,
        p: &PcmParams,
        rng: &mut NoiseRng,
        out: &mut [f32],
    ) {
        self.drift(t_inference_s, p).read(rng, out);
    }
}

/// The non-zero devices of one side of the pairs after drift.
#[derive(Debug, Clone, Default, PartialEq)]
struct DriftedSide {
    /// Position (row-major) of each device.
    idx: Vec<u32>,
    /// Drifted conductance, uS.
    gd: Vec<f32>,
    /// Read-noise standard deviation, uS.
    sd: Vec<f32>,
}

/// A [`PcmArray`] drifted to one inference time, ready to be read (once,
/// or anew for every forward pass).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftedArray {
    len: usize,
    inv_scale: f32,
    noisy: bool,
    sides: [DriftedSide; 2],
}

impl DriftedArray {
    /// One read of every device: g = max(0, g_d + sigma N(0,1)), converted
    /// to weights (G+ - G-) / scale into `out` (rows x cols).
    pub fn read(&self, rng: &mut NoiseRng, out: &mut [f32]) {
        assert_eq!(out.len(), self.len, "DriftedArray::read: shape");
        out.fill(0.0);
        let mut z = Vec::new();
        for (d, sign) in self.sides.iter().zip([self.inv_scale, -self.inv_scale]) {
            if self.noisy {
                z.resize(d.idx.len(), 0.0);
                rng::fill_standard_normal(rng, &mut z);
                for (((&k, &gd), &sd), &z) in d.idx.iter().zip(&d.gd).zip(&d.sd).zip(&z) {
                    out[k as usize] += sign * (gd + sd * z).max(0.0);
                }
            } else {
                for (&k, &gd) in d.idx.iter().zip(&d.gd) {
                    out[k as usize] += sign * gd;
                }
            }
        }
    }
}

/// The study's effective Gaussian weight noise: `out = target + std x
/// max|target| x N(0,1)`, one draw per weight.
pub fn gaussian_weights(target: &[f32], rel_std: f64, rng: &mut NoiseRng, out: &mut [f32]) {
    assert_eq!(target.len(), out.len(), "gaussian_weights: shape");
    let amax = target.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
    let s = (rel_std * amax as f64) as f32;
    rng::fill_standard_normal(rng, out);
    for (o, &w) in out.iter_mut().zip(target) {
        *o = w + s * *o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::rng::stream;

    fn mean_std(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var.sqrt())
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    /// E[f(Z)] for Z ~ N(0,1) by Simpson's rule on [-10, 10]: an
    /// independent check of expectations over the folded exponent.
    fn gauss_expect(f: impl Fn(f64) -> f64) -> f64 {
        let n = 20_000; // even
        let (a, b) = (-10.0, 10.0);
        let h = (b - a) / n as f64;
        let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = 0.0;
        for i in 0..=n {
            let z = a + i as f64 * h;
            let w = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            s += w * phi(z) * f(z);
        }
        s * h / 3.0
    }

    #[test]
    fn programming_sigma_polynomial_values() {
        let p = PcmParams::default();
        // c0 + c1 x + c2 x^2 at x = 0, 0.5, 1 (g_max = reference = 25 uS).
        assert!((p.prog_sigma_us(0.0) - 0.26348).abs() < 1e-12);
        let half = 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25; // 0.952705
        assert!((p.prog_sigma_us(12.5) - half).abs() < 1e-12);
        assert!((p.prog_sigma_us(25.0) - 1.05538).abs() < 1e-12);
        // g_max 50 uS: x halves per uS and sigma doubles with g_max / 25.
        let p50 = PcmParams {
            g_max_us: 50.0,
            ..PcmParams::default()
        };
        assert!((p50.prog_sigma_us(25.0) - 2.0 * half).abs() < 1e-12);
    }

    #[test]
    fn programming_noise_matches_the_polynomial() {
        let p = PcmParams::default();
        let n = 100_000;
        for (g, sigma) in [(12.5f32, 0.952705), (25.0, 1.05538)] {
            let mut rng = stream(11, &[g.to_bits() as u64]);
            let gp = program_conductances(&vec![g; n], &p, &mut rng);
            let v: Vec<f64> = gp.iter().map(|&x| x as f64).collect();
            let (m, s) = mean_std(&v);
            // No clipping this far from 0 (>= 13 sigma); the standard error
            // of a sample std is sigma / sqrt(2n) = 0.22 %.
            assert!((m - g as f64).abs() < 0.02, "mean {m} at {g}");
            assert!(rel(s, sigma) < 0.015, "std {s} vs {sigma} at {g}");
        }
        // g_T = 0: g = max(0, sigma N) with sigma = 0.26348; half the
        // devices stay at 0 and E[g^2] = sigma^2 / 2.
        let mut rng = stream(12, &[]);
        let gp = program_conductances(&vec![0.0; n], &p, &mut rng);
        let zeros = gp.iter().filter(|&&x| x == 0.0).count() as f64 / n as f64;
        assert!((zeros - 0.5).abs() < 0.01, "zero fraction {zeros}");
        let ms = gp.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n as f64;
        assert!(rel((2.0 * ms).sqrt(), 0.26348) < 0.015);
        let mean = gp.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let half_normal_mean = 0.26348 / (2.0 * std::f64::consts::PI).sqrt();
        assert!(rel(mean, half_normal_mean) < 0.015, "mean {mean}");
    }

    #[test]
    fn programming_scales_the_tile_to_g_max_and_noises_both_devices() {
        // All weights 0.5 except one 1.0: targets 12.5 uS on the positive
        // devices, 0 on the negative ones (and 25 uS for the maximum).
        let n = 200 * 500;
        let mut w = vec![0.5f32; n];
        w[0] = 1.0;
        let p = PcmParams {
            pair_drift: PairDrift::PerDevice,
            ..PcmParams::default()
        };
        let a = PcmArray::program(&w, 200, 500, &p, &mut stream(1, &[1]), &mut stream(1, &[2]));
        assert!((a.scale_us() - 25.0).abs() < 1e-9);
        let (gp, gn) = a.conductances();
        let pos: Vec<f64> = gp[1..].iter().map(|&x| x as f64).collect();
        let (m, s) = mean_std(&pos);
        assert!((m - 12.5).abs() < 0.02);
        assert!(rel(s, 0.952705) < 0.015, "std {s}");
        let rms = (gn.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(
            rel(rms * 2f64.sqrt(), 0.26348) < 0.015,
            "off-device rms {rms}"
        );
    }

    #[test]
    fn rederived_pair_has_one_device_off_and_keeps_the_programmed_weight() {
        let mut rng = stream(5, &[]);
        let mut w = vec![0.0f32; 64 * 64];
        rng::fill_standard_normal(&mut rng, &mut w);
        let per_device = PcmParams {
            pair_drift: PairDrift::PerDevice,
            ..PcmParams::default()
        };
        let rederive = PcmParams::default();
        let prog = |p: &PcmParams| {
            PcmArray::program(&w, 64, 64, p, &mut stream(3, &[1]), &mut stream(3, &[2]))
        };
        let (a, b) = (prog(&per_device), prog(&rederive));
        let (gp, gn) = b.conductances();
        assert!(gp.iter().zip(gn).all(|(&x, &y)| x.min(y) == 0.0));
        let gmax = gp.iter().chain(gn).fold(0.0f32, |m, &x| m.max(x));
        assert!((gmax - 25.0).abs() < 1e-4, "max {gmax}");
        for (x, y) in a.programmed_weights().iter().zip(b.programmed_weights()) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-3), "{x} vs {y}");
        }
    }

    #[test]
    fn drift_exponent_fit_values() {
        let p = PcmParams::default();
        // x = 1 and x = 0.5: mu below its floor 0.049, sigma below 0.008.
        assert_eq!(p.drift_mu_sigma(25.0), (0.049, 0.008));
        assert_eq!(p.drift_mu_sigma(12.5), (0.049, 0.008));
        // x = 0.02: mu = -0.0155 ln 0.02 + 0.0244, sigma = -0.0125 ln 0.02 -
        // 0.0059, both inside their clips.
        let (mu, s) = p.drift_mu_sigma(0.5);
        assert!((mu - (0.0155 * 50f64.ln() + 0.0244)).abs() < 1e-12);
        assert!((s - (0.0125 * 50f64.ln() - 0.0059)).abs() < 1e-12);
        // g = 0 floors x at 1e-7: both at their ceilings.
        assert_eq!(p.drift_mu_sigma(0.0), (0.1, 0.045));
    }

    #[test]
    fn mean_drift_exponent_is_the_folded_normal_mean() {
        let p = PcmParams::default();
        let (mu, s) = (0.0155 * 50f64.ln() + 0.0244, 0.0125 * 50f64.ln() - 0.0059);
        let expect = gauss_expect(|z| (mu + s * z).abs());
        let nu = drift_exponents(&vec![0.5; 100_000], &p, &mut stream(9, &[]));
        let m = nu.iter().map(|&x| x as f64).sum::<f64>() / nu.len() as f64;
        // sd(nu) <= 0.043: standard error 1.4e-4 on a mean of 0.085.
        assert!(rel(m, expect) < 0.008, "mean nu {m} vs {expect}");
    }

    /// Mean of (drifted / programmed) over many devices at one target,
    /// without programming or read noise.
    fn mean_drift_factor(g_target: f64, t: f64) -> f64 {
        let p = PcmParams {
            prog_noise_scale: 0.0,
            read_noise_scale: 0.0,
            pair_drift: PairDrift::PerDevice,
            ..PcmParams::default()
        };
        let (rows, cols) = (250, 400);
        let wv = (g_target / 25.0) as f32;
        let mut w = vec![wv; rows * cols];
        w[0] = 1.0; // sets max|W| -> 25 uS
        let a = PcmArray::program(
            &w,
            rows,
            cols,
            &p,
            &mut stream(2, &[1]),
            &mut stream(2, &[2]),
        );
        let mut out = vec![0.0; rows * cols];
        a.read_weights(t, &p, &mut stream(2, &[3]), &mut out);
        out[1..].iter().map(|&x| (x / wv) as f64).sum::<f64>() / (out.len() - 1) as f64
    }

    #[test]
    fn mean_drift_factor_at_one_day_matches_quadrature() {
        let day = 86_400.0;
        let l = ((day + 20.0) / 20.0f64).ln();
        // 12.5 uS: mu = 0.049, sigma = 0.008 (clipped).
        let e = gauss_expect(|z| (-(0.049 + 0.008 * z).abs() * l).exp());
        // Cross-check with the lognormal closed form (the fold is 6 sigma
        // away): exp(-mu L + sigma^2 L^2 / 2) = 0.6650.
        let closed = (-0.049 * l + 0.5 * (0.008 * l).powi(2)).exp();
        assert!(rel(e, closed) < 1e-6 && (closed - 0.6650).abs() < 5e-4);
        let got = mean_drift_factor(12.5, day);
        assert!(rel(got, e) < 0.003, "12.5 uS: {got} vs {e}");
        // 0.5 uS: mu = 0.0850, sigma = 0.0430, the fold matters (2 sigma).
        let (mu, s) = (0.0155 * 50f64.ln() + 0.0244, 0.0125 * 50f64.ln() - 0.0059);
        let e = gauss_expect(|z| (-(mu + s * z).abs() * l).exp());
        let got = mean_drift_factor(0.5, day);
        assert!(rel(got, e) < 0.006, "0.5 uS: {got} vs {e}");
        // No drift at t = 0.
        assert!((mean_drift_factor(12.5, 0.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn read_noise_coefficient_and_time_factor() {
        let p = PcmParams::default();
        assert!((p.read_q(25.0) - 0.0088).abs() < 1e-12);
        assert!((p.read_q(12.5) - 0.0088 / 0.5f64.powf(0.65)).abs() < 1e-12);
        // 0.01 uS: (4e-4)^0.65 = 0.0062 -> Q = 1.42, capped at 0.2.
        assert_eq!(p.read_q(0.01), 0.2);
        // t = t_inf + 20 s; sqrt(ln((t + 250 ns) / 500 ns)).
        let f0 = ((20.0 + 250e-9) / 500e-9f64).ln().sqrt();
        assert!((p.read_time_factor(0.0) - f0).abs() < 1e-12);
        assert!((f0 - 4.18383).abs() < 1e-4);
        let fd = ((86_420.0 + 250e-9) / 500e-9f64).ln().sqrt();
        assert!((p.read_time_factor(86_400.0) - fd).abs() < 1e-12);
    }

    #[test]
    fn read_noise_relative_std_matches_formula() {
        let p = PcmParams {
            prog_noise_scale: 0.0,
            drift_scale: 0.0,
            pair_drift: PairDrift::PerDevice,
            ..PcmParams::default()
        };
        let (rows, cols) = (250, 400);
        let mut w = vec![0.5f32; rows * cols];
        w[0] = 1.0;
        let a = PcmArray::program(
            &w,
            rows,
            cols,
            &p,
            &mut stream(4, &[1]),
            &mut stream(4, &[2]),
        );
        let q = 0.0088 / 0.5f64.powf(0.65);
        for t in [0.0, 86_400.0] {
            let sigma = q * ((t + 20.0 + 250e-9) / 500e-9f64).ln().sqrt();
            let mut out = vec![0.0; rows * cols];
            a.read_weights(t, &p, &mut stream(4, &[3, t as u64]), &mut out);
            let r: Vec<f64> = out[1..].iter().map(|&x| x as f64 / 0.5).collect();
            let (m, s) = mean_std(&r);
            assert!((m - 1.0).abs() < 0.002, "mean {m}");
            assert!(rel(s, sigma) < 0.015, "t {t}: std {s} vs {sigma}");
        }
    }

    #[test]
    fn gaussian_weight_noise_is_relative_to_max_abs() {
        let mut w = vec![0.1f32; 100_000];
        w[0] = -2.0;
        let mut out = vec![0.0; w.len()];
        gaussian_weights(&w, 0.067, &mut stream(8, &[]), &mut out);
        let d: Vec<f64> = out.iter().zip(&w).map(|(a, b)| (a - b) as f64).collect();
        let (m, s) = mean_std(&d);
        assert!(m.abs() < 0.002);
        assert!(rel(s, 0.067 * 2.0) < 0.015, "std {s}");
    }

    #[test]
    fn validation_names_the_field() {
        let p = PcmParams {
            g_max_us: 0.0,
            ..PcmParams::default()
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("pcm.g_max_us"), "{e}");
        let p = PcmParams {
            drift_scale: -1.0,
            ..PcmParams::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("drift_scale"));
        assert!(PcmParams::default().validate().is_ok());
    }
}
