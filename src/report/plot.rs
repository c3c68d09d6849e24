//! Figures: SVG and PNG plots of sweep and run results (plotters).
//!
//! Every function takes plain typed points (defined here, so this module
//! does not depend on how the numbers were produced), draws one figure and
//! writes it twice into a directory: `STEM.svg` and `STEM.png`. Each file is
//! rendered to a temporary name in the same directory and renamed into
//! place, so a file is either complete or absent.
//!
//! Text is drawn with the DejaVu Sans font embedded in the binary
//! (`assets/fonts/DejaVuSans.ttf`, registered once with plotters' ab_glyph
//! font table), so PNGs render the same on a machine with no system fonts.
//! SVGs name the family `DejaVu Sans, sans-serif`: a viewer without DejaVu
//! falls back to its own sans-serif font.
//!
//! | function | file stem | what |
//! |---|---|---|
//! | [`latency_vs_tokens`] | `latency_vs_tokens` | AIMC and PMCA latency of one token group against t, a panel per layer size and integration time |
//! | [`tcdm_vs_tokens`] | `tcdm_vs_tokens` | TCDM footprint of the LoRA step and of the schedule against t, with the capacity |
//! | [`layer_latency_bars`] | `layer_latency` | latency per layer with and without LoRA, a panel per integration time |
//! | [`accuracy_vs_drift`] | `accuracy_vs_drift` | a metric against PCM drift time, one line per variant, with error bars |
//! | [`drift_with_references`] | given | the same with a title of its own, dashed reference lines and drift 0 one step left of the first drift time |
//! | [`rank_sweep`] | given | accuracy and paired gain against the LoRA rank, with dashed reference lines |

use crate::functional::device::format_drift_time;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::ranged1d::{KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged};
use plotters::coord::{CoordTranslate, Shift};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// One linear layer at one token group size and integration time, as
/// `aimcsim layer` (or a layer sweep row) reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerPoint {
    /// The layer size, `"IN x OUT"` written `"512x128"` (inputs x outputs).
    pub layer: String,
    /// The tile's integration time, in nanoseconds.
    pub integration_time_ns: f64,
    /// Tokens per group, t (> 0).
    pub tokens: u32,
    /// One group of t tokens on the AIMC tile, in nanoseconds (> 0).
    pub aimc_ns: f64,
    /// The PMCA's work for the same group once the tile is done (output
    /// transfer, handshake, `X A`, `(X A) B + Y`), in nanoseconds (> 0).
    pub pmca_ns: f64,
    /// The LoRA step's live FP16 data (X, X A, output, A, B), in bytes.
    pub tcdm_bytes: u64,
    /// Everything the schedule keeps live in the TCDM (double buffers of X
    /// and of the tile outputs included), in bytes.
    pub tcdm_schedule_bytes: u64,
}

impl LayerPoint {
    /// A point from a flat sweep or `aimcsim layer --format json` row: keys
    /// `in_features`, `out_features`, `integration_time_ns`, `tokens`,
    /// `aimc_ns`, `pmca_ns`, `tcdm_bytes`, `tcdm_schedule_bytes`. The error
    /// names the missing or mistyped key.
    pub fn from_row(
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<LayerPoint, String> {
        let num = |k: &str| {
            row.get(k)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("key `{k}` is missing or not a number"))
        };
        let uint = |k: &str| {
            row.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("key `{k}` is missing or not a non-negative integer"))
        };
        let tokens = u32::try_from(uint("tokens")?).map_err(|_| "key `tokens` is too large")?;
        Ok(LayerPoint {
            layer: format!("{}x{}", uint("in_features")?, uint("out_features")?),
            integration_time_ns: num("integration_time_ns")?,
            tokens,
            aimc_ns: num("aimc_ns")?,
            pmca_ns: num("pmca_ns")?,
            tcdm_bytes: uint("tcdm_bytes")?,
            tcdm_schedule_bytes: uint("tcdm_schedule_bytes")?,
        })
    }
}

/// One layer of a whole-model run at one integration time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerLatency {
    /// The tile's integration time, in nanoseconds.
    pub integration_time_ns: f64,
    /// The layer's name (`"embedding"`, `"layer.0"`, ..., `"head"`).
    pub layer: String,
    /// The layer's latency (span in the pipelined run) with LoRA, in
    /// nanoseconds (>= 0).
    pub with_lora_ns: f64,
    /// The same without any adapter, in nanoseconds (>= 0).
    pub without_lora_ns: f64,
}

/// One point of a drift study: a metric after some drift time, averaged
/// over trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyPoint {
    /// The model variant (`"analog"`, `"analog+lora"`, `"digital"`, ...):
    /// one line per variant.
    pub variant: String,
    /// Time since programming, in seconds (>= 0; 0 is drawn at the left
    /// edge and labelled "0 s").
    pub drift_s: f64,
    /// Mean of the metric over the trials (the metric's own unit).
    pub mean: f64,
    /// Standard deviation over the trials (same unit, >= 0): the error bar
    /// is mean ± std.
    pub std: f64,
    /// The metric's name, used as the y axis label (`"accuracy"`,
    /// `"cosine similarity"`); one panel per distinct metric.
    pub metric: String,
}

/// A horizontal reference line across a panel (a model that does not vary
/// with x, such as the digital model's accuracy), drawn dashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceLine {
    /// The legend entry.
    pub label: String,
    /// Where the line is, in the y axis' unit.
    pub value: f64,
    /// Half the height of a light band drawn around the line (e.g. a std
    /// over trials), in the y axis' unit; 0 draws no band.
    pub band: f64,
    /// The colour of the series with this index (the order the series are
    /// listed in the legend), so that a reference matches its series; `None`
    /// is black.
    pub series: Option<usize>,
}

/// One rank of a LoRA rank sweep: an accuracy and its paired gain over the
/// model without LoRA, averaged over trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankPoint {
    /// The LoRA rank (> 0; the x axis is log2).
    pub rank: f64,
    /// Mean and std over the trials of the accuracy with LoRA (the y unit).
    pub mean: f64,
    pub std: f64,
    /// Mean and std over the trials of the accuracy gain over the same
    /// trial without LoRA (same unit; the right panel).
    pub gain_mean: f64,
    pub gain_std: f64,
}

/// Why a figure was not written. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No points were given.
    #[error("{file}: nothing to plot (no {what})")]
    Empty { file: PathBuf, what: &'static str },
    /// A point cannot be drawn (not finite, not positive on a log axis,
    /// duplicated).
    #[error("{file}: {reason}")]
    Invalid { file: PathBuf, reason: String },
    /// The embedded font could not be registered.
    #[error("{file}: the embedded font cannot be loaded")]
    Font { file: PathBuf },
    /// plotters failed to draw or encode the figure.
    #[error("{file}: drawing failed: {reason}")]
    Draw { file: PathBuf, reason: String },
    /// Creating, writing or renaming the file failed.
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------
// Fonts, styles, colours
// ---------------------------------------------------------------------------

/// The family name every text of every figure uses; the embedded DejaVu Sans
/// is registered under it. Written as a CSS font list so that SVG viewers
/// without DejaVu fall back to a sans-serif font.
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static FONT_OK: OnceLock<bool> = OnceLock::new();

/// Registers the embedded font (once per process).
fn ensure_font(file: &Path) -> Result<(), PlotError> {
    let ok =
        *FONT_OK.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font {
            file: file.to_path_buf(),
        })
    }
}

const TITLE_PX: f64 = 32.0;
const CAPTION_PX: f64 = 26.0;
const DESC_PX: f64 = 22.0;
const LABEL_PX: f64 = 20.0;
const LEGEND_PX: f64 = 22.0;

fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT_FAMILY, px)).color(&BLACK)
}

/// Width in pixels of `text` at `px` in the embedded font (an estimate if
/// the font is not registered yet).
fn text_w(text: &str, px: f64) -> f64 {
    FontDesc::new(FONT_FAMILY.into(), px, FontStyle::Normal)
        .box_size(text)
        .map(|(w, _)| f64::from(w))
        .unwrap_or(text.chars().count() as f64 * px * 0.62)
}

/// Okabe-Ito colours (distinguishable with colour-vision deficiencies).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const VERMILLION: RGBColor = RGBColor(213, 94, 0);
const GREEN: RGBColor = RGBColor(0, 158, 115);
const PURPLE: RGBColor = RGBColor(204, 121, 167);
const ORANGE: RGBColor = RGBColor(230, 159, 0);
const SKY: RGBColor = RGBColor(86, 180, 233);
const PALETTE: [RGBColor; 7] = [BLUE, VERMILLION, GREEN, PURPLE, ORANGE, SKY, BLACK];

fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Point markers, cycled per series so that lines differ in grey scale too.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
    Cross,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::Cross,
];

fn marker(i: usize) -> Marker {
    MARKERS[i % MARKERS.len()]
}

/// plotters' drawing error for a backend.
type DrawErr<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;
type DrawResult<DB> = Result<(), DrawErr<DB>>;
/// A panel of a figure with explicit-tick axes.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;
/// Per panel and series: (x, y, z) points sorted by x.
type Series = BTreeMap<(usize, usize), Vec<(f64, f64, f64)>>;

/// Draws a marker of about 12 px at `at` on any drawing area.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    m: Marker,
    color: RGBColor,
) -> DrawResult<DB>
where
    CT::From: Clone + 'static,
{
    let fill = ShapeStyle::from(color).filled();
    let edge = ShapeStyle::from(color).stroke_width(3);
    match m {
        Marker::Circle => area.draw(&Circle::new(at, 6, fill)),
        Marker::Triangle => area.draw(&TriangleMarker::new(at, 8, fill)),
        Marker::Square => {
            area.draw(&(EmptyElement::at(at) + Rectangle::new([(-5, -5), (5, 5)], fill)))
        }
        Marker::Diamond => area.draw(
            &(EmptyElement::at(at) + Polygon::new(vec![(0, -7), (7, 0), (0, 7), (-7, 0)], fill)),
        ),
        Marker::Cross => area.draw(&Cross::new(at, 6, edge)),
    }
}

