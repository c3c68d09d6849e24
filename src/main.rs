//! The `aimcsim` command line: parses arguments, loads the descriptions,
//! calls the library and prints or writes the report. Exit codes: 0
//! success, 1 a negative verdict, 2 bad input or usage.

use aimcsim::config::{self, Architecture, ConfigError, Targets, Workload};
use aimcsim::hw::redmule;
use aimcsim::report::{self, Format, Table};
use aimcsim::sweep::{self, SweepSpec, SweepTarget, Tokens};
use aimcsim::timing::summary::{self, LayerQuery, LayerReport, RunReport};
use aimcsim::timing::TimingOptions;
use aimcsim::units::{parse_time, Ps};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DEFAULT_ARCH: &str = "architectures/paper.ron";
const DEFAULT_WORKLOAD: &str = "workloads/mobilebert.ron";

#[derive(Parser)]
#[command(
    name = "aimcsim",
    version,
    about = "Cycle-level simulator of hybrid AIMC + PMCA accelerators running transformers with LoRA",
    long_about = "Cycle-level simulator of hybrid analog in-memory computing (AIMC) accelerators \
running transformer inference with LoRA adapters. The Snitch cores are modelled by kernel cost \
models (cycles per element), not by executing instructions; RedMule, the DMA, the TCDM banks and \
the AIMC tiles are modelled cycle by cycle at their state changes."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Architecture description (RON). Default: architectures/paper.ron, or
    /// the built-in reference architecture when that file is absent.
    #[arg(long, global = true)]
    arch: Option<PathBuf>,
    /// Workload description (RON). Default: workloads/mobilebert.ron, or the
    /// built-in MobileBERT when that file is absent.
    #[arg(long, global = true)]
    workload: Option<PathBuf>,
    /// Override one description field: arch.path.to.field=value or
    /// workload.path.to.field=value (value written as in RON). Repeatable.
    #[arg(long = "set", global = true, value_name = "FIELD=VALUE")]
    sets: Vec<String>,
    /// What goes to standard output (or to -o FILE).
    #[arg(long, global = true, value_enum)]
    format: Option<Format>,
    /// Write to this file instead of standard output; the format follows the
    /// extension (.json, .csv, .txt) unless --format is given.
    #[arg(short = 'o', long = "output", global = true)]
    output: Option<PathBuf>,
    /// Treat every TCDM access as conflict-free (faster, less exact).
    #[arg(long, global = true)]
    no_tcdm_contention: bool,
}

