//! The MiniLM sentiment section of `aimcsim report`: `--task` runs the
//! text-classification study ([`crate::task::task_study`]) on
//! all-MiniLM-L6-v2 and writes its JSON, CSV and figures; the README
//! section is rendered from that JSON file, so a plain `aimcsim report`
//! (which does not rerun the ~25 min study) keeps the section of the last
//! full run.
//!
//! Everything after the study reads the report as JSON (a
//! `serde_json::Value`), not as the `TaskReport` struct: the README is made
//! from the file on disk, possibly written by an older build, and tests can
//! give hand-made values. Fields the section does not use are ignored;
//! fields it needs are named when missing.
//!
//! The written JSON holds no absolute machine path: the asset cache (see
//! [`crate::config::assets_dir`]) is written `$ASSETS`, as in the workload
//! description, so the file regenerates byte-identically on any machine.

use super::plot::{self, AccuracyPoint, RankPoint, ReferenceLine};
use super::study::ReportError;
use super::{emit, to_json};
use crate::config::{assets_dir, Architecture, Workload, ASSETS};
use crate::task::{task_study, TaskOptions};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The workload `aimcsim report --task` studies.
pub const WORKLOAD_FILE: &str = "workloads/minilm_l6.ron";
/// Programmings per drift time (and per rank) of the full study.
pub const TRIALS: usize = 10;
/// The ranks of the full study's rank sweep.
pub const RANKS: [usize; 5] = [1, 2, 4, 8, 16];
/// File names in the reports folder.
pub const JSON_FILE: &str = "minilm_sentiment.json";
pub const CSV_FILE: &str = "minilm_sentiment.csv";
pub const DRIFT_STEM: &str = "minilm_accuracy_vs_drift";
pub const RANK_STEM: &str = "minilm_rank_sweep";

/// The full study's options with `trials` programmings: every test
/// sentence, the default drift times and LoRA, the rank sweep over
/// [`RANKS`], progress on stderr (the run takes minutes).
pub fn report_options(trials: usize) -> TaskOptions {
    TaskOptions {
        trials,
        sweep_ranks: RANKS.to_vec(),
        progress: true,
        ..TaskOptions::default()
    }
}

/// The command that regenerates the section with `trials` programmings.
pub fn command(trials: usize) -> String {
    if trials == TRIALS {
        "aimcsim report -o reports/ --task".into()
    } else {
        format!("aimcsim report -o reports/ --task --task-trials {trials}")
    }
}

/// Runs the study of `w` on `arch` with `opts` and writes its files into
/// `dir` (see [`write_task`]); returns the files written.
pub fn generate_task(
    dir: &Path,
    arch: &Architecture,
    w: &Workload,
    opts: &TaskOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    let r = task_study(arch, w, opts)
        .map_err(|e| ReportError::Run(format!("task study of {}: {e}", w.name)))?;
    let v = serde_json::to_value(&r)
        .map_err(|e| ReportError::Run(format!("task study of {}: {e}", w.name)))?;
    write_task(dir, &v)
}