// ---------------------------------------------------------------------------
// Axes with explicit ticks
// ---------------------------------------------------------------------------

/// A linear or logarithmic axis whose ticks and tick labels are given
/// explicitly (plotters' own log axis puts its labels at awkward places).
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    /// Labelled ticks (bold grid lines).
    major: Vec<(f64, String)>,
    /// Unlabelled ticks (light grid lines).
    minor: Vec<f64>,
}

impl Axis {
    fn t(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).ln()
        } else {
            v
        }
    }

    fn label(&self, v: f64) -> String {
        self.major
            .iter()
            .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Width in pixels of the widest tick label.
    fn max_label_w(&self) -> f64 {
        self.major
            .iter()
            .map(|(_, s)| text_w(s, LABEL_PX))
            .fold(0.0, f64::max)
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.t(self.lo), self.t(self.hi));
        let f = ((self.t(*v) - a) / (b - a)).clamp(-10.0, 11.0);
        let f = if f.is_finite() { f } else { 0.0 };
        (f64::from(limit.0) + f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.major.iter().map(|(v, _)| *v).collect(),
            KeyPointWeight::Any => self.minor.clone(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, v: &f64) -> String {
        self.label(*v)
    }
}

/// A number for a tick label: thousands grouped with commas, at most three
/// significant decimals, no trailing zeros.
fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let neg = v < 0.0;
    let a = v.abs();
    let s = if a >= 1000.0 || (a.fract() == 0.0 && a < 1e15) {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 9) as usize;
        let s = format!("{:.*}", decimals, a);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// A log2 axis over positive `values` (and `extra` values that must be in
/// range): labelled ticks at the distinct values when `at_values` and they
/// are few powers of two, else at powers of two (every second or more when
/// there would be more than 9).
fn log2_axis(values: &[f64], extra: &[f64], at_values: bool) -> Axis {
    let all: Vec<f64> = values.iter().chain(extra).copied().collect();
    let (mn, mx) = min_max(&all);
    let (lo, hi) = if mx / mn < 1.0001 {
        (mn / 2.0, mx * 2.0)
    } else {
        let pad = (mx / mn).powf(0.06);
        (mn / pad, mx * pad)
    };
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let ticks: Vec<f64> = if at_values
        && !distinct.is_empty()
        && distinct.len() <= 9
        && distinct.iter().all(|v| v.log2().fract() == 0.0)
    {
        distinct
    } else {
        let (a, b) = (lo.log2().ceil() as i32, hi.log2().floor() as i32);
        let step = ((b - a) / 9 + 1).max(1) as usize;
        (a..=b).step_by(step).map(|k| 2f64.powi(k)).collect()
    };
    Axis {
        lo,
        hi,
        log: true,
        major: ticks.into_iter().map(|v| (v, fmt_num(v))).collect(),
        minor: Vec::new(),
    }
}

/// A log10 axis over positive data with ticks at 1, 2, 5 x 10^k (only
/// 10^k when the data span many decades).
fn log10_axis(values: &[f64]) -> Axis {
    let (mn, mx) = min_max(values);
    let (lo, hi) = if mx / mn < 1.0001 {
        (mn / 2.0, mx * 2.0)
    } else {
        let pad = (mx / mn).powf(0.06);
        (mn / pad, mx * pad)
    };
    let decades = (hi / lo).log10();
    let mults: &[f64] = if decades <= 3.2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    // A narrow range ends at labelled ticks, so it always shows at least
    // two (1,000 to 5,000 rather than one lonely 2,000).
    let (lo, hi) = if decades <= 3.2 {
        let ticks: Vec<f64> = (a..=b)
            .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
            .collect();
        let (lo_in, hi_in) = if mx / mn < 1.0001 {
            (lo, hi)
        } else {
            (mn / 1.05, mx * 1.05)
        };
        let snap_lo = ticks
            .iter()
            .rev()
            .find(|t| **t <= lo_in)
            .copied()
            .unwrap_or(lo);
        let snap_hi = ticks.iter().find(|t| **t >= hi_in).copied().unwrap_or(hi);
        (snap_lo, snap_hi)
    } else {
        (lo, hi)
    };
    let mut major = Vec::new();
    let mut minor = Vec::new();
    for k in a..=b {
        let p = 10f64.powi(k);
        for m in 1..10 {
            let v = f64::from(m) * p;
            if v < lo || v > hi {
                continue;
            }
            if mults.contains(&f64::from(m)) {
                major.push((v, fmt_num(v)));
            } else {
                minor.push(v);
            }
        }
    }
    Axis {
        lo,
        hi,
        log: true,
        major,
        minor,
    }
}

/// A linear axis over `lo..hi` with about `n` ticks at 1, 2, 5 x 10^k steps.
fn linear_axis(lo: f64, hi: f64, n: usize, from_zero: bool) -> Axis {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let d = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        lo -= d;
        hi += d;
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p);
    if from_zero && lo >= 0.0 {
        lo = 0.0;
        hi = (hi / step).ceil() * step;
        if hi < lo + step {
            hi = lo + step;
        }
    } else {
        let pad = (hi - lo) * 0.06;
        lo -= pad;
        hi += pad;
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // The same number of decimals on every label: 0.80, 0.82, ... 0.90.
    let decimals = (0..=9)
        .find(|d| {
            let s = step * 10f64.powi(*d);
            (s - s.round()).abs() < 1e-6 * s.max(1.0)
        })
        .unwrap_or(9) as usize;
    let major = (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            let label = if decimals == 0 {
                fmt_num(v)
            } else {
                format!("{:.*}", decimals, v)
            };
            (v, label)
        })
        .collect();
    Axis {
        lo,
        hi,
        log: false,
        major,
        minor: Vec::new(),
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        })
}

// ---------------------------------------------------------------------------
// Figure frame: title, legend, panels
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Line {
    Solid,
    Dashed,
    None,
}

/// One entry of a figure's legend.
#[derive(Debug, Clone)]
struct LegendItem {
    label: String,
    color: RGBColor,
    line: Line,
    marker: Option<Marker>,
    /// A filled box instead of a line (bar charts).
    bar: bool,
}

impl LegendItem {
    fn line(label: impl Into<String>, color: RGBColor, line: Line, marker: Option<Marker>) -> Self {
        LegendItem {
            label: label.into(),
            color,
            line,
            marker,
            bar: false,
        }
    }
    fn bar(label: impl Into<String>, color: RGBColor) -> Self {
        LegendItem {
            label: label.into(),
            color,
            line: Line::None,
            marker: None,
            bar: true,
        }
    }
}

const LEGEND_SAMPLE: i32 = 46;
const LEGEND_ROW: i32 = 34;

/// Lays the legend out in rows that fit `width`; returns the items of each
/// row with their widths.
fn legend_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
    width: i32,
) -> Vec<Vec<(usize, i32)>> {
    let style = font(LEGEND_PX);
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut used = 0;
    for (i, it) in items.iter().enumerate() {
        let tw = area
            .estimate_text_size(&it.label, &style)
            .map(|(w, _)| w as i32)
            .unwrap_or((it.label.chars().count() as f64 * LEGEND_PX * 0.6) as i32);
        let w = LEGEND_SAMPLE + 10 + tw + 36;
        if used + w > width && !rows.last().is_some_and(Vec::is_empty) {
            rows.push(Vec::new());
            used = 0;
        }
        rows.last_mut().expect("a row").push((i, w));
        used += w;
    }
    rows
}

/// Fills the figure, draws its title and legend, and returns the area left
/// for the panels.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[LegendItem],
) -> Result<DrawingArea<DB, Shift>, DrawErr<DB>> {
    root.fill(&WHITE)?;
    let (w, _) = root.dim_in_pixel();
    let w = w as i32;
    let title_h = (TITLE_PX * 1.7) as i32;
    // A long title is set smaller rather than cut at the edges.
    let room = f64::from(w - 40);
    let px = TITLE_PX * (room / text_w(title, TITLE_PX)).min(1.0);
    root.draw(&Text::new(
        title.to_string(),
        (w / 2, title_h / 2 + 4),
        font(px).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    let rows = legend_rows(root, legend, w - 40);
    let legend_h = if legend.is_empty() {
        0
    } else {
        rows.len() as i32 * LEGEND_ROW + 10
    };
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|(_, w)| w).sum::<i32>() - 36;
        let mut x = (w - total) / 2;
        let y = title_h + r as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        for &(i, iw) in row {
            let it = &legend[i];
            let style = ShapeStyle::from(it.color).stroke_width(3);
            if it.bar {
                root.draw(&Rectangle::new(
                    [(x + 8, y - 10), (x + LEGEND_SAMPLE - 8, y + 10)],
                    ShapeStyle::from(it.color).filled(),
                ))?;
            }
            match it.line {
                Line::Solid => root.draw(&PathElement::new(
                    vec![(x, y), (x + LEGEND_SAMPLE, y)],
                    style,
                ))?,
                Line::Dashed => root.draw(&DashedPathElement::new(
                    vec![(x, y), (x + LEGEND_SAMPLE, y)],
                    DASH,
                    DASH_GAP,
                    style,
                ))?,
                Line::None => {}
            }
            if let Some(m) = it.marker {
                draw_marker(root, (x + LEGEND_SAMPLE / 2, y), m, it.color)?;
            }
            root.draw(&Text::new(
                it.label.clone(),
                (x + LEGEND_SAMPLE + 10, y),
                font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += iw;
        }
    }
    Ok(root.margin(title_h + legend_h, 6, 6, 10))
}

/// Builds a panel with its caption, axes, grid and axis labels (an empty
/// description is left out, its room too). `x_grid` false draws no vertical
/// grid lines (bar charts).
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: Axis,
    y: Axis,
    (x_desc, y_desc): (&str, &str),
    x_grid: bool,
) -> Result<Chart<'a, DB>, DrawErr<DB>> {
    let desc_w = |d: &str| if d.is_empty() { 0.0 } else { DESC_PX * 1.6 };
    let y_label_w = (y.max_label_w() + 22.0 + desc_w(y_desc)) as u32;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(8)
        .margin_bottom(8)
        .margin_left(8)
        .margin_right(28)
        .x_label_area_size((LABEL_PX + 18.0 + desc_w(x_desc)) as u32)
        .y_label_area_size(y_label_w);
    if !caption.is_empty() {
        builder.caption(caption, font(CAPTION_PX));
    }
    let mut chart = builder.build_cartesian_2d(x, y)?;
    let mut mesh = chart.configure_mesh();
    if !x_desc.is_empty() {
        mesh.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    if !x_grid {
        mesh.disable_x_mesh();
    }
    mesh.label_style(font(LABEL_PX))
        .axis_desc_style(font(DESC_PX))
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.06))
        .axis_style(BLACK.mix(0.8))
        .draw()?;
    Ok(chart)
}

