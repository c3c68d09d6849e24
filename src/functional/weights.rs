//! Where the functional executor's numbers come from: the static weights
//! and norm parameters of every graph node ([`WeightSource`]) and the LoRA
//! adapters' A and B matrices ([`LoraWeights`]).
//!
//! Conventions: a static MVM computes `Y = X W` with W `in x out`
//! row-major (Hugging Face's `weight` tensors are `out x in`: a file-backed
//! source transposes). A LoRA branch is `scaling * (X A) B` with A
//! `in x r` and B `r x out` (PEFT's `lora_A.weight` is `r x in`,
//! `lora_B.weight` `out x r`: both transposed on loading).
//!
//! Sources:
//! - [`RandomWeights`]: descriptions without weights. W ~ N(0, 1/in) per
//!   projection (unit-variance outputs for unit-variance inputs), norms
//!   gamma = 1, beta = 0; deterministic per (seed, node name), and any
//!   block of a matrix can be drawn on its own (64-element chunks of a row
//!   each have their own stream), so split matrices never materialise
//!   whole and the values do not depend on the tile size.
//! - [`DenseWeights`]: explicit matrices by node name (tests; the shape of
//!   what a safetensors source will produce).
//! - [`SafetensorsWeights`](super::weights_st::SafetensorsWeights): real
//!   weights from the checkpoint a workload's `weights` section names.

