//! Expands a mapped graph into the task graph the timing run executes: for
//! every operation and token group, the jobs of each hardware unit (tile
//! integration, DMA transfers, RedMule jobs, core kernels) and the
//! dependencies between them, including the double-buffering constraints of
//! the pipeline.
//!
//! Per linear projection and group g (t_g tokens), on each tile block:
//! `tile` (t_g MVMs) -> `out` (DMA of the outputs into the owner's TCDM).
//! On the owner of each column block: `post` (per-group handshake, format
//! conversion, accumulation of row-block partial sums, on the cores), then
//! with LoRA `down` (`X A`, RedMule, after its programming by a core) and
//! `up` (`(X A) B + Y`, RedMule, programmed while `down` runs: 2 contexts).
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
    pub group: u32,
    pub step: Step,
    pub deps: u32,
    pub succs: Vec<TaskId>,
}

/// The task graph of one timing run.
#[derive(Debug, Clone, Default)]
pub struct TaskGraph {
    pub tasks: Vec<Task>,
    pub groups: u32,
    /// Tokens in each group (the last holds L mod t, unpadded).
    pub group_tokens: Vec<u32>,
}

impl TaskGraph {
    fn add(
        &mut self,
        unit: Option<(u32, Unit)>,
        work: Work,
        node: NodeIndex,
        group: u32,
        step: Step,
    ) -> TaskId {
        self.tasks.push(Task {
            unit,
            work,
            node,
            group,
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

struct Builder<'a> {
    graph: &'a Graph,
    map: &'a Mapping,
    arch: &'a Architecture,
    clock: Clock,
    tg: TaskGraph,
    /// Finish task of (node, group) at its home pair.
    done: HashMap<(NodeIndex, u32), Ready>,
    /// Copies of (node, group) at other places.
    copies: HashMap<(NodeIndex, u32, Place), Ready>,
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
            NodeKind::Elementwise { kernel, width } => b.elementwise(n, kernel, width),
        }
    }
    b.tg
}

impl Builder<'_> {
    fn tokens(&self, g: u32) -> u64 {
        self.tg.group_tokens[g as usize] as u64
    }

    fn pmca_cycles_to_ps(&self, c: u64) -> Ps {
        self.clock.to_ps(Cycles(c))
    }

