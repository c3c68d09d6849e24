//! The numerical kernels of the task study: reduced-rank ridge regression
//! (`functional::rrr`) and the logistic-regression head (`task::logreg`).
//! Expected values come from hand algebra or theory, stated beside each.

use aimcsim::functional::rrr::{RrrAccumulator, RrrError};
use aimcsim::task::logreg::{accuracy, LogReg, LogRegError};

/// A 64-bit LCG (Knuth's MMIX constants): reproducible test data without
/// depending on a crate's stream.
struct Lcg(u64);

impl Lcg {
    /// The top 31 bits of the state.
    fn next_u31(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        // 24 random bits, exact in f32, scaled by a power of two.
        (self.next_u31() >> 7) as f32 / (1u32 << 23) as f32 - 1.0
    }
    /// Small integer in -3..=3 (exact in f32, and so are its products).
    fn small_int(&mut self) -> f32 {
        (self.next_u31() % 7) as f32 - 3.0
    }
}

/// `a (n x m) * b (m x k)`, row-major, in f64.
fn matmul(a: &[f64], b: &[f64], n: usize, m: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * k];
    for i in 0..n {
        for l in 0..m {
            for j in 0..k {
                out[i * k + j] += a[i * m + l] * b[l * k + j];
            }
        }
    }
    out
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `A B` of a fit, m x k row-major in f64.
fn product(a: &[f32], b: &[f32], m: usize, r: usize, k: usize) -> Vec<f64> {
    matmul(&to_f64(a), &to_f64(b), m, r, k)
}

