//! Functional MVM throughput: one noisy analog MVM batch (320 tokens x
//! 512 x 512, full 8-bit periphery, PCM noise drifted to 1 day) against a
//! plain FP32 GEMM of the same shape, timed in the same run (median of the
//! repetitions). Run with `cargo bench --bench mvm`.

use aimcsim::functional::{bench_mvm, bench_mvm_with, AnalogParams, ReadNoiseDraw};

fn main() {
    let (tokens, rows, cols) = (320, 512, 512);
    let b = bench_mvm(tokens, rows, cols).expect("bench_mvm");
    println!(
        "mvm {tokens}x{rows}x{cols} (median of {}): analog_ms {:.3}  gemm_ms {:.3}  ratio {:.2}  \
         (bound-management passes {}, drift_to {:.2} ms once per tile and time)",
        b.reps, b.analog_ms, b.gemm_ms, b.ratio, b.bm_passes, b.drift_ms
    );

    // The option of drawing read noise anew for every forward pass costs a
    // read of every device per batch.
    let mut p = AnalogParams::default();
    p.pcm.read_noise_draw = ReadNoiseDraw::PerForward;
    let b = bench_mvm_with(tokens, rows, cols, 15, 0, &p).expect("bench_mvm_with");
    println!(
        "mvm {tokens}x{rows}x{cols}, read noise per forward: analog_ms {:.3}  gemm_ms {:.3}  ratio {:.2}",
        b.analog_ms, b.gemm_ms, b.ratio
    );
}
