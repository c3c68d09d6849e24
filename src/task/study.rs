//! The text-classification study behind `aimcsim functional` on a
//! workload with a `task` section: task accuracy of the digital model, the
//! analog model and the analog model with hardware-aware LoRA, per drift
//! time and over independent programmings, beside the timing of the same
//! mapping.
//!
//! Steps, all deterministic for a seed at any thread count:
//!
//! 1. Sentences are tokenised (padding off), looked up in the checkpoint's
//!    embedding tables and run one sentence per sequence (no padding).
//!    The sentence embedding is the mean of the last layer's token outputs,
//!    L2-normalised (the model's own recipe).
//! 2. The task head, a logistic regression, is trained on the digital
//!    (FP32) embeddings of the whole train split and is the same for every
//!    stream; the digital accuracy is its accuracy on the test split.
//! 3. Each trial programs every tile once (its own noise streams) and
//!    drifts it to each drift time; the test split runs through the analog
//!    model without and with LoRA at every drift time in one pass.
//! 4. LoRA, by [`LoraMode`]:
//!    - `Calibrated`: per chip. A fitting pass runs calibration sentences
//!      (the first `calibration_sentences` of the train split) through the
//!      FP32 reference and the trial's analog chip at `calibrate_at_s`;
//!      at each adapted projection, in graph order, the rank-r
//!      reduced-rank regression of the error `Y_digital - Y_analog` on
//!      the projection's analog input `X~` gives A and B
//!      ([`RrrAccumulator`]), applied from then on, so each later
//!      projection sees the corrected inputs. The adapter stays fixed for
//!      all drift times of the trial.
//!    - `Robust`: one adapter for every chip, fitted once by the same pass
//!      over `robust_chips` other chips (programmings independent of the
//!      evaluated trials) at every drift time of the study, their errors
//!      stacked in one regression.
//!    - `Adapter`: a given adapter (e.g. a user's PEFT directory).
//! 5. Metrics per (drift, variant), mean and sample std over trials:
//!    accuracy against the labels; agreement, the fraction of test
//!    sentences whose prediction equals the digital model's (paired, so
//!    it resolves differences the accuracy's ~1-point standard error
//!    hides); the mean cosine similarity of the sentence embeddings with
//!    the digital ones; for LoRA rows, the paired accuracy gain over the
//!    analog model of the same trial and drift.
//! 6. A rank sweep (optional) refits LoRA at each rank and evaluates it at
//!    one drift time; each rank's adapter size and whether its timing run
//!    fits the TCDM are reported.

use super::data::{load_sentiment, Sentence, TaskError};
use super::embed::{cosine, l2_normalize_rows, mean_pool, Batch, EmbeddingTables};
use super::logreg::LogReg;
use super::tokenize::TextTokenizer;
use crate::config::{expand_assets, Architecture, Targets, Workload};
use crate::functional::device::format_drift_time;
use crate::functional::executor::{
    trial_seed, ExecConfig, ExecError, Executor, FitSite, Stream, Tokens,
};
use crate::functional::metrics::mean_std;
use crate::functional::ops::Precision;
use crate::functional::rng;
use crate::functional::rrr::RrrAccumulator;
use crate::functional::weights::{LoraModule, LoraWeights};
use crate::functional::weights_st::SafetensorsWeights;
use crate::graph::Graph;
use crate::mapping::Mapping;
use crate::timing::summary::run_workload;
use crate::timing::TimingOptions;
use serde::Serialize;
use std::time::Instant;

/// Where the LoRA rows' adapter comes from.
#[derive(Debug, Clone)]
pub enum LoraMode {
    /// No LoRA rows.
    None,
    /// Fitted to each trial's chip (see the module header).
    Calibrated,
    /// One adapter fitted over several other chips.
    Robust,
    /// A given adapter.
    Adapter(LoraWeights),
}

impl LoraMode {
    fn name(&self) -> &'static str {
        match self {
            LoraMode::None => "none",
            LoraMode::Calibrated => "calibrated",
            LoraMode::Robust => "robust",
            LoraMode::Adapter(_) => "adapter",
        }
    }
}