#[derive(Subcommand)]
enum Command {
    /// One linear layer with its LoRA branch on one tile + PMCA pair.
    Layer {
        /// Input features m (crossbar rows used).
        #[arg(long = "in")]
        in_features: u32,
        /// Output features n (crossbar columns used).
        #[arg(long = "out")]
        out_features: u32,
        /// LoRA rank r (0: no adapter).
        #[arg(long, default_value_t = 8)]
        rank: u32,
        /// Tokens per group t, or `auto` for the t with the lowest total
        /// latency.
        #[arg(long, default_value = "8")]
        tokens: String,
        /// AIMC integration time (e.g. 256ns); default from the architecture.
        #[arg(long)]
        integration_time: Option<String>,
        /// Sequence length L.
        #[arg(long, default_value_t = 320)]
        seq_len: u32,
        /// Write the timeline (with LoRA) as a Chrome trace (Perfetto).
        #[arg(long, value_name = "FILE.json")]
        trace: Option<PathBuf>,
    },
    /// The whole workload, with and without LoRA.
    Run {
        /// Tokens per group t (default: the workload's), or `auto` for the t
        /// with the lowest total latency (one t for the whole model).
        #[arg(long)]
        tokens: Option<String>,
        /// LoRA rank (default: the workload's).
        #[arg(long)]
        rank: Option<u32>,
        /// LoRA placement: all, qkv, ffn, none, or projection names joined by '+'.
        #[arg(long)]
        targets: Option<String>,
        /// AIMC integration time (e.g. 256ns); default from the architecture.
        #[arg(long)]
        integration_time: Option<String>,
        /// Write the timeline (with LoRA) as a Chrome trace (Perfetto).
        #[arg(long, value_name = "FILE.json")]
        trace: Option<PathBuf>,
    },
    /// Every combination of the listed values, in parallel, one row each.
    /// Without --in/--out: the workload. --set values separated by commas
    /// are axes too (arch.aimc.dac_bits=6,8).
    Sweep {
        /// Sweep one linear layer with this many inputs (with --out).
        #[arg(long = "in")]
        in_features: Option<u32>,
        /// Sweep one linear layer with this many outputs (with --in).
        #[arg(long = "out")]
        out_features: Option<u32>,
        /// Sequence length of a layer sweep.
        #[arg(long, default_value_t = 320)]
        seq_len: u32,
        /// Integration times, e.g. 128ns,256ns,512ns.
        #[arg(long, value_delimiter = ',')]
        integration_time: Vec<String>,
        /// Token group sizes, e.g. 8,16,32,64,128 (or auto).
        #[arg(long, value_delimiter = ',')]
        tokens: Vec<String>,
        /// LoRA ranks, e.g. 1,2,4,8,16.
        #[arg(long, value_delimiter = ',')]
        rank: Vec<u32>,
        /// LoRA placements (workload sweeps), e.g. all,qkv,ffn.
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Continue FILE.partial of the same sweep, skipping its rows.
        #[arg(long)]
        resume: bool,
    },
    /// Does the adapter fit on-chip memory? Exit 0 when it does, 1 when not.
    Fit {
        /// PEFT adapter directories (adapter_config.json +
        /// adapter_model.safetensors), one per task held at once; without
        /// any, the workload's own LoRA description.
        #[arg(long = "adapter", value_name = "DIR")]
        adapters: Vec<PathBuf>,
        /// LoRA rank (without --adapter).
        #[arg(long)]
        rank: Option<u32>,
        /// LoRA placement (without --adapter): all, qkv, ffn, none, or names joined by '+'.
        #[arg(long)]
        targets: Option<String>,
        /// Tokens per group t (default: the workload's), or auto.
        #[arg(long)]
        tokens: Option<String>,
        /// Task adapters held at once (without --adapter; with it, one per DIR).
        #[arg(long, default_value_t = 1)]
        tasks: u32,
    },
    /// Characterise one analog tile's error against drift time (functional
    /// model of the architecture's `analog` section).
    Device {
        /// Rows (inputs) of the random weight matrix.
        #[arg(long, default_value_t = 512)]
        rows: usize,
        /// Columns (outputs) of the random weight matrix.
        #[arg(long, default_value_t = 512)]
        cols: usize,
        /// Standard deviation of the random weights.
        #[arg(long, default_value_t = 0.02)]
        weight_std: f64,
        /// Tokens in the input batch.
        #[arg(long, default_value_t = 320)]
        tokens: usize,
        /// Inference times after programming: 0s, 1h, 1d, 1w, 1mo (30 d), 1y (365 d), 10y, or seconds (3600s).
        #[arg(long, default_value = "0s,1h,1d,1w,1mo,1y,10y")]
        drift: String,
        /// Independent programmings of the tile.
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// Seed of all random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Accuracy of the workload under PCM noise and drift, with and without
    /// LoRA, next to the latency, tiles and TCDM of the same mapping.
    Functional {
        /// A PEFT adapter directory for the "analog+lora" rows (without one,
        /// those rows are left out).
        #[arg(long = "adapter", value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// Inference times after programming.
        #[arg(long, default_value = "0s,1h,1d,1w,1mo,1y,10y")]
        drift: String,
        /// Independent programmings of the chip.
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// Seed of weights, inputs and noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Regenerate the reports folder: sweeps, fit table, plots, README.
    Report {
        /// Also run the MiniLM sentiment study first (workloads/minilm_l6.ron,
        /// 10 trials, rank sweep 1,2,4,8,16; needs scripts/fetch-assets.sh,
        /// about 25 min on 2 cores) and write its JSON, CSV and figures.
        /// Without it, the README's MiniLM section is rebuilt from the
        /// folder's minilm_sentiment.json.
        #[arg(long)]
        task: bool,
        /// Programmings of the --task study (and of its rank sweep), for a
        /// quicker run [default: 10].
        #[arg(long, value_name = "N", requires = "task")]
        task_trials: Option<usize>,
    },
    /// One hardware unit in isolation, to hold the models against RTL.
    #[command(subcommand)]
    Kernel(KernelCmd),
    /// Print the default architecture and workload descriptions.
    Defaults {
        /// Only this one.
        #[arg(value_parser = ["arch", "workload"])]
        which: Option<String>,
    },
}

/// Options of `functional` on a workload with a `task` section (a labelled
/// text task); refused on other workloads.
#[derive(Args)]
struct TaskArgs {
    /// Where the "analog+lora" rows' adapter comes from: `calibrated`
    /// (fitted to each trial's chip), `robust` (one adapter fitted over
    /// several other chips) or `none` [default: calibrated; `--adapter`
    /// gives a PEFT adapter instead].
    #[arg(long, value_parser = ["none", "calibrated", "robust"])]
    lora: Option<String>,
    /// Rank of the fitted adapters [default: the workload's LoRA rank].
    #[arg(long)]
    rank: Option<usize>,
    /// A rank sweep: fit and evaluate each of these ranks at --sweep-drift.
    #[arg(long, value_delimiter = ',', value_name = "R,R,...")]
    ranks: Option<Vec<usize>>,
    /// The drift time of the rank sweep [default: 1y].
    #[arg(long, value_name = "TIME")]
    sweep_drift: Option<String>,
    /// Trials of the rank sweep [default: --trials].
    #[arg(long, value_name = "N")]
    sweep_trials: Option<usize>,
    /// Train sentences a LoRA fit runs [default: 1000].
    #[arg(long, value_name = "N")]
    calibration_sentences: Option<usize>,
    /// The drift time a chip is calibrated at [default: 0s].
    #[arg(long, value_name = "TIME")]
    calibrate_at: Option<String>,
    /// Chips of the robust fit [default: 4].
    #[arg(long, value_name = "N")]
    chips: Option<usize>,
    /// Ridge of the LoRA regression, relative to the mean input power [default: 1].
    #[arg(long)]
    ridge: Option<f64>,
    /// Evaluate on the first N test sentences only [default: all 1,000].
    #[arg(long, value_name = "N")]
    test_sentences: Option<usize>,
    /// Write the main rows' adapter (trial 0's when calibrated) as a PEFT
    /// directory.
    #[arg(long, value_name = "DIR")]
    export_adapter: Option<PathBuf>,
}

impl TaskArgs {
    /// The first option given, for the error on a workload without a task.
    fn any_given(&self) -> Option<&'static str> {
        [
            (self.lora.is_some(), "--lora"),
            (self.rank.is_some(), "--rank"),
            (self.ranks.is_some(), "--ranks"),
            (self.sweep_drift.is_some(), "--sweep-drift"),
            (self.sweep_trials.is_some(), "--sweep-trials"),
            (
                self.calibration_sentences.is_some(),
                "--calibration-sentences",
            ),
            (self.calibrate_at.is_some(), "--calibrate-at"),
            (self.chips.is_some(), "--chips"),
            (self.ridge.is_some(), "--ridge"),
            (self.test_sentences.is_some(), "--test-sentences"),
            (self.export_adapter.is_some(), "--export-adapter"),
        ]
        .into_iter()
        .find(|(given, _)| *given)
        .map(|(_, name)| name)
    }
}

#[derive(Subcommand)]
enum BenchCmd {
    /// One noisy analog MVM batch against a plain FP32 GEMM of the same shape.
    Mvm {
        #[arg(long, default_value_t = 320)]
        tokens: usize,
        #[arg(long, default_value_t = 512)]
        rows: usize,
        #[arg(long, default_value_t = 512)]
        cols: usize,
    },
}

#[derive(Subcommand)]
enum KernelCmd {
    /// One RedMule job Z (M x K) = X (M x N) W (N x K) + Y with ideal memory:
    /// cycles from trigger to done, register programming excluded.
    Redmule {
        #[arg(long)]
        m: u64,
        #[arg(long)]
        n: u64,
        #[arg(long)]
        k: u64,
        /// Rows of the array (the repository's default build has 12).
        #[arg(long)]
        rows: Option<u32>,
        /// Plain Z = X W, without the Y operand.
        #[arg(long)]
        no_y: bool,
    },
    /// One DMA transfer between the TCDM and the outside.
    Dma {
        #[arg(long)]
        bytes: u64,
        /// TCDM byte address of the transfer.
        #[arg(long, default_value_t = 0)]
        addr: u64,
        /// Bytes per cycle of the outside (default: the DMA's own width).
        #[arg(long)]
        ext_bytes_per_cycle: Option<u64>,
    },
    /// One group of tokens on an AIMC tile.
    Aimc {
        #[arg(long, default_value_t = 8)]
        tokens: u64,
        /// Inputs per token (rows used).
        #[arg(long = "in", default_value_t = 512)]
        in_features: u64,
    },
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    msg: String,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure {
            code: 2,
            msg: e.to_string(),
        }
    }
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        msg: msg.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

fn load_arch(c: &Common, sets: &[(String, String)]) -> Result<Architecture, Failure> {
    let arch = match &c.arch {
        Some(p) => config::load_architecture(p)?,
        None if Path::new(DEFAULT_ARCH).exists() => {
            config::load_architecture(Path::new(DEFAULT_ARCH))?
        }
        None => Architecture::default(),
    };
    Ok(config::override_architecture(&arch, sets)?)
}

fn load_workload(c: &Common, sets: &[(String, String)]) -> Result<Workload, Failure> {
    let w = match &c.workload {
        Some(p) => config::load_workload(p)?,
        None if Path::new(DEFAULT_WORKLOAD).exists() => {
            config::load_workload(Path::new(DEFAULT_WORKLOAD))?
        }
        None => config::parse_workload("<built-in mobilebert.ron>", config::DEFAULT_WORKLOAD_RON)?,
    };
    Ok(config::override_workload(&w, sets)?)
}

fn integration_time(arch: &mut Architecture, v: &Option<String>) -> Result<(), Failure> {
    if let Some(s) = v {
        let t = parse_time(s).map_err(|e| bad(format!("--integration-time: {e}")))?;
        if t == Ps::ZERO {
            return Err(bad("--integration-time: must be greater than zero"));
        }
        arch.aimc.integration_time = t;
    }
    Ok(())
}

fn format_of(c: &Common) -> Format {
    c.format
        .or_else(|| c.output.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::Table)
}

fn emit(c: &Common, text: &str) -> Result<(), Failure> {
    report::emit(text, c.output.as_deref()).map_err(|e| Failure {
        code: 2,
        msg: format!(
            "cannot write {}: {e}",
            c.output.as_deref().unwrap_or(Path::new("stdout")).display()
        ),
    })
}

fn functional_table(r: &aimcsim::functional::FunctionalReport) -> String {
    let mut t = Table::new(
        format!(
            "{} on {}: {} trials, seed {}, {} weights, PMCA in {}{}",
            r.workload,
            r.architecture,
            r.trials,
            r.seed,
            r.weights,
            r.pmca_precision,
            match &r.adapter {
                Some(a) => format!(", adapter {a}"),
                None => ", no adapter (no analog+lora rows)".to_string(),
            }
        ),
        &[
            "drift",
            "variant",
            "rel. error",
            "cosine",
            "SNR (dB)",
            "last layer rel. error",
        ],
    );
    for row in &r.rows {
        let last = row
            .layers
            .iter()
            .rev()
            .find(|l| l.layer.starts_with("layer."))
            .map(|l| format!("{:.4} ± {:.4}", l.rel_err_mean, l.rel_err_std))
            .unwrap_or_default();
        t.row(vec![
            row.drift.clone(),
            row.variant.clone(),
            format!("{:.4} ± {:.4}", row.rel_err_mean, row.rel_err_std),
            format!("{:.5}", row.cosine_mean),
            format!("{:.1}", row.snr_db_mean),
            last,
        ]);
    }
    let mut s = t.render();
    s.push_str(&format!(
        "Same mapping: total latency {:.1} ns ({:.1} ns without LoRA), {} tiles, peak TCDM {} bytes.\n",
        r.total_ns, r.baseline_ns, r.tiles, r.peak_tcdm_bytes
    ));
    s.push_str("Errors are against the digital FP32 reference on the same inputs; mean ± std over trials.\n");
    s
}

/// `functional` on a task workload.
fn run_task(
    arch: &aimcsim::config::Architecture,
    w: &Workload,
    adapter: Option<&Path>,
    drift_s: Vec<f64>,
    trials: usize,
    seed: u64,
    a: &TaskArgs,
) -> Result<aimcsim::task::TaskReport, Failure> {
    use aimcsim::task::{LoraMode, TaskOptions};
    let one_time = |opt: &str, v: &Option<String>, default: f64| -> Result<f64, Failure> {
        match v {
            None => Ok(default),
            Some(s) => match aimcsim::functional::parse_drift_times(s)
                .map_err(|e| bad(format!("{opt}: {e}")))?
                .as_slice()
            {
                [t] => Ok(*t),
                _ => Err(bad(format!("{opt}: one drift time, not a list"))),
            },
        }
    };
    let d = TaskOptions::default();
    let lora = match (adapter, a.lora.as_deref()) {
        (Some(_), Some(m)) => {
            return Err(bad(format!(
                "--lora {m} and --adapter: give one (--adapter evaluates a given adapter)"
            )))
        }
        (Some(dir), None) => {
            let ad = aimcsim::adapter::load(dir).map_err(|e| bad(e.to_string()))?;
            let m = aimcsim::adapter::match_workload(&ad, w).map_err(|e| bad(e.to_string()))?;
            LoraMode::Adapter(
                aimcsim::functional::LoraWeights::from_peft(&ad, &m)
                    .map_err(|e| bad(e.to_string()))?,
            )
        }
        (None, Some("none")) => LoraMode::None,
        (None, Some("robust")) => LoraMode::Robust,
        (None, _) => LoraMode::Calibrated,
    };
    let opts = TaskOptions {
        drift_s,
        trials,
        seed,
        lora,
        rank: a.rank.unwrap_or(w.lora.rank as usize),
        sweep_ranks: a.ranks.clone().unwrap_or_default(),
        sweep_drift_s: one_time("--sweep-drift", &a.sweep_drift, d.sweep_drift_s)?,
        sweep_trials: a.sweep_trials,
        calibration_sentences: a.calibration_sentences.unwrap_or(d.calibration_sentences),
        calibrate_at_s: one_time("--calibrate-at", &a.calibrate_at, d.calibrate_at_s)?,
        robust_chips: a.chips.unwrap_or(d.robust_chips),
        ridge: a.ridge.unwrap_or(d.ridge),
        test_sentences: a.test_sentences,
        progress: std::io::stderr().is_terminal(),
        ..d
    };
    if let Some(dir) = &a.export_adapter {
        if matches!(opts.lora, LoraMode::None) {
            return Err(bad(
                "--export-adapter: there is no adapter with --lora none",
            ));
        }
        if dir.exists() {
            return Err(bad(format!(
                "--export-adapter: {} already exists; choose a new directory",
                dir.display()
            )));
        }
    }
    let r = aimcsim::task::task_study(arch, w, &opts).map_err(|e| bad(e.to_string()))?;
    if let (Some(dir), Some(l)) = (&a.export_adapter, &r.adapter) {
        export_adapter(dir, l, w, &r)?;
    }
    Ok(r)
}

fn task_table(r: &aimcsim::task::TaskReport) -> String {
    let mut t = Table::new(
        format!(
            "{} on {}: {} test sentences ({} tokens), {} trials, seed {}, PMCA in {}; LoRA {} at rank {}",
            r.workload,
            r.architecture,
            r.test_sentences,
            r.test_tokens,
            r.trials,
            r.seed,
            r.pmca_precision,
            r.lora,
            r.rank
        ),
        &["drift", "variant", "accuracy %", "agreement %", "cosine", "LoRA gain (pts)", "latency (ns)"],
    );
    let pct = |m: f64, s: f64| format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s);
    for row in &r.rows {
        t.row(vec![
            row.drift.clone(),
            row.variant.clone(),
            pct(row.accuracy_mean, row.accuracy_std),
            pct(row.agreement_mean, row.agreement_std),
            format!("{:.4}", row.cosine_mean),
            match (row.gain_mean, row.gain_std) {
                (Some(m), Some(s)) => format!("{:+.1} ± {:.1}", 100.0 * m, 100.0 * s),
                _ => String::new(),
            },
            format!("{:.0}", row.total_ns),
        ]);
    }
    let mut s = t.render();
    if !r.rank_sweep.is_empty() {
        let mut t = Table::new(
            format!(
                "Rank sweep at {} ({} trials)",
                r.rank_sweep[0].drift, r.trials
            ),
            &[
                "rank",
                "accuracy %",
                "agreement %",
                "LoRA gain (pts)",
                "adapter params",
                "adapter bytes (FP16)",
                "peak TCDM bytes",
                "fits TCDM",
                "latency (ns)",
            ],
        );
        for row in &r.rank_sweep {
            t.row(vec![
                row.rank.to_string(),
                pct(row.accuracy_mean, row.accuracy_std),
                pct(row.agreement_mean, row.agreement_std),
                format!(
                    "{:+.1} ± {:.1}",
                    100.0 * row.gain_mean,
                    100.0 * row.gain_std
                ),
                row.adapter_params.to_string(),
                row.adapter_bytes.to_string(),
                row.peak_tcdm_bytes.to_string(),
                if row.fits_tcdm { "yes" } else { "no" }.into(),
                format!("{:.0}", row.total_ns),
            ]);
        }
        s.push_str(&t.render());
    }
    s.push_str(&format!(
        "Task head: logistic regression (L2 {}) on the digital embeddings of {} train sentences (train accuracy {:.1} %).\n",
        r.head_l2,
        r.train_sentences,
        100.0 * r.head_train_accuracy
    ));
    if r.adapter_params > 0 {
        s.push_str(&format!(
            "Adapter: {} projections, {} parameters ({} bytes in FP16){}; mean fit time {:.0} ms.\n",
            r.adapted_projections,
            r.adapter_params,
            r.adapter_bytes,
            match (r.calibration_sentences, r.robust_chips) {
                (0, _) => String::new(),
                (n, 0) => format!(
                    ", fitted to each trial's chip on {n} calibration sentences ({} tokens) at {}",
                    r.calibration_tokens, r.calibrate_at
                ),
                (n, chips) => format!(
                    ", fitted once on {n} calibration sentences ({} tokens) over {chips} other chips at every drift time",
                    r.calibration_tokens
                ),
            },
            r.fit_wall_ms
        ));
    }
    s.push_str(&format!(
        "Same mapping ({} tokens): {:.1} ns with LoRA, {:.1} ns without, {} tiles, peak TCDM {} of {} bytes ({}).\n",
        r.seq_len,
        r.total_ns,
        r.baseline_ns,
        r.tiles,
        r.peak_tcdm_bytes,
        r.tcdm_capacity_bytes,
        if r.fits_tcdm { "fits" } else { "does not fit" }
    ));
    s.push_str(&format!(
        "Accuracy: mean ± std over trials; an accuracy on {} sentences has a standard error of about {:.1} points. Agreement: sentences predicted as the digital model does (paired). Wall time {:.0} s.\n",
        r.test_sentences,
        100.0 * (0.25 / r.test_sentences.max(1) as f64).sqrt(),
        r.wall_s
    ));
    s
}

