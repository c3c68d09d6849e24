//! Seeded random streams for the functional executor, and fast filling of
//! buffers with standard normal samples.
//!
//! Every independent unit of work gets its own stream, derived from the
//! user's seed and a path of tags (what the stream is for, which trial,
//! which inference time). Work never shares a generator across threads, so
//! a result depends on the seed and the path only, never on scheduling.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::OnceLock;

/// The generator used for all noise: xoshiro256++ is fast (one add, a few
/// shifts per 64 bits) and passes BigCrush; it is not cryptographic, which
/// a noise model does not need.
pub type NoiseRng = Xoshiro256PlusPlus;

/// Tags naming what a stream is for (first element of a stream path).
pub mod tag {
    /// Programming noise of a tile's devices.
    pub const PROGRAM: u64 = 1;
    /// Drift exponents drawn at programming.
    pub const DRIFT_NU: u64 = 2;
    /// Read (1/f) noise at one inference time.
    pub const READ: u64 = 3;
    /// Output noise and per-evaluation weight noise of forward passes.
    pub const FORWARD: u64 = 4;
    /// The GDC reference readout right after programming.
    pub const GDC_REF: u64 = 5;
    /// Effective-Gaussian weight noise.
    pub const GAUSSIAN: u64 = 6;
    /// A study's random weights.
    pub const WEIGHTS: u64 = 7;
    /// A study's random inputs.
    pub const INPUTS: u64 = 8;
    /// One programming trial of a study.
    pub const TRIAL: u64 = 9;
    /// Another chip of a pass (chip 0 uses the trial's own streams).
    pub const CHIP: u64 = 10;
}

/// SplitMix64's finaliser: a bijective 64-bit mixer with full avalanche, so
/// nearby seeds and tags give unrelated streams.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64-bit seed of the stream at `path` under `seed`. Order matters:
/// `[a, b]` and `[b, a]` are different streams.
pub fn stream_seed(seed: u64, path: &[u64]) -> u64 {
    let mut h = splitmix64(seed);
    for &p in path {
        // Mixing the tag before combining keeps `h ^ tag` from cancelling
        // structure in `h` for small tags.
        h = splitmix64(h ^ splitmix64(p ^ 0x632B_E59B_D9B4_E019));
    }
    h
}

/// A fresh generator for the stream at `path` under `seed`.
pub fn stream(seed: u64, path: &[u64]) -> NoiseRng {
    NoiseRng::seed_from_u64(stream_seed(seed, path))
}

/// Marsaglia & Tsang's 128-layer ziggurat (J. Stat. Softw. 5(8), 2000),
/// laid out so one 64-bit draw yields two samples: each 32-bit half gives a
/// 7-bit layer index and, from its other 25 bits, a signed abscissa (unlike
/// the original, index and value bits do not overlap). ~98.8 % of samples
/// take the fast path: a compare, a multiply, no transcendental.
struct Ziggurat {
    /// Acceptance thresholds on |hz| per layer.
    kn: [u32; 128],
    /// Layer widths per unit of hz (x = hz * wn).
    wn: [f32; 128],
    wn64: [f64; 128],
    /// exp(-x_i^2 / 2) at the layer edges.
    fn_: [f64; 128],
}

/// Right edge of the base layer (start of the tail) and the common layer
/// area, from the paper.
const ZIG_R: f64 = 3.442619855899;
const ZIG_V: f64 = 9.91256303526217e-3;
/// |hz| < 2^24: the 25-bit signed abscissa.
const ZIG_M: f64 = 16_777_216.0;

