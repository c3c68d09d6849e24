//! Summaries of timing runs, as the commands report them: one linear layer
//! with its LoRA branch (`aimcsim layer`) and a whole workload
//! (`aimcsim run`), each with and without LoRA.

use super::occupancy::occupancy;
use super::{run, Step, Timeline, TimingOptions, Unit};
use crate::config::{Architecture, BlockKind, LoraSpec, ModelKind, Op, Targets, Workload};
use crate::graph::{Graph, NodeKind};
use crate::mapping::{tcdm_per_pair, LoraPlan, Mapping, MappingError};
use crate::units::Ps;
use hdrhistogram::Histogram;
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::collections::HashMap;

/// What `aimcsim layer` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerQuery {
    pub in_features: u32,
    pub out_features: u32,
    pub rank: u32,
    pub tokens: u32,
    pub seq_len: u32,
}

/// One linear layer with its LoRA branch on one tile + PMCA pair.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub in_features: u32,
    pub out_features: u32,
    pub rank: u32,
    pub tokens: u32,
    pub seq_len: u32,
    pub integration_time_ns: f64,
    pub tiles: u32,
    /// One group of t tokens on the tile.
    pub aimc_ns: f64,
    /// The PMCA's work for the same group once the tile is done: output
    /// transfer, handshake and conversion, LoRA down and up with the add.
    pub pmca_ns: f64,
    pub pmca_to_aimc: f64,
    /// Parts of `pmca_ns`.
    pub out_transfer_ns: f64,
    pub post_ns: f64,
    pub lora_down_ns: f64,
    pub lora_up_ns: f64,
    /// The PMCA's work without LoRA (transfer and post-processing).
    pub baseline_pmca_ns: f64,
    /// The LoRA step's live FP16 data: X, X A, output, A, B.
    pub tcdm_bytes: u64,
    /// Everything the schedule keeps live (double buffers for X and the
    /// tile outputs), alignment included.
    pub tcdm_schedule_bytes: u64,
    pub tcdm_capacity_bytes: u64,
    pub fits_tcdm: bool,
    /// All L tokens through the pipeline.
    pub total_ns: f64,
    /// The same pipeline without the LoRA step.
    pub baseline_ns: f64,
    pub overhead: f64,
    /// Cycles lost to TCDM bank conflicts over the whole run.
    pub tcdm_stall_cycles: u64,
    /// With `--tokens auto`: how t was chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoTokens>,
}

/// The outcome of `--tokens auto`: the t with the lowest total latency
/// among the candidates, and the best one whose schedule fits the TCDM.
#[derive(Debug, Clone, Serialize)]
pub struct AutoTokens {
    /// The candidates tried: powers of two up to L, and L.
    pub candidates: Vec<u32>,
    pub chosen_tokens: u32,
    pub chosen_total_ns: f64,
    pub chosen_fits_tcdm: bool,
    /// The fastest candidate that fits the TCDM, if any does.
    pub best_fitting_tokens: Option<u32>,
    pub best_fitting_total_ns: Option<f64>,
}

/// Candidate token group sizes for `--tokens auto`: 1, 2, 4, ... up to
/// `max` (and `max` itself).
pub fn auto_candidates(max: u32) -> Vec<u32> {
    let mut v: Vec<u32> = std::iter::successors(Some(1u32), |t| t.checked_mul(2))
        .take_while(|&t| t <= max)
        .collect();
    if v.last() != Some(&max) {
        v.push(max);
    }
    v
}

/// The run with the lowest total latency (ties to the smaller t, which
/// needs less TCDM), and the fastest that fits the TCDM. `key` gives a run's
/// (total ns, t, fits).
fn choose_tokens<R: Clone>(
    runs: &[R],
    candidates: Vec<u32>,
    key: impl Fn(&R) -> (f64, u32, bool),
) -> (R, AutoTokens) {
    let best = |fit_only: bool| {
        runs.iter()
            .filter(|r| !fit_only || key(r).2)
            .min_by(|a, b| {
                let (ta, na, _) = key(a);
                let (tb, nb, _) = key(b);
                ta.total_cmp(&tb).then(na.cmp(&nb))
            })
            .cloned()
    };
    let chosen = best(false).expect("at least one candidate");
    let fitting = best(true);
    let (_, t, fits) = key(&chosen);
    let auto = AutoTokens {
        candidates,
        chosen_tokens: t,
        chosen_total_ns: key(&chosen).0,
        chosen_fits_tcdm: fits,
        best_fitting_tokens: fitting.as_ref().map(|r| key(r).1),
        best_fitting_total_ns: fitting.as_ref().map(|r| key(r).0),
    };
    (chosen, auto)
}

