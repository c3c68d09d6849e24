//! PEFT adapter directories: loading, matching to a workload, errors, and
//! `aimcsim fit` with them.

use aimcsim::adapter::{self, AdapterError};
use aimcsim::config::{self, Architecture};
use aimcsim::fit::{fit, largest_fitting_tokens};
use safetensors::tensor::Dtype;
use std::path::Path;
use std::process::Command;

fn tiny() -> config::Workload {
    config::load_workload(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/tiny.ron"))
        .unwrap()
}

/// Writes a PEFT directory with FP16 zero tensors of the given shapes.
fn write_peft(dir: &Path, config: &str, modules: &[(&str, [usize; 2], [usize; 2])]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    let mut tensors = Vec::new();
    for (m, a, b) in modules {
        let zeros = |s: &[usize; 2]| vec![0.0f32; s[0] * s[1]];
        tensors.push((
            format!("{m}.lora_A.weight"),
            Dtype::F16,
            a.to_vec(),
            zeros(a),
        ));
        tensors.push((
            format!("{m}.lora_B.weight"),
            Dtype::F16,
            b.to_vec(),
            zeros(b),
        ));
    }
    crate::common::write_safetensors(&dir.join("adapter_model.safetensors"), &tensors);
}

const CFG: &str = r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value", "dense"],
  "rank_pattern": {"layer.0.output.dense": 2}, "alpha_pattern": {}, "use_rslora": false, "use_dora": false}"#;

fn modules() -> Vec<(&'static str, [usize; 2], [usize; 2])> {
    vec![
        (
            "base_model.model.encoder.layer.0.attention.self.query",
            [4, 64],
            [64, 4],
        ),
        (
            "base_model.model.encoder.layer.1.attention.self.value",
            [4, 64],
            [64, 4],
        ),
        (
            "base_model.model.encoder.layer.1.attention.output.dense",
            [4, 64],
            [64, 4],
        ),
        (
            "base_model.model.encoder.layer.0.output.dense",
            [2, 128],
            [64, 2],
        ),
        ("base_model.model.classifier", [4, 64], [2, 4]),
    ]
}

#[test]
fn loads_and_matches_a_peft_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_peft(dir.path(), CFG, &modules());
    let a = adapter::load(dir.path()).unwrap();
    assert_eq!(a.modules.len(), 5);
    let out = a
        .modules
        .iter()
        .find(|m| m.path.ends_with("layer.0.output.dense"))
        .unwrap();
    // rank_pattern gives it rank 2: scaling alpha / r = 8 / 2.
    assert_eq!((out.rank, out.scaling, out.layer), (2, 4.0, Some(0)));
    // r (in + out): 3 x 4*128 + 2*192 + 4*66.
    assert_eq!(a.params(), 3 * 512 + 384 + 264);
    let m = adapter::match_workload(&a, &tiny()).unwrap();
    let names: Vec<(Option<u32>, &str)> = m.iter().map(|x| (x.layer, x.op.as_str())).collect();
    assert!(names.contains(&(Some(1), "attention.output")));
    assert!(names.contains(&(Some(0), "output")));
    assert!(names.contains(&(None, "classifier")));
}

#[test]
fn bad_adapters_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let msg = |e: AdapterError| e.to_string();
    // DoRA.
    write_peft(
        &dir.path().join("dora"),
        &CFG.replace("\"use_dora\": false", "\"use_dora\": true"),
        &modules(),
    );
    let e = msg(adapter::load(&dir.path().join("dora")).unwrap_err());
    assert!(
        e.contains("adapter_config.json") && e.contains("DoRA"),
        "{e}"
    );
    // Ranks of A and B disagree.
    write_peft(
        &dir.path().join("ranks"),
        CFG,
        &[("m.layer.0.attention.self.query", [4, 64], [64, 3])],
    );
    let e = msg(adapter::load(&dir.path().join("ranks")).unwrap_err());
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("ranks differ"),
        "{e}"
    );
    // A module the workload does not have.
    write_peft(
        &dir.path().join("unknown"),
        CFG,
        &[("m.layer.0.mlp.gate_proj", [4, 64], [64, 4])],
    );
    let a = adapter::load(&dir.path().join("unknown")).unwrap();
    let e = msg(adapter::match_workload(&a, &tiny()).unwrap_err());
    assert!(
        e.contains("gate_proj") && e.contains("no projection"),
        "{e}"
    );
    // Shapes that do not fit the projection.
    write_peft(
        &dir.path().join("shape"),
        CFG,
        &[("m.layer.0.attention.self.query", [4, 32], [64, 4])],
    );
    let a = adapter::load(&dir.path().join("shape")).unwrap();
    let e = msg(adapter::match_workload(&a, &tiny()).unwrap_err());
    assert!(e.contains("32 -> 64") && e.contains("64 -> 64"), "{e}");
    // Missing directory.
    let e = msg(adapter::load(&dir.path().join("nope")).unwrap_err());
    assert!(e.contains("nope"), "{e}");
}

/// 128 x 128, r = 8: the schedule is X, X A, output, A, B and the next X
/// and output, 64-byte aligned. At t = 122: 31232 + 1952 (-> 1984) + 31232
/// + 2048 + 2048 + 31232 + 31232 = 131008 <= 131072; at t = 123: 132032.
#[test]
fn largest_fitting_tokens_by_hand() {
    assert_eq!(largest_fitting_tokens(128, 8, 128, 320, 131_072), 122);
    assert_eq!(largest_fitting_tokens(128, 8, 128, 100, 131_072), 100);
    assert_eq!(largest_fitting_tokens(512, 8, 512, 320, 1_000), 0);
}

#[test]
fn fit_with_adapters_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    write_peft(dir.path(), CFG, &modules());
    let w = tiny();
    let a = adapter::load(dir.path()).unwrap();
    let m = adapter::match_workload(&a, &w).unwrap();
    let r = fit(
        &Architecture::default(),
        &w,
        &[(a, m)],
        4,
        1,
        &Default::default(),
    );
    assert!(r.fits);
    assert_eq!(r.adapter_params, 3 * 512 + 384 + 264);
    assert_eq!(r.projections.len(), 5);
    let bin = env!("CARGO_BIN_EXE_aimcsim");
    let run = |args: &[&str]| {
        Command::new(bin)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "--workload",
        "workloads/tiny.ron",
        "fit",
        "--adapter",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("FITS"));
    // The 128 KiB TCDM cannot hold BERT-Large's LoRA step at t = 64: exit 1.
    let o = run(&[
        "--workload",
        "workloads/bert_large.ron",
        "fit",
        "--tokens",
        "64",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("DOES NOT FIT"));
    let o = run(&["fit", "--adapter", "/no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
}
