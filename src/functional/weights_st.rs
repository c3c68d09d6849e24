//! Real static weights from a safetensors checkpoint: the file a workload's
//! `weights` section names ([`WeightsSpec`]), matched to the graph's
//! projections and norms by Hugging Face naming conventions.
//!
//! The name rule. Every tensor `<M>.weight` (or `<M>.gamma`, older BERT
//! checkpoints) defines a module path `<M>`. A module belongs to layer i
//! when its path is under `<weights.layers>.<i>.`, or, without
//! `weights.layers`, when its first `layer.N`, `layers.N`, `h.N` or
//! `blocks.N` component has N = i; modules of no layer belong to the
//! embedding and head blocks. Within its block instance a module goes to
//! the operation whose name (or alias) is the longest dot-suffix of the
//! path, as PEFT adapters are matched (`crate::adapter::match_workload`):
//! - a Linear `name` matches `<...>.name`, and `<...>.name.dense` (BERT's
//!   `attention.output.dense` is the Linear `attention.output`);
//! - a Norm `name` matches `<...>.name`; a name ending in `norm` also as
//!   `LayerNorm` in its place (`attention.norm` -> `attention.LayerNorm`);
//!   and the norm that follows a Linear `L` (directly or through the `a`
//!   operand of a residual Add) also as `<L without .dense>.LayerNorm`
//!   (BERT's `attention.output.LayerNorm` after `attention.output.dense`).
//!
//! So BERT (`bert.encoder.layer.3.attention.self.query.weight` is layer 3's
//! `query`) and LLaMA (`model.layers.3.self_attn.q_proj.weight` is
//! `q_proj`, `model.norm.weight` the head's `norm`) resolve without
//! configuration. `weights.names` names a module explicitly (`{i}` is the
//! layer index) for anything else, e.g. tied embeddings
//! (`"lm_head": "model.embed_tokens"`).
//!
//! Conventions: PyTorch's `nn.Linear.weight` is `out x in`; the executor's
//! W is `in x out`, so blocks are served transposed. A Linear's bias
//! `<M>.bias`, where the file has one, is served by [`WeightSource::bias`]:
//! the owner PMCA adds it digitally after the ADC (the timing model counts
//! that add as negligible digital work). A Norm's
//! gamma is `<M>.weight` (or `.gamma`), its beta `<M>.bias` (or `.beta`),
//! 0 when the file has neither (RMSNorm). F32, F16 and BF16 tensors are
//! converted to f32.
//!
//! Reading: the header once, then each needed tensor once, in its stored
//! dtype (converted block by block when the executor asks); every error
//! names the file and the tensor.

use super::executor::ExecError;
use super::weights::{check_block, decode_into, NormAffine, WeightSource};
use super::FunctionalError;
use crate::config::{BlockKind, Op, WeightsSpec, Workload};
use crate::graph::{Graph, NodeKind};
use crate::hw::snitch::Kernel;
use safetensors::tensor::TensorInfo;
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a checkpoint cannot provide a workload's weights. Every variant
/// names the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error(
        "workload `{0}` names no weights file (add `weights: Some((file: \"model.safetensors\"))`)"
    )]
    NoFile(String),
    /// The workload itself is invalid (`Workload::validate`).
    #[error("workload: {0}")]
    Workload(String),
    #[error("{file}: cannot read the weights file: {reason}")]
    Io { file: String, reason: String },
    #[error("{file}: not a safetensors file: {reason}")]
    Format { file: String, reason: String },
    /// No tensor matches an operation; `close` lists similar names.
    #[error("{file}: {what}: no tensor {tried}{}", closest(.close))]
    Missing {
        file: String,
        what: String,
        tried: String,
        close: Vec<String>,
    },
    /// Several tensors match an operation.
    #[error("{file}: {what}: {} tensors match ({}); choose one with weights.names or weights.layers", .found.len(), quoted(.found))]
    Ambiguous {
        file: String,
        what: String,
        found: Vec<String>,
    },
    #[error("{file}: tensor `{tensor}` for {what}: shape {found:?}, expected {expected:?}{}", if *.transposed { " (it looks transposed: stored in x out, but nn.Linear weights are out x in)" } else { "" })]
    Shape {
        file: String,
        tensor: String,
        what: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        /// `found` is `expected` reversed.
        transposed: bool,
    },
    #[error("{file}: tensor `{tensor}`: element {index:?} is {value}; weights must be finite")]
    NotFinite {
        file: String,
        tensor: String,
        index: Vec<usize>,
        value: f32,
    },
    #[error("{file}: tensor `{tensor}`: dtype {dtype} is not supported (F32, F16 or BF16)")]
    Dtype {
        file: String,
        tensor: String,
        dtype: String,
    },
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn closest(v: &[String]) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!("; closest: {}", quoted(v))
    }
}