fn frob(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn rel_diff(got: &[f64], want: &[f64]) -> f64 {
    let diff: Vec<f64> = got.iter().zip(want).map(|(g, w)| g - w).collect();
    frob(&diff) / frob(want)
}

/// `||E - X W||^2` computed directly, row by row.
fn direct_residual(x: &[f32], e: &[f32], w: &[f64], n: usize, m: usize, k: usize) -> f64 {
    let xw = matmul(&to_f64(x), w, n, m, k);
    xw.iter()
        .zip(e)
        .map(|(p, &t)| (f64::from(t) - p).powi(2))
        .sum()
}

/// Rank-2 truth `W* = a1 b1^T + a2 b2^T` (6 x 5) with `a1 . a2 = 0` and
/// `b1 . b2 = 0`, so its singular values are `|a1||b1| = sqrt(7 * 7) = 7`
/// and `|a2||b2| = sqrt(6 * 9) = sqrt(54)`.
fn rank_two_truth() -> Vec<f64> {
    let a1 = [1.0, 2.0, 0.0, -1.0, 1.0, 0.0];
    let b1 = [1.0, 0.0, -1.0, 2.0, 1.0];
    let a2 = [0.0, 1.0, 1.0, 2.0, 0.0, 0.0];
    let b2 = [2.0, 1.0, 0.0, 0.0, -2.0];
    let mut w = vec![0.0; 30];
    for i in 0..6 {
        for j in 0..5 {
            w[i * 5 + j] = a1[i] * b1[j] + a2[i] * b2[j];
        }
    }
    w
}

// ---------------------------------------------------------------------------
// Reduced-rank regression
// ---------------------------------------------------------------------------

#[test]
fn rrr_recovers_an_exact_rank_two_map() {
    let (n, m, k) = (40, 6, 5);
    let mut rng = Lcg(7);
    let x: Vec<f32> = (0..n * m).map(|_| rng.small_int()).collect();
    let w_true = rank_two_truth();
    // Integer X and W*: E = X W* is exact in f32.
    let e: Vec<f32> = matmul(&to_f64(&x), &w_true, n, m, k)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut acc = RrrAccumulator::new(m, k).unwrap();
    acc.add(&x, &e, n).unwrap();
    let fit = acc.solve(2, 1e-12).unwrap();

    assert_eq!((fit.m, fit.k, fit.rank, fit.rows), (m, k, 2, n));
    assert_eq!((fit.a.len(), fit.b.len()), (m * 2, 2 * k));
    let w = product(&fit.a, &fit.b, m, 2, k);
    assert!(rel_diff(&w, &w_true) < 1e-4, "A B differs from W*: {w:?}");
    // Singular values of W* by hand (see rank_two_truth).
    assert!((fit.singular_values[0] - 54f64.sqrt()).abs() < 1e-6 * 7.0);
    assert!((fit.singular_values[1] - 7.0).abs() < 1e-6 * 7.0);
    // E lies in a rank-2 subspace: nothing left to fit or explain.
    assert!(
        fit.residual <= 1e-10 * fit.energy,
        "residual {}",
        fit.residual
    );
    assert!(fit.captured() > 1.0 - 1e-10);
    assert_eq!(fit.explained.len(), 5);
    assert!(fit.explained[2..]
        .iter()
        .all(|&mu| mu <= 1e-10 * fit.explained[0]));
    // Balanced split: column j of A and row j of B both have norm sqrt(s_j).
    for j in 0..2 {
        let col_a: f64 = (0..m).map(|i| f64::from(fit.a[i * 2 + j]).powi(2)).sum();
        let row_b: f64 = (0..k).map(|i| f64::from(fit.b[j * k + i]).powi(2)).sum();
        let s = fit.singular_values[j];
        assert!((col_a - s).abs() < 1e-5 * s, "|A_j|^2 = {col_a}, s = {s}");
        assert!((row_b - s).abs() < 1e-5 * s, "|B_j|^2 = {row_b}, s = {s}");
    }
}

#[test]
fn rrr_recovers_a_wide_map_too() {
    // k > m takes the other branch (eigendecomposition of the m x m Gram):
    // W* = transpose of the 6 x 5 truth, a 5 x 6 rank-2 map, X 30 x 5.
    let (n, m, k) = (30, 5, 6);
    let t = rank_two_truth();
    let w_true: Vec<f64> = (0..m * k).map(|idx| t[(idx % k) * 5 + idx / k]).collect();
    let mut rng = Lcg(11);
    let x: Vec<f32> = (0..n * m).map(|_| rng.small_int()).collect();
    let e: Vec<f32> = matmul(&to_f64(&x), &w_true, n, m, k)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut acc = RrrAccumulator::new(m, k).unwrap();
    acc.add(&x, &e, n).unwrap();
    let fit = acc.solve(2, 1e-12).unwrap();
    let w = product(&fit.a, &fit.b, m, 2, k);
    assert!(rel_diff(&w, &w_true) < 1e-4);
    assert!((fit.singular_values[0] - 54f64.sqrt()).abs() < 1e-6 * 7.0);
    assert!((fit.singular_values[1] - 7.0).abs() < 1e-6 * 7.0);
    assert_eq!(fit.explained.len(), 5);
    assert!(fit.residual <= 1e-10 * fit.energy);
}

/// X = H4 / 2 (a Hadamard matrix scaled to be orthogonal; +-0.5 is exact),
/// so X^T X = I and, with no ridge, the fit is Eckart-Young on W* itself.
fn orthogonal_x() -> Vec<f32> {
    let h = [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0, -1.0],
        [1.0, 1.0, -1.0, -1.0],
        [1.0, -1.0, -1.0, 1.0],
    ];
    h.iter().flatten().map(|v: &f32| v * 0.5).collect()
}

#[test]
fn rrr_rank_one_keeps_the_top_singular_component() {
    let (n, m, k) = (4, 4, 3);
    let x = orthogonal_x();
    // W* = diag(5, 2, 0) (4 x 3): the rank-1 optimum is 5 e1 e1^T, split as
    // A = sqrt(5) e1, B = sqrt(5) e1^T; ||E||^2 = 25 + 4 and the residual
    // is the dropped energy 4. Spectrum of C^T C = W*^T W*: 25, 4, 0.
    let mut w_true = vec![0.0; m * k];
    w_true[0] = 5.0;
    w_true[k + 1] = 2.0;
    let e: Vec<f32> = matmul(&to_f64(&x), &w_true, n, m, k)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut acc = RrrAccumulator::new(m, k).unwrap();
    acc.add(&x, &e, n).unwrap();
    let fit = acc.solve(1, 0.0).unwrap();
    let r5 = 5f64.sqrt();
    let want_a = [r5, 0.0, 0.0, 0.0];
    let want_b = [r5, 0.0, 0.0];
    for (got, want) in fit.a.iter().zip(&want_a) {
        assert!((f64::from(*got) - want).abs() < 1e-6, "A = {:?}", fit.a);
    }
    for (got, want) in fit.b.iter().zip(&want_b) {
        assert!((f64::from(*got) - want).abs() < 1e-6, "B = {:?}", fit.b);
    }
    assert!((fit.singular_values[0] - 5.0).abs() < 1e-12);
    assert!((fit.energy - 29.0).abs() < 1e-12);
    assert!((fit.residual - 4.0).abs() < 1e-9);
    for (got, want) in fit.explained.iter().zip([25.0, 4.0, 0.0]) {
        assert!((got - want).abs() < 1e-9, "spectrum {:?}", fit.explained);
    }
    assert!((fit.objective() - 4.0).abs() < 1e-9);
}

