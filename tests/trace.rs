//! Chrome trace export: the file parses, and its slices are the timeline's.

use aimcsim::config::Architecture;
use aimcsim::report::trace::chrome_trace;
use aimcsim::timing::occupancy::occupancy;
use aimcsim::timing::summary::{layer_traced, LayerQuery};
use aimcsim::timing::TimingOptions;

#[test]
fn slices_match_the_timeline() {
    let a = Architecture::default();
    let q = LayerQuery {
        in_features: 128,
        out_features: 128,
        rank: 8,
        tokens: 8,
        seq_len: 64,
    };
    let (_, t) = layer_traced(&a, &q, TimingOptions::default()).unwrap();
    let occ = occupancy(&t.graph, &t.map, &a, &t.timeline);
    let text = chrome_trace(&t.graph, &t.timeline, &occ, "test");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let slices: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let jobs: Vec<usize> = (0..t.timeline.tasks.tasks.len())
        .filter(|&i| t.timeline.tasks.tasks[i].unit.is_some())
        .collect();
    assert_eq!(slices.len(), jobs.len());
    // 64 tokens in groups of 8: 8 groups x (tile, out, post, down, up).
    assert_eq!(slices.len(), 40);
    for s in &slices {
        let i = s["args"]["task"].as_u64().unwrap() as usize;
        let iv = t.timeline.intervals[i];
        let ts = s["ts"].as_f64().unwrap();
        let dur = s["dur"].as_f64().unwrap();
        assert!((ts - iv.start.0 as f64 / 1e6).abs() < 1e-9);
        assert!((dur - (iv.end - iv.start).0 as f64 / 1e6).abs() < 1e-9);
    }
    // The first tile job: 2168.8 ns from time 0 (see tests/layer.rs).
    let first = slices.iter().find(|s| s["cat"] == "tile").unwrap();
    assert_eq!(first["ts"].as_f64().unwrap(), 0.0);
    assert!((first["dur"].as_f64().unwrap() - 2.1688).abs() < 1e-12);
    // One thread name per unit, a TCDM counter track.
    let threads = events.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(threads, 4);
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "TCDM bytes"));
}