use super::rng::{self, tag};
use super::FunctionalError;
use crate::adapter::{Adapter, AdapterError, Matched};
use crate::config::{BlockKind, LoraSpec, Targets, Workload};
use crate::graph::{Node, NodeKind};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// The affine parameters of a norm (NoNorm, LayerNorm; RMSNorm uses gamma).
#[derive(Debug, Clone, PartialEq)]
pub struct NormAffine {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl NormAffine {
    /// gamma = 1, beta = 0.
    pub fn identity(width: usize) -> NormAffine {
        NormAffine {
            gamma: vec![1.0; width],
            beta: vec![0.0; width],
        }
    }
}

/// Provides the static weights of a graph. Implementations must be
/// deterministic: the executor draws a block once per trial and per
/// reference, in parallel.
pub trait WeightSource: Sync {
    /// A line for reports, e.g. `random N(0, 1/in), seed 0`.
    fn describe(&self) -> String;
    /// Rows `rows` (inputs) and columns `cols` (outputs) of the static
    /// MVM `node`'s W, row-major `rows.len() x cols.len()`.
    fn matrix_block(
        &self,
        node: &Node,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, FunctionalError>;
    /// The static MVM `node`'s bias (`out` values), added digitally after
    /// the tile; `None` when the projection has none.
    fn bias(&self, _node: &Node) -> Result<Option<Vec<f32>>, FunctionalError> {
        Ok(None)
    }
    /// The affine parameters of the norm `node` of `width` features.
    fn norm(&self, node: &Node, width: usize) -> Result<NormAffine, FunctionalError>;
    /// Should each NoNorm be rescaled so that its output has unit RMS in
    /// the FP32 reference (see [`Executor::calibrate_nonorm`])? Random
    /// weights have no trained scale: MobileBERT's NoNorm (no statistics)
    /// would let activations grow several-fold per layer, past FP16's
    /// range over 24 layers. Real weights keep their own.
    ///
    /// [`Executor::calibrate_nonorm`]: super::Executor::calibrate_nonorm
    fn unit_rms_nonorm(&self) -> bool {
        false
    }
}

/// FNV-1a of a name: a stable 64-bit stream tag (std's hasher may change
/// between Rust releases).
pub fn name_tag(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mvm_shape(node: &Node) -> Result<(usize, usize), FunctionalError> {
    match node.kind {
        NodeKind::StaticMvm {
            in_features,
            out_features,
        } => Ok((in_features as usize, out_features as usize)),
        _ => Err(FunctionalError::Shape(format!(
            "{}: not a static MVM",
            node.name
        ))),
    }
}

pub(super) fn check_block(
    node: &Node,
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> Result<(usize, usize), FunctionalError> {
    let (m, n) = mvm_shape(node)?;
    if rows.start >= rows.end || cols.start >= cols.end || rows.end > m || cols.end > n {
        return Err(FunctionalError::Shape(format!(
            "{}: block rows {rows:?} x cols {cols:?} is outside its {m} x {n} matrix",
            node.name
        )));
    }
    Ok((m, n))
}

/// Seeded random weights: W ~ N(0, 1/in), norms the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomWeights {
    pub seed: u64,
}

/// Elements of a row drawn from one stream.
const CHUNK: usize = 64;

impl RandomWeights {
    pub fn new(seed: u64) -> RandomWeights {
        RandomWeights { seed }
    }
}

impl WeightSource for RandomWeights {
    fn describe(&self) -> String {
        format!(
            "random: W ~ N(0, 1/in), norms gamma 1 beta 0, NoNorm rescaled to unit RMS; seed {}",
            self.seed
        )
    }

    fn matrix_block(
        &self,
        node: &Node,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, FunctionalError> {
        let (m, n) = check_block(node, &rows, &cols)?;
        let std = 1.0 / (m as f32).sqrt();
        let h = name_tag(&node.name);
        let mut out = Vec::with_capacity(rows.len() * cols.len());
        let mut buf = [0.0f32; CHUNK];
        for i in rows {
            for c in cols.start / CHUNK..cols.end.div_ceil(CHUNK) {
                let lo = c * CHUNK;
                let hi = (lo + CHUNK).min(n);
                let chunk = &mut buf[..hi - lo];
                let mut r = rng::stream(self.seed, &[tag::WEIGHTS, h, i as u64, c as u64]);
                rng::fill_standard_normal(&mut r, chunk);
                let (a, b) = (cols.start.max(lo), cols.end.min(hi));
                out.extend(chunk[a - lo..b - lo].iter().map(|v| v * std));
            }
        }
        Ok(out)
    }

    fn norm(&self, _node: &Node, width: usize) -> Result<NormAffine, FunctionalError> {
        Ok(NormAffine::identity(width))
    }

    fn unit_rms_nonorm(&self) -> bool {
        true
    }
}

/// Explicit weights by node name (`layer.0.query`); norms not given are the
/// identity.
#[derive(Debug, Clone, Default)]
pub struct DenseWeights {
    /// name -> (in, out, W row-major in x out).
    matrices: HashMap<String, (usize, usize, Vec<f32>)>,
    norms: HashMap<String, NormAffine>,
}

impl DenseWeights {
    pub fn new() -> DenseWeights {
        DenseWeights::default()
    }

    /// Sets node `name`'s W (`m x n`, row-major).
    pub fn insert_matrix(
        &mut self,
        name: &str,
        m: usize,
        n: usize,
        w: Vec<f32>,
    ) -> Result<(), FunctionalError> {
        if w.len() != m * n {
            return Err(FunctionalError::Shape(format!(
                "{name}: {} values for a {m} x {n} matrix",
                w.len()
            )));
        }
        self.matrices.insert(name.to_string(), (m, n, w));
        Ok(())
    }

    /// Sets norm `name`'s gamma and beta.
    pub fn insert_norm(&mut self, name: &str, p: NormAffine) {
        self.norms.insert(name.to_string(), p);
    }
}

impl WeightSource for DenseWeights {
    fn describe(&self) -> String {
        format!("dense: {} matrices given", self.matrices.len())
    }

    fn matrix_block(
        &self,
        node: &Node,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, FunctionalError> {
        let (m, n) = check_block(node, &rows, &cols)?;
        let Some((wm, wn, w)) = self.matrices.get(&node.name) else {
            return Err(FunctionalError::Shape(format!(
                "{}: no weights given",
                node.name
            )));
        };
        if (*wm, *wn) != (m, n) {
            return Err(FunctionalError::Shape(format!(
                "{}: weights are {wm} x {wn} but the projection is {m} x {n}",
                node.name
            )));
        }
        Ok(rows
            .flat_map(|i| w[i * n + cols.start..i * n + cols.end].iter().copied())
            .collect())
    }

    fn norm(&self, node: &Node, width: usize) -> Result<NormAffine, FunctionalError> {
        match self.norms.get(&node.name) {
            None => Ok(NormAffine::identity(width)),
            Some(p) if p.gamma.len() == width && p.beta.len() == width => Ok(p.clone()),
            Some(p) => Err(FunctionalError::Shape(format!(
                "{}: gamma {} and beta {} values for width {width}",
                node.name,
                p.gamma.len(),
                p.beta.len()
            ))),
        }
    }
}

/// One adapted projection: `scaling * (X A) B`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraModule {
    pub in_features: usize,
    pub out_features: usize,
    pub rank: usize,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scaling: f32,
    /// `in x r`, row-major.
    pub a: Vec<f32>,
    /// `r x out`, row-major.
    pub b: Vec<f32>,
}

/// Which projection instance a module adapts: block, layer (layer block
/// only) and the workload's projection name.
pub type LoraKey = (BlockKind, Option<u32>, String);

/// The adapters' matrices by projection instance.
#[derive(Debug, Clone, Default)]
pub struct LoraWeights {
    /// Where they came from, for reports.
    pub source: String,
    modules: BTreeMap<(u8, Option<u32>, String), LoraModule>,
}

fn block_key(b: BlockKind) -> u8 {
    match b {
        BlockKind::Embedding => 0,
        BlockKind::Layer => 1,
        BlockKind::Head => 2,
    }
}

fn block_of(k: u8) -> BlockKind {
    match k {
        0 => BlockKind::Embedding,
        1 => BlockKind::Layer,
        _ => BlockKind::Head,
    }
}

/// A safetensors tensor as f32 (F32, F16 or BF16, little-endian).
fn tensor_f32(view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, String> {
    let mut out = Vec::new();
    decode_into(view.dtype(), view.data(), &mut out)?;
    Ok(out)
}

/// Appends little-endian F32, F16 or BF16 `bytes` to `out` as f32.
pub(super) fn decode_into(
    dtype: safetensors::Dtype,
    bytes: &[u8],
    out: &mut Vec<f32>,
) -> Result<(), String> {
    use safetensors::Dtype;
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        ),
        other => return Err(format!("dtype {other:?}; F32, F16 or BF16 expected")),
    }
    Ok(())
}

/// `rows x cols` row-major -> `cols x rows`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = v[i * cols + j];
        }
    }
    t
}