#[test]
fn rrr_rank_one_of_a_rotated_truth() {
    // W* = 5 u1 v1^T + 2 u2 v2^T with orthonormal u1 = (1,1,1,1)/2,
    // u2 = (1,-1,1,-1)/2, v1 = (3,4,0)/5, v2 = (-4,3,0)/5. The rank-1
    // optimum 5 u1 v1^T has every row equal to 5 * 1/2 * (3/5, 4/5, 0)
    // = (1.5, 2, 0).
    let (n, m, k) = (4, 4, 3);
    let x = orthogonal_x();
    let u1 = [0.5, 0.5, 0.5, 0.5];
    let u2 = [0.5, -0.5, 0.5, -0.5];
    let v1 = [0.6, 0.8, 0.0];
    let v2 = [-0.8, 0.6, 0.0];
    let mut w_true = vec![0.0; m * k];
    for i in 0..m {
        for j in 0..k {
            w_true[i * k + j] = 5.0 * u1[i] * v1[j] + 2.0 * u2[i] * v2[j];
        }
    }
    let e: Vec<f32> = matmul(&to_f64(&x), &w_true, n, m, k)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut acc = RrrAccumulator::new(m, k).unwrap();
    acc.add(&x, &e, n).unwrap();
    let fit = acc.solve(1, 0.0).unwrap();
    let w = product(&fit.a, &fit.b, m, 1, k);
    let want: Vec<f64> = (0..m).flat_map(|_| [1.5, 2.0, 0.0]).collect();
    assert!(rel_diff(&w, &want) < 1e-5, "A B = {w:?}");
    assert!((fit.singular_values[0] - 5.0).abs() < 1e-5);
    // The dropped component's energy, 2^2, is what remains.
    assert!((fit.residual - 4.0).abs() < 1e-4);
}

#[test]
fn rrr_chunked_accumulation_is_bit_identical_to_one_shot() {
    // Rows are folded into G and C on a fixed grid of global row indices,
    // so the f64 sums see the same operations in the same order whatever
    // the chunking. 700 rows cross two fold boundaries; the chunks (one of
    // them empty) straddle them at odd places.
    let (n, m, k) = (700, 7, 5);
    let mut rng = Lcg(3);
    let x: Vec<f32> = (0..n * m).map(|_| rng.uniform()).collect();
    let e: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let mut one = RrrAccumulator::new(m, k).unwrap();
    one.add(&x, &e, n).unwrap();
    let mut chunked = RrrAccumulator::new(m, k).unwrap();
    let mut start = 0;
    for rows in [1, 0, 255, 3, 300, 141] {
        let end = start + rows;
        chunked
            .add(&x[start * m..end * m], &e[start * k..end * k], rows)
            .unwrap();
        start = end;
    }
    assert_eq!(start, n);
    assert_eq!(chunked.rows(), n);
    let a = one.solve(3, 1e-3).unwrap();
    let b = chunked.solve(3, 1e-3).unwrap();
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits32(&a.a), bits32(&b.a));
    assert_eq!(bits32(&a.b), bits32(&b.b));
    assert_eq!(bits64(&a.explained), bits64(&b.explained));
    assert_eq!(bits64(&a.singular_values), bits64(&b.singular_values));
    assert_eq!(a.residual.to_bits(), b.residual.to_bits());
    assert_eq!(a.energy.to_bits(), b.energy.to_bits());
    assert_eq!(a.lambda.to_bits(), b.lambda.to_bits());
}