/// Writes `l` as a PEFT directory (module paths from the checkpoint).
fn export_adapter(
    dir: &Path,
    l: &aimcsim::functional::LoraWeights,
    w: &Workload,
    r: &aimcsim::task::TaskReport,
) -> Result<(), Failure> {
    use aimcsim::adapter::export::{checkpoint_path, write_peft, ExportMeta};
    let st = aimcsim::functional::weights_st::SafetensorsWeights::open(w)
        .map_err(|e| bad(format!("--export-adapter: {e}")))?;
    let mut provenance = serde_json::Map::new();
    for (k, v) in [
        (
            "method",
            serde_json::json!(format!("hardware-aware LoRA, {}", r.lora)),
        ),
        ("rank", serde_json::json!(r.rank)),
        ("architecture", serde_json::json!(r.architecture)),
        ("seed", serde_json::json!(r.seed)),
        (
            "calibration_sentences",
            serde_json::json!(r.calibration_sentences),
        ),
        (
            "calibration_tokens",
            serde_json::json!(r.calibration_tokens),
        ),
        ("calibrate_at", serde_json::json!(r.calibrate_at)),
        ("robust_chips", serde_json::json!(r.robust_chips)),
        (
            "chip",
            serde_json::json!(if r.lora == "calibrated" {
                "trial 0"
            } else {
                "any"
            }),
        ),
    ] {
        provenance.insert(k.into(), v);
    }
    let meta = ExportMeta {
        base_model: st.file().parent().map(|p| p.display().to_string()),
        task_type: Some("FEATURE_EXTRACTION".into()),
        provenance,
        overwrite: false,
    };
    let paths = checkpoint_path(&st);
    let written = write_peft(dir, l, w, &paths, &meta);
    written.map_err(|e| bad(format!("--export-adapter: {e}")))
}

