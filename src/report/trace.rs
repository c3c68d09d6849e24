//! Chrome trace-event export of a timeline (opens in Perfetto,
//! ui.perfetto.dev, or chrome://tracing): one process per tile + PMCA pair,
//! one thread track per unit (tile, DMA, RedMule, cores), one complete
//! event per job, and a counter track of the pair's TCDM occupancy.

use crate::graph::Graph;
use crate::timing::occupancy::Occupancy;
use crate::timing::{Timeline, Unit};
use serde::Serialize;
use serde_json::{json, Value};

/// Picoseconds to the format's microseconds.
fn us(ps: u64) -> f64 {
    ps as f64 / 1e6
}

#[derive(Serialize)]
struct Trace {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<Value>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
    metadata: Value,
}

/// The trace of a timeline as JSON text.
pub fn chrome_trace(graph: &Graph, tl: &Timeline, occ: &Occupancy, title: &str) -> String {
    let mut ev = Vec::new();
    let pairs = tl.busy.len();
    // Name the pairs after the first operation they run.
    let mut first_op: Vec<Option<&str>> = vec![None; pairs];
    for t in &tl.tasks.tasks {
        if let Some((p, _)) = t.unit {
            first_op[p as usize].get_or_insert(&graph.g[t.node].name);
        }
    }
    for (p, op) in first_op.iter().enumerate() {
        let name = match op {
            Some(op) => format!("pair {p} ({op})"),
            None => format!("pair {p}"),
        };
        ev.push(json!({"ph": "M", "name": "process_name", "pid": p, "args": {"name": name}}));
        ev.push(
            json!({"ph": "M", "name": "process_sort_index", "pid": p, "args": {"sort_index": p}}),
        );
        for u in Unit::ALL {
            let name = match u {
                Unit::Cores => "cores (8, cost model)".to_string(),
                other => other.name().to_string(),
            };
            ev.push(json!({"ph": "M", "name": "thread_name", "pid": p, "tid": u.index(), "args": {"name": name}}));
        }
    }
    for (i, t) in tl.tasks.tasks.iter().enumerate() {
        let Some((p, u)) = t.unit else { continue };
        let iv = tl.intervals[i];
        let node = &graph.g[t.node].name;
        let mut args = json!({"op": node, "group": t.group, "task": i});
        if let crate::timing::Step::Xfer { to } = t.step {
            args["to_pair"] = json!(to);
        }
        ev.push(json!({
            "ph": "X",
            "name": format!("{node} {}", t.step.name()),
            "cat": t.step.name(),
            "pid": p,
            "tid": u.index(),
            "ts": us(iv.start.0),
            "dur": us((iv.end - iv.start).0),
            "args": args,
        }));
    }
    for (p, series) in occ.series.iter().enumerate() {
        for &(t, bytes) in series {
            ev.push(json!({
                "ph": "C", "name": "TCDM bytes", "pid": p, "ts": us(t.0), "args": {"bytes": bytes}
            }));
        }
    }
    let trace = Trace {
        trace_events: ev,
        display_time_unit: "ns",
        metadata: json!({
            "title": title,
            "generator": "aimcsim",
            "note": "Snitch cores are kernel cost models, not instruction-level simulation",
        }),
    };
    serde_json::to_string(&trace).expect("traces serialise")
}