#[test]
fn rrr_ridge_shrinks_by_one_plus_lambda() {
    // X = s I (n = m = 4), E = X W*, W* = diag(3, 2, 1) (4 x 3). G = s^2 I,
    // so lambda = ridge * s^2 and W_ols = (s^2 + lambda)^-1 s^2 W*
    // = W* / (1 + ridge) whatever the scale s: the ridge is relative.
    let (n, m, k) = (4, 4, 3);
    let ridge = 0.5;
    for s in [1.0f32, 2.0] {
        let mut x = vec![0.0f32; n * m];
        for i in 0..n {
            x[i * m + i] = s;
        }
        let mut w_true = vec![0.0; m * k];
        for (i, v) in [3.0, 2.0, 1.0].iter().enumerate() {
            w_true[i * k + i] = *v;
        }
        let e: Vec<f32> = matmul(&to_f64(&x), &w_true, n, m, k)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut acc = RrrAccumulator::new(m, k).unwrap();
        acc.add(&x, &e, n).unwrap();
        let s2 = f64::from(s * s);

        let full = acc.solve(3, ridge).unwrap();
        assert!((full.lambda - ridge * s2).abs() < 1e-12);
        let w = product(&full.a, &full.b, m, 3, k);
        let want: Vec<f64> = w_true.iter().map(|v| v / (1.0 + ridge)).collect();
        assert!(rel_diff(&w, &want) < 1e-6, "s = {s}: {w:?}");
        // Eigenvalues of C^T (G + lambda I)^-1 C = s^2 sigma^2 / (1 + ridge).
        for (got, sigma) in full.explained.iter().zip([3.0, 2.0, 1.0]) {
            let want = s2 * sigma * sigma / (1.0 + ridge);
            assert!((got - want).abs() < 1e-9 * want);
        }
        // Penalised objective, by hand: per component s^2 sigma^2 ridge /
        // (1 + ridge), total 14 s^2 / 3; the data term alone is
        // s^2 sum (sigma - sigma / 1.5)^2 = 14 s^2 / 9.
        assert!((full.objective() - 14.0 * s2 / 3.0).abs() < 1e-9 * s2);
        assert!((full.residual - 14.0 * s2 / 9.0).abs() < 1e-5 * s2);

        // Rank 1 keeps the shrunk top component only.
        let one = acc.solve(1, ridge).unwrap();
        let w = product(&one.a, &one.b, m, 1, k);
        let mut want = vec![0.0; m * k];
        want[0] = 2.0;
        assert!(rel_diff(&w, &want) < 1e-6, "s = {s}: {w:?}");
    }
}

/// Rows per block in `RrrAccumulator` (its `BLOCK_ROWS`): each block's
/// `X_b^T X_b` and `X_b^T E_b` are summed in f32, the blocks in f64.
const RRR_BLOCK: usize = 256;

/// Worst-case change of `||E - X W||^2` as the accumulator evaluates it,
/// `||E||^2 - 2 tr(W^T C) + tr(W^T G W)`, caused by the f32 block sums.
/// A block's entries are inner products of length `b <= 256`, summed in
/// f32 after an exact power-of-two scaling, so (Higham, Accuracy and
/// Stability of Numerical Algorithms, Thm 3.1)
/// `|dG_il| <= g sum_r |x_ri| |x_rl|` and `|dC_ij| <= g sum_r |x_ri| |e_rj|`
/// with `g = b u / (1 - b u)`, `u = 2^-24`; the f64 sums across blocks add
/// only ~1e-16 relative. Hence `|2 tr(W^T dC)| + |tr(W^T dG W)| <=
/// g sum_r sum_j (2 t_rj |e_rj| + t_rj^2)` with `t_rj = sum_i |x_ri| |W_ij|`.
fn f32_block_bound(x: &[f32], e: &[f32], w: &[f64], n: usize, m: usize, k: usize) -> f64 {
    let b = n.min(RRR_BLOCK) as f64;
    let u = 2f64.powi(-24);
    let g = b * u / (1.0 - b * u);
    let mut sum = 0.0;
    for r in 0..n {
        for j in 0..k {
            let t: f64 = (0..m)
                .map(|i| f64::from(x[r * m + i]).abs() * w[i * k + j].abs())
                .sum();
            sum += 2.0 * t * f64::from(e[r * k + j]).abs() + t * t;
        }
    }
    g * sum
}

