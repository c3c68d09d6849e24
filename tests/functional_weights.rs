//! Real weights from safetensors files named in the workload description:
//! Hugging Face names resolved to the graph's projections and norms,
//! `out x in` tensors served transposed, and the errors (missing tensor,
//! wrong or transposed shape, NaN, unsupported dtype, bad path relative to
//! the workload's directory). Expected values are the file's values.

use aimcsim::config::{self, Architecture, Workload};
use aimcsim::functional::executor::graph_input;
use aimcsim::functional::weights_st::{SafetensorsWeights, WeightsError};
use aimcsim::functional::{
    functional_study, functional_study_with, AnalogParams, ExecConfig, ExecError, Executor,
    Precision, Stream, StudyOptions, WeightSource,
};
use aimcsim::graph::{Graph, Node};
use aimcsim::mapping::Mapping;
use safetensors::tensor::Dtype;
use std::path::{Path, PathBuf};

/// (name, dtype, shape, values).
type T = (String, Dtype, Vec<usize>, Vec<f32>);

fn write_st(path: &Path, tensors: &[T]) {
    crate::common::write_safetensors(path, tensors);
}

/// Multiples of 1/128 in [-1/8, 1/8]: exact in F16, unsymmetric in (i, j).
fn vals(len: usize, k: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 5 + k * 7) % 33) as f32 - 16.0) / 128.0)
        .collect()
}

/// Norm gammas near 1, exact in F16.
fn gammas(len: usize, k: usize) -> Vec<f32> {
    (0..len)
        .map(|i| 1.0 + ((i + k) % 9) as f32 / 16.0)
        .collect()
}

fn t(name: &str, dtype: Dtype, shape: &[usize], v: Vec<f32>) -> T {
    (name.to_string(), dtype, shape.to_vec(), v)
}

/// A BERT-like checkpoint for workloads/tiny.ron (2 layers, hidden 64,
/// intermediate 128, a 2-way classifier), F16 and F32 tensors, biases and
/// unrelated tensors included.
fn bert_tensors() -> Vec<T> {
    let mut v = vec![
        t(
            "bert.embeddings.word_embeddings.weight",
            Dtype::F32,
            &[10, 64],
            vals(640, 90),
        ),
        t(
            "bert.embeddings.LayerNorm.weight",
            Dtype::F32,
            &[64],
            gammas(64, 91),
        ),
        t(
            "bert.pooler.dense.weight",
            Dtype::F32,
            &[64, 64],
            vals(4096, 92),
        ),
        t("classifier.weight", Dtype::F32, &[2, 64], vals(128, 93)),
        t("classifier.bias", Dtype::F32, &[2], vec![5.0, -5.0]),
    ];
    for i in 0..2 {
        let p = |s: &str| format!("bert.encoder.layer.{i}.{s}");
        let k = 10 * i;
        v.extend([
            t(
                &p("attention.self.query.weight"),
                Dtype::F16,
                &[64, 64],
                vals(4096, k),
            ),
            t(
                &p("attention.self.query.bias"),
                Dtype::F16,
                &[64],
                vals(64, k + 1),
            ),
            t(
                &p("attention.self.key.weight"),
                Dtype::F32,
                &[64, 64],
                vals(4096, k + 2),
            ),
            t(
                &p("attention.self.value.weight"),
                Dtype::F16,
                &[64, 64],
                vals(4096, k + 3),
            ),
            t(
                &p("attention.output.dense.weight"),
                Dtype::F32,
                &[64, 64],
                vals(4096, k + 4),
            ),
            t(
                &p("attention.output.dense.bias"),
                Dtype::F32,
                &[64],
                vals(64, k + 5),
            ),
            t(
                &p("attention.output.LayerNorm.weight"),
                Dtype::F32,
                &[64],
                gammas(64, k + 6),
            ),
            t(
                &p("attention.output.LayerNorm.bias"),
                Dtype::F16,
                &[64],
                vals(64, k + 7),
            ),
            t(
                &p("intermediate.dense.weight"),
                Dtype::F16,
                &[128, 64],
                vals(8192, k + 8),
            ),
            t(
                &p("output.dense.weight"),
                Dtype::F32,
                &[64, 128],
                vals(8192, k + 9),
            ),
            t(
                &p("output.LayerNorm.weight"),
                Dtype::F16,
                &[64],
                gammas(64, k + 10),
            ),
            t(
                &p("output.LayerNorm.bias"),
                Dtype::F32,
                &[64],
                vals(64, k + 11),
            ),
        ]);
    }
    v
}

