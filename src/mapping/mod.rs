//! Mapping: places every static MVM on AIMC tiles (split into 512 x 512
//! blocks when larger; one matrix or block per tile) and every other
//! operation on the PMCA paired with a tile, and plans the TCDM buffers
//! (byte addresses) of each operation for a token group of t tokens.
//!
//! Rules:
//! - A static MVM `in x out` takes `ceil(in/rows) x ceil(out/cols)` tiles,
//!   each tile's PMCA holding the row slice of X its tile reads. Row blocks
//!   produce partial sums for the same outputs; the PMCA of the first row
//!   block of each column block (the *owner*) gathers and adds them. LoRA:
//!   the column-0 PMCA of each row block computes `X_i A_i` from its slice;
//!   each owner sums these t x r partials and computes `(X A) B_c + Y_c`.
//! - Every other operation runs on the *home* pair of its first input: the
//!   owner of column block 0 for an MVM, the operation's own pair otherwise.
//!   Attention is spread by KV-head group over the pairs of its layer's
//!   matrices, starting with the home of its queries (one PMCA running all
//!   heads of all groups would make it the chip's bottleneck); its output is
//!   gathered on the queries' home.
//! - A tensor produced on one pair and read on another crosses the shared L2
//!   interconnect by DMA (see `timing`).
//! - Matrices do not share tiles: packing several small matrices onto one
//!   tile would serialise projections that run concurrently; it is left for
//!   a later option and the tile count is reported as is.

use crate::config::Architecture;
use crate::graph::{Graph, NodeKind, FP16_BYTES};
use crate::hw::snitch::Kernel;
use crate::units::Bytes;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

/// A rectangular block of a weight matrix on one tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileBlock {
    /// The tile + PMCA pair holding it.
    pub pair: u32,
    /// Row block index (input slice) and column block index (output slice).
    pub row_block: u32,
    pub col_block: u32,
    /// Input features (crossbar rows used) and output features (columns used).
    pub rows: u32,
    pub cols: u32,
}

/// Where a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A static MVM: its tile blocks, row-major by (row_block, col_block).
    Aimc {
        blocks: Vec<TileBlock>,
        row_blocks: u32,
        col_blocks: u32,
    },
    /// A LoRA step: one instance per column block of its MVM, on each owner.
    PerColumn { owners: Vec<u32>, cols: Vec<u32> },
    /// A PMCA operation on one pair.
    Pmca { pair: u32 },
    /// Attention: KV-head group `i` runs on `pairs[i % len]`, where its
    /// slice of the output stays.
    Heads { pairs: Vec<u32> },
    /// An element-wise operation on a tensor split across pairs: each pair
    /// computes its own slice (see [`Mapping::shards`]).
    Sharded,
}

/// A slice of a tensor's features, `lo..hi`, complete on one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub pair: u32,
    pub lo: u32,
    pub hi: u32,
}

/// A buffer in a pair's TCDM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub name: &'static str,
    /// Byte address in the TCDM.
    pub addr: u64,
    pub bytes: Bytes,
}

/// The TCDM plan of the LoRA step of one column block for a group of t
/// tokens: the live FP16 data `X (t x m)`, `X A (t x r)`, output `(t x n)`,
/// `A (m x r)`, `B (r x n)`, plus the double buffers of the schedule (the
/// next group's X and tile outputs arrive while this one is processed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraPlan {
    pub x: Buffer,
    pub xa: Buffer,
    pub y: Buffer,
    pub a: Buffer,
    pub b: Buffer,
    pub x_next: Buffer,
    pub y_next: Buffer,
}