/// Draws axis descriptions shared by all panels (x centred below, y
/// rotated at the left) and returns the area left for the panels.
fn shared_descs<DB: DrawingBackend>(
    body: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
) -> Result<DrawingArea<DB, Shift>, DrawErr<DB>> {
    let (w, h) = body.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let bottom = (DESC_PX * 1.8) as i32;
    let left = (DESC_PX * 1.8) as i32;
    let centre = Pos::new(HPos::Center, VPos::Center);
    body.draw(&Text::new(
        x_desc.to_string(),
        (left + (w - left) / 2, h - bottom / 2),
        font(DESC_PX).pos(centre),
    ))?;
    body.draw(&Text::new(
        y_desc.to_string(),
        (left / 2, (h - bottom) / 2),
        font(DESC_PX)
            .transform(FontTransform::Rotate270)
            .pos(centre),
    ))?;
    Ok(body.margin(0, bottom, left, 0))
}

// ---------------------------------------------------------------------------
// Writing files
// ---------------------------------------------------------------------------

/// A figure ready to draw on any backend.
trait Figure {
    /// Width and height in pixels (of the PNG; the SVG has the same size).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn tmp_name(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    // The extension stays last: the PNG encoder picks the format from it.
    dir.join(format!(".{stem}.{}-{n}.partial.{ext}", std::process::id()))
}

fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> PlotError + '_ {
    move |source| PlotError::Io {
        file: file.to_path_buf(),
        source,
    }
}

fn draw_err(file: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Renders `fig` to `dir/STEM.svg` and `dir/STEM.png` (temporary names
/// first, then renamed), creating `dir` if needed.
fn write_figure(dir: &Path, stem: &str, fig: &impl Figure) -> Result<Vec<PathBuf>, PlotError> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    ensure_font(&svg)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let size = fig.size();

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        fig.draw(&root).map_err(|e| draw_err(&svg, e))?;
        root.present().map_err(|e| draw_err(&svg, e))?;
    }
    let svg_tmp = tmp_name(dir, stem, "svg");
    let png_tmp = tmp_name(dir, stem, "png");
    let cleanup = || {
        let _ = std::fs::remove_file(&svg_tmp);
        let _ = std::fs::remove_file(&png_tmp);
    };
    if let Err(e) = std::fs::write(&svg_tmp, text.as_bytes()) {
        cleanup();
        return Err(io_err(&svg)(e));
    }
    let drawn = {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        fig.draw(&root).and_then(|()| root.present())
        // `root` is dropped here; it does not save again once presented.
    };
    if let Err(e) = drawn {
        cleanup();
        return Err(draw_err(&png, e));
    }
    if let Err(e) = std::fs::rename(&svg_tmp, &svg) {
        cleanup();
        return Err(io_err(&svg)(e));
    }
    if let Err(e) = std::fs::rename(&png_tmp, &png) {
        cleanup();
        return Err(io_err(&png)(e));
    }
    Ok(vec![svg, png])
}

fn invalid(file: PathBuf, reason: String) -> PlotError {
    PlotError::Invalid { file, reason }
}

fn check_finite(file: &Path, what: &str, v: f64, positive: bool) -> Result<(), PlotError> {
    if !v.is_finite() || (positive && v <= 0.0) || v < 0.0 {
        let need = if positive {
            "a positive number"
        } else {
            "a non-negative number"
        };
        return Err(invalid(
            file.to_path_buf(),
            format!("{what} is {v}, expected {need}"),
        ));
    }
    Ok(())
}

/// Parses "512x128" into (512, 128) for sorting.
fn layer_key(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(['x', 'X', '×'])?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Distinct layer names, by size when they all parse as "INxOUT", else in
/// order of first appearance.
fn layer_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    if out.iter().all(|n| layer_key(n).is_some()) {
        out.sort_by_key(|n| layer_key(n));
    }
    out
}

/// Distinct integration times, ascending.
fn sorted_times(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut t: Vec<f64> = v.collect();
    t.sort_by(f64::total_cmp);
    t.dedup();
    t
}

fn ns_label(v: f64) -> String {
    format!("{} ns", fmt_num(v))
}

/// Rows and columns for `n` panels, at most `max_cols` per row.
fn grid(n: usize, max_cols: usize) -> (usize, usize) {
    let cols = n.clamp(1, max_cols);
    (n.div_ceil(cols), cols)
}

// ---------------------------------------------------------------------------
// (a) latency against tokens
// ---------------------------------------------------------------------------

struct LatencyFigure {
    layers: Vec<String>,
    times: Vec<f64>,
    /// (layer index, time index) -> [(t, aimc, pmca)] sorted by t.
    series: Series,
    x: Axis,
    y: Axis,
}

