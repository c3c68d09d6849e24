//! Exporting LoRA adapters as PEFT directories: round trips through
//! `adapter::load`, `match_workload` and `LoraWeights::from_peft` on tiny
//! (aimcsim's node paths, and BERT paths from a checkpoint) and MiniLM
//! (Hugging Face paths), the config fields worked out by hand, the tensor
//! layout, and the refusals (non-empty destination, empty adapter, modules
//! that do not fit or would not read back).

use aimcsim::adapter::export::{checkpoint_path, node_path, write_peft, ExportMeta, ModulePath};
use aimcsim::adapter::{self, Matched};
use aimcsim::config::{self, BlockKind, WeightsSpec, Workload};
use aimcsim::functional::weights_st::SafetensorsWeights;
use aimcsim::functional::{LoraModule, LoraWeights};
use safetensors::tensor::Dtype;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const L: BlockKind = BlockKind::Layer;

fn workload(file: &str) -> Workload {
    config::load_workload(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("workloads")
            .join(file),
    )
    .unwrap()
}

/// Small integers in [-3, 3]: value k of a stream is ((3 i + k) mod 7) - 3.
fn vals(len: usize, k: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 3 + k) % 7) as f32 - 3.0).collect()
}

/// A `m -> n` module of rank `r`: A from stream k, B from stream k + 1.
fn module(m: usize, n: usize, r: usize, scaling: f32, k: usize) -> LoraModule {
    LoraModule {
        in_features: m,
        out_features: n,
        rank: r,
        scaling,
        a: vals(m * r, k),
        b: vals(r * n, k + 1),
    }
}

/// tiny: ranks 2 (four modules) and 1, scalings 2, 0.5 and 3.
fn tiny_lora() -> LoraWeights {
    let mut l = LoraWeights::new("hand-made");
    l.insert(L, Some(0), "query", module(64, 64, 2, 2.0, 1))
        .unwrap();
    l.insert(L, Some(1), "query", module(64, 64, 2, 2.0, 3))
        .unwrap();
    l.insert(L, Some(1), "attention.output", module(64, 64, 2, 0.5, 4))
        .unwrap();
    l.insert(L, Some(0), "output", module(128, 64, 1, 3.0, 5))
        .unwrap();
    l.insert(
        BlockKind::Head,
        None,
        "classifier",
        module(64, 2, 2, 2.0, 6),
    )
    .unwrap();
    l
}

/// The directory read back the way `aimcsim --adapter DIR` reads it.
fn read_back(dir: &Path, w: &Workload) -> (adapter::Adapter, Vec<Matched>, LoraWeights) {
    let a = adapter::load(dir).unwrap();
    let m = adapter::match_workload(&a, w).unwrap();
    let l = LoraWeights::from_peft(&a, &m).unwrap();
    (a, m, l)
}

