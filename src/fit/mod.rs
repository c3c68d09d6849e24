//! Does an adapter fit on-chip memory? Per projection: the LoRA step's TCDM
//! bytes at the chosen token group size against the TCDM, and the largest t
//! that fits; for the whole model: N task adapters held at once in the
//! shared L2 beside the K and V attention keeps there.

use crate::adapter::{Adapter, Matched};
use crate::config::{Architecture, BlockKind, Op, Workload};
use crate::graph::FP16_BYTES;
use crate::mapping::LoraPlan;
use serde::Serialize;
use std::collections::BTreeMap;

/// One projection (identical layers grouped).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FitRow {
    /// `embedding`, `layer` or `head`.
    pub block: String,
    /// The layers this row stands for, e.g. `0-23`; empty outside layers.
    pub layers: String,
    pub projection: String,
    pub in_features: u32,
    pub out_features: u32,
    pub rank: u32,
    pub tokens: u32,
    /// The LoRA step's live data on the owner PMCA of the widest column
    /// block: X slice, X A, output, A slice, B.
    pub tcdm_bytes: u64,
    /// With the schedule's double buffers.
    pub tcdm_schedule_bytes: u64,
    pub fits_tcdm: bool,
    /// The largest t whose schedule fits the TCDM (0: none does).
    pub largest_fitting_tokens: u32,
}

/// The answer of `aimcsim fit`.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub workload: String,
    pub tokens: u32,
    pub tcdm_capacity_bytes: u64,
    pub projections: Vec<FitRow>,
    /// Parameters of one task's adapter.
    pub adapter_params: u64,
    /// FP16 bytes of one task's adapter.
    pub adapter_bytes: u64,
    pub tasks: u32,
    /// All task adapters held at once.
    pub adapters_bytes: u64,
    /// K and V of one layer's sequence, which attention keeps in the L2.
    pub l2_kv_bytes: u64,
    pub l2_capacity_bytes: u64,
    pub fits_l2: bool,
    pub fits_tcdm: bool,
    pub fits: bool,
    pub verdict: String,
}

