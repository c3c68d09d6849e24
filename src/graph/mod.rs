//! The dataflow graph (petgraph) built from a workload: one node per
//! operation of every block instance (embedding, each layer, head), with
//! shapes, FLOPs and bytes for the whole sequence, and one edge per tensor
//! read. A linear projection with an adapter becomes three nodes: the static
//! MVM `X W`, the LoRA down step `X A` and the up step `(X A) B + X W` (the
//! add fused into the up step, as RedMule's `Y` operand allows). Attention
//! becomes `Q K^T`, softmax and `P V`.
//!
//! The graph knows nothing of hardware or timing: where an operation runs
//! and how data moves between units is the mapping's business.

use crate::config::{BlockKind, ModelKind, Op, Workload};
use crate::hw::snitch::Kernel;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

/// Bytes of an FP16 value.
pub const FP16_BYTES: u64 = 2;

/// What a node computes. Sizes are per token unless they say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `X W` with W `in_features x out_features`, on AIMC.
    StaticMvm { in_features: u32, out_features: u32 },
    /// `X A`, A `in_features x rank`.
    LoraDown { in_features: u32, rank: u32 },
    /// `(X A) B + Y`, B `rank x out_features`, Y the static MVM's output.
    LoraUp { rank: u32, out_features: u32 },
    /// `S = Q K^T` for every head: the scores of each query token against
    /// the keys it may see.
    AttnScores {
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
    },
    /// Row-wise softmax of the scores.
    AttnSoftmax { heads: u32 },
    /// `O = P V` for every head.
    AttnContext {
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
    },
    /// An element-wise kernel on the cores (norms, activations, residual adds).
    Elementwise { kernel: Kernel, width: u32 },
}

/// One operation instance.
#[derive(Debug, Clone)]
pub struct Node {
    /// Qualified name, e.g. `layer.3.query`, `layer.3.query.lora_up`.
    pub name: String,
    /// The description's operation name (e.g. `query`).
    pub op_name: String,
    pub block: BlockKind,
    /// Layer index for layer-block nodes.
    pub layer: Option<u32>,
    pub kind: NodeKind,
    /// Width of the output tensor, features per token.
    pub out_width: u32,
    /// Floating-point operations for the whole sequence (an FMA counts 2).
    pub flops: u64,
    /// Bytes of the output tensor for the whole sequence, FP16.
    pub out_bytes: u64,
}

/// An edge: the consumer reads the producer's output tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Features per token carried.
    pub width: u32,
    /// The consumer's input slot (`from`, `q`, `k`, `v`, `a`, `b`, `y`, ...).
    pub slot: &'static str,
}

/// The dataflow graph of a whole workload.
#[derive(Debug, Clone)]
pub struct Graph {
    pub g: DiGraph<Node, Edge>,
    /// Nodes in a valid execution order (the order of the description).
    pub order: Vec<NodeIndex>,
    /// The graph input (the embedding block's input), if any node reads it.
    pub input_width: u32,
    pub seq_len: u32,
    pub causal: bool,
}

fn kernel_of_norm(kind: crate::config::workload::NormKind) -> Kernel {
    use crate::config::workload::NormKind::*;
    match kind {
        LayerNorm => Kernel::LayerNorm,
        RmsNorm => Kernel::RmsNorm,
        NoNorm => Kernel::NoNorm,
    }
}

/// Where a tensor of a block comes from while building.
#[derive(Clone, Copy)]
enum Source {
    GraphInput,
    Node(NodeIndex),
}