fn fit_table(r: &aimcsim::fit::FitReport) -> String {
    let mut t = Table::new(
        format!(
            "{}: LoRA step per projection at t = {} against the {}-byte TCDM",
            r.workload, r.tokens, r.tcdm_capacity_bytes
        ),
        &[
            "block",
            "layers",
            "projection",
            "in",
            "out",
            "rank",
            "TCDM bytes",
            "schedule bytes",
            "fits",
            "largest t that fits",
        ],
    );
    for p in &r.projections {
        t.row(vec![
            p.block.clone(),
            p.layers.clone(),
            p.projection.clone(),
            p.in_features.to_string(),
            p.out_features.to_string(),
            p.rank.to_string(),
            p.tcdm_bytes.to_string(),
            p.tcdm_schedule_bytes.to_string(),
            if p.fits_tcdm { "yes" } else { "NO" }.to_string(),
            p.largest_fitting_tokens.to_string(),
        ]);
    }
    let mut s = t.render();
    s.push_str(&report::key_values(
        "\nAdapters in the L2",
        &[
            (
                "adapter parameters (one task)",
                r.adapter_params.to_string(),
            ),
            (
                "adapter bytes, FP16 (one task)",
                r.adapter_bytes.to_string(),
            ),
            ("tasks held at once", r.tasks.to_string()),
            ("all adapters (bytes)", r.adapters_bytes.to_string()),
            ("K+V of one layer (bytes)", r.l2_kv_bytes.to_string()),
            ("L2 capacity (bytes)", r.l2_capacity_bytes.to_string()),
        ],
    ));
    s.push_str(&r.verdict);
    s.push('\n');
    s
}

