//! Sweep speed: the reference study's two-layer sweep (2 sizes x 3
//! integration times x 5 t) and the full MobileBERT sweep (3 integration
//! times x 5 t x 5 ranks), host seconds on all cores, median of a few runs.
//!
//! `cargo bench --bench sweep`

use aimcsim::config::{self, Architecture};
use aimcsim::report::Format;
use aimcsim::sweep::{self, Output, SweepSpec, SweepTarget, Tokens};
use aimcsim::units::Ps;
use std::path::Path;
use std::time::Instant;

fn time(spec: &SweepSpec, reps: usize) -> (f64, usize) {
    let combos = spec.check().unwrap();
    let out = Output {
        path: None,
        format: Format::Csv,
        resume: false,
        progress: false,
    };
    let mut secs: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            sweep::run(spec, &combos, &out).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(|a, b| a.total_cmp(b));
    (secs[reps / 2], combos.len())
}

fn main() {
    let arch = Architecture::default();
    let its: Vec<Ps> = [128, 256, 512].iter().map(|&n| Ps::from_ns(n)).collect();
    let toks: Vec<Tokens> = [8, 16, 32, 64, 128]
        .iter()
        .map(|&t| Tokens::Fixed(t))
        .collect();
    let mut total = 0.0;
    let mut n = 0;
    for (m, o) in [(128, 128), (512, 128)] {
        let spec = SweepSpec {
            target: SweepTarget::Layer {
                in_features: m,
                out_features: o,
                seq_len: 320,
            },
            arch: arch.clone(),
            integration_times: its.clone(),
            tokens: toks.clone(),
            ranks: vec![],
            targets: vec![],
            sets: vec![],
            tcdm_contention: true,
        };
        let (s, c) = time(&spec, 5);
        total += s;
        n += c;
    }
    println!("reference layer sweep: {n} combinations in {total:.3} s (median of 5 per size)");
    let w = config::load_workload(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/mobilebert.ron"),
    )
    .unwrap();
    for contention in [true, false] {
        let spec = SweepSpec {
            target: SweepTarget::Workload(w.clone()),
            arch: arch.clone(),
            integration_times: its.clone(),
            tokens: toks.clone(),
            ranks: vec![1, 2, 4, 8, 16],
            targets: vec![],
            sets: vec![],
            tcdm_contention: contention,
        };
        let (s, c) = time(&spec, 1);
        println!(
            "MobileBERT sweep, TCDM contention {contention}: {c} combinations in {s:.2} s on {} threads",
            rayon::current_num_threads()
        );
    }
}
