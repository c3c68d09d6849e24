//! The real model end to end (needs `scripts/fetch-assets.sh`, hence
//! `#[ignore]`): aimcsim's digital forward of all-MiniLM-L6-v2 against the
//! sentence embeddings Hugging Face transformers computed
//! (`tests/data/minilm_reference.json`, `scripts/minilm_reference.py`),
//! several sentences in one pass as separate sequences, and the analog
//! path with an ideal device.

use aimcsim::config::{self, Architecture};
use aimcsim::functional::executor::{ExecConfig, Executor, Stream, Tokens};
use aimcsim::functional::weights_st::SafetensorsWeights;
use aimcsim::functional::{AnalogParams, Precision};
use aimcsim::graph::Graph;
use aimcsim::mapping::Mapping;
use aimcsim::task::embed::{cosine, l2_normalize_rows, mean_pool, Batch, EmbeddingTables};
use aimcsim::task::tokenize::TextTokenizer;
use std::path::{Path, PathBuf};

fn root(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

struct Reference {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(root("tests/data/minilm_reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut r = Reference {
        texts: Vec::new(),
        ids: Vec::new(),
        embeddings: Vec::new(),
    };
    for s in v["sentences"].as_array().unwrap() {
        r.texts.push(s["text"].as_str().unwrap().to_string());
        r.ids.push(
            s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect(),
        );
        r.embeddings.push(
            s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        );
    }
    r
}

/// The sentence embeddings of `streams` for every reference sentence, all
/// sentences in one pass.
fn embed(arch: &Architecture, precision: Precision, streams: &[Stream]) -> Vec<Vec<Vec<f32>>> {
    let w = config::load_workload(&root("workloads/minilm_l6.ron")).unwrap();
    let st = SafetensorsWeights::open(&w).unwrap_or_else(|e| panic!("{e}"));
    let tables = EmbeddingTables::open(st.file()).unwrap();
    let tok = TextTokenizer::open(&config::expand_assets(
        &w.task.as_ref().expect("the workload has a task").tokenizer,
    ))
    .unwrap();
    let r = reference();
    let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| tok.encode(t).unwrap()).collect();
    assert_eq!(
        ids, r.ids,
        "aimcsim's tokenizer disagrees with the reference ids"
    );
    let batch = Batch::new(&tables, &ids).unwrap();
    let graph = Graph::build(&w);
    let map = Mapping::new(&graph, arch, w.tokens_per_group).unwrap();
    let cfg = ExecConfig {
        precision,
        ..ExecConfig::from_arch(arch)
    };
    let exec = Executor::new(&graph, &map, &st, None, cfg).unwrap();
    let ys = exec
        .run(
            Tokens {
                x: &batch.x,
                seqs: &batch.seqs,
            },
            streams,
            &[0.0],
            7,
        )
        .unwrap();
    ys.iter()
        .map(|y| {
            let mut e = mean_pool(y, 384, &batch.seqs).unwrap();
            l2_normalize_rows(&mut e, 384).unwrap();
            e.chunks_exact(384).map(|c| c.to_vec()).collect()
        })
        .collect()
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn the_digital_forward_matches_transformers() {
    let r = reference();
    let e = embed(
        &Architecture::default(),
        Precision::Fp16,
        &[Stream::Reference { lora: false }],
    );
    for (i, (got, want)) in e[0].iter().zip(&r.embeddings).enumerate() {
        let c = cosine(got, want).unwrap();
        assert!(c > 0.9999, "sentence {i} ({:?}): cosine {c}", r.texts[i]);
    }
    // The check discriminates: different sentences are far apart.
    let c01 = cosine(&r.embeddings[0], &r.embeddings[1]).unwrap();
    assert!(c01 < 0.9, "{c01}");
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn an_ideal_analog_chip_with_fp16_pmcas_stays_close_to_transformers() {
    // No device noise and ideal converters: only FP16 on the PMCAs and the
    // tiles' FP16 outputs separate the analog stream from FP32.
    let arch = Architecture {
        analog: AnalogParams::ideal(),
        ..Architecture::default()
    };
    let r = reference();
    let e = embed(
        &arch,
        Precision::Fp16,
        &[Stream::Analog {
            lora: false,
            drift: 0,
            chip: 0,
        }],
    );
    for (i, (got, want)) in e[0].iter().zip(&r.embeddings).enumerate() {
        let c = cosine(got, want).unwrap();
        assert!(c > 0.999, "sentence {i}: cosine {c}");
    }
}