impl LoraPlan {
    /// Lays the buffers out from address 0, each aligned to `align` bytes.
    pub fn new(tokens: u64, m: u64, r: u64, n: u64, align: u64) -> LoraPlan {
        let mut next = 0u64;
        let mut alloc = |name: &'static str, bytes: u64| {
            let addr = next;
            next = (next + bytes).div_ceil(align) * align;
            Buffer {
                name,
                addr,
                bytes: Bytes(bytes),
            }
        };
        let e = FP16_BYTES;
        LoraPlan {
            x: alloc("x", tokens * m * e),
            xa: alloc("xa", tokens * r * e),
            y: alloc("y", tokens * n * e),
            a: alloc("a", m * r * e),
            b: alloc("b", r * n * e),
            x_next: alloc("x_next", tokens * m * e),
            y_next: alloc("y_next", tokens * n * e),
        }
    }
    /// The LoRA step's live data: X, X A, output, A, B.
    pub fn tcdm_bytes(&self) -> Bytes {
        self.x.bytes + self.xa.bytes + self.y.bytes + self.a.bytes + self.b.bytes
    }
    /// Everything the schedule keeps live, double buffers included, with
    /// alignment padding.
    pub fn schedule_bytes(&self) -> Bytes {
        Bytes(self.y_next.addr + self.y_next.bytes.0)
    }
}

/// The mapped graph.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Placement of every node, indexed by `NodeIndex::index()`.
    pub placement: Vec<Placement>,
    /// Tile + PMCA pairs used.
    pub pairs: u32,
    /// Token group size t of the run (the default of every operation).
    pub tokens: u32,
    /// Token group size of each operation, indexed by `NodeIndex::index()`:
    /// `tokens` unless [`Mapping::set_projection_tokens`] chose per
    /// projection.
    pub tokens_per_node: Vec<u32>,
    /// Where each node's output lives, by feature slices, indexed by
    /// `NodeIndex::index()`. One shard for most nodes; one per column block
    /// for split matrices (no gather: consumers fetch the slices they read);
    /// one per KV-head group for attention.
    pub shards: Vec<Vec<Shard>>,
}

/// Why a graph cannot be mapped onto an architecture.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("the workload needs {needed} tile + PMCA pairs but the architecture has `pairs: {available}`")]
    TooFewPairs { needed: u32, available: u32 },
    #[error(
        "the workload needs {needed} tile + PMCA pairs; the timing run supports at most {max}"
    )]
    TooManyPairs { needed: u32, max: u32 },
}