fn get<'a>(ts: &'a [T], name: &str) -> &'a T {
    ts.iter().find(|x| x.0 == name).unwrap()
}

fn set(ts: &mut [T], name: &str, f: impl FnOnce(&mut T)) {
    f(ts.iter_mut().find(|x| x.0 == name).unwrap())
}

fn tiny_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/tiny.ron"))
        .unwrap()
}

/// `text` (a workload description) with a `weights` entry before its last
/// parenthesis.
fn with_weights(text: &str, weights: &str) -> String {
    let end = text.rfind(')').unwrap();
    format!("{}    weights: {weights},\n{}", &text[..end], &text[end..])
}

/// A checkpoint at `<dir>/ckpt/model.safetensors` and tiny.ron with a
/// `weights` section at `<dir>/desc/tiny.ron` naming it relatively.
fn setup(dir: &Path, tensors: &[T], weights: &str) -> (PathBuf, Workload) {
    let st = dir.join("ckpt/model.safetensors");
    write_st(&st, tensors);
    let desc = dir.join("desc/tiny.ron");
    std::fs::create_dir_all(desc.parent().unwrap()).unwrap();
    std::fs::write(&desc, with_weights(&tiny_text(), weights)).unwrap();
    (st, config::load_workload(&desc).unwrap())
}

const REL: &str = "Some((file: \"../ckpt/model.safetensors\"))";

fn node<'a>(g: &'a Graph, name: &str) -> &'a Node {
    g.order
        .iter()
        .map(|&i| &g.g[i])
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn ideal_arch() -> Architecture {
    Architecture {
        analog: AnalogParams::ideal(),
        ..Architecture::default()
    }
}

/// W (in x out) from a file's `out x in` values.
fn transposed(file: &[f32], m: usize, n: usize) -> Vec<f32> {
    let mut w = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            w[i * n + j] = file[j * m + i];
        }
    }
    w
}

fn product(x: &[f32], w: &[f32], l: usize, m: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; l * n];
    for i in 0..l {
        for k in 0..m {
            for j in 0..n {
                y[i * n + j] += x[i * m + k] as f64 * w[k * n + j] as f64;
            }
        }
    }
    y
}

