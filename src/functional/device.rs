//! `aimcsim device`: characterises one tile's error against drift time.
//! A random weight matrix W ~ N(0, std^2) and input batch X ~ N(0, 1) are
//! drawn once from the seed; each programming trial programs W onto a
//! fresh tile (its own stream), drifts it to every requested time and
//! compares the effective weights with W and the tile's output with the
//! exact X W. Trials run in parallel (rayon) and are reduced in trial
//! order, so rows are identical at any thread count.
//!
//! Also the parser of drift times as the study writes them (`0s`, `1h`,
//! `1d`, `1w`, `1mo`, `1y`, `10y`, `3600s`).

use super::gemm;
use super::rng::{self, tag};
use super::tile::{AnalogParams, AnalogTile, TileSpec};
use super::FunctionalError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Why a drift time could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid drift time: {reason} (expected e.g. 0s, 3600s, 1h, 1d, 1w, 1mo, 1y, 10y)")]
pub struct DriftTimeError {
    pub input: String,
    pub reason: String,
}

/// Drift-time units in seconds, as the study's scripts count them
/// (1 mo = 30 d, 1 y = 365 d), largest first for formatting.
const DRIFT_UNITS: &[(&str, f64)] = &[
    ("y", 31_536_000.0),
    ("mo", 2_592_000.0),
    ("w", 604_800.0),
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("min", 60.0),
    ("s", 1.0),
];

fn unit_names() -> String {
    let mut v: Vec<&str> = DRIFT_UNITS.iter().map(|(n, _)| *n).collect();
    v.reverse();
    v.join(", ")
}

/// Parses one drift time (`1d`, `1.5h`, `3600s`, `10y`) into seconds.
pub fn parse_drift_time(s: &str) -> Result<f64, DriftTimeError> {
    let err = |reason: String| DriftTimeError {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("empty".into()));
    }
    if t.starts_with('-') {
        return Err(err("negative times are not allowed".into()));
    }
    let idx = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..idx].replace('_', ""), t[idx..].trim());
    if num.is_empty() || num == "." {
        return Err(err("missing number".into()));
    }
    if num.matches('.').count() > 1 {
        return Err(err("more than one decimal point".into()));
    }
    if unit.is_empty() {
        return Err(err(format!("missing unit (one of {})", unit_names())));
    }
    let scale = DRIFT_UNITS
        .iter()
        .find(|(n, _)| *n == unit)
        .map(|(_, k)| *k)
        .ok_or_else(|| err(format!("unknown unit `{unit}` (one of {})", unit_names())))?;
    let v: f64 = num.parse().map_err(|_| err("bad number".into()))?;
    let secs = v * scale;
    if !secs.is_finite() {
        return Err(err("number too large".into()));
    }
    Ok(secs)
}

/// Parses a comma-separated list of drift times (`0s,1h,1d`).
pub fn parse_drift_times(list: &str) -> Result<Vec<f64>, DriftTimeError> {
    if list.trim().is_empty() {
        return Err(DriftTimeError {
            input: list.to_string(),
            reason: "empty list".into(),
        });
    }
    list.split(',')
        .map(|item| {
            if item.trim().is_empty() {
                Err(DriftTimeError {
                    input: list.to_string(),
                    reason: "empty entry in the list".into(),
                })
            } else {
                parse_drift_time(item)
            }
        })
        .collect()
}

/// Formats seconds with the largest unit that divides them exactly
/// (`86400` -> `1d`, `2592000` -> `1mo`, `0` -> `0s`, `1.5` -> `1.5s`).
pub fn format_drift_time(secs: f64) -> String {
    if secs > 0.0 && secs.fract() == 0.0 {
        for &(name, k) in DRIFT_UNITS {
            if (secs / k).fract() == 0.0 {
                return format!("{}{name}", secs / k);
            }
        }
    }
    format!("{secs}s")
}

/// The reference study's inference times (REFERENCE.md §7): 0 s, 1 h, 1 d,
/// 1 w, 1 month (30 d), 1 y (365 d) and 10 y, in seconds.
pub const STUDY_DRIFT_S: [f64; 7] = [
    0.0,
    3_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
    31_536_000.0,
    315_360_000.0,
];