impl Figure for LatencyFigure {
    fn size(&self) -> (u32, u32) {
        let (r, c) = (self.layers.len() as u32, self.times.len() as u32);
        ((80 + 560 * c).max(960), 150 + 440 * r)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = [
            LegendItem::line(
                "AIMC tile (one group)",
                BLUE,
                Line::Solid,
                Some(Marker::Circle),
            ),
            LegendItem::line(
                "PMCA (transfer + LoRA, one group)",
                VERMILLION,
                Line::Solid,
                Some(Marker::Triangle),
            ),
        ];
        let body = frame(
            root,
            "Latency of one token group: AIMC tile vs PMCA",
            &legend,
        )?;
        let body = shared_descs(&body, "tokens per group t", "latency per group (ns)")?;
        let cells = body.split_evenly((self.layers.len(), self.times.len()));
        for (li, layer) in self.layers.iter().enumerate() {
            for (ti, t) in self.times.iter().enumerate() {
                let area = &cells[li * self.times.len() + ti];
                let caption = format!("{layer}, {}", ns_label(*t));
                let mut chart = panel(
                    area,
                    &caption,
                    self.x.clone(),
                    self.y.clone(),
                    ("", ""),
                    true,
                )?;
                let Some(s) = self.series.get(&(li, ti)) else {
                    continue;
                };
                for (k, color, m) in [(0, BLUE, Marker::Circle), (1, VERMILLION, Marker::Triangle)]
                {
                    let pts: Vec<(f64, f64)> = s
                        .iter()
                        .map(|p| (p.0, if k == 0 { p.1 } else { p.2 }))
                        .collect();
                    chart.draw_series(LineSeries::new(
                        pts.clone(),
                        ShapeStyle::from(color).stroke_width(3),
                    ))?;
                    for p in pts {
                        draw_marker(chart.plotting_area(), p, m, color)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// AIMC and PMCA latency of one token group (ns, log y) against the tokens
/// per group t (log2 x), one panel per layer size (rows, sorted by size) and
/// integration time (columns, ascending), titled like "512x128, 256 ns".
/// Writes `latency_vs_tokens.svg` and `.png` into `dir` and returns their
/// paths.
pub fn latency_vs_tokens(points: &[LayerPoint], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let stem = "latency_vs_tokens";
    let file = dir.join(format!("{stem}.svg"));
    if points.is_empty() {
        return Err(PlotError::Empty {
            file,
            what: "layer points",
        });
    }
    for p in points {
        let at = format!(
            "{} at t = {}, {}",
            p.layer,
            p.tokens,
            ns_label(p.integration_time_ns)
        );
        check_finite(
            &file,
            &format!("integration_time_ns of {at}"),
            p.integration_time_ns,
            false,
        )?;
        check_finite(&file, &format!("tokens of {at}"), f64::from(p.tokens), true)?;
        check_finite(&file, &format!("aimc_ns of {at}"), p.aimc_ns, true)?;
        check_finite(&file, &format!("pmca_ns of {at}"), p.pmca_ns, true)?;
    }
    let layers = layer_order(points.iter().map(|p| p.layer.as_str()));
    let times = sorted_times(points.iter().map(|p| p.integration_time_ns));
    let mut series = Series::new();
    for p in points {
        let li = layers.iter().position(|l| *l == p.layer).expect("listed");
        let ti = times
            .iter()
            .position(|t| *t == p.integration_time_ns)
            .expect("listed");
        let s = series.entry((li, ti)).or_default();
        let t = f64::from(p.tokens);
        if s.iter().any(|q| q.0 == t) {
            return Err(invalid(
                file,
                format!(
                    "two points for {} at t = {}, {}",
                    p.layer,
                    p.tokens,
                    ns_label(p.integration_time_ns)
                ),
            ));
        }
        s.push((t, p.aimc_ns, p.pmca_ns));
    }
    for s in series.values_mut() {
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let tokens: Vec<f64> = points.iter().map(|p| f64::from(p.tokens)).collect();
    let lat: Vec<f64> = points.iter().flat_map(|p| [p.aimc_ns, p.pmca_ns]).collect();
    let fig = LatencyFigure {
        x: log2_axis(&tokens, &[], true),
        y: log10_axis(&lat),
        layers,
        times,
        series,
    };
    write_figure(dir, stem, &fig)
}

// ---------------------------------------------------------------------------
// (b) TCDM footprint against tokens
// ---------------------------------------------------------------------------

struct TcdmFigure {
    layers: Vec<String>,
    /// Per layer: [(t, LoRA step KiB, schedule KiB)] sorted by t.
    series: Vec<Vec<(f64, f64, f64)>>,
    capacity_kib: f64,
    x: Axis,
    y: Axis,
}

fn kib_label(kib: f64) -> String {
    format!("{} KiB", fmt_num(kib))
}

impl Figure for TcdmFigure {
    fn size(&self) -> (u32, u32) {
        (1500, 720)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend: Vec<LegendItem> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LegendItem::line(l.clone(), palette(i), Line::Solid, Some(marker(i))))
            .collect();
        let cap_label = format!("TCDM capacity ({})", kib_label(self.capacity_kib));
        let body = frame(root, "TCDM footprint of one tile + PMCA pair", &legend)?;
        let cells = body.split_evenly((1, 2));
        let captions = [
            "LoRA step: X, X A, output, A, B",
            "schedule: LoRA step + double buffers",
        ];
        for (k, (area, caption)) in cells.iter().zip(captions).enumerate() {
            let mut chart = panel(
                area,
                caption,
                self.x.clone(),
                self.y.clone(),
                ("tokens per group t", "TCDM footprint (KiB)"),
                true,
            )?;
            let cap = self.capacity_kib;
            chart.draw_series(DashedLineSeries::new(
                vec![(self.x.lo, cap), (self.x.hi, cap)],
                12,
                8,
                ShapeStyle::from(BLACK).stroke_width(2),
            ))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((self.x.lo, cap))
                    + Text::new(
                        cap_label.clone(),
                        (8, -6),
                        font(LABEL_PX).pos(Pos::new(HPos::Left, VPos::Bottom)),
                    ),
            ))?;
            for (i, s) in self.series.iter().enumerate() {
                let pts: Vec<(f64, f64)> = s
                    .iter()
                    .map(|p| (p.0, if k == 0 { p.1 } else { p.2 }))
                    .collect();
                chart.draw_series(LineSeries::new(
                    pts.clone(),
                    ShapeStyle::from(palette(i)).stroke_width(3),
                ))?;
                for p in pts {
                    draw_marker(chart.plotting_area(), p, marker(i), palette(i))?;
                }
            }
        }
        Ok(())
    }
}

/// TCDM footprint (KiB, log2 y) of the LoRA step (`tcdm_bytes`, left panel)
/// and of the schedule (`tcdm_schedule_bytes`, right panel) against the
/// tokens per group t (log2 x), one line per layer size, with the capacity
/// (`capacity_bytes`, bytes) as a dashed line labelled "TCDM capacity (128
/// KiB)". The footprint does not depend on the integration time: when
/// several points share a layer and t, the largest footprint is drawn.
/// Writes `tcdm_vs_tokens.svg` and `.png` into `dir`.
pub fn tcdm_vs_tokens(
    points: &[LayerPoint],
    capacity_bytes: u64,
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let stem = "tcdm_vs_tokens";
    let file = dir.join(format!("{stem}.svg"));
    if points.is_empty() {
        return Err(PlotError::Empty {
            file,
            what: "layer points",
        });
    }
    if capacity_bytes == 0 {
        return Err(invalid(file, "the TCDM capacity is 0 bytes".into()));
    }
    for p in points {
        let at = format!("{} at t = {}", p.layer, p.tokens);
        check_finite(&file, &format!("tokens of {at}"), f64::from(p.tokens), true)?;
        check_finite(
            &file,
            &format!("tcdm_bytes of {at}"),
            p.tcdm_bytes as f64,
            true,
        )?;
        check_finite(
            &file,
            &format!("tcdm_schedule_bytes of {at}"),
            p.tcdm_schedule_bytes as f64,
            true,
        )?;
    }
    let layers = layer_order(points.iter().map(|p| p.layer.as_str()));
    let mut series: Vec<BTreeMap<u32, (u64, u64)>> = vec![BTreeMap::new(); layers.len()];
    for p in points {
        let li = layers.iter().position(|l| *l == p.layer).expect("listed");
        let e = series[li].entry(p.tokens).or_insert((0, 0));
        e.0 = e.0.max(p.tcdm_bytes);
        e.1 = e.1.max(p.tcdm_schedule_bytes);
    }
    let kib = |b: u64| b as f64 / 1024.0;
    let series: Vec<Vec<(f64, f64, f64)>> = series
        .into_iter()
        .map(|m| {
            m.into_iter()
                .map(|(t, (a, b))| (f64::from(t), kib(a), kib(b)))
                .collect()
        })
        .collect();
    let capacity_kib = kib(capacity_bytes);
    let tokens: Vec<f64> = points.iter().map(|p| f64::from(p.tokens)).collect();
    let bytes: Vec<f64> = series.iter().flatten().flat_map(|p| [p.1, p.2]).collect();
    let fig = TcdmFigure {
        x: log2_axis(&tokens, &[], true),
        y: log2_axis(&bytes, &[capacity_kib], false),
        layers,
        series,
        capacity_kib,
    };
    write_figure(dir, stem, &fig)
}

// ---------------------------------------------------------------------------
// (c) latency per layer
// ---------------------------------------------------------------------------

struct BarsFigure {
    names: Vec<String>,
    times: Vec<f64>,
    /// (time index, layer index) -> (with LoRA us, without LoRA us).
    values: BTreeMap<(usize, usize), (f64, f64)>,
    /// The tick label of each layer (its name, or a short form).
    labels: Vec<String>,
    /// The x axis description (says how names were shortened).
    x_desc: String,
    width: u32,
}

/// Pixels a tick label takes, with some air.
fn label_px(text: &str) -> f64 {
    text_w(text, LABEL_PX) + 14.0
}

/// `layer.12` -> (`layer.N`, `12`): the last run of digits of a name and
/// the name with that run written `N`.
fn number_pattern(name: &str) -> Option<(String, String)> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = name[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    Some((
        format!("{}N{}", &name[..start], &name[end..]),
        name[start..end].to_string(),
    ))
}

/// Short tick labels for layer names too long for the `room` (pixels) each
/// layer has, and the x axis description that explains them. A number
/// stands for a numbered name (`layer.12` -> `12`, key `N = layer.N`),
/// other names too long are cut with `…` (`emb… = embedding`). When that
/// gives ambiguous labels or too long a key, layers are labelled by index.
fn short_labels(names: &[String], room: f64) -> (Vec<String>, String) {
    let mut labels = Vec::with_capacity(names.len());
    let mut key: Vec<String> = Vec::new();
    for n in names {
        let label = if let Some((pattern, number)) = number_pattern(n) {
            let k = format!("N = {pattern}");
            if !key.contains(&k) {
                key.push(k);
            }
            number
        } else if label_px(n) <= room {
            n.clone()
        } else {
            let chars: Vec<char> = n.chars().collect();
            let cut = (1..chars.len())
                .rev()
                .map(|k| chars[..k].iter().collect::<String>() + "…")
                .find(|c| label_px(c) <= room)
                .unwrap_or_else(|| chars[0].to_string() + "…");
            key.push(format!("{cut} = {n}"));
            cut
        };
        labels.push(label);
    }
    let unique = labels
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        == labels.len();
    if unique && key.len() <= 4 {
        return (labels, format!("layer ({})", key.join(", ")));
    }
    let last = names.len() - 1;
    (
        (0..names.len()).map(|i| i.to_string()).collect(),
        format!(
            "layer index (0 = {}, …, {last} = {})",
            names[0], names[last]
        ),
    )
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... at least `raw`.
fn nice_step(raw: f64) -> usize {
    let mut p = 1usize;
    loop {
        for m in [1, 2, 5] {
            if (m * p) as f64 >= raw {
                return m * p;
            }
        }
        p *= 10;
    }
}

impl BarsFigure {
    fn x_axis(&self) -> Axis {
        let n = self.names.len();
        // Label every k-th layer when even the labels would overlap.
        let per_layer = (f64::from(self.width) - 200.0) / n as f64;
        let widest = self.labels.iter().map(|s| label_px(s)).fold(0.0, f64::max);
        let every = nice_step(widest / per_layer);
        let major = (0..n)
            .filter(|i| i % every == 0)
            .map(|i| (i as f64, self.labels[i].clone()))
            .collect();
        Axis {
            lo: -0.6,
            hi: n as f64 - 0.4,
            log: false,
            major,
            minor: Vec::new(),
        }
    }
}

impl Figure for BarsFigure {
    fn size(&self) -> (u32, u32) {
        (self.width, 150 + 360 * self.times.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = [
            LegendItem::bar("without LoRA", BLUE),
            LegendItem::bar("with LoRA", VERMILLION),
        ];
        let body = frame(root, "Latency per layer, with and without LoRA", &legend)?;
        let body = shared_descs(&body, &self.x_desc, "latency (µs)")?;
        let cells = body.split_evenly((self.times.len(), 1));
        let n = self.names.len();
        let max = self
            .values
            .values()
            .flat_map(|v| [v.0, v.1])
            .fold(0.0, f64::max);
        let y = linear_axis(0.0, max, 5, true);
        for (ti, t) in self.times.iter().enumerate() {
            let caption = format!("integration time {}", ns_label(*t));
            let mut chart = panel(
                &cells[ti],
                &caption,
                self.x_axis(),
                y.clone(),
                ("", ""),
                false,
            )?;
            let w = 0.38;
            for li in 0..n {
                let Some(&(with, without)) = self.values.get(&(ti, li)) else {
                    continue;
                };
                let x = li as f64;
                chart.draw_series([
                    Rectangle::new(
                        [(x - w, 0.0), (x, without)],
                        ShapeStyle::from(BLUE).filled(),
                    ),
                    Rectangle::new(
                        [(x, 0.0), (x + w, with)],
                        ShapeStyle::from(VERMILLION).filled(),
                    ),
                ])?;
            }
        }
        Ok(())
    }
}

/// Total latency of each layer (µs, bars) with and without LoRA, one panel
/// per integration time (stacked, same y scale). Layers keep the order of
/// first appearance; they are labelled by name, or, when the names would
/// not fit, by a short form the x axis description explains (`layer.12` ->
/// `12`, `embedding` -> `emb…`). Writes
/// `layer_latency.svg` and `.png` into `dir`.
pub fn layer_latency_bars(layers: &[LayerLatency], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let stem = "layer_latency";
    let file = dir.join(format!("{stem}.svg"));
    if layers.is_empty() {
        return Err(PlotError::Empty {
            file,
            what: "layer latencies",
        });
    }
    for l in layers {
        let at = format!("layer {} at {}", l.layer, ns_label(l.integration_time_ns));
        check_finite(
            &file,
            &format!("integration_time_ns of {at}"),
            l.integration_time_ns,
            false,
        )?;
        check_finite(
            &file,
            &format!("with_lora_ns of {at}"),
            l.with_lora_ns,
            false,
        )?;
        check_finite(
            &file,
            &format!("without_lora_ns of {at}"),
            l.without_lora_ns,
            false,
        )?;
    }
    let mut names: Vec<String> = Vec::new();
    for l in layers {
        if !names.contains(&l.layer) {
            names.push(l.layer.clone());
        }
    }
    let times = sorted_times(layers.iter().map(|l| l.integration_time_ns));
    let mut values = BTreeMap::new();
    for l in layers {
        let li = names.iter().position(|n| *n == l.layer).expect("listed");
        let ti = times
            .iter()
            .position(|t| *t == l.integration_time_ns)
            .expect("listed");
        if values
            .insert(
                (ti, li),
                (l.with_lora_ns / 1000.0, l.without_lora_ns / 1000.0),
            )
            .is_some()
        {
            return Err(invalid(
                file,
                format!(
                    "two entries for layer {} at {}",
                    l.layer,
                    ns_label(l.integration_time_ns)
                ),
            ));
        }
    }
    let n = names.len();
    let width = (200 + 64 * n as u32).clamp(1200, 2400);
    ensure_font(&file)?;
    let per_layer = (f64::from(width) - 200.0) / n as f64;
    let (labels, mut x_desc) = if names.iter().all(|s| label_px(s) <= per_layer) {
        (names.clone(), "layer".to_string())
    } else {
        short_labels(&names, per_layer)
    };
    if text_w(&x_desc, DESC_PX) > f64::from(width) - 120.0 {
        x_desc = if x_desc.starts_with("layer index") {
            "layer index (in input order)".into()
        } else {
            "layer".into()
        };
    }
    let fig = BarsFigure {
        names,
        times,
        values,
        labels,
        x_desc,
        width,
    };
    write_figure(dir, stem, &fig)
}

// ---------------------------------------------------------------------------
// (d) metric against drift time
// ---------------------------------------------------------------------------

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
const YEAR: f64 = 365.25 * DAY;
/// Named drift ticks: seconds and label.
const DRIFT_TICKS: [(f64, &str); 9] = [
    (1.0, "1 s"),
    (60.0, "1 min"),
    (HOUR, "1h"),
    (DAY, "1d"),
    (7.0 * DAY, "1w"),
    (YEAR / 12.0, "1mo"),
    (YEAR, "1y"),
    (10.0 * YEAR, "10y"),
    (100.0 * YEAR, "100y"),
];

struct DriftFigure {
    /// The figure's title (`None`: named after the metric).
    title: Option<String>,
    metrics: Vec<String>,
    variants: Vec<String>,
    /// Drawn dashed in every panel, listed after the variants in the legend.
    refs: Vec<ReferenceLine>,
    /// (metric index, variant index) -> [(x s, mean, std)] sorted by x.
    series: Series,
    x: Axis,
    /// One y axis per metric.
    ys: Vec<Axis>,
}

impl Figure for DriftFigure {
    fn size(&self) -> (u32, u32) {
        let (r, c) = grid(self.metrics.len(), 2);
        ((120 + 860 * c as u32).max(960), 150 + 560 * r as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut legend: Vec<LegendItem> = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| LegendItem::line(v.clone(), palette(i), Line::Solid, Some(marker(i))))
            .collect();
        legend.extend(reference_legend(&self.refs));
        let title = if let Some(t) = &self.title {
            t.clone()
        } else if self.metrics.len() == 1 {
            let m = &self.metrics[0];
            let mut c = m.chars();
            let cap: String = c
                .next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default();
            format!("{cap} against drift time (mean ± std over trials)")
        } else {
            "Metrics against drift time (mean ± std over trials)".to_string()
        };
        let body = frame(root, &title, &legend)?;
        let cells = body.split_evenly(grid(self.metrics.len(), 2));
        let nv = self.variants.len();
        // Variants are shifted apart a little so that error bars do not
        // hide each other.
        let span = (self.x.hi / self.x.lo).ln();
        for (mi, metric) in self.metrics.iter().enumerate() {
            let caption = if self.metrics.len() == 1 {
                ""
            } else {
                metric.as_str()
            };
            let mut chart = panel(
                &cells[mi],
                caption,
                self.x.clone(),
                self.ys[mi].clone(),
                ("drift time since programming", metric),
                true,
            )?;
            draw_references(&mut chart, &self.refs)?;
            for (vi, _) in self.variants.iter().enumerate() {
                let Some(s) = self.series.get(&(mi, vi)) else {
                    continue;
                };
                let color = palette(vi);
                let shift = ((vi as f64 - (nv as f64 - 1.0) / 2.0) * span * 0.007).exp();
                let pts: Vec<(f64, f64)> = s.iter().map(|p| (p.0 * shift, p.1)).collect();
                chart.draw_series(LineSeries::new(
                    pts.clone(),
                    ShapeStyle::from(color).stroke_width(3),
                ))?;
                let bar = ShapeStyle::from(color).stroke_width(2);
                for p in s.iter().filter(|p| p.2 > 0.0) {
                    let x = p.0 * shift;
                    let (lo, hi) = (p.1 - p.2, p.1 + p.2);
                    chart.draw_series([PathElement::new(vec![(x, lo), (x, hi)], bar)])?;
                    for y in [lo, hi] {
                        chart
                            .draw_series([EmptyElement::at((x, y))
                                + PathElement::new(vec![(-6, 0), (6, 0)], bar)])?;
                    }
                }
                for p in pts {
                    draw_marker(chart.plotting_area(), p, marker(vi), color)?;
                }
            }
        }
        Ok(())
    }
}

/// A metric (y, its own unit, named by `metric`) against drift time (log
/// x, seconds, ticks 1h, 1d, 1w, 1mo, 1y, 10y within the data's range;
/// drift 0 drawn at the left edge and labelled "0 s"), one line per variant
/// with error bars mean ± std, one panel per distinct metric. Writes
/// `accuracy_vs_drift.svg` and `.png` into `dir`.
pub fn accuracy_vs_drift(points: &[AccuracyPoint], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    drift_plot("accuracy_vs_drift", None, points, &[], false, dir)
}

/// As [`accuracy_vs_drift`], written to `dir/STEM.svg` and `.png`, with
/// `title`, the `refs` drawn dashed across every panel (and listed in the
/// legend after the variants), and drift 0 drawn one typical drift step
/// (a factor 24) left of the smallest positive drift time rather than at
/// 1 s, so that the axis does not spend decades on nothing between 0 s and
/// 1h. The ticks are at the points' drift times (up to 9), labelled as the
/// study names them (`1h`, `1mo`, `1y`).
pub fn drift_with_references(
    stem: &str,
    title: &str,
    points: &[AccuracyPoint],
    refs: &[ReferenceLine],
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    drift_plot(stem, Some(title), points, refs, true, dir)
}

/// A drift time's tick label: the named tick within 2 % of it (a month of
/// 30 d and one of 30.44 d are both `1mo`), else the shortest exact name
/// (`3h`, `90s`).
fn drift_name(v: f64) -> String {
    DRIFT_TICKS
        .iter()
        .find(|(t, _)| (v / t).ln().abs() < 0.02)
        .map_or_else(|| format_drift_time(v), |(_, s)| s.to_string())
}

/// Where drift 0 is drawn: with `compact`, a factor 24 (1h to 1d) left of
/// the smallest positive drift time; else 1 s, or a decade below the
/// smallest positive drift time when that is 1 s or less.
fn zero_position(min_pos: f64, compact: bool) -> f64 {
    if compact && min_pos.is_finite() && min_pos > 24.0 {
        min_pos / 24.0
    } else if min_pos <= 1.0 {
        10f64.powf(min_pos.log10().floor() - 1.0)
    } else {
        1.0
    }
}

fn check_references(file: &Path, refs: &[ReferenceLine]) -> Result<(), PlotError> {
    for r in refs {
        if !r.value.is_finite() {
            return Err(invalid(
                file.to_path_buf(),
                format!("reference line {:?} is at {}", r.label, r.value),
            ));
        }
        check_finite(
            file,
            &format!("band of reference line {:?}", r.label),
            r.band,
            false,
        )?;
    }
    Ok(())
}

fn drift_plot(
    stem: &str,
    title: Option<&str>,
    points: &[AccuracyPoint],
    refs: &[ReferenceLine],
    compact_zero: bool,
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let file = dir.join(format!("{stem}.svg"));
    if points.is_empty() {
        return Err(PlotError::Empty {
            file,
            what: "accuracy points",
        });
    }
    for p in points {
        let at = format!("{} ({}) at {} s", p.variant, p.metric, p.drift_s);
        check_finite(&file, &format!("drift_s of {at}"), p.drift_s, false)?;
        if !p.mean.is_finite() {
            return Err(invalid(file, format!("mean of {at} is {}", p.mean)));
        }
        check_finite(&file, &format!("std of {at}"), p.std, false)?;
    }
    check_references(&file, refs)?;
    let mut metrics: Vec<String> = Vec::new();
    let mut variants: Vec<String> = Vec::new();
    for p in points {
        if !metrics.contains(&p.metric) {
            metrics.push(p.metric.clone());
        }
        if !variants.contains(&p.variant) {
            variants.push(p.variant.clone());
        }
    }
    let min_pos = points
        .iter()
        .map(|p| p.drift_s)
        .filter(|d| *d > 0.0)
        .fold(f64::INFINITY, f64::min);
    let zero = zero_position(min_pos, compact_zero);
    let max = points.iter().map(|p| p.drift_s).fold(zero, f64::max);
    let hi = if max > zero {
        max * (max / zero).powf(0.05)
    } else {
        zero * 10.0
    };
    let lo = zero / (hi / zero).powf(0.04);
    // 1h to 10y always (within range); the finer and coarser ticks only
    // when the data reach them.
    let mut major = vec![(zero, "0 s".to_string())];
    let at_data = sorted_times(points.iter().map(|p| p.drift_s).filter(|d| *d > 0.0));
    // The compact axis is labelled at the data's own drift times, as a
    // study's table names them, when they are few enough to read.
    let named = compact_zero && at_data.len() <= 9;
    if named {
        major.extend(at_data.iter().map(|&v| (v, drift_name(v))));
    }
    for (v, s) in DRIFT_TICKS.into_iter().filter(|_| !named) {
        let needed = if v < HOUR {
            min_pos < HOUR && v >= min_pos / 60.0
        } else {
            v <= 10.0 * YEAR || max > 10.0 * YEAR
        };
        if needed && v > zero * 1.5 && v <= hi {
            major.push((v, s.to_string()));
        }
    }
    let x = Axis {
        lo,
        hi,
        log: true,
        major,
        minor: Vec::new(),
    };
    let mut series = Series::new();
    for p in points {
        let mi = metrics.iter().position(|m| *m == p.metric).expect("listed");
        let vi = variants
            .iter()
            .position(|v| *v == p.variant)
            .expect("listed");
        let xv = if p.drift_s == 0.0 { zero } else { p.drift_s };
        let s = series.entry((mi, vi)).or_default();
        if s.iter().any(|q| q.0 == xv) {
            return Err(invalid(
                file,
                format!(
                    "two points for {} ({}) at {} s",
                    p.variant, p.metric, p.drift_s
                ),
            ));
        }
        s.push((xv, p.mean, p.std));
    }
    for s in series.values_mut() {
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let ys = (0..metrics.len())
        .map(|mi| {
            let vals: Vec<f64> = series
                .iter()
                .filter(|((m, _), _)| *m == mi)
                .flat_map(|(_, s)| s.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]))
                .chain(
                    refs.iter()
                        .flat_map(|r| [r.value - r.band, r.value + r.band]),
                )
                .collect();
            let (a, b) = min_max(&vals);
            linear_axis(a, b, 6, false)
        })
        .collect();
    let fig = DriftFigure {
        title: title.map(str::to_string),
        metrics,
        variants,
        refs: refs.to_vec(),
        series,
        x,
        ys,
    };
    write_figure(dir, stem, &fig)
}

// ---------------------------------------------------------------------------
// Reference lines, error bars
// ---------------------------------------------------------------------------

/// Dash and gap of a reference line, in pixels.
const DASH: i32 = 12;
const DASH_GAP: i32 = 7;

fn reference_color(r: &ReferenceLine) -> RGBColor {
    r.series.map_or(BLACK, palette)
}

fn reference_legend(refs: &[ReferenceLine]) -> Vec<LegendItem> {
    refs.iter()
        .map(|r| LegendItem::line(r.label.clone(), reference_color(r), Line::Dashed, None))
        .collect()
}

/// Draws `refs` across the whole x range of `chart`: the band first (light),
/// then the dashed line.
fn draw_references<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    refs: &[ReferenceLine],
) -> DrawResult<DB> {
    let xr = chart.x_range();
    for r in refs {
        let color = reference_color(r);
        if r.band > 0.0 {
            chart.draw_series([Rectangle::new(
                [(xr.start, r.value - r.band), (xr.end, r.value + r.band)],
                color.mix(0.12).filled(),
            )])?;
        }
        chart.draw_series([DashedPathElement::new(
            vec![(xr.start, r.value), (xr.end, r.value)],
            DASH,
            DASH_GAP,
            ShapeStyle::from(color).stroke_width(2),
        )])?;
    }
    Ok(())
}

/// A line through `pts` (x, mean, std) with markers and mean ± std error
/// bars (none where std is 0).
fn draw_error_series<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    pts: &[(f64, f64, f64)],
    color: RGBColor,
    m: Marker,
) -> DrawResult<DB> {
    chart.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.0, p.1)),
        ShapeStyle::from(color).stroke_width(3),
    ))?;
    let bar = ShapeStyle::from(color).stroke_width(2);
    for p in pts.iter().filter(|p| p.2 > 0.0) {
        let (lo, hi) = (p.1 - p.2, p.1 + p.2);
        chart.draw_series([PathElement::new(vec![(p.0, lo), (p.0, hi)], bar)])?;
        for y in [lo, hi] {
            chart.draw_series([
                EmptyElement::at((p.0, y)) + PathElement::new(vec![(-6, 0), (6, 0)], bar)
            ])?;
        }
    }
    for p in pts {
        draw_marker(chart.plotting_area(), (p.0, p.1), m, color)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (e) accuracy and gain against the LoRA rank
// ---------------------------------------------------------------------------

struct RankFigure {
    title: String,
    /// The series' legend entry.
    label: String,
    /// (rank, mean, std) and (rank, gain mean, gain std), sorted by rank.
    acc: Vec<(f64, f64, f64)>,
    gain: Vec<(f64, f64, f64)>,
    refs: Vec<ReferenceLine>,
    y_desc: String,
    gain_desc: String,
    x: Axis,
    y: Axis,
    y_gain: Axis,
}

/// The sweep's series takes the second palette colour (vermillion), the
/// colour "analog + LoRA" has in a drift figure whose first variant is the
/// model without LoRA.
const RANK_SERIES: usize = 1;

impl Figure for RankFigure {
    fn size(&self) -> (u32, u32) {
        (1500, 720)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let color = palette(RANK_SERIES);
        let m = marker(RANK_SERIES);
        let mut legend = vec![LegendItem::line(
            self.label.clone(),
            color,
            Line::Solid,
            Some(m),
        )];
        legend.extend(reference_legend(&self.refs));
        let body = frame(root, &self.title, &legend)?;
        let cells = body.split_evenly((1, 2));
        let mut chart = panel(
            &cells[0],
            "accuracy",
            self.x.clone(),
            self.y.clone(),
            ("LoRA rank", &self.y_desc),
            true,
        )?;
        draw_references(&mut chart, &self.refs)?;
        draw_error_series(&mut chart, &self.acc, color, m)?;
        let mut chart = panel(
            &cells[1],
            "paired gain over the same chip without LoRA",
            self.x.clone(),
            self.y_gain.clone(),
            ("LoRA rank", &self.gain_desc),
            true,
        )?;
        let zero = ReferenceLine {
            label: String::new(),
            value: 0.0,
            band: 0.0,
            series: None,
        };
        draw_references(&mut chart, std::slice::from_ref(&zero))?;
        draw_error_series(&mut chart, &self.gain, color, m)?;
        Ok(())
    }
}

/// A LoRA rank sweep in two panels against the rank (log2 x, a tick at
/// each rank when they are powers of two): left, the accuracy with LoRA
/// (mean ± std, y labelled `y_desc`, e.g. "test accuracy (%)") with the
/// `refs` drawn dashed across (e.g. the model without LoRA, the digital
/// model); right, the paired gain over the same trial without LoRA (mean
/// ± std, labelled `gain_desc`) with a dashed zero line. `label` names the
/// series in the legend. Writes `dir/STEM.svg` and `.png`.
pub fn rank_sweep(
    stem: &str,
    title: &str,
    label: &str,
    (y_desc, gain_desc): (&str, &str),
    points: &[RankPoint],
    refs: &[ReferenceLine],
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let file = dir.join(format!("{stem}.svg"));
    if points.is_empty() {
        return Err(PlotError::Empty {
            file,
            what: "rank points",
        });
    }
    for p in points {
        let at = format!("rank {}", p.rank);
        check_finite(&file, &at, p.rank, true)?;
        for (what, v) in [("mean", p.mean), ("gain_mean", p.gain_mean)] {
            if !v.is_finite() {
                return Err(invalid(file, format!("{what} of {at} is {v}")));
            }
        }
        check_finite(&file, &format!("std of {at}"), p.std, false)?;
        check_finite(&file, &format!("gain_std of {at}"), p.gain_std, false)?;
    }
    check_references(&file, refs)?;
    let mut pts: Vec<&RankPoint> = points.iter().collect();
    pts.sort_by(|a, b| a.rank.total_cmp(&b.rank));
    if let Some(w) = pts.windows(2).find(|w| w[0].rank == w[1].rank) {
        return Err(invalid(file, format!("two points for rank {}", w[0].rank)));
    }
    let acc: Vec<(f64, f64, f64)> = pts.iter().map(|p| (p.rank, p.mean, p.std)).collect();
    let gain: Vec<(f64, f64, f64)> = pts
        .iter()
        .map(|p| (p.rank, p.gain_mean, p.gain_std))
        .collect();
    let ranks: Vec<f64> = pts.iter().map(|p| p.rank).collect();
    let spread = |s: &[(f64, f64, f64)]| -> Vec<f64> {
        s.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]).collect()
    };
    let mut vals = spread(&acc);
    vals.extend(
        refs.iter()
            .flat_map(|r| [r.value - r.band, r.value + r.band]),
    );
    let (a, b) = min_max(&vals);
    let mut gvals = spread(&gain);
    gvals.push(0.0);
    let (ga, gb) = min_max(&gvals);
    let fig = RankFigure {
        title: title.to_string(),
        label: label.to_string(),
        acc,
        gain,
        refs: refs.to_vec(),
        y_desc: y_desc.to_string(),
        gain_desc: gain_desc.to_string(),
        x: log2_axis(&ranks, &[], true),
        y: linear_axis(a, b, 6, false),
        y_gain: linear_axis(ga, gb, 6, false),
    };
    write_figure(dir, stem, &fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(layer: &str, it: f64, t: u32, aimc: f64, pmca: f64, tcdm: u64, sched: u64) -> LayerPoint {
        LayerPoint {
            layer: layer.into(),
            integration_time_ns: it,
            tokens: t,
            aimc_ns: aimc,
            pmca_ns: pmca,
            tcdm_bytes: tcdm,
            tcdm_schedule_bytes: sched,
        }
    }

    /// `aimcsim layer` for 128x128 and 512x128, rank 8, L = 320.
    pub(super) fn layer_points() -> Vec<LayerPoint> {
        #[rustfmt::skip]
        let rows: [(&str, f64, u32, f64, f64, u64, u64); 30] = [
            ("128x128", 128.0, 8, 1144.8, 1267.2, 8320, 12416),
            ("128x128", 128.0, 16, 2168.8, 2291.2, 12544, 20736),
            ("128x128", 128.0, 32, 4216.8, 4339.2, 20992, 37376),
            ("128x128", 128.0, 64, 8312.8, 8435.2, 37888, 70656),
            ("128x128", 128.0, 128, 16504.8, 16627.2, 71680, 137216),
            ("128x128", 256.0, 8, 2168.8, 1262.2, 8320, 12416),
            ("128x128", 256.0, 16, 4216.8, 2286.2, 12544, 20736),
            ("128x128", 256.0, 32, 8312.8, 4334.2, 20992, 37376),
            ("128x128", 256.0, 64, 16504.8, 8430.2, 37888, 70656),
            ("128x128", 256.0, 128, 32888.8, 16622.2, 71680, 137216),
            ("128x128", 512.0, 8, 4216.8, 1262.2, 8320, 12416),
            ("128x128", 512.0, 16, 8312.8, 2286.2, 12544, 20736),
            ("128x128", 512.0, 32, 16504.8, 4334.2, 20992, 37376),
            ("128x128", 512.0, 64, 32888.8, 8430.2, 37888, 70656),
            ("128x128", 512.0, 128, 65656.8, 16622.2, 71680, 137216),
            ("512x128", 128.0, 8, 1254.8, 2798.2, 20608, 30848),
            ("512x128", 128.0, 16, 2294.8, 5358.2, 30976, 51456),
            ("512x128", 128.0, 32, 4374.8, 10478.2, 51712, 92672),
            ("512x128", 128.0, 64, 8534.8, 20718.2, 93184, 175104),
            ("512x128", 128.0, 128, 16854.8, 41198.2, 176128, 339968),
            ("512x128", 256.0, 8, 2264.8, 2798.2, 20608, 30848),
            ("512x128", 256.0, 16, 4312.8, 5358.2, 30976, 51456),
            ("512x128", 256.0, 32, 8408.8, 10478.2, 51712, 92672),
            ("512x128", 256.0, 64, 16600.8, 20718.2, 93184, 175104),
            ("512x128", 256.0, 128, 32984.8, 41198.2, 176128, 339968),
            ("512x128", 512.0, 8, 4312.8, 2798.2, 20608, 30848),
            ("512x128", 512.0, 16, 8408.8, 5358.2, 30976, 51456),
            ("512x128", 512.0, 32, 16600.8, 10478.2, 51712, 92672),
            ("512x128", 512.0, 64, 32984.8, 20718.2, 93184, 175104),
            ("512x128", 512.0, 128, 65752.8, 41198.2, 176128, 339968),
        ];
        rows.iter()
            .map(|r| lp(r.0, r.1, r.2, r.3, r.4, r.5, r.6))
            .collect()
    }

    /// MobileBERT per-layer spans (ns) from `aimcsim run` at 128, 256 and
    /// 512 ns: embedding, layer.0, layer.1 to layer.22 (equal), layer.23,
    /// head; with and without LoRA.
    pub(super) fn layer_latencies() -> Vec<LayerLatency> {
        #[rustfmt::skip]
        let runs: [(f64, [f64; 5], [f64; 5]); 3] = [
            (128.0, [113_378.0, 406_810.0, 543_589.0, 543_115.0, 247_224.0],
                    [68_414.0, 341_879.0, 520_597.0, 520_123.0, 244_970.0]),
            (256.0, [114_428.0, 419_772.0, 555_807.0, 555_333.0, 248_234.0],
                    [91_333.0, 377_481.0, 532_815.0, 532_341.0, 245_980.0]),
            (512.0, [176_492.0, 506_078.0, 580_383.0, 579_909.0, 250_282.0],
                    [173_253.0, 481_929.0, 557_391.0, 556_917.0, 248_028.0]),
        ];
        let mut out = Vec::new();
        for (it, with, without) in runs {
            let mut names = vec!["embedding".to_string()];
            names.extend((0..24).map(|i| format!("layer.{i}")));
            names.push("head".into());
            for (i, n) in names.into_iter().enumerate() {
                let k = match i {
                    0 => 0,
                    1 => 1,
                    24 => 3,
                    25 => 4,
                    _ => 2,
                };
                out.push(LayerLatency {
                    integration_time_ns: it,
                    layer: n,
                    with_lora_ns: with[k],
                    without_lora_ns: without[k],
                });
            }
        }
        out
    }

    pub(super) fn accuracy_points() -> Vec<AccuracyPoint> {
        let drifts = [0.0, HOUR, DAY, 7.0 * DAY, YEAR / 12.0, YEAR, 10.0 * YEAR];
        let mut out = Vec::new();
        for (v, base, slope, std) in [
            ("digital", 0.91, 0.0, 0.0),
            ("analog", 0.89, 0.012, 0.006),
            ("analog+lora", 0.905, 0.004, 0.004),
        ] {
            for (k, d) in drifts.iter().enumerate() {
                out.push(AccuracyPoint {
                    variant: v.into(),
                    drift_s: *d,
                    mean: base - slope * k as f64,
                    std: std * (1.0 + 0.3 * k as f64),
                    metric: "accuracy".into(),
                });
            }
        }
        out
    }

    /// Width and height from a PNG's signature and IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.len() > 33, "PNG too short");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "IHDR first");
        let w = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let h = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
        (w, h)
    }

    fn check(paths: &[PathBuf], stem: &str, size: (u32, u32), texts: &[&str]) {
        assert_eq!(paths.len(), 2);
        let svg = std::fs::read_to_string(&paths[0]).expect("SVG written");
        assert!(paths[0].ends_with(format!("{stem}.svg")));
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for t in texts {
            assert!(svg.contains(t), "SVG lacks {t:?}");
        }
        assert!(svg.contains(FONT_FAMILY));
        let png = std::fs::read(&paths[1]).expect("PNG written");
        assert!(paths[1].ends_with(format!("{stem}.png")));
        assert_eq!(png_size(&png), size);
        // No temporary file left behind.
        let dir = paths[0].parent().expect("a directory");
        let left: Vec<_> = std::fs::read_dir(dir)
            .expect("readable")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn plot_latency_vs_tokens_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pts = layer_points();
        let paths = latency_vs_tokens(&pts, dir.path()).expect("plotted");
        check(
            &paths,
            "latency_vs_tokens",
            (80 + 560 * 3, 150 + 440 * 2),
            &[
                "tokens per group t",
                "latency per group (ns)",
                "512x128, 256 ns",
                "AIMC tile",
                "128",
            ],
        );
    }

    #[test]
    fn plot_tcdm_vs_tokens_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = tcdm_vs_tokens(&layer_points(), 131_072, dir.path()).expect("plotted");
        check(
            &paths,
            "tcdm_vs_tokens",
            (1500, 720),
            &[
                "TCDM footprint (KiB)",
                "TCDM capacity (128 KiB)",
                "tokens per group t",
                "512x128",
            ],
        );
    }

    #[test]
    fn plot_layer_latency_bars_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = layer_latency_bars(&layer_latencies(), dir.path()).expect("plotted");
        let svg = &paths[0];
        let _ = svg;
        check(
            &paths,
            "layer_latency",
            (200 + 64 * 26, 150 + 360 * 3),
            &[
                "latency (µs)",
                "… = embedding, N = layer.N)",
                "integration time 512 ns",
                "with LoRA",
                "\n23\n",
                "\nhead\n",
            ],
        );
        // Few layers: labelled by name.
        let few: Vec<LayerLatency> = layer_latencies()
            .into_iter()
            .filter(|l| ["embedding", "layer.0", "head"].contains(&l.layer.as_str()))
            .collect();
        let dir2 = tempfile::tempdir().expect("tempdir");
        let paths = layer_latency_bars(&few, dir2.path()).expect("plotted");
        check(
            &paths,
            "layer_latency",
            (1200, 150 + 360 * 3),
            &["embedding", "layer.0", "head"],
        );
    }

    #[test]
    fn plot_accuracy_vs_drift_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = accuracy_vs_drift(&accuracy_points(), dir.path()).expect("plotted");
        check(
            &paths,
            "accuracy_vs_drift",
            (120 + 860, 150 + 560),
            &[
                "drift time since programming",
                "accuracy",
                "0 s",
                "1h",
                "1d",
                "1w",
                "1mo",
                "1y",
                "10y",
                "analog+lora",
            ],
        );
    }

    fn references() -> Vec<ReferenceLine> {
        vec![
            ReferenceLine {
                label: "analog without LoRA, 1y".into(),
                value: 84.0,
                band: 1.1,
                series: Some(0),
            },
            ReferenceLine {
                label: "digital (FP32)".into(),
                value: 91.0,
                band: 0.0,
                series: None,
            },
        ]
    }

    pub(super) fn rank_points() -> Vec<RankPoint> {
        [
            (1.0, 86.0, 0.9),
            (2.0, 87.1, 0.8),
            (4.0, 88.0, 0.6),
            (8.0, 88.6, 0.5),
            (16.0, 88.7, 0.5),
        ]
        .iter()
        .map(|&(rank, mean, std)| RankPoint {
            rank,
            mean,
            std,
            gain_mean: mean - 84.0,
            gain_std: std * 0.8,
        })
        .collect()
    }

    fn percent_points() -> Vec<AccuracyPoint> {
        accuracy_points()
            .into_iter()
            .filter(|p| p.variant != "digital")
            .map(|p| AccuracyPoint {
                mean: 100.0 * p.mean,
                std: 100.0 * p.std,
                metric: "test accuracy (%)".into(),
                ..p
            })
            .collect()
    }

    #[test]
    fn plot_drift_with_references_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refs = &references()[1..];
        let paths = drift_with_references(
            "minilm",
            "Sentiment accuracy against drift",
            &percent_points(),
            refs,
            dir.path(),
        )
        .expect("plotted");
        check(
            &paths,
            "minilm",
            (120 + 860, 150 + 560),
            &[
                "Sentiment accuracy against drift",
                "test accuracy (%)",
                "digital (FP32)",
                "0 s",
                "1h",
                "10y",
            ],
        );
        // Drift 0 is drawn a factor 24 left of 1h (150 s), not at 1 s.
        assert_eq!(zero_position(HOUR, true), 150.0);
        assert_eq!(zero_position(HOUR, false), 1.0);
        assert_eq!(zero_position(0.5, true), 0.01);
        // Named as the study names its drift times: 30 d and 365 d as 1mo
        // and 1y, like 30.44 d and 365.25 d.
        assert_eq!(drift_name(2_592_000.0), "1mo");
        assert_eq!(drift_name(YEAR / 12.0), "1mo");
        assert_eq!(drift_name(31_536_000.0), "1y");
        assert_eq!(drift_name(3.0 * HOUR), "3h");
        let mut bad = references();
        bad[0].value = f64::INFINITY;
        assert!(matches!(
            drift_with_references("x", "t", &percent_points(), &bad, dir.path()),
            Err(PlotError::Invalid { .. })
        ));
    }

    #[test]
    fn plot_rank_sweep_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = rank_sweep(
            "ranks",
            "LoRA rank sweep at 1y",
            "analog + LoRA",
            ("test accuracy (%)", "accuracy gain (points)"),
            &rank_points(),
            &references(),
            dir.path(),
        )
        .expect("plotted");
        check(
            &paths,
            "ranks",
            (1500, 720),
            &[
                "LoRA rank sweep at 1y",
                "LoRA rank",
                "accuracy gain (points)",
                "analog without LoRA, 1y",
                "\n16\n",
            ],
        );
        let d = dir.path().join("bad");
        let e = rank_sweep("r", "t", "s", ("a", "b"), &[], &[], &d).expect_err("empty");
        assert!(matches!(e, PlotError::Empty { .. }));
        let mut pts = rank_points();
        pts.push(pts[0].clone());
        let e = rank_sweep("r", "t", "s", ("a", "b"), &pts, &[], &d).expect_err("twice");
        assert!(e.to_string().contains("two points for rank 1"), "{e}");
        let mut pts = rank_points();
        pts[0].rank = 0.0;
        assert!(matches!(
            rank_sweep("r", "t", "s", ("a", "b"), &pts, &[], &d),
            Err(PlotError::Invalid { .. })
        ));
        assert!(!d.exists(), "nothing written");
    }

    #[test]
    fn plot_empty_input_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let e = latency_vs_tokens(&[], d).expect_err("empty");
        assert!(matches!(e, PlotError::Empty { .. }));
        assert!(e.to_string().contains("latency_vs_tokens.svg"), "{e}");
        assert!(matches!(
            tcdm_vs_tokens(&[], 131_072, d),
            Err(PlotError::Empty { .. })
        ));
        assert!(matches!(
            layer_latency_bars(&[], d),
            Err(PlotError::Empty { .. })
        ));
        assert!(matches!(
            accuracy_vs_drift(&[], d),
            Err(PlotError::Empty { .. })
        ));
        assert_eq!(
            std::fs::read_dir(d).expect("dir").count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn plot_bad_points_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pts = layer_points();
        pts[3].pmca_ns = 0.0;
        let e = latency_vs_tokens(&pts, dir.path()).expect_err("zero on a log axis");
        assert!(
            e.to_string().contains("pmca_ns of 128x128 at t = 64"),
            "{e}"
        );
        let mut pts = layer_points();
        pts.push(pts[0].clone());
        assert!(matches!(
            latency_vs_tokens(&pts, dir.path()),
            Err(PlotError::Invalid { .. })
        ));
        let mut acc = accuracy_points();
        acc[0].mean = f64::NAN;
        assert!(matches!(
            accuracy_vs_drift(&acc, dir.path()),
            Err(PlotError::Invalid { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn plot_layer_point_from_sweep_row() {
        let row: serde_json::Value = serde_json::json!({
            "in_features": 512, "out_features": 128, "integration_time_ns": 256.0,
            "tokens": 8, "rank": 8, "aimc_ns": 2264.8, "pmca_ns": 2798.2,
            "tcdm_bytes": 20608, "tcdm_schedule_bytes": 30848, "tcdm_capacity_bytes": 131072
        });
        let p = LayerPoint::from_row(row.as_object().expect("object")).expect("parsed");
        assert_eq!(p, lp("512x128", 256.0, 8, 2264.8, 2798.2, 20608, 30848));
        let mut bad = row.as_object().expect("object").clone();
        bad.remove("pmca_ns");
        assert!(LayerPoint::from_row(&bad)
            .expect_err("missing")
            .contains("pmca_ns"));
    }

    #[test]
    fn plot_number_labels() {
        assert_eq!(fmt_num(1000.0), "1,000");
        assert_eq!(fmt_num(50_000.0), "50,000");
        assert_eq!(fmt_num(128.0), "128");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(0.3), "0.3");
        assert_eq!(fmt_num(-2.5), "-2.5");
        let a = log10_axis(&[1144.8, 65752.8]);
        let labels: Vec<&str> = a.major.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            labels,
            ["1,000", "2,000", "5,000", "10,000", "20,000", "50,000", "100,000"]
        );
    }

    /// Writes the sample figures to `$AIMCSIM_PLOT_DIR` (for looking at
    /// them); skipped when unset.
    #[test]
    fn plot_samples_to_dir() {
        let Some(dir) = std::env::var_os("AIMCSIM_PLOT_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        latency_vs_tokens(&layer_points(), &dir).expect("plotted");
        tcdm_vs_tokens(&layer_points(), 131_072, &dir).expect("plotted");
        layer_latency_bars(&layer_latencies(), &dir).expect("plotted");
        accuracy_vs_drift(&accuracy_points(), &dir).expect("plotted");
        drift_with_references(
            "drift_with_references",
            "Sentiment accuracy against drift",
            &percent_points(),
            &references()[1..],
            &dir,
        )
        .expect("plotted");
        rank_sweep(
            "rank_sweep",
            "LoRA rank sweep at 1y",
            "analog + LoRA",
            ("test accuracy (%)", "accuracy gain (points)"),
            &rank_points(),
            &references(),
            &dir,
        )
        .expect("plotted");
        edge_cases(&dir.join("edge"));
    }

    /// Odd inputs drawn without error: single points, t not a power of
    /// two, names that are not sizes, many series, many layers, drift only
    /// at 0 or below 1 s, two metrics.
    fn edge_cases(dir: &Path) {
        let one = [lp("qkv", 256.0, 8, 2168.8, 1262.2, 8320, 12416)];
        latency_vs_tokens(&one, &dir.join("single")).expect("plotted");
        tcdm_vs_tokens(&one, 131_072, &dir.join("single")).expect("plotted");
        let auto: Vec<LayerPoint> = [1u32, 2, 4, 8, 16, 32, 64, 128, 256, 320]
            .iter()
            .map(|&t| {
                let t64 = f64::from(t);
                lp(
                    "1024x4096",
                    128.0,
                    t,
                    130.0 * t64 + 300.0,
                    700.0 * t64 + 200.0,
                    900 * u64::from(t),
                    1800 * u64::from(t),
                )
            })
            .collect();
        latency_vs_tokens(&auto, &dir.join("auto")).expect("plotted");
        tcdm_vs_tokens(&auto, 65_536, &dir.join("auto")).expect("plotted");
        let many: Vec<LayerPoint> = (0..7u64)
            .flat_map(|i| {
                [8u32, 16, 32].map(move |t| {
                    let b = (i + 1) * 4096 * u64::from(t) / 8;
                    lp(
                        &format!("{}x{}", 128 << (i % 3), 64 << (i / 3)),
                        256.0,
                        t,
                        1.0,
                        1.0,
                        b,
                        2 * b,
                    )
                })
            })
            .collect();
        tcdm_vs_tokens(&many, 131_072, &dir.join("many")).expect("plotted");
        let three: Vec<LayerLatency> = ["embedding", "encoder", "head"]
            .iter()
            .enumerate()
            .map(|(i, n)| LayerLatency {
                integration_time_ns: 256.0,
                layer: n.to_string(),
                with_lora_ns: 1000.0 * (i as f64 + 1.0),
                without_lora_ns: 900.0 * (i as f64 + 1.0),
            })
            .collect();
        layer_latency_bars(&three, &dir.join("single")).expect("plotted");
        let deep: Vec<LayerLatency> = (0..200)
            .map(|i| LayerLatency {
                integration_time_ns: 128.0,
                layer: format!("blocks.{i}.mlp"),
                with_lora_ns: 5e4 + 100.0 * f64::from(i),
                without_lora_ns: 4.5e4 + 100.0 * f64::from(i),
            })
            .collect();
        layer_latency_bars(&deep, &dir.join("many")).expect("plotted");
        let zeros: Vec<AccuracyPoint> = ["analog", "digital"]
            .iter()
            .map(|v| AccuracyPoint {
                variant: v.to_string(),
                drift_s: 0.0,
                mean: 0.5,
                std: 0.01,
                metric: "cosine similarity".into(),
            })
            .collect();
        accuracy_vs_drift(&zeros, &dir.join("single")).expect("plotted");
        let mut two = Vec::new();
        for (metric, scale) in [("accuracy", 1.0), ("cosine similarity", 0.5)] {
            for (k, d) in [0.0, 0.1, 20.0, 600.0, HOUR, DAY, YEAR].iter().enumerate() {
                two.push(AccuracyPoint {
                    variant: "analog".into(),
                    drift_s: *d,
                    mean: scale * (0.9 - 0.01 * k as f64),
                    std: 0.005,
                    metric: metric.into(),
                });
            }
        }
        accuracy_vs_drift(&two, &dir.join("many")).expect("plotted");
    }
}
