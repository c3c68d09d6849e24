//! `aimcsim report`: regenerates the repository's `reports/` folder in one
//! command — the reference study's layer sweep (128x128 and 512x128), the
//! full-model sweep, the fit table, the plots and a README that shows the
//! figures and says how each was made. The MiniLM sentiment study is slow
//! and runs only with `--task` ([`super::task`]); the README section on it
//! is rebuilt from its JSON whenever that file is in the folder.

use super::plot::{self, AccuracyPoint, LayerLatency, LayerPoint};
use super::{emit, Format};
use crate::config::{Architecture, Workload};
use crate::fit;
use crate::sweep::{self, Output, SweepSpec, SweepTarget, Tokens};
use crate::timing::summary::run_workload;
use crate::timing::TimingOptions;
use crate::units::Ps;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Sweep(#[from] sweep::SweepError),
    #[error("{0}")]
    Plot(String),
    #[error("{0}")]
    Run(String),
}

const INTEGRATION_NS: [u64; 3] = [128, 256, 512];
const TOKENS: [u32; 5] = [8, 16, 32, 64, 128];
const RANKS: [u32; 5] = [1, 2, 4, 8, 16];
const LAYERS: [(u32, u32); 2] = [(128, 128), (512, 128)];
/// Programmings per drift time in the report's accuracy figure.
const ACC_TRIALS: usize = 3;

fn io(p: &Path, e: std::io::Error) -> ReportError {
    ReportError::Io(format!("{}: {e}", p.display()))
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    emit(text, Some(path)).map_err(|e| io(path, e))
}

fn rows_of(spec: &SweepSpec) -> Result<BTreeMap<usize, Map<String, Value>>, ReportError> {
    let combos = spec.check()?;
    let out = Output {
        path: None,
        format: Format::Json,
        resume: false,
        progress: false,
    };
    let text = sweep::run(spec, &combos, &out)?.expect("no file: the rows come back");
    let list: Vec<Map<String, Value>> =
        serde_json::from_str(&text).map_err(|e| ReportError::Io(e.to_string()))?;
    Ok(list
        .into_iter()
        .map(|r| (r["index"].as_u64().unwrap_or(0) as usize, r))
        .collect())
}