/// Same keys, and every module's A, B and scaling bit for bit.
fn assert_same(got: &LoraWeights, want: &LoraWeights) {
    assert_eq!(got.keys(), want.keys());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (b, l, op) in want.keys() {
        let (g, e) = (got.get(b, l, &op).unwrap(), want.get(b, l, &op).unwrap());
        assert_eq!(
            (g.in_features, g.out_features, g.rank),
            (e.in_features, e.out_features, e.rank),
            "{op}"
        );
        assert_eq!(g.scaling.to_bits(), e.scaling.to_bits(), "{op}");
        assert_eq!(bits(&g.a), bits(&e.a), "{op} A");
        assert_eq!(bits(&g.b), bits(&e.b), "{op} B");
    }
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tensor of the safetensors file: (shape, F32 values).
fn tensor(file: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn tiny_round_trips_with_node_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out/adapter");
    let w = workload("tiny.ron");
    let lora = tiny_lora();
    let mut provenance = serde_json::Map::new();
    provenance.insert("method".into(), json!("hand-made test values"));
    let meta = ExportMeta {
        base_model: Some("tiny-base".into()),
        provenance,
        ..ExportMeta::default()
    };
    write_peft(&dir, &lora, &w, &node_path, &meta).unwrap();
    assert_eq!(
        names(&dir),
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "aimcsim.json"
        ]
    );
    // Only the adapter in the parent: no temporary directory left.
    assert_eq!(names(&tmp.path().join("out")), ["adapter"]);

    // Four modules of rank 2 against one of rank 1: r = 2. Among the rank-2
    // ones, alpha = scaling x r is 4 three times and 1 once: lora_alpha 4.
    // layer 0 `output` (r 1, alpha 3) gets both patterns, layer 1
    // `attention.output` (alpha 1) an alpha only; their paths without the
    // first component would start with the layer index, so the keys are
    // the whole paths.
    let cfg = json_file(&dir.join("adapter_config.json"));
    let expect = json!({
        "alpha_pattern": {"layer.0.output": 3.0, "layer.1.attention.output": 1.0},
        "base_model_name_or_path": "tiny-base",
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "lora_alpha": 4.0,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": 2,
        "rank_pattern": {"layer.0.output": 1},
        // Key order: layer 0 (`output` < `query`), layer 1, head.
        "target_modules": [
            "layer.0.output",
            "layer.0.query",
            "layer.1.attention.output",
            "layer.1.query",
            "head.classifier"
        ],
        "task_type": null,
        "use_dora": false,
        "use_rslora": false
    });
    assert_eq!(cfg, expect);
    let info = json_file(&dir.join("aimcsim.json"));
    assert_eq!(info["workload"], "tiny");
    assert_eq!(info["source"], "hand-made");
    assert_eq!(info["modules"], 5);
    assert_eq!(info["provenance"]["method"], "hand-made test values");

    // Layout: lora_A is r x in, lora_B out x r. Layer 0 `query` (stream
    // k = 1 for A, 2 for B): A[i][r] = a[2 i + r], so lora_A[1][5] = a[11]
    // = ((33 + 1) mod 7) - 3 = 3 (read untransposed it would be a[69] = 2);
    // B[r][o] = b[64 r + o], so lora_B[5][1] = b[69] = ((207 + 2) mod 7) - 3
    // = 3 (untransposed b[11] = -3).
    let st = dir.join("adapter_model.safetensors");
    let (shape, a) = tensor(&st, "base_model.model.layer.0.query.lora_A.weight");
    assert_eq!((shape, a[64 + 5]), (vec![2, 64], 3.0));
    let (shape, b) = tensor(&st, "base_model.model.layer.0.query.lora_B.weight");
    assert_eq!((shape, b[5 * 2 + 1]), (vec![64, 2], 3.0));
    let (shape, _) = tensor(&st, "base_model.model.layer.0.output.lora_A.weight");
    assert_eq!(shape, [1, 128]);
    let (shape, _) = tensor(&st, "base_model.model.head.classifier.lora_B.weight");
    assert_eq!(shape, [2, 2]);
    let bytes = std::fs::read(&st).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.tensors().len(), 10);
    assert_eq!(
        header.metadata().as_ref().and_then(|m| m.get("format")),
        Some(&"pt".to_string())
    );

    let (a, m, back) = read_back(&dir, &w);
    let out = a
        .modules
        .iter()
        .find(|m| m.path == "base_model.model.layer.0.output")
        .unwrap();
    assert_eq!((out.rank, out.scaling, out.layer), (1, 3.0, Some(0)));
    assert_eq!(m.len(), 5);
    assert_same(&back, &lora);
}

/// MiniLM's module names in Hugging Face's BertModel.
fn bert_path(block: BlockKind, layer: Option<u32>, op: &str) -> Option<String> {
    let i = layer.filter(|_| block == L)?;
    Some(match op {
        "query" | "key" | "value" => format!("encoder.layer.{i}.attention.self.{op}"),
        _ => format!("encoder.layer.{i}.{op}"),
    })
}