fn rel(a: &[f32], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

#[test]
fn bert_names_resolve_to_the_tiny_workload() {
    let dir = tempfile::tempdir().unwrap();
    let ts = bert_tensors();
    let (st, w) = setup(dir.path(), &ts, REL);
    // The relative path is resolved against the description's directory.
    let ws = w.weights.as_ref().unwrap();
    assert_eq!(
        std::fs::canonicalize(&ws.file).unwrap(),
        std::fs::canonicalize(&st).unwrap()
    );
    let s = SafetensorsWeights::open(&w).unwrap();
    let l = |i: u32, m: &str| format!("bert.encoder.layer.{i}.{m}");
    let expect = [
        ("layer.0.query", l(0, "attention.self.query.weight")),
        ("layer.0.key", l(0, "attention.self.key.weight")),
        ("layer.1.value", l(1, "attention.self.value.weight")),
        (
            "layer.1.attention.output",
            l(1, "attention.output.dense.weight"),
        ),
        ("layer.0.output", l(0, "output.dense.weight")),
        ("layer.1.intermediate", l(1, "intermediate.dense.weight")),
        (
            "layer.0.attention.norm",
            format!(
                "{} + {}",
                l(0, "attention.output.LayerNorm.weight"),
                l(0, "attention.output.LayerNorm.bias")
            ),
        ),
        (
            "layer.1.output.norm",
            format!(
                "{} + {}",
                l(1, "output.LayerNorm.weight"),
                l(1, "output.LayerNorm.bias")
            ),
        ),
        ("head.classifier", "classifier.weight".to_string()),
    ];
    for (n, tensor) in &expect {
        assert_eq!(s.tensor_of(n), Some(tensor.as_str()), "{n}");
    }
    // 2 x 6 projections + the head, 2 x 2 norms: nothing else.
    assert_eq!(s.assignments().len(), 13 + 4);
    assert!(
        s.describe().contains("model.safetensors"),
        "{}",
        s.describe()
    );

    // Projections arrive transposed: W[i][j] = file[j][i], any block.
    let g = Graph::build(&w);
    let f = &get(&ts, &l(1, "intermediate.dense.weight")).3;
    let inter = node(&g, "layer.1.intermediate");
    let full = s.matrix_block(inter, 0..64, 0..128).unwrap();
    assert_eq!(full, transposed(f, 64, 128));
    let blk = s.matrix_block(inter, 5..17, 100..128).unwrap();
    for (a, i) in (5..17).enumerate() {
        for (b, j) in (100..128).enumerate() {
            assert_eq!(blk[a * 28 + b], f[j * 64 + i]);
        }
    }
    let cls = s
        .matrix_block(node(&g, "head.classifier"), 0..64, 0..2)
        .unwrap();
    assert_eq!(cls, transposed(&get(&ts, "classifier.weight").3, 64, 2));

    // Norms: gamma from `.weight`, beta from `.bias` (F16 and F32).
    let norm = s.norm(node(&g, "layer.1.output.norm"), 64).unwrap();
    assert_eq!(norm.gamma, get(&ts, &l(1, "output.LayerNorm.weight")).3);
    assert_eq!(norm.beta, get(&ts, &l(1, "output.LayerNorm.bias")).3);
    let norm = s.norm(node(&g, "layer.0.attention.norm"), 64).unwrap();
    assert_eq!(
        norm.gamma,
        get(&ts, &l(0, "attention.output.LayerNorm.weight")).3
    );
    assert_eq!(
        norm.beta,
        get(&ts, &l(0, "attention.output.LayerNorm.bias")).3
    );
    assert!(s.norm(node(&g, "layer.1.output.norm"), 63).is_err());
}

/// A one-layer workload: `query` (64 -> 64) and a LayerNorm named through
/// `weights.names` (`{i}` the layer index), reading layer 0's tensors.
fn query_norm_workload(dir: &Path) -> Workload {
    let desc = dir.join("desc/q.ron");
    std::fs::write(
        &desc,
        r#"Workload(name: "q", seq_len: 8, tokens_per_group: 4, input_width: 64, num_layers: 1,
  layer: [
    Linear(name: "query", from: "input", in: 64, out: 64),
    Norm(name: "qnorm", from: "query", kind: LayerNorm),
  ],
  lora: (rank: 0, alpha: 0.0, targets: None),
  weights: Some((
    file: "../ckpt/model.safetensors",
    names: {"qnorm": "bert.encoder.layer.{i}.attention.output.LayerNorm"},
  )),
)"#,
    )
    .unwrap();
    config::load_workload(&desc).unwrap()
}

#[test]
fn an_ideal_analog_forward_is_the_hand_product_with_the_files_gamma_and_beta() {
    let dir = tempfile::tempdir().unwrap();
    let ts = bert_tensors();
    setup(dir.path(), &ts, REL);
    let w = query_norm_workload(dir.path());
    let s = SafetensorsWeights::open(&w).unwrap();
    assert_eq!(
        s.tensor_of("layer.0.qnorm"),
        Some(
            "bert.encoder.layer.0.attention.output.LayerNorm.weight + bert.encoder.layer.0.attention.output.LayerNorm.bias"
        )
    );
    let (l, m) = (8usize, 64usize);
    let wq = transposed(
        &get(&ts, "bert.encoder.layer.0.attention.self.query.weight").3,
        m,
        m,
    );
    let gamma = &get(
        &ts,
        "bert.encoder.layer.0.attention.output.LayerNorm.weight",
    )
    .3;
    let beta = &get(&ts, "bert.encoder.layer.0.attention.output.LayerNorm.bias").3;
    let bq = &get(&ts, "bert.encoder.layer.0.attention.self.query.bias").3;
    let x = graph_input(3, l, m);
    // By hand: Y = X W + b, then LayerNorm per token.
    let mut y = product(&x, &wq, l, m, m);
    for row in y.chunks_exact_mut(m) {
        row.iter_mut().zip(bq).for_each(|(v, &b)| *v += b as f64);
    }
    // The bias is there to be added: not all zeros.
    assert!(bq.iter().any(|&b| b != 0.0));
    let mut expect = vec![0.0f64; l * m];
    for r in 0..l {
        let row = &y[r * m..(r + 1) * m];
        let mean = row.iter().sum::<f64>() / m as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
        for j in 0..m {
            expect[r * m + j] =
                (row[j] - mean) / (var + 1e-12).sqrt() * gamma[j] as f64 + beta[j] as f64;
        }
    }
    let arch = ideal_arch();
    let graph = Graph::build(&w);
    let map = Mapping::new(&graph, &arch, w.tokens_per_group).unwrap();
    let cfg = ExecConfig {
        precision: Precision::Fp32,
        ..ExecConfig::from_arch(&arch)
    };
    let exec = Executor::new(&graph, &map, &s, None, cfg).unwrap();
    let out = exec
        .outputs(
            &x,
            &[
                Stream::Analog {
                    lora: false,
                    drift: 0,
                    chip: 0,
                },
                Stream::Reference { lora: false },
            ],
            &[0.0],
            1,
        )
        .unwrap();
    assert!(rel(&out[0], &expect) < 1e-5, "{}", rel(&out[0], &expect));
    assert!(rel(&out[1], &expect) < 1e-5, "{}", rel(&out[1], &expect));
    // The check discriminates: the matrix is not symmetric.
    assert_ne!(wq, transposed(&wq, m, m));
}

