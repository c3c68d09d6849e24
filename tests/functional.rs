//! The functional executor: the mapped graph on numbers against the FP32
//! reference, LoRA from PEFT files, metrics, drift, determinism and bad
//! inputs. Expected values come from definitions or hand calculations.

use aimcsim::adapter;
use aimcsim::config::{self, Architecture, BlockKind, Workload};
use aimcsim::functional::executor::graph_input;
use aimcsim::functional::ops;
use aimcsim::functional::{
    functional_study, functional_study_with, AnalogParams, DenseWeights, ExecConfig, ExecError,
    Executor, LoraModule, LoraWeights, NormAffine, Precision, RandomWeights, Stream, StudyOptions,
    WeightSource,
};
use aimcsim::graph::{Graph, Node};
use aimcsim::mapping::{Mapping, Placement};
use safetensors::tensor::Dtype;
use std::ops::Range;
use std::path::Path;

fn tiny() -> Workload {
    config::load_workload(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/tiny.ron"))
        .unwrap()
}

fn ideal_arch() -> Architecture {
    Architecture {
        analog: AnalogParams::ideal(),
        ..Architecture::default()
    }
}

fn opts(drift_s: &[f64], trials: usize, precision: Precision) -> StudyOptions {
    StudyOptions {
        drift_s: drift_s.to_vec(),
        trials,
        seed: 5,
        precision,
        ..StudyOptions::default()
    }
}

/// One linear projection `in -> out` in a one-layer workload.
fn linear(m: u32, n: u32, seq_len: u32, t: u32) -> Workload {
    config::parse_workload(
        "linear.ron",
        &format!(
            "Workload(name: \"linear\", seq_len: {seq_len}, tokens_per_group: {t}, input_width: {m}, num_layers: 1,
              layer: [Linear(name: \"linear\", from: \"input\", in: {m}, out: {n})],
              lora: (rank: 0, alpha: 0.0, targets: None))"
        ),
    )
    .unwrap()
}

/// Deterministic, unremarkable values in [-0.5, 0.5].
fn pattern(len: usize, k: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7 + k * 3) % 11) as f32 - 5.0) / 10.0)
        .collect()
}

/// A LoRA module with pattern values.
fn module(m: usize, n: usize, r: usize, scaling: f32, k: usize) -> LoraModule {
    LoraModule {
        in_features: m,
        out_features: n,
        rank: r,
        scaling,
        a: pattern(m * r, k),
        b: pattern(r * n, k + 1),
    }
}

/// Adapters on tiny's layer-0 query, layer-1 intermediate and the head.
fn tiny_lora() -> LoraWeights {
    let mut l = LoraWeights::new("test");
    l.insert(
        BlockKind::Layer,
        Some(0),
        "query",
        module(64, 64, 4, 2.0, 1),
    )
    .unwrap();
    l.insert(
        BlockKind::Layer,
        Some(1),
        "intermediate",
        module(64, 128, 4, 2.0, 2),
    )
    .unwrap();
    l.insert(
        BlockKind::Head,
        None,
        "classifier",
        module(64, 2, 2, 4.0, 3),
    )
    .unwrap();
    l
}

fn rel(a: &[f32], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// `x (l x m) w (m x n)` in f64 loops.
fn product(x: &[f32], w: &[f32], l: usize, m: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; l * n];
    for i in 0..l {
        for k in 0..m {
            let xv = x[i * m + k] as f64;
            for j in 0..n {
                y[i * n + j] += xv * w[k * n + j] as f64;
            }
        }
    }
    y
}

#[test]
fn ideal_tiles_and_fp32_pmca_equal_the_reference() {
    let lora = tiny_lora();
    let r = functional_study_with(
        &ideal_arch(),
        &tiny(),
        Some(&lora),
        &RandomWeights::new(5),
        &opts(&[0.0, 86_400.0], 1, Precision::Fp32),
    )
    .unwrap();
    assert_eq!(r.rows.len(), 4);
    for row in &r.rows {
        assert!(row.rel_err_mean < 1e-5, "{row:?}");
        assert!((row.cosine_mean - 1.0).abs() < 1e-9);
        assert!(row.snr_db_mean > 100.0);
        let names: Vec<&str> = row.layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["layer.0", "layer.1", "head"]);
        assert!(row.layers.iter().all(|l| l.rel_err_mean < 1e-5));
    }
    // The FP16 PMCA costs accuracy, even with ideal tiles: about FP16's
    // unit roundoff (2^-11 = 4.9e-4) per operation, accumulated.
    let h = functional_study_with(
        &ideal_arch(),
        &tiny(),
        Some(&lora),
        &RandomWeights::new(5),
        &opts(&[0.0], 1, Precision::Fp16),
    )
    .unwrap();
    for row in &h.rows {
        assert!(
            row.layers[0].rel_err_mean > 1e-4 && row.rel_err_mean < 2e-2,
            "{row:?}"
        );
    }
}