/// `aimcsim layer --tokens auto`: every candidate t, the fastest chosen.
pub fn layer_auto(
    arch: &Architecture,
    q: &LayerQuery,
    opts: TimingOptions,
) -> Result<LayerReport, QueryError> {
    let candidates = auto_candidates(q.seq_len);
    let mut runs = Vec::with_capacity(candidates.len());
    for &t in &candidates {
        let qt = LayerQuery {
            tokens: t,
            ..q.clone()
        };
        runs.push(layer(arch, &qt, opts)?);
    }
    let (mut chosen, auto) =
        choose_tokens(&runs, candidates, |r| (r.total_ns, r.tokens, r.fits_tcdm));
    chosen.auto = Some(auto);
    Ok(chosen)
}

/// Why a query cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

/// The one-layer workload of a query.
pub fn layer_workload(q: &LayerQuery, with_lora: bool) -> Workload {
    Workload {
        name: format!("linear {}x{}", q.in_features, q.out_features),
        kind: ModelKind::Encoder,
        seq_len: q.seq_len,
        tokens_per_group: q.tokens,
        input_width: q.in_features,
        embedding: Vec::new(),
        layer: vec![Op::Linear {
            name: "linear".into(),
            from: "input".into(),
            in_features: q.in_features,
            out_features: q.out_features,
        }],
        num_layers: 1,
        head: Vec::new(),
        lora: LoraSpec {
            rank: q.rank,
            alpha: 2.0 * q.rank as f64,
            targets: if with_lora && q.rank > 0 {
                Targets::All
            } else {
                Targets::None
            },
        },
        weights: None,
        task: None,
    }
}

fn ns(p: Ps) -> f64 {
    p.as_ns_f64()
}

fn span(tl: &Timeline, step: Step, group: u32) -> Option<(Ps, Ps)> {
    tl.tasks
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.step == step && t.group == group)
        .map(|(i, _)| tl.intervals[i])
        .fold(None, |acc, iv| match acc {
            None => Some((iv.start, iv.end)),
            Some((s, e)) => Some((s.min(iv.start), e.max(iv.end))),
        })
}

fn dur(tl: &Timeline, step: Step, group: u32) -> Ps {
    span(tl, step, group)
        .map(|(s, e)| e - s)
        .unwrap_or(Ps::ZERO)
}

/// A timing run with what produced it, for traces.
#[derive(Debug, Clone)]
pub struct Traced {
    pub graph: Graph,
    pub map: Mapping,
    pub timeline: Timeline,
}

/// Runs `aimcsim layer`.
pub fn layer(
    arch: &Architecture,
    q: &LayerQuery,
    opts: TimingOptions,
) -> Result<LayerReport, QueryError> {
    layer_traced(arch, q, opts).map(|(r, _)| r)
}

