//! The external assets of `scripts/fetch-assets.sh`: all-MiniLM-L6-v2's
//! real checkpoint resolves against `workloads/minilm_l6.ron` (every
//! projection and norm to one tensor of the right shape, served
//! transposed), and the UCI sentiment sentences parse (3 files x 1,000
//! labelled items). The assets live outside the repository
//! (`$AIMCSIM_ASSETS`, default `$HOME/.cache/aimcsim/assets`) and a test
//! cannot skip itself at run time, so these are `#[ignore]`d: run
//! `scripts/fetch-assets.sh`, then
//! `cargo test --release --test main minilm -- --include-ignored`.

use aimcsim::config;
use aimcsim::functional::weights_st::SafetensorsWeights;
use aimcsim::functional::WeightSource;
use aimcsim::graph::{Graph, NodeKind};
use aimcsim::hw::snitch::Kernel;
use std::path::{Path, PathBuf};

fn root(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

use crate::common::asset;

/// The Hugging Face tensor(s) each operation of the workload must read.
fn expected_tensor(op: &str, layer: Option<u32>) -> String {
    let norm = |m: String| format!("{m}.weight + {m}.bias");
    match (layer, op) {
        (None, "embeddings.LayerNorm") => norm("embeddings.LayerNorm".into()),
        (Some(i), "query" | "key" | "value") => {
            format!("encoder.layer.{i}.attention.self.{op}.weight")
        }
        (Some(i), "attention.output.LayerNorm" | "output.LayerNorm") => {
            norm(format!("encoder.layer.{i}.{op}"))
        }
        (Some(i), _) => format!("encoder.layer.{i}.{op}.weight"),
        (None, _) => panic!("unexpected operation `{op}` outside the layers"),
    }
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn minilm_checkpoint_resolves_every_projection_and_norm() {
    let file = asset("minilm/model.safetensors");
    let w = config::load_workload(&root("workloads/minilm_l6.ron")).unwrap();
    // The bundled file names the cached checkpoint through `$ASSETS`.
    let spec = w
        .weights
        .as_deref()
        .expect("the bundled file names its weights");
    assert_eq!(spec.file, Path::new("$ASSETS/minilm/model.safetensors"));
    assert_eq!(config::expand_assets(&spec.file), file);
    let st = SafetensorsWeights::open(&w).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.file(), file.as_path());

    // An independent read of the same file, to check values and layout.
    let bytes = std::fs::read(&file).unwrap();
    let raw = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let t = raw.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), v)
    };

    let g = Graph::build(&w);
    let (mut projections, mut norms) = (0, 0);
    for &ix in &g.order {
        let node = &g.g[ix];
        let want = expected_tensor(&node.op_name, node.layer);
        match node.kind {
            NodeKind::StaticMvm {
                in_features,
                out_features,
            } => {
                let (m, n) = (in_features as usize, out_features as usize);
                assert_eq!(
                    st.tensor_of(&node.name),
                    Some(want.as_str()),
                    "{}",
                    node.name
                );
                let (shape, file_vals) = f32s(&want);
                assert_eq!(shape, [n, m], "{want} is nn.Linear's out x in");
                let w_in_out = st.matrix_block(node, 0..m, 0..n).unwrap();
                assert_eq!(w_in_out.len(), m * n, "{}", node.name);
                // Served transposed: W[i][j] (in x out) = file[j][i].
                for (i, j) in [
                    (0, 0),
                    (m - 1, 0),
                    (0, n - 1),
                    (m / 2, n / 3),
                    (m - 1, n - 1),
                ] {
                    assert_eq!(
                        w_in_out[i * n + j],
                        file_vals[j * m + i],
                        "{} [{i}][{j}]",
                        node.name
                    );
                }
                assert!(w_in_out.iter().all(|v| v.is_finite()));
                projections += 1;
            }
            NodeKind::Elementwise {
                kernel: Kernel::LayerNorm,
                width,
            } => {
                let width = width as usize;
                assert_eq!(width, 384, "{}", node.name);
                assert_eq!(
                    st.tensor_of(&node.name),
                    Some(want.as_str()),
                    "{}",
                    node.name
                );
                let p = st.norm(node, width).unwrap();
                let module = want.split(".weight").next().unwrap();
                let (gs, gamma) = f32s(&format!("{module}.weight"));
                let (bs, beta) = f32s(&format!("{module}.bias"));
                assert_eq!((gs, bs), (vec![width], vec![width]), "{module}");
                assert_eq!(p.gamma, gamma, "{module} gamma");
                assert_eq!(p.beta, beta, "{module} beta");
                norms += 1;
            }
            NodeKind::Elementwise {
                kernel: Kernel::RmsNorm | Kernel::NoNorm,
                ..
            } => panic!("{}: MiniLM has only LayerNorms", node.name),
            _ => {}
        }
    }
    // 6 layers x (query, key, value, attention.output.dense,
    // intermediate.dense, output.dense); the embedding LayerNorm and
    // 6 x 2 layer LayerNorms. The pooler is not read.
    assert_eq!((projections, norms), (36, 13));
    assert_eq!(st.assignments().len(), 36 + 13);
    assert!(st.assignments().values().all(|t| !t.contains("pooler")));
    assert_eq!(g.aimc_weights(), 10_616_832);
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn sentiment_fixtures_have_1000_labelled_sentences_each() {
    for name in ["imdb", "yelp", "amazon"] {
        let path = asset(&format!("sentiment/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(items.len(), 1001, "{name}: 1,000 items and a trailing one");
        // The trailing item has no label (an empty line of the UCI file).
        let last = items.last().unwrap();
        assert!(
            last.get("class").is_none_or(|c| c.is_null()),
            "{name}: the trailing item is unlabelled: {last}"
        );
        let labelled: Vec<(&str, u64)> = items[..items.len() - 1]
            .iter()
            .map(|it| {
                let t = it["text"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {it}"));
                let c = it["class"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: {it}"));
                (t, c)
            })
            .collect();
        assert_eq!(labelled.len(), 1000, "{name}");
        assert!(
            labelled.iter().all(|(_, c)| *c <= 1),
            "{name}: labels in {{0, 1}}"
        );
        assert!(
            labelled.iter().all(|(t, _)| !t.trim().is_empty()),
            "{name}: empty sentence"
        );
        // The UCI set is balanced: 500 positive, 500 negative per source.
        let pos = labelled.iter().filter(|(_, c)| *c == 1).count();
        assert_eq!(pos, 500, "{name}: positive sentences");
    }
}
