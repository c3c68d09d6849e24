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

/// `a b` as a new matrix (m x n).
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    sgemm(m, k, n, a, b, &mut c);
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
    #[should_panic(expected = "b is not")]
    fn wrong_length_panics() {
        let mut c = [0.0; 4];
        sgemm(2, 2, 2, &[0.0; 4], &[0.0; 3], &mut c);
    }
}