#[test]
fn rrr_objective_and_residual_match_direct_evaluation() {
    // Random data with a real ridge, both branches (k <= m and k > m), one
    // partial block and several blocks: the residual the accumulator
    // reports equals ||E - X A B||^2 computed row by row in f64, and
    // residual + lambda ||A B||^2 equals the theoretical optimum
    // ||E||^2 - sum of the top-r eigenvalues (module docs), each up to
    // f64 noise (1e-9 ||E||^2) plus the proven bound of the f32 block
    // sums (f32_block_bound; in practice the error is far below it).
    for (n, m, k, r) in [(60, 6, 4, 2), (60, 4, 7, 3), (700, 24, 10, 3)] {
        let mut rng = Lcg(101 + m as u64);
        let x: Vec<f32> = (0..n * m).map(|_| rng.uniform()).collect();
        let e: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
        let mut acc = RrrAccumulator::new(m, k).unwrap();
        acc.add(&x, &e, n).unwrap();
        let fit = acc.solve(r, 0.2).unwrap();
        let w = product(&fit.a, &fit.b, m, r, k);
        let direct = direct_residual(&x, &e, &w, n, m, k);
        let bound = f32_block_bound(&x, &e, &w, n, m, k);
        // The allowance stays a real constraint (the observed errors are
        // 3e-10 to 4e-9 of the energy).
        assert!(bound < 1e-4 * fit.energy, "bound {bound}");
        assert!(
            (fit.residual - direct).abs() < bound + 1e-9 * fit.energy,
            "residual {} vs direct {direct}, bound {bound}",
            fit.residual
        );
        let energy: f64 = e.iter().map(|&v| f64::from(v).powi(2)).sum();
        assert!((fit.energy - energy).abs() < 1e-12 * energy);
        let penalised = direct + fit.lambda * frob(&w).powi(2);
        // The theory is exact for the accumulated G and C, so the gap is
        // the f32 block error of the data term (the ridge term uses the
        // same lambda) plus a second-order one: f32 factors perturb W by
        // ~1e-7 relative and the objective is stationary there.
        assert!(
            (penalised - fit.objective()).abs() < bound + 1e-9 * energy,
            "direct {penalised} vs theory {}, bound {bound}",
            fit.objective()
        );
        // The accumulator's residual of other factors (here A B rounded to
        // FP16) matches the direct sum as well.
        let a16: Vec<f32> = fit
            .a
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        let b16: Vec<f32> = fit
            .b
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        let w16 = product(&a16, &b16, m, r, k);
        let got = acc.residual(&a16, &b16, r).unwrap();
        let want = direct_residual(&x, &e, &w16, n, m, k);
        let bound16 = f32_block_bound(&x, &e, &w16, n, m, k);
        assert!((got - want).abs() < bound16 + 1e-9 * energy);
    }
}

/// The bits of everything a fit reports.
fn fit_bits(fit: &aimcsim::functional::rrr::LowRank) -> Vec<u64> {
    let mut bits: Vec<u64> = fit.a.iter().map(|v| u64::from(v.to_bits())).collect();
    bits.extend(fit.b.iter().map(|v| u64::from(v.to_bits())));
    bits.extend(fit.singular_values.iter().map(|v| v.to_bits()));
    bits.extend(fit.explained.iter().map(|v| v.to_bits()));
    bits.extend([fit.lambda, fit.energy, fit.residual].map(f64::to_bits));
    bits
}

#[test]
fn rrr_is_bit_identical_at_one_and_two_threads() {
    // Blocks are folded tile by tile in parallel; every tile's arithmetic
    // is fixed, so the thread count cannot change a bit. m and k span
    // several tiles (and a narrow edge tile), 700 rows two full blocks and
    // a pending partial one; the two-thread run is also chunked.
    let (n, m, k) = (700, 400, 230);
    let mut rng = Lcg(17);
    let x: Vec<f32> = (0..n * m).map(|_| rng.uniform()).collect();
    let e: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let run = |threads: usize, chunks: &[usize]| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut acc = RrrAccumulator::new(m, k).unwrap();
            let mut start = 0;
            for &rows in chunks {
                let end = start + rows;
                acc.add(&x[start * m..end * m], &e[start * k..end * k], rows)
                    .unwrap();
                start = end;
            }
            assert_eq!(start, n);
            let fit = acc.solve(4, 1e-3).unwrap();
            let res = acc.residual(&fit.a, &fit.b, 4).unwrap();
            (fit_bits(&fit), res.to_bits())
        })
    };
    let one = run(1, &[n]);
    let two = run(2, &[100, 300, 1, 299]);
    assert!(one.0 == two.0, "fits differ between 1 and 2 threads");
    assert_eq!(one.1, two.1);
}

