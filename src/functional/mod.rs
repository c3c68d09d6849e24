//! The functional executor: runs operations on numbers. This first slice
//! owns the model of ONE analog tile, numerically equivalent in statistics to
//! IBM aihwkit's `PCMLikeNoiseModel` + `SinglePairConductanceConverter` +
//! `GlobalDriftCompensation` and its 8-bit periphery (REFERENCE.md §7):
//!
//! - [`pcm`]: weights -> PCM conductance pairs, programming noise, drift,
//!   1/f read noise; the study's "effective Gaussian" alternative.
//! - [`periphery`]: noise management, DAC, output noise, ADC, bound
//!   management, per-column digital scales.
//! - [`tile`]: [`AnalogTile`] = program, drift to a time, forward, GDC,
//!   effective weights.
//! - [`device`]: one tile's error against drift time (`aimcsim device`),
//!   and the drift-time parser (`0s`, `1h`, `1d`, `1w`, `1mo`, `1y`).
//! - [`bench`](mod@bench): the analog MVM against a plain FP32 GEMM.
//! - [`rng`]: seeded, independent random streams; [`gemm`]: the FP32 GEMM.
//!
//! The executor (issue 3, part 2) runs the whole mapped graph on numbers:
//!
//! - [`weights`]: where the numbers come from ([`WeightSource`]: seeded
//!   random weights now, a safetensors source later; [`LoraWeights`] from
//!   PEFT adapters).
//! - [`ops`]: the PMCA's operations in FP16 (or FP32) as the hardware
//!   computes them.
//! - [`executor`]: every node in graph order, static MVMs through one
//!   [`AnalogTile`] per mapped tile block, beside the FP32 reference.
//! - [`metrics`]: relative error, cosine similarity, SNR; trial statistics.
//! - [`study`]: `aimcsim functional`'s report, accuracy next to latency.
//!
//! Determinism: every independent unit of work (a tile, a trial, one
//! inference time) draws from its own stream derived from the user's seed,
//! and the MVM itself is single-threaded, so results are bit-identical at
//! any rayon thread count (on the same CPU: matrixmultiply picks its SIMD
//! kernel at run time, which may change the last bits between machines).

pub mod bench;
pub mod device;
pub mod executor;
pub mod gemm;
pub mod metrics;
pub mod ops;
pub mod pcm;
pub mod periphery;
pub mod rng;
pub mod rrr;
pub mod study;
pub mod tile;
pub mod weights;
pub mod weights_st;

pub use bench::{bench_mvm, bench_mvm_with, MvmBench};
pub use device::{
    characterise, format_drift_time, parse_drift_time, parse_drift_times, DeviceRow, DeviceStudy,
    DriftTimeError,
};
pub use executor::{
    graph_input, trial_seed, ExecConfig, ExecError, Executor, Stream, TrialMetrics,
};
pub use metrics::{compare, mean_std, MeanStd, MetricStats, Metrics};
pub use ops::Precision;
pub use pcm::{
    DriftFit, DriftedArray, PairDrift, PcmArray, PcmParams, ReadNoiseDraw, ReadNoiseFit,
    WeightNoise,
};
pub use periphery::{BoundManagementScope, MvmInfo, Periphery, PeripheryParams};
pub use study::{
    functional_study, functional_study_with, FunctionalReport, FunctionalRow, LayerAccuracy,
    StudyOptions,
};
pub use tile::{AnalogParams, AnalogTile, TileSpec};
pub use weights::{
    DenseWeights, LoraKey, LoraModule, LoraWeights, NormAffine, RandomWeights, WeightSource,
};

/// Why a functional computation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionalError {
    /// A matrix or vector does not have the size the operation needs.
    #[error("shape: {0}")]
    Shape(String),
    /// A parameter is out of its range; the message names the field.
    #[error("parameter {0}")]
    Param(String),
    /// A drift time could not be parsed.
    #[error(transparent)]
    DriftTime(#[from] DriftTimeError),
}