/// Writes a task report (a `TaskReport` as JSON) into `dir`:
/// [`JSON_FILE`] (asset paths written `$ASSETS`), [`CSV_FILE`] (the rows),
/// the accuracy-against-drift figure and, when the report has a rank
/// sweep, the rank-sweep figure (SVG and PNG each). The report is checked
/// first: a malformed one writes nothing.
pub fn write_task(dir: &Path, v: &Value) -> Result<Vec<PathBuf>, ReportError> {
    let json_path = dir.join(JSON_FILE);
    let s = parse(v).map_err(|e| ReportError::Run(format!("{}: {e}", json_path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Io(format!("{}: {e}", dir.display())))?;
    let mut written = Vec::new();

    let portable = with_assets_prefix(v, &assets_dir());
    write(&json_path, &to_json(&portable))?;
    written.push(json_path);

    let csv_path = dir.join(CSV_FILE);
    let rows = v["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
    let csv =
        rows_csv(rows).map_err(|e| ReportError::Io(format!("{}: {e}", csv_path.display())))?;
    write(&csv_path, &csv)?;
    written.push(csv_path);

    let plot_err = |e: plot::PlotError| ReportError::Plot(e.to_string());
    let (points, refs) = drift_points(&s);
    let title = format!(
        "{}: sentiment accuracy against drift ({}, mean ± std)",
        s.workload,
        count(s.trials, "chip")
    );
    written.extend(
        plot::drift_with_references(DRIFT_STEM, &title, &points, &refs, dir).map_err(plot_err)?,
    );
    if let Some(first) = s.rank_sweep.first() {
        let (points, refs) = rank_points(&s);
        let title = format!(
            "{}: LoRA rank sweep at {} ({}, mean ± std)",
            s.workload,
            first.drift,
            count(first.trials, "chip")
        );
        written.extend(
            plot::rank_sweep(
                RANK_STEM,
                &title,
                &format!("analog + LoRA ({})", s.lora),
                ("test accuracy (%)", "accuracy gain (points)"),
                &points,
                &refs,
                dir,
            )
            .map_err(plot_err)?,
        );
    }
    Ok(written)
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    emit(text, Some(path)).map_err(|e| ReportError::Io(format!("{}: {e}", path.display())))
}

/// The README section from `dir/`[`JSON_FILE`], or `None` when that file
/// does not exist (the study has not been run into `dir`).
pub fn readme_section(dir: &Path) -> Result<Option<String>, ReportError> {
    let path = dir.join(JSON_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::Io(format!("{}: {e}", path.display()))),
    };
    let redo = "regenerate it with `aimcsim report --task`";
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        ReportError::Io(format!("{}: not valid JSON ({e}); {redo}", path.display()))
    })?;
    section(&v)
        .map(Some)
        .map_err(|e| ReportError::Io(format!("{}: {e}; {redo}", path.display())))
}

// ---------------------------------------------------------------------------
// The report as read back
// ---------------------------------------------------------------------------

/// The fields of a `TaskReport` the section uses; the timing ones are
/// optional (the section leaves their sentence out without them).
#[derive(Debug, Deserialize)]
struct Study {
    workload: String,
    trials: usize,
    seed: u64,
    test_sentences: usize,
    train_sentences: usize,
    digital_accuracy: f64,
    lora: String,
    rank: usize,
    #[serde(default)]
    calibration_sentences: usize,
    #[serde(default)]
    calibrate_at: Option<String>,
    #[serde(default)]
    robust_chips: Option<usize>,
    #[serde(default)]
    pmca_precision: Option<String>,
    #[serde(default)]
    seq_len: Option<u64>,
    #[serde(default)]
    total_ns: Option<f64>,
    #[serde(default)]
    baseline_ns: Option<f64>,
    #[serde(default)]
    tiles: Option<u64>,
    rows: Vec<Row>,
    #[serde(default)]
    rank_sweep: Vec<Rank>,
}

#[derive(Debug, Deserialize)]
struct Row {
    drift: String,
    drift_s: f64,
    variant: String,
    accuracy_mean: f64,
    accuracy_std: f64,
    agreement_mean: f64,
    agreement_std: f64,
    #[serde(default)]
    gain_mean: Option<f64>,
    #[serde(default)]
    gain_std: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Rank {
    rank: usize,
    drift: String,
    trials: usize,
    accuracy_mean: f64,
    accuracy_std: f64,
    agreement_mean: f64,
    agreement_std: f64,
    gain_mean: f64,
    gain_std: f64,
    adapter_params: u64,
    adapter_bytes: u64,
    peak_tcdm_bytes: u64,
    fits_tcdm: bool,
}

const ANALOG: &str = "analog";
const LORA: &str = "analog+lora";

fn parse(v: &Value) -> Result<Study, String> {
    let s: Study =
        serde_json::from_value(v.clone()).map_err(|e| format!("not a task report: {e}"))?;
    if s.trials == 0 || s.test_sentences == 0 {
        return Err("a task report with no trials or no test sentences".into());
    }
    if !s.rows.iter().any(|r| r.variant == ANALOG) {
        return Err("a task report without `analog` rows".into());
    }
    Ok(s)
}

impl Study {
    /// The drift times of the analog rows, in the report's order.
    fn drifts(&self) -> Vec<(&str, f64)> {
        self.rows
            .iter()
            .filter(|r| r.variant == ANALOG)
            .map(|r| (r.drift.as_str(), r.drift_s))
            .collect()
    }

    fn row(&self, variant: &str, drift: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.variant == variant && r.drift == drift)
    }

