//! Descriptions: the bundled files load and validate, overrides apply, bad
//! input is refused with the field named.

use aimcsim::config::{self, Architecture, ConfigError, Targets};
use aimcsim::graph::Graph;
use std::path::Path;

fn root(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn paper_ron_is_the_default_architecture() {
    let a = config::load_architecture(&root("architectures/paper.ron")).unwrap();
    assert_eq!(a, Architecture::default());
}

#[test]
fn every_bundled_workload_loads() {
    for f in [
        "mobilebert",
        "bert_base",
        "bert_large",
        "llama3_8b",
        "minilm_l6",
        "tiny",
    ] {
        let w = config::load_workload(&root(&format!("workloads/{f}.ron")))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(w.num_layers >= 1, "{f}");
    }
}

/// MobileBERT's parameters worked out by hand (REFERENCE.md §1): per layer
/// 3 x 128x128 (query, key, attention.output) + 12 x 512x128 (value, the two
/// bottlenecks, 4 intermediate, 4 output, output.bottleneck) = 49,152 +
/// 786,432 = 835,584; x 24 = 20,054,016; + 384x512 embedding transformation
/// (196,608) + 512x2 head (1,024) = 20,251,648.
#[test]
fn mobilebert_parameter_counts() {
    let w = config::load_workload(&root("workloads/mobilebert.ron")).unwrap();
    let g = Graph::build(&w);
    assert_eq!(g.aimc_weights(), 20_251_648);
    // LoRA rank 8, r*(in+out): per layer 3 x 8*256 + 12 x 8*640 = 67,584,
    // x 24 = 1,622,016, + 8*(384+512) = 7,168 + 8*(512+2) = 4,112.
    assert_eq!(g.lora_params(), 1_633_296);
    // qkv: per layer query 2,048 + key 2,048 + value 5,120 = 9,216 x 24.
    let mut q = w.clone();
    q.lora.targets = Targets::Qkv;
    assert_eq!(Graph::build(&q).lora_params(), 221_184);
    // ffn: every layer projection but q, k, v: (67,584 - 9,216) x 24.
    let mut f = w.clone();
    f.lora.targets = Targets::Ffn;
    assert_eq!(Graph::build(&f).lora_params(), 1_400_832);
}

#[test]
fn overrides_apply_units_and_enums() {
    let a = Architecture::default();
    let sets = vec![
        ("aimc.integration_time".to_string(), "128ns".to_string()),
        ("link.output_format".to_string(), "Int8".to_string()),
        ("pmca.tcdm.size".to_string(), "256KiB".to_string()),
    ];
    let b = config::override_architecture(&a, &sets).unwrap();
    assert_eq!(b.aimc.integration_time.0, 128_000);
    assert_eq!(b.link.output_format, config::LinkFormat::Int8);
    assert_eq!(b.pmca.tcdm.size.0, 262_144);
}

#[test]
fn overrides_name_a_missing_field() {
    let a = Architecture::default();
    let e = config::override_architecture(&a, &[("aimc.integraton_time".into(), "1ns".into())])
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("integraton_time") && msg.contains("integration_time"),
        "{msg}"
    );
}

#[test]
fn workload_errors_name_the_field_and_line() {
    let text = std::fs::read_to_string(root("workloads/tiny.ron")).unwrap();
    let bad = text.replace(
        "Linear(name: \"intermediate\", from: \"attention.norm\", in: 64,",
        "Linear(name: \"intermediate\", from: \"attention.norm\", in: 65,",
    );
    assert_ne!(bad, text);
    let e = config::parse_workload("tiny.ron", &bad).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Invalid { .. }));
    assert!(msg.contains("layer[7]") && msg.contains(".in"), "{msg}");
    assert!(msg.contains("65") && msg.contains("64 wide"), "{msg}");
    // The line of the `intermediate` Linear in tiny.ron.
    let line = text
        .lines()
        .position(|l| l.contains("\"intermediate\""))
        .unwrap()
        + 1;
    assert!(msg.starts_with(&format!("tiny.ron:{line}:")), "{msg}");
}

#[test]
fn malformed_ron_reports_the_position() {
    let e = config::parse_workload("w.ron", "Workload(\n  name: \"x\",\n  seq_len: oops,\n)")
        .unwrap_err();
    match e {
        ConfigError::Parse { line, .. } => assert_eq!(line, 3),
        other => panic!("expected a parse error, got {other}"),
    }
}