fn f(r: &Map<String, Value>, k: &str) -> f64 {
    r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn u(r: &Map<String, Value>, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Regenerates `dir`; returns the files written.
pub fn generate(
    dir: &Path,
    arch: &Architecture,
    workload: &Workload,
    opts: TimingOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    let its: Vec<Ps> = INTEGRATION_NS.iter().map(|&n| Ps::from_ns(n)).collect();
    let toks: Vec<Tokens> = TOKENS.iter().map(|&t| Tokens::Fixed(t)).collect();

    // 1. The reference study's layer sweep.
    let mut points = Vec::new();
    let mut layer_csv = String::new();
    for (m, n) in LAYERS {
        let spec = SweepSpec {
            target: SweepTarget::Layer {
                in_features: m,
                out_features: n,
                seq_len: workload.seq_len,
            },
            arch: arch.clone(),
            integration_times: its.clone(),
            tokens: toks.clone(),
            ranks: vec![],
            targets: vec![],
            sets: vec![],
            tcdm_contention: opts.tcdm_contention,
        };
        let rows = rows_of(&spec)?;
        let csv = sweep::render(&rows, Format::Csv);
        // One CSV for both sizes: the header once.
        if layer_csv.is_empty() {
            layer_csv.push_str(&csv);
        } else {
            layer_csv.extend(csv.lines().skip(1).map(|l| format!("{l}\n")));
        }
        for r in rows.values() {
            points.push(LayerPoint {
                layer: format!("{m}x{n}"),
                integration_time_ns: f(r, "integration_time_ns"),
                tokens: u(r, "tokens") as u32,
                aimc_ns: f(r, "aimc_ns"),
                pmca_ns: f(r, "pmca_ns"),
                tcdm_bytes: u(r, "tcdm_bytes"),
                tcdm_schedule_bytes: u(r, "tcdm_schedule_bytes"),
            });
        }
    }
    let p = dir.join("layer_sweep.csv");
    write(&p, &layer_csv)?;
    written.push(p);
    let plot_err = |e: plot::PlotError| ReportError::Plot(e.to_string());
    written.extend(plot::latency_vs_tokens(&points, dir).map_err(plot_err)?);
    written.extend(plot::tcdm_vs_tokens(&points, arch.pmca.tcdm.size.0, dir).map_err(plot_err)?);

    // 2. The whole model: integration time x t x rank.
    let spec = SweepSpec {
        target: SweepTarget::Workload(workload.clone()),
        arch: arch.clone(),
        integration_times: its.clone(),
        tokens: toks.clone(),
        ranks: RANKS.to_vec(),
        targets: vec![],
        sets: vec![],
        tcdm_contention: opts.tcdm_contention,
    };
    let rows = rows_of(&spec)?;
    let p = dir.join("model_sweep.csv");
    write(&p, &sweep::render(&rows, Format::Csv))?;
    written.push(p);

    // 3. Per-layer latency with and without LoRA at each integration time
    // (the workload's t and rank).
    let mut bars = Vec::new();
    for it in &its {
        let mut a = arch.clone();
        a.aimc.integration_time = *it;
        let r = run_workload(&a, workload, opts).map_err(|e| ReportError::Run(e.to_string()))?;
        for l in &r.layers {
            bars.push(LayerLatency {
                integration_time_ns: it.as_ns_f64(),
                layer: l.name.clone(),
                with_lora_ns: l.latency_ns,
                without_lora_ns: l.baseline_latency_ns,
            });
        }
    }
    written.extend(plot::layer_latency_bars(&bars, dir).map_err(plot_err)?);

    // 4. Accuracy against drift time (functional mode, random weights; with
    // LoRA only when an adapter is given, so here the analog rows).
    let drift = crate::functional::device::STUDY_DRIFT_S;
    let fr = crate::functional::functional_study(arch, workload, None, &drift, ACC_TRIALS, 0)
        .map_err(|e| ReportError::Run(e.to_string()))?;
    let p = dir.join("accuracy.json");
    write(&p, &super::to_json(&fr))?;
    written.push(p);
    // The first, middle and last layer: a 2-wide task head's output is too
    // small a projection to judge by (its error swings with the draw).
    let mut acc = Vec::new();
    for r in &fr.rows {
        let layers: Vec<_> = r
            .layers
            .iter()
            .filter(|l| l.layer.starts_with("layer."))
            .collect();
        let picks = [0, layers.len() / 2, layers.len().saturating_sub(1)];
        for (k, &i) in picks.iter().enumerate() {
            if layers.is_empty() || (k > 0 && i == picks[k - 1]) {
                continue;
            }
            let l = layers[i];
            acc.push(AccuracyPoint {
                variant: format!("{}, output of {}", r.variant, l.layer),
                drift_s: r.drift_s,
                mean: l.cosine_mean,
                std: l.cosine_std,
                metric: "cosine similarity to the FP32 reference".into(),
            });
        }
    }
    written.extend(plot::accuracy_vs_drift(&acc, dir).map_err(plot_err)?);

    // 5. The fit table.
    let fr = fit::fit(
        arch,
        workload,
        &[],
        workload.tokens_per_group,
        1,
        &Default::default(),
    );
    let p = dir.join("fit.json");
    write(&p, &super::to_json(&fr))?;
    written.push(p);

    // 6. The README that shows it all.
    written.push(write_readme(dir, workload, &fr)?);
    Ok(written)
}

/// Writes `dir/README.md` for `w` and its fit report, with the MiniLM
/// section of the last `--task` run found in `dir` (a pointer to `--task`
/// when there is none); returns its path.
pub fn write_readme(dir: &Path, w: &Workload, fr: &fit::FitReport) -> Result<PathBuf, ReportError> {
    let task = super::task::readme_section(dir)?;
    let p = dir.join("README.md");
    write(&p, &readme(w, fr, task.as_deref()))?;
    Ok(p)
}

/// The section of the MiniLM study when it has not been run into the folder.
fn task_placeholder() -> String {
    format!(
        "## MiniLM sentiment accuracy under drift\n\n\
         Not generated yet: `{}` runs the study\n\
         (sentiment accuracy of all-MiniLM-L6-v2, digital, analog and analog with\n\
         hardware-aware LoRA, per drift time; needs `scripts/fetch-assets.sh`,\n\
         about 25 minutes on 2 cores).\n",
        super::task::command(super::task::TRIALS)
    )
}

fn readme(w: &Workload, fr: &fit::FitReport, task: Option<&str>) -> String {
    let task = task.map_or_else(task_placeholder, str::to_string);
    format!(
        r#"# Reports

Generated by `aimcsim report -o reports/` (architecture
`architectures/paper.ron`, workload `{name}`; TCDM contention modelled).
Every file here is rewritten by that one command, except the MiniLM study's
`minilm_*` files (a 25-minute run), which need `aimcsim report -o reports/
--task`; nothing is edited by hand.
The Snitch cores are kernel cost models, not instruction-level simulation.

## One layer, as in the reference study

`layer_sweep.csv`: the 128x128 and 512x128 (in x out) layers with a rank-8
adapter, L = {l} tokens, at 128, 256 and 512 ns integration time and t = 8,
16, 32, 64, 128 tokens per group (`aimcsim sweep --in 128 --out 128
--integration-time 128ns,256ns,512ns --tokens 8,16,32,64,128`, and the same
for 512x128).

![AIMC and PMCA latency of one token group against t](latency_vs_tokens.png)

`latency_vs_tokens.png` (and `.svg`): the AIMC tile's latency for one group
of t tokens and the PMCA's (output transfer, handshake, `X A`, `(X A) B + Y`)
for the same group; where PMCA is above AIMC, the LoRA step paces the
pipeline.

![TCDM bytes against t](tcdm_vs_tokens.png)

`tcdm_vs_tokens.png`: the LoRA step's live FP16 data (X, X A, output, A, B)
and the schedule's (with the next group's X and outputs double-buffered)
against the 128 KiB TCDM.

## The whole model

`model_sweep.csv`: {name} at every integration time x t x rank (5 ranks: 1,
2, 4, 8, 16; LoRA on all projections): total latency with and without LoRA,
overhead, tiles, peak TCDM occupancy, utilisation, group-latency percentiles
(`aimcsim sweep --integration-time 128ns,256ns,512ns --tokens
8,16,32,64,128 --rank 1,2,4,8,16`).

![Latency per layer with and without LoRA](layer_latency.png)

`layer_latency.png`: each layer's span in the pipelined run, with and
without LoRA, at t = {t} and rank {r}, per integration time
(`aimcsim run --integration-time ...`).

## Accuracy under drift

`accuracy.json` (`aimcsim functional --trials 3`): the same mapped graph on
numbers, random weights (N(0, 1/in)), PCM programming noise, drift, read
noise, GDC and the 8-bit periphery, against the digital FP32 reference on
the same inputs; 3 independent programmings per drift time. Without a
trained adapter there are no "analog+lora" rows: they are left out, not
faked.

![Cosine similarity against drift time](accuracy_vs_drift.png)

`accuracy_vs_drift.png`: cosine similarity to the reference of the first,
middle and last layer's outputs, mean ± std over programmings. (The 2-wide
QA head's output is in `accuracy.json` too; projected onto two values its
error swings too much with the draw to plot.) With random weights the error
grows with depth; trained weights and adapters are what the study measures.

{task}
## Does the adapter fit?

`fit.json` (`aimcsim fit`): {verdict}
"#,
        name = w.name,
        l = w.seq_len,
        t = w.tokens_per_group,
        r = w.lora.rank,
        verdict = fr.verdict,
        task = task,
    )
}