#[test]
fn a_split_matrix_through_ideal_tiles_is_the_plain_product() {
    let (l, m, n) = (12usize, 1024usize, 768usize);
    let w = linear(m as u32, n as u32, l as u32, 5);
    let arch = ideal_arch();
    let graph = Graph::build(&w);
    let map = Mapping::new(&graph, &arch, 5).unwrap();
    let mvm = graph.order[0];
    // 2 row blocks x 2 column blocks (512 + 512 inputs, 512 + 256 outputs).
    let Placement::Aimc {
        blocks,
        row_blocks,
        col_blocks,
    } = map.placement(mvm)
    else {
        panic!("a static MVM on tiles")
    };
    assert_eq!((*row_blocks, *col_blocks, blocks.len()), (2, 2, 4));
    assert_eq!((blocks[1].rows, blocks[1].cols), (512, 256));
    let weights = RandomWeights::new(9);
    let wfull = weights.matrix_block(&graph.g[mvm], 0..m, 0..n).unwrap();
    let x = graph_input(3, l, m);
    let exact = product(&x, &wfull, l, m, n);
    let run = |precision| {
        let cfg = ExecConfig {
            precision,
            ..ExecConfig::from_arch(&arch)
        };
        let exec = Executor::new(&graph, &map, &weights, None, cfg).unwrap();
        exec.outputs(
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
            11,
        )
        .unwrap()
    };
    let out = run(Precision::Fp32);
    assert!(rel(&out[0], &exact) < 1e-6, "{}", rel(&out[0], &exact));
    assert!(rel(&out[1], &exact) < 1e-6);
    // FP16 storage: X, the four block outputs and the two partial-sum adds
    // each round at 2^-11 relative: errors of a few 1e-4.
    let out16 = run(Precision::Fp16);
    let e = rel(&out16[0], &exact);
    assert!(e > 1e-5 && e < 1e-3, "{e}");
    assert_eq!(out16[1], out[1], "the reference is FP32 whatever the PMCA");
}

#[test]
fn a_known_lora_branch_adds_exactly_scaling_x_a_b() {
    let (l, m, n, r) = (9usize, 64usize, 32usize, 2usize);
    let s = 2.5f32;
    let base = linear(m as u32, n as u32, l as u32, 4);
    let mut lora = LoraWeights::new("known");
    lora.insert(BlockKind::Layer, Some(0), "linear", module(m, n, r, s, 4))
        .unwrap();
    let md = lora
        .get(BlockKind::Layer, Some(0), "linear")
        .unwrap()
        .clone();
    let w = lora.workload(&base);
    let arch = ideal_arch();
    let graph = Graph::build(&w);
    assert_eq!(graph.g.node_count(), 3, "MVM, LoRA down, LoRA up");
    let map = Mapping::new(&graph, &arch, 4).unwrap();
    let weights = RandomWeights::new(1);
    let cfg = ExecConfig {
        precision: Precision::Fp32,
        ..ExecConfig::from_arch(&arch)
    };
    let exec = Executor::new(&graph, &map, &weights, Some(&lora), cfg).unwrap();
    let x = graph_input(2, l, m);
    let out = exec
        .outputs(
            &x,
            &[
                Stream::Analog {
                    lora: true,
                    drift: 0,
                    chip: 0,
                },
                Stream::Analog {
                    lora: false,
                    drift: 0,
                    chip: 0,
                },
                Stream::Reference { lora: true },
            ],
            &[0.0],
            3,
        )
        .unwrap();
    // s (X A) B by f64 loops.
    let xa = product(&x, &md.a, l, m, r);
    let mut branch = vec![0.0f64; l * n];
    for i in 0..l {
        for k in 0..r {
            for j in 0..n {
                branch[i * n + j] += s as f64 * xa[i * r + k] * md.b[k * n + j] as f64;
            }
        }
    }
    let diff: Vec<f32> = out[0].iter().zip(&out[1]).map(|(a, b)| a - b).collect();
    assert!(rel(&diff, &branch) < 1e-5, "{}", rel(&diff, &branch));
    // The reference with LoRA is X W + s X A B.
    let wfull = weights
        .matrix_block(&graph.g[graph.order[0]], 0..m, 0..n)
        .unwrap();
    let full: Vec<f64> = product(&x, &wfull, l, m, n)
        .iter()
        .zip(&branch)
        .map(|(a, b)| a + b)
        .collect();
    assert!(rel(&out[2], &full) < 1e-6);
    assert!(rel(&out[0], &full) < 1e-6);
}