/// What to characterise. Defaults: the command's defaults (512 x 512
/// weights of std 0.02, 320 tokens, the study's seven drift times, 10
/// trials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceStudy {
    /// Rows (inputs) of the weight matrix, <= the tile's rows.
    pub rows: usize,
    /// Columns (outputs) of the weight matrix, <= the tile's columns.
    pub cols: usize,
    /// Standard deviation of the random weights.
    pub weight_std: f64,
    /// Tokens in the input batch.
    pub tokens: usize,
    /// Inference times after programming, seconds.
    pub drift_s: Vec<f64>,
    /// Programming trials (each a fresh programming of the same W).
    pub trials: usize,
    pub seed: u64,
}

impl Default for DeviceStudy {
    fn default() -> Self {
        DeviceStudy {
            rows: 512,
            cols: 512,
            weight_std: 0.02,
            tokens: 320,
            drift_s: STUDY_DRIFT_S.to_vec(),
            trials: 10,
            seed: 0,
        }
    }
}

/// One drift time's statistics over the trials (mean and sample standard
/// deviation; std is 0 for one trial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// The drift time as written (`1d`).
    pub drift: String,
    pub drift_s: f64,
    pub trials: usize,
    /// ||W_eff - W||_F / ||W||_F.
    pub weight_rel_err_mean: f64,
    pub weight_rel_err_std: f64,
    /// ||Y - X W||_F / ||X W||_F with Y the tile's output.
    pub mvm_rel_err_mean: f64,
    pub mvm_rel_err_std: f64,
    /// Cosine similarity of Y and X W (as flattened vectors).
    pub mvm_cosine_mean: f64,
    pub mvm_cosine_std: f64,
    /// GDC's output scale (1 with GDC off).
    pub gdc_alpha_mean: f64,
    pub gdc_alpha_std: f64,
    /// Passes through the array per token, averaged over the batch (1 = no
    /// bound-management re-run), as aihwkit's per-token forward counts them.
    pub bm_passes_mean: f64,
}

/// One trial at one drift time.
#[derive(Debug, Clone, Copy)]
struct Point {
    w_err: f64,
    y_err: f64,
    cosine: f64,
    alpha: f64,
    passes: f64,
}