fn parse_tokens(s: &str) -> Result<u32, Failure> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err(bad("--tokens: must be at least 1")),
        Ok(t) => Ok(t),
        Err(_) => Err(bad(format!(
            "--tokens: `{s}` is neither a whole number of tokens nor `auto`"
        ))),
    }
}

fn write_trace(
    path: &Option<PathBuf>,
    arch: &Architecture,
    t: &summary::Traced,
    title: &str,
) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let occ = aimcsim::timing::occupancy::occupancy(&t.graph, &t.map, arch, &t.timeline);
    let text = report::trace::chrome_trace(&t.graph, &t.timeline, &occ, title);
    report::emit(&text, Some(path)).map_err(|e| Failure {
        code: 2,
        msg: format!("cannot write {}: {e}", path.display()),
    })
}

fn real_main(cli: Cli) -> Result<u8, Failure> {
    let c = &cli.common;
    // A sweep reads --set itself (its values may be lists).
    let (arch_sets, work_sets) = match cli.command {
        Command::Sweep { .. } => (Vec::new(), Vec::new()),
        _ => config::split_overrides(&c.sets)?,
    };
    let opts = TimingOptions {
        tcdm_contention: !c.no_tcdm_contention,
    };
    let fmt = format_of(c);
    match &cli.command {
        Command::Defaults { which } => {
            let mut text = String::new();
            if which.as_deref() != Some("workload") {
                text.push_str("// Default architecture (architectures/paper.ron)\n");
                text.push_str(&config::to_ron(&Architecture::default()));
                text.push('\n');
            }
            if which.as_deref() != Some("arch") {
                text.push_str("// Default workload (workloads/mobilebert.ron)\n");
                text.push_str(config::DEFAULT_WORKLOAD_RON);
            }
            emit(c, &text)?;
        }
        Command::Layer {
            in_features,
            out_features,
            rank,
            tokens,
            integration_time: it,
            seq_len,
            trace,
        } => {
            let mut arch = load_arch(c, &arch_sets)?;
            integration_time(&mut arch, it)?;
            if !work_sets.is_empty() {
                return Err(bad(
                    "--set workload.*: `layer` takes no workload; use its flags",
                ));
            }
            let auto = tokens == "auto";
            let q = LayerQuery {
                in_features: *in_features,
                out_features: *out_features,
                rank: *rank,
                tokens: if auto {
                    8.min(*seq_len)
                } else {
                    parse_tokens(tokens)?
                },
                seq_len: *seq_len,
            };
            let r = if auto {
                let r = summary::layer_auto(&arch, &q, opts).map_err(|e| bad(e.to_string()))?;
                let qt = LayerQuery {
                    tokens: r.tokens,
                    ..q
                };
                let (_, traced) =
                    summary::layer_traced(&arch, &qt, opts).map_err(|e| bad(e.to_string()))?;
                write_trace(trace, &arch, &traced, "aimcsim layer")?;
                r
            } else {
                let (r, traced) =
                    summary::layer_traced(&arch, &q, opts).map_err(|e| bad(e.to_string()))?;
                write_trace(trace, &arch, &traced, "aimcsim layer")?;
                r
            };
            let text = match fmt {
                Format::Json => report::to_json(&r),
                Format::Csv => report::to_csv(std::slice::from_ref(&r)),
                Format::Table => layer_table(&r),
            };
            emit(c, &text)?;
        }
        Command::Run {
            tokens,
            rank,
            targets,
            integration_time: it,
            trace,
        } => {
            let mut arch = load_arch(c, &arch_sets)?;
            integration_time(&mut arch, it)?;
            let mut w = load_workload(c, &work_sets)?;
            let auto = tokens.as_deref() == Some("auto");
            if let Some(t) = tokens.as_deref().filter(|t| *t != "auto") {
                w.tokens_per_group = parse_tokens(t)?;
            }
            if let Some(r) = rank {
                w.lora.rank = *r;
            }
            if let Some(t) = targets {
                w.lora.targets = t
                    .parse::<Targets>()
                    .map_err(|e| bad(format!("--targets: {e}")))?;
            }
            w.validate().map_err(|e| bad(format!("workload: {e}")))?;
            if auto {
                w.tokens_per_group = w.tokens_per_group.min(w.seq_len);
            }
            let (r, traced) = if auto {
                summary::run_workload_auto_traced(&arch, &w, opts)
            } else {
                summary::run_workload_traced(&arch, &w, opts)
            }
            .map_err(|e| bad(e.to_string()))?;
            write_trace(trace, &arch, &traced, &format!("aimcsim run {}", w.name))?;
            let text = match fmt {
                Format::Json => report::to_json(&r),
                Format::Csv => report::to_csv(&r.layers),
                Format::Table => run_table(&r),
            };
            emit(c, &text)?;
        }
        Command::Sweep {
            in_features,
            out_features,
            seq_len,
            integration_time: its,
            tokens,
            rank,
            targets,
            resume,
        } => {
            let arch = load_arch(c, &[])?;
            let target = match (in_features, out_features) {
                (Some(m), Some(n)) => SweepTarget::Layer {
                    in_features: *m,
                    out_features: *n,
                    seq_len: *seq_len,
                },
                (None, None) => SweepTarget::Workload(load_workload(c, &[])?),
                _ => return Err(bad("--in and --out go together (a layer sweep)")),
            };
            let mut integration_times = Vec::new();
            for s in its {
                let t = parse_time(s).map_err(|e| bad(format!("--integration-time: {e}")))?;
                if t == Ps::ZERO {
                    return Err(bad("--integration-time: must be greater than zero"));
                }
                integration_times.push(t);
            }
            let mut toks = Vec::new();
            for s in tokens {
                toks.push(if s == "auto" {
                    Tokens::Auto
                } else {
                    Tokens::Fixed(parse_tokens(s)?)
                });
            }
            let mut tgs = Vec::new();
            for s in targets {
                tgs.push(
                    s.parse::<Targets>()
                        .map_err(|e| bad(format!("--targets: {e}")))?,
                );
            }
            let mut sets = Vec::new();
            for s in &c.sets {
                let (path, values) = s
                    .split_once('=')
                    .ok_or_else(|| bad(format!("--set {s}: expected FIELD=VALUE[,VALUE...]")))?;
                sets.push((path.to_string(), sweep::split_values(values)));
            }
            let spec = SweepSpec {
                target,
                arch,
                integration_times,
                tokens: toks,
                ranks: rank.clone(),
                targets: tgs,
                sets,
                tcdm_contention: opts.tcdm_contention,
            };
            if *resume && c.output.is_none() {
                return Err(bad("--resume needs -o FILE"));
            }
            let combos = spec.check().map_err(|e| bad(e.to_string()))?;
            let out = sweep::Output {
                path: c.output.clone(),
                format: fmt,
                resume: *resume,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let text = sweep::run(&spec, &combos, &out).map_err(|e| match e {
                sweep::SweepError::Spec(m) => bad(m),
                sweep::SweepError::Io(m) => Failure { code: 2, msg: m },
            })?;
            if let Some(text) = text {
                emit(c, &text)?;
            }
        }
        Command::Fit {
            adapters,
            rank,
            targets,
            tokens,
            tasks,
        } => {
            let arch = load_arch(c, &arch_sets)?;
            let mut w = load_workload(c, &work_sets)?;
            if !adapters.is_empty() && (rank.is_some() || targets.is_some()) {
                return Err(bad("--rank and --targets describe an adapter; with --adapter DIR the directory does"));
            }
            if *tasks == 0 {
                return Err(bad("--tasks: must be at least 1"));
            }
            if let Some(r) = rank {
                w.lora.rank = *r;
            }
            if let Some(t) = targets {
                w.lora.targets = t
                    .parse::<Targets>()
                    .map_err(|e| bad(format!("--targets: {e}")))?;
            }
            let mut loaded = Vec::new();
            for dir in adapters {
                let a = aimcsim::adapter::load(dir).map_err(|e| bad(e.to_string()))?;
                let m = aimcsim::adapter::match_workload(&a, &w).map_err(|e| bad(e.to_string()))?;
                loaded.push((a, m));
            }
            if let Some(t) = tokens.as_deref().filter(|t| *t != "auto") {
                w.tokens_per_group = parse_tokens(t)?;
            }
            w.validate().map_err(|e| bad(format!("workload: {e}")))?;
            let per: std::collections::HashMap<String, u32> = if tokens.as_deref() == Some("auto") {
                summary::run_workload_auto(&arch, &w, opts)
                    .map_err(|e| bad(e.to_string()))?
                    .tokens_per_projection
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| (p.projection, p.tokens))
                    .collect()
            } else {
                Default::default()
            };
            let r = aimcsim::fit::fit(&arch, &w, &loaded, w.tokens_per_group, *tasks, &per);
            let text = match fmt {
                Format::Json => report::to_json(&r),
                Format::Csv => report::to_csv(&r.projections),
                Format::Table => fit_table(&r),
            };
            emit(c, &text)?;
            return Ok(if r.fits { 0 } else { 1 });
        }
        Command::Device {
            rows,
            cols,
            weight_std,
            tokens,
            drift,
            trials,
            seed,
        } => {
            let arch = load_arch(c, &arch_sets)?;
            let drift_s = aimcsim::functional::parse_drift_times(drift)
                .map_err(|e| bad(format!("--drift: {e}")))?;
            let study = aimcsim::functional::DeviceStudy {
                rows: *rows,
                cols: *cols,
                weight_std: *weight_std,
                tokens: *tokens,
                drift_s,
                trials: *trials,
                seed: *seed,
            };
            let spec = aimcsim::functional::TileSpec::from(&arch.aimc);
            let rows = aimcsim::functional::characterise(&study, spec, &arch.analog)
                .map_err(|e| bad(e.to_string()))?;
            let text = match fmt {
                Format::Json => report::to_json(&rows),
                Format::Csv => report::to_csv(&rows),
                Format::Table => {
                    let v = serde_json::to_value(&rows).expect("rows serialise");
                    let list = v.as_array().expect("a list");
                    let keys: Vec<String> = list
                        .first()
                        .and_then(|r| r.as_object())
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    let header: Vec<&str> = keys.iter().map(String::as_str).collect();
                    let mut t = Table::new(
                        format!(
                            "One {}x{} tile, weights N(0, {}^2), {} tokens, {} trials, seed {}",
                            study.rows,
                            study.cols,
                            study.weight_std,
                            study.tokens,
                            study.trials,
                            study.seed
                        ),
                        &header,
                    );
                    for r in list {
                        t.row(
                            keys.iter()
                                .map(|k| match &r[k] {
                                    serde_json::Value::Number(n) if n.is_f64() => {
                                        format!("{:.5}", n.as_f64().unwrap_or(f64::NAN))
                                    }
                                    serde_json::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect(),
                        );
                    }
                    t.render()
                }
            };
            emit(c, &text)?;
        }
        Command::Functional {
            adapter,
            drift,
            trials,
            seed,
            task,
        } => {
            let arch = load_arch(c, &arch_sets)?;
            let w = load_workload(c, &work_sets)?;
            let drift_s = aimcsim::functional::parse_drift_times(drift)
                .map_err(|e| bad(format!("--drift: {e}")))?;
            if *trials == 0 {
                return Err(bad("--trials: must be at least 1"));
            }
            if w.task.is_some() {
                let r = run_task(&arch, &w, adapter.as_deref(), drift_s, *trials, *seed, task)?;
                let text = match fmt {
                    Format::Json => report::to_json(&r),
                    Format::Csv => report::to_csv(&r.rows),
                    Format::Table => task_table(&r),
                };
                emit(c, &text)?;
                return Ok(0);
            }
            if let Some(opt) = task.any_given() {
                return Err(bad(format!(
                    "{opt}: only for a workload with a `task` section (workload `{}` has none)",
                    w.name
                )));
            }
            let adapter = match adapter {
                Some(dir) => {
                    let a = aimcsim::adapter::load(dir).map_err(|e| bad(e.to_string()))?;
                    let m =
                        aimcsim::adapter::match_workload(&a, &w).map_err(|e| bad(e.to_string()))?;
                    Some((a, m))
                }
                None => None,
            };
            let r =
                aimcsim::functional::functional_study(&arch, &w, adapter, &drift_s, *trials, *seed)
                    .map_err(|e| bad(e.to_string()))?;
            let text = match fmt {
                Format::Json => report::to_json(&r),
                Format::Csv => report::to_csv(&r.rows),
                Format::Table => functional_table(&r),
            };
            emit(c, &text)?;
        }
        Command::Bench(BenchCmd::Mvm { tokens, rows, cols }) => {
            let arch = load_arch(c, &arch_sets)?;
            let r = aimcsim::functional::bench_mvm_with(*tokens, *rows, *cols, 15, 0, &arch.analog)
                .map_err(|e| bad(e.to_string()))?;
            let text = match fmt {
                Format::Json => report::to_json(&r),
                Format::Csv => report::to_csv(std::slice::from_ref(&r)),
                Format::Table => report::key_values(
                    &format!("Noisy analog MVM {tokens}x{rows}x{cols} against a plain FP32 GEMM (median of {})", r.reps),
                    &[
                        ("analog (ms)", format!("{:.3}", r.analog_ms)),
                        ("gemm (ms)", format!("{:.3}", r.gemm_ms)),
                        ("ratio", format!("{:.2}", r.ratio)),
                    ],
                ),
            };
            emit(c, &text)?;
        }
        Command::Report { task, task_trials } => {
            let arch = load_arch(c, &arch_sets)?;
            let w = load_workload(c, &work_sets)?;
            let dir = c.output.clone().unwrap_or_else(|| PathBuf::from("reports"));
            let failed = |e: report::study::ReportError| Failure {
                code: 2,
                msg: e.to_string(),
            };
            let mut files = Vec::new();
            // The study first: the README written last reads its JSON.
            if *task {
                use report::task as rt;
                let trials = task_trials.unwrap_or(rt::TRIALS);
                if trials == 0 {
                    return Err(bad("--task-trials: must be at least 1"));
                }
                let tw = config::load_workload(Path::new(rt::WORKLOAD_FILE))?;
                let task_opts = aimcsim::task::TaskOptions {
                    timing: opts,
                    ..rt::report_options(trials)
                };
                files.extend(rt::generate_task(&dir, &arch, &tw, &task_opts).map_err(failed)?);
            }
            files.extend(report::study::generate(&dir, &arch, &w, opts).map_err(failed)?);
            for f in files {
                println!("{}", f.display());
            }
        }
        Command::Kernel(k) => {
            let arch = load_arch(c, &arch_sets)?;
            let text = kernel(&arch, k, fmt)?;
            emit(c, &text)?;
        }
    }
    Ok(0)
}

fn kernel(arch: &Architecture, k: &KernelCmd, fmt: Format) -> Result<String, Failure> {
    let value = match k {
        KernelCmd::Redmule {
            m,
            n,
            k,
            rows,
            no_y,
        } => {
            let mut p = arch.pmca.redmule.clone();
            if let Some(r) = rows {
                p.rows = *r;
            }
            p.validate()
                .map_err(|e| bad(format!("--rows / pmca.redmule.{e}")))?;
            if *m == 0 || *n == 0 || *k == 0 {
                return Err(bad("--m, --n and --k must be at least 1"));
            }
            let j = if *no_y {
                redmule::matmul_cycles(&p, *m, *n, *k)
            } else {
                redmule::job_cycles(&p, *m, *n, *k)
            };
            serde_json::json!({
                "m": m, "n": n, "k": k, "rows": p.rows, "units": p.units, "pipe_regs": p.pipe_regs,
                "y": !no_y,
                "cycles": j.total,
                "array_cycles": j.array,
                "port_bound_cycles": j.port_bound(),
                "fixed_cycles": j.trigger + j.tiler + j.preload + j.drain + j.store + j.stream_latency,
                "utilisation": redmule::utilisation(&p, *m, *n, *k, j.total),
            })
        }
        KernelCmd::Dma {
            bytes,
            addr,
            ext_bytes_per_cycle,
        } => {
            if *bytes == 0 {
                return Err(bad("--bytes must be at least 1"));
            }
            let plan = arch.pmca.dma.plan(
                0,
                *addr,
                *bytes,
                aimcsim::hw::dma::TcdmSide::Dst,
                aimcsim::hw::dma::ExtLink {
                    bytes_per_cycle: *ext_bytes_per_cycle,
                    latency_cycles: 0,
                },
            );
            let cycles = plan.ideal_cycles();
            serde_json::json!({ "bytes": bytes, "addr": addr, "bursts": plan.bursts.len(), "tcdm_beats": plan.tcdm_beats(), "cycles": cycles })
        }
        KernelCmd::Aimc {
            tokens,
            in_features,
        } => {
            let link = &arch.link;
            let load_cycles =
                (in_features * link.input_format.bytes()).div_ceil(link.bytes_per_cycle());
            let load = aimcsim::units::Clock::new(arch.pmca.clock)
                .to_ps(aimcsim::units::Cycles(load_cycles));
            let lat = arch.aimc.group_latency(*tokens, load, link.latency);
            serde_json::json!({
                "tokens": tokens, "in": in_features,
                "integration_time_ns": arch.aimc.integration_time.as_ns_f64(),
                "load_ns": load.as_ns_f64(),
                "latency_ps": lat.0, "latency_ns": lat.as_ns_f64(),
            })
        }
    };
    Ok(match fmt {
        Format::Json => report::to_json(&value),
        Format::Csv => report::to_csv(std::slice::from_ref(&value)),
        Format::Table => {
            let obj = value.as_object().expect("object");
            let pairs: Vec<(&str, String)> = obj
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_string()))
                .collect();
            report::key_values("", &pairs)
        }
    })
}

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