impl From<WeightsError> for ExecError {
    fn from(e: WeightsError) -> ExecError {
        ExecError::Input(e.to_string())
    }
}

/// A tensor as stored: dtype, shape and little-endian bytes.
#[derive(Debug)]
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Raw {
    fn elem_bytes(dtype: Dtype) -> Option<usize> {
        match dtype {
            Dtype::F32 => Some(4),
            Dtype::F16 | Dtype::BF16 => Some(2),
            _ => None,
        }
    }

    /// Elements `r` (flat, row-major) appended to `out` as f32.
    fn decode(&self, r: Range<usize>, out: &mut Vec<f32>) {
        let e = Raw::elem_bytes(self.dtype).expect("checked on loading");
        decode_into(self.dtype, &self.bytes[r.start * e..r.end * e], out)
            .expect("checked on loading");
    }
}

/// Static weights and norm parameters from a safetensors file.
#[derive(Debug)]
pub struct SafetensorsWeights {
    file: PathBuf,
    /// Graph node -> its `out x in` tensor.
    matrices: HashMap<String, Arc<Raw>>,
    norms: HashMap<String, NormAffine>,
    /// Graph node -> its Linear bias (`out`), where the checkpoint has one.
    biases: HashMap<String, Vec<f32>>,
    /// Graph node -> the tensor(s) it reads, for reports and tests.
    tensors: BTreeMap<String, String>,
}

/// An operation instance that needs weights.
struct Want {
    node: String,
    block: BlockKind,
    layer: Option<u32>,
    op: String,
    /// Linear (in, out), or a norm's width.
    shape: WantShape,
    /// Names the module path may end with.
    aliases: Vec<String>,
}

#[derive(Clone, Copy)]
enum WantShape {
    Linear(usize, usize),
    Norm(usize),
}

impl Want {
    fn label(&self) -> String {
        let at = match self.layer {
            Some(i) => format!("layer {i}"),
            None => self.block.field().to_string(),
        };
        match self.shape {
            WantShape::Linear(m, n) => format!("{at} Linear `{}` ({m} -> {n})", self.op),
            WantShape::Norm(w) => format!("{at} Norm `{}` (width {w})", self.op),
        }
    }
}

/// PEFT's rule: `key` matches the end of `path` on a `.` boundary.
fn key_matches(path: &str, key: &str) -> bool {
    path == key || path.ends_with(&format!(".{key}"))
}

/// The layer a module path belongs to (see the module header).
fn layer_of(module: &str, layers: Option<&str>) -> Option<u32> {
    match layers {
        Some(p) => module
            .strip_prefix(p)?
            .strip_prefix('.')?
            .split('.')
            .next()?
            .parse()
            .ok(),
        None => {
            let parts: Vec<&str> = module.split('.').collect();
            parts.windows(2).find_map(|w| {
                matches!(w[0], "layer" | "layers" | "h" | "blocks")
                    .then(|| w[1].parse().ok())
                    .flatten()
            })
        }
    }
}

