//! `aimcsim run` on whole workloads: determinism, structure of the result.

use aimcsim::config::{self, Architecture, Targets};
use aimcsim::graph::Graph;
use aimcsim::mapping::Mapping;
use aimcsim::timing::summary::run_workload;
use aimcsim::timing::{self, TimingOptions};
use std::path::Path;

fn tiny() -> config::Workload {
    config::load_workload(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/tiny.ron"))
        .unwrap()
}

#[test]
fn runs_are_deterministic() {
    let w = tiny();
    let a = Architecture::default();
    let g = Graph::build(&w);
    let m = Mapping::new(&g, &a, w.tokens_per_group).unwrap();
    let t1 = timing::run(&g, &m, &a, TimingOptions::default());
    let t2 = timing::run(&g, &m, &a, TimingOptions::default());
    assert_eq!(t1.intervals, t2.intervals);
    assert_eq!(t1.makespan, t2.makespan);
}

#[test]
fn tiny_run_reports_lora_overhead_and_tiles() {
    let w = tiny();
    let a = Architecture::default();
    let r = run_workload(&a, &w, TimingOptions::default()).unwrap();
    // 2 layers x 6 projections + the classifier, each on its own tile.
    assert_eq!(r.tiles, 13);
    // 2 x (4 x 64x64 + 64x128 + 128x64) + 64x2 = 2 x 32768 + 128.
    assert_eq!(r.aimc_weights, 65_664);
    // Rank 4: 2 x (4 x 4*128 + 2 x 4*192) + 4*66 = 2 x 3584 + 264.
    assert_eq!(r.lora_params, 7_432);
    assert!(r.total_ns > r.baseline_ns);
    assert_eq!(r.layers.len(), 3);
    let mut none = w.clone();
    none.lora.targets = Targets::None;
    let r0 = run_workload(&a, &none, TimingOptions::default()).unwrap();
    assert_eq!(r0.total_ns, r0.baseline_ns);
    assert_eq!(r0.lora_params, 0);
}

#[test]
fn a_split_layer_uses_several_tiles() {
    // 1024 -> 768 needs 2 x 2 tiles of 512 x 512.
    let mut w = tiny();
    w.input_width = 1024;
    w.layer = vec![config::Op::Linear {
        name: "big".into(),
        from: "input".into(),
        in_features: 1024,
        out_features: 768,
    }];
    w.num_layers = 1;
    w.head.clear();
    let a = Architecture::default();
    let r = run_workload(&a, &w, TimingOptions::default()).unwrap();
    assert_eq!(r.tiles, 4);
    assert!(r.total_ns > r.baseline_ns);
}

/// Per-projection token groups: a chain A (t = 4) -> B (t = 8) over 16
/// tokens. B's group 0 covers tokens 0..8, so its tile waits for A's groups
/// 0 and 1 (tokens 0..4 and 4..8), not for group 2.
#[test]
fn projections_with_their_own_token_groups() {
    use aimcsim::timing::Step;
    let mut w = tiny();
    w.seq_len = 16;
    w.tokens_per_group = 4;
    w.input_width = 64;
    w.layer = vec![
        config::Op::Linear {
            name: "a".into(),
            from: "input".into(),
            in_features: 64,
            out_features: 64,
        },
        config::Op::Linear {
            name: "b".into(),
            from: "a".into(),
            in_features: 64,
            out_features: 64,
        },
    ];
    w.num_layers = 1;
    w.head.clear();
    let a = Architecture::default();
    let g = Graph::build(&w);
    let mut m = Mapping::new(&g, &a, 4).unwrap();
    m.set_projection_tokens(&g, |n| (g.g[n].op_name == "b").then_some(8));
    let tl = timing::run(&g, &m, &a, TimingOptions::default());
    let find = |op: &str, step: Step, group: u32| {
        let i = tl
            .tasks
            .tasks
            .iter()
            .position(|t| g.g[t.node].op_name == op && t.step == step && t.group == group)
            .unwrap();
        (tl.tasks.tasks[i].tokens, tl.intervals[i])
    };
    // B has 2 groups of 8 tokens, A 4 groups of 4.
    assert_eq!(find("b", Step::Tile, 0).0, (0, 8));
    assert_eq!(find("b", Step::Tile, 1).0, (8, 16));
    assert_eq!(find("a", Step::Tile, 3).0, (12, 16));
    let b0 = find("b", Step::Tile, 0).1.start;
    assert!(b0 >= find("a", Step::LoraUp, 1).1.end);
    assert!(b0 < find("a", Step::LoraUp, 2).1.end);
    // The same t everywhere gives the uniform run's timeline.
    let mut same = Mapping::new(&g, &a, 4).unwrap();
    same.set_projection_tokens(&g, |_| Some(4));
    let uniform = timing::run(
        &g,
        &Mapping::new(&g, &a, 4).unwrap(),
        &a,
        TimingOptions::default(),
    );
    assert_eq!(
        timing::run(&g, &same, &a, TimingOptions::default()).intervals,
        uniform.intervals
    );
}