/// Runs `aimcsim layer` and keeps the timeline of the run with LoRA.
pub fn layer_traced(
    arch: &Architecture,
    q: &LayerQuery,
    opts: TimingOptions,
) -> Result<(LayerReport, Traced), QueryError> {
    let w = layer_workload(q, true);
    w.validate()
        .map_err(|e| QueryError::Invalid(format!("the layer query is invalid: {e}")))?;
    let base_w = layer_workload(q, false);
    let graph = Graph::build(&w);
    let map = Mapping::new(&graph, arch, q.tokens)?;
    let tl = run(&graph, &map, arch, opts);
    let base_graph = Graph::build(&base_w);
    let base_map = Mapping::new(&base_graph, arch, q.tokens)?;
    let base = run(&base_graph, &base_map, arch, opts);

    // Group 0 holds t tokens (t <= L) and meets no other group's traffic on
    // the PMCA: its numbers are the isolated per-group figures.
    let (tile_start, tile_end) = span(&tl, Step::Tile, 0).expect("group 0 runs on the tile");
    let finish_step = if q.rank > 0 { Step::LoraUp } else { Step::Post };
    let (_, fin) = span(&tl, finish_step, 0).expect("group 0 finishes");
    let (_, base_fin) = span(&base, Step::Post, 0).expect("group 0 finishes");
    let (_, base_tile_end) = span(&base, Step::Tile, 0).expect("group 0 runs");
    let aimc = tile_end - tile_start;
    let pmca = fin - tile_end;
    let m = q.in_features as u64;
    let n = q.out_features as u64;
    // The TCDM plan of the one column block the layer has when it fits a
    // tile; for wider layers, the widest block's.
    let cols = n.min(arch.aimc.cols as u64);
    let plan = LoraPlan::new(q.tokens as u64, m, q.rank as u64, cols, 64);
    let capacity = arch.pmca.tcdm.size.0;
    let sched = plan.schedule_bytes().0;
    let report = LayerReport {
        in_features: q.in_features,
        out_features: q.out_features,
        rank: q.rank,
        tokens: q.tokens,
        seq_len: q.seq_len,
        integration_time_ns: ns(arch.aimc.integration_time),
        tiles: map.tiles(),
        aimc_ns: ns(aimc),
        pmca_ns: ns(pmca),
        pmca_to_aimc: pmca.0 as f64 / aimc.0 as f64,
        out_transfer_ns: ns(dur(&tl, Step::Out, 0)),
        post_ns: ns(dur(&tl, Step::Post, 0)),
        lora_down_ns: ns(dur(&tl, Step::LoraDown, 0)),
        lora_up_ns: ns(dur(&tl, Step::LoraUp, 0)),
        baseline_pmca_ns: ns(base_fin - base_tile_end),
        tcdm_bytes: plan.tcdm_bytes().0,
        tcdm_schedule_bytes: sched,
        tcdm_capacity_bytes: capacity,
        fits_tcdm: sched <= capacity,
        total_ns: ns(tl.makespan),
        baseline_ns: ns(base.makespan),
        overhead: tl.makespan.0 as f64 / base.makespan.0 as f64,
        tcdm_stall_cycles: tl.tcdm_stall_cycles.iter().sum(),
        auto: None,
    };
    Ok((
        report,
        Traced {
            graph,
            map,
            timeline: tl,
        },
    ))
}

/// Per-layer figures of a workload run.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSpan {
    /// `embedding`, `layer.N` or `head`.
    pub name: String,
    pub start_ns: f64,
    pub end_ns: f64,
    /// End minus start: the layer's span in the pipelined run.
    pub latency_ns: f64,
    pub baseline_latency_ns: f64,
}

/// Utilisation (busy time over the run) per unit kind, averaged over the
/// pairs in use.
#[derive(Debug, Clone, Serialize)]
pub struct Utilisation {
    pub tile: f64,
    pub dma: f64,
    pub redmule: f64,
    pub cores: f64,
}

/// One operation's share of a pair's TCDM.
#[derive(Debug, Clone, Serialize)]
pub struct TcdmOp {
    pub op: String,
    pub bytes: u64,
}

/// Percentiles of the latency of a token group through the whole model.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLatency {
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub max_ns: f64,
}