#[test]
fn attention_of_two_tokens_by_hand() {
    // One head, d = 2: q0 = [1, 1], q1 = [3, 0]; k0 = [1, 0], k1 = [0, -1];
    // v0 = [3, 1], v1 = [5, -1]. Scores / sqrt 2: row 0 [1, -1] / sqrt 2,
    // row 1 [3, 0] / sqrt 2, so P[i][0] = 1 / (1 + e^-(difference)):
    // p0 = 1 / (1 + e^-sqrt 2) = 0.80442968, p1 = 1 / (1 + e^(-3 / sqrt 2))
    // = 0.89295820; o_i = p_i v0 + (1 - p_i) v1 = [5 - 2 p_i, 2 p_i - 1].
    let q = [1.0, 1.0, 3.0, 0.0];
    let k = [1.0, 0.0, 0.0, -1.0];
    let v = [3.0, 1.0, 5.0, -1.0];
    let (p0, p1) = (0.804_429_682_506_956_9f64, 0.892_958_198_534_829_6f64);
    let expect = [
        5.0 - 2.0 * p0,
        2.0 * p0 - 1.0,
        5.0 - 2.0 * p1,
        2.0 * p1 - 1.0,
    ];
    let run = |p: Precision, causal: bool| {
        let mut s = ops::attention_scores(p, &q, &k, 2, 1, 1, 2, causal);
        ops::softmax_rows(p, &mut s, 2);
        (s.clone(), ops::attention_context(p, &s, &v, 2, 1, 1, 2))
    };
    let (pm, o) = run(Precision::Fp32, false);
    assert!((pm[0] as f64 - p0).abs() < 1e-6 && (pm[2] as f64 - p1).abs() < 1e-6);
    for (a, b) in o.iter().zip(expect) {
        assert!((*a as f64 - b).abs() < 1e-6, "{o:?}");
    }
    // Causal: token 0 sees only key 0 (o0 = v0); token 1 is unchanged.
    let (pm, o) = run(Precision::Fp32, true);
    assert_eq!(&pm[..2], &[1.0, 0.0]);
    assert_eq!(&o[..2], &[3.0, 1.0]);
    assert!((o[2] as f64 - expect[2]).abs() < 1e-6);
    // FP16: within a few units of 2^-11 relative of the exact values.
    let (_, o) = run(Precision::Fp16, false);
    for (a, b) in o.iter().zip(expect) {
        assert!((*a as f64 - b).abs() < 4e-3 * b.abs().max(1.0), "{o:?}");
    }
    // Grouped-query: 2 heads sharing one KV head are two single-head
    // attentions with the same K and V.
    let q2 = [1.0, 1.0, 3.0, 0.0, 3.0, 0.0, 1.0, 1.0]; // head 1 swaps tokens' q
    let mut s = ops::attention_scores(Precision::Fp32, &q2, &k, 2, 2, 1, 2, false);
    ops::softmax_rows(Precision::Fp32, &mut s, 2);
    let o2 = ops::attention_context(Precision::Fp32, &s, &v, 2, 2, 1, 2);
    // Head 0 of token i = o_i; head 1 of token 0 = o_1, of token 1 = o_0.
    let want = [
        expect[0], expect[1], expect[2], expect[3], expect[2], expect[3], expect[0], expect[1],
    ];
    for (a, b) in o2.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "{o2:?}");
    }
}

