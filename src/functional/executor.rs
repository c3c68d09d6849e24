//! The functional executor: runs the mapped graph on numbers, every node in
//! graph order, for several *streams* at once over the same inputs and
//! weights:
//!
//! - [`Stream::Reference`]: the digital FP32 reference (exact FP32
//!   everywhere, no analog noise, no FP16 rounding), with or without the
//!   LoRA branches;
//! - [`Stream::Analog`]: the hardware as mapped, at one drift time, with
//!   or without the LoRA branches.
//!
//! Static MVMs run through [`AnalogTile`]s exactly as the mapping places
//! them: a matrix split into `rows x cols` blocks gets one tile per block,
//! each programmed once per trial from its own stream (trial seed, node
//! name, row block, column block), then drifted to each drift time in turn
//! (GDC per tile, as the tile model does). Token groups of `t` tokens (the
//! mapping's group size) go through the tile one batch each, so bound
//! management sees what the hardware's group sees; when the tile's outputs
//! do not depend on the grouping (bound management per token, no weight
//! redraw per pass: [`AnalogTile::batch_invariant`]), larger batches go
//! through at once, which changes only the order of the noise draws. Each tile's output is
//! converted to FP16 (the post-ADC affine scale writes FP16 to the TCDM);
//! the owner PMCA adds the row blocks' partial sums in row-block order, one
//! FP16 add at a time. Streams at the same drift time, with and without
//! LoRA, read the same tile state and the same output-noise draws (the tile
//! is cloned after `drift_to`), so their difference is the LoRA branch
//! alone.
//!
//! LoRA (on the owner PMCAs, RedMule, FP16 operands, FP32 accumulation):
//! `X A` as the mapping splits it (one partial `X_i A_i` per row block,
//! each rounded to FP16, summed in FP16), then `(X A) (s B) + Y` in one
//! job with the scaling `s` folded into B before its conversion to FP16
//! (what a deployment stores), one rounding of the result. A projection
//! whose LoRA node has no adapter module passes `Y` through. The other PMCA
//! operations follow [`ops`](super::ops) (FP16 storage, FP32 arithmetic
//! inside each operation).
//!
//! Memory: tensors are dropped after their last reader, so only one
//! layer's worth is alive per stream; a split matrix is drawn and
//! programmed one block at a time (column blocks in parallel), never
//! whole. The caller sees each block instance's output (embedding, every
//! layer, head) through a callback and keeps what it needs.
//!
//! Sequences: a pass runs one or more token sequences back to back (the
//! `seqs` lengths of [`Tokens`]); every per-token operation sees them as one
//! stream of tokens (a tile's token group may span two sentences, as on the
//! hardware's token stream), attention only within each sequence. Linear
//! biases ([`WeightSource::bias`]) are added by the owner PMCA after the row
//! blocks' partial sums (FP16 in the analog streams).
//!
//! Chips: analog streams with different `chip` numbers read independently
//! programmed tiles (chip 0 is the trial's own programming), so one pass
//! can see several chips in lockstep (the noise-robust LoRA fit needs all
//! chips' data at a projection before the next projection runs).
//!
//! Fitting hook: [`Executor::fit_pass`] calls back at every LoRA branch
//! with the projection's input and output in every stream, before the
//! branch runs; a module the callback returns is used from then on in the
//! streams with LoRA on (so each projection's fit sees the corrected
//! outputs of the projections before it).
//!
//! Determinism: every tile has its own stream; column blocks and streams
//! run in parallel but combine in a fixed order, so results are
//! bit-identical at any thread count.

use super::gemm;
use super::metrics::{argmax_agreement, compare, Metrics};
use super::ops::{self, Precision};
use super::rng::{self, tag};
use super::tile::{AnalogParams, AnalogTile, TileSpec};
use super::weights::{name_tag, LoraModule, LoraWeights, WeightSource};
use super::FunctionalError;
use crate::adapter::AdapterError;
use crate::config::Architecture;
use crate::graph::{Graph, Node, NodeKind};
use crate::hw::snitch::Kernel;
use crate::mapping::{mvm_of, Mapping, MappingError, Placement};
use crate::timing::summary::QueryError;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use rayon::prelude::*;
use std::ops::Range;

/// Why a functional run cannot proceed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Functional(#[from] FunctionalError),
    /// Bad input: shapes, non-finite values, options out of range.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Timing(#[from] QueryError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ExecError> {
    Err(ExecError::Input(msg.into()))
}

/// What the executor needs beyond the graph, mapping and weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecConfig {
    /// Tile geometry and converters (the mapping's block size).
    pub spec: TileSpec,
    /// The tiles' device and periphery model.
    pub analog: AnalogParams,
    /// The PMCA's number format in the analog streams.
    pub precision: Precision,
    /// LayerNorm's epsilon (BERT: 1e-12).
    pub layer_norm_eps: f32,
    /// RMSNorm's epsilon (LLaMA 3: 1e-5).
    pub rms_norm_eps: f32,
}