/// `aimcsim run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub workload: String,
    pub architecture: String,
    pub seq_len: u32,
    pub tokens: u32,
    pub integration_time_ns: f64,
    pub total_ns: f64,
    pub baseline_ns: f64,
    pub overhead: f64,
    pub tiles: u32,
    pub aimc_weights: u64,
    pub lora_params: u64,
    pub lora_bytes: u64,
    /// The highest TCDM occupancy of any pair over the run: resident
    /// adapter data plus the buffers of the token groups in flight.
    pub peak_tcdm_bytes: u64,
    /// The largest sum over a pair's operations of resident data and two
    /// groups' buffers each, all at once: an upper bound, schedule-free.
    pub tcdm_bound_bytes: u64,
    /// The pair with the highest occupancy and its operations' bound
    /// footprints.
    pub peak_tcdm_pair: u32,
    pub peak_tcdm_ops: Vec<TcdmOp>,
    /// Pairs whose footprint exceeds the TCDM.
    pub pairs_over_tcdm: u32,
    pub tcdm_capacity_bytes: u64,
    pub fits_tcdm: bool,
    /// K and V of one layer's whole sequence, held in the L2 for attention.
    pub l2_kv_bytes: u64,
    pub l2_capacity_bytes: u64,
    pub utilisation: Utilisation,
    pub baseline_utilisation: Utilisation,
    pub group_latency: GroupLatency,
    pub tcdm_stall_cycles: u64,
    pub events: u64,
    pub host_seconds: f64,
    pub events_per_host_second: f64,
    pub layers: Vec<LayerSpan>,
    /// With `--tokens auto`: the best single t for the whole model, for
    /// comparison with the per-projection choice below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoTokens>,
    /// With `--tokens auto`: the t of each projection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_projection: Option<Vec<ProjectionTokens>>,
}

/// `aimcsim run --tokens auto`: each projection gets the t that minimises
/// the total latency of its layer over the sequence (`layer --tokens auto`
/// on its shape and rank); the other operations follow their input's t.
/// The fastest single t for the whole model (among 4, 8, ..., min(L, 128))
/// is reported beside it for comparison.
pub fn run_workload_auto(
    arch: &Architecture,
    w: &Workload,
    opts: TimingOptions,
) -> Result<RunReport, QueryError> {
    run_workload_auto_traced(arch, w, opts).map(|(r, _)| r)
}

/// `run_workload_auto`, keeping the timeline of the run with LoRA.
pub fn run_workload_auto_traced(
    arch: &Architecture,
    w: &Workload,
    opts: TimingOptions,
) -> Result<(RunReport, Traced), QueryError> {
    let graph = Graph::build(w);
    // Rank of each projection's adapter (0: none).
    let rank_of = |n: NodeIndex| {
        graph
            .g
            .neighbors_directed(n, petgraph::Direction::Outgoing)
            .find_map(|c| match graph.g[c].kind {
                NodeKind::LoraUp { rank, .. } => Some(rank),
                _ => None,
            })
            .unwrap_or(0)
    };
    let mut by_shape: HashMap<(u32, u32, u32), LayerReport> = HashMap::new();
    let mut tokens = HashMap::new();
    let mut per_projection: Vec<ProjectionTokens> = Vec::new();
    for &n in &graph.order {
        let NodeKind::StaticMvm {
            in_features,
            out_features,
        } = graph.g[n].kind
        else {
            continue;
        };
        let rank = rank_of(n);
        let key = (in_features, out_features, rank);
        let best = match by_shape.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let q = LayerQuery {
                    in_features,
                    out_features,
                    rank,
                    tokens: w.tokens_per_group,
                    seq_len: w.seq_len,
                };
                v.insert(layer_auto(arch, &q, opts)?)
            }
        };
        tokens.insert(graph.g[n].name.clone(), best.tokens);
        let node = &graph.g[n];
        if !per_projection
            .iter()
            .any(|p| p.projection == node.op_name && p.block == node.block.field())
        {
            per_projection.push(ProjectionTokens {
                block: node.block.field().to_string(),
                projection: node.op_name.clone(),
                in_features,
                out_features,
                rank,
                tokens: best.tokens,
                fits_tcdm: best.fits_tcdm,
                pmca_to_aimc: best.pmca_to_aimc,
            });
        }
    }
    let (mut report, traced) = run_with_tokens(arch, w, opts, &tokens)?;
    // The best single t, for comparison.
    let candidates: Vec<u32> = auto_candidates(w.seq_len.min(128))
        .into_iter()
        .filter(|&t| t >= 4 || t == w.seq_len)
        .collect();
    let mut runs = Vec::with_capacity(candidates.len());
    for &t in &candidates {
        let mut wt = w.clone();
        wt.tokens_per_group = t;
        runs.push(run_workload(arch, &wt, opts)?);
    }
    let (_, uniform) = choose_tokens(&runs, candidates, |r| (r.total_ns, r.tokens, r.fits_tcdm));
    report.auto = Some(uniform);
    report.tokens_per_projection = Some(per_projection);
    Ok((report, traced))
}