#[test]
fn fp16_rounding_and_metrics_of_known_vectors() {
    let mut v = vec![0.1f32, 1.0 / 3.0, 70000.0];
    Precision::Fp16.round(&mut v);
    // 0.1 -> (1024 + 614) 2^-14; 1/3 -> 1365 2^-12; beyond 65504 -> inf.
    assert_eq!(v, vec![1638.0 / 16384.0, 1365.0 / 4096.0, f32::INFINITY]);
    let y_ref = [1.0f32, -2.0, 2.0];
    let y: Vec<f32> = y_ref.iter().map(|v| v * 1.1).collect();
    let m = aimcsim::functional::compare(&y, &y_ref);
    // rel_err = 0.1, cosine = 1, SNR = 20 dB.
    assert!((m.rel_err - 0.1).abs() < 1e-6);
    assert!((m.cosine - 1.0).abs() < 1e-12);
    assert!((m.snr_db - 20.0).abs() < 1e-4);
    // y = y_ref + e with e = [2, 1, 0] orthogonal to y_ref (2 - 2 + 0 = 0):
    // rel_err = |e| / |y_ref| = sqrt(5) / 3, cosine = 9 / (sqrt(14) 3) =
    // 1 / sqrt(1 + rel_err^2), SNR = -20 log10(sqrt(5) / 3) = 2.55 dB.
    let y = [3.0f32, -1.0, 2.0];
    let m = aimcsim::functional::compare(&y, &y_ref);
    let r = 5f64.sqrt() / 3.0;
    assert!((m.rel_err - r).abs() < 1e-12);
    assert!((m.cosine - 1.0 / (1.0 + r * r).sqrt()).abs() < 1e-12);
    assert!((m.snr_db + 20.0 * r.log10()).abs() < 1e-9);
}

/// Writes a PEFT directory: config text and named tensors (dtype, shape,
/// f32 values converted to the dtype).
fn write_peft(dir: &Path, config: &str, tensors: &[(&str, Dtype, [usize; 2], Vec<f32>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    let tensors: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, v)| (n.to_string(), *d, s.to_vec(), v.clone()))
        .collect();
    crate::common::write_safetensors(&dir.join("adapter_model.safetensors"), &tensors);
}

const Q: &str = "base_model.model.encoder.layer.0.attention.self.query";
const V: &str = "base_model.model.encoder.layer.1.attention.self.value";
const CLS: &str = "base_model.model.classifier";

/// Values exact in FP16 and BF16: multiples of 1/8 in [-2, 2].
fn eighths(len: usize, k: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 5 + k) % 33) as f32 / 8.0 - 2.0)
        .collect()
}

fn peft_tensors(r: usize) -> Vec<(&'static str, Dtype, [usize; 2], Vec<f32>)> {
    let name = |m: &str, ab: &str| -> &'static str {
        Box::leak(format!("{m}.lora_{ab}.weight").into_boxed_str())
    };
    vec![
        (name(Q, "A"), Dtype::F16, [r, 64], eighths(r * 64, 1)),
        (name(Q, "B"), Dtype::F32, [64, r], eighths(64 * r, 2)),
        (name(V, "A"), Dtype::BF16, [r, 64], eighths(r * 64, 3)),
        (name(V, "B"), Dtype::F16, [64, r], eighths(64 * r, 4)),
        (name(CLS, "A"), Dtype::F32, [r, 64], eighths(r * 64, 5)),
        (name(CLS, "B"), Dtype::F32, [2, r], eighths(2 * r, 6)),
    ]
}