/// How to run the study.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Inference times after programming, seconds.
    pub drift_s: Vec<f64>,
    /// Independent programmings of the chip.
    pub trials: usize,
    pub seed: u64,
    pub lora: LoraMode,
    /// The LoRA rank of the fitted adapters (the main rows).
    pub rank: usize,
    /// Ranks of the rank sweep (empty: no sweep).
    pub sweep_ranks: Vec<usize>,
    /// The drift time of the rank sweep, seconds.
    pub sweep_drift_s: f64,
    /// Trials of the rank sweep (`None`: `trials`).
    pub sweep_trials: Option<usize>,
    /// Train sentences the LoRA fit runs (the first ones of the split).
    pub calibration_sentences: usize,
    /// The drift time a chip is calibrated at, seconds.
    pub calibrate_at_s: f64,
    /// Chips of the robust fit.
    pub robust_chips: usize,
    /// The regression's ridge, relative to the mean input power.
    pub ridge: f64,
    /// The task head's L2 penalty.
    pub l2: f64,
    /// Evaluate on the first this many test sentences (all: `None`).
    pub test_sentences: Option<usize>,
    /// The PMCA's number format (FP16 on the hardware).
    pub precision: Precision,
    pub timing: TimingOptions,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            drift_s: crate::functional::device::STUDY_DRIFT_S.to_vec(),
            trials: 10,
            seed: 0,
            lora: LoraMode::Calibrated,
            rank: 8,
            sweep_ranks: Vec::new(),
            sweep_drift_s: crate::functional::device::STUDY_DRIFT_S[5],
            sweep_trials: None,
            calibration_sentences: 1000,
            calibrate_at_s: 0.0,
            robust_chips: 4,
            ridge: 1.0,
            l2: 1e-3,
            test_sentences: None,
            precision: Precision::Fp16,
            timing: TimingOptions::default(),
            progress: false,
        }
    }
}

/// One (drift time, variant) over the trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    pub drift: String,
    pub drift_s: f64,
    /// `digital`, `analog` or `analog+lora`.
    pub variant: String,
    pub trials: usize,
    /// Accuracy on the test split's labels.
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    /// Fraction of test sentences predicted as the digital model does.
    pub agreement_mean: f64,
    pub agreement_std: f64,
    /// Mean cosine similarity of the sentence embeddings with the digital ones.
    pub cosine_mean: f64,
    pub cosine_std: f64,
    /// `analog+lora` rows: accuracy minus the same trial's `analog`
    /// accuracy at the same drift time (paired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gain_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gain_std: Option<f64>,
    /// Latency of one `seq_len` sequence (the workload's timing run):
    /// without LoRA for `digital`/`analog`, with it for `analog+lora`.
    pub total_ns: f64,
}

/// One rank of the rank sweep, at the sweep's drift time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankRow {
    pub rank: usize,
    pub drift: String,
    pub trials: usize,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub agreement_mean: f64,
    pub agreement_std: f64,
    pub gain_mean: f64,
    pub gain_std: f64,
    /// Parameters and FP16 bytes of the whole adapter.
    pub adapter_params: u64,
    pub adapter_bytes: u64,
    /// The timing run at this rank: latency, peak TCDM, whether it fits.
    pub total_ns: f64,
    pub peak_tcdm_bytes: u64,
    pub fits_tcdm: bool,
}