#[test]
fn the_study_reads_the_workloads_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, w) = setup(dir.path(), &bert_tensors(), REL);
    let opts = StudyOptions {
        drift_s: vec![0.0],
        trials: 1,
        precision: Precision::Fp32,
        ..StudyOptions::default()
    };
    let s = SafetensorsWeights::open(&w).unwrap();
    let r = functional_study_with(&ideal_arch(), &w, None, &s, &opts).unwrap();
    assert!(r.rows[0].rel_err_mean < 1e-5, "{:?}", r.rows[0]);
    assert!(r.weights.starts_with("safetensors "), "{}", r.weights);
    // `functional_study` opens it itself when the workload names one.
    let r = functional_study(&Architecture::default(), &w, None, &[0.0, 3600.0], 2, 1).unwrap();
    assert!(r.weights.contains("model.safetensors"), "{}", r.weights);
    assert!(
        r.weights
            .contains("13 projections (5 with a bias), 4 norms"),
        "{}",
        r.weights
    );
    assert_eq!(r.rows.len(), 2);
    assert!(r.rows.iter().all(|row| row.rel_err_mean.is_finite()));
    // Without the section, random weights as before.
    let mut plain = w.clone();
    plain.weights = None;
    let r = functional_study(&Architecture::default(), &plain, None, &[0.0], 1, 1).unwrap();
    assert!(r.weights.starts_with("random"), "{}", r.weights);
}

