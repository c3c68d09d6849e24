//! TCDM occupancy over time, from a timeline: an operation's resident data
//! (adapter slices) is live for the whole run; a token group's buffers on a
//! pair are live from the first job of that operation and group on the pair
//! to its last. Gives the counter track of traces and the measured peak.

use super::Timeline;
use crate::config::Architecture;
use crate::graph::{Graph, NodeKind};
use crate::mapping::{footprints, mvm_of, Mapping};
use crate::units::Ps;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// Occupancy of each pair's TCDM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupancy {
    /// The highest occupancy of each pair, bytes.
    pub peak: Vec<u64>,
    /// Each pair's occupancy after every change: (time, bytes).
    pub series: Vec<Vec<(Ps, u64)>>,
}

/// The operation whose footprint a node's jobs use.
fn footprint_node(graph: &Graph, n: NodeIndex) -> NodeIndex {
    match graph.g[n].kind {
        NodeKind::LoraDown { .. } | NodeKind::LoraUp { .. } => mvm_of(graph, n),
        _ => n,
    }
}

pub fn occupancy(graph: &Graph, map: &Mapping, arch: &Architecture, tl: &Timeline) -> Occupancy {
    let pairs = map.pairs as usize;
    let mut resident = vec![0u64; pairs];
    let mut group_bytes: HashMap<(NodeIndex, u32), u64> = HashMap::new();
    for f in footprints(graph, map, arch) {
        resident[f.pair as usize] += f.resident_bytes;
        *group_bytes.entry((f.node, f.pair)).or_default() += f.group_bytes;
    }
    // Lifetime of each (operation, group, pair).
    let mut life: HashMap<(NodeIndex, u32, u32), (Ps, Ps)> = HashMap::new();
    for (i, task) in tl.tasks.tasks.iter().enumerate() {
        // A transfer out of a pair reads its producer's buffer: it extends
        // the producer's lifetime there until the transfer ends.
        let Some((pair, _)) = task.unit else { continue };
        let node = footprint_node(graph, task.node);
        let iv = tl.intervals[i];
        life.entry((node, task.group, pair))
            .and_modify(|(s, e)| {
                *s = (*s).min(iv.start);
                *e = (*e).max(iv.end);
            })
            .or_insert((iv.start, iv.end));
    }
    // +bytes at a start, -bytes at an end; ends first at equal times.
    let mut events: Vec<Vec<(Ps, bool, u64)>> = vec![Vec::new(); pairs];
    for ((node, _, pair), (s, e)) in life {
        let b = group_bytes.get(&(node, pair)).copied().unwrap_or(0);
        if b > 0 {
            events[pair as usize].push((s, true, b));
            events[pair as usize].push((e, false, b));
        }
    }
    let mut peak = resident.clone();
    let mut series = Vec::with_capacity(pairs);
    for (p, ev) in events.iter_mut().enumerate() {
        ev.sort_unstable_by_key(|&(t, start, b)| (t, start, b));
        let mut live = resident[p];
        let mut s = vec![(Ps::ZERO, live)];
        for &(t, start, b) in ev.iter() {
            if start {
                live += b;
            } else {
                live -= b;
            }
            peak[p] = peak[p].max(live);
            match s.last_mut() {
                Some(last) if last.0 == t => last.1 = live,
                _ => s.push((t, live)),
            }
        }
        series.push(s);
    }
    Occupancy { peak, series }
}
