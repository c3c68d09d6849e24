//! The command line: exit codes, error messages that name the file and the
//! field, output formats and files.

use std::path::Path;
use std::process::{Command, Output};

fn aimcsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aimcsim"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn layer_json_has_the_contract_fields() {
    let o = aimcsim(&["layer", "--in", "128", "--out", "128", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in [
        "aimc_ns",
        "pmca_ns",
        "pmca_to_aimc",
        "tcdm_bytes",
        "tcdm_schedule_bytes",
        "fits_tcdm",
        "tokens",
        "total_ns",
        "baseline_ns",
        "overhead",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    assert_eq!(v["tokens"], 8);
    assert_eq!(v["rank"], 8);
    assert_eq!(v["seq_len"], 320);
}

#[test]
fn missing_file_exits_2_naming_it() {
    let o = aimcsim(&["--arch", "no/such.ron", "layer", "--in", "8", "--out", "8"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such.ron"), "{}", stderr(&o));
}

#[test]
fn unknown_field_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.ron");
    std::fs::write(&p, "Architecture(aimc: AimcParams(rowz: 4))").unwrap();
    let o = aimcsim(&[
        "--arch",
        p.to_str().unwrap(),
        "layer",
        "--in",
        "8",
        "--out",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("rowz") && e.contains("a.ron:1:"), "{e}");
}

#[test]
fn zero_size_exits_2_naming_the_field() {
    let o = aimcsim(&[
        "--set",
        "arch.aimc.rows=0",
        "layer",
        "--in",
        "8",
        "--out",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("aimc.rows"), "{}", stderr(&o));
    let o = aimcsim(&["layer", "--in", "0", "--out", "8"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn negative_value_exits_2() {
    let o = aimcsim(&["layer", "--in", "-3", "--out", "8"]);
    assert_eq!(o.status.code(), Some(2));
    let o = aimcsim(&[
        "--set",
        "arch.aimc.integration_time=-5ns",
        "layer",
        "--in",
        "8",
        "--out",
        "8",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("negative"), "{}", stderr(&o));
}

#[test]
fn rank_larger_than_the_layer_exits_2() {
    let o = aimcsim(&["layer", "--in", "4", "--out", "4", "--rank", "8"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("rank"), "{}", stderr(&o));
}

#[test]
fn malformed_ron_exits_2_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.ron");
    std::fs::write(&p, "Workload(\n  name: \"x\"\n  seq_len: 3,\n)").unwrap();
    let o = aimcsim(&["--workload", p.to_str().unwrap(), "run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("w.ron:3:"), "{}", stderr(&o));
}

#[test]
fn output_file_follows_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("layer.csv");
    let o = aimcsim(&[
        "layer",
        "--in",
        "128",
        "--out",
        "128",
        "-o",
        p.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("in_features,out_features,rank,tokens"));
    assert!(lines.next().unwrap().starts_with("128,128,8,8,"));
    assert!(!Path::new(&dir.path().join(".layer.csv.partial")).exists());
}

#[test]
fn defaults_print_both_descriptions() {
    let o = aimcsim(&["defaults"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("integration_time: \"256ns\""));
    assert!(s.contains("name: \"MobileBERT\""));
}

#[test]
fn kernel_redmule_reproduces_an_rtl_point() {
    // REFERENCE.md §4: (M, N, K) = (8, 128, 8) took 596 cycles on the RTL.
    let o = aimcsim(&[
        "kernel", "redmule", "--m", "8", "--n", "128", "--k", "8", "--format", "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = v["cycles"].as_f64().unwrap();
    assert!((c - 596.0).abs() / 596.0 < 0.05, "{c}");
}

#[test]
fn functional_rows_and_bad_drift() {
    let o = aimcsim(&[
        "--workload",
        "workloads/tiny.ron",
        "functional",
        "--trials",
        "2",
        "--drift",
        "0s,1d",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    // No adapter: one `analog` row per drift time, no `analog+lora` rows.
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["drift_s"], 86400.0);
    for f in [
        "variant",
        "rel_err_mean",
        "rel_err_std",
        "cosine_mean",
        "snr_db_mean",
        "total_ns",
        "tiles",
        "peak_tcdm_bytes",
    ] {
        assert!(rows[0].get(f).is_some(), "missing {f}");
    }
    assert_eq!(rows[0]["variant"], "analog");
    let o = aimcsim(&[
        "--workload",
        "workloads/tiny.ron",
        "functional",
        "--drift",
        "1fortnight",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--drift"), "{}", stderr(&o));
}
