//! The MiniLM sentiment section of `aimcsim report`: the README section and
//! its tables from a hand-made task report, the files and figures it
//! writes, the `$ASSETS` rewrite of machine paths, and (ignored, needs the
//! assets) a small end-to-end run of the real study.

use aimcsim::config::{self, assets_dir, Architecture};
use aimcsim::report::task::{
    assets_relative, command, readme_section, section, standard_error_points, with_assets_prefix,
    write_task, CSV_FILE, DRIFT_STEM, JSON_FILE, RANK_STEM,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn row(drift: &str, drift_s: f64, variant: &str, acc: (f64, f64), agr: (f64, f64)) -> Value {
    json!({
        "drift": drift, "drift_s": drift_s, "variant": variant,
        "trials": if variant == "digital" { 1 } else { 2 },
        "accuracy_mean": acc.0, "accuracy_std": acc.1,
        "agreement_mean": agr.0, "agreement_std": agr.1,
        "cosine_mean": 0.99, "cosine_std": 0.001,
        "total_ns": 100000.0,
    })
}

fn lora_row(
    drift: &str,
    drift_s: f64,
    acc: (f64, f64),
    agr: (f64, f64),
    gain: (f64, f64),
) -> Value {
    let mut r = row(drift, drift_s, "analog+lora", acc, agr);
    // After cosine_std and before total_ns, as TaskRow serialises them.
    let o = r.as_object_mut().unwrap();
    let total = o.remove("total_ns").unwrap();
    o.insert("gain_mean".into(), json!(gain.0));
    o.insert("gain_std".into(), json!(gain.1));
    o.insert("total_ns".into(), total);
    r
}

/// A rank row at 1y: MiniLM adapts 36 projections; per layer query, key,
/// value and attention.output.dense are 384 -> 384, intermediate 384 ->
/// 1536 and output 1536 -> 384, so a rank-r adapter has r x (4 x 768 +
/// 1920 + 1920) = 6,912 r parameters per layer, 41,472 r for 6 layers, in
/// FP16 twice that in bytes.
fn rank_row(rank: u64, acc: (f64, f64), gain: (f64, f64), agr: (f64, f64), peak: u64) -> Value {
    json!({
        "rank": rank, "drift": "1y", "trials": 2,
        "accuracy_mean": acc.0, "accuracy_std": acc.1,
        "agreement_mean": agr.0, "agreement_std": agr.1,
        "gain_mean": gain.0, "gain_std": gain.1,
        "adapter_params": 41_472 * rank, "adapter_bytes": 2 * 41_472 * rank,
        "total_ns": 200000.0, "peak_tcdm_bytes": peak, "fits_tcdm": peak <= 131_072,
    })
}

/// A task report with known numbers: 2 trials, drift 0s and 1y, LoRA at
/// rank 8, a rank sweep over 1, 8 and 16 at 1y.
fn report() -> Value {
    json!({
        "workload": "all-MiniLM-L6-v2",
        "architecture": "paper",
        "weights": format!("safetensors {}/minilm/model.safetensors: 36 projections (36 with a bias), 13 norms", assets_dir().display()),
        "data": format!("{}/sentiment", assets_dir().display()),
        "trials": 2,
        "seed": 0,
        "pmca_precision": "FP16",
        "train_sentences": 2000,
        "test_sentences": 1000,
        "test_tokens": 14000,
        "head_l2": 0.001,
        "head_train_accuracy": 0.95,
        "digital_accuracy": 0.9,
        "lora": "calibrated",
        "rank": 8,
        "calibration_sentences": 1000,
        "calibration_tokens": 15000,
        "calibrate_at": "0s",
        "robust_chips": 0,
        "adapted_projections": 36,
        "adapter_params": 331_776,
        "adapter_bytes": 663_552,
        "seq_len": 128,
        "total_ns": 250000.0,
        "baseline_ns": 200000.0,
        "tiles": 72,
        "peak_tcdm_bytes": 100000,
        "tcdm_capacity_bytes": 131072,
        "fits_tcdm": true,
        "rows": [
            row("-", 0.0, "digital", (0.9, 0.0), (1.0, 0.0)),
            row("0s", 0.0, "analog", (0.885, 0.005), (0.95, 0.004)),
            lora_row("0s", 0.0, (0.9, 0.0), (0.99, 0.001), (0.015, 0.005)),
            row("1y", 31_536_000.0, "analog", (0.85, 0.012), (0.92, 0.01)),
            lora_row("1y", 31_536_000.0, (0.88, 0.004), (0.97, 0.002), (0.03, 0.01)),
        ],
        "rank_sweep": [
            rank_row(1, (0.86, 0.01), (0.01, 0.005), (0.93, 0.01), 100_000),
            rank_row(8, (0.88, 0.004), (0.03, 0.01), (0.97, 0.002), 140_000),
            rank_row(16, (0.881, 0.005), (0.031, 0.01), (0.97, 0.002), 250_000),
        ],
    })
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The text with every run of whitespace one space: prose is wrapped.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn report_task_section_tables_from_known_numbers() {
    let md = section(&report()).unwrap();
    let l = lines(&md);
    assert_eq!(l[0], "## MiniLM sentiment accuracy under drift");
    // Accuracy in %, one decimal, mean ± std; the digital model once per
    // column without a std (it has no noise); the gain signed, in points.
    for want in [
        "| model | 0s | 1y |",
        "|---|---:|---:|",
        "| digital (FP32) | 90.0 | 90.0 |",
        "| analog | 88.5 ± 0.5 | 85.0 ± 1.2 |",
        "| analog + LoRA (rank 8, calibrated) | 90.0 ± 0.0 | 88.0 ± 0.4 |",
        "| LoRA gain (points, paired) | +1.5 ± 0.5 | +3.0 ± 1.0 |",
        // Agreement.
        "| analog | 95.0 ± 0.4 | 92.0 ± 1.0 |",
        "| analog + LoRA (rank 8, calibrated) | 99.0 ± 0.1 | 97.0 ± 0.2 |",
        // Rank sweep: 41,472 x 1 params, 82,944 B = 81.0 KiB; peak 100,000
        // B = 97.65625 KiB; 140,000 B = 136.71875 KiB, over 128 KiB.
        "| rank | accuracy (%) | gain (points, paired) | agreement (%) | adapter params | adapter (KiB) | peak TCDM (KiB) | fits TCDM |",
        "| 1 | 86.0 ± 1.0 | +1.0 ± 0.5 | 93.0 ± 1.0 | 41,472 | 81.0 | 97.7 | yes |",
        "| 8 | 88.0 ± 0.4 | +3.0 ± 1.0 | 97.0 ± 0.2 | 331,776 | 648.0 | 136.7 | no |",
        // 41,472 x 16 = 663,552 params, 1,327,104 B = 1,296 KiB; 250,000 B
        // = 244.140625 KiB.
        "| 16 | 88.1 ± 0.5 | +3.1 ± 1.0 | 97.0 ± 0.2 | 663,552 | 1,296.0 | 244.1 | no |",
        "### LoRA rank sweep at 1y",
    ] {
        assert!(l.contains(&want), "no line {want:?} in\n{md}");
    }
    // Two tables share the "| analog |" start: accuracy first.
    let acc = l
        .iter()
        .position(|x| x.starts_with("| analog | 88.5"))
        .unwrap();
    let agr = l
        .iter()
        .position(|x| x.starts_with("| analog | 95.0"))
        .unwrap();
    assert!(acc < agr);
    // The sweep's chips are the main rows' (2 trials each, seeds alike):
    // the reference without LoRA is the 1y analog row.
    assert!(
        flat(&md).contains("Without LoRA the same chips score 85.0 ± 1.2 % at 1y."),
        "{md}"
    );
    // sqrt(0.9 x 0.1 / 1000) = 0.0095 -> 0.9 points; sqrt(0.25 / 1000) =
    // 0.0158 -> 1.6 points.
    assert!(
        flat(&md).contains("0.9 points at the digital model's 90.0 %"),
        "{md}"
    );
    assert!(flat(&md).contains("1.6 (at 50 %)"), "{md}");
    assert!(flat(&md).contains("paired"));
    // The commands, with the report's 2 trials and ranks 1 and 8.
    assert!(
        flat(&md).contains("`aimcsim report -o reports/ --task --task-trials 2`"),
        "{md}"
    );
    assert!(flat(&md).contains(
        "`aimcsim --workload workloads/minilm_l6.ron functional --trials 2 --ranks 1,8,16`"
    ));
    assert!(flat(&md).contains(&format!(
        "![Sentiment accuracy against drift time]({DRIFT_STEM}.png)"
    )));
    assert!(flat(&md).contains(&format!("]({RANK_STEM}.png)")));
    // Timing: 200,000 ns = 200.0 µs, 250,000 ns = 250.0 µs.
    assert!(
        flat(&md).contains("200.0 µs without LoRA, 250.0 µs with the rank-8 adapter"),
        "{md}"
    );
    assert!(flat(&md).contains("72 tiles"));
    assert!(flat(&md).contains("on 1,000 test sentences"));
    assert!(flat(&md).contains("2 independent programmings"));
    // Prose is wrapped at 76 columns (tables and figures are not prose);
    // a command is not broken, a longer one stands on a line of its own.
    for x in l
        .iter()
        .filter(|x| !x.starts_with('|') && !x.starts_with('!'))
    {
        let command_alone = x.starts_with('`') && x.trim_end_matches('.').ends_with('`');
        assert!(x.chars().count() <= 76 || command_alone, "{x:?}");
    }
    assert!(l.contains(
        &"`aimcsim --workload workloads/minilm_l6.ron functional --trials 2 --ranks 1,8,16`."
    ));
}

#[test]
fn report_task_section_edge_cases() {
    // No sweep, no LoRA rows: neither their rows nor their sections.
    let mut v = report();
    v.as_object_mut().unwrap().remove("rank_sweep");
    let rows: Vec<Value> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["variant"] != "analog+lora")
        .cloned()
        .collect();
    v["rows"] = Value::Array(rows);
    v["lora"] = json!("none");
    let md = section(&v).unwrap();
    assert!(!flat(&md).contains("LoRA gain"), "{md}");
    assert!(!flat(&md).contains("rank sweep"), "{md}");
    assert!(!flat(&md).contains(RANK_STEM), "{md}");
    assert!(flat(&md).contains("| analog | 88.5 ± 0.5 | 85.0 ± 1.2 |"));
    assert!(flat(&md).contains("--trials 2`"), "{md}");

    // A sweep over fewer chips than the main rows: the reference is the
    // mean the rank rows imply, 0.86 - 0.01 = 85.0 %, without a std.
    let mut v = report();
    for r in v["rank_sweep"].as_array_mut().unwrap() {
        r["trials"] = json!(1);
    }
    let md = section(&v).unwrap();
    assert!(
        flat(&md).contains("Without LoRA the same chips score 85.0 % at 1y."),
        "{md}"
    );
    assert!(
        flat(&md).contains("--ranks 1,8,16 --sweep-trials 1`"),
        "{md}"
    );

    // A gain that rounds to zero from below is "0.0", not "-0.0"; a
    // negative one keeps its sign.
    let mut v = report();
    v["rows"][2]["gain_mean"] = json!(-0.0004);
    v["rows"][4]["gain_mean"] = json!(-0.012);
    let md = section(&v).unwrap();
    assert!(
        flat(&md).contains("| LoRA gain (points, paired) | 0.0 ± 0.5 | -1.2 ± 1.0 |"),
        "{md}"
    );

    // One trial: singular nouns.
    let mut v = report();
    v["trials"] = json!(1);
    let md = flat(&section(&v).unwrap());
    assert!(md.contains("1 independent programming of the chip"), "{md}");
    assert!(md.contains("mean ± std over 1 programming:"), "{md}");

    // The full study's trial count gives the plain command.
    assert_eq!(command(10), "aimcsim report -o reports/ --task");
    assert_eq!(
        command(3),
        "aimcsim report -o reports/ --task --task-trials 3"
    );

    // A missing field is named.
    let mut v = report();
    v.as_object_mut().unwrap().remove("digital_accuracy");
    let e = section(&v).unwrap_err();
    assert!(e.contains("digital_accuracy"), "{e}");
}

#[test]
fn report_task_standard_error() {
    // 1,000 sentences: sqrt(0.5 x 0.5 / 1000) = 1.5811 points at 50 %,
    // sqrt(0.9 x 0.1 / 1000) = 0.9487 at 90 %.
    assert!((standard_error_points(0.5, 1000) - 1.581_138_8).abs() < 1e-6);
    assert!((standard_error_points(0.9, 1000) - 0.948_683_3).abs() < 1e-6);
    assert_eq!(standard_error_points(1.0, 1000), 0.0);
}

#[test]
fn report_task_assets_rewrite() {
    let root = Path::new("/home/u/.cache/aimcsim/assets");
    assert_eq!(
        assets_relative("/home/u/.cache/aimcsim/assets/sentiment", root),
        "$ASSETS/sentiment"
    );
    assert_eq!(
        assets_relative("/home/u/.cache/aimcsim/assets", root),
        "$ASSETS"
    );
    assert_eq!(
        assets_relative(
            "safetensors /home/u/.cache/aimcsim/assets/minilm/model.safetensors: 36 projections",
            root
        ),
        "safetensors $ASSETS/minilm/model.safetensors: 36 projections"
    );
    // A trailing slash on the root changes nothing.
    assert_eq!(assets_relative("/a/b/x", Path::new("/a/b/")), "$ASSETS/x");
    // Longer names that merely start or end like the root are kept.
    for keep in [
        "/home/u/.cache/aimcsim/assets2/x",
        "/x/home/u/.cache/aimcsim/assets/y",
        "relative/path",
    ] {
        assert_eq!(assets_relative(keep, root), keep);
    }
    let v = json!({
        "data": "/home/u/.cache/aimcsim/assets/sentiment",
        "n": 3,
        "list": ["/home/u/.cache/aimcsim/assets/a", 1.5, null],
        "nested": {"w": "file /home/u/.cache/aimcsim/assets/m.st"},
    });
    assert_eq!(
        with_assets_prefix(&v, root),
        json!({
            "data": "$ASSETS/sentiment",
            "n": 3,
            "list": ["$ASSETS/a", 1.5, null],
            "nested": {"w": "file $ASSETS/m.st"},
        })
    );
}

fn is_png(p: &Path) -> bool {
    let b = std::fs::read(p).unwrap();
    b.len() > 100 && b.starts_with(b"\x89PNG\r\n\x1a\n")
}

#[test]
fn report_task_writes_json_csv_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = write_task(d, &report()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            JSON_FILE.to_string(),
            CSV_FILE.into(),
            format!("{DRIFT_STEM}.svg"),
            format!("{DRIFT_STEM}.png"),
            format!("{RANK_STEM}.svg"),
            format!("{RANK_STEM}.png"),
        ]
    );
    for f in &files {
        assert!(f.starts_with(d), "{}", f.display());
    }

    // The JSON: the report with the asset cache written $ASSETS.
    let text = std::fs::read_to_string(d.join(JSON_FILE)).unwrap();
    let root = assets_dir().display().to_string();
    assert!(!text.contains(&root), "{text}");
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["data"], "$ASSETS/sentiment");
    assert!(back["weights"]
        .as_str()
        .unwrap()
        .starts_with("safetensors $ASSETS/minilm/model.safetensors: "));
    assert_eq!(back["rows"], report()["rows"]);
    assert_eq!(back["digital_accuracy"], 0.9);

    // The CSV: the union of the rows' keys in TaskRow's order, the gain
    // cells empty where a row has none.
    let csv = std::fs::read_to_string(d.join(CSV_FILE)).unwrap();
    let l = lines(&csv);
    assert_eq!(l.len(), 6);
    assert_eq!(
        l[0],
        "drift,drift_s,variant,trials,accuracy_mean,accuracy_std,agreement_mean,agreement_std,\
         cosine_mean,cosine_std,gain_mean,gain_std,total_ns"
    );
    assert_eq!(
        l[1],
        "-,0.0,digital,1,0.9,0.0,1.0,0.0,0.99,0.001,,,100000.0"
    );
    assert_eq!(
        l[5],
        "1y,31536000.0,analog+lora,2,0.88,0.004,0.97,0.002,0.99,0.001,0.03,0.01,100000.0"
    );

    // The figures.
    let svg = std::fs::read_to_string(d.join(format!("{DRIFT_STEM}.svg"))).unwrap();
    for t in [
        "all-MiniLM-L6-v2: sentiment accuracy against drift (2 chips, mean ± std)",
        "test accuracy (%)",
        "drift time since programming",
        "digital (FP32)",
        "analog + LoRA (rank 8, calibrated)",
        "0 s",
        "1y",
    ] {
        assert!(svg.contains(t), "{DRIFT_STEM}.svg lacks {t:?}");
    }
    let svg = std::fs::read_to_string(d.join(format!("{RANK_STEM}.svg"))).unwrap();
    for t in [
        "all-MiniLM-L6-v2: LoRA rank sweep at 1y (2 chips, mean ± std)",
        "LoRA rank",
        "accuracy gain (points)",
        "analog without LoRA, 1y",
        "digital (FP32)",
    ] {
        assert!(svg.contains(t), "{RANK_STEM}.svg lacks {t:?}");
    }
    assert!(is_png(&d.join(format!("{DRIFT_STEM}.png"))));
    assert!(is_png(&d.join(format!("{RANK_STEM}.png"))));

    // Writing again gives the same bytes (no clock, no machine path).
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    write_task(d, &report()).unwrap();
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(before == after, "a second write differs");

    // Sample figures for looking at: $AIMCSIM_PLOT_DIR/minilm.
    if let Some(out) = std::env::var_os("AIMCSIM_PLOT_DIR") {
        write_task(&PathBuf::from(out).join("minilm"), &report()).unwrap();
    }
}