impl ExecConfig {
    /// The architecture's tile and analog model, FP16 PMCA.
    pub fn from_arch(arch: &Architecture) -> ExecConfig {
        ExecConfig {
            spec: TileSpec::from(&arch.aimc),
            analog: arch.analog.clone(),
            precision: Precision::Fp16,
            layer_norm_eps: 1e-12,
            rms_norm_eps: 1e-5,
        }
    }
}

/// One execution of the graph within a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The digital FP32 reference.
    Reference { lora: bool },
    /// The mapped hardware at `drift_s[drift]`, programmed as chip `chip`.
    Analog { lora: bool, drift: usize, chip: u32 },
}

impl Stream {
    pub fn lora(self) -> bool {
        match self {
            Stream::Reference { lora } | Stream::Analog { lora, .. } => lora,
        }
    }
    pub fn is_analog(self) -> bool {
        matches!(self, Stream::Analog { .. })
    }
}

/// Token sequences run back to back: `x` is `sum(seqs) x width` row-major.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'x> {
    pub x: &'x [f32],
    /// The sequence lengths, in order (each at least 1).
    pub seqs: &'x [usize],
}

/// What the fitting hook sees at a LoRA branch: the adapted projection's
/// input (`x`, tokens x in) and output before LoRA (`y`, tokens x out) in
/// every stream of the pass, in stream order.
pub struct FitSite<'s> {
    pub node: &'s Node,
    pub in_features: usize,
    pub out_features: usize,
    pub x: &'s [Vec<f32>],
    pub y: &'s [Vec<f32>],
}

/// Called at every LoRA branch of a fitting pass; returns the module to use
/// there (or none).
pub type FitHook<'h> = dyn FnMut(&FitSite<'_>) -> Result<Option<LoraModule>, ExecError> + 'h;

/// Where a node input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    GraphInput,
    Node(NodeIndex),
}

/// The metrics of one trial: for each analog stream, each block
/// instance's output against the reference with the same LoRA setting.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialMetrics {
    /// The analog streams, in the order of `blocks`.
    pub streams: Vec<Stream>,
    /// `[stream][block instance]`; the last block is the graph's output.
    pub blocks: Vec<Vec<Metrics>>,
    /// Per stream: the fraction of tokens whose largest final output sits
    /// where the reference's does (a task head's prediction agreement).
    pub agreement: Vec<f64>,
}

/// The seed of trial `k` of a study seeded `seed`.
pub fn trial_seed(seed: u64, k: u64) -> u64 {
    rng::stream_seed(seed, &[tag::TRIAL, k])
}

/// The graph input of a study: `seq_len x width` samples of N(0, 1) from
/// the `INPUTS` stream of `seed`.
pub fn graph_input(seed: u64, seq_len: usize, width: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; seq_len * width];
    rng::fill_standard_normal(&mut rng::stream(seed, &[tag::INPUTS]), &mut x);
    x
}

/// Consecutive ranges of the given sizes.
fn ranges(sizes: impl Iterator<Item = u32>) -> Vec<Range<usize>> {
    let mut lo = 0usize;
    sizes
        .map(|s| {
            let r = lo..lo + s as usize;
            lo += s as usize;
            r
        })
        .collect()
}

/// A static MVM's row-block and column-block ranges.
type Tiling = (Vec<Range<usize>>, Vec<Range<usize>>);

/// Runs a mapped graph numerically.
pub struct Executor<'a> {
    graph: &'a Graph,
    map: &'a Mapping,
    weights: &'a dyn WeightSource,
    lora: Option<&'a LoraWeights>,
    cfg: ExecConfig,
    /// Per node: its input slots and their sources.
    slots: Vec<Vec<(&'static str, Src)>>,
    /// Per node: the position (in `graph.order`) of its last reader, or its
    /// own position when nothing reads it.
    last_use: Vec<usize>,
    input_last_use: Option<usize>,
    /// Block instance names (`embedding`, `layer.N`, `head`).
    blocks: Vec<String>,
    /// Per node: the block instance it is the output of.
    block_output: Vec<Option<usize>>,
    /// Per static MVM: its row-block and column-block ranges.
    tiling: Vec<Option<Tiling>>,
    /// Per node: the NoNorm rescaling (1 unless calibrated).
    nonorm_scale: Vec<f32>,
}

fn expected_slots(kind: &NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::StaticMvm { .. } | NodeKind::LoraDown { .. } => &["from"],
        NodeKind::LoraUp { .. } => &["x", "y"],
        NodeKind::AttnScores { .. } => &["q", "k"],
        NodeKind::AttnSoftmax { .. } => &["s"],
        NodeKind::AttnContext { .. } => &["p", "v"],
        NodeKind::Elementwise { kernel, .. } => match kernel {
            Kernel::Add => &["a", "b"],
            Kernel::Swiglu => &["gate", "up"],
            _ => &["from"],
        },
    }
}

