//! LoRA adapters as users hold them: Hugging Face PEFT directories
//! (`adapter_config.json` + `adapter_model.safetensors`). Reads the
//! configuration and the tensors' shapes, resolves each adapted module's
//! rank and scaling (`rank_pattern`, `alpha_pattern`, `use_rslora`), and
//! matches the modules to a workload's projections. [`export`] writes them.

pub mod export;

use crate::config::{BlockKind, Op, Workload};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What is wrong with an adapter directory.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
}

fn err(file: &Path, msg: impl Into<String>) -> AdapterError {
    AdapterError::File {
        file: file.display().to_string(),
        msg: msg.into(),
    }
}

/// `target_modules` is a list of names or one regular expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// The fields of `adapter_config.json` aimcsim reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PeftConfig {
    #[serde(default)]
    pub peft_type: Option<String>,
    pub r: u32,
    pub lora_alpha: f64,
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    #[serde(default)]
    pub rank_pattern: HashMap<String, u32>,
    #[serde(default)]
    pub alpha_pattern: HashMap<String, f64>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
}

/// One adapted module: `A` is `rank x in`, `B` is `out x rank` (PEFT's
/// `lora_A.weight` and `lora_B.weight`), the branch scaled by `scaling`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterModule {
    /// The module's path, e.g. `base_model.model.encoder.layer.3.attention.self.query`.
    pub path: String,
    /// The layer index found in the path (`layer.3`, `layers.3`, `h.3`).
    pub layer: Option<u32>,
    pub in_features: u32,
    pub out_features: u32,
    pub rank: u32,
    pub scaling: f64,
}

/// A loaded adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub dir: PathBuf,
    pub config: PeftConfig,
    pub modules: Vec<AdapterModule>,
}

impl Adapter {
    /// LoRA parameters: r * (in + out) per module.
    pub fn params(&self) -> u64 {
        self.modules
            .iter()
            .map(|m| m.rank as u64 * (m.in_features as u64 + m.out_features as u64))
            .sum()
    }
}

/// Does a PEFT pattern key match a module path? PEFT matches `key` against
/// the end of the path on a `.` boundary (`(.*\.)?key$`).
fn key_matches(path: &str, key: &str) -> bool {
    path == key || path.ends_with(&format!(".{key}"))
}

fn layer_index(path: &str) -> Option<u32> {
    let parts: Vec<&str> = path.split('.').collect();
    parts.windows(2).find_map(|w| {
        matches!(w[0], "layer" | "layers" | "h" | "blocks")
            .then(|| w[1].parse().ok())
            .flatten()
    })
}

