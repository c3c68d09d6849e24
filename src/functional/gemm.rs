//! The FP32 GEMM of the functional executor: a checked, safe wrapper around
//! `matrixmultiply::sgemm` for dense row-major matrices.
//!
//! matrixmultiply only offers a raw-pointer API; this module is the single
//! place that calls it, after checking every slice is exactly as long as the
//! shape says. The crate is built without its `threading` feature, so the
//! GEMM is single-threaded and its summation order fixed: the same inputs
//! give the same bits on the same CPU.

/// `c = a b` with `a` m x k, `b` k x n, `c` m x n, all row-major.
///
/// Panics if a slice's length does not match its shape (a caller bug).
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert_eq!(a.len(), m * k, "sgemm: a is not {m} x {k}");
    assert_eq!(b.len(), k * n, "sgemm: b is not {k} x {n}");
    assert_eq!(c.len(), m * n, "sgemm: c is not {m} x {n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let (k_i, n_i) = (k as isize, n as isize);
    // SAFETY: the asserts above prove that every element sgemm addresses
    // (row stride k / n, column stride 1, within m x k, k x n and m x n)
    // lies inside the three slices; `c` is borrowed mutably, so it cannot
    // alias `a` or `b`; beta = 0 means `c`'s old contents are not read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k_i,
            1,
            b.as_ptr(),
            n_i,
            1,
            0.0,
            c.as_mut_ptr(),
            n_i,
            1,
        );
    }
}

/// Rows per task of [`matmul`]'s parallel split.
const PAR_ROWS: usize = 256;

/// `a b` as a new matrix (m x n). Large products are split into blocks of
/// [`PAR_ROWS`] rows run in parallel: sgemm blocks only over k and n in a
/// fixed way and each element's sum never depends on which other rows are
/// in the call, so the split gives the same bits as one call (tested).
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let mut c = vec![0.0; m * n];
    if m <= PAR_ROWS || k * n < 4096 {
        sgemm(m, k, n, a, b, &mut c);
        return c;
    }
    assert_eq!(a.len(), m * k, "matmul: a is not {m} x {k}");
    c.par_chunks_mut(PAR_ROWS * n)
        .zip(a.par_chunks(PAR_ROWS * k))
        .for_each(|(cc, aa)| sgemm(aa.len() / k, k, n, aa, b, cc));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_by_hand() {
        // [1 2 3; 4 5 6] x [1 0; 0 1; 1 1] = [4 5; 10 11]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        assert_eq!(matmul(2, 3, 2, &a, &b), vec![4.0, 5.0, 10.0, 11.0]);
        assert_eq!(matmul(2, 0, 2, &[], &[]), vec![0.0; 4]);
    }

    #[test]
    fn the_parallel_split_gives_the_bits_of_one_call() {
        // Odd sizes: a partial last block and partial micro-kernel tiles.
        let (m, k, n) = (1000, 389, 77);
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let mut one = vec![0.0; m * n];
        sgemm(m, k, n, &a, &b, &mut one);
        let split = matmul(m, k, n, &a, &b);
        assert!(one
            .iter()
            .zip(&split)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        // And row by row.
        for i in [0, 255, 256, 999] {
            let row = matmul(1, k, n, &a[i * k..(i + 1) * k], &b);
            assert_eq!(row, one[i * n..(i + 1) * n].to_vec());
        }
    }

    #[test]
    #[should_panic(expected = "b is not")]
    fn wrong_length_panics() {
        let mut c = [0.0; 4];
        sgemm(2, 2, 2, &[0.0; 4], &[0.0; 3], &mut c);
    }
}