#[test]
fn peft_adapters_load_their_tensor_values() {
    let dir = tempfile::tempdir().unwrap();
    let r = 2;
    let cfg = r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": ["query", "value", "classifier"]}"#;
    let tensors = peft_tensors(r);
    write_peft(dir.path(), cfg, &tensors);
    let a = adapter::load(dir.path()).unwrap();
    let matched = adapter::match_workload(&a, &tiny()).unwrap();
    let lora = LoraWeights::from_peft(&a, &matched).unwrap();
    assert_eq!(lora.len(), 3);
    // A is stored r x in in the file: A[i][j] (in x r) = file[j][i];
    // B is out x r: B[j][k] (r x out) = file[k][j]; scaling 8 / 2.
    let check = |md: &LoraModule, fa: &[f32], fb: &[f32], n: usize| {
        assert_eq!((md.in_features, md.out_features, md.rank), (64, n, r));
        assert_eq!(md.scaling, 4.0);
        for i in 0..64 {
            for j in 0..r {
                assert_eq!(md.a[i * r + j], fa[j * 64 + i]);
            }
        }
        for j in 0..r {
            for k in 0..n {
                assert_eq!(md.b[j * n + k], fb[k * r + j]);
            }
        }
    };
    let q = lora.get(BlockKind::Layer, Some(0), "query").unwrap();
    check(q, &tensors[0].3, &tensors[1].3, 64);
    let v = lora.get(BlockKind::Layer, Some(1), "value").unwrap();
    check(v, &tensors[2].3, &tensors[3].3, 64);
    let c = lora.get(BlockKind::Head, None, "classifier").unwrap();
    check(c, &tensors[4].3, &tensors[5].3, 2);
    assert!(lora.get(BlockKind::Layer, Some(1), "query").is_none());

    // rsLoRA: alpha / sqrt(r).
    let rs = tempfile::tempdir().unwrap();
    write_peft(
        rs.path(),
        &cfg.replace("}", ", \"use_rslora\": true}"),
        &tensors,
    );
    let a2 = adapter::load(rs.path()).unwrap();
    let m2 = adapter::match_workload(&a2, &tiny()).unwrap();
    let l2 = LoraWeights::from_peft(&a2, &m2).unwrap();
    let s = l2.get(BlockKind::Layer, Some(0), "query").unwrap().scaling;
    assert!((s - 8.0 / 2f32.sqrt()).abs() < 1e-6);

    // The study with the adapter: both variants at each drift time.
    let rep = functional_study(
        &Architecture::default(),
        &tiny(),
        Some((a, matched)),
        &[0.0],
        1,
        2,
    )
    .unwrap();
    let variants: Vec<&str> = rep.rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["analog", "analog+lora"]);
    assert_eq!(rep.adapted_projections, 3);
    assert!(rep.rows[1].total_ns >= rep.rows[0].total_ns);
    assert_eq!(rep.rows[1].total_ns, rep.total_ns);
    assert_eq!(rep.rows[0].total_ns, rep.baseline_ns);
}

#[test]
fn the_report_carries_the_timing_run_and_no_lora_rows_without_an_adapter() {
    let w = tiny();
    let arch = Architecture::default();
    let rep = functional_study(&arch, &w, None, &[0.0, 3600.0, 86_400.0], 2, 1).unwrap();
    let timing = aimcsim::timing::summary::run_workload(&arch, &w, Default::default()).unwrap();
    assert_eq!(rep.rows.len(), 3);
    for row in &rep.rows {
        assert_eq!(row.variant, "analog");
        assert_eq!(row.trials, 2);
        assert_eq!(row.total_ns, timing.baseline_ns);
        assert_eq!(row.tiles, timing.tiles);
        assert_eq!(row.peak_tcdm_bytes, timing.peak_tcdm_bytes);
        assert!(row.rel_err_mean > 0.0 && row.rel_err_mean < 1.0, "{row:?}");
        assert!(row.rel_err_std > 0.0, "two programmings differ");
        assert!(row.cosine_mean > 0.5 && row.cosine_mean < 1.0);
        let snr = -20.0 * row.rel_err_mean.log10();
        // The mean of the SNRs is within the spread of the SNR of the mean.
        assert!((row.snr_db_mean - snr).abs() < 3.0, "{row:?}");
        assert_eq!(row.layers.len(), 3);
    }
    assert_eq!(
        rep.rows
            .iter()
            .map(|r| r.drift.as_str())
            .collect::<Vec<_>>(),
        ["0s", "1h", "1d"]
    );
    let json = aimcsim::report::to_json(&rep);
    assert!(json.contains("\"rel_err_mean\"") && json.contains("\"layers\""));
}

#[test]
fn errors_grow_with_drift_time_at_default_noise() {
    let rep = functional_study(
        &Architecture::default(),
        &tiny(),
        None,
        &[0.0, 86_400.0, 315_360_000.0],
        4,
        3,
    )
    .unwrap();
    let e: Vec<f64> = rep.rows.iter().map(|r| r.rel_err_mean).collect();
    assert!(e[0] < e[1] && e[1] < e[2], "{e:?}");
    let c: Vec<f64> = rep.rows.iter().map(|r| r.cosine_mean).collect();
    assert!(c[0] > c[2], "{c:?}");
}