impl Graph {
    /// Builds the graph of a validated workload.
    pub fn build(w: &Workload) -> Graph {
        let mut g: DiGraph<Node, Edge> = DiGraph::new();
        let mut order = Vec::new();
        let l = w.seq_len as u64;
        let causal = w.kind == ModelKind::Decoder;
        // Query-key pairs that attention sees: L^2 bidirectional, L(L+1)/2 causal.
        let pairs = if causal { l * (l + 1) / 2 } else { l * l };
        let mut current = Source::GraphInput;
        let mut instances: Vec<(BlockKind, Option<u32>, &[Op])> = Vec::new();
        if !w.embedding.is_empty() {
            instances.push((BlockKind::Embedding, None, &w.embedding));
        }
        for i in 0..w.num_layers {
            instances.push((BlockKind::Layer, Some(i), &w.layer));
        }
        if !w.head.is_empty() {
            instances.push((BlockKind::Head, None, &w.head));
        }
        for (block, layer, ops) in instances {
            let prefix = match layer {
                Some(i) => format!("layer.{i}."),
                None => format!("{}.", block.field()),
            };
            let mut tensors: HashMap<&str, (Source, u32)> = HashMap::new();
            let block_in_width = match current {
                Source::GraphInput => w.input_width,
                Source::Node(n) => g[n].out_width,
            };
            tensors.insert("input", (current, block_in_width));
            let mut last = current;
            for op in ops {
                let name = format!("{prefix}{}", op.name());
                let mut add = |g: &mut DiGraph<Node, Edge>,
                               kind: NodeKind,
                               suffix: &str,
                               out_width: u32,
                               flops: u64| {
                    let idx = g.add_node(Node {
                        name: format!("{name}{suffix}"),
                        op_name: op.name().to_string(),
                        block,
                        layer,
                        kind,
                        out_width,
                        flops,
                        out_bytes: l * out_width as u64 * FP16_BYTES,
                    });
                    order.push(idx);
                    idx
                };
                let connect = |g: &mut DiGraph<Node, Edge>,
                               src: Source,
                               dst: NodeIndex,
                               width: u32,
                               slot: &'static str| {
                    if let Source::Node(s) = src {
                        g.add_edge(s, dst, Edge { width, slot });
                    }
                };
                let input = |slot: &str| -> (Source, u32) {
                    let (_, tensor) = op
                        .inputs()
                        .into_iter()
                        .find(|(f, _)| *f == slot)
                        .expect("slot exists");
                    tensors[tensor]
                };
                let out = match op {
                    Op::Linear {
                        in_features,
                        out_features,
                        ..
                    } => {
                        let (src, width) = input("from");
                        let (m, n) = (*in_features as u64, *out_features as u64);
                        let mvm = add(
                            &mut g,
                            NodeKind::StaticMvm {
                                in_features: *in_features,
                                out_features: *out_features,
                            },
                            "",
                            *out_features,
                            2 * l * m * n,
                        );
                        connect(&mut g, src, mvm, width, "from");
                        if w.has_lora(block, op.name()) {
                            let r = w.lora.rank;
                            let down = add(
                                &mut g,
                                NodeKind::LoraDown {
                                    in_features: *in_features,
                                    rank: r,
                                },
                                ".lora_down",
                                r,
                                2 * l * m * r as u64,
                            );
                            connect(&mut g, src, down, width, "from");
                            let up = add(
                                &mut g,
                                NodeKind::LoraUp {
                                    rank: r,
                                    out_features: *out_features,
                                },
                                ".lora_up",
                                *out_features,
                                2 * l * r as u64 * n + l * n,
                            );
                            g.add_edge(
                                down,
                                up,
                                Edge {
                                    width: r,
                                    slot: "x",
                                },
                            );
                            g.add_edge(
                                mvm,
                                up,
                                Edge {
                                    width: *out_features,
                                    slot: "y",
                                },
                            );
                            up
                        } else {
                            mvm
                        }
                    }
                    Op::Attention {
                        heads, kv_heads, ..
                    } => {
                        let (qs, qw) = input("q");
                        let (ks, kw) = input("k");
                        let (vs, vw) = input("v");
                        let head_dim = qw / heads;
                        let hd = head_dim as u64;
                        let h = *heads as u64;
                        let scores = add(
                            &mut g,
                            NodeKind::AttnScores {
                                heads: *heads,
                                kv_heads: *kv_heads,
                                head_dim,
                            },
                            ".scores",
                            0,
                            2 * h * pairs * hd,
                        );
                        connect(&mut g, qs, scores, qw, "q");
                        connect(&mut g, ks, scores, kw, "k");
                        let softmax = add(
                            &mut g,
                            NodeKind::AttnSoftmax { heads: *heads },
                            ".softmax",
                            0,
                            5 * h * pairs,
                        );
                        g.add_edge(
                            scores,
                            softmax,
                            Edge {
                                width: 0,
                                slot: "s",
                            },
                        );
                        let ctx = add(
                            &mut g,
                            NodeKind::AttnContext {
                                heads: *heads,
                                kv_heads: *kv_heads,
                                head_dim,
                            },
                            "",
                            qw,
                            2 * h * pairs * hd,
                        );
                        g.add_edge(
                            softmax,
                            ctx,
                            Edge {
                                width: 0,
                                slot: "p",
                            },
                        );
                        connect(&mut g, vs, ctx, vw, "v");
                        ctx
                    }
                    Op::Norm { kind, .. } => {
                        let (src, width) = input("from");
                        let n = add(
                            &mut g,
                            NodeKind::Elementwise {
                                kernel: kernel_of_norm(*kind),
                                width,
                            },
                            "",
                            width,
                            5 * l * width as u64,
                        );
                        connect(&mut g, src, n, width, "from");
                        n
                    }
                    Op::Activation { kind, .. } => {
                        let (src, width) = input("from");
                        let kernel = match kind {
                            crate::config::workload::ActKind::Gelu => Kernel::Gelu,
                            crate::config::workload::ActKind::Relu => Kernel::Relu,
                        };
                        let n = add(
                            &mut g,
                            NodeKind::Elementwise { kernel, width },
                            "",
                            width,
                            l * width as u64,
                        );
                        connect(&mut g, src, n, width, "from");
                        n
                    }
                    Op::Swiglu { .. } => {
                        let (gs, width) = input("gate");
                        let (us, _) = input("up");
                        let n = add(
                            &mut g,
                            NodeKind::Elementwise {
                                kernel: Kernel::Swiglu,
                                width,
                            },
                            "",
                            width,
                            5 * l * width as u64,
                        );
                        connect(&mut g, gs, n, width, "gate");
                        connect(&mut g, us, n, width, "up");
                        n
                    }
                    Op::Add { .. } => {
                        let (a, width) = input("a");
                        let (b, _) = input("b");
                        let n = add(
                            &mut g,
                            NodeKind::Elementwise {
                                kernel: Kernel::Add,
                                width,
                            },
                            "",
                            width,
                            l * width as u64,
                        );
                        connect(&mut g, a, n, width, "a");
                        connect(&mut g, b, n, width, "b");
                        n
                    }
                };
                let width = g[out].out_width;
                tensors.insert(op.name(), (Source::Node(out), width));
                last = Source::Node(out);
            }
            current = last;
        }
        Graph {
            g,
            order,
            input_width: w.input_width,
            seq_len: w.seq_len,
            causal,
        }
    }

    /// Inputs of a node that come from the graph input (no producer node).
    pub fn reads_graph_input(&self, n: NodeIndex) -> bool {
        let node = &self.g[n];
        let expected = match node.kind {
            NodeKind::StaticMvm { .. }
            | NodeKind::LoraDown { .. }
            | NodeKind::Elementwise { .. } => 1,
            _ => 0,
        };
        let has = self
            .g
            .edges_directed(n, petgraph::Direction::Incoming)
            .count();
        expected > 0 && has == 0 && node.block == self.first_block()
    }

    fn first_block(&self) -> BlockKind {
        self.order
            .first()
            .map(|&n| self.g[n].block)
            .unwrap_or(BlockKind::Layer)
    }

    /// Weights of all static MVMs (mapped to AIMC).
    pub fn aimc_weights(&self) -> u64 {
        self.g
            .node_weights()
            .map(|n| match n.kind {
                NodeKind::StaticMvm {
                    in_features,
                    out_features,
                } => in_features as u64 * out_features as u64,
                _ => 0,
            })
            .sum()
    }

    /// LoRA parameters: r * (in + out) per adapted projection.
    pub fn lora_params(&self) -> u64 {
        self.g
            .node_weights()
            .map(|n| match n.kind {
                NodeKind::LoraDown { in_features, rank } => in_features as u64 * rank as u64,
                NodeKind::LoraUp { rank, out_features } => rank as u64 * out_features as u64,
                _ => 0,
            })
            .sum()
    }

    pub fn total_flops(&self) -> u64 {
        self.g.node_weights().map(|n| n.flops).sum()
    }
}