    /// The tensor produced by `src` for group `g`, made available at `place`
    /// (a DMA transfer from its home when needed). `None`: no wait.
    fn at(&mut self, src: Option<NodeIndex>, g: u32, place: Place, bytes: u64) -> Ready {
        let src = src?;
        let home = self.map.home(src);
        let ready = self.done[&(src, g)];
        if place == Place::Pair(home) {
            return ready;
        }
        if let Some(&r) = self.copies.get(&(src, g, place)) {
            return r;
        }
        // Pushed by the home pair's DMA across the shared L2 interconnect.
        let work = Work::Dma {
            bytes,
            tcdm_addr: 0,
            into_tcdm: false,
            ext_bytes_per_cycle: self.arch.l2.bytes_per_cycle,
            ext_latency: self.arch.l2.latency,
        };
        let step = match place {
            Place::L2 => Step::ToL2,
            Place::Pair(p) => Step::Xfer { to: p },
        };
        let task = self.tg.add(Some((home, Unit::Dma)), work, src, g, step);
        self.tg.dep_opt(ready, task);
        self.copies.insert((src, g, place), Some(task));
        Some(task)
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
        let (m, n) = match self.graph.g[mvm].kind {
            NodeKind::StaticMvm {
                in_features,
                out_features,
            } => (in_features as u64, out_features as u64),
            _ => unreachable!(),
        };
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
        let src = self.input(mvm, "from");
        let link = &self.arch.link;
        let in_bytes = link.input_format.bytes();
        let out_bytes = link.output_format.bytes();
        let t = self.map.tokens as u64;
        let schedule = self.arch.schedule;
        let cores = &self.arch.pmca.cores;
        let groups = self.tg.groups;
        // Per column block: the TCDM plan of its owner.
        let plans: Vec<LoraPlan> = (0..col_blocks as usize)
            .map(|c| LoraPlan::new(t, m, rank.unwrap_or(0), blocks[c].cols as u64, 64))
            .collect();
        let mut out_tasks: Vec<Vec<TaskId>> = vec![Vec::new(); blocks.len()];
        let mut finish: Vec<Vec<TaskId>> = vec![Vec::new(); col_blocks as usize];
        for g in 0..groups {
            let tg = self.tokens(g);
            let slot = (g % 2) as usize;
            // Inputs: the owners (row block 0) need the whole X for X A; the
            // other row blocks only their slice.
            let mut outs_of_col: Vec<Vec<TaskId>> = vec![Vec::new(); col_blocks as usize];
            for (bi, blk) in blocks.iter().enumerate() {
                let x_bytes = if blk.row_block == 0 {
                    m
                } else {
                    blk.rows as u64
                } * tg
                    * FP16_BYTES;
                let x_ready = self.at(src, g, Place::Pair(blk.pair), x_bytes);
                // One token's inputs over the link.
                let load_cycles = (blk.rows as u64 * in_bytes).div_ceil(link.bytes_per_cycle());
                let load = self.pmca_cycles_to_ps(load_cycles);
                let tile = self.tg.add(
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
                self.tg.dep_opt(x_ready, tile);
                if g >= 2 {
                    let prev = out_tasks[bi][(g - 2) as usize];
                    self.tg.dep(prev, tile);
                }
                // The outputs (partial sums for row blocks > 0) into the
                // owner's TCDM buffer for this group.
                let owner = blocks[blk.col_block as usize].pair;
                let plan = &plans[blk.col_block as usize];
                let ybuf = if slot == 0 { &plan.y } else { &plan.y_next };
                let bytes = tg * blk.cols as u64 * out_bytes;
                let (ext_bpc, ext_lat) = if blk.pair == owner {
                    (link.bytes_per_cycle(), link.latency)
                } else {
                    // A partial sum crosses the interconnect too.
                    (
                        link.bytes_per_cycle().min(self.arch.l2.bytes_per_cycle),
                        link.latency + self.arch.l2.latency,
                    )
                };
                let out = self.tg.add(
                    Some((blk.pair, Unit::Dma)),
                    Work::Dma {
                        bytes,
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
                    let prev = finish[blk.col_block as usize][(g - 2) as usize];
                    self.tg.dep(prev, out);
                }
                out_tasks[bi].push(out);
                outs_of_col[blk.col_block as usize].push(out);
            }
            for c in 0..col_blocks as usize {
                let owner = blocks[c].pair;
                let cols = blocks[c].cols as u64;
                let plan = &plans[c];
                // Post-processing on the cores: handshake, conversion of ADC
                // codes, accumulation of the row blocks' partial sums.
                let mut cyc = self.arch.pmca.group_sync_cycles;
                if link.output_format == LinkFormat::Int8 {
                    cyc += cores
                        .kernel_cycles(Kernel::Convert, row_blocks as u64 * tg * cols)
                        .0;
                }
                if row_blocks > 1 {
                    cyc += cores
                        .kernel_cycles(Kernel::Add, (row_blocks as u64 - 1) * tg * cols)
                        .0;
                }
                let post = self.tg.add(
                    Some((owner, Unit::Cores)),
                    Work::Cores {
                        cycles: cyc,
                        kernel: None,
                    },
                    mvm,
                    g,
                    Step::Post,
                );
                for &o in &outs_of_col[c] {
                    self.tg.dep(o, post);
                }
                let fin = if let (Some(r), Some(up)) = (rank, up) {
                    let (x, y) = if slot == 0 {
                        (&plan.x, &plan.y)
                    } else {
                        (&plan.x_next, &plan.y_next)
                    };
                    let down = self.tg.add(
                        Some((owner, Unit::RedMule)),
                        Work::RedMule {
                            m: tg,
                            n: m,
                            k: r,
                            operands: Operands {
                                x_addr: x.addr,
                                w_addr: plan.a.addr,
                                y_addr: None,
                                z_addr: plan.xa.addr,
                            },
                            program_cycles: cores.redmule_program_cycles,
                        },
                        up,
                        g,
                        Step::LoraDown,
                    );
                    match schedule {
                        Schedule::Study => self.tg.dep(post, down),
                        Schedule::Concurrent => {
                            let x_ready = self.at(src, g, Place::Pair(owner), m * tg * FP16_BYTES);
                            self.tg.dep_opt(x_ready, down);
                        }
                    }
                    // The second job context: programmed while `down` runs.
                    let upt = self.tg.add(
                        Some((owner, Unit::RedMule)),
                        Work::RedMule {
                            m: tg,
                            n: r,
                            k: cols,
                            operands: Operands {
                                x_addr: plan.xa.addr,
                                w_addr: plan.b.addr,
                                y_addr: Some(y.addr),
                                z_addr: y.addr,
                            },
                            program_cycles: 0,
                        },
                        up,
                        g,
                        Step::LoraUp,
                    );
                    self.tg.dep(down, upt);
                    self.tg.dep(post, upt);
                    upt
                } else {
                    post
                };
                finish[c].push(fin);
            }
            // The whole output at the home pair (column 0's owner): the other
            // column blocks send theirs.
            let home = blocks[0].pair;
            let join = self.tg.add(None, Work::None, finish_node, g, Step::Join);
            for c in 0..col_blocks as usize {
                let f = finish[c][g as usize];
                if blocks[c].pair == home {
                    self.tg.dep(f, join);
                } else {
                    let x = self.tg.add(
                        Some((blocks[c].pair, Unit::Dma)),
                        Work::Dma {
                            bytes: tg * blocks[c].cols as u64 * FP16_BYTES,
                            tcdm_addr: plans[c].y.addr,
                            into_tcdm: false,
                            ext_bytes_per_cycle: self.arch.l2.bytes_per_cycle,
                            ext_latency: self.arch.l2.latency,
                        },
                        finish_node,
                        g,
                        Step::Xfer { to: home },
                    );
                    self.tg.dep(f, x);
                    self.tg.dep(x, join);
                }
            }
            self.done.insert((finish_node, g), Some(join));
            if finish_node != mvm {
                self.done.insert((mvm, g), Some(join));
            }
        }
        let _ = n;
    }

    fn elementwise(&mut self, node: NodeIndex, kernel: Kernel, width: u32) {
        let pair = self.map.home(node);
        let inputs: Vec<NodeIndex> = self
            .graph
            .g
            .edges_directed(node, Direction::Incoming)
            .map(|e| e.source())
            .collect();
        for g in 0..self.tg.groups {
            let tg = self.tokens(g);
            let elements = tg * width as u64;
            let cycles = self.arch.pmca.cores.kernel_cycles(kernel, elements).0;
            let task = self.tg.add(
                Some((pair, Unit::Cores)),
                Work::Cores {
                    cycles,
                    kernel: Some(kernel),
                },
                node,
                g,
                Step::Kernel,
            );
            for &src in &inputs {
                let bytes = tg * self.graph.g[src].out_width as u64 * FP16_BYTES;
                let r = self.at(Some(src), g, Place::Pair(pair), bytes);
                self.tg.dep_opt(r, task);
            }
            self.done.insert((node, g), Some(task));
        }
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
        let home = pairs[0];
        let hd = head_dim as u64;
        let kvw = kv_heads as u64 * hd;
        let per_kv = (heads / kv_heads) as u64;
        let groups = self.tg.groups;
        // K and V of every group go to the L2, where attention reads them.
        let mut k_l2 = Vec::new();
        let mut v_l2 = Vec::new();
        for g in 0..groups {
            let bytes = self.tokens(g) * kvw * FP16_BYTES;
            k_l2.push(self.at(k, g, Place::L2, bytes));
            v_l2.push(self.at(v, g, Place::L2, bytes));
        }
        let tcdm = self.arch.pmca.tcdm.size.0;
        let rm = self.arch.pmca.cores.redmule_program_cycles;
        let t = self.map.tokens as u64;
        for g in 0..groups {
            let tg = self.tokens(g);
            // Keys this group attends to: all (encoder) or up to its own
            // last token (causal prefill).
            let seen = if self.graph.causal {
                g as u64 * t + tg
            } else {
                self.graph.seq_len as u64
            };
            let last_kv = if self.graph.causal { g } else { groups - 1 };
            let join = self.tg.add(None, Work::None, ctx_node, g, Step::Join);
            // Queries of the heads each pair runs, and its last job.
            let mut q_ready = Vec::with_capacity(pairs.len());
            for (i, &p) in pairs.iter().enumerate() {
                let groups_here = (0..kv_heads as usize)
                    .filter(|kh| kh % pairs.len() == i)
                    .count() as u64;
                let bytes = tg * groups_here * per_kv * hd * FP16_BYTES;
                q_ready.push(self.at(q, g, Place::Pair(p), bytes));
            }
            let mut last_on: Vec<Option<TaskId>> = vec![None; pairs.len()];
            // Chunks of keys so that K, V and the scores of a chunk take at
            // most half the TCDM (online softmax across chunks).
            let per_key = 2 * hd * FP16_BYTES + tg * FP16_BYTES;
            let chunk = ((tcdm / 2) / per_key).max(8).min(seen);
            let chunks = seen.div_ceil(chunk);
            let mut prev_ctx: Vec<Option<TaskId>> = vec![None; per_kv as usize];
            for kh in 0..kv_heads as usize {
                let slot = kh % pairs.len();
                let pair = pairs[slot];
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
                    let lk = self.tg.add(
                        Some((pair, Unit::Dma)),
                        l2.clone(),
                        ctx_node,
                        g,
                        Step::LoadK,
                    );
                    let lv = self
                        .tg
                        .add(Some((pair, Unit::Dma)), l2, ctx_node, g, Step::LoadV);
                    for gg in 0..=last_kv as usize {
                        self.tg.dep_opt(k_l2[gg], lk);
                        self.tg.dep_opt(v_l2[gg], lv);
                    }
                    for prev in prev_ctx.iter_mut() {
                        let q_addr = 0;
                        let k_addr = tg * heads as u64 * hd * FP16_BYTES;
                        let v_addr = k_addr + kv_bytes;
                        let s_addr = v_addr + kv_bytes;
                        let o_addr = s_addr + tg * keys * FP16_BYTES;
                        let s = self.tg.add(
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
                        self.tg.dep_opt(q_ready[slot], s);
                        self.tg.dep(lk, s);
                        let cycles = self
                            .arch
                            .pmca
                            .cores
                            .kernel_cycles(Kernel::Softmax, tg * keys)
                            .0;
                        let sm = self.tg.add(
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
                        let cx = self.tg.add(
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
                        last_on[slot] = Some(cx);
                    }
                }
            }
            // The heads' outputs gathered on the home pair.
            for (i, &p) in pairs.iter().enumerate() {
                let Some(last) = last_on[i] else { continue };
                if p == home {
                    self.tg.dep(last, join);
                    continue;
                }
                let groups_here = (0..kv_heads as usize)
                    .filter(|kh| kh % pairs.len() == i)
                    .count() as u64;
                let x = self.tg.add(
                    Some((p, Unit::Dma)),
                    Work::Dma {
                        bytes: tg * groups_here * per_kv * hd * FP16_BYTES,
                        tcdm_addr: 0,
                        into_tcdm: false,
                        ext_bytes_per_cycle: self.arch.l2.bytes_per_cycle,
                        ext_latency: self.arch.l2.latency,
                    },
                    ctx_node,
                    g,
                    Step::Xfer { to: home },
                );
                self.tg.dep(last, x);
                self.tg.dep(x, join);
            }
            self.done.insert((ctx_node, g), Some(join));
        }
    }
}