impl LoraWeights {
    pub fn new(source: impl Into<String>) -> LoraWeights {
        LoraWeights {
            source: source.into(),
            modules: BTreeMap::new(),
        }
    }

    /// Adds the module adapting projection `op` of `block` (`layer` for the
    /// layer block). Checks shapes, finiteness and uniqueness.
    pub fn insert(
        &mut self,
        block: BlockKind,
        layer: Option<u32>,
        op: &str,
        m: LoraModule,
    ) -> Result<(), FunctionalError> {
        let at = format!(
            "LoRA {}{}.{op}",
            block.field(),
            layer.map(|l| format!(".{l}")).unwrap_or_default()
        );
        if m.rank == 0 || m.in_features == 0 || m.out_features == 0 {
            return Err(FunctionalError::Shape(format!(
                "{at}: rank, in and out must be at least 1"
            )));
        }
        if m.a.len() != m.in_features * m.rank || m.b.len() != m.rank * m.out_features {
            return Err(FunctionalError::Shape(format!(
                "{at}: A has {} values for {} x {}, B {} for {} x {}",
                m.a.len(),
                m.in_features,
                m.rank,
                m.b.len(),
                m.rank,
                m.out_features
            )));
        }
        if !m.scaling.is_finite() {
            return Err(FunctionalError::Param(format!(
                "{at}: scaling {} is not finite",
                m.scaling
            )));
        }
        if m.a.iter().chain(&m.b).any(|v| !v.is_finite()) {
            return Err(FunctionalError::Param(format!(
                "{at}: A or B holds a value that is not finite"
            )));
        }
        let key = (block_key(block), layer, op.to_string());
        if self.modules.contains_key(&key) {
            return Err(FunctionalError::Param(format!(
                "{at}: two adapter modules adapt this projection"
            )));
        }
        self.modules.insert(key, m);
        Ok(())
    }

    /// Reads the A and B tensors of every matched module from the
    /// adapter's `adapter_model.safetensors` (F32, F16 or BF16), transposed
    /// to `in x r` and `r x out`, with the module's scaling.
    pub fn from_peft(adapter: &Adapter, matched: &[Matched]) -> Result<LoraWeights, AdapterError> {
        let path = adapter.dir.join("adapter_model.safetensors");
        let fail = |msg: String| AdapterError::File {
            file: path.display().to_string(),
            msg,
        };
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
        let mut out = LoraWeights::new(adapter.dir.display().to_string());
        for mt in matched {
            let md = &mt.module;
            let (m, n, r) = (
                md.in_features as usize,
                md.out_features as usize,
                md.rank as usize,
            );
            let read = |suffix: &str, shape: [usize; 2]| -> Result<Vec<f32>, AdapterError> {
                let name = format!("{}.{suffix}", md.path);
                let v = st.tensor(&name).map_err(|e| fail(format!("{name}: {e}")))?;
                if v.shape() != shape {
                    return Err(fail(format!(
                        "{name}: shape {:?}, expected {shape:?}",
                        v.shape()
                    )));
                }
                tensor_f32(&v).map_err(|e| fail(format!("{name}: {e}")))
            };
            let a = transpose(&read("lora_A.weight", [r, m])?, r, m);
            let b = transpose(&read("lora_B.weight", [n, r])?, n, r);
            out.insert(
                mt.block,
                mt.layer,
                &mt.op,
                LoraModule {
                    in_features: m,
                    out_features: n,
                    rank: r,
                    scaling: md.scaling as f32,
                    a,
                    b,
                },
            )
            .map_err(|e| fail(format!("{}: {e}", md.path)))?;
        }
        Ok(out)
    }