#[test]
fn rrr_handles_inputs_whose_squares_leave_the_f32_range() {
    // Each block is scaled by powers of two before its f32 sums, so X and
    // E at any finite scale give the unit-scale fit, rescaled: with
    // X -> s X and E -> t E (powers of two), G -> s^2 G, C -> s t C,
    // lambda -> s^2 lambda, W -> (t / s) W, the spectrum and ||E||^2 ->
    // t^2 times. Here |s x|^2 reaches 2^128, which overflows f32, or stays
    // below 2^-140, subnormal in f32, so unscaled f32 sums would fail. The
    // block scaling gives the f32 sums the same bits at every scale, and
    // the f64 solve commutes with power-of-two scaling up to rounding.
    let (n, m, k, r) = (300, 6, 5, 2);
    let mut rng = Lcg(23);
    let x: Vec<f32> = (0..n * m).map(|_| rng.uniform()).collect();
    let e: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let fit_of = |x: &[f32], e: &[f32]| {
        let mut acc = RrrAccumulator::new(m, k).unwrap();
        acc.add(x, e, n).unwrap();
        acc.solve(r, 0.1).unwrap()
    };
    let base = fit_of(&x, &e);
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-12 * want.abs();
    for (ps, pt) in [(64, -40), (-70, 30)] {
        let (s, t) = (2f64.powi(ps), 2f64.powi(pt));
        let xs: Vec<f32> = x.iter().map(|&v| (f64::from(v) * s) as f32).collect();
        let es: Vec<f32> = e.iter().map(|&v| (f64::from(v) * t) as f32).collect();
        let fit = fit_of(&xs, &es);
        assert!(close(fit.lambda, base.lambda * s * s), "s = 2^{ps}");
        assert!(close(fit.energy, base.energy * t * t));
        assert!(close(fit.residual, base.residual * t * t));
        for (got, want) in fit.explained.iter().zip(&base.explained) {
            assert!(close(*got, want * t * t), "s = 2^{ps}: {got} vs {want}");
        }
        for (got, want) in fit.singular_values.iter().zip(&base.singular_values) {
            assert!(close(*got, want * t / s));
        }
        // A and B each carry sqrt(t / s), a power of two: the f32 factors
        // are the unit-scale ones, rescaled, up to an f32 rounding (1e-6 of
        // the largest entry).
        let root = (t / s).sqrt();
        let base_ab: Vec<f64> = base
            .a
            .iter()
            .chain(&base.b)
            .map(|&v| f64::from(v))
            .collect();
        let top = base_ab.iter().fold(0.0f64, |acc, v| acc.max(v.abs())) * root;
        for (got, want) in fit.a.iter().chain(&fit.b).zip(&base_ab) {
            assert!((f64::from(*got) - want * root).abs() <= 1e-6 * top);
        }
    }
}