/// The t `--tokens auto` gave a projection (layers of the same shape share it).
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionTokens {
    pub block: String,
    pub projection: String,
    pub in_features: u32,
    pub out_features: u32,
    pub rank: u32,
    pub tokens: u32,
    /// Whether its LoRA schedule fits the TCDM at that t.
    pub fits_tcdm: bool,
    pub pmca_to_aimc: f64,
}

fn layer_name(block: BlockKind, layer: Option<u32>) -> String {
    match layer {
        Some(i) => format!("layer.{i}"),
        None => block.field().to_string(),
    }
}

fn layer_spans(graph: &Graph, tl: &Timeline) -> Vec<(String, Ps, Ps)> {
    let mut spans: Vec<(String, Ps, Ps)> = Vec::new();
    for (i, t) in tl.tasks.tasks.iter().enumerate() {
        let node = &graph.g[t.node];
        let name = layer_name(node.block, node.layer);
        let iv = tl.intervals[i];
        match spans.iter_mut().find(|(n, _, _)| *n == name) {
            Some(s) => {
                s.1 = s.1.min(iv.start);
                s.2 = s.2.max(iv.end);
            }
            None => spans.push((name, iv.start, iv.end)),
        }
    }
    spans.sort_by_key(|s| (s.1, s.2));
    spans
}

fn utilisation(tl: &Timeline) -> Utilisation {
    let mut u = [0.0f64; 4];
    for unit in Unit::ALL {
        let used: Vec<Ps> = tl
            .busy
            .iter()
            .map(|b| b[unit.index()])
            .filter(|b| b.0 > 0)
            .collect();
        if !used.is_empty() && tl.makespan.0 > 0 {
            u[unit.index()] = used.iter().map(|b| b.0 as f64).sum::<f64>()
                / (used.len() as f64 * tl.makespan.0 as f64);
        }
    }
    Utilisation {
        tile: u[0],
        dma: u[1],
        redmule: u[2],
        cores: u[3],
    }
}

fn group_latency(tl: &Timeline) -> GroupLatency {
    let g = tl.tasks.groups as usize;
    let mut first = vec![Ps(u64::MAX); g];
    let mut last = vec![Ps::ZERO; g];
    // A job belongs to every group of the run's t whose tokens it covers
    // (operations with a t of their own cover several or part of one).
    let t0 = tl.tasks.group_tokens.first().copied().unwrap_or(1).max(1);
    for (i, t) in tl.tasks.tasks.iter().enumerate() {
        let iv = tl.intervals[i];
        let (lo, hi) = t.tokens;
        for k in (lo / t0) as usize..=((hi.max(lo + 1) - 1) / t0) as usize {
            first[k] = first[k].min(iv.start);
            last[k] = last[k].max(iv.end);
        }
    }
    // Nanosecond resolution, 3 significant digits.
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for k in 0..g {
        if last[k] >= first[k] {
            h.record((last[k] - first[k]).0.div_ceil(1000).max(1))
                .expect("auto-resizing histogram");
        }
    }
    GroupLatency {
        p50_ns: h.value_at_quantile(0.5) as f64,
        p90_ns: h.value_at_quantile(0.9) as f64,
        p99_ns: h.value_at_quantile(0.99) as f64,
        max_ns: h.max() as f64,
    }
}

/// Runs `aimcsim run`: the workload with its adapters and without.
pub fn run_workload(
    arch: &Architecture,
    w: &Workload,
    opts: TimingOptions,
) -> Result<RunReport, QueryError> {
    run_workload_traced(arch, w, opts).map(|(r, _)| r)
}

/// Runs `aimcsim run` and keeps the timeline of the run with LoRA.
pub fn run_workload_traced(
    arch: &Architecture,
    w: &Workload,
    opts: TimingOptions,
) -> Result<(RunReport, Traced), QueryError> {
    run_with_tokens(arch, w, opts, &HashMap::new())
}