    /// The module adapting a graph node's projection, if any.
    pub fn get(&self, block: BlockKind, layer: Option<u32>, op: &str) -> Option<&LoraModule> {
        self.modules.get(&(block_key(block), layer, op.to_string()))
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// (block, layer, projection) of every module.
    pub fn keys(&self) -> Vec<LoraKey> {
        self.modules
            .keys()
            .map(|(b, l, o)| (block_of(*b), *l, o.clone()))
            .collect()
    }

    /// `w` with its LoRA placement taken from these modules: the adapted
    /// projections by name, the largest rank (the graph and the timing run
    /// see one rank; the executor uses each module's own).
    pub fn workload(&self, w: &Workload) -> Workload {
        let mut names: Vec<String> = self.modules.keys().map(|k| k.2.clone()).collect();
        names.sort();
        names.dedup();
        let rank = self.modules.values().map(|m| m.rank).max().unwrap_or(0) as u32;
        let mut out = w.clone();
        out.lora = LoraSpec {
            rank,
            alpha: w.lora.alpha,
            targets: if names.is_empty() {
                Targets::None
            } else {
                Targets::Only(names)
            },
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;

    fn mvm(name: &str, m: u32, n: u32) -> Node {
        Node {
            name: name.into(),
            op_name: "x".into(),
            block: BlockKind::Layer,
            layer: Some(0),
            kind: NodeKind::StaticMvm {
                in_features: m,
                out_features: n,
            },
            out_width: n,
            flops: 0,
            out_bytes: 0,
        }
    }

    #[test]
    fn random_blocks_are_slices_of_the_whole() {
        let w = RandomWeights::new(3);
        let node = mvm("layer.0.q", 300, 200);
        let full = w.matrix_block(&node, 0..300, 0..200).unwrap();
        let blk = w.matrix_block(&node, 17..130, 50..171).unwrap();
        let expect: Vec<f32> = (17..130)
            .flat_map(|i| full[i * 200 + 50..i * 200 + 171].to_vec())
            .collect();
        assert_eq!(blk, expect);
        // Deterministic per (seed, node); other seeds and nodes differ.
        assert_eq!(full, w.matrix_block(&node, 0..300, 0..200).unwrap());
        assert_ne!(
            full,
            RandomWeights::new(4)
                .matrix_block(&node, 0..300, 0..200)
                .unwrap()
        );
        assert_ne!(
            full,
            w.matrix_block(&mvm("layer.1.q", 300, 200), 0..300, 0..200)
                .unwrap()
        );
        // N(0, 1/in): 60000 samples, variance 1/300 within a few percent.
        let var = full.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / full.len() as f64;
        assert!((var * 300.0 - 1.0).abs() < 0.03, "{var}");
        assert!(w.matrix_block(&node, 0..301, 0..1).is_err());
    }

    #[test]
    fn lora_insert_checks() {
        let mut l = LoraWeights::new("t");
        let ok = LoraModule {
            in_features: 2,
            out_features: 3,
            rank: 1,
            scaling: 2.0,
            a: vec![1.0, 2.0],
            b: vec![1.0, 2.0, 3.0],
        };
        l.insert(BlockKind::Layer, Some(0), "q", ok.clone())
            .unwrap();
        assert!(l
            .insert(BlockKind::Layer, Some(0), "q", ok.clone())
            .is_err());
        let mut bad = ok.clone();
        bad.b.pop();
        assert!(l.insert(BlockKind::Layer, Some(1), "q", bad).is_err());
        let mut nan = ok;
        nan.a[0] = f32::NAN;
        assert!(l.insert(BlockKind::Layer, Some(2), "q", nan).is_err());
        assert_eq!(l.len(), 1);
        assert!(l.get(BlockKind::Layer, Some(0), "q").is_some());
        assert!(l.get(BlockKind::Head, None, "q").is_none());
    }
}