impl Mapping {
    pub fn new(graph: &Graph, arch: &Architecture, tokens: u32) -> Result<Mapping, MappingError> {
        let rows = arch.aimc.rows;
        let cols = arch.aimc.cols;
        let mut placement: Vec<Option<Placement>> = vec![None; graph.g.node_count()];
        let mut next_pair = 0u32;
        let mut shards: Vec<Vec<Shard>> = vec![Vec::new(); graph.g.node_count()];
        // Pass 1 places the matrices (and their LoRA steps), pass 2 the PMCA
        // operations, so attention can spread over all its layer's pairs.
        for pass in 0..2 {
            for &n in &graph.order {
                let node = &graph.g[n];
                let is_matrix = matches!(
                    node.kind,
                    NodeKind::StaticMvm { .. }
                        | NodeKind::LoraDown { .. }
                        | NodeKind::LoraUp { .. }
                );
                if is_matrix != (pass == 0) {
                    continue;
                }
                let p = match node.kind {
                    NodeKind::StaticMvm {
                        in_features,
                        out_features,
                    } => {
                        let rb = in_features.div_ceil(rows);
                        let cb = out_features.div_ceil(cols);
                        let mut blocks = Vec::new();
                        for r in 0..rb {
                            for c in 0..cb {
                                blocks.push(TileBlock {
                                    pair: next_pair,
                                    row_block: r,
                                    col_block: c,
                                    rows: (in_features - r * rows).min(rows),
                                    cols: (out_features - c * cols).min(cols),
                                });
                                next_pair += 1;
                            }
                        }
                        shards[n.index()] = column_shards(&blocks[..cb as usize], cols);
                        Placement::Aimc {
                            blocks,
                            row_blocks: rb,
                            col_blocks: cb,
                        }
                    }
                    NodeKind::LoraDown { .. } | NodeKind::LoraUp { .. } => {
                        // The MVM of the same projection was placed just before.
                        let mvm = mvm_of(graph, n);
                        let Some(Placement::Aimc {
                            blocks, col_blocks, ..
                        }) = &placement[mvm.index()]
                        else {
                            unreachable!("a LoRA node follows its MVM")
                        };
                        let owners: Vec<u32> = blocks[..*col_blocks as usize]
                            .iter()
                            .map(|b| b.pair)
                            .collect();
                        let cs = blocks[..*col_blocks as usize]
                            .iter()
                            .map(|b| b.cols)
                            .collect();
                        shards[n.index()] = shards[mvm.index()].clone();
                        Placement::PerColumn { owners, cols: cs }
                    }
                    _ => {
                        let first_input = graph
                            .g
                            .edges_directed(n, petgraph::Direction::Incoming)
                            .min_by_key(|e| e.id().index())
                            .map(|e| e.source());
                        let width = node.out_width;
                        let pair = match first_input {
                            Some(src) => shards[src.index()][0].pair,
                            None => {
                                // Reads only the graph input: a pair of its own.
                                next_pair += 1;
                                next_pair - 1
                            }
                        };
                        let single = vec![Shard {
                            pair,
                            lo: 0,
                            hi: width,
                        }];
                        match node.kind {
                            NodeKind::AttnContext {
                                heads,
                                kv_heads,
                                head_dim,
                            } => {
                                // One KV-head group per pair: the home first, then
                                // the other pairs holding this layer's matrices.
                                let mut pairs = vec![pair];
                                for &o in &graph.order {
                                    let on = &graph.g[o];
                                    if on.block != node.block || on.layer != node.layer {
                                        continue;
                                    }
                                    if let Some(Placement::Aimc { blocks, .. }) =
                                        &placement[o.index()]
                                    {
                                        for b in blocks {
                                            if !pairs.contains(&b.pair) {
                                                pairs.push(b.pair);
                                            }
                                        }
                                    }
                                }
                                pairs.truncate(kv_heads.max(1) as usize);
                                let group = (heads / kv_heads) * head_dim;
                                shards[n.index()] = (0..kv_heads)
                                    .map(|kh| Shard {
                                        pair: pairs[kh as usize % pairs.len()],
                                        lo: kh * group,
                                        hi: (kh + 1) * group,
                                    })
                                    .collect();
                                Placement::Heads { pairs }
                            }
                            NodeKind::Elementwise { kernel, .. }
                                if !matches!(kernel, Kernel::LayerNorm | Kernel::RmsNorm)
                                    && first_input.is_some_and(|s| shards[s.index()].len() > 1) =>
                            {
                                // Element-wise work stays where the slices are;
                                // norms need whole rows and gather instead.
                                let src = first_input.expect("checked");
                                shards[n.index()] = shards[src.index()].clone();
                                Placement::Sharded
                            }
                            _ => {
                                shards[n.index()] = single;
                                Placement::Pmca { pair }
                            }
                        }
                    }
                };
                placement[n.index()] = Some(p);
            }
        }
        // The timing run addresses pairs through 16-bit engine ports.
        if next_pair > u16::MAX as u32 {
            return Err(MappingError::TooManyPairs {
                needed: next_pair,
                max: u16::MAX as u32,
            });
        }
        if let Some(avail) = arch.pairs {
            if next_pair > avail {
                return Err(MappingError::TooFewPairs {
                    needed: next_pair,
                    available: avail,
                });
            }
        }
        Ok(Mapping {
            placement: placement
                .into_iter()
                .map(|p| p.expect("every node placed"))
                .collect(),
            pairs: next_pair,
            tokens,
            tokens_per_node: vec![tokens; graph.g.node_count()],
            shards,
        })
    }

    /// The token group size of an operation.
    pub fn tokens_of(&self, n: NodeIndex) -> u32 {
        self.tokens_per_node[n.index()]
    }