/// The answer of the study.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub workload: String,
    pub architecture: String,
    pub weights: String,
    pub data: String,
    pub trials: usize,
    pub seed: u64,
    pub pmca_precision: String,
    pub train_sentences: usize,
    pub test_sentences: usize,
    pub test_tokens: usize,
    /// The task head on the digital embeddings.
    pub head_l2: f64,
    pub head_train_accuracy: f64,
    pub digital_accuracy: f64,
    /// `none`, `calibrated`, `robust` or `adapter`.
    pub lora: String,
    pub rank: usize,
    pub calibration_sentences: usize,
    pub calibration_tokens: usize,
    pub calibrate_at: String,
    pub robust_chips: usize,
    pub adapted_projections: usize,
    pub adapter_params: u64,
    pub adapter_bytes: u64,
    /// The timing run of the same mapping (seq_len tokens), with LoRA at
    /// `rank` and without.
    pub seq_len: u32,
    pub total_ns: f64,
    pub baseline_ns: f64,
    pub tiles: u32,
    pub peak_tcdm_bytes: u64,
    pub tcdm_capacity_bytes: u64,
    pub fits_tcdm: bool,
    pub rows: Vec<TaskRow>,
    pub rank_sweep: Vec<RankRow>,
    /// Host wall time of one LoRA fit (mean over fits), milliseconds; not
    /// serialised, so reports stay byte-identical.
    #[serde(skip)]
    pub fit_wall_ms: f64,
    /// Host wall time of the whole study, seconds (not serialised).
    #[serde(skip)]
    pub wall_s: f64,
    /// The adapter of the main rows (trial 0's for `calibrated`), for
    /// export; not serialised.
    #[serde(skip)]
    pub adapter: Option<LoraWeights>,
}

/// Why the study cannot run.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Input(String),
}

fn input<T>(msg: impl Into<String>) -> Result<T, StudyError> {
    Err(StudyError::Input(msg.into()))
}

/// The sentences of one split as the graph's input.
struct Encoded {
    batch: Batch,
    labels: Vec<u8>,
}

fn encode(
    tok: &TextTokenizer,
    tables: &EmbeddingTables,
    sentences: &[&Sentence],
) -> Result<Encoded, StudyError> {
    let texts: Vec<&str> = sentences.iter().map(|s| s.text.as_str()).collect();
    let ids = tok.encode_batch(&texts)?;
    Ok(Encoded {
        batch: Batch::new(tables, &ids)?,
        labels: sentences.iter().map(|s| s.label).collect(),
    })
}

/// Sentence embeddings (one L2-normalised row each) of a pass's output.
fn pooled(y: &[f32], width: usize, seqs: &[usize]) -> Result<Vec<f32>, StudyError> {
    let mut e = mean_pool(y, width, seqs)?;
    l2_normalize_rows(&mut e, width)?;
    Ok(e)
}

/// A trial's figures at one drift time: without LoRA, with LoRA.
type TrialAt = (Eval, Option<Eval>);

/// One stream's test-split figures.
#[derive(Debug, Clone, Copy)]
struct Eval {
    accuracy: f64,
    agreement: f64,
    cosine: f64,
}

/// Everything fixed across trials.
struct Setup<'a> {
    exec_cfg: ExecConfig,
    graph: Graph,
    map: Mapping,
    weights: &'a SafetensorsWeights,
    head: LogReg,
    width: usize,
    test: Encoded,
    calib: Encoded,
    digital_pred: Vec<u8>,
    digital_emb: Vec<f32>,
}

