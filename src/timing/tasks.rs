//! Expands a mapped graph into the task graph the timing run executes: for
//! every operation and token group, the jobs of each hardware unit (tile
//! integration, DMA transfers, RedMule jobs, core kernels) and the
//! dependencies between them, including the double-buffering constraints of
//! the pipeline.
//!
//! Per linear projection and group g (t_g tokens), on each tile block:
//! `tile` (t_g MVMs) -> `out` (DMA of the outputs into the owner's TCDM).
//! On the owner of each column block: `post` (per-group handshake, format
//! conversion, accumulation of row-block partial sums, on the cores). With
//! LoRA: `down` (`X_i A_i`, RedMule, after its programming by a core) on the
//! column-0 pair of every row block i, from the X slice it already holds;
//! the t x r partials go to every column owner; then `up` (`(X A) B_c + Y_c`,
//! RedMule, programmed while `down` runs when the owner ran one: 2 contexts).
//! Double buffering: the tile may start group g once the outputs of g-2 have
//! left its output buffer; `out` of g may fill a TCDM buffer once group g-2's
//! result there is finished.

use super::{Step, Unit, Work};
use crate::config::{Architecture, LinkFormat, Schedule};
use crate::graph::{Graph, NodeKind, FP16_BYTES};
use crate::hw::redmule::Operands;
use crate::hw::snitch::Kernel;
use crate::mapping::{mvm_of, LoraPlan, Mapping, Placement};
use crate::units::{Clock, Cycles, Ps};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::HashMap;

pub type TaskId = u32;

/// One job of one unit (or a zero-time join when `unit` is `None`).
#[derive(Debug, Clone)]
pub struct Task {
    pub unit: Option<(u32, Unit)>,
    pub work: Work,
    pub node: NodeIndex,
    /// The token group of `node` this job belongs to.
    pub group: u32,
    /// The tokens of the sequence it covers, `lo..hi`.
    pub tokens: (u32, u32),
    pub step: Step,
    pub deps: u32,
    pub succs: Vec<TaskId>,
}

/// The task graph of one timing run.
#[derive(Debug, Clone, Default)]
pub struct TaskGraph {
    pub tasks: Vec<Task>,
    /// Token groups of the run's t (operations with a t of their own have
    /// their own groups; `Task::tokens` says which tokens a job covers).
    pub groups: u32,
    /// Tokens in each of those groups (the last holds L mod t, unpadded).
    pub group_tokens: Vec<u32>,
}

impl TaskGraph {
    fn add(
        &mut self,
        unit: Option<(u32, Unit)>,
        work: Work,
        node: NodeIndex,
        group: u32,
        tokens: (u32, u32),
        step: Step,
    ) -> TaskId {
        self.tasks.push(Task {
            unit,
            work,
            node,
            group,
            tokens,
            step,
            deps: 0,
            succs: Vec::new(),
        });
        (self.tasks.len() - 1) as TaskId
    }

    /// `after` waits for `before`.
    fn dep(&mut self, before: TaskId, after: TaskId) {
        self.tasks[before as usize].succs.push(after);
        self.tasks[after as usize].deps += 1;
    }

    fn dep_opt(&mut self, before: Option<TaskId>, after: TaskId) {
        if let Some(b) = before {
            self.dep(b, after);
        }
    }
}

/// Where a tensor of a group is complete: `None` means present from the start.
type Ready = Option<TaskId>;

/// Where a copy of a tensor lives: a pair's TCDM or the shared L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Pair(u32),
    L2,
}

/// A transfer: features `lo..hi` of shard `shard` and tokens `tokens` of
/// group `group` of `node`, to `place`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CopyKey {
    node: NodeIndex,
    group: u32,
    place: Place,
    shard: usize,
    features: (u32, u32),
    tokens: (u32, u32),
}