/// Runs the workload with a token group size per projection: `tokens`
/// maps a static MVM's node name (`layer.3.query`) to its t; the others use
/// the workload's.
fn run_with_tokens(
    arch: &Architecture,
    w: &Workload,
    opts: TimingOptions,
    tokens: &HashMap<String, u32>,
) -> Result<(RunReport, Traced), QueryError> {
    let mapped = |g: &Graph| -> Result<Mapping, QueryError> {
        let mut m = Mapping::new(g, arch, w.tokens_per_group)?;
        if !tokens.is_empty() {
            m.set_projection_tokens(g, |n| tokens.get(&g.g[n].name).copied());
        }
        Ok(m)
    };
    let graph = Graph::build(w);
    let map = mapped(&graph)?;
    let tl = run(&graph, &map, arch, opts);
    let mut base_w = w.clone();
    base_w.lora.targets = Targets::None;
    let base_graph = Graph::build(&base_w);
    let base_map = mapped(&base_graph)?;
    let base = run(&base_graph, &base_map, arch, opts);

    let spans = layer_spans(&graph, &tl);
    let base_spans = layer_spans(&base_graph, &base);
    let layers = spans
        .iter()
        .map(|(name, s, e)| {
            let b = base_spans
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, s, e)| *e - *s)
                .unwrap_or(Ps::ZERO);
            LayerSpan {
                name: name.clone(),
                start_ns: ns(*s),
                end_ns: ns(*e),
                latency_ns: ns(*e - *s),
                baseline_latency_ns: ns(b),
            }
        })
        .collect();
    let tcdm = tcdm_per_pair(&graph, &map, arch);
    let occ = occupancy(&graph, &map, arch, &tl);
    let peak_pair = (0..occ.peak.len())
        .max_by_key(|&p| (occ.peak[p], std::cmp::Reverse(p)))
        .unwrap_or(0);
    let peak = occ.peak.get(peak_pair).copied().unwrap_or(0);
    let bound = tcdm.iter().map(|u| u.total.0).max().unwrap_or(0);
    let peak_tcdm_ops = tcdm
        .get(peak_pair)
        .map(|u| {
            u.ops
                .iter()
                .map(|(n, b)| TcdmOp {
                    op: n.clone(),
                    bytes: b.0,
                })
                .collect()
        })
        .unwrap_or_default();
    let capacity = arch.pmca.tcdm.size.0;
    let l2_kv: u64 = graph
        .g
        .node_weights()
        .filter_map(|n| match n.kind {
            NodeKind::AttnContext {
                kv_heads, head_dim, ..
            } => Some(2 * graph.seq_len as u64 * kv_heads as u64 * head_dim as u64 * 2),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let lora_params = graph.lora_params();
    let report = RunReport {
        workload: w.name.clone(),
        architecture: arch.name.clone(),
        seq_len: w.seq_len,
        tokens: w.tokens_per_group,
        integration_time_ns: ns(arch.aimc.integration_time),
        total_ns: ns(tl.makespan),
        baseline_ns: ns(base.makespan),
        overhead: tl.makespan.0 as f64 / base.makespan.0 as f64,
        tiles: map.tiles(),
        aimc_weights: graph.aimc_weights(),
        lora_params,
        lora_bytes: lora_params * 2,
        peak_tcdm_bytes: peak,
        tcdm_bound_bytes: bound,
        peak_tcdm_pair: peak_pair as u32,
        peak_tcdm_ops,
        pairs_over_tcdm: occ.peak.iter().filter(|&&b| b > capacity).count() as u32,
        tcdm_capacity_bytes: capacity,
        fits_tcdm: peak <= capacity,
        l2_kv_bytes: l2_kv,
        l2_capacity_bytes: arch.l2.size.0,
        utilisation: utilisation(&tl),
        baseline_utilisation: utilisation(&base),
        group_latency: group_latency(&tl),
        tcdm_stall_cycles: tl.tcdm_stall_cycles.iter().sum(),
        events: tl.stats.events + base.stats.events,
        host_seconds: tl.stats.host_seconds + base.stats.host_seconds,
        events_per_host_second: (tl.stats.events + base.stats.events) as f64
            / (tl.stats.host_seconds + base.stats.host_seconds).max(1e-9),
        layers,
        auto: None,
        tokens_per_projection: None,
    };
    Ok((
        report,
        Traced {
            graph,
            map,
            timeline: tl,
        },
    ))
}