#[test]
fn minilm_round_trips_with_hugging_face_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("minilm-adapter");
    let w = workload("minilm_l6.ron");
    let mut lora = LoraWeights::new("hand-made");
    lora.insert(L, Some(0), "query", module(384, 384, 4, 2.0, 1))
        .unwrap();
    lora.insert(L, Some(0), "value", module(384, 384, 4, 2.0, 2))
        .unwrap();
    lora.insert(
        L,
        Some(5),
        "attention.output.dense",
        module(384, 384, 4, 2.0, 3),
    )
    .unwrap();
    lora.insert(
        L,
        Some(3),
        "intermediate.dense",
        module(384, 1536, 8, 2.0, 4),
    )
    .unwrap();
    lora.insert(L, Some(3), "output.dense", module(1536, 384, 2, 0.25, 5))
        .unwrap();
    let meta = ExportMeta {
        base_model: Some("sentence-transformers/all-MiniLM-L6-v2".into()),
        task_type: Some("FEATURE_EXTRACTION".into()),
        ..ExportMeta::default()
    };
    write_peft(&dir, &lora, &w, &bert_path, &meta).unwrap();

    // Ranks 4, 4, 4, 8, 2: r = 4; the rank-4 modules all have alpha
    // 2 x 4 = 8. intermediate.dense: r 8, alpha 16; output.dense: r 2,
    // alpha 0.25 x 2 = 0.5. Keys: the path without `encoder.`.
    let cfg = json_file(&dir.join("adapter_config.json"));
    assert_eq!(cfg["task_type"], "FEATURE_EXTRACTION");
    assert_eq!(
        cfg["base_model_name_or_path"],
        "sentence-transformers/all-MiniLM-L6-v2"
    );
    assert_eq!(
        (cfg["r"].clone(), cfg["lora_alpha"].clone()),
        (json!(4), json!(8.0))
    );
    assert_eq!(
        cfg["rank_pattern"],
        json!({"layer.3.intermediate.dense": 8, "layer.3.output.dense": 2})
    );
    assert_eq!(
        cfg["alpha_pattern"],
        json!({"layer.3.intermediate.dense": 16.0, "layer.3.output.dense": 0.5})
    );
    assert_eq!(
        cfg["target_modules"],
        json!([
            "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.self.value",
            "encoder.layer.3.intermediate.dense",
            "encoder.layer.3.output.dense",
            "encoder.layer.5.attention.output.dense"
        ])
    );
    let st = dir.join("adapter_model.safetensors");
    let (shape, _) = tensor(
        &st,
        "base_model.model.encoder.layer.3.intermediate.dense.lora_A.weight",
    );
    assert_eq!(shape, [8, 384]);
    let (shape, _) = tensor(
        &st,
        "base_model.model.encoder.layer.3.output.dense.lora_B.weight",
    );
    assert_eq!(shape, [384, 2]);

    let (a, m, back) = read_back(&dir, &w);
    let od = a
        .modules
        .iter()
        .find(|m| m.path.ends_with("layer.3.output.dense"))
        .unwrap();
    assert_eq!((od.rank, od.scaling), (2, 0.25));
    // `attention.output.dense` is read back as itself, not as `output.dense`.
    assert!(m
        .iter()
        .any(|x| x.layer == Some(5) && x.op == "attention.output.dense"));
    assert_same(&back, &lora);
}

/// Zero tensors named as in BertForSequenceClassification for tiny.ron.
fn bert_checkpoint(file: &Path) {
    let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut t = |name: String, shape: &[usize]| {
        let n = shape.iter().product();
        ts.push((name, Dtype::F16, shape.to_vec(), vec![0.0; n]));
    };
    for i in 0..2 {
        let p = format!("bert.encoder.layer.{i}");
        for q in ["query", "key", "value"] {
            t(format!("{p}.attention.self.{q}.weight"), &[64, 64]);
        }
        t(format!("{p}.attention.output.dense.weight"), &[64, 64]);
        t(format!("{p}.attention.output.LayerNorm.weight"), &[64]);
        t(format!("{p}.intermediate.dense.weight"), &[128, 64]);
        t(format!("{p}.output.dense.weight"), &[64, 128]);
        t(format!("{p}.output.LayerNorm.weight"), &[64]);
    }
    t("classifier.weight".into(), &[2, 64]);
    crate::common::write_safetensors(file, &ts);
}

#[test]
fn checkpoint_paths_name_the_modules_as_the_checkpoint_does() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("model.safetensors");
    bert_checkpoint(&ckpt);
    let w = workload("tiny.ron");
    let spec = WeightsSpec {
        file: ckpt,
        layers: None,
        names: BTreeMap::new(),
    };
    let st = SafetensorsWeights::open_spec(&spec, &w).unwrap();
    let dir = tmp.path().join("adapter");
    let lora = tiny_lora();
    write_peft(
        &dir,
        &lora,
        &w,
        &checkpoint_path(&st),
        &ExportMeta::default(),
    )
    .unwrap();
    let cfg = json_file(&dir.join("adapter_config.json"));
    assert_eq!(
        cfg["target_modules"],
        json!([
            "bert.encoder.layer.0.output.dense",
            "bert.encoder.layer.0.attention.self.query",
            "bert.encoder.layer.1.attention.output.dense",
            "bert.encoder.layer.1.attention.self.query",
            "classifier"
        ])
    );
    // The same choices as with node paths, keyed by the path without
    // `bert.`.
    assert_eq!(
        cfg["rank_pattern"],
        json!({"encoder.layer.0.output.dense": 1})
    );
    assert_eq!(
        cfg["alpha_pattern"],
        json!({"encoder.layer.0.output.dense": 3.0, "encoder.layer.1.attention.output.dense": 1.0})
    );
    // tiny's `attention.output` is BERT's `attention.output.dense`.
    let (_, m, back) = read_back(&dir, &w);
    assert!(m
        .iter()
        .any(|x| x.layer == Some(1) && x.op == "attention.output"));
    assert_same(&back, &lora);
}

