//! `aimcsim run` speed: host seconds of the timing run (with and without
//! LoRA, as the command does) for the bundled workloads, median of several
//! repetitions, with and without TCDM contention modelling.
//!
//! `cargo bench --bench run`

use aimcsim::config::{self, Architecture};
use aimcsim::timing::summary::run_workload;
use aimcsim::timing::TimingOptions;
use std::path::Path;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = Architecture::default();
    for (name, reps) in [("mobilebert", 5), ("bert_base", 3), ("bert_large", 3)] {
        let w = config::load_workload(&root.join(format!("workloads/{name}.ron"))).unwrap();
        for contention in [true, false] {
            let opts = TimingOptions {
                tcdm_contention: contention,
            };
            let mut secs = Vec::new();
            let mut events = 0;
            for _ in 0..reps {
                let t = Instant::now();
                let r = run_workload(&arch, &w, opts).unwrap();
                secs.push(t.elapsed().as_secs_f64());
                events = r.events;
            }
            let m = median(secs);
            println!(
                "{name:<11} contention {:<5}: {:.3} s median of {reps} (wall, whole command), {events} events, {:.2} M events/s",
                contention,
                m,
                events as f64 / m / 1e6
            );
        }
    }
}