    fn has_lora(&self) -> bool {
        self.rows.iter().any(|r| r.variant == LORA)
    }

    fn lora_label(&self) -> String {
        format!("analog + LoRA (rank {}, {})", self.rank, self.lora)
    }

    /// The model without LoRA on the rank sweep's chips at its drift time:
    /// the main `analog` row there when it averages the same chips (same
    /// trial count, same seeds), with its std; else the mean the rank rows
    /// imply (accuracy minus the paired gain), without a std.
    fn sweep_reference(&self) -> Option<(f64, Option<f64>)> {
        let first = self.rank_sweep.first()?;
        match self.row(ANALOG, &first.drift) {
            Some(r) if first.trials == self.trials => Some((r.accuracy_mean, Some(r.accuracy_std))),
            _ => Some((first.accuracy_mean - first.gain_mean, None)),
        }
    }
}

// ---------------------------------------------------------------------------
// Figures' points
// ---------------------------------------------------------------------------

const ACCURACY_METRIC: &str = "test accuracy (%)";

fn drift_points(s: &Study) -> (Vec<AccuracyPoint>, Vec<ReferenceLine>) {
    let lora = s.lora_label();
    let points = s
        .rows
        .iter()
        .filter(|r| r.variant == ANALOG || r.variant == LORA)
        .map(|r| AccuracyPoint {
            variant: if r.variant == ANALOG {
                "analog".into()
            } else {
                lora.clone()
            },
            drift_s: r.drift_s,
            mean: 100.0 * r.accuracy_mean,
            std: 100.0 * r.accuracy_std,
            metric: ACCURACY_METRIC.into(),
        })
        .collect();
    let refs = vec![ReferenceLine {
        label: "digital (FP32)".into(),
        value: 100.0 * s.digital_accuracy,
        band: 0.0,
        series: None,
    }];
    (points, refs)
}

fn rank_points(s: &Study) -> (Vec<RankPoint>, Vec<ReferenceLine>) {
    let points = s
        .rank_sweep
        .iter()
        .map(|r| RankPoint {
            rank: r.rank as f64,
            mean: 100.0 * r.accuracy_mean,
            std: 100.0 * r.accuracy_std,
            gain_mean: 100.0 * r.gain_mean,
            gain_std: 100.0 * r.gain_std,
        })
        .collect();
    let mut refs = Vec::new();
    if let (Some((m, sd)), Some(first)) = (s.sweep_reference(), s.rank_sweep.first()) {
        refs.push(ReferenceLine {
            label: format!("analog without LoRA, {}", first.drift),
            value: 100.0 * m,
            band: 100.0 * sd.unwrap_or(0.0),
            // The colour of "analog" in the drift figure.
            series: Some(0),
        });
    }
    refs.push(ReferenceLine {
        label: "digital (FP32)".into(),
        value: 100.0 * s.digital_accuracy,
        band: 0.0,
        series: None,
    });
    (points, refs)
}

// ---------------------------------------------------------------------------
// The README section
// ---------------------------------------------------------------------------

/// One decimal, without a negative zero.
fn f1(x: f64) -> String {
    let s = format!("{x:.1}");
    if s == "-0.0" {
        "0.0".into()
    } else {
        s
    }
}

/// One decimal with an explicit sign (`+0.6`, `-1.2`, `0.0`).
fn signed1(x: f64) -> String {
    let s = f1(x);
    if s.starts_with('-') || s == "0.0" {
        s
    } else {
        format!("+{s}")
    }
}

/// A fraction as a percentage cell: `mean ± std`, one decimal.
fn pct(mean: f64, std: f64) -> String {
    format!("{} ± {}", f1(100.0 * mean), f1(100.0 * std))
}

/// A difference of fractions in percentage points, signed.
fn points(mean: f64, std: f64) -> String {
    format!("{} ± {}", signed1(100.0 * mean), f1(100.0 * std))
}

/// `n` and a noun, plural unless `n` is 1 (`1 chip`, `10 chips`).
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", grouped(n as u64))
    }
}