    /// Gives each linear projection its own token group size (`t_of` of its
    /// static MVM; `None` keeps the run's); its LoRA steps share it, and
    /// every other operation takes the size of its first input.
    pub fn set_projection_tokens(
        &mut self,
        graph: &Graph,
        t_of: impl Fn(NodeIndex) -> Option<u32>,
    ) {
        for &n in &graph.order {
            let t = match graph.g[n].kind {
                NodeKind::StaticMvm { .. } => t_of(n).unwrap_or(self.tokens),
                NodeKind::LoraDown { .. } | NodeKind::LoraUp { .. } => {
                    self.tokens_per_node[mvm_of(graph, n).index()]
                }
                _ => graph
                    .g
                    .edges_directed(n, petgraph::Direction::Incoming)
                    .min_by_key(|e| e.id().index())
                    .map(|e| self.tokens_per_node[e.source().index()])
                    .unwrap_or(self.tokens),
            };
            self.tokens_per_node[n.index()] = t;
        }
    }

    /// Whether every operation uses the run's token group size.
    pub fn uniform_tokens(&self) -> bool {
        self.tokens_per_node.iter().all(|&t| t == self.tokens)
    }

    /// Where a node's output lives, by feature slices.
    pub fn shards(&self, n: NodeIndex) -> &[Shard] {
        &self.shards[n.index()]
    }

    pub fn placement(&self, n: NodeIndex) -> &Placement {
        &self.placement[n.index()]
    }

    /// The pair holding the first slice of a node's output (the whole
    /// output for an unsplit node).
    pub fn home(&self, n: NodeIndex) -> u32 {
        self.shards[n.index()][0].pair
    }

    /// Tiles in use (one per pair holding a matrix block).
    pub fn tiles(&self) -> u32 {
        self.placement
            .iter()
            .map(|p| match p {
                Placement::Aimc { blocks, .. } => blocks.len() as u32,
                _ => 0,
            })
            .sum()
    }
}

/// One shard per column block, on its owner.
fn column_shards(first_row: &[TileBlock], cols: u32) -> Vec<Shard> {
    first_row
        .iter()
        .map(|b| Shard {
            pair: b.pair,
            lo: b.col_block * cols,
            hi: b.col_block * cols + b.cols,
        })
        .collect()
}

/// The static MVM a LoRA node belongs to.
pub fn mvm_of(graph: &Graph, n: NodeIndex) -> NodeIndex {
    let mut cur = n;
    loop {
        match graph.g[cur].kind {
            NodeKind::StaticMvm { .. } => return cur,
            NodeKind::LoraUp { .. } => {
                // Its `y` input is the MVM.
                return graph
                    .g
                    .edges_directed(cur, petgraph::Direction::Incoming)
                    .find(|e| e.weight().slot == "y")
                    .map(|e| e.source())
                    .expect("lora_up reads its MVM");
            }
            NodeKind::LoraDown { .. } => {
                // The up step it feeds reads the MVM.
                cur = graph
                    .g
                    .edges_directed(cur, petgraph::Direction::Outgoing)
                    .map(|e| e.target())
                    .next()
                    .expect("lora_down feeds lora_up");
            }
            _ => unreachable!("mvm_of called on a non-linear node"),
        }
    }
}

/// The TCDM an operation needs on one pair: `resident_bytes` for the whole
/// run (a LoRA adapter's A and B slices) and `group_bytes` for each token
/// group in flight (its inputs, intermediates and outputs, FP16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub node: NodeIndex,
    pub pair: u32,
    pub resident_bytes: u64,
    pub group_bytes: u64,
}