#[test]
fn report_task_without_sweep_writes_no_rank_figure() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = report();
    v["rank_sweep"] = json!([]);
    let files = write_task(dir.path(), &v).unwrap();
    assert_eq!(files.len(), 4);
    assert!(!dir.path().join(format!("{RANK_STEM}.svg")).exists());
}

#[test]
fn report_task_bad_report_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = report();
    v.as_object_mut().unwrap().remove("rows");
    let e = write_task(dir.path(), &v).unwrap_err().to_string();
    assert!(e.contains(JSON_FILE) && e.contains("rows"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn report_task_readme_uses_the_json_in_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = config::parse_workload("<built-in>", config::DEFAULT_WORKLOAD_RON).unwrap();
    let arch = Architecture::default();
    let fr = aimcsim::fit::fit(&arch, &w, &[], w.tokens_per_group, 1, &Default::default());

    // No study in the folder: a pointer to --task.
    assert!(readme_section(d).unwrap().is_none());
    let p = aimcsim::report::study::write_readme(d, &w, &fr).unwrap();
    let md = std::fs::read_to_string(&p).unwrap();
    assert!(md.contains("## MiniLM sentiment accuracy under drift\n\nNot generated yet"));
    assert!(flat(&md).contains("`aimcsim report -o reports/ --task`"));

    // With the JSON: the section, before the fit section.
    std::fs::write(d.join(JSON_FILE), report().to_string()).unwrap();
    aimcsim::report::study::write_readme(d, &w, &fr).unwrap();
    let md = std::fs::read_to_string(&p).unwrap();
    let sec = md.find("## MiniLM sentiment accuracy under drift").unwrap();
    assert!(md[sec..].contains("| analog | 88.5 ± 0.5 | 85.0 ± 1.2 |"));
    assert!(sec < md.find("## Does the adapter fit?").unwrap());
    assert!(!flat(&md).contains("Not generated yet"));

    // A broken JSON is an error that names the file.
    std::fs::write(d.join(JSON_FILE), "{ not json").unwrap();
    let e = aimcsim::report::study::write_readme(d, &w, &fr)
        .unwrap_err()
        .to_string();
    assert!(e.contains(JSON_FILE) && e.contains("--task"), "{e}");
}

#[test]
fn report_task_trials_needs_task() {
    let o = Command::new(env!("CARGO_BIN_EXE_aimcsim"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["report", "--task-trials", "2"])
        .output()
        .unwrap();
    // A usage error (clap's exit code 2), before anything runs.
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--task"), "{err}");
}

/// The real study with small options, written and read back.
#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn report_task_end_to_end_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let w = config::load_workload(&root.join(aimcsim::report::task::WORKLOAD_FILE)).unwrap();
    let arch = config::load_architecture(&root.join("architectures/paper.ron")).unwrap();
    let opts = aimcsim::task::TaskOptions {
        test_sentences: Some(40),
        calibration_sentences: 40,
        trials: 2,
        drift_s: vec![0.0, 31_536_000.0],
        sweep_ranks: vec![1, 8],
        ..aimcsim::task::TaskOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = aimcsim::report::task::generate_task(d, &arch, &w, &opts).unwrap();
    assert_eq!(files.len(), 6);
    let text = std::fs::read_to_string(d.join(JSON_FILE)).unwrap();
    assert!(!text.contains(&assets_dir().display().to_string()));
    assert!(text.contains("\"data\": \"$ASSETS/sentiment\""), "{text}");
    let md = readme_section(d).unwrap().unwrap();
    assert!(flat(&md).contains("| model | 0s | 1y |"), "{md}");
    assert!(flat(&md).contains("### LoRA rank sweep at 1y"), "{md}");
    assert!(flat(&md).contains("on 40 test sentences"), "{md}");
    if let Some(out) = std::env::var_os("AIMCSIM_PLOT_DIR") {
        for f in files {
            std::fs::copy(&f, PathBuf::from(&out).join(f.file_name().unwrap())).unwrap();
        }
    }
}