impl Setup<'_> {
    fn evaluate(&self, y: &[f32]) -> Result<Eval, StudyError> {
        let e = pooled(y, self.width, &self.test.batch.seqs)?;
        let pred = self.head.predict(&e);
        let n = pred.len().max(1) as f64;
        let right = pred
            .iter()
            .zip(&self.test.labels)
            .filter(|(p, l)| p == l)
            .count();
        let same = pred
            .iter()
            .zip(&self.digital_pred)
            .filter(|(p, d)| p == d)
            .count();
        let mut cos = 0.0;
        for (a, b) in e
            .chunks_exact(self.width)
            .zip(self.digital_emb.chunks_exact(self.width))
        {
            cos += cosine(a, b)?;
        }
        Ok(Eval {
            accuracy: right as f64 / n,
            agreement: same as f64 / n,
            cosine: cos / n,
        })
    }

    /// The test split through `streams` on the chip of trial seed `seed`
    /// with adapter `lora`: each stream's figures.
    fn run_test(
        &self,
        lora: Option<&LoraWeights>,
        streams: &[Stream],
        drift_s: &[f64],
        seed: u64,
    ) -> Result<Vec<Eval>, StudyError> {
        let exec = Executor::new(
            &self.graph,
            &self.map,
            self.weights,
            lora,
            self.exec_cfg.clone(),
        )?;
        let input = Tokens {
            x: &self.test.batch.x,
            seqs: &self.test.batch.seqs,
        };
        exec.run(input, streams, drift_s, seed)?
            .iter()
            .map(|y| self.evaluate(y))
            .collect()
    }

    /// Fits a rank-`rank` adapter by one fitting pass over the calibration
    /// sentences: the reference and the analog `streams` (LoRA on).
    fn fit(
        &self,
        rank: usize,
        ridge: f64,
        streams: &[Stream],
        drift_s: &[f64],
        seed: u64,
    ) -> Result<LoraWeights, StudyError> {
        let exec = Executor::new(
            &self.graph,
            &self.map,
            self.weights,
            None,
            self.exec_cfg.clone(),
        )?;
        let mut all = vec![Stream::Reference { lora: false }];
        all.extend_from_slice(streams);
        let rows = self.calib.batch.rows();
        let mut hook = |site: &FitSite<'_>| -> Result<Option<LoraModule>, ExecError> {
            let (m, k) = (site.in_features, site.out_features);
            if rank > m.min(k) {
                return Ok(None);
            }
            let mut acc = RrrAccumulator::new(m, k)
                .map_err(|err| ExecError::Input(format!("{}: {err}", site.node.name)))?;
            let yd = &site.y[0];
            let mut e = vec![0.0f32; yd.len()];
            for s in 1..all.len() {
                e.iter_mut()
                    .zip(yd.iter().zip(&site.y[s]))
                    .for_each(|(e, (d, a))| *e = d - a);
                acc.add(&site.x[s], &e, rows)
                    .map_err(|err| ExecError::Input(format!("{}: {err}", site.node.name)))?;
            }
            let lr = acc
                .solve(rank, ridge)
                .map_err(|err| ExecError::Input(format!("{}: {err}", site.node.name)))?;
            Ok(Some(LoraModule {
                in_features: m,
                out_features: k,
                rank,
                scaling: 1.0,
                a: lr.a,
                b: lr.b,
            }))
        };
        let input = Tokens {
            x: &self.calib.batch.x,
            seqs: &self.calib.batch.seqs,
        };
        let (mut fitted, _) = exec.fit_pass(input, &all, drift_s, seed, &mut hook)?;
        fitted.source = "hardware-aware LoRA (reduced-rank regression)".into();
        Ok(fitted)
    }
}

fn adapter_size(l: &LoraWeights) -> (u64, u64) {
    let params: u64 = l
        .keys()
        .iter()
        .filter_map(|(b, layer, op)| l.get(*b, *layer, op))
        .map(|m| (m.rank * (m.in_features + m.out_features)) as u64)
        .sum();
    (params, 2 * params)
}

fn stats(v: &[f64]) -> (f64, f64) {
    let m = mean_std(v);
    (m.mean, m.std)
}