/// An integer with thousands grouped by commas.
fn grouped(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in KiB, one decimal, thousands grouped (`1,296.0`).
fn kib(bytes: u64) -> String {
    let s = f1(bytes as f64 / 1024.0);
    match s.split_once('.') {
        Some((int, frac)) => match int.parse::<u64>() {
            Ok(n) => format!("{}.{frac}", grouped(n)),
            Err(_) => s,
        },
        None => s,
    }
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut t = format!("| {} |\n", header.join(" | "));
    t.push('|');
    for i in 0..header.len() {
        t.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    t.push('\n');
    for r in rows {
        t.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    t
}

/// The sampling standard error, in points, of an accuracy `p` measured on
/// `n` sentences: sqrt(p (1 - p) / n).
pub fn standard_error_points(p: f64, n: usize) -> f64 {
    100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// The README section ("## MiniLM sentiment accuracy under drift") of a
/// task report given as JSON. The error names what is missing.
pub fn section(v: &Value) -> Result<String, String> {
    let s = parse(v)?;
    let drifts = s.drifts();
    let head = |first: &str| -> Vec<String> {
        std::iter::once(first.to_string())
            .chain(drifts.iter().map(|(d, _)| d.to_string()))
            .collect()
    };
    let cells = |variant: &str, f: &dyn Fn(&Row) -> Option<String>| -> Vec<String> {
        drifts
            .iter()
            .map(|(d, _)| s.row(variant, d).and_then(f).unwrap_or_else(|| "–".into()))
            .collect()
    };
    let labelled = |label: String, c: Vec<String>| -> Vec<String> {
        std::iter::once(label).chain(c).collect()
    };
    let lora = s.has_lora();
    let lora_label = s.lora_label();

    let mut acc_rows = vec![
        labelled(
            "digital (FP32)".into(),
            drifts
                .iter()
                .map(|_| f1(100.0 * s.digital_accuracy))
                .collect(),
        ),
        labelled(
            "analog".into(),
            cells(ANALOG, &|r| Some(pct(r.accuracy_mean, r.accuracy_std))),
        ),
    ];
    let mut agr_rows = vec![labelled(
        "analog".into(),
        cells(ANALOG, &|r| Some(pct(r.agreement_mean, r.agreement_std))),
    )];
    if lora {
        acc_rows.push(labelled(
            lora_label.clone(),
            cells(LORA, &|r| Some(pct(r.accuracy_mean, r.accuracy_std))),
        ));
        acc_rows.push(labelled(
            "LoRA gain (points, paired)".into(),
            cells(LORA, &|r| Some(points(r.gain_mean?, r.gain_std?))),
        ));
        agr_rows.push(labelled(
            lora_label.clone(),
            cells(LORA, &|r| Some(pct(r.agreement_mean, r.agreement_std))),
        ));
    }

    let n = s.test_sentences;
    let mut out = String::from("## MiniLM sentiment accuracy under drift\n\n");
    let models = if lora {
        let how = match s.lora.as_str() {
            "calibrated" => format!(
                "fitted to each chip on {} train sentences at {}",
                grouped(s.calibration_sentences as u64),
                s.calibrate_at.as_deref().unwrap_or("0s")
            ),
            "robust" => format!(
                "one adapter fitted over {} other chips on {} train sentences",
                s.robust_chips.unwrap_or(0),
                grouped(s.calibration_sentences as u64)
            ),
            _ => "a given adapter".into(),
        };
        format!(
            "three models: the digital one (FP32, no noise: one number per column), \
             the analog one ({ANALOG_MODEL}) and the analog one with hardware-aware \
             LoRA (rank {}, {how})",
            s.rank
        )
    } else {
        format!(
            "two models: the digital one (FP32, no noise: one number per column) \
             and the analog one ({ANALOG_MODEL})"
        )
    };
    out.push_str(&para(&format!(
        "`{JSON_FILE}` (the whole report) and `{CSV_FILE}` (its rows): sentiment \
         accuracy of {w} (the real checkpoint) with a logistic-regression head \
         trained on the digital model's embeddings of the {train} train sentences, \
         on {n} test sentences of the UCI Sentiment Labelled Sentences; {models}; \
         PMCA in {prec}. {trials} of the chip (seed {seed}); \
         every ± is the sample std over them.",
        w = s.workload,
        train = grouped(s.train_sentences as u64),
        n = grouped(n as u64),
        prec = s.pmca_precision.as_deref().unwrap_or("FP16").to_uppercase(),
        trials = count(s.trials, "independent programming"),
        seed = s.seed,
    )));
    let mut alone = format!(
        "aimcsim --workload {WORKLOAD_FILE} functional --trials {}",
        s.trials
    );
    if !s.rank_sweep.is_empty() {
        let ranks: Vec<String> = s.rank_sweep.iter().map(|r| r.rank.to_string()).collect();
        alone.push_str(&format!(" --ranks {}", ranks.join(",")));
    }
    if let Some(r) = s.rank_sweep.first().filter(|r| r.trials != s.trials) {
        alone.push_str(&format!(" --sweep-trials {}", r.trials));
    }
    out.push_str(&para(&format!(
        "Regenerate with `{}` (needs `scripts/fetch-assets.sh`; the full study, \
         {TRIALS} programmings, takes about 25 minutes on 2 cores). A plain \
         `aimcsim report` does not rerun the study: it rebuilds this section from \
         `{JSON_FILE}`. The study alone: `{alone}`.",
        command(s.trials)
    )));
    out.push_str(&para(&format!(
        "Test accuracy (%), mean ± std over {}:",
        count(s.trials, "programming")
    )));
    out.push_str(&table(&head("model"), &acc_rows));
    out.push('\n');
    out.push_str(&para(
        "Agreement with the digital model (%), the share of test sentences \
         predicted as the digital model predicts them:",
    ));
    out.push_str(&table(&head("model"), &agr_rows));
    out.push('\n');
    let (paired, against, resolves) = if lora {
        (
            "Agreement and the LoRA gain are",
            " or against the chip without LoRA",
            "they resolve",
        )
    } else {
        ("Agreement is", "", "it resolves")
    };
    out.push_str(&para(&format!(
        "With {n} test sentences an accuracy p has a sampling standard error of \
         √(p(1-p)/n): {se} points at the digital model's {acc} % and at \
         most {se_max} (at 50 %), so differences between accuracies smaller than \
         that are not claimed; the ± above is the spread over programmings on the \
         same sentences, not this error. {paired} paired (the same sentences \
         through the same chip, against the digital model{against}), so \
         {resolves} smaller differences.",
        n = grouped(n as u64),
        se = f1(standard_error_points(s.digital_accuracy, n)),
        acc = f1(100.0 * s.digital_accuracy),
        se_max = f1(standard_error_points(0.5, n)),
    )));
    if let (Some(total), Some(base), Some(tiles), Some(l)) =
        (s.total_ns, s.baseline_ns, s.tiles, s.seq_len)
    {
        let with = if lora {
            format!(", {} µs with the rank-{} adapter", f1(total / 1e3), s.rank)
        } else {
            String::new()
        };
        out.push_str(&para(&format!(
            "The same mapping's timing run ({tiles} tiles, one {l}-token sequence): \
             {} µs without LoRA{with}.",
            f1(base / 1e3),
        )));
    }
    out.push_str(&format!(
        "![Sentiment accuracy against drift time]({DRIFT_STEM}.png)\n\n"
    ));
    out.push_str(&para(&format!(
        "`{DRIFT_STEM}.png` (and `.svg`): test accuracy against drift time, the \
         analog model{} mean ± std over {}, the digital model dashed. \
         Drift 0 is drawn one step left of the first drift time.",
        if lora {
            " and the analog model with LoRA,"
        } else {
            ","
        },
        count(s.trials, "programming"),
    )));
    if let Some(first) = s.rank_sweep.first() {
        out.push_str(&format!("### LoRA rank sweep at {}\n\n", first.drift));
        out.push_str(&para(&format!(
            "Each rank's adapter fitted on each chip and evaluated at {}; mean ± \
             std over {}. Gain: accuracy minus the same chip's without \
             LoRA (paired). Adapter: A and B of every adapted projection, in FP16. \
             Peak TCDM and fit: the timing run at that rank.",
            first.drift,
            count(first.trials, "programming")
        )));
        let header: Vec<String> = [
            "rank",
            "accuracy (%)",
            "gain (points, paired)",
            "agreement (%)",
            "adapter params",
            "adapter (KiB)",
            "peak TCDM (KiB)",
            "fits TCDM",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        let rows: Vec<Vec<String>> = s
            .rank_sweep
            .iter()
            .map(|r| {
                vec![
                    r.rank.to_string(),
                    pct(r.accuracy_mean, r.accuracy_std),
                    points(r.gain_mean, r.gain_std),
                    pct(r.agreement_mean, r.agreement_std),
                    grouped(r.adapter_params),
                    kib(r.adapter_bytes),
                    kib(r.peak_tcdm_bytes),
                    if r.fits_tcdm { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&header, &rows));
        out.push('\n');
        if let Some((m, sd)) = s.sweep_reference() {
            let at = match sd {
                Some(sd) => pct(m, sd),
                None => f1(100.0 * m),
            };
            out.push_str(&para(&format!(
                "Without LoRA the same chips score {at} % at {}.",
                first.drift
            )));
        }
        out.push_str(&format!(
            "![Accuracy and gain against the LoRA rank]({RANK_STEM}.png)\n\n"
        ));
        out.push_str(&para(&format!(
            "`{RANK_STEM}.png` (and `.svg`): left, the accuracy with LoRA against \
             the rank, with the analog model without LoRA at {} (dashed, its ± std \
             as a band) and the digital model; right, the paired gain.",
            first.drift
        )));
    }
    // The README puts a blank line after the section.
    out.truncate(out.trim_end().len());
    out.push('\n');
    Ok(out)
}

/// What the analog model is, in a few words.
const ANALOG_MODEL: &str = "PCM programming noise, drift, read noise, GDC, 8-bit periphery";

/// Width of the README's prose lines.
const WRAP: usize = 76;

/// `text` as a Markdown paragraph: words filled greedily into lines of at
/// most [`WRAP`] characters, then a blank line. A code span (a command to
/// copy) and a `%` after its number are not broken; a longer unit stands
/// alone on its line.
fn para(text: &str) -> String {
    let mut units: Vec<String> = Vec::new();
    let mut open = false;
    for word in text.split_whitespace() {
        match units.last_mut() {
            Some(u) if open || word.starts_with('%') => {
                u.push(' ');
                u.push_str(word);
            }
            _ => units.push(word.to_string()),
        }
        if word.matches('`').count() % 2 == 1 {
            open = !open;
        }
    }
    let mut out = String::new();
    let mut line = 0;
    for u in &units {
        let w = u.chars().count();
        if line > 0 && line + 1 + w > WRAP {
            out.push('\n');
            line = 0;
        }
        if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(u);
        line += w;
    }
    out.push_str("\n\n");
    out
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Whether `c` can continue a path component (so a match ending or
/// starting next to it is part of a longer name, not the asset directory).
fn path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// `s` with every occurrence of the directory `root` (as a whole path, not
/// the start of a longer name) written [`ASSETS`].
pub fn assets_relative(s: &str, root: &Path) -> String {
    let root = root.display().to_string();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return s.to_string();
    }
    let mut out = String::new();
    let mut last = 0;
    for (i, _) in s.match_indices(root) {
        if i < last {
            continue;
        }
        let before = s[..i].chars().next_back();
        let after = s[i + root.len()..].chars().next();
        let starts = before.is_none_or(|c| !path_char(c));
        let ends = after.is_none_or(|c| c == '/' || !path_char(c));
        if starts && ends {
            out.push_str(&s[last..i]);
            out.push_str(ASSETS);
            last = i + root.len();
        }
    }
    out.push_str(&s[last..]);
    out
}

/// `v` with [`assets_relative`] applied to every string in it.
pub fn with_assets_prefix(v: &Value, root: &Path) -> Value {
    match v {
        Value::String(s) => Value::String(assets_relative(s, root)),
        Value::Array(a) => Value::Array(a.iter().map(|x| with_assets_prefix(x, root)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), with_assets_prefix(x, root)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// CSV of JSON records whose keys may differ (the `analog+lora` rows have
/// gain columns the others lack): the union of the keys, each new key
/// placed after the key it follows in its record (so in the struct's
/// order), empty cells where a record lacks a key.
fn rows_csv(rows: &[Value]) -> Result<String, String> {
    let mut keys: Vec<String> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let obj = r.as_object().ok_or(format!("row {i} is not an object"))?;
        let mut at = 0;
        for k in obj.keys() {
            match keys.iter().position(|x| x == k) {
                Some(p) => at = p + 1,
                None => {
                    keys.insert(at, k.clone());
                    at += 1;
                }
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&keys).map_err(|e| e.to_string())?;
    for r in rows {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| match r.get(k) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        w.write_record(&cells).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}