/// The largest t in 1..=max whose LoRA schedule fits `capacity` bytes.
pub fn largest_fitting_tokens(rows: u64, rank: u64, cols: u64, max: u32, capacity: u64) -> u32 {
    // The schedule grows with t: binary search.
    let fits = |t: u32| {
        LoraPlan::new(t as u64, rows, rank, cols, 64)
            .schedule_bytes()
            .0
            <= capacity
    };
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1u32, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

fn ranges(layers: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        let mut j = i;
        while j + 1 < layers.len() && layers[j + 1] == layers[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            layers[i].to_string()
        } else {
            format!("{}-{}", layers[i], layers[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// The rank of each adapted projection instance: from the adapters (the
/// largest rank any task's adapter gives it) or from the workload's LoRA.
fn ranks(
    w: &Workload,
    adapters: &[(Adapter, Vec<Matched>)],
) -> BTreeMap<(u8, Option<u32>, String), u32> {
    let mut out = BTreeMap::new();
    let key = |b: BlockKind| match b {
        BlockKind::Embedding => 0u8,
        BlockKind::Layer => 1,
        BlockKind::Head => 2,
    };
    if adapters.is_empty() {
        for (kind, ops) in w.blocks() {
            for op in ops {
                if let Op::Linear { name, .. } = op {
                    if w.has_lora(kind, name) {
                        let layers: Vec<Option<u32>> = if kind == BlockKind::Layer {
                            (0..w.num_layers).map(Some).collect()
                        } else {
                            vec![None]
                        };
                        for l in layers {
                            out.insert((key(kind), l, name.clone()), w.lora.rank);
                        }
                    }
                }
            }
        }
    } else {
        for (_, matched) in adapters {
            for m in matched {
                let e = out
                    .entry((key(m.block), m.layer, m.op.clone()))
                    .or_insert(0);
                *e = (*e).max(m.module.rank);
            }
        }
    }
    out
}

/// Checks the adapters (or the workload's LoRA) against on-chip memory at
/// `tokens` per group, or the t `per_projection` gives a projection (by
/// name; `--tokens auto`).
pub fn fit(
    arch: &Architecture,
    w: &Workload,
    adapters: &[(Adapter, Vec<Matched>)],
    tokens: u32,
    tasks: u32,
    per_projection: &std::collections::HashMap<String, u32>,
) -> FitReport {
    let cap = arch.pmca.tcdm.size.0;
    let ranks = ranks(w, adapters);
    let dims: BTreeMap<&str, (u32, u32)> = w
        .blocks()
        .iter()
        .flat_map(|(_, ops)| ops.iter())
        .filter_map(|op| match op {
            Op::Linear {
                name,
                in_features,
                out_features,
                ..
            } => Some((name.as_str(), (*in_features, *out_features))),
            _ => None,
        })
        .collect();
    // Group identical layers: (block, projection, rank) -> layers.
    let mut groups: BTreeMap<(u8, String, u32), Vec<u32>> = BTreeMap::new();
    for ((b, l, op), r) in &ranks {
        groups
            .entry((*b, op.clone(), *r))
            .or_default()
            .extend(l.iter().copied());
    }
    let mut projections = Vec::new();
    let mut params_one = 0u64;
    for ((b, op, r), layers) in &groups {
        let (m, n) = dims[op.as_str()];
        let count = layers.len().max(1) as u64;
        params_one += count * *r as u64 * (m as u64 + n as u64);
        let rows = m.min(arch.aimc.rows) as u64;
        let cols = n.min(arch.aimc.cols) as u64;
        let tokens = per_projection.get(op).copied().unwrap_or(tokens);
        let plan = LoraPlan::new(tokens as u64, rows, *r as u64, cols, 64);
        let sched = plan.schedule_bytes().0;
        projections.push(FitRow {
            block: ["embedding", "layer", "head"][*b as usize].to_string(),
            layers: ranges(layers),
            projection: op.clone(),
            in_features: m,
            out_features: n,
            rank: *r,
            tokens,
            tcdm_bytes: plan.tcdm_bytes().0,
            tcdm_schedule_bytes: sched,
            fits_tcdm: sched <= cap,
            largest_fitting_tokens: largest_fitting_tokens(rows, *r as u64, cols, w.seq_len, cap),
        });
    }
    // Order as the description lists the projections.
    let order: Vec<&str> = w
        .blocks()
        .iter()
        .flat_map(|(_, ops)| ops.iter().map(|o| o.name()))
        .collect();
    projections.sort_by_key(|p| {
        (
            ["embedding", "layer", "head"]
                .iter()
                .position(|b| *b == p.block),
            order.iter().position(|o| *o == p.projection),
        )
    });
    let adapter_params = if adapters.is_empty() {
        params_one
    } else {
        // The largest of the given adapters stands for one task.
        adapters.iter().map(|(a, _)| a.params()).max().unwrap_or(0)
    };
    let tasks = if adapters.is_empty() {
        tasks
    } else {
        adapters.len() as u32
    };
    let adapter_bytes = adapter_params * FP16_BYTES;
    let adapters_bytes = adapter_bytes * tasks as u64;
    let kv = w
        .layer
        .iter()
        .filter_map(|op| match op {
            Op::Attention { .. } => {
                let k = op.inputs()[1].1;
                dims.get(k)
                    .map(|&(_, kw)| 2 * w.seq_len as u64 * kw as u64 * FP16_BYTES)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let l2 = arch.l2.size.0;
    let fits_l2 = adapters_bytes + kv <= l2;
    let fits_tcdm = projections.iter().all(|p| p.fits_tcdm);
    let fits = fits_l2 && fits_tcdm;
    let over: Vec<String> = projections
        .iter()
        .filter(|p| !p.fits_tcdm)
        .map(|p| {
            format!(
                "{} ({} B at t = {}; largest t that fits: {})",
                p.projection, p.tcdm_schedule_bytes, p.tokens, p.largest_fitting_tokens
            )
        })
        .collect();
    let verdict = if fits {
        format!(
            "FITS: every adapted projection's LoRA step fits the {cap}-byte TCDM at its t, and {tasks} adapter(s) of {adapter_bytes} bytes fit the L2 beside K/V ({} of {l2} bytes)",
            adapters_bytes + kv
        )
    } else {
        let mut why = Vec::new();
        if !fits_tcdm {
            why.push(format!("the TCDM is too small for {}", over.join(", ")));
        }
        if !fits_l2 {
            why.push(format!(
                "{tasks} adapter(s) of {adapter_bytes} bytes and K/V of {kv} bytes need {} bytes of the {l2}-byte L2",
                adapters_bytes + kv
            ));
        }
        format!("DOES NOT FIT: {}", why.join("; "))
    };
    FitReport {
        workload: w.name.clone(),
        tokens,
        tcdm_capacity_bytes: cap,
        projections,
        adapter_params,
        adapter_bytes,
        tasks,
        adapters_bytes,
        l2_kv_bytes: kv,
        l2_capacity_bytes: l2,
        fits_l2,
        fits_tcdm,
        fits,
        verdict,
    }
}