fn layer_table(r: &LayerReport) -> String {
    let mut s = report::key_values(
        &format!(
            "Linear {} -> {} with LoRA rank {}, t = {} tokens, L = {}, integration {} ns",
            r.in_features, r.out_features, r.rank, r.tokens, r.seq_len, r.integration_time_ns
        ),
        &[
            ("AIMC, one group (ns)", f1(r.aimc_ns)),
            ("PMCA, one group (ns)", f1(r.pmca_ns)),
            ("  output transfer (ns)", f1(r.out_transfer_ns)),
            ("  handshake/convert (ns)", f1(r.post_ns)),
            ("  LoRA X A (ns)", f1(r.lora_down_ns)),
            ("  LoRA (X A) B + Y (ns)", f1(r.lora_up_ns)),
            ("PMCA / AIMC", format!("{:.3}", r.pmca_to_aimc)),
            ("TCDM, LoRA step (bytes)", r.tcdm_bytes.to_string()),
            ("TCDM, schedule (bytes)", r.tcdm_schedule_bytes.to_string()),
            (
                "fits TCDM",
                format!("{} (capacity {} bytes)", r.fits_tcdm, r.tcdm_capacity_bytes),
            ),
            ("total, L tokens (ns)", f1(r.total_ns)),
            ("baseline, no LoRA (ns)", f1(r.baseline_ns)),
            ("overhead", format!("{:.3}", r.overhead)),
        ],
    );
    if let Some(a) = &r.auto {
        s.push_str(&auto_line(a, r.pmca_to_aimc));
    }
    if !r.fits_tcdm {
        s.push_str("warning: the schedule does not fit the TCDM; timing shown as if it did\n");
    }
    s
}