impl<'a> Executor<'a> {
    /// Prepares a run of `graph` as `map` places it. With `lora`, every
    /// module must adapt a LoRA node of the graph with its shape.
    pub fn new(
        graph: &'a Graph,
        map: &'a Mapping,
        weights: &'a dyn WeightSource,
        lora: Option<&'a LoraWeights>,
        cfg: ExecConfig,
    ) -> Result<Executor<'a>, ExecError> {
        let count = graph.g.node_count();
        if map.placement.len() != count {
            return bad(format!(
                "the mapping places {} nodes but the graph has {count}",
                map.placement.len()
            ));
        }
        if count == 0 || graph.order.len() != count {
            return bad("the graph is empty or its order does not list every node once");
        }
        let mut pos = vec![0usize; count];
        for (p, n) in graph.order.iter().enumerate() {
            pos[n.index()] = p;
        }
        let mut slots = Vec::with_capacity(count);
        let mut last_use: Vec<usize> = pos.clone();
        let mut input_last_use = None;
        let mut tiling = vec![None; count];
        for n in graph.g.node_indices() {
            let node = &graph.g[n];
            let mut s = Vec::new();
            for &slot in expected_slots(&node.kind) {
                let src = graph
                    .g
                    .edges_directed(n, petgraph::Direction::Incoming)
                    .find(|e| e.weight().slot == slot)
                    .map(|e| Src::Node(e.source()))
                    .unwrap_or(Src::GraphInput);
                match src {
                    Src::Node(p) => {
                        if pos[p.index()] >= pos[n.index()] {
                            return bad(format!(
                                "{}: reads {} which runs after it",
                                node.name, graph.g[p].name
                            ));
                        }
                        last_use[p.index()] = last_use[p.index()].max(pos[n.index()]);
                    }
                    Src::GraphInput => {
                        if !matches!(
                            node.kind,
                            NodeKind::StaticMvm { .. }
                                | NodeKind::LoraDown { .. }
                                | NodeKind::Elementwise { .. }
                        ) {
                            return bad(format!("{}: input `{slot}` has no producer", node.name));
                        }
                        input_last_use = input_last_use.max(Some(pos[n.index()]));
                    }
                }
                s.push((slot, src));
            }
            slots.push(s);
            if let NodeKind::StaticMvm {
                in_features,
                out_features,
            } = node.kind
            {
                let Placement::Aimc {
                    blocks, col_blocks, ..
                } = map.placement(n)
                else {
                    return bad(format!("{}: a static MVM not placed on tiles", node.name));
                };
                let cb = *col_blocks as usize;
                let rows = ranges(blocks.iter().step_by(cb.max(1)).map(|b| b.rows));
                let cols = ranges(blocks.iter().take(cb).map(|b| b.cols));
                let ok = rows.last().map(|r| r.end) == Some(in_features as usize)
                    && cols.last().map(|r| r.end) == Some(out_features as usize)
                    && blocks.len() == rows.len() * cols.len();
                if !ok {
                    return bad(format!(
                        "{}: its tile blocks do not cover {in_features} x {out_features}",
                        node.name
                    ));
                }
                tiling[n.index()] = Some((rows, cols));
            }
        }
        // Block instances: runs of consecutive nodes of one (block, layer).
        let mut blocks = Vec::new();
        let mut block_output = vec![None; count];
        let mut prev: Option<NodeIndex> = None;
        for &n in &graph.order {
            let node = &graph.g[n];
            let new = prev.is_none_or(|p| {
                let q = &graph.g[p];
                (q.block, q.layer) != (node.block, node.layer)
            });
            if new {
                if let Some(p) = prev {
                    block_output[p.index()] = Some(blocks.len() - 1);
                }
                blocks.push(match node.layer {
                    Some(i) => format!("layer.{i}"),
                    None => node.block.field().to_string(),
                });
            }
            prev = Some(n);
        }
        if let Some(p) = prev {
            block_output[p.index()] = Some(blocks.len() - 1);
        }
        if let Some(l) = lora {
            check_lora(graph, l)?;
        }
        Ok(Executor {
            graph,
            map,
            weights,
            lora,
            cfg,
            slots,
            last_use,
            input_last_use,
            blocks,
            block_output,
            tiling,
            nonorm_scale: vec![1.0; count],
        })
    }

    /// Names of the block instances, in execution order.
    pub fn blocks(&self) -> &[String] {
        &self.blocks
    }

    pub fn config(&self) -> &ExecConfig {
        &self.cfg
    }

    /// NoNorm rescaling for weights without a trained scale (see
    /// [`WeightSource::unit_rms_nonorm`]): runs the FP32 reference without
    /// LoRA on `x` and sets each NoNorm's extra scale so its output has
    /// unit RMS there. The scales then hold for every stream and trial.
    pub fn calibrate_nonorm(&mut self, x: &[f32]) -> Result<(), ExecError> {
        let mut scales = vec![1.0f32; self.graph.g.node_count()];
        let seqs = [self.graph.seq_len as usize];
        self.pass(
            Tokens { x, seqs: &seqs },
            &[Stream::Reference { lora: false }],
            &[],
            0,
            Some(&mut scales),
            None,
            &mut |_, _| {},
        )?;
        self.nonorm_scale = scales;
        Ok(())
    }

    /// Runs `streams` on `x` and returns each stream's final output
    /// (`seq_len x out_width`).
    pub fn outputs(
        &self,
        x: &[f32],
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
    ) -> Result<Vec<Vec<f32>>, ExecError> {
        let seqs = [self.graph.seq_len as usize];
        self.run(Tokens { x, seqs: &seqs }, streams, drift_s, trial_seed)
    }

    /// Runs `streams` on the token sequences of `input` and returns each
    /// stream's final output (`tokens x out_width`).
    pub fn run(
        &self,
        input: Tokens<'_>,
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
    ) -> Result<Vec<Vec<f32>>, ExecError> {
        let last = self.blocks.len() - 1;
        let mut out = Vec::new();
        self.pass(
            input,
            streams,
            drift_s,
            trial_seed,
            None,
            None,
            &mut |b, o| {
                if b == last {
                    out = o.to_vec();
                }
            },
        )?;
        Ok(out)
    }

    /// A pass that fits LoRA modules as it goes (see the module header):
    /// `hook` sees every LoRA branch in graph order; the modules it returns
    /// are applied to the streams with LoRA on from that branch onwards and
    /// are returned, with each stream's final output.
    pub fn fit_pass(
        &self,
        input: Tokens<'_>,
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
        hook: &mut FitHook<'_>,
    ) -> Result<(LoraWeights, Vec<Vec<f32>>), ExecError> {
        let last = self.blocks.len() - 1;
        let mut out = Vec::new();
        let fitted = self.pass(
            input,
            streams,
            drift_s,
            trial_seed,
            None,
            Some(hook),
            &mut |b, o| {
                if b == last {
                    out = o.to_vec();
                }
            },
        )?;
        Ok((fitted, out))
    }

    /// One trial: a reference per LoRA setting in `variants` (false = LoRA
    /// off, true = on) and an analog stream per (drift time, variant);
    /// every block instance's output compared with its reference.
    pub fn trial(
        &self,
        x: &[f32],
        drift_s: &[f64],
        variants: &[bool],
        trial_seed: u64,
    ) -> Result<TrialMetrics, ExecError> {
        let mut streams: Vec<Stream> = variants
            .iter()
            .map(|&lora| Stream::Reference { lora })
            .collect();
        let refs = streams.len();
        for d in 0..drift_s.len() {
            for &lora in variants {
                streams.push(Stream::Analog {
                    lora,
                    drift: d,
                    chip: 0,
                });
            }
        }
        let reference_of: Vec<usize> = streams[refs..]
            .iter()
            .map(|s| {
                variants
                    .iter()
                    .position(|&v| v == s.lora())
                    .expect("every variant has a reference")
            })
            .collect();
        let mut blocks = vec![Vec::with_capacity(self.blocks.len()); streams.len() - refs];
        let mut agreement = vec![f64::NAN; streams.len() - refs];
        let last = self.blocks.len() - 1;
        let l = self.graph.seq_len as usize;
        let seqs = [l];
        let input = Tokens { x, seqs: &seqs };
        self.pass(
            input,
            &streams,
            drift_s,
            trial_seed,
            None,
            None,
            &mut |b, o| {
                for (i, m) in blocks.iter_mut().enumerate() {
                    m.push(compare(&o[refs + i], &o[reference_of[i]]));
                    if b == last {
                        let width = o[refs + i].len() / l.max(1);
                        agreement[i] = argmax_agreement(&o[refs + i], &o[reference_of[i]], width);
                    }
                }
            },
        )?;
        Ok(TrialMetrics {
            streams: streams[refs..].to_vec(),
            blocks,
            agreement,
        })
    }

    fn precision(&self, s: Stream) -> Precision {
        if s.is_analog() {
            self.cfg.precision
        } else {
            Precision::Fp32
        }
    }

    /// The module adapting `node`'s projection: a fitted one, else the
    /// executor's adapter's.
    fn module<'m>(&self, node: &Node, fitted: &'m LoraWeights) -> Option<&'m LoraModule>
    where
        'a: 'm,
    {
        fitted
            .get(node.block, node.layer, &node.op_name)
            .or_else(|| {
                self.lora
                    .and_then(|l| l.get(node.block, node.layer, &node.op_name))
            })
    }

    /// The core loop: every node in order for every stream; `sink` sees
    /// each block instance's output (per stream).
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        input_tokens: Tokens<'_>,
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
        mut calib: Option<&mut Vec<f32>>,
        mut hook: Option<&mut FitHook<'_>>,
        sink: &mut dyn FnMut(usize, &[Vec<f32>]),
    ) -> Result<LoraWeights, ExecError> {
        let Tokens { x, seqs } = input_tokens;
        let l: usize = seqs.iter().sum();
        let width = self.graph.input_width as usize;
        if seqs.is_empty() || seqs.contains(&0) {
            return bad("the input needs at least one sequence, each of at least one token");
        }
        if x.len() != l * width {
            return bad(format!(
                "the input has {} values for {l} tokens x {width} features",
                x.len()
            ));
        }
        let mut fitted = LoraWeights::new("fitted");
        if x.iter().any(|v| !v.is_finite()) {
            return bad("the input holds a value that is not finite");
        }
        for s in streams {
            if let Stream::Analog { drift, .. } = s {
                if *drift >= drift_s.len() {
                    return bad(format!(
                        "stream {s:?}: no drift time {drift} ({} given)",
                        drift_s.len()
                    ));
                }
            }
        }
        if let Some(t) = drift_s.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
            return bad(format!("drift time {t} s: must be finite and >= 0"));
        }
        let mut input: Option<Vec<Vec<f32>>> = Some(
            streams
                .iter()
                .map(|&s| {
                    let mut v = x.to_vec();
                    self.precision(s).round(&mut v);
                    v
                })
                .collect(),
        );
        if self.input_last_use.is_none() {
            input = None;
        }
        let mut vals: Vec<Option<Vec<Vec<f32>>>> = vec![None; self.graph.g.node_count()];
        for (pos, &n) in self.graph.order.iter().enumerate() {
            let ins: Vec<&[Vec<f32>]> = self.slots[n.index()]
                .iter()
                .map(|(slot, src)| match src {
                    Src::GraphInput => input.as_deref().ok_or_else(|| {
                        ExecError::Input(format!(
                            "{}: `{slot}` reads the graph input after its last use",
                            self.graph.g[n].name
                        ))
                    }),
                    Src::Node(p) => vals[p.index()].as_deref().ok_or_else(|| {
                        ExecError::Input(format!(
                            "{}: `{slot}` reads {} after it was dropped",
                            self.graph.g[n].name, self.graph.g[*p].name
                        ))
                    }),
                })
                .collect::<Result<_, _>>()?;
            if let (Some(h), NodeKind::LoraDown { .. }) =
                (hook.as_deref_mut(), &self.graph.g[n].kind)
            {
                let mvm = mvm_of(self.graph, n);
                let mnode = &self.graph.g[mvm];
                if let (
                    NodeKind::StaticMvm {
                        in_features,
                        out_features,
                    },
                    Some(y),
                ) = (&mnode.kind, vals[mvm.index()].as_deref())
                {
                    let site = FitSite {
                        node: mnode,
                        in_features: *in_features as usize,
                        out_features: *out_features as usize,
                        x: ins[0],
                        y,
                    };
                    if let Some(md) = h(&site)? {
                        fitted.insert(mnode.block, mnode.layer, &mnode.op_name, md)?;
                    }
                }
            }
            let outs = self.step(
                n,
                &ins,
                Tokens { x, seqs },
                streams,
                drift_s,
                trial_seed,
                calib.as_deref_mut(),
                &fitted,
            )?;
            if let Some(b) = self.block_output[n.index()] {
                sink(b, &outs);
            }
            vals[n.index()] = Some(outs);
            for (_, src) in &self.slots[n.index()] {
                if let Src::Node(p) = src {
                    if self.last_use[p.index()] == pos {
                        vals[p.index()] = None;
                    }
                }
            }
            if self.last_use[n.index()] == pos {
                vals[n.index()] = None;
            }
            if self.input_last_use == Some(pos) {
                input = None;
            }
        }
        Ok(fitted)
    }

    /// One node for every stream.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        n: NodeIndex,
        ins: &[&[Vec<f32>]],
        input: Tokens<'_>,
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
        calib: Option<&mut Vec<f32>>,
        fitted: &LoraWeights,
    ) -> Result<Vec<Vec<f32>>, ExecError> {
        let seqs = input.seqs;
        let node = &self.graph.g[n];
        let l: usize = seqs.iter().sum();
        let per_stream = |f: &(dyn Fn(usize, Stream, Precision) -> Result<Vec<f32>, ExecError>
                                + Sync)| {
            streams
                .par_iter()
                .enumerate()
                .map(|(s, &st)| f(s, st, self.precision(st)))
                .collect::<Result<Vec<_>, _>>()
        };
        match node.kind {
            NodeKind::StaticMvm { .. } => {
                self.static_mvm(n, node, ins[0], l, streams, drift_s, trial_seed)
            }
            NodeKind::LoraDown { in_features, .. } => {
                let module = self.module(node, fitted);
                let m = in_features as usize;
                let Some(md) = module else {
                    return Ok(vec![Vec::new(); streams.len()]);
                };
                let r = md.rank;
                let rows = &self.tiling[mvm_of(self.graph, n).index()]
                    .as_ref()
                    .expect("every MVM has its tiling")
                    .0;
                let mut a16 = md.a.clone();
                self.cfg.precision.round(&mut a16);
                per_stream(&|s, st, p| {
                    let x = &ins[0][s];
                    if !st.lora() {
                        return Ok(Vec::new());
                    }
                    if !st.is_analog() {
                        return Ok(gemm::matmul(l, m, r, x, &md.a));
                    }
                    // One partial per row block, summed by the owner.
                    let mut acc: Vec<f32> = Vec::new();
                    for rr in rows {
                        let xs = ops::columns(x, m, rr.start, rr.end);
                        let part =
                            ops::matmul(p, l, rr.len(), r, &xs, &a16[rr.start * r..rr.end * r]);
                        if acc.is_empty() {
                            acc = part;
                        } else {
                            acc = ops::add(p, &acc, &part);
                        }
                    }
                    Ok(acc)
                })
            }
            NodeKind::LoraUp { out_features, .. } => {
                let nout = out_features as usize;
                let (xa, y) = (ins[0], ins[1]);
                let module = self.module(node, fitted);
                let b16 = module.map(|md| {
                    let mut b: Vec<f32> = md.b.iter().map(|v| v * md.scaling).collect();
                    self.cfg.precision.round(&mut b);
                    b
                });
                per_stream(&|s, st, p| {
                    let (Some(md), true) = (module, st.lora() && !xa[s].is_empty()) else {
                        return Ok(y[s].clone());
                    };
                    let r = md.rank;
                    if !st.is_analog() {
                        let z = gemm::matmul(l, r, nout, &xa[s], &md.b);
                        return Ok(y[s]
                            .iter()
                            .zip(&z)
                            .map(|(&yv, &zv)| yv + md.scaling * zv)
                            .collect());
                    }
                    let b = b16.as_ref().expect("module has B");
                    let mut z = gemm::matmul(l, r, nout, &xa[s], b);
                    z.iter_mut().zip(&y[s]).for_each(|(zv, &yv)| *zv += yv);
                    p.round(&mut z);
                    Ok(z)
                })
            }
            NodeKind::AttnScores {
                heads,
                kv_heads,
                head_dim,
            } => {
                let (h, kh, d) = (heads as usize, kv_heads as usize, head_dim as usize);
                let causal = self.graph.causal;
                per_stream(&|s, _, p| {
                    // Sequences in parallel, concatenated in order.
                    let parts: Vec<Vec<f32>> = seq_starts(seqs)
                        .par_iter()
                        .map(|&(t0, li)| {
                            let q = &ins[0][s][t0 * h * d..(t0 + li) * h * d];
                            let k = &ins[1][s][t0 * kh * d..(t0 + li) * kh * d];
                            ops::attention_scores(p, q, k, li, h, kh, d, causal)
                        })
                        .collect();
                    Ok(parts.concat())
                })
            }
            NodeKind::AttnSoftmax { heads, .. } => per_stream(&|s, _, p| {
                // Scores are heads x li x li per sequence, back to back.
                let mut v = ins[0][s].clone();
                let mut at = 0;
                for &li in seqs {
                    let n = heads as usize * li * li;
                    ops::softmax_rows(p, &mut v[at..at + n], li);
                    at += n;
                }
                Ok(v)
            }),
            NodeKind::AttnContext {
                heads,
                kv_heads,
                head_dim,
            } => {
                let (h, kh, d) = (heads as usize, kv_heads as usize, head_dim as usize);
                per_stream(&|s, _, p| {
                    // Scores are heads x li x li per sequence, back to back.
                    let mut at = 0;
                    let jobs: Vec<(usize, usize, usize)> = seq_starts(seqs)
                        .into_iter()
                        .map(|(t0, li)| {
                            let j = (t0, li, at);
                            at += h * li * li;
                            j
                        })
                        .collect();
                    let parts: Vec<Vec<f32>> = jobs
                        .par_iter()
                        .map(|&(t0, li, at)| {
                            let pm = &ins[0][s][at..at + h * li * li];
                            let v = &ins[1][s][t0 * kh * d..(t0 + li) * kh * d];
                            ops::attention_context(p, pm, v, li, h, kh, d)
                        })
                        .collect();
                    Ok(parts.concat())
                })
            }
            NodeKind::Elementwise { kernel, width } => {
                let w = width as usize;
                match kernel {
                    Kernel::Add => per_stream(&|s, _, p| Ok(ops::add(p, &ins[0][s], &ins[1][s]))),
                    Kernel::Relu => {
                        per_stream(&|s, _, p| Ok(ops::map(p, &ins[0][s], |v| v.max(0.0))))
                    }
                    Kernel::Gelu => per_stream(&|s, _, p| Ok(ops::map(p, &ins[0][s], ops::gelu1))),
                    Kernel::Swiglu => {
                        per_stream(&|s, _, p| Ok(ops::swiglu(p, &ins[0][s], &ins[1][s])))
                    }
                    Kernel::LayerNorm | Kernel::RmsNorm | Kernel::NoNorm => {
                        let mut aff = self.weights.norm(node, w)?;
                        if aff.gamma.len() != w || aff.beta.len() != w {
                            return bad(format!(
                                "{}: the norm parameters are not {w} wide",
                                node.name
                            ));
                        }
                        if aff.gamma.iter().chain(&aff.beta).any(|v| !v.is_finite()) {
                            return bad(format!("{}: a norm parameter is not finite", node.name));
                        }
                        if kernel == Kernel::NoNorm {
                            let scale = match calib {
                                Some(c) => {
                                    // From the reference, stream 0.
                                    let x = &ins[0][0];
                                    let ms = x
                                        .chunks_exact(w)
                                        .flat_map(|r| r.iter().zip(&aff.gamma))
                                        .map(|(&v, &g)| ((v * g) as f64).powi(2))
                                        .sum::<f64>()
                                        / x.len().max(1) as f64;
                                    let k = if ms > 0.0 && ms.is_finite() {
                                        (1.0 / ms.sqrt()) as f32
                                    } else {
                                        1.0
                                    };
                                    c[n.index()] = k;
                                    k
                                }
                                None => self.nonorm_scale[n.index()],
                            };
                            aff.gamma.iter_mut().for_each(|g| *g *= scale);
                        }
                        let mut aff16 = aff.clone();
                        self.cfg.precision.round(&mut aff16.gamma);
                        self.cfg.precision.round(&mut aff16.beta);
                        let (lne, rmse) = (self.cfg.layer_norm_eps, self.cfg.rms_norm_eps);
                        per_stream(&|s, st, p| {
                            let a = if st.is_analog() { &aff16 } else { &aff };
                            let x = &ins[0][s];
                            Ok(match kernel {
                                Kernel::LayerNorm => {
                                    ops::layer_norm(p, x, w, &a.gamma, &a.beta, lne)
                                }
                                Kernel::RmsNorm => ops::rms_norm(p, x, w, &a.gamma, rmse),
                                _ => ops::no_norm(p, x, w, &a.gamma, &a.beta),
                            })
                        })
                    }
                    Kernel::Convert | Kernel::Quantise | Kernel::Softmax => bad(format!(
                        "{}: kernel {kernel:?} is not a graph operation the executor runs",
                        node.name
                    )),
                }
            }
        }
    }

    /// A static MVM for every stream: the reference as an FP32 product
    /// (block by block), the analog streams through one tile per block.
    #[allow(clippy::too_many_arguments)]
    fn static_mvm(
        &self,
        n: NodeIndex,
        node: &Node,
        x: &[Vec<f32>],
        l: usize,
        streams: &[Stream],
        drift_s: &[f64],
        trial_seed: u64,
    ) -> Result<Vec<Vec<f32>>, ExecError> {
        let NodeKind::StaticMvm {
            in_features,
            out_features,
        } = node.kind
        else {
            unreachable!("static_mvm on a static MVM")
        };
        let (m, nout) = (in_features as usize, out_features as usize);
        let t = (self.map.tokens as usize).clamp(1, l.max(1));
        let bias = self.weights.bias(node)?;
        if let Some(b) = &bias {
            if b.len() != nout {
                return bad(format!(
                    "{}: the weight source gave a bias of {} values for {nout} outputs",
                    node.name,
                    b.len()
                ));
            }
            if let Some(k) = b.iter().position(|v| !v.is_finite()) {
                return bad(format!("{}: bias {k} is {}", node.name, b[k]));
            }
        }
        // Chips in the pass, in increasing order.
        let mut chips: Vec<u32> = streams
            .iter()
            .filter_map(|s| match s {
                Stream::Analog { chip, .. } => Some(*chip),
                Stream::Reference { .. } => None,
            })
            .collect();
        chips.sort_unstable();
        chips.dedup();
        let (rows, cols) = self.tiling[n.index()]
            .as_ref()
            .expect("every MVM has its tiling");
        let h = name_tag(&node.name);
        let per_col = cols
            .par_iter()
            .enumerate()
            .map(|(c, cr)| -> Result<Vec<Vec<f32>>, ExecError> {
                let nc = cr.len();
                let mut acc: Vec<Vec<f32>> = vec![Vec::new(); streams.len()];
                for (r, rr) in rows.iter().enumerate() {
                    let mr = rr.len();
                    let w = self.weights.matrix_block(node, rr.clone(), cr.clone())?;
                    if w.len() != mr * nc {
                        return bad(format!(
                            "{}: the weight source gave {} values for a {mr} x {nc} block",
                            node.name,
                            w.len()
                        ));
                    }
                    if let Some(k) = w.iter().position(|v| !v.is_finite()) {
                        return bad(format!(
                            "{}: weight ({}, {}) is {}",
                            node.name,
                            rr.start + k / nc,
                            cr.start + k % nc,
                            w[k]
                        ));
                    }
                    let xs: Vec<Vec<f32>> = x
                        .iter()
                        .map(|v| ops::columns(v, m, rr.start, rr.end))
                        .collect();
                    let mut parts: Vec<Vec<f32>> = vec![Vec::new(); streams.len()];
                    for (s, st) in streams.iter().enumerate() {
                        if !st.is_analog() {
                            parts[s] = gemm::matmul(l, mr, nc, &xs[s], &w);
                        }
                    }
                    for &chip in &chips {
                        let seed = match chip {
                            0 => rng::stream_seed(trial_seed, &[h, r as u64, c as u64]),
                            k => rng::stream_seed(
                                trial_seed,
                                &[h, r as u64, c as u64, tag::CHIP, k as u64],
                            ),
                        };
                        let mut tile =
                            AnalogTile::program(self.cfg.spec, &self.cfg.analog, &w, mr, nc, seed)?;
                        for (d, &ts) in drift_s.iter().enumerate() {
                            let users: Vec<usize> = streams
                                .iter()
                                .enumerate()
                                .filter(|(_, s)| {
                                    matches!(s, Stream::Analog { drift, chip: k, .. } if *drift == d && *k == chip)
                                })
                                .map(|(i, _)| i)
                                .collect();
                            if users.is_empty() {
                                continue;
                            }
                            tile.drift_to(ts)?;
                            // Each stream reads its own copy of the drifted
                            // tile (the same state, the same noise streams).
                            let ys = users
                                .par_iter()
                                .map(|&s| -> Result<Vec<f32>, ExecError> {
                                    let mut copy = tile.clone();
                                    let mut y = vec![0.0f32; l * nc];
                                    forward_groups(&mut copy, &xs[s], mr, nc, t, &mut y)?;
                                    self.cfg.precision.round(&mut y);
                                    Ok(y)
                                })
                                .collect::<Result<Vec<_>, _>>()?;
                            for (&s, y) in users.iter().zip(ys) {
                                parts[s] = y;
                            }
                        }
                    }
                    for (s, part) in parts.into_iter().enumerate() {
                        if r == 0 {
                            acc[s] = part;
                        } else {
                            acc[s].iter_mut().zip(&part).for_each(|(a, &b)| *a += b);
                            self.precision(streams[s]).round(&mut acc[s]);
                        }
                    }
                }
                if let Some(b) = &bias {
                    let b = &b[cr.clone()];
                    for (s, a) in acc.iter_mut().enumerate() {
                        for row in a.chunks_exact_mut(nc) {
                            row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
                        }
                        self.precision(streams[s]).round(a);
                    }
                }
                Ok(acc)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cols.len() == 1 {
            return Ok(per_col.into_iter().next().expect("one column block"));
        }
        let mut out = vec![vec![0.0f32; l * nout]; streams.len()];
        for (cr, parts) in cols.iter().zip(&per_col) {
            for (o, part) in out.iter_mut().zip(parts) {
                ops::put_columns(o, nout, cr.start, cr.end, part);
            }
        }
        Ok(out)
    }
}

/// (first token, length) of each sequence.
fn seq_starts(seqs: &[usize]) -> Vec<(usize, usize)> {
    let mut t0 = 0;
    seqs.iter()
        .map(|&li| {
            let r = (t0, li);
            t0 += li;
            r
        })
        .collect()
}

/// Tokens per tile call when the split does not change the outputs'
/// distribution ([`AnalogTile::batch_invariant`]): large enough that the
/// GEMM's packing of W is amortised, small enough to bound the scratch.
const INVARIANT_BATCH: usize = 512;

/// `x` (L x m) through `tile` one token group of `t` at a time (or of
/// [`INVARIANT_BATCH`] tokens when the tile is batch-invariant).
fn forward_groups(
    tile: &mut AnalogTile,
    x: &[f32],
    m: usize,
    n: usize,
    t: usize,
    out: &mut [f32],
) -> Result<(), ExecError> {
    let l = out.len() / n.max(1);
    let t = if tile.batch_invariant() {
        t.max(INVARIANT_BATCH)
    } else {
        t
    };
    let mut g0 = 0;
    while g0 < l {
        let g1 = (g0 + t).min(l);
        tile.forward_into(&x[g0 * m..g1 * m], g1 - g0, &mut out[g0 * n..g1 * n])?;
        g0 = g1;
    }
    Ok(())
}

/// Every adapter module must adapt a LoRA node of the graph, with the
/// projection's shape and a rank the node's TCDM plan allows.
fn check_lora(graph: &Graph, lora: &LoraWeights) -> Result<(), ExecError> {
    for (block, layer, op) in lora.keys() {
        let md = lora.get(block, layer, &op).expect("listed key");
        let down = graph.g.node_indices().find(|&i| {
            let nd = &graph.g[i];
            matches!(nd.kind, NodeKind::LoraDown { .. })
                && nd.block == block
                && nd.layer == layer
                && nd.op_name == op
        });
        let name = format!(
            "{}{}.{op}",
            block.field(),
            layer.map(|l| format!(".{l}")).unwrap_or_default()
        );
        let Some(down) = down else {
            return bad(format!(
                "adapter module for {name}: the graph has no LoRA branch there (is the projection a LoRA target?)"
            ));
        };
        let mvm = &graph.g[mvm_of(graph, down)];
        if let NodeKind::StaticMvm {
            in_features,
            out_features,
        } = mvm.kind
        {
            if (md.in_features, md.out_features) != (in_features as usize, out_features as usize) {
                return bad(format!(
                    "adapter module for {name}: adapts {} -> {} but the projection is {in_features} -> {out_features}",
                    md.in_features, md.out_features
                ));
            }
        }
    }
    Ok(())
}