impl Ziggurat {
    /// The paper's `zigset` with 2^24 in place of 2^31.
    fn build() -> Ziggurat {
        let mut kn = [0u32; 128];
        let mut wn = [0f64; 128];
        let mut f = [0f64; 128];
        let mut dn = ZIG_R;
        let mut tn = dn;
        let q = ZIG_V / (-0.5 * dn * dn).exp();
        kn[0] = ((dn / q) * ZIG_M) as u32;
        kn[1] = 0;
        wn[0] = q / ZIG_M;
        wn[127] = dn / ZIG_M;
        f[0] = 1.0;
        f[127] = (-0.5 * dn * dn).exp();
        for i in (1..=126).rev() {
            dn = (-2.0 * (ZIG_V / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            kn[i + 1] = ((dn / tn) * ZIG_M) as u32;
            tn = dn;
            f[i] = (-0.5 * dn * dn).exp();
            wn[i] = dn / ZIG_M;
        }
        Ziggurat {
            kn,
            wn: wn.map(|w| w as f32),
            wn64: wn,
            fn_: f,
        }
    }

    /// One sample from 32 random bits (more bits from `rng` on the slow
    /// path).
    #[inline(always)]
    fn sample(&self, w: u32, rng: &mut NoiseRng) -> f32 {
        let iz = (w & 127) as usize;
        let hz = (w as i32) >> 7;
        if hz.unsigned_abs() < self.kn[iz] {
            return hz as f32 * self.wn[iz];
        }
        self.slow(hz, iz, rng)
    }

    /// The paper's `nfix`: the wedge test, or the tail beyond R.
    #[cold]
    fn slow(&self, mut hz: i32, mut iz: usize, rng: &mut NoiseRng) -> f32 {
        loop {
            let x = hz as f64 * self.wn64[iz];
            if iz == 0 {
                // Marsaglia's tail method: x = -ln(U1) / R until
                // -2 ln(U2) >= x^2.
                loop {
                    let x = -uniform_open(rng).ln() / ZIG_R;
                    let y = -uniform_open(rng).ln();
                    if y + y >= x * x {
                        let v = ZIG_R + x;
                        return (if hz > 0 { v } else { -v }) as f32;
                    }
                }
            }
            let u = uniform_open(rng);
            if self.fn_[iz] + u * (self.fn_[iz - 1] - self.fn_[iz]) < (-0.5 * x * x).exp() {
                return x as f32;
            }
            let w = rng.next_u64() as u32;
            iz = (w & 127) as usize;
            hz = (w as i32) >> 7;
            if hz.unsigned_abs() < self.kn[iz] {
                return (hz as f64 * self.wn64[iz]) as f32;
            }
        }
    }
}

/// Uniform in the open interval (0, 1) with 53 random bits.
fn uniform_open(rng: &mut NoiseRng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
}

fn ziggurat() -> &'static Ziggurat {
    static Z: OnceLock<Ziggurat> = OnceLock::new();
    Z.get_or_init(Ziggurat::build)
}

/// Fills `out` with independent N(0, 1) samples, two per 64-bit draw.
pub fn fill_standard_normal(rng: &mut NoiseRng, out: &mut [f32]) {
    let z = ziggurat();
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        let u = rng.next_u64();
        p[0] = z.sample(u as u32, rng);
        p[1] = z.sample((u >> 32) as u32, rng);
    }
    for v in pairs.into_remainder() {
        *v = z.sample(rng.next_u64() as u32, rng);
    }
}

/// One N(0, 1) sample (one 64-bit draw).
#[inline]
pub fn standard_normal(rng: &mut NoiseRng) -> f32 {
    let w = rng.next_u64() as u32;
    ziggurat().sample(w, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_tag_and_order() {
        let a = stream_seed(1, &[tag::PROGRAM]);
        assert_ne!(a, stream_seed(2, &[tag::PROGRAM]));
        assert_ne!(a, stream_seed(1, &[tag::DRIFT_NU]));
        assert_ne!(
            stream_seed(1, &[tag::TRIAL, 2]),
            stream_seed(1, &[2, tag::TRIAL])
        );
        assert_eq!(a, stream_seed(1, &[tag::PROGRAM]));
    }

    /// Phi(z) by Simpson's rule on the density from -12: independent of
    /// the sampler's tables.
    fn phi_cdf(z: f64) -> f64 {
        let (a, n) = (-12.0, 200_000);
        let h = (z - a) / n as f64;
        let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = pdf(a) + pdf(z);
        for i in 1..n {
            s += pdf(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn normal_fill_has_the_normal_moments_and_cdf() {
        let mut rng = stream(7, &[]);
        let n = 4_000_001; // odd: exercises the remainder path
        let mut v = vec![0.0f32; n];
        fill_standard_normal(&mut rng, &mut v);
        let nf = n as f64;
        let m = |k: i32| v.iter().map(|&x| (x as f64).powi(k)).sum::<f64>() / nf;
        // Standard errors: mean 1/sqrt(n) = 5e-4, variance sqrt(2/n) = 7e-4,
        // third moment sqrt(15/n) = 2e-3, fourth sqrt(96/n) = 5e-3.
        assert!(m(1).abs() < 0.0025, "mean {}", m(1));
        assert!((m(2) - 1.0).abs() < 0.0035, "var {}", m(2));
        assert!(m(3).abs() < 0.01, "skew {}", m(3));
        assert!((m(4) - 3.0).abs() < 0.025, "kurtosis {}", m(4));
        for z in [
            -4.0, -3.5, -3.0, -2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.0, 3.0, 3.5, 4.0,
        ] {
            let p = phi_cdf(z);
            let got = v.iter().filter(|&&x| (x as f64) <= z).count() as f64 / nf;
            let se = (p * (1.0 - p) / nf).sqrt();
            assert!(
                (got - p).abs() < 5.0 * se + 1e-6,
                "P(Z <= {z}) = {got} vs {p}"
            );
        }
        // Beyond the base layer (R = 3.4426) only the tail method samples.
        let tail = v.iter().filter(|&&x| x.abs() as f64 > 3.6).count() as f64 / nf;
        let p = 2.0 * phi_cdf(-3.6);
        assert!(
            (tail - p).abs() < 5.0 * (p / nf).sqrt(),
            "tail {tail} vs {p}"
        );
        // The two samples from one 64-bit draw are uncorrelated.
        let c = v.chunks_exact(2).map(|p| (p[0] * p[1]) as f64).sum::<f64>() / (nf / 2.0);
        assert!(c.abs() < 0.004, "pair correlation {c}");
    }

    #[test]
    fn scalar_and_buffer_samplers_agree_in_law() {
        let mut rng = stream(8, &[]);
        let n = 200_000;
        let v: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng) as f64).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.012 && (var - 1.0).abs() < 0.016,
            "{mean} {var}"
        );
    }
}