/// The TCDM footprint of every operation on every pair that hosts it.
pub fn footprints(graph: &Graph, map: &Mapping, arch: &Architecture) -> Vec<Footprint> {
    let e = FP16_BYTES;
    let mut out = Vec::new();
    let mut add = |node, pair, resident_bytes, group_bytes| {
        out.push(Footprint {
            node,
            pair,
            resident_bytes,
            group_bytes,
        })
    };
    for &n in &graph.order {
        let t = map.tokens_of(n) as u64;
        match (&graph.g[n].kind, map.placement(n)) {
            (NodeKind::StaticMvm { .. }, Placement::Aimc { blocks, .. }) => {
                let rank = graph
                    .g
                    .neighbors_directed(n, petgraph::Direction::Outgoing)
                    .find_map(|c| match graph.g[c].kind {
                        NodeKind::LoraUp { rank, .. } => Some(rank as u64),
                        _ => None,
                    })
                    .unwrap_or(0);
                for b in blocks {
                    let (rows, cols) = (b.rows as u64, b.cols as u64);
                    if b.row_block == 0 {
                        // A slice and B resident; X slice, X A and the output
                        // per group.
                        let plan = LoraPlan::new(t, rows, rank, cols, 64);
                        let resident = plan.a.bytes.0 + plan.b.bytes.0;
                        let group = plan.x.bytes.0 + plan.xa.bytes.0 + plan.y.bytes.0;
                        add(n, b.pair, resident, group);
                    } else if b.col_block == 0 {
                        // Its A slice; X slice and X_i A_i per group.
                        add(n, b.pair, rows * rank * e, t * rows * e + t * rank * e);
                    } else {
                        add(n, b.pair, 0, t * rows * e);
                    }
                }
            }
            (NodeKind::Elementwise { .. }, _) => {
                let inputs = graph
                    .g
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .count() as u64;
                // Inputs and output of its slice.
                for sh in map.shards(n) {
                    let w = (sh.hi - sh.lo) as u64;
                    add(n, sh.pair, 0, (inputs.max(1) + 1) * t * w * e);
                }
            }
            (
                NodeKind::AttnContext {
                    heads,
                    kv_heads,
                    head_dim,
                },
                Placement::Heads { pairs },
            ) => {
                let hd = *head_dim as u64;
                let per_group = (*heads / *kv_heads) as u64;
                let per_key = 2 * hd * e + t * e;
                let chunk = crate::timing::tasks::attention_chunk(
                    arch.pmca.attention_chunk_bytes.0,
                    hd,
                    t,
                    graph.seq_len as u64,
                );
                for (i, p) in pairs.iter().enumerate() {
                    let groups_here = (0..*kv_heads as usize)
                        .filter(|g| g % pairs.len() == i)
                        .count() as u64;
                    let qw = groups_here * per_group * hd;
                    // Q and O of its heads, one chunk of K, V and scores.
                    add(n, *p, 0, 2 * t * qw * e + chunk * per_key);
                }
            }
            _ => {}
        }
    }
    out
}

/// TCDM bytes each pair's schedule keeps live: over the operations it
/// hosts, their resident data and two token groups' worth (double
/// buffering), all counted at once since the pipeline interleaves the
/// groups of different operations. An upper bound on the occupancy.
pub fn tcdm_per_pair(graph: &Graph, map: &Mapping, arch: &Architecture) -> Vec<TcdmUse> {
    let mut per: Vec<TcdmUse> = vec![TcdmUse::default(); map.pairs as usize];
    for f in footprints(graph, map, arch) {
        per[f.pair as usize].add(&graph.g[f.node].name, f.resident_bytes + 2 * f.group_bytes);
    }
    per
}

/// The TCDM bytes of one pair, by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcdmUse {
    pub total: Bytes,
    /// (operation, bytes) in the order the description lists them.
    pub ops: Vec<(String, Bytes)>,
}

impl TcdmUse {
    fn add(&mut self, op: &str, bytes: u64) {
        self.total += Bytes(bytes);
        match self.ops.iter_mut().find(|(n, _)| n == op) {
            Some((_, b)) => *b += Bytes(bytes),
            None => self.ops.push((op.to_string(), Bytes(bytes))),
        }
    }
}