struct Builder<'a> {
    graph: &'a Graph,
    map: &'a Mapping,
    arch: &'a Architecture,
    clock: Clock,
    tg: TaskGraph,
    /// When each shard of (node, group) is complete on its pair, in the
    /// order of `Mapping::shards`.
    done: HashMap<(NodeIndex, u32), Vec<Ready>>,
    /// Transfers to a place of part of a shard of a (node, group).
    copies: HashMap<CopyKey, TaskId>,
}

/// Builds the task graph for a mapped graph with groups of `tokens`.
pub fn build(graph: &Graph, map: &Mapping, arch: &Architecture) -> TaskGraph {
    let t = map.tokens;
    let l = graph.seq_len;
    let groups = l.div_ceil(t);
    let group_tokens = (0..groups).map(|g| t.min(l - g * t)).collect();
    let mut b = Builder {
        graph,
        map,
        arch,
        clock: Clock::new(arch.pmca.clock),
        tg: TaskGraph {
            tasks: Vec::new(),
            groups,
            group_tokens,
        },
        done: HashMap::new(),
        copies: HashMap::new(),
    };
    // Layer by layer: all groups of one node before the next node, so task
    // ids (the dispatch tie-break) follow the description's order.
    for &n in &graph.order {
        match graph.g[n].kind {
            NodeKind::StaticMvm { .. } => b.linear(n),
            NodeKind::LoraDown { .. } | NodeKind::LoraUp { .. } => {}
            NodeKind::AttnScores { .. } | NodeKind::AttnSoftmax { .. } => {}
            NodeKind::AttnContext { .. } => b.attention(n),
            NodeKind::Elementwise { kernel, .. } => b.elementwise(n, kernel),
        }
    }
    b.tg
}