#[test]
fn results_are_bit_identical_at_one_and_two_threads() {
    let lora = tiny_lora();
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            functional_study_with(
                &Architecture::default(),
                &tiny(),
                Some(&lora),
                &RandomWeights::new(8),
                &opts(&[0.0, 604_800.0], 3, Precision::Fp16),
            )
            .unwrap()
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a, b);
    assert_eq!(aimcsim::report::to_json(&a), aimcsim::report::to_json(&b));
    // And a split matrix (column blocks in parallel) too.
    let w = linear(600, 700, 8, 4);
    let split = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| functional_study(&Architecture::default(), &w, None, &[3600.0], 2, 4))
            .unwrap()
    };
    assert_eq!(split(1), split(2));
}

/// Random weights with one NaN in one node.
struct Poisoned(RandomWeights, &'static str);

impl WeightSource for Poisoned {
    fn describe(&self) -> String {
        "poisoned".into()
    }
    fn matrix_block(
        &self,
        node: &Node,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, aimcsim::functional::FunctionalError> {
        let mut w = self.0.matrix_block(node, rows, cols)?;
        if node.name == self.1 {
            w[3] = f32::NAN;
        }
        Ok(w)
    }
    fn norm(
        &self,
        node: &Node,
        width: usize,
    ) -> Result<NormAffine, aimcsim::functional::FunctionalError> {
        self.0.norm(node, width)
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let arch = Architecture::default();
    let w = tiny();
    let o = opts(&[0.0], 1, Precision::Fp16);
    // NaN in a weight.
    let e = functional_study_with(
        &arch,
        &w,
        None,
        &Poisoned(RandomWeights::new(1), "layer.1.key"),
        &o,
    )
    .unwrap_err();
    assert!(
        matches!(e, ExecError::Input(_)) && e.to_string().contains("layer.1.key"),
        "{e}"
    );
    // An adapter module whose shape is not the projection's.
    let mut lora = LoraWeights::new("bad");
    lora.insert(
        BlockKind::Layer,
        Some(0),
        "query",
        module(64, 32, 2, 1.0, 0),
    )
    .unwrap();
    let e = functional_study_with(&arch, &w, Some(&lora), &RandomWeights::new(1), &o).unwrap_err();
    assert!(e.to_string().contains("64 -> 32"), "{e}");
    // A module for a projection the workload does not have.
    let mut lora = LoraWeights::new("bad");
    lora.insert(
        BlockKind::Layer,
        Some(7),
        "query",
        module(64, 64, 2, 1.0, 0),
    )
    .unwrap();
    assert!(functional_study_with(&arch, &w, Some(&lora), &RandomWeights::new(1), &o).is_err());
    // Options.
    for bad in [
        opts(&[], 1, Precision::Fp16),
        opts(&[-1.0], 1, Precision::Fp16),
        opts(&[f64::NAN], 1, Precision::Fp16),
        opts(&[0.0], 0, Precision::Fp16),
    ] {
        assert!(functional_study_with(&arch, &w, None, &RandomWeights::new(1), &bad).is_err());
    }
    // Too few tile + PMCA pairs for the mapping.
    let small = Architecture {
        pairs: Some(2),
        ..Architecture::default()
    };
    let e = functional_study(&small, &w, None, &[0.0], 1, 0).unwrap_err();
    assert!(matches!(e, ExecError::Mapping(_)), "{e}");
    // Explicit weights of the wrong shape.
    let mut dense = DenseWeights::new();
    dense
        .insert_matrix("layer.0.query", 64, 32, vec![0.0; 64 * 32])
        .unwrap();
    assert!(functional_study_with(&arch, &linear(64, 64, 4, 4), None, &dense, &o).is_err());

    // PEFT files: a NaN in a tensor; a tensor whose shape disagrees with
    // the matched module; a B whose shape does not fit the projection.
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": ["query"]}"#;
    let mut t = peft_tensors(2);
    t.truncate(2);
    t[1].3[5] = f32::NAN;
    write_peft(&dir.path().join("nan"), cfg, &t);
    let a = adapter::load(&dir.path().join("nan")).unwrap();
    let m = adapter::match_workload(&a, &w).unwrap();
    let e = LoraWeights::from_peft(&a, &m).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{e}");
    let mut t = peft_tensors(2);
    t.truncate(2);
    write_peft(&dir.path().join("ok"), cfg, &t);
    let a = adapter::load(&dir.path().join("ok")).unwrap();
    let mut m = adapter::match_workload(&a, &w).unwrap();
    m[0].module.in_features = 32;
    let e = LoraWeights::from_peft(&a, &m).unwrap_err().to_string();
    assert!(e.contains("shape"), "{e}");
    let mut t = peft_tensors(2);
    t.truncate(2);
    t[1].2 = [32, 2];
    t[1].3.truncate(64);
    write_peft(&dir.path().join("shape"), cfg, &t);
    let a = adapter::load(&dir.path().join("shape")).unwrap();
    assert!(adapter::match_workload(&a, &w).is_err());
}

#[test]
fn nonorm_is_rescaled_to_unit_rms_for_random_weights() {
    // Three residual layers with a NoNorm each: without rescaling the
    // variance would grow ~2x per layer.
    let w = config::parse_workload(
        "nonorm.ron",
        r#"Workload(name: "nonorm", seq_len: 8, tokens_per_group: 4, input_width: 32, num_layers: 3,
          layer: [
            Linear(name: "up", from: "input", in: 32, out: 64),
            Activation(name: "act", from: "up", kind: Relu),
            Linear(name: "down", from: "act", in: 64, out: 32),
            Add(name: "res", a: "down", b: "input"),
            Norm(name: "norm", from: "res", kind: NoNorm),
          ],
          lora: (rank: 0, alpha: 0.0, targets: None))"#,
    )
    .unwrap();
    let arch = Architecture::default();
    let graph = Graph::build(&w);
    let map = Mapping::new(&graph, &arch, 4).unwrap();
    let weights = RandomWeights::new(2);
    let mut exec =
        Executor::new(&graph, &map, &weights, None, ExecConfig::from_arch(&arch)).unwrap();
    let x = graph_input(1, 8, 32);
    exec.calibrate_nonorm(&x).unwrap();
    let y = exec
        .outputs(&x, &[Stream::Reference { lora: false }], &[], 0)
        .unwrap();
    let rms = (y[0].iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / y[0].len() as f64).sqrt();
    assert!((rms - 1.0).abs() < 1e-5, "{rms}");
}

/// Wall time and end-to-end accuracy of a study of a repository workload;
/// run with `cargo test --release -- --ignored --nocapture perf_`.
/// `AIMCSIM_PERF_DRIFT=0s,1d,1y` and `AIMCSIM_PERF_TRIALS=N` override the
/// drift times and trials.
fn perf(file: &str, drift_s: &[f64], trials: usize) {
    let w = config::load_workload(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let drift_s = match std::env::var("AIMCSIM_PERF_DRIFT") {
        Ok(d) => aimcsim::functional::parse_drift_times(&d).unwrap(),
        Err(_) => drift_s.to_vec(),
    };
    let drift_s = &drift_s[..];
    let trials = std::env::var("AIMCSIM_PERF_TRIALS")
        .map(|t| t.parse().unwrap())
        .unwrap_or(trials);
    let t0 = std::time::Instant::now();
    let rep = functional_study(&Architecture::default(), &w, None, drift_s, trials, 0).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{file}: {trials} trial(s) x {} drift time(s): {secs:.3} s",
        drift_s.len()
    );
    for r in &rep.rows {
        println!(
            "  {} {}: rel_err {:.4} (std {:.4}), cosine {:.5}, SNR {:.2} dB; first layer rel_err {:.4}; total {:.0} ns, {} tiles, peak TCDM {} B",
            r.drift,
            r.variant,
            r.rel_err_mean,
            r.rel_err_std,
            r.cosine_mean,
            r.snr_db_mean,
            r.layers[0].rel_err_mean,
            r.total_ns,
            r.tiles,
            r.peak_tcdm_bytes
        );
        let per_layer: Vec<String> = r
            .layers
            .iter()
            .map(|l| format!("{}={:.3}", l.layer, l.rel_err_mean))
            .collect();
        println!("  per layer rel_err: {}", per_layer.join(" "));
    }
}

#[test]
#[ignore = "timing run: release build"]
fn perf_tiny() {
    perf("workloads/tiny.ron", &[0.0, 86_400.0, 31_536_000.0], 2);
}

#[test]
#[ignore = "timing run: release build"]
fn perf_mobilebert() {
    perf("workloads/mobilebert.ron", &[86_400.0], 1);
}

#[test]
#[ignore = "timing run: release build, ~25 s"]
fn perf_bert_large() {
    perf("workloads/bert_large.ron", &[86_400.0], 1);
}