/// Loads a PEFT adapter directory (configuration and tensor shapes).
pub fn load(dir: &Path) -> Result<Adapter, AdapterError> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(&cfg_path, e.to_string()))?;
    let config: PeftConfig =
        serde_json::from_str(&text).map_err(|e| err(&cfg_path, e.to_string()))?;
    if let Some(t) = &config.peft_type {
        if t != "LORA" {
            return Err(err(
                &cfg_path,
                format!("peft_type is {t}; only LORA adapters are supported"),
            ));
        }
    }
    if config.use_dora {
        return Err(err(
            &cfg_path,
            "use_dora: DoRA adapters rescale the weight magnitudes, which the analog weights cannot do; only plain LoRA is supported",
        ));
    }
    if config.r == 0 {
        return Err(err(&cfg_path, "r: must be at least 1"));
    }
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| err(&st_path, e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(&st_path, format!("not a safetensors file: {e}")))?;
    // module path -> (A shape, B shape)
    type Shapes = (Option<Vec<usize>>, Option<Vec<usize>>);
    let mut parts: BTreeMap<String, Shapes> = BTreeMap::new();
    for (name, info) in meta.tensors() {
        let (module, is_a) = if let Some(m) = name.strip_suffix(".lora_A.weight") {
            (m, true)
        } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
            (m, false)
        } else {
            continue;
        };
        let e = parts.entry(module.to_string()).or_default();
        if is_a {
            e.0 = Some(info.shape.clone());
        } else {
            e.1 = Some(info.shape.clone());
        }
    }
    if parts.is_empty() {
        return Err(err(
            &st_path,
            "no `*.lora_A.weight` / `*.lora_B.weight` tensors",
        ));
    }
    let mut modules = Vec::new();
    for (path, (a, b)) in parts {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (None, _) => return Err(err(&st_path, format!("{path}: lora_B without lora_A"))),
            (_, None) => return Err(err(&st_path, format!("{path}: lora_A without lora_B"))),
        };
        if a.len() != 2 || b.len() != 2 {
            return Err(err(
                &st_path,
                format!("{path}: LoRA weights must be matrices, got {a:?} and {b:?}"),
            ));
        }
        let (rank, in_f, out_f, rank_b) = (a[0], a[1], b[0], b[1]);
        if rank != rank_b {
            return Err(err(
                &st_path,
                format!("{path}: lora_A is {a:?} (rank x in) but lora_B is {b:?} (out x rank): ranks differ"),
            ));
        }
        // The configured rank, for the scaling: rank_pattern, else r.
        let r_cfg = config
            .rank_pattern
            .iter()
            .filter(|(k, _)| key_matches(&path, k))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, &r)| r)
            .unwrap_or(config.r);
        if r_cfg as usize != rank {
            return Err(err(
                &st_path,
                format!(
                    "{path}: the tensors have rank {rank} but adapter_config.json says {r_cfg}"
                ),
            ));
        }
        let alpha = config
            .alpha_pattern
            .iter()
            .filter(|(k, _)| key_matches(&path, k))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, &a)| a)
            .unwrap_or(config.lora_alpha);
        let scaling = if config.use_rslora {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        };
        let to_u32 = |x: usize| {
            u32::try_from(x).map_err(|_| err(&st_path, format!("{path}: dimension {x} too large")))
        };
        let (in_features, out_features, rank) = (to_u32(in_f)?, to_u32(out_f)?, to_u32(rank)?);
        modules.push(AdapterModule {
            layer: layer_index(&path),
            path,
            in_features,
            out_features,
            rank,
            scaling,
        });
    }
    Ok(Adapter {
        dir: dir.to_path_buf(),
        config,
        modules,
    })
}

/// A workload projection with the adapter module that adapts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub block: BlockKind,
    pub layer: Option<u32>,
    /// The workload's projection name.
    pub op: String,
    pub module: AdapterModule,
}

/// Matches adapter modules to the workload's projections: a module matches
/// the projection whose name is the longest dot-suffix of the path, or of
/// the path without a trailing `.dense`, in the layer the path names (or
/// the embedding/head block when it names none).
pub fn match_workload(a: &Adapter, w: &Workload) -> Result<Vec<Matched>, AdapterError> {
    let file = a.dir.join("adapter_model.safetensors");
    let mut out = Vec::new();
    for m in &a.modules {
        // BERT's `attention.output.dense` is `attention.output.dense` in
        // workloads named after Hugging Face (bert_base, minilm_l6) and
        // `attention.output` in shorter ones (tiny): try both spellings.
        let stripped = m.path.strip_suffix(".dense");
        let hit = |name: &str| {
            key_matches(&m.path, name) || stripped.is_some_and(|s| key_matches(s, name))
        };
        let mut best: Option<(BlockKind, &str, u32, u32)> = None;
        for (kind, ops) in w.blocks() {
            if (kind == BlockKind::Layer) != m.layer.is_some() {
                continue;
            }
            for op in ops {
                if let Op::Linear {
                    name,
                    in_features,
                    out_features,
                    ..
                } = op
                {
                    if hit(name) && best.is_none_or(|b| name.len() > b.1.len()) {
                        best = Some((kind, name, *in_features, *out_features));
                    }
                }
            }
        }
        let Some((block, op, i, o)) = best else {
            return Err(err(
                &file,
                format!(
                    "{}: no projection of workload `{}` matches this module",
                    m.path, w.name
                ),
            ));
        };
        if let Some(l) = m.layer {
            if l >= w.num_layers {
                return Err(err(
                    &file,
                    format!(
                        "{}: layer {l}, but `{}` has {} layers",
                        m.path, w.name, w.num_layers
                    ),
                ));
            }
        }
        if (i, o) != (m.in_features, m.out_features) {
            return Err(err(
                &file,
                format!(
                    "{}: adapts {} -> {} but projection `{op}` is {i} -> {o}",
                    m.path, m.in_features, m.out_features
                ),
            ));
        }
        out.push(Matched {
            block,
            layer: m.layer,
            op: op.to_string(),
            module: m.clone(),
        });
    }
    Ok(out)
}