#[test]
fn llama_names_resolve_and_tied_embeddings_take_an_override() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("llama/model.safetensors");
    let (h, kv, f, vocab) = (16usize, 8usize, 32usize, 20usize);
    let mut ts = vec![
        t(
            "model.embed_tokens.weight",
            Dtype::BF16,
            &[vocab, h],
            vals(vocab * h, 1),
        ),
        t("model.norm.weight", Dtype::BF16, &[h], gammas(h, 2)),
    ];
    for i in 0..2 {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        ts.extend([
            t(&p("input_layernorm"), Dtype::BF16, &[h], gammas(h, 3)),
            t(&p("self_attn.q_proj"), Dtype::BF16, &[h, h], vals(h * h, 4)),
            t(
                &p("self_attn.k_proj"),
                Dtype::BF16,
                &[kv, h],
                vals(kv * h, 5),
            ),
            t(
                &p("self_attn.v_proj"),
                Dtype::BF16,
                &[kv, h],
                vals(kv * h, 6),
            ),
            t(&p("self_attn.o_proj"), Dtype::BF16, &[h, h], vals(h * h, 7)),
            t(
                &p("post_attention_layernorm"),
                Dtype::BF16,
                &[h],
                gammas(h, 8),
            ),
            t(&p("mlp.gate_proj"), Dtype::BF16, &[f, h], vals(f * h, 9)),
            t(&p("mlp.up_proj"), Dtype::BF16, &[f, h], vals(f * h, 10)),
            t(&p("mlp.down_proj"), Dtype::BF16, &[h, f], vals(f * h, 11)),
        ]);
    }
    write_st(&st, &ts);
    let text = format!(
        r#"Workload(name: "mini-llama", kind: Decoder, seq_len: 8, tokens_per_group: 4, input_width: {h}, num_layers: 2,
  layer: [
    Norm(name: "input_layernorm", from: "input", kind: RmsNorm),
    Linear(name: "q_proj", from: "input_layernorm", in: {h}, out: {h}),
    Linear(name: "k_proj", from: "input_layernorm", in: {h}, out: {kv}),
    Linear(name: "v_proj", from: "input_layernorm", in: {h}, out: {kv}),
    Attention(name: "self_attn", q: "q_proj", k: "k_proj", v: "v_proj", heads: 4, kv_heads: 2),
    Linear(name: "o_proj", from: "self_attn", in: {h}, out: {h}),
    Add(name: "self_attn.residual", a: "o_proj", b: "input"),
    Norm(name: "post_attention_layernorm", from: "self_attn.residual", kind: RmsNorm),
    Linear(name: "gate_proj", from: "post_attention_layernorm", in: {h}, out: {f}),
    Linear(name: "up_proj", from: "post_attention_layernorm", in: {h}, out: {f}),
    Swiglu(name: "mlp.act", gate: "gate_proj", up: "up_proj"),
    Linear(name: "down_proj", from: "mlp.act", in: {f}, out: {h}),
    Add(name: "mlp.residual", a: "down_proj", b: "self_attn.residual"),
  ],
  head: [
    Norm(name: "norm", from: "input", kind: RmsNorm),
    Linear(name: "lm_head", from: "norm", in: {h}, out: {vocab}),
  ],
  lora: (rank: 0, alpha: 0.0, targets: None),
  weights: Some((file: "model.safetensors", names: {{"lm_head": "model.embed_tokens"}})),
)"#
    );
    let desc = dir.path().join("llama/mini.ron");
    std::fs::write(&desc, &text).unwrap();
    let w = config::load_workload(&desc).unwrap();
    let s = SafetensorsWeights::open(&w).unwrap();
    assert_eq!(
        s.tensor_of("layer.1.q_proj"),
        Some("model.layers.1.self_attn.q_proj.weight")
    );
    assert_eq!(
        s.tensor_of("layer.0.down_proj"),
        Some("model.layers.0.mlp.down_proj.weight")
    );
    assert_eq!(
        s.tensor_of("layer.0.post_attention_layernorm"),
        Some("model.layers.0.post_attention_layernorm.weight")
    );
    assert_eq!(s.tensor_of("head.norm"), Some("model.norm.weight"));
    assert_eq!(
        s.tensor_of("head.lm_head"),
        Some("model.embed_tokens.weight")
    );
    let g = Graph::build(&w);
    let k = s
        .matrix_block(node(&g, "layer.0.k_proj"), 0..h, 0..kv)
        .unwrap();
    assert_eq!(
        k,
        transposed(&get(&ts, "model.layers.0.self_attn.k_proj.weight").3, h, kv)
    );
    // RMSNorm: gamma from the file, beta 0 (no bias tensor).
    let n = s.norm(node(&g, "head.norm"), h).unwrap();
    assert_eq!(n.gamma, get(&ts, "model.norm.weight").3);
    assert_eq!(n.beta, vec![0.0; h]);
    let r = functional_study(&Architecture::default(), &w, None, &[0.0], 1, 3).unwrap();
    assert!(r.rows[0].rel_err_mean.is_finite());

    // Without the override, the tied head is missing.
    let desc2 = dir.path().join("llama/untied.ron");
    std::fs::write(
        &desc2,
        text.replace(r#", names: {"lm_head": "model.embed_tokens"}"#, ""),
    )
    .unwrap();
    let w2 = config::load_workload(&desc2).unwrap();
    let e = SafetensorsWeights::open(&w2).unwrap_err();
    assert!(
        matches!(&e, WeightsError::Missing { what, .. } if what == "head Linear `lm_head` (16 -> 20)"),
        "{e}"
    );
}

fn open_err(ts: &[T], weights: &str) -> (PathBuf, WeightsError) {
    let dir = tempfile::tempdir().unwrap();
    let (st, w) = setup(dir.path(), ts, weights);
    let e = SafetensorsWeights::open(&w).unwrap_err();
    let msg = e.to_string();
    // Every error names the file.
    assert!(
        msg.contains(&st.display().to_string()) || msg.contains("model.safetensors"),
        "{msg}"
    );
    (st, e)
}