#[test]
fn rrr_rejects_bad_input() {
    assert_eq!(
        RrrAccumulator::new(0, 3).unwrap_err(),
        RrrError::EmptyShape { m: 0, k: 3 }
    );
    let (m, k) = (4, 3);
    let mut acc = RrrAccumulator::new(m, k).unwrap();
    assert_eq!(acc.solve(1, 0.1).unwrap_err(), RrrError::NoRows);

    let x = vec![0.5f32; 2 * m];
    let e = vec![0.25f32; 2 * k];
    assert!(matches!(
        acc.add(&x[..7], &e, 2),
        Err(RrrError::Length {
            what: "x",
            got: 7,
            rows: 2,
            width: 4
        })
    ));
    assert!(matches!(
        acc.add(&x, &e[..5], 2),
        Err(RrrError::Length {
            what: "e",
            got: 5,
            rows: 2,
            width: 3
        })
    ));
    let mut bad = x.clone();
    bad[m + 2] = f32::NAN;
    assert_eq!(
        acc.add(&bad, &e, 2).unwrap_err(),
        RrrError::NonFinite {
            what: "x",
            row: 1,
            col: 2
        }
    );
    let mut bad_e = e.clone();
    bad_e[1] = f32::INFINITY;
    assert_eq!(
        acc.add(&x, &bad_e, 2).unwrap_err(),
        RrrError::NonFinite {
            what: "e",
            row: 0,
            col: 1
        }
    );
    // Failed adds leave the accumulator empty.
    assert_eq!(acc.rows(), 0);
    assert_eq!(acc.energy(), 0.0);

    // Rows (1, 0, 0, 0): X^T X = diag(2, 0, 0, 0) has no Cholesky factor
    // without a ridge (pivot 1 is exactly 0); lambda = 0.1 * 2 / 4 fixes it.
    let x = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    acc.add(&x, &e, 2).unwrap();
    assert_eq!(
        acc.solve(0, 0.1).unwrap_err(),
        RrrError::Rank { rank: 0, max: 3 }
    );
    assert_eq!(
        acc.solve(4, 0.1).unwrap_err(),
        RrrError::Rank { rank: 4, max: 3 }
    );
    assert!(matches!(acc.solve(1, -1.0), Err(RrrError::Ridge(_))));
    assert!(matches!(acc.solve(1, f64::NAN), Err(RrrError::Ridge(_))));
    assert_eq!(
        acc.solve(1, 0.0).unwrap_err(),
        RrrError::NotPositiveDefinite { pivot: 1 }
    );
    assert!(acc.solve(1, 0.1).is_ok());
    assert!(matches!(
        acc.residual(&[0.0; 3], &[0.0; 3], 1),
        Err(RrrError::Length { what: "a", .. })
    ));
}

// ---------------------------------------------------------------------------
// Logistic regression
// ---------------------------------------------------------------------------

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn logreg_two_point_optimum_by_hand() {
    // x = +1 (label 1), x = -1 (label 0). By symmetry b = 0 and
    // J(w) = log(1 + e^-w) + l2 w^2 / 2, so J'(w) = 0 reads
    // l2 w = sigmoid(-w). With l2 = 1 / (4 ln 3), w = ln 3 solves it:
    // sigmoid(-ln 3) = 1 / (1 + 3) = 1/4 = l2 ln 3.
    let l2 = 1.0 / (4.0 * 3f64.ln());
    let head = LogReg::fit(&[1.0, -1.0], &[1, 0], 1, l2).unwrap();
    assert!(
        (head.weights()[0] - 3f64.ln()).abs() < 1e-9,
        "w = {}",
        head.weights()[0]
    );
    assert!(head.bias().abs() < 1e-9, "b = {}", head.bias());
    assert!(head.grad_norm() < 1e-10);
    assert!(head.iterations() >= 1);
    // p(y = 1 | x = 1) = sigmoid(ln 3) = 3/4.
    let p = head.predict_proba(&[1.0, -1.0]).unwrap();
    assert!((p[0] - 0.75).abs() < 1e-9 && (p[1] - 0.25).abs() < 1e-9);
    assert_eq!(head.predict(&[2.0, -0.5, 0.25]), vec![1, 0, 1]);
}

#[test]
fn logreg_bias_is_the_log_odds_when_features_are_silent() {
    // All features 0: the gradient in w is l2 w, so w = 0, and the bias
    // solves mean(sigmoid(b)) = mean(y) = 3/4, b = ln 3.
    let head = LogReg::fit(&[0.0; 4], &[1, 1, 0, 1], 1, 1.0).unwrap();
    assert!(head.weights()[0].abs() < 1e-12);
    assert!((head.bias() - 3f64.ln()).abs() < 1e-9);
}