#[test]
fn a_non_empty_destination_is_refused_unless_an_adapter_may_be_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let w = workload("tiny.ron");
    let lora = tiny_lora();
    let keep = ExportMeta::default();
    let replace = ExportMeta {
        overwrite: true,
        ..ExportMeta::default()
    };

    // Someone's directory: refused, with or without overwriting.
    let notes = tmp.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "keep me").unwrap();
    for meta in [&keep, &replace] {
        let e = write_peft(&notes, &lora, &w, &node_path, meta)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&notes.display().to_string()) && e.contains("refusing"),
            "{e}"
        );
    }
    assert_eq!(names(&notes), ["todo.txt"]);

    // An empty directory is filled.
    let dir = tmp.path().join("adapter");
    std::fs::create_dir(&dir).unwrap();
    write_peft(&dir, &lora, &w, &node_path, &keep).unwrap();
    // Written again: refused without overwriting, naming the directory.
    let e = write_peft(&dir, &lora, &w, &node_path, &keep)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("not empty"),
        "{e}"
    );
    // Replaced with overwriting: now one module of rank 3.
    let mut one = LoraWeights::new("second");
    one.insert(L, Some(1), "key", module(64, 64, 3, 1.0, 7))
        .unwrap();
    write_peft(&dir, &one, &w, &node_path, &replace).unwrap();
    let cfg = json_file(&dir.join("adapter_config.json"));
    assert_eq!(
        (cfg["r"].clone(), cfg["lora_alpha"].clone()),
        (json!(3), json!(3.0))
    );
    assert_eq!(cfg["rank_pattern"], json!({}));
    assert_eq!(cfg["target_modules"], json!(["layer.1.key"]));
    let (_, _, back) = read_back(&dir, &w);
    assert_same(&back, &one);
    // No temporary or set-aside copies left beside it.
    assert_eq!(names(tmp.path()), ["adapter", "notes"]);
}

#[test]
fn bad_adapters_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let w = workload("tiny.ron");
    let dir = tmp.path().join("adapter");
    let meta = ExportMeta::default();
    let msg = |l: &LoraWeights, paths: &ModulePath<'_>| {
        write_peft(&dir, l, &w, paths, &meta)
            .unwrap_err()
            .to_string()
    };

    let e = msg(&LoraWeights::new("none"), &node_path);
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("no LoRA modules"),
        "{e}"
    );

    // A projection tiny does not have.
    let mut l = LoraWeights::new("t");
    l.insert(L, Some(0), "gate_proj", module(64, 64, 2, 1.0, 1))
        .unwrap();
    let e = msg(&l, &node_path);
    assert!(
        e.contains("layer 0 `gate_proj`") && e.contains("no Linear"),
        "{e}"
    );

    // A layer tiny does not have.
    let mut l = LoraWeights::new("t");
    l.insert(L, Some(2), "query", module(64, 64, 2, 1.0, 1))
        .unwrap();
    let e = msg(&l, &node_path);
    assert!(
        e.contains("layer 2 `query`") && e.contains("2 layers"),
        "{e}"
    );

    // The wrong shape: `intermediate` is 64 -> 128.
    let mut l = LoraWeights::new("t");
    l.insert(L, Some(0), "intermediate", module(64, 64, 2, 1.0, 1))
        .unwrap();
    let e = msg(&l, &node_path);
    assert!(e.contains("64 -> 64") && e.contains("64 -> 128"), "{e}");

    // A path that reads back as another projection.
    let mut l = LoraWeights::new("t");
    l.insert(L, Some(0), "query", module(64, 64, 2, 1.0, 1))
        .unwrap();
    let e = msg(&l, &|_, l, _| Some(format!("layer.{}.key", l.unwrap())));
    assert!(
        e.contains("layer 0 `query`") && e.contains("read back as layer 0 `key`"),
        "{e}"
    );
    // A path that reads back as nothing.
    let e = msg(&l, &|_, _, _| Some("encoder.layer.0.mlp.gate_proj".into()));
    assert!(e.contains("would not be read back"), "{e}");
    // No path, and a path PEFT could not use.
    let e = msg(&l, &|_, _, _| None);
    assert!(e.contains("no module path"), "{e}");
    let e = msg(&l, &|_, _, _| Some("layer.0.query-proj".into()));
    assert!(e.contains("`layer.0.query-proj`"), "{e}");
    // A task type PEFT does not know.
    let e = write_peft(
        &dir,
        &l,
        &w,
        &node_path,
        &ExportMeta {
            task_type: Some("EMBEDDING".into()),
            ..ExportMeta::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("EMBEDDING"), "{e}");

    // Nothing was created.
    assert!(names(tmp.path()).is_empty());
}
