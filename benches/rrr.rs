//! Reduced-rank regression accumulation: `RrrAccumulator::add` over
//! 20,000 rows in chunks of 2,000 (the shapes of MiniLM's FFN projections,
//! m x k = 1536 x 384 and 384 x 1536), then one rank-8 `solve`, median of
//! the repetitions. Uses rayon's global pool: set `RAYON_NUM_THREADS` to
//! compare thread counts. Run with `cargo bench --bench rrr`.

use aimcsim::functional::rrr::RrrAccumulator;
use std::time::Instant;

/// A 64-bit LCG (Knuth's MMIX constants), uniform in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (rows, chunk, reps, rank) = (20_000, 2_000, 7, 8);
    for (m, k) in [(1536, 384), (384, 1536)] {
        let mut rng = Lcg(1);
        let chunks: Vec<(Vec<f32>, Vec<f32>)> = (0..rows / chunk)
            .map(|_| {
                let x = (0..chunk * m).map(|_| rng.uniform()).collect();
                let e = (0..chunk * k).map(|_| rng.uniform()).collect();
                (x, e)
            })
            .collect();
        let (mut add_s, mut solve_s) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            let mut acc = RrrAccumulator::new(m, k).expect("shape");
            for (x, e) in &chunks {
                acc.add(x, e, chunk).expect("add");
            }
            add_s.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let fit = acc.solve(rank, 1e-3).expect("solve");
            solve_s.push(t.elapsed().as_secs_f64());
            std::hint::black_box(fit);
        }
        println!(
            "rrr m={m} k={k} rows={rows} chunk={chunk} threads={} (median of {reps}): \
             add_ms {:.1}  solve_ms {:.1}  (add {:.1} GFLOP/s)",
            rayon::current_num_threads(),
            median(add_s.clone()) * 1e3,
            median(solve_s) * 1e3,
            // G's lower triangle (m^2 n) and C (2 m k n) flops.
            (m * m + 2 * m * k) as f64 * rows as f64 / median(add_s) / 1e9,
        );
    }
}