impl Builder<'_> {
    /// Groups of an operation's token group size.
    fn groups_of(&self, n: NodeIndex) -> u32 {
        self.graph.seq_len.div_ceil(self.map.tokens_of(n))
    }

    /// The tokens `lo..hi` of group `g` of an operation.
    fn range(&self, n: NodeIndex, g: u32) -> (u32, u32) {
        let t = self.map.tokens_of(n);
        (g * t, ((g + 1) * t).min(self.graph.seq_len))
    }

    /// Tokens in group `g` of an operation.
    fn tokens_in(&self, n: NodeIndex, g: u32) -> u64 {
        let (lo, hi) = self.range(n, g);
        (hi - lo) as u64
    }

    /// Adds a job of group `g` of operation `node`.
    fn task(
        &mut self,
        unit: Option<(u32, Unit)>,
        work: Work,
        node: NodeIndex,
        g: u32,
        step: Step,
    ) -> TaskId {
        let tokens = self.range(node, g);
        self.tg.add(unit, work, node, g, tokens, step)
    }

    fn pmca_cycles_to_ps(&self, c: u64) -> Ps {
        self.clock.to_ps(Cycles(c))
    }

    /// Features `lo..hi` of tokens `toks` of the tensor produced by `src`,
    /// made available at `place`: the jobs to wait for (the producing jobs
    /// where the slices already are, DMA transfers from the pairs holding
    /// them otherwise). The graph input (`None`) is present from the start.
    fn at(
        &mut self,
        src: Option<NodeIndex>,
        toks: (u32, u32),
        place: Place,
        lo: u32,
        hi: u32,
    ) -> Vec<TaskId> {
        let Some(src) = src else {
            return Vec::new();
        };
        let t_src = self.map.tokens_of(src);
        let shards = self.map.shards(src).to_vec();
        let mut waits = Vec::new();
        for sg in toks.0 / t_src..=(toks.1 - 1) / t_src {
            let (glo, ghi) = self.range(src, sg);
            let tokens = (toks.0.max(glo), toks.1.min(ghi));
            let ready = self.done[&(src, sg)].clone();
            for (i, sh) in shards.iter().enumerate() {
                let (olo, ohi) = (lo.max(sh.lo), hi.min(sh.hi));
                if olo >= ohi {
                    continue;
                }
                if place == Place::Pair(sh.pair) {
                    waits.extend(ready[i]);
                    continue;
                }
                let key = CopyKey {
                    node: src,
                    group: sg,
                    place,
                    shard: i,
                    features: (olo, ohi),
                    tokens,
                };
                if let Some(&t) = self.copies.get(&key) {
                    waits.push(t);
                    continue;
                }
                // Pushed by the holder's DMA across the shared L2 interconnect.
                let work = Work::Dma {
                    bytes: (tokens.1 - tokens.0) as u64 * (ohi - olo) as u64 * FP16_BYTES,
                    tcdm_addr: 0,
                    into_tcdm: false,
                    ext_bytes_per_cycle: self.arch.l2.bytes_per_cycle,
                    ext_latency: self.arch.l2.latency,
                };
                let step = match place {
                    Place::L2 => Step::ToL2,
                    Place::Pair(p) => Step::Xfer { to: p },
                };
                let task = self.task(Some((sh.pair, Unit::Dma)), work, src, sg, step);
                self.tg.dep_opt(ready[i], task);
                self.copies.insert(key, task);
                waits.push(task);
            }
        }
        waits
    }

    /// `after` waits for every job of `before`.
    fn dep_all(&mut self, before: &[TaskId], after: TaskId) {
        for &b in before {
            self.tg.dep(b, after);
        }
    }

    /// The producer feeding `n` through `slot`, if any node does.
    fn input(&self, n: NodeIndex, slot: &str) -> Option<NodeIndex> {
        self.graph
            .g
            .edges_directed(n, Direction::Incoming)
            .find(|e| e.weight().slot == slot)
            .map(|e| e.source())
    }

    fn linear(&mut self, mvm: NodeIndex) {
        // The LoRA nodes of this projection, if any.
        let up = self
            .graph
            .g
            .edges_directed(mvm, Direction::Outgoing)
            .map(|e| e.target())
            .find(|&c| matches!(self.graph.g[c].kind, NodeKind::LoraUp { .. }));
        let rank = up.map(|u| match self.graph.g[u].kind {
            NodeKind::LoraUp { rank, .. } => rank as u64,
            _ => unreachable!(),
        });
        let finish_node = up.unwrap_or(mvm);
        debug_assert!(up.is_none_or(|u| mvm_of(self.graph, u) == mvm));
        let Placement::Aimc {
            blocks,
            row_blocks,
            col_blocks,
        } = self.map.placement(mvm).clone()
        else {
            unreachable!()
        };
        let (rb, cb) = (row_blocks as usize, col_blocks as usize);
        let block = |r: usize, c: usize| &blocks[r * cb + c];
        let src = self.input(mvm, "from");
        let link = &self.arch.link;
        let in_bytes = link.input_format.bytes();
        let out_bytes = link.output_format.bytes();
        let t = self.map.tokens_of(mvm) as u64;
        let cores = &self.arch.pmca.cores;
        let program = cores.redmule_program_cycles;
        let l2 = (self.arch.l2.bytes_per_cycle, self.arch.l2.latency);
        // TCDM plans: on the pair of block (r, c), X is its row slice; the
        // LoRA data (X A, A slice, B) sits on column 0's pairs (A) and on the
        // column owners (B, output).
        let plans: Vec<LoraPlan> = blocks
            .iter()
            .map(|b| LoraPlan::new(t, b.rows as u64, rank.unwrap_or(0), b.cols as u64, 64))
            .collect();
        // Per block: its `out` transfers; per column: its finish, per group.
        let mut out_tasks: Vec<Vec<TaskId>> = vec![Vec::new(); blocks.len()];
        let mut finish: Vec<Vec<TaskId>> = vec![Vec::new(); cb];
        for g in 0..self.groups_of(mvm) {
            let tg = self.tokens_in(mvm, g);
            let toks = self.range(mvm, g);
            let second = g % 2 == 1;
            let mut outs_of_col: Vec<Vec<TaskId>> = vec![Vec::new(); cb];
            let mut x_ready_at: Vec<Vec<TaskId>> = vec![Vec::new(); blocks.len()];
            for (bi, blk) in blocks.iter().enumerate() {
                // Each tile gets only its row slice of X.
                let lo = blk.row_block * self.arch.aimc.rows;
                let x_ready = self.at(src, toks, Place::Pair(blk.pair), lo, lo + blk.rows);
                // One token's inputs over the link.
                let load_cycles = (blk.rows as u64 * in_bytes).div_ceil(link.bytes_per_cycle());
                let load = self.pmca_cycles_to_ps(load_cycles);
                let tile = self.task(
                    Some((blk.pair, Unit::Tile)),
                    Work::Aimc {
                        tokens: tg as u32,
                        load,
                        latency: link.latency,
                    },
                    mvm,
                    g,
                    Step::Tile,
                );
                self.dep_all(&x_ready, tile);
                x_ready_at[bi] = x_ready;
                if g >= 2 {
                    // Double-buffered output buffer in the tile.
                    let prev = out_tasks[bi][(g - 2) as usize];
                    self.tg.dep(prev, tile);
                }
                // The outputs (partial sums for row blocks > 0) into the
                // column owner's TCDM buffer for this group.
                let c = blk.col_block as usize;
                let owner = block(0, c).pair;
                let plan = &plans[c];
                let ybuf = if second { &plan.y_next } else { &plan.y };
                let (ext_bpc, ext_lat) = if blk.pair == owner {
                    (link.bytes_per_cycle(), link.latency)
                } else {
                    // A partial sum crosses the interconnect too.
                    (link.bytes_per_cycle().min(l2.0), link.latency + l2.1)
                };
                let out = self.task(
                    Some((blk.pair, Unit::Dma)),
                    Work::Dma {
                        bytes: tg * blk.cols as u64 * out_bytes,
                        tcdm_addr: ybuf.addr,
                        into_tcdm: true,
                        ext_bytes_per_cycle: ext_bpc,
                        ext_latency: ext_lat,
                    },
                    mvm,
                    g,
                    Step::Out,
                );
                self.tg.dep(tile, out);
                if g >= 2 {
                    // The owner's buffer of group g-2 must be finished.
                    let prev = finish[c][(g - 2) as usize];
                    self.tg.dep(prev, out);
                }
                out_tasks[bi].push(out);
                outs_of_col[c].push(out);
            }
            // Post-processing on each column owner's cores: handshake,
            // conversion of ADC codes, accumulation of the row blocks'
            // partial sums and of the partial X A of the row blocks.
            let mut posts = Vec::with_capacity(cb);
            for (c, outs) in outs_of_col.iter().enumerate() {
                let cols = block(0, c).cols as u64;
                let mut cyc = self.arch.pmca.group_sync_cycles;
                if link.output_format == LinkFormat::Int8 {
                    cyc += cores
                        .kernel_cycles(Kernel::Convert, rb as u64 * tg * cols)
                        .0;
                }
                if rb > 1 {
                    let partial = (rb as u64 - 1) * tg * (cols + rank.unwrap_or(0));
                    cyc += cores.kernel_cycles(Kernel::Add, partial).0;
                }
                let post = self.task(
                    Some((block(0, c).pair, Unit::Cores)),
                    Work::Cores {
                        cycles: cyc,
                        kernel: None,
                    },
                    mvm,
                    g,
                    Step::Post,
                );
                for &o in outs {
                    self.tg.dep(o, post);
                }
                posts.push(post);
            }
            // LoRA down: each row block's pair of column 0 computes
            // X_i A_i (t x r) from the X slice it holds; the partials go to
            // every column owner, which sums them in `post`.
            let mut downs: Vec<(u32, TaskId)> = Vec::new();
            if let (Some(r), Some(up)) = (rank, up) {
                for i in 0..rb {
                    let blk = block(i, 0);
                    let plan = &plans[i * cb];
                    let x = if second { &plan.x_next } else { &plan.x };
                    let down = self.task(
                        Some((blk.pair, Unit::RedMule)),
                        Work::RedMule {
                            m: tg,
                            n: blk.rows as u64,
                            k: r,
                            operands: Operands {
                                x_addr: x.addr,
                                w_addr: plan.a.addr,
                                y_addr: None,
                                z_addr: plan.xa.addr,
                            },
                            program_cycles: program,
                        },
                        up,
                        g,
                        Step::LoraDown,
                    );
                    match self.arch.schedule {
                        // The study's: once the group's tile outputs are in.
                        Schedule::Study if i == 0 => self.tg.dep(posts[0], down),
                        Schedule::Study => self.tg.dep(out_tasks[i * cb][g as usize], down),
                        // While the tile integrates the same group: once X
                        // is in and the previous group's LoRA is finished
                        // (RedMule does not run ahead of the pipeline).
                        Schedule::Concurrent => {
                            let x = std::mem::take(&mut x_ready_at[i * cb]);
                            self.dep_all(&x, down);
                            if g >= 1 {
                                self.tg.dep(finish[0][(g - 1) as usize], down);
                            }
                        }
                    }
                    downs.push((blk.pair, down));
                }
            }
            for c in 0..cb {
                let owner = block(0, c).pair;
                let fin = if let (Some(r), Some(up)) = (rank, up) {
                    let plan = &plans[c];
                    let y = if second { &plan.y_next } else { &plan.y };
                    // Programmed during this pair's own down job when it
                    // ran one (the second job context), else now.
                    let own_down = downs.iter().any(|(p, _)| *p == owner);
                    let upt = self.task(
                        Some((owner, Unit::RedMule)),
                        Work::RedMule {
                            m: tg,
                            n: r,
                            k: block(0, c).cols as u64,
                            operands: Operands {
                                x_addr: plan.xa.addr,
                                w_addr: plan.b.addr,
                                y_addr: Some(y.addr),
                                z_addr: y.addr,
                            },
                            program_cycles: if own_down { 0 } else { program },
                        },
                        up,
                        g,
                        Step::LoraUp,
                    );
                    self.tg.dep(posts[c], upt);
                    for &(p, down) in &downs {
                        if p == owner {
                            self.tg.dep(down, upt);
                        } else {
                            let x = self.task(
                                Some((p, Unit::Dma)),
                                Work::Dma {
                                    bytes: tg * r * FP16_BYTES,
                                    tcdm_addr: plans[0].xa.addr,
                                    into_tcdm: false,
                                    ext_bytes_per_cycle: l2.0,
                                    ext_latency: l2.1,
                                },
                                up,
                                g,
                                Step::Xfer { to: owner },
                            );
                            self.tg.dep(down, x);
                            // Partials are summed in `post`, or here when
                            // `post` ran before they arrived.
                            self.tg.dep(x, upt);
                        }
                    }
                    upt
                } else {
                    posts[c]
                };
                finish[c].push(fin);
            }
            // Each column's slice of the output stays on its owner.
            let ready: Vec<Ready> = finish.iter().map(|f| Some(f[g as usize])).collect();
            if finish_node != mvm {
                self.done.insert((mvm, g), ready.clone());
            }
            self.done.insert((finish_node, g), ready);
        }
    }

    fn elementwise(&mut self, node: NodeIndex, kernel: Kernel) {
        let inputs: Vec<NodeIndex> = self
            .graph
            .g
            .edges_directed(node, Direction::Incoming)
            .map(|e| e.source())
            .collect();
        let shards = self.map.shards(node).to_vec();
        for g in 0..self.groups_of(node) {
            let tg = self.tokens_in(node, g);
            let toks = self.range(node, g);
            let mut ready = Vec::with_capacity(shards.len());
            for sh in &shards {
                let elements = tg * (sh.hi - sh.lo) as u64;
                let cycles = self.arch.pmca.cores.kernel_cycles(kernel, elements).0;
                let task = self.task(
                    Some((sh.pair, Unit::Cores)),
                    Work::Cores {
                        cycles,
                        kernel: Some(kernel),
                    },
                    node,
                    g,
                    Step::Kernel,
                );
                for &src in &inputs {
                    let w = self.at(Some(src), toks, Place::Pair(sh.pair), sh.lo, sh.hi);
                    self.dep_all(&w, task);
                }
                ready.push(Some(task));
            }
            self.done.insert((node, g), ready);
        }
    }

    /// `chain[g]`: the first `g + 1` groups of `src` (all `width`
    /// features) are in the L2 — a chain of joins, so a causal group waits
    /// for its prefix and an encoder's for the last. Empty for the graph
    /// input, which is there from the start.
    fn l2_chain(&mut self, src: Option<NodeIndex>, width: u32) -> Vec<TaskId> {
        let Some(src) = src else {
            return Vec::new();
        };
        let mut chain: Vec<TaskId> = Vec::new();
        for g in 0..self.groups_of(src) {
            let join = self.task(None, Work::None, src, g, Step::Join);
            let waits = self.at(Some(src), self.range(src, g), Place::L2, 0, width);
            self.dep_all(&waits, join);
            if let Some(&prev) = chain.last() {
                self.tg.dep(prev, join);
            }
            chain.push(join);
        }
        chain
    }

    fn attention(&mut self, ctx_node: NodeIndex) {
        let NodeKind::AttnContext {
            heads,
            kv_heads,
            head_dim,
        } = self.graph.g[ctx_node].kind
        else {
            unreachable!()
        };
        // The scores node reads q and k; the context node reads v.
        let softmax = self
            .graph
            .g
            .edges_directed(ctx_node, Direction::Incoming)
            .find(|e| e.weight().slot == "p")
            .map(|e| e.source())
            .expect("context reads the softmax");
        let scores = self
            .graph
            .g
            .edges_directed(softmax, Direction::Incoming)
            .map(|e| e.source())
            .next()
            .expect("softmax reads the scores");
        let q = self.input(scores, "q");
        let k = self.input(scores, "k");
        let v = self.input(ctx_node, "v");
        let Placement::Heads { pairs } = self.map.placement(ctx_node).clone() else {
            unreachable!("attention is placed by heads")
        };
        let hd = head_dim as u64;
        let group_w = (heads / kv_heads) * head_dim;
        let kvw = kv_heads as u64 * hd;
        let per_kv = (heads / kv_heads) as u64;
        // K and V of every group go to the L2, where attention reads them.
        let k_in_l2 = self.l2_chain(k, kvw as u32);
        let v_in_l2 = self.l2_chain(v, kvw as u32);
        // Per pair, the end of each chunk step so far: a step's K/V loads
        // reuse the buffers of the step two before (double buffering).
        let mut steps: HashMap<u32, Vec<TaskId>> = HashMap::new();
        let budget = self.arch.pmca.attention_chunk_bytes.0;
        let rm = self.arch.pmca.cores.redmule_program_cycles;
        for g in 0..self.groups_of(ctx_node) {
            let tg = self.tokens_in(ctx_node, g);
            let toks = self.range(ctx_node, g);
            // Keys this group attends to: all (encoder) or up to its own
            // last token (causal prefill).
            let seen_end = if self.graph.causal {
                toks.1
            } else {
                self.graph.seq_len
            };
            let seen = seen_end as u64;
            let kv_ready: Vec<TaskId> = [(&k_in_l2, k), (&v_in_l2, v)]
                .iter()
                .filter_map(|(chain, src)| {
                    let src = (*src)?;
                    let t_src = self.map.tokens_of(src);
                    chain.get(((seen_end - 1) / t_src) as usize).copied()
                })
                .collect();
            // Each KV-head group's output slice stays on its pair.
            let mut ready: Vec<Ready> = vec![None; kv_heads as usize];
            // Chunks of keys so that K, V and the scores of a chunk fit the
            // attention budget (online softmax across chunks).
            let chunk = attention_chunk(budget, hd, tg, seen);
            let chunks = seen.div_ceil(chunk);
            let mut prev_ctx: Vec<Option<TaskId>> = vec![None; per_kv as usize];
            for kh in 0..kv_heads as usize {
                let pair = pairs[kh % pairs.len()];
                let lo = kh as u32 * group_w;
                let q_ready = self.at(q, toks, Place::Pair(pair), lo, lo + group_w);
                let join = self.task(None, Work::None, ctx_node, g, Step::Join);
                ready[kh] = Some(join);
                prev_ctx.iter_mut().for_each(|p| *p = None);
                for c in 0..chunks {
                    let keys = chunk.min(seen - c * chunk);
                    let kv_bytes = keys * hd * FP16_BYTES;
                    let l2 = Work::Dma {
                        bytes: kv_bytes,
                        tcdm_addr: 0,
                        into_tcdm: true,
                        ext_bytes_per_cycle: self.arch.l2.bytes_per_cycle,
                        ext_latency: self.arch.l2.latency,
                    };
                    let lk = self.task(
                        Some((pair, Unit::Dma)),
                        l2.clone(),
                        ctx_node,
                        g,
                        Step::LoadK,
                    );
                    let lv = self.task(Some((pair, Unit::Dma)), l2, ctx_node, g, Step::LoadV);
                    self.dep_all(&kv_ready, lk);
                    self.dep_all(&kv_ready, lv);
                    let history = steps.entry(pair).or_default();
                    if history.len() >= 2 {
                        let free = history[history.len() - 2];
                        self.tg.dep(free, lk);
                        self.tg.dep(free, lv);
                    }
                    let step_done = self.task(None, Work::None, ctx_node, g, Step::Join);
                    steps.get_mut(&pair).expect("entry exists").push(step_done);
                    for prev in prev_ctx.iter_mut() {
                        let q_addr = 0;
                        let k_addr = tg * heads as u64 * hd * FP16_BYTES;
                        let v_addr = k_addr + kv_bytes;
                        let s_addr = v_addr + kv_bytes;
                        let o_addr = s_addr + tg * keys * FP16_BYTES;
                        let s = self.task(
                            Some((pair, Unit::RedMule)),
                            Work::RedMule {
                                m: tg,
                                n: hd,
                                k: keys,
                                operands: Operands {
                                    x_addr: q_addr,
                                    w_addr: k_addr,
                                    y_addr: None,
                                    z_addr: s_addr,
                                },
                                program_cycles: rm,
                            },
                            ctx_node,
                            g,
                            Step::Scores,
                        );
                        self.dep_all(&q_ready, s);
                        self.tg.dep(lk, s);
                        let cycles = self
                            .arch
                            .pmca
                            .cores
                            .kernel_cycles(Kernel::Softmax, tg * keys)
                            .0;
                        let sm = self.task(
                            Some((pair, Unit::Cores)),
                            Work::Cores {
                                cycles,
                                kernel: Some(Kernel::Softmax),
                            },
                            ctx_node,
                            g,
                            Step::Softmax,
                        );
                        self.tg.dep(s, sm);
                        let cx = self.task(
                            Some((pair, Unit::RedMule)),
                            Work::RedMule {
                                m: tg,
                                n: keys,
                                k: hd,
                                operands: Operands {
                                    x_addr: s_addr,
                                    w_addr: v_addr,
                                    y_addr: if c > 0 { Some(o_addr) } else { None },
                                    z_addr: o_addr,
                                },
                                program_cycles: rm,
                            },
                            ctx_node,
                            g,
                            Step::Context,
                        );
                        self.tg.dep(sm, cx);
                        self.tg.dep(lv, cx);
                        // Accumulating chunks of one head run in order.
                        self.tg.dep_opt(*prev, cx);
                        *prev = Some(cx);
                        self.tg.dep(cx, join);
                        self.tg.dep(cx, step_done);
                    }
                }
            }
            self.done.insert((ctx_node, g), ready);
        }
    }
}

/// Keys per attention chunk: as many as fit `budget` bytes with their K and
/// V rows (head_dim FP16 each) and the group's scores against them, at least
/// 8, at most the keys seen.
pub fn attention_chunk(budget: u64, head_dim: u64, tokens: u64, seen: u64) -> u64 {
    let per_key = (2 * head_dim + tokens) * FP16_BYTES;
    (budget / per_key).max(8).min(seen)
}
