//! The accuracy study behind `aimcsim functional`: the workload's mapped
//! graph executed numerically under PCM noise and drift, with and without
//! LoRA, against the digital FP32 reference, next to the timing run's
//! latency, tiles and peak TCDM.
//!
//! - Weights: the checkpoint the workload's `weights` section names
//!   ([`SafetensorsWeights`]), else [`RandomWeights`] of the study's seed;
//!   or any [`WeightSource`] with [`functional_study_with`]. The report's
//!   `weights` says which.
//! - Inputs: `seq_len x input_width` samples of N(0, 1) from the seed.
//! - Variants: `analog` (LoRA off: the graph without LoRA nodes) and, only
//!   with an adapter, `analog+lora` (its modules on the projections they
//!   adapt). Each is compared with the FP32 reference of the same variant.
//! - Trials: independent programmings of every tile (their own streams),
//!   run in parallel; each tile is programmed once per trial and drifted to
//!   every drift time in turn. Rows give the mean and the sample standard
//!   deviation over trials.
//! - Timing: one `run_workload` of the same workload and architecture. With
//!   an adapter, the workload's LoRA placement and rank are taken from the
//!   adapter (the projections it adapts, its largest rank) for both the
//!   numeric graph and the timing run.

use super::device::format_drift_time;
use super::executor::{graph_input, trial_seed, ExecConfig, ExecError, Executor, TrialMetrics};
use super::metrics::MetricStats;
use super::ops::Precision;
use super::weights::{LoraWeights, RandomWeights, WeightSource};
use super::weights_st::SafetensorsWeights;
use crate::adapter::{Adapter, Matched};
use crate::config::{Architecture, Targets, Workload};
use crate::graph::Graph;
use crate::mapping::Mapping;
use crate::timing::summary::run_workload;
use crate::timing::TimingOptions;
use rayon::prelude::*;
use serde::Serialize;

/// How to run the study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyOptions {
    /// Inference times after programming, seconds.
    pub drift_s: Vec<f64>,
    /// Independent programmings of the tiles.
    pub trials: usize,
    /// Seeds weights, inputs and every noise stream.
    pub seed: u64,
    /// The PMCA's number format (FP16 on the hardware).
    pub precision: Precision,
    pub timing: TimingOptions,
}

impl Default for StudyOptions {
    fn default() -> Self {
        StudyOptions {
            drift_s: super::device::STUDY_DRIFT_S.to_vec(),
            trials: 10,
            seed: 0,
            precision: Precision::Fp16,
            timing: TimingOptions::default(),
        }
    }
}

/// One block instance's accuracy over the trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerAccuracy {
    /// `embedding`, `layer.N` or `head`.
    pub layer: String,
    pub rel_err_mean: f64,
    pub rel_err_std: f64,
    pub cosine_mean: f64,
    pub cosine_std: f64,
    pub snr_db_mean: f64,
    pub snr_db_std: f64,
}

/// One (drift time, variant): the end-to-end accuracy (the graph's final
/// output), per-layer accuracy and the timing of the same configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionalRow {
    /// The drift time as written (`1d`).
    pub drift: String,
    pub drift_s: f64,
    /// `analog` (LoRA off) or `analog+lora`.
    pub variant: String,
    pub trials: usize,
    /// ||y - y_ref|| / ||y_ref|| of the final output.
    pub rel_err_mean: f64,
    pub rel_err_std: f64,
    pub cosine_mean: f64,
    pub cosine_std: f64,
    /// 20 log10(||y_ref|| / ||y - y_ref||).
    pub snr_db_mean: f64,
    pub snr_db_std: f64,
    /// With a task head: the fraction of tokens whose top head output is
    /// the FP32 reference's (prediction agreement; accuracy against labels
    /// needs a labelled data set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_std: Option<f64>,
    /// Latency of the whole sequence: the timing run without LoRA for
    /// `analog`, with LoRA for `analog+lora`.
    pub total_ns: f64,
    pub tiles: u32,
    /// The timing run's peak TCDM occupancy of any pair (the run with
    /// LoRA, as `aimcsim run` reports it; the same figure on both rows).
    pub peak_tcdm_bytes: u64,
    /// Each block instance's output, in execution order.
    pub layers: Vec<LayerAccuracy>,
}

/// The answer of `aimcsim functional`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionalReport {
    pub workload: String,
    pub architecture: String,
    pub seq_len: u32,
    /// Token group size t.
    pub tokens: u32,
    pub trials: usize,
    pub seed: u64,
    /// Number format of the PMCA operations in the analog runs.
    pub pmca_precision: String,
    /// Where the static weights came from.
    pub weights: String,
    /// The adapter directory, if any.
    pub adapter: Option<String>,
    /// Projection instances the adapter adapts.
    pub adapted_projections: usize,
    /// The timing run: with LoRA (the adapter's, else the description's)
    /// and without.
    pub total_ns: f64,
    pub baseline_ns: f64,
    pub tiles: u32,
    pub peak_tcdm_bytes: u64,
    pub rows: Vec<FunctionalRow>,
}

/// The study with the FP16 PMCA and the weights of the file `w.weights`
/// names (errors name the file and tensor), else random weights of `seed`;
/// the adapter (loaded and matched to `w`) adds the `analog+lora` rows.
pub fn functional_study(
    arch: &Architecture,
    w: &Workload,
    adapter: Option<(Adapter, Vec<Matched>)>,
    drift_s: &[f64],
    trials: usize,
    seed: u64,
) -> Result<FunctionalReport, ExecError> {
    let lora = match &adapter {
        Some((a, m)) => Some(LoraWeights::from_peft(a, m)?),
        None => None,
    };
    let opts = StudyOptions {
        drift_s: drift_s.to_vec(),
        trials,
        seed,
        ..StudyOptions::default()
    };
    let file = match &w.weights {
        Some(_) => Some(SafetensorsWeights::open(w)?),
        None => None,
    };
    let random = RandomWeights::new(seed);
    let weights: &dyn WeightSource = match &file {
        Some(f) => f,
        None => &random,
    };
    functional_study_with(arch, w, lora.as_ref(), weights, &opts)
}