fn rel_err(a: &[f32], reference: &[f32], ref_norm2: f64) -> f64 {
    let d: f64 = a
        .iter()
        .zip(reference)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    (d / ref_norm2).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count() as f64;
    let mean = v.clone().sum::<f64>() / n;
    if n < 2.0 {
        return (mean, 0.0);
    }
    let var = v.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Runs the study on tiles of `spec` with `params`; one row per drift time
/// in the order given.
pub fn characterise(
    study: &DeviceStudy,
    spec: TileSpec,
    params: &AnalogParams,
) -> Result<Vec<DeviceRow>, FunctionalError> {
    let bad = |w: String| Err(FunctionalError::Param(w));
    if study.trials == 0 {
        return bad("device.trials: must be at least 1".into());
    }
    if study.tokens == 0 {
        return bad("device.tokens: must be at least 1".into());
    }
    if !(study.weight_std.is_finite() && study.weight_std > 0.0) {
        return bad("device.weight_std: must be > 0".into());
    }
    if study.drift_s.is_empty() {
        return bad("device.drift_s: at least one drift time".into());
    }
    if let Some(t) = study
        .drift_s
        .iter()
        .find(|t| !(t.is_finite() && **t >= 0.0))
    {
        return bad(format!("device.drift_s: {t} s is not a time >= 0"));
    }
    let (m, n, tokens) = (study.rows, study.cols, study.tokens);
    if m == 0 || n == 0 || m > spec.rows || n > spec.cols {
        return Err(FunctionalError::Shape(format!(
            "a {m} x {n} weight matrix does not fit a {} x {} tile",
            spec.rows, spec.cols
        )));
    }

    let mut w = vec![0.0f32; m * n];
    rng::fill_standard_normal(&mut rng::stream(study.seed, &[tag::WEIGHTS]), &mut w);
    let std = study.weight_std as f32;
    w.iter_mut().for_each(|v| *v *= std);
    let mut x = vec![0.0f32; tokens * m];
    rng::fill_standard_normal(&mut rng::stream(study.seed, &[tag::INPUTS]), &mut x);
    let y_exact = gemm::matmul(tokens, m, n, &x, &w);
    let w_norm2: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
    let y_norm2: f64 = y_exact.iter().map(|&v| (v as f64).powi(2)).sum();

    let trial = |k: usize| -> Result<Vec<Point>, FunctionalError> {
        let seed = rng::stream_seed(study.seed, &[tag::TRIAL, k as u64]);
        let mut tile = AnalogTile::program(spec, params, &w, m, n, seed)?;
        let mut y = vec![0.0f32; tokens * n];
        study
            .drift_s
            .iter()
            .map(|&t| {
                tile.drift_to(t)?;
                let info = tile.forward_into(&x, tokens, &mut y)?;
                Ok(Point {
                    w_err: rel_err(&tile.effective_weights(), &w, w_norm2),
                    y_err: rel_err(&y, &y_exact, y_norm2),
                    cosine: cosine(&y, &y_exact),
                    alpha: tile.gdc_alpha() as f64,
                    passes: info.token_passes as f64 / study.tokens as f64,
                })
            })
            .collect()
    };
    let per_trial: Vec<Vec<Point>> = (0..study.trials)
        .into_par_iter()
        .map(trial)
        .collect::<Result<_, _>>()?;

    Ok(study
        .drift_s
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let col = |f: fn(&Point) -> f64| per_trial.iter().map(move |p| f(&p[i]));
            let (we, wes) = mean_std(col(|p| p.w_err));
            let (ye, yes) = mean_std(col(|p| p.y_err));
            let (c, cs) = mean_std(col(|p| p.cosine));
            let (a, as_) = mean_std(col(|p| p.alpha));
            let (bm, _) = mean_std(col(|p| p.passes));
            DeviceRow {
                drift: format_drift_time(t),
                drift_s: t,
                trials: study.trials,
                weight_rel_err_mean: we,
                weight_rel_err_std: wes,
                mvm_rel_err_mean: ye,
                mvm_rel_err_std: yes,
                mvm_cosine_mean: c,
                mvm_cosine_std: cs,
                gdc_alpha_mean: a,
                gdc_alpha_std: as_,
                bm_passes_mean: bm,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_times_of_the_study() {
        let cases = [
            ("0s", 0.0),
            ("1h", 3_600.0),
            ("1d", 86_400.0),
            ("1w", 604_800.0),
            ("1mo", 30.0 * 86_400.0),
            ("1y", 365.0 * 86_400.0),
            ("10y", 3_650.0 * 86_400.0),
            ("3600s", 3_600.0),
            ("1.5h", 5_400.0),
            ("2min", 120.0),
            (" 1d ", 86_400.0),
        ];
        for (s, v) in cases {
            assert_eq!(parse_drift_time(s).unwrap(), v, "{s}");
        }
        assert_eq!(
            parse_drift_times("0s,1h,1d,1w,1mo,1y,10y").unwrap(),
            DeviceStudy::default().drift_s
        );
    }

    #[test]
    fn drift_time_errors_say_why() {
        let cases = [
            ("", "empty"),
            ("1", "missing unit"),
            ("3600", "missing unit"),
            ("h", "missing number"),
            ("1x", "unknown unit `x`"),
            ("1m", "unknown unit `m`"),
            ("-1h", "negative"),
            ("1.2.3h", "decimal point"),
            ("abc", "missing number"),
        ];
        for (s, why) in cases {
            let e = parse_drift_time(s).unwrap_err();
            let msg = e.to_string();
            assert!(e.reason.contains(why), "{s}: {msg}");
            assert!(msg.contains("expected e.g."), "{msg}");
        }
        assert!(parse_drift_times("0s,,1h")
            .unwrap_err()
            .reason
            .contains("empty entry"));
        assert!(parse_drift_times("0s,1q")
            .unwrap_err()
            .reason
            .contains("unknown unit"));
        assert!(parse_drift_times(" ").is_err());
    }

    #[test]
    fn drift_times_format_back() {
        for s in ["0s", "1h", "1d", "1w", "1mo", "1y", "10y", "2min", "90s"] {
            assert_eq!(format_drift_time(parse_drift_time(s).unwrap()), s);
        }
        assert_eq!(format_drift_time(1.5), "1.5s");
        assert_eq!(format_drift_time(14.0 * 86_400.0), "2w");
    }

    fn small() -> DeviceStudy {
        DeviceStudy {
            rows: 64,
            cols: 48,
            tokens: 32,
            drift_s: vec![0.0, 86_400.0, 31_536_000.0],
            trials: 3,
            seed: 42,
            ..DeviceStudy::default()
        }
    }

    #[test]
    fn errors_grow_with_drift_and_gdc_keeps_outputs_aligned() {
        let rows = characterise(&small(), TileSpec::default(), &AnalogParams::default()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].drift, "1d");
        for r in &rows {
            assert_eq!(r.trials, 3);
            assert!(
                r.weight_rel_err_mean > 0.01 && r.weight_rel_err_mean < 1.0,
                "{r:?}"
            );
            assert!(r.mvm_cosine_mean > 0.9, "{r:?}");
            assert!(r.weight_rel_err_std > 0.0);
        }
        assert!(rows[2].weight_rel_err_mean > rows[0].weight_rel_err_mean);
        assert!(rows[2].gdc_alpha_mean > rows[1].gdc_alpha_mean);
        assert!(rows[1].gdc_alpha_mean > 1.2);
    }

    #[test]
    fn ideal_tile_has_no_error() {
        let rows = characterise(&small(), TileSpec::default(), &AnalogParams::ideal()).unwrap();
        for r in rows {
            assert!(
                r.weight_rel_err_mean < 1e-6 && r.mvm_rel_err_mean < 1e-5,
                "{r:?}"
            );
            assert!((r.mvm_cosine_mean - 1.0).abs() < 1e-9);
            assert_eq!(r.gdc_alpha_mean, 1.0);
            assert_eq!(r.bm_passes_mean, 1.0);
        }
    }

    #[test]
    fn identical_at_one_and_two_threads() {
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| characterise(&small(), TileSpec::default(), &AnalogParams::default()))
                .unwrap()
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a, b);
        // And the same as a second run (bit-identical, not just close).
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&run(2)).unwrap()
        );
        let mut other = small();
        other.seed = 43;
        let c = characterise(&other, TileSpec::default(), &AnalogParams::default()).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn agrees_with_an_independent_transliteration_of_aihwkit() {
        // Reference values from a NumPy transliteration of aihwkit's
        // PCMLikeNoiseModel, SinglePairConductanceConverter, InferenceTile
        // program/drift, GlobalDriftCompensation and torch AnalogMVM (same
        // settings: 512 x 512, weight std 0.02, column scaling, 8-bit DAC and
        // ADC, out_noise 0.04, out_bound 12), mean of 2 seeds x 3 trials:
        // weight error 0.1186 / 0.1518 / 0.1917 at 0 s / 1 d / 1 y, alpha
        // 0.9995 / 1.5039 / 1.9826, MVM error 0.1557 at 1 d.
        let study = DeviceStudy {
            tokens: 64,
            drift_s: vec![0.0, 86_400.0, 31_536_000.0],
            trials: 2,
            seed: 7,
            ..DeviceStudy::default()
        };
        let rows = characterise(&study, TileSpec::default(), &AnalogParams::default()).unwrap();
        let close = |got: f64, want: f64, tol: f64, what: &str| {
            assert!((got / want - 1.0).abs() < tol, "{what}: {got} vs {want}");
        };
        for (r, (w, a)) in rows
            .iter()
            .zip([(0.1186, 0.9995), (0.1518, 1.5039), (0.1917, 1.9826)])
        {
            close(r.weight_rel_err_mean, w, 0.02, "weight error");
            close(r.gdc_alpha_mean, a, 0.005, "alpha");
        }
        close(rows[1].mvm_rel_err_mean, 0.1557, 0.03, "MVM error at 1 d");
    }

    #[test]
    fn bad_studies_are_rejected() {
        let p = AnalogParams::default();
        let s = TileSpec::default();
        let e = characterise(
            &DeviceStudy {
                trials: 0,
                ..small()
            },
            s,
            &p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("trials"), "{e}");
        let e = characterise(
            &DeviceStudy {
                rows: 600,
                ..small()
            },
            s,
            &p,
        )
        .unwrap_err();
        assert!(matches!(e, FunctionalError::Shape(_)));
        let e = characterise(
            &DeviceStudy {
                drift_s: vec![-1.0],
                ..small()
            },
            s,
            &p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("drift_s"));
    }
}