fn auto_line(a: &summary::AutoTokens, ratio: f64) -> String {
    let fit = match (a.best_fitting_tokens, a.best_fitting_total_ns) {
        (Some(t), Some(ns)) if t != a.chosen_tokens => {
            format!("; the best t that fits the TCDM is {t} ({ns:.1} ns)")
        }
        (Some(_), _) => "; it fits the TCDM".to_string(),
        _ => "; no candidate fits the TCDM".to_string(),
    };
    format!(
        "tokens auto: t = {} of {:?} (PMCA/AIMC {ratio:.3}){fit}\n",
        a.chosen_tokens, a.candidates
    )
}

fn run_table(r: &RunReport) -> String {
    let mut s = report::key_values(
        &format!(
            "{} on {}: L = {}, t = {}, integration {} ns",
            r.workload, r.architecture, r.seq_len, r.tokens, r.integration_time_ns
        ),
        &[
            ("total latency (ns)", f1(r.total_ns)),
            ("without LoRA (ns)", f1(r.baseline_ns)),
            ("overhead", format!("{:.3}", r.overhead)),
            ("tiles", r.tiles.to_string()),
            ("AIMC weights", r.aimc_weights.to_string()),
            ("LoRA parameters", r.lora_params.to_string()),
            (
                "TCDM bound, all buffers at once (bytes)",
                r.tcdm_bound_bytes.to_string(),
            ),
            (
                "peak TCDM occupancy of a pair (bytes)",
                format!(
                    "{} of {} ({})",
                    r.peak_tcdm_bytes,
                    r.tcdm_capacity_bytes,
                    if r.fits_tcdm { "fits" } else { "DOES NOT FIT" }
                ),
            ),
            ("K+V of one layer in L2 (bytes)", r.l2_kv_bytes.to_string()),
            (
                "utilisation tile/dma/redmule/cores",
                format!(
                    "{:.1}% / {:.1}% / {:.1}% / {:.1}%",
                    100.0 * r.utilisation.tile,
                    100.0 * r.utilisation.dma,
                    100.0 * r.utilisation.redmule,
                    100.0 * r.utilisation.cores
                ),
            ),
            (
                "group latency p50/p90/p99/max (ns)",
                format!(
                    "{} / {} / {} / {}",
                    r.group_latency.p50_ns,
                    r.group_latency.p90_ns,
                    r.group_latency.p99_ns,
                    r.group_latency.max_ns
                ),
            ),
            (
                "TCDM conflict stall cycles",
                r.tcdm_stall_cycles.to_string(),
            ),
            (
                "host",
                format!(
                    "{} events in {:.3} s ({:.1} M events/s)",
                    r.events,
                    r.host_seconds,
                    r.events_per_host_second / 1e6
                ),
            ),
        ],
    );
    let mut ops = Table::new(
        format!(
            "\nTCDM of pair {}, the fullest (bound per operation; {} pairs exceed the TCDM)",
            r.peak_tcdm_pair, r.pairs_over_tcdm
        ),
        &["operation", "bytes"],
    );
    for o in &r.peak_tcdm_ops {
        ops.row(vec![o.op.clone(), o.bytes.to_string()]);
    }
    s.push_str(&ops.render());
    let mut t = Table::new(
        "\nPer layer (span in the pipelined run)",
        &[
            "layer",
            "start (ns)",
            "end (ns)",
            "latency (ns)",
            "no LoRA (ns)",
        ],
    );
    for l in &r.layers {
        t.row(vec![
            l.name.clone(),
            f1(l.start_ns),
            f1(l.end_ns),
            f1(l.latency_ns),
            f1(l.baseline_latency_ns),
        ]);
    }
    s.push_str(&t.render());
    if let Some(per) = &r.tokens_per_projection {
        let mut t = Table::new(
            "\nTokens auto: t per projection (the fastest for its layer over the sequence)",
            &[
                "block",
                "projection",
                "in",
                "out",
                "rank",
                "t",
                "fits TCDM",
                "PMCA/AIMC",
            ],
        );
        for p in per {
            t.row(vec![
                p.block.clone(),
                p.projection.clone(),
                p.in_features.to_string(),
                p.out_features.to_string(),
                p.rank.to_string(),
                p.tokens.to_string(),
                if p.fits_tcdm { "yes" } else { "NO" }.to_string(),
                format!("{:.3}", p.pmca_to_aimc),
            ]);
        }
        s.push_str(&t.render());
    }
    if let Some(a) = &r.auto {
        s.push_str(&format!(
            "For comparison, the fastest single t for the whole model is {} ({:.1} ns){}.\n",
            a.chosen_tokens,
            a.chosen_total_ns,
            if a.chosen_fits_tcdm {
                ""
            } else {
                ", which does not fit the TCDM"
            }
        ));
    }
    s.push_str("Snitch cores are kernel cost models (cycles per element), not instruction-level simulation.\n");
    s
}