#[test]
fn a_missing_tensor_is_named_with_its_closest_names() {
    let mut ts = bert_tensors();
    set(
        &mut ts,
        "bert.encoder.layer.1.attention.self.value.weight",
        |x| x.0 = "bert.encoder.layer.1.attention.self.valeu.weight".into(),
    );
    let (_, e) = open_err(&ts, REL);
    let msg = e.to_string();
    let WeightsError::Missing { what, close, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(what, "layer 1 Linear `value` (64 -> 64)");
    assert_eq!(close[0], "bert.encoder.layer.1.attention.self.valeu.weight");
    assert!(
        msg.contains("no tensor name of layer 1 ends in `.value.weight` or `.value.dense.weight`"),
        "{msg}"
    );

    // A whole layer missing says which layers the file has.
    let ts: Vec<T> = bert_tensors()
        .into_iter()
        .filter(|x| !x.0.contains("layer.1."))
        .collect();
    let (_, e) = open_err(&ts, REL);
    assert!(
        e.to_string()
            .contains("no tensors of layer 1: its layers are 0..=0"),
        "{e}"
    );

    // An override naming an absent module.
    let (_, e) = open_err(
        &bert_tensors(),
        "Some((file: \"../ckpt/model.safetensors\", names: {\"classifier\": \"cls.head\"}))",
    );
    assert!(
        e.to_string().contains("`cls.head.weight` (weights.names)"),
        "{e}"
    );
}

#[test]
fn wrong_and_transposed_shapes_are_errors() {
    let name = "bert.encoder.layer.0.intermediate.dense.weight";
    let mut ts = bert_tensors();
    set(&mut ts, name, |x| {
        x.2 = vec![128, 32];
        x.3.truncate(128 * 32);
    });
    let (_, e) = open_err(&ts, REL);
    assert_eq!(
        e,
        WeightsError::Shape {
            file: match &e {
                WeightsError::Shape { file, .. } => file.clone(),
                _ => panic!("{e}"),
            },
            tensor: name.into(),
            what: "layer 0 Linear `intermediate` (64 -> 128)".into(),
            expected: vec![128, 64],
            found: vec![128, 32],
            transposed: false,
        }
    );
    // Stored in x out: flagged as transposed.
    let mut ts = bert_tensors();
    set(&mut ts, name, |x| x.2 = vec![64, 128]);
    let (_, e) = open_err(&ts, REL);
    assert!(
        matches!(
            e,
            WeightsError::Shape {
                transposed: true,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("looks transposed"), "{e}");
    // A norm of the wrong width.
    let mut ts = bert_tensors();
    set(&mut ts, "bert.encoder.layer.1.output.LayerNorm.bias", |x| {
        x.2 = vec![32];
        x.3.truncate(32);
    });
    let (_, e) = open_err(&ts, REL);
    assert!(
        matches!(&e, WeightsError::Shape { expected, found, .. } if *expected == [64] && *found == [32]),
        "{e}"
    );
}

#[test]
fn nan_inf_and_unsupported_dtypes_are_errors() {
    let name = "bert.encoder.layer.0.attention.self.query.weight";
    let mut ts = bert_tensors();
    set(&mut ts, name, |x| x.3[3 * 64 + 5] = f32::NAN);
    let (_, e) = open_err(&ts, REL);
    let WeightsError::NotFinite {
        tensor,
        index,
        value,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(
        (tensor.as_str(), index.as_slice()),
        (name, &[3usize, 5][..])
    );
    assert!(value.is_nan());
    let mut ts = bert_tensors();
    set(
        &mut ts,
        "bert.encoder.layer.1.output.LayerNorm.weight",
        |x| x.3[7] = f32::INFINITY,
    );
    let (_, e) = open_err(&ts, REL);
    assert!(
        matches!(&e, WeightsError::NotFinite { index, value, .. } if *index == [7] && value.is_infinite()),
        "{e}"
    );
    let mut ts = bert_tensors();
    set(&mut ts, "classifier.weight", |x| x.1 = Dtype::F64);
    let (_, e) = open_err(&ts, REL);
    assert!(
        matches!(&e, WeightsError::Dtype { tensor, dtype, .. } if tensor == "classifier.weight" && dtype == "F64"),
        "{e}"
    );
}

#[test]
fn paths_are_relative_to_the_workload_directory() {
    let dir = tempfile::tempdir().unwrap();
    // The file sits in ckpt/, the description in desc/: `model.safetensors`
    // alone points at desc/model.safetensors, which does not exist.
    let (_, w) = setup(
        dir.path(),
        &bert_tensors(),
        "Some((file: \"model.safetensors\"))",
    );
    let expect = dir.path().join("desc").join("model.safetensors");
    assert_eq!(w.weights.as_ref().unwrap().file, expect);
    let e = SafetensorsWeights::open(&w).unwrap_err();
    assert!(
        matches!(&e, WeightsError::Io { file, .. } if *file == expect.display().to_string()),
        "{e}"
    );
    // The study reports it as an input error naming the file.
    let e = functional_study(&Architecture::default(), &w, None, &[0.0], 1, 0).unwrap_err();
    assert!(
        matches!(&e, ExecError::Input(m) if m.contains(&expect.display().to_string())),
        "{e}"
    );
    // An absolute path is kept as written.
    let abs = dir.path().join("ckpt/model.safetensors");
    let (_, w) = setup(
        dir.path(),
        &bert_tensors(),
        &format!("Some((file: {:?}))", abs.display().to_string()),
    );
    assert_eq!(w.weights.as_ref().unwrap().file, abs);
    assert!(SafetensorsWeights::open(&w).is_ok());
    // A file that is not safetensors.
    std::fs::write(&abs, b"not a checkpoint at all").unwrap();
    let e = SafetensorsWeights::open(&w).unwrap_err();
    assert!(matches!(e, WeightsError::Format { .. }), "{e}");
}

#[test]
fn ambiguous_layers_are_errors_until_weights_layers_says_which() {
    let mut ts = bert_tensors();
    ts.push(t(
        "bert.decoder.layer.0.attention.self.query.weight",
        Dtype::F32,
        &[64, 64],
        vals(4096, 50),
    ));
    let (_, e) = open_err(&ts, REL);
    assert!(
        matches!(&e, WeightsError::Ambiguous { found, .. } if found.len() == 2),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, w) = setup(
        dir.path(),
        &ts,
        "Some((file: \"../ckpt/model.safetensors\", layers: Some(\"bert.encoder.layer\")))",
    );
    let s = SafetensorsWeights::open(&w).unwrap();
    assert_eq!(
        s.tensor_of("layer.0.query"),
        Some("bert.encoder.layer.0.attention.self.query.weight")
    );
    assert_eq!(s.tensor_of("head.classifier"), Some("classifier.weight"));
}

#[test]
fn the_section_round_trips_validates_and_takes_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let (_, w) = setup(
        dir.path(),
        &bert_tensors(),
        "Some((file: \"../ckpt/model.safetensors\", names: {\"query\": \"bert.encoder.layer.{i}.attention.self.query\"}))",
    );
    let back = config::parse_workload("back.ron", &config::to_ron(&w)).unwrap();
    assert_eq!(back, w);
    // --set goes through JSON and keeps the resolved path.
    let o = config::override_workload(&w, &[("seq_len".into(), "8".into())]).unwrap();
    assert_eq!(o.weights, w.weights);
    let o = config::override_workload(
        &w,
        &[(
            "weights.layers".into(),
            "Some(\"bert.encoder.layer\")".into(),
        )],
    )
    .unwrap();
    assert_eq!(
        o.weights.as_ref().unwrap().layers.as_deref(),
        Some("bert.encoder.layer")
    );
    assert!(SafetensorsWeights::open(&o).is_ok());
    let o = config::override_workload(
        &w,
        &[("weights.file".into(), "\"other.safetensors\"".into())],
    )
    .unwrap();
    assert_eq!(o.weights.unwrap().file, PathBuf::from("other.safetensors"));
    let o = config::override_workload(&w, &[("weights".into(), "None".into())]).unwrap();
    assert_eq!(o.weights, None);
    // Validation: overrides must name a Linear or Norm; the file a path.
    let bad = with_weights(
        &tiny_text(),
        "Some((file: \"m.safetensors\", names: {\"qurey\": \"x\"}))",
    );
    let e = config::parse_workload("bad.ron", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weights.names: no Linear or Norm named `qurey`"),
        "{e}"
    );
    let bad = with_weights(&tiny_text(), "Some((file: \"\"))");
    let e = config::parse_workload("bad.ron", &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("weights.file"), "{e}");
    let bad = with_weights(
        &tiny_text(),
        "Some((file: \"m.safetensors\", prefix: \"x\"))",
    );
    assert!(config::parse_workload("bad.ron", &bad).is_err());
    // No section: the source says so.
    let e = SafetensorsWeights::open(&config::parse_workload("t.ron", &tiny_text()).unwrap())
        .unwrap_err();
    assert_eq!(e, WeightsError::NoFile("tiny".into()));
}