#[test]
fn logreg_gradient_vanishes_at_the_fit() {
    // A noisy linear rule in 8 dimensions; the gradient of
    // mean log-loss + (l2/2)|w|^2 is recomputed here from its definition.
    let (n, d, l2) = (300, 8, 1e-3);
    let mut rng = Lcg(42);
    let x: Vec<f32> = (0..n * d).map(|_| rng.uniform()).collect();
    let truth = [1.5, -2.0, 0.5, 0.0, 1.0, -0.5, 0.25, 2.0];
    let labels: Vec<u8> = (0..n)
        .map(|i| {
            let z: f64 = (0..d).map(|j| f64::from(x[i * d + j]) * truth[j]).sum();
            u8::from(z + 0.8 * f64::from(rng.uniform()) > 0.1)
        })
        .collect();
    let ones = labels.iter().filter(|&&y| y == 1).count();
    assert!(ones > 30 && ones < n - 30, "unbalanced test data: {ones}");
    let head = LogReg::fit(&x, &labels, d, l2).unwrap();
    let (w, b) = (head.weights(), head.bias());
    let mut grad = vec![0.0; d + 1];
    for i in 0..n {
        let z: f64 = (0..d).map(|j| f64::from(x[i * d + j]) * w[j]).sum::<f64>() + b;
        let r = sigmoid(z) - f64::from(labels[i]);
        for j in 0..d {
            grad[j] += r * f64::from(x[i * d + j]) / n as f64;
        }
        grad[d] += r / n as f64;
    }
    for j in 0..d {
        grad[j] += l2 * w[j];
    }
    assert!(frob(&grad) < 1e-9, "gradient {grad:?}");
    // The rule is learnable: the fit agrees with most labels.
    let acc = accuracy(&head.predict(&x), &labels).unwrap();
    assert!(acc > 0.8, "train accuracy {acc}");
}

#[test]
fn logreg_separable_data_converges_with_a_ridge() {
    // Without the ridge the loss has no minimiser here (w -> infinity);
    // with it the optimum is finite and classifies every point.
    let x = [-2.0, -1.0, 1.0, 2.0];
    let labels = [0, 0, 1, 1];
    let head = LogReg::fit(&x, &labels, 1, 1e-3).unwrap();
    assert!(head.weights()[0].is_finite() && head.weights()[0] > 0.0);
    assert!(
        head.bias().abs() < 1e-9,
        "symmetric data, b = {}",
        head.bias()
    );
    assert!(head.grad_norm() < 1e-10);
    assert_eq!(accuracy(&head.predict(&x), &labels).unwrap(), 1.0);
    assert!(matches!(
        LogReg::fit(&x, &labels, 1, 0.0),
        Err(LogRegError::L2(_))
    ));
}

#[test]
fn logreg_rejects_bad_input() {
    let x = [0.5f32, -0.5, 1.0, 0.0];
    assert_eq!(
        LogReg::fit(&x, &[0, 2], 2, 0.1).unwrap_err(),
        LogRegError::Label { row: 1, value: 2 }
    );
    assert_eq!(
        LogReg::fit(&x, &[1, 1], 2, 0.1).unwrap_err(),
        LogRegError::OneClass(1)
    );
    assert_eq!(
        LogReg::fit(&x, &[0, 1], 0, 0.1).unwrap_err(),
        LogRegError::ZeroWidth
    );
    assert!(matches!(
        LogReg::fit(&x, &[0, 1, 1], 2, 0.1),
        Err(LogRegError::Length {
            got: 4,
            rows: 3,
            width: 2,
            ..
        })
    ));
    assert!(matches!(
        LogReg::fit(&[], &[], 2, 0.1),
        Err(LogRegError::Empty(_))
    ));
    assert!(matches!(
        LogReg::fit(&x, &[0, 1], 2, f64::NAN),
        Err(LogRegError::L2(_))
    ));
    let bad = [0.5f32, f32::NAN, 1.0, 0.0];
    assert_eq!(
        LogReg::fit(&bad, &[0, 1], 2, 0.1).unwrap_err(),
        LogRegError::NonFinite { row: 0, col: 1 }
    );
    let head = LogReg::fit(&x, &[0, 1], 2, 0.1).unwrap();
    assert!(matches!(
        head.predict_proba(&x[..3]),
        Err(LogRegError::Length { .. })
    ));
    assert!(matches!(
        head.decision(&[f32::INFINITY, 0.0]),
        Err(LogRegError::NonFinite { row: 0, col: 0 })
    ));
}

#[test]
fn logreg_accuracy_counts_matches() {
    // Rows 0 and 2 agree, rows 1 and 3 do not: 2 / 4.
    assert_eq!(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]).unwrap(), 0.5);
    assert_eq!(accuracy(&[0, 1, 1], &[0, 1, 1]).unwrap(), 1.0);
    assert!(matches!(
        accuracy(&[1], &[1, 0]),
        Err(LogRegError::Length { .. })
    ));
    assert!(matches!(accuracy(&[], &[]), Err(LogRegError::Empty(_))));
}
