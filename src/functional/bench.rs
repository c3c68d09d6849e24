//! `aimcsim bench mvm`: the cost of one noisy analog MVM batch (full
//! periphery: noise management, DAC, GEMM, output noise, ADC, bound
//! management, digital scales) against a plain FP32 GEMM of the same shape,
//! timed in the same run, interleaved, median of several repetitions.

use super::gemm;
use super::rng::{self, tag};
use super::tile::{AnalogParams, AnalogTile, TileSpec};
use super::FunctionalError;
use serde::Serialize;
use std::time::Instant;

/// Timings of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MvmBench {
    pub tokens: usize,
    pub rows: usize,
    pub cols: usize,
    pub reps: usize,
    /// Median time of one analog forward batch, milliseconds.
    pub analog_ms: f64,
    /// Median time of the plain FP32 GEMM, milliseconds.
    pub gemm_ms: f64,
    /// analog_ms / gemm_ms.
    pub ratio: f64,
    /// Median time to drift the programmed tile to a new time (drift, read
    /// noise and the GDC readout), milliseconds: paid once per (tile, t).
    pub drift_ms: f64,
    /// Bound-management passes of the timed batches (1 = none re-run).
    pub bm_passes: u32,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// [`bench_mvm_with`] with 15 repetitions and seed 0.
pub fn bench_mvm(tokens: usize, rows: usize, cols: usize) -> Result<MvmBench, FunctionalError> {
    bench_mvm_with(tokens, rows, cols, 15, 0, &AnalogParams::default())
}

/// Times `tokens x rows` inputs through a `rows x cols` tile with `params`
/// (weights N(0, 0.02^2), inputs N(0, 1), drifted to 1 day) and the plain
/// GEMM of the same shape, `reps` times each, interleaved so both see the
/// same machine load; returns the medians.
pub fn bench_mvm_with(
    tokens: usize,
    rows: usize,
    cols: usize,
    reps: usize,
    seed: u64,
    params: &AnalogParams,
) -> Result<MvmBench, FunctionalError> {
    if reps == 0 || tokens == 0 {
        return Err(FunctionalError::Param(
            "bench: reps and tokens must be >= 1".into(),
        ));
    }
    let spec = TileSpec {
        rows,
        cols,
        ..TileSpec::default()
    };
    let mut w = vec![0.0f32; rows * cols];
    rng::fill_standard_normal(&mut rng::stream(seed, &[tag::WEIGHTS]), &mut w);
    w.iter_mut().for_each(|v| *v *= 0.02);
    let mut x = vec![0.0f32; tokens * rows];
    rng::fill_standard_normal(&mut rng::stream(seed, &[tag::INPUTS]), &mut x);

    let mut tile = AnalogTile::program(spec, params, &w, rows, cols, seed)?;
    let mut drift = Vec::with_capacity(reps);
    for r in 0..reps.min(5) {
        let t0 = Instant::now();
        tile.drift_to(86_400.0 + r as f64)?;
        drift.push(ms(t0));
    }
    tile.drift_to(86_400.0)?;

    let mut y = vec![0.0f32; tokens * cols];
    let mut c = vec![0.0f32; tokens * cols];
    // Warm-up: page in buffers, let the CPU settle its clock.
    let mut passes = tile.forward_into(&x, tokens, &mut y)?.passes;
    gemm::sgemm(tokens, rows, cols, &x, &w, &mut c);

    let (mut analog, mut plain) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let t0 = Instant::now();
        let info = tile.forward_into(&x, tokens, &mut y)?;
        analog.push(ms(t0));
        passes = passes.max(info.passes);
        let t0 = Instant::now();
        gemm::sgemm(tokens, rows, cols, &x, &w, &mut c);
        plain.push(ms(t0));
    }
    std::hint::black_box((&y, &c));
    let (analog_ms, gemm_ms) = (median(analog), median(plain));
    Ok(MvmBench {
        tokens,
        rows,
        cols,
        reps,
        analog_ms,
        gemm_ms,
        ratio: analog_ms / gemm_ms,
        drift_ms: median(drift),
        bm_passes: passes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_runs() {
        let b = bench_mvm_with(8, 32, 16, 3, 1, &AnalogParams::default()).unwrap();
        assert_eq!((b.tokens, b.rows, b.cols, b.reps), (8, 32, 16, 3));
        assert!(b.analog_ms > 0.0 && b.gemm_ms > 0.0 && b.ratio > 0.0);
        assert!(b.bm_passes >= 1);
        assert!(bench_mvm_with(8, 32, 16, 0, 1, &AnalogParams::default()).is_err());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