/// Names a Norm's module may end with: its own, `LayerNorm` for a final
/// `norm` component, and `<L>.LayerNorm` for the Linear L it follows.
fn norm_aliases(ops: &[Op], name: &str, from: &str) -> Vec<String> {
    let mut v = vec![name.to_string()];
    if name == "norm" {
        v.push("LayerNorm".into());
    } else if let Some(stem) = name.strip_suffix(".norm") {
        v.push(format!("{stem}.LayerNorm"));
    }
    let producer = |t: &str| ops.iter().find(|o| o.name() == t);
    let linear = match producer(from) {
        Some(Op::Linear { name, .. }) => Some(name.as_str()),
        Some(Op::Add { a, b, .. }) => [a, b].into_iter().find_map(|t| match producer(t) {
            Some(Op::Linear { name, .. }) => Some(name.as_str()),
            _ => None,
        }),
        _ => None,
    };
    if let Some(l) = linear {
        let a = format!("{}.LayerNorm", l.strip_suffix(".dense").unwrap_or(l));
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v
}

/// Edit distance, for "closest" suggestions.
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The last `k` dot-components of `path`.
fn tail(path: &str, k: usize) -> &str {
    let mut idx = path.len();
    for _ in 0..k {
        match path[..idx].rfind('.') {
            Some(i) => idx = i,
            None => return path,
        }
    }
    &path[idx + 1..]
}

/// Up to three of `candidates` closest to any of `targets` (compared on as
/// many trailing components as the target has).
fn suggest<'a>(
    candidates: impl Iterator<Item = &'a str>,
    targets: &[String],
    whole: bool,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates
        .map(|c| {
            let d = targets
                .iter()
                .map(|t| {
                    let c = if whole {
                        c
                    } else {
                        tail(c, t.matches('.').count() + 1)
                    };
                    levenshtein(c, t)
                })
                .min()
                .unwrap_or(usize::MAX);
            (d, c)
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The file's table of contents.
struct Header {
    tensors: BTreeMap<String, TensorInfo>,
    /// File offset of the data section.
    data_start: u64,
    file_len: u64,
}

fn read_header(f: &mut File, file: &str) -> Result<Header, WeightsError> {
    let fmt = |reason: String| WeightsError::Format {
        file: file.to_string(),
        reason,
    };
    let file_len = f
        .metadata()
        .map_err(|e| WeightsError::Io {
            file: file.to_string(),
            reason: e.to_string(),
        })?
        .len();
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8)
        .map_err(|_| fmt(format!("{file_len} bytes, shorter than the header length")))?;
    let n = u64::from_le_bytes(n8);
    if n > 100_000_000 || 8 + n > file_len {
        return Err(fmt(format!(
            "a header of {n} bytes in a file of {file_len} bytes"
        )));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h).map_err(|e| fmt(e.to_string()))?;
    let text = std::str::from_utf8(&h).map_err(|e| fmt(format!("header: {e}")))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| fmt(format!("header: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(v).map_err(|e| fmt(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, info);
    }
    Ok(Header {
        tensors,
        data_start: 8 + n,
        file_len,
    })
}

impl SafetensorsWeights {
    /// The weights of `w` from the file its `weights` section names.
    pub fn open(w: &Workload) -> Result<SafetensorsWeights, WeightsError> {
        match &w.weights {
            Some(spec) => SafetensorsWeights::open_spec(spec, w),
            None => Err(WeightsError::NoFile(w.name.clone())),
        }
    }

    /// The weights of `w`'s projections and norms from `spec.file`
    /// (a relative path is taken as it stands: relative to the working
    /// directory; `config::load_workload` has already resolved it against
    /// the description's directory).
    pub fn open_spec(spec: &WeightsSpec, w: &Workload) -> Result<SafetensorsWeights, WeightsError> {
        w.validate().map_err(WeightsError::Workload)?;
        let path = crate::config::expand_assets(&spec.file);
        let file = path.display().to_string();
        let io = |e: std::io::Error| WeightsError::Io {
            file: file.clone(),
            reason: e.to_string(),
        };
        let mut f = File::open(&path).map_err(io)?;
        let header = read_header(&mut f, &file)?;

        // Module path -> (gamma/weight tensor, beta/bias tensor).
        let mut modules: BTreeMap<&str, (&str, Option<&str>)> = BTreeMap::new();
        for name in header.tensors.keys() {
            let (m, bias) = if let Some(m) = name.strip_suffix(".weight") {
                (m, "bias")
            } else if let Some(m) = name.strip_suffix(".gamma") {
                (m, "beta")
            } else {
                continue;
            };
            if name.ends_with(".gamma") && modules.contains_key(m) {
                continue; // `.weight` wins
            }
            let b = header
                .tensors
                .get_key_value(&format!("{m}.{bias}"))
                .map(|(k, _)| k.as_str());
            modules.insert(m, (name.as_str(), b));
        }
        let layers = spec.layers.as_deref();
        let mut groups: BTreeMap<Option<u32>, Vec<&str>> = BTreeMap::new();
        for m in modules.keys() {
            groups.entry(layer_of(m, layers)).or_default().push(m);
        }

        // What the graph needs, in execution order.
        let graph = Graph::build(w);
        let ops_of = |b: BlockKind| -> &[Op] {
            match b {
                BlockKind::Embedding => &w.embedding,
                BlockKind::Layer => &w.layer,
                BlockKind::Head => &w.head,
            }
        };
        let mut wants = Vec::new();
        for &ix in &graph.order {
            let node = &graph.g[ix];
            let shape = match node.kind {
                NodeKind::StaticMvm {
                    in_features,
                    out_features,
                } => WantShape::Linear(in_features as usize, out_features as usize),
                NodeKind::Elementwise {
                    kernel: Kernel::LayerNorm | Kernel::RmsNorm | Kernel::NoNorm,
                    width,
                } => WantShape::Norm(width as usize),
                _ => continue,
            };
            let ops = ops_of(node.block);
            let aliases = match ops.iter().find(|o| o.name() == node.op_name) {
                Some(Op::Norm { name, from, .. }) => norm_aliases(ops, name, from),
                _ => vec![node.op_name.clone()],
            };
            wants.push(Want {
                node: node.name.clone(),
                block: node.block,
                layer: node.layer,
                op: node.op_name.clone(),
                shape,
                aliases,
            });
        }

        // Automatic matching: each module of a block instance goes to the
        // operation(s) with the longest matching name.
        let mut found: Vec<Vec<&str>> = vec![Vec::new(); wants.len()];
        for (g, mods) in &groups {
            let here: Vec<usize> = (0..wants.len())
                .filter(|&k| wants[k].layer == *g && !spec.names.contains_key(&wants[k].op))
                .collect();
            for m in mods {
                let mut best = 0;
                let mut who: Vec<usize> = Vec::new();
                for &k in &here {
                    let want = &wants[k];
                    let stripped = match want.shape {
                        WantShape::Linear(..) => m.strip_suffix(".dense"),
                        WantShape::Norm(_) => None,
                    };
                    let score = want
                        .aliases
                        .iter()
                        .filter(|a| {
                            key_matches(m, a) || stripped.is_some_and(|s| key_matches(s, a))
                        })
                        .map(|a| a.len())
                        .max()
                        .unwrap_or(0);
                    if score > best {
                        best = score;
                        who.clear();
                    }
                    if score == best && score > 0 {
                        who.push(k);
                    }
                }
                for k in who {
                    found[k].push(m);
                }
            }
        }

        // Resolve each operation to one module and read its tensors.
        let mut cache: HashMap<String, Arc<Raw>> = HashMap::new();
        let mut out = SafetensorsWeights {
            file: path.clone(),
            matrices: HashMap::new(),
            norms: HashMap::new(),
            biases: HashMap::new(),
            tensors: BTreeMap::new(),
        };
        for (k, want) in wants.iter().enumerate() {
            let module: &str = if let Some(name) = spec.names.get(&want.op) {
                let name = match want.layer {
                    Some(i) => name.replace("{i}", &i.to_string()),
                    None => name.clone(),
                };
                match modules.get_key_value(name.as_str()) {
                    Some((m, _)) => m,
                    None => {
                        return Err(WeightsError::Missing {
                            file,
                            what: want.label(),
                            tried: format!("`{name}.weight` (weights.names)"),
                            close: suggest(modules.keys().copied(), &[name], true)
                                .into_iter()
                                .map(|m| modules[m.as_str()].0.to_string())
                                .collect(),
                        });
                    }
                }
            } else {
                match found[k].as_slice() {
                    [m] => m,
                    [] => {
                        let suffixes: Vec<String> = want
                            .aliases
                            .iter()
                            .flat_map(|a| match want.shape {
                                WantShape::Linear(..) => {
                                    vec![format!("`.{a}.weight`"), format!("`.{a}.dense.weight`")]
                                }
                                WantShape::Norm(_) => vec![format!("`.{a}.weight`")],
                            })
                            .collect();
                        let (where_, pool) = match want.layer {
                            Some(i) => (format!("layer {i}"), groups.get(&Some(i))),
                            None => ("the embedding and head".to_string(), groups.get(&None)),
                        };
                        let mut tried =
                            format!("name of {where_} ends in {}", suffixes.join(" or "));
                        if let (Some(i), None) = (want.layer, pool) {
                            let have: Vec<u32> = groups.keys().flatten().copied().collect();
                            tried.push_str(&match (have.first(), have.last()) {
                                (Some(a), Some(b)) => format!(
                                    " (the file has no tensors of layer {i}: its layers are {a}..={b})"
                                ),
                                _ => format!(
                                    " (the file has no tensors of any layer{})",
                                    layers
                                        .map(|l| format!(" under `{l}`"))
                                        .unwrap_or_default()
                                ),
                            });
                        }
                        let close = pool
                            .map(|p| suggest(p.iter().copied(), &want.aliases, false))
                            .unwrap_or_default()
                            .into_iter()
                            .map(|m| modules[m.as_str()].0.to_string())
                            .collect();
                        return Err(WeightsError::Missing {
                            file,
                            what: want.label(),
                            tried,
                            close,
                        });
                    }
                    many => {
                        return Err(WeightsError::Ambiguous {
                            file,
                            what: want.label(),
                            found: many.iter().map(|m| modules[m].0.to_string()).collect(),
                        })
                    }
                }
            };
            let (wname, bname) = modules[module];
            let mut load = |tensor: &str, expected: Vec<usize>| -> Result<Arc<Raw>, WeightsError> {
                let info = &header.tensors[tensor];
                if info.shape != expected {
                    let mut rev = expected.clone();
                    rev.reverse();
                    return Err(WeightsError::Shape {
                        file: file.clone(),
                        tensor: tensor.to_string(),
                        what: want.label(),
                        transposed: expected.len() == 2 && rev != expected && info.shape == rev,
                        expected,
                        found: info.shape.clone(),
                    });
                }
                if let Some(r) = cache.get(tensor) {
                    return Ok(r.clone());
                }
                let Some(eb) = Raw::elem_bytes(info.dtype) else {
                    return Err(WeightsError::Dtype {
                        file: file.clone(),
                        tensor: tensor.to_string(),
                        dtype: format!("{:?}", info.dtype),
                    });
                };
                let numel: usize = info.shape.iter().product();
                let (s, e) = info.data_offsets;
                let (s64, e64) = (s as u64, e as u64);
                if e < s || e - s != numel * eb || header.data_start + e64 > header.file_len {
                    return Err(WeightsError::Format {
                        file: file.clone(),
                        reason: format!(
                            "tensor `{tensor}`: data offsets {s}..{e} do not hold {numel} {:?} values within the file",
                            info.dtype
                        ),
                    });
                }
                let mut bytes = vec![0u8; e - s];
                f.seek(SeekFrom::Start(header.data_start + s64))
                    .and_then(|_| f.read_exact(&mut bytes))
                    .map_err(|e| WeightsError::Io {
                        file: file.clone(),
                        reason: format!("tensor `{tensor}`: {e}"),
                    })?;
                let raw = Raw {
                    name: tensor.to_string(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes,
                };
                // Finiteness, a chunk at a time.
                let mut buf = Vec::new();
                let chunk = 1 << 16;
                for lo in (0..numel).step_by(chunk) {
                    buf.clear();
                    raw.decode(lo..(lo + chunk).min(numel), &mut buf);
                    if let Some(p) = buf.iter().position(|v| !v.is_finite()) {
                        let mut flat = lo + p;
                        let mut index = vec![0; raw.shape.len()];
                        for (d, &n) in raw.shape.iter().enumerate().rev() {
                            index[d] = flat % n.max(1);
                            flat /= n.max(1);
                        }
                        return Err(WeightsError::NotFinite {
                            file: file.clone(),
                            tensor: tensor.to_string(),
                            index,
                            value: buf[p],
                        });
                    }
                }
                let raw = Arc::new(raw);
                cache.insert(tensor.to_string(), raw.clone());
                Ok(raw)
            };
            match want.shape {
                WantShape::Linear(m, n) => {
                    let raw = load(wname, vec![n, m])?;
                    out.matrices.insert(want.node.clone(), raw);
                    if let Some(b) = bname {
                        let mut v = Vec::with_capacity(n);
                        load(b, vec![n])?.decode(0..n, &mut v);
                        out.biases.insert(want.node.clone(), v);
                    }
                    out.tensors.insert(want.node.clone(), wname.to_string());
                }
                WantShape::Norm(width) => {
                    let all = |r: &Raw| {
                        let mut v = Vec::with_capacity(width);
                        r.decode(0..width, &mut v);
                        v
                    };
                    let gamma = all(&*load(wname, vec![width])?);
                    let beta = match bname {
                        Some(b) => all(&*load(b, vec![width])?),
                        None => vec![0.0; width],
                    };
                    out.norms
                        .insert(want.node.clone(), NormAffine { gamma, beta });
                    out.tensors.insert(
                        want.node.clone(),
                        match bname {
                            Some(b) => format!("{wname} + {b}"),
                            None => wname.to_string(),
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// The file the weights came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The tensor(s) graph node `node` (e.g. `layer.0.query`) reads:
    /// `<M>.weight` for a projection, `<M>.weight + <M>.bias` for a norm.
    pub fn tensor_of(&self, node: &str) -> Option<&str> {
        self.tensors.get(node).map(String::as_str)
    }

    /// Every (graph node, tensor) pair, by node name.
    pub fn assignments(&self) -> &BTreeMap<String, String> {
        &self.tensors
    }
}

impl WeightSource for SafetensorsWeights {
    fn describe(&self) -> String {
        format!(
            "safetensors {}: {} projections ({} with a bias), {} norms",
            self.file.display(),
            self.matrices.len(),
            self.biases.len(),
            self.norms.len()
        )
    }

    fn matrix_block(
        &self,
        node: &crate::graph::Node,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, FunctionalError> {
        let (m, n) = check_block(node, &rows, &cols)?;
        let Some(raw) = self.matrices.get(&node.name) else {
            return Err(FunctionalError::Shape(format!(
                "{}: no weights for this projection were read from {}",
                node.name,
                self.file.display()
            )));
        };
        if raw.shape != [n, m] {
            return Err(FunctionalError::Shape(format!(
                "{}: tensor `{}` is {:?} but the projection is {m} -> {n}",
                node.name, raw.name, raw.shape
            )));
        }
        // W[i][j] (in x out) = file[j][i] (out x in): one stored row
        // segment per output column.
        let nc = cols.len();
        let mut out = vec![0.0f32; rows.len() * nc];
        let mut seg = Vec::with_capacity(rows.len());
        for (jj, j) in cols.enumerate() {
            seg.clear();
            raw.decode(j * m + rows.start..j * m + rows.end, &mut seg);
            for (ii, v) in seg.iter().enumerate() {
                out[ii * nc + jj] = *v;
            }
        }
        Ok(out)
    }

    fn bias(&self, node: &crate::graph::Node) -> Result<Option<Vec<f32>>, FunctionalError> {
        Ok(self.biases.get(&node.name).cloned())
    }

    fn norm(&self, node: &crate::graph::Node, width: usize) -> Result<NormAffine, FunctionalError> {
        match self.norms.get(&node.name) {
            Some(p) if p.gamma.len() == width => Ok(p.clone()),
            Some(p) => Err(FunctionalError::Shape(format!(
                "{}: {} norm parameters from {} for width {width}",
                node.name,
                p.gamma.len(),
                self.file.display()
            ))),
            None => Err(FunctionalError::Shape(format!(
                "{}: no norm parameters for this norm were read from {}",
                node.name,
                self.file.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_indices_and_suffixes() {
        assert_eq!(
            layer_of("bert.encoder.layer.3.attention.self.query", None),
            Some(3)
        );
        assert_eq!(layer_of("model.layers.12.self_attn.q_proj", None), Some(12));
        assert_eq!(layer_of("transformer.h.0.attn", None), Some(0));
        assert_eq!(layer_of("bert.embeddings.LayerNorm", None), None);
        assert_eq!(
            layer_of(
                "encoder.block.2.layer.0.SelfAttention.q",
                Some("encoder.block")
            ),
            Some(2)
        );
        assert_eq!(layer_of("decoder.block.2.x", Some("encoder.block")), None);
        assert!(key_matches("a.attention.output", "attention.output"));
        assert!(!key_matches("a.xoutput", "output"));
        assert_eq!(tail("a.b.c.d", 2), "c.d");
        assert_eq!(tail("d", 3), "d");
        assert_eq!(levenshtein("qeury", "query"), 2);
        assert_eq!(levenshtein("", "ab"), 2);
    }
}