/// The study with explicit LoRA matrices, weight source and options (the
/// workload's `weights` section is not read: `weights` is used as given).
pub fn functional_study_with(
    arch: &Architecture,
    w: &Workload,
    lora: Option<&LoraWeights>,
    weights: &dyn WeightSource,
    opts: &StudyOptions,
) -> Result<FunctionalReport, ExecError> {
    if opts.trials == 0 {
        return Err(ExecError::Input("trials: must be at least 1".into()));
    }
    if opts.drift_s.is_empty() {
        return Err(ExecError::Input("drift: at least one drift time".into()));
    }
    if let Some(t) = opts.drift_s.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
        return Err(ExecError::Input(format!("drift: {t} s is not a time >= 0")));
    }
    w.validate()
        .map_err(|e| ExecError::Input(format!("workload: {e}")))?;
    let lora = lora.filter(|l| !l.is_empty());
    // The numeric graph: the adapter's placement, or no LoRA at all.
    let (numeric_w, timing_w) = match lora {
        Some(l) => {
            let a = l.workload(w);
            (a.clone(), a)
        }
        None => {
            let mut base = w.clone();
            base.lora.targets = Targets::None;
            (base, w.clone())
        }
    };
    numeric_w
        .validate()
        .map_err(|e| ExecError::Input(format!("workload with the adapter: {e}")))?;
    let graph = Graph::build(&numeric_w);
    let map = Mapping::new(&graph, arch, numeric_w.tokens_per_group)?;
    let timing = run_workload(arch, &timing_w, opts.timing)?;
    let cfg = ExecConfig {
        precision: opts.precision,
        ..ExecConfig::from_arch(arch)
    };
    let mut exec = Executor::new(&graph, &map, weights, lora, cfg)?;
    let x = graph_input(
        opts.seed,
        graph.seq_len as usize,
        graph.input_width as usize,
    );
    if weights.unit_rms_nonorm() {
        exec.calibrate_nonorm(&x)?;
    }
    let variants: Vec<bool> = if lora.is_some() {
        vec![false, true]
    } else {
        vec![false]
    };
    let per_trial: Vec<TrialMetrics> = (0..opts.trials as u64)
        .into_par_iter()
        .map(|k| exec.trial(&x, &opts.drift_s, &variants, trial_seed(opts.seed, k)))
        .collect::<Result<_, _>>()?;

    let first = &per_trial[0];
    let mut rows = Vec::with_capacity(first.streams.len());
    for (i, stream) in first.streams.iter().enumerate() {
        let super::executor::Stream::Analog { lora, drift, .. } = *stream else {
            unreachable!("trial metrics hold analog streams")
        };
        let stats = |b: usize| {
            MetricStats::of(&per_trial.iter().map(|t| t.blocks[i][b]).collect::<Vec<_>>())
        };
        let layers: Vec<LayerAccuracy> = exec
            .blocks()
            .iter()
            .enumerate()
            .map(|(b, name)| {
                let s = stats(b);
                LayerAccuracy {
                    layer: name.clone(),
                    rel_err_mean: s.rel_err.mean,
                    rel_err_std: s.rel_err.std,
                    cosine_mean: s.cosine.mean,
                    cosine_std: s.cosine.std,
                    snr_db_mean: s.snr_db.mean,
                    snr_db_std: s.snr_db.std,
                }
            })
            .collect();
        let end = stats(exec.blocks().len() - 1);
        let agreement = (!w.head.is_empty()).then(|| {
            let v: Vec<f64> = per_trial.iter().map(|t| t.agreement[i]).collect();
            let m = super::metrics::mean_std(&v);
            (m.mean, m.std)
        });
        let t = opts.drift_s[drift];
        rows.push(FunctionalRow {
            drift: format_drift_time(t),
            drift_s: t,
            variant: if lora { "analog+lora" } else { "analog" }.into(),
            trials: opts.trials,
            rel_err_mean: end.rel_err.mean,
            rel_err_std: end.rel_err.std,
            cosine_mean: end.cosine.mean,
            cosine_std: end.cosine.std,
            snr_db_mean: end.snr_db.mean,
            snr_db_std: end.snr_db.std,
            agreement_mean: agreement.map(|a| a.0),
            agreement_std: agreement.map(|a| a.1),
            total_ns: if lora {
                timing.total_ns
            } else {
                timing.baseline_ns
            },
            tiles: timing.tiles,
            peak_tcdm_bytes: timing.peak_tcdm_bytes,
            layers,
        });
    }
    Ok(FunctionalReport {
        workload: w.name.clone(),
        architecture: arch.name.clone(),
        seq_len: w.seq_len,
        tokens: w.tokens_per_group,
        trials: opts.trials,
        seed: opts.seed,
        pmca_precision: opts.precision.name().into(),
        weights: weights.describe(),
        adapter: lora.map(|l| l.source.clone()),
        adapted_projections: lora.map_or(0, |l| l.len()),
        total_ns: timing.total_ns,
        baseline_ns: timing.baseline_ns,
        tiles: timing.tiles,
        peak_tcdm_bytes: timing.peak_tcdm_bytes,
        rows,
    })
}