/// Runs the study on `w`, whose `weights` and `task` sections name the
/// checkpoint, tokenizer and data.
pub fn task_study(
    arch: &Architecture,
    w: &Workload,
    opts: &TaskOptions,
) -> Result<TaskReport, StudyError> {
    let started = Instant::now();
    let say = |msg: String| {
        if opts.progress {
            eprintln!("[{:6.1} s] {msg}", started.elapsed().as_secs_f64());
        }
    };
    let Some(task) = &w.task else {
        return input("the workload has no `task` section");
    };
    if w.weights.is_none() {
        return input("the workload's task needs a `weights` section (the checkpoint)");
    }
    if opts.trials == 0 || opts.sweep_trials == Some(0) {
        return input("trials: must be at least 1");
    }
    if opts.drift_s.is_empty() {
        return input("drift: at least one drift time");
    }
    for t in opts
        .drift_s
        .iter()
        .chain([&opts.calibrate_at_s, &opts.sweep_drift_s])
    {
        if !(t.is_finite() && *t >= 0.0) {
            return input(format!("drift time {t} s: must be finite and >= 0"));
        }
    }
    let fits = !matches!(opts.lora, LoraMode::None | LoraMode::Adapter(_));
    if fits || !opts.sweep_ranks.is_empty() {
        if let Some(r) = std::iter::once(&opts.rank)
            .chain(&opts.sweep_ranks)
            .find(|&&r| r == 0)
        {
            return input(format!("rank {r}: a fitted adapter needs rank >= 1"));
        }
        if opts.calibration_sentences == 0 {
            return input("calibration sentences: at least 1");
        }
        if matches!(opts.lora, LoraMode::Robust) && opts.robust_chips == 0 {
            return input("robust chips: at least 1");
        }
        if !(opts.ridge.is_finite() && opts.ridge >= 0.0) {
            return input(format!("ridge {}: must be finite and >= 0", opts.ridge));
        }
    }
    if !opts.sweep_ranks.is_empty() && matches!(opts.lora, LoraMode::None | LoraMode::Adapter(_)) {
        return input("a rank sweep fits adapters: use LoRA mode `calibrated` or `robust`");
    }

    // The graph carries a LoRA branch on every target projection.
    let mut gw = w.clone();
    if let LoraMode::Adapter(l) = &opts.lora {
        gw = l.workload(w);
    } else if gw.lora.targets == Targets::None {
        gw.lora.targets = Targets::All;
    }
    if fits {
        gw.lora.rank = opts.rank as u32;
    }
    gw.validate()
        .map_err(|e| StudyError::Input(format!("workload: {e}")))?;

    let weights = SafetensorsWeights::open(&gw).map_err(ExecError::from)?;
    let file = weights.file().to_path_buf();
    let tables = EmbeddingTables::open(&file)?;
    let width = gw.input_width as usize;
    if tables.hidden() != width {
        return input(format!(
            "{}: the embeddings are {} wide but the workload's input_width is {width}",
            file.display(),
            tables.hidden()
        ));
    }
    let tok = TextTokenizer::open(&expand_assets(&task.tokenizer))?;
    let data_dir = expand_assets(&task.data);
    let data = load_sentiment(&data_dir)?;
    let train: Vec<&Sentence> = data.train();
    let mut test_s: Vec<&Sentence> = data.test();
    if let Some(n) = opts.test_sentences {
        if n == 0 {
            return input("test sentences: at least 1");
        }
        test_s.truncate(n);
    }
    let ncal = opts.calibration_sentences.min(train.len());
    say(format!(
        "tokenising {} train and {} test sentences",
        train.len(),
        test_s.len()
    ));
    let train_enc = encode(&tok, &tables, &train)?;
    let test = encode(&tok, &tables, &test_s)?;
    let calib = encode(&tok, &tables, &train[..ncal])?;

    let graph = Graph::build(&gw);
    let map = Mapping::new(&graph, arch, gw.tokens_per_group).map_err(ExecError::from)?;
    let exec_cfg = ExecConfig {
        precision: opts.precision,
        ..ExecConfig::from_arch(arch)
    };

    // The digital model and the task head.
    say("digital forward of the train split".into());
    let digital = Executor::new(&graph, &map, &weights, None, exec_cfg.clone())?;
    let reference = [Stream::Reference { lora: false }];
    let run1 = |e: &Encoded| -> Result<Vec<f32>, StudyError> {
        let y = digital.run(
            Tokens {
                x: &e.batch.x,
                seqs: &e.batch.seqs,
            },
            &reference,
            &[],
            0,
        )?;
        pooled(&y[0], width, &e.batch.seqs)
    };
    let train_emb = run1(&train_enc)?;
    let head = LogReg::fit(&train_emb, &train_enc.labels, width, opts.l2)
        .map_err(|e| StudyError::Input(format!("task head: {e}")))?;
    let train_pred = head.predict(&train_emb);
    let acc = |p: &[u8], l: &[u8]| {
        p.iter().zip(l).filter(|(a, b)| a == b).count() as f64 / p.len().max(1) as f64
    };
    let head_train_accuracy = acc(&train_pred, &train_enc.labels);
    say("digital forward of the test split".into());
    let digital_emb = run1(&test)?;
    let digital_pred = head.predict(&digital_emb);
    let digital_accuracy = acc(&digital_pred, &test.labels);
    say(format!(
        "digital accuracy {:.2} % (train {:.2} %)",
        100.0 * digital_accuracy,
        100.0 * head_train_accuracy
    ));
    let setup = Setup {
        exec_cfg,
        graph,
        map,
        weights: &weights,
        head,
        width,
        test,
        calib,
        digital_pred,
        digital_emb,
    };

    // Timing of the same mapping.
    let timing_of = |rank: Option<usize>| {
        let mut tw = gw.clone();
        if let Some(r) = rank {
            tw.lora.rank = r as u32;
        }
        run_workload(arch, &tw, opts.timing).map_err(ExecError::from)
    };
    let timing = timing_of(None)?;

    let robust_seed = rng::stream_seed(opts.seed, &[rng::tag::CHIP, u64::MAX]);
    let robust_streams = |drifts: usize| -> Vec<Stream> {
        (0..opts.robust_chips as u32)
            .flat_map(|chip| {
                (0..drifts).map(move |drift| Stream::Analog {
                    lora: true,
                    drift,
                    chip,
                })
            })
            .collect()
    };
    let one_chip = [Stream::Analog {
        lora: true,
        drift: 0,
        chip: 0,
    }];
    let mut fit_ms: Vec<f64> = Vec::new();
    let mut fit_timed = |f: &mut dyn FnMut() -> Result<LoraWeights, StudyError>| {
        let t0 = Instant::now();
        let r = f();
        fit_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        r
    };

    // A fixed adapter for every trial (robust or given).
    let fixed: Option<LoraWeights> = match &opts.lora {
        LoraMode::Robust => {
            say(format!(
                "robust fit over {} chips x {} drift times",
                opts.robust_chips,
                opts.drift_s.len()
            ));
            Some(fit_timed(&mut || {
                setup.fit(
                    opts.rank,
                    opts.ridge,
                    &robust_streams(opts.drift_s.len()),
                    &opts.drift_s,
                    robust_seed,
                )
            })?)
        }
        LoraMode::Adapter(l) => Some(l.clone()),
        _ => None,
    };

    // The main rows: per trial, per drift, analog and (with LoRA) analog+lora.
    let with_lora = !matches!(opts.lora, LoraMode::None);
    let nd = opts.drift_s.len();
    let mut per_trial: Vec<Vec<TrialAt>> = Vec::with_capacity(opts.trials);
    let mut first_adapter = fixed.clone();
    for k in 0..opts.trials {
        let ts = trial_seed(opts.seed, k as u64);
        let lora = match (&opts.lora, &fixed) {
            (LoraMode::Calibrated, _) => Some(fit_timed(&mut || {
                setup.fit(opts.rank, opts.ridge, &one_chip, &[opts.calibrate_at_s], ts)
            })?),
            (_, Some(f)) => Some(f.clone()),
            _ => None,
        };
        if k == 0 && first_adapter.is_none() {
            first_adapter = lora.clone();
        }
        let mut streams = Vec::new();
        for d in 0..nd {
            streams.push(Stream::Analog {
                lora: false,
                drift: d,
                chip: 0,
            });
            if with_lora {
                streams.push(Stream::Analog {
                    lora: true,
                    drift: d,
                    chip: 0,
                });
            }
        }
        let ev = setup.run_test(lora.as_ref(), &streams, &opts.drift_s, ts)?;
        let per = if with_lora { 2 } else { 1 };
        let row: Vec<TrialAt> = ev
            .chunks_exact(per)
            .map(|c| (c[0], c.get(1).copied()))
            .collect();
        say(format!(
            "trial {}/{}: analog accuracy {}",
            k + 1,
            opts.trials,
            row.iter()
                .map(|(a, l)| match l {
                    Some(l) => format!("{:.1}/{:.1}", 100.0 * a.accuracy, 100.0 * l.accuracy),
                    None => format!("{:.1}", 100.0 * a.accuracy),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ));
        per_trial.push(row);
    }

    let mut rows = Vec::new();
    for (d, &t) in opts.drift_s.iter().enumerate() {
        let drift = format_drift_time(t);
        if d == 0 {
            rows.push(TaskRow {
                drift: "-".into(),
                drift_s: 0.0,
                variant: "digital".into(),
                trials: 1,
                accuracy_mean: digital_accuracy,
                accuracy_std: 0.0,
                agreement_mean: 1.0,
                agreement_std: 0.0,
                cosine_mean: 1.0,
                cosine_std: 0.0,
                gain_mean: None,
                gain_std: None,
                total_ns: timing.baseline_ns,
            });
        }
        let col = |f: &dyn Fn(&TrialAt) -> f64| -> (f64, f64) {
            stats(&per_trial.iter().map(|r| f(&r[d])).collect::<Vec<_>>())
        };
        let (am, asd) = col(&|r| r.0.accuracy);
        let (gm, gsd) = col(&|r| r.0.agreement);
        let (cm, csd) = col(&|r| r.0.cosine);
        rows.push(TaskRow {
            drift: drift.clone(),
            drift_s: t,
            variant: "analog".into(),
            trials: opts.trials,
            accuracy_mean: am,
            accuracy_std: asd,
            agreement_mean: gm,
            agreement_std: gsd,
            cosine_mean: cm,
            cosine_std: csd,
            gain_mean: None,
            gain_std: None,
            total_ns: timing.baseline_ns,
        });
        if with_lora {
            let lo = |r: &TrialAt| r.1.expect("LoRA rows evaluated");
            let (am, asd) = col(&|r| lo(r).accuracy);
            let (gm, gsd) = col(&|r| lo(r).agreement);
            let (cm, csd) = col(&|r| lo(r).cosine);
            let (dm, dsd) = col(&|r| lo(r).accuracy - r.0.accuracy);
            rows.push(TaskRow {
                drift,
                drift_s: t,
                variant: "analog+lora".into(),
                trials: opts.trials,
                accuracy_mean: am,
                accuracy_std: asd,
                agreement_mean: gm,
                agreement_std: gsd,
                cosine_mean: cm,
                cosine_std: csd,
                gain_mean: Some(dm),
                gain_std: Some(dsd),
                total_ns: timing.total_ns,
            });
        }
    }

    // The rank sweep at one drift time. The analog rows without LoRA, and
    // the main rank's rows, come from the main study when it ran that drift
    // time and trial (the same seeds give the same chips and adapters).
    let main_d = opts.drift_s.iter().position(|&t| t == opts.sweep_drift_s);
    let sweep_trials = opts.sweep_trials.unwrap_or(opts.trials);
    let main_size = first_adapter.as_ref().map_or((0, 0), adapter_size);
    let mut rank_sweep = Vec::new();
    for &rank in &opts.sweep_ranks {
        say(format!(
            "rank sweep: rank {rank} at {}",
            format_drift_time(opts.sweep_drift_s)
        ));
        let reuse_rank = rank == opts.rank && fits;
        let fixed_r = match opts.lora {
            LoraMode::Robust if !reuse_rank => Some(fit_timed(&mut || {
                setup.fit(
                    rank,
                    opts.ridge,
                    &robust_streams(opts.drift_s.len()),
                    &opts.drift_s,
                    robust_seed,
                )
            })?),
            LoraMode::Robust => fixed.clone(),
            _ => None,
        };
        let mut evals = Vec::with_capacity(sweep_trials);
        let mut size = (0, 0);
        for k in 0..sweep_trials {
            let from_main = main_d.and_then(|d| per_trial.get(k).map(|t| t[d]));
            if let (true, Some((a, Some(l)))) = (reuse_rank, from_main) {
                evals.push((a, l));
                size = main_size;
                continue;
            }
            let ts = trial_seed(opts.seed, k as u64);
            let lora = match &fixed_r {
                Some(f) => f.clone(),
                None => fit_timed(&mut || {
                    setup.fit(rank, opts.ridge, &one_chip, &[opts.calibrate_at_s], ts)
                })?,
            };
            size = adapter_size(&lora);
            let mut streams = vec![Stream::Analog {
                lora: true,
                drift: 0,
                chip: 0,
            }];
            if from_main.is_none() {
                streams.push(Stream::Analog {
                    lora: false,
                    drift: 0,
                    chip: 0,
                });
            }
            let ev = setup.run_test(Some(&lora), &streams, &[opts.sweep_drift_s], ts)?;
            let with = ev[0];
            let without = match from_main {
                Some((a, _)) => a,
                None => ev[1],
            };
            evals.push((without, with));
        }
        let t = timing_of(Some(rank))?;
        let col =
            |f: &dyn Fn(&(Eval, Eval)) -> f64| stats(&evals.iter().map(f).collect::<Vec<_>>());
        let (am, asd) = col(&|r| r.1.accuracy);
        let (gm, gsd) = col(&|r| r.1.agreement);
        let (dm, dsd) = col(&|r| r.1.accuracy - r.0.accuracy);
        rank_sweep.push(RankRow {
            rank,
            drift: format_drift_time(opts.sweep_drift_s),
            trials: sweep_trials,
            accuracy_mean: am,
            accuracy_std: asd,
            agreement_mean: gm,
            agreement_std: gsd,
            gain_mean: dm,
            gain_std: dsd,
            adapter_params: size.0,
            adapter_bytes: size.1,
            total_ns: t.total_ns,
            peak_tcdm_bytes: t.peak_tcdm_bytes,
            fits_tcdm: t.fits_tcdm,
        });
    }

    let (adapter_params, adapter_bytes) = main_size;
    let fit_wall_ms = if fit_ms.is_empty() {
        0.0
    } else {
        fit_ms.iter().sum::<f64>() / fit_ms.len() as f64
    };
    Ok(TaskReport {
        workload: w.name.clone(),
        architecture: arch.name.clone(),
        weights: crate::functional::weights::WeightSource::describe(&weights),
        data: data_dir.display().to_string(),
        trials: opts.trials,
        seed: opts.seed,
        pmca_precision: opts.precision.name().into(),
        train_sentences: train.len(),
        test_sentences: test_s.len(),
        test_tokens: setup.test.batch.rows(),
        head_l2: opts.l2,
        head_train_accuracy,
        digital_accuracy,
        lora: opts.lora.name().into(),
        rank: if fits {
            opts.rank
        } else {
            gw.lora.rank as usize
        },
        calibration_sentences: if fits { ncal } else { 0 },
        calibration_tokens: if fits { setup.calib.batch.rows() } else { 0 },
        calibrate_at: format_drift_time(opts.calibrate_at_s),
        robust_chips: if matches!(opts.lora, LoraMode::Robust) {
            opts.robust_chips
        } else {
            0
        },
        adapted_projections: first_adapter.as_ref().map_or(0, |l| l.len()),
        adapter_params,
        adapter_bytes,
        seq_len: gw.seq_len,
        total_ns: timing.total_ns,
        baseline_ns: timing.baseline_ns,
        tiles: timing.tiles,
        peak_tcdm_bytes: timing.peak_tcdm_bytes,
        tcdm_capacity_bytes: timing.tcdm_capacity_bytes,
        fits_tcdm: timing.fits_tcdm,
        rows,
        rank_sweep,
        fit_wall_ms,
        wall_s: started.elapsed().as_secs_f64(),
        adapter: first_adapter,
    })
}
