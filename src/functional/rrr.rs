//! Reduced-rank ridge regression for hardware-aware LoRA: the rank-`r`
//! correction `A B` that best explains the error an analog layer makes.
//!
//! A linear layer `Y = X W` runs on noisy analog hardware. With the error
//! `E = Y_digital - Y_analog` (n x k) and the layer input `X` (n x m), this
//! module finds `A` (m x r) and `B` (r x k) minimising
//!
//! ```text
//!     ||E - X A B||_F^2 + lambda ||A B||_F^2        over rank(A B) <= r,
//!     lambda = ridge * trace(X^T X) / m.
//! ```
//!
//! The ridge is relative: `trace(X^T X) / m` is the mean squared column norm
//! of `X`, so a given `ridge` shrinks the same amount whatever the scale of
//! the activations or the number of rows accumulated.
//!
//! The math. Stack `X~ = [X; sqrt(lambda) I]` and `E~ = [E; 0]`; then
//! `||E~ - X~ W||^2` is exactly the penalised objective, so the problem is
//! plain reduced-rank regression on augmented data. With `G = X^T X`,
//! `C = X^T E`, `W_ols = (G + lambda I)^-1 C` and the fitted values
//! `F = X~ W_ols`, the normal equations make `E~ - F` orthogonal to the
//! columns of `X~`, so for every `W`
//! `||E~ - X~ W||^2 = ||E~ - F||^2 + ||F - X~ W||^2`. `X~ W` ranges over
//! the rank-`r` matrices in the column space of `X~`, which also holds the
//! best rank-`r` approximation `F V_r V_r^T` of `F` (Eckart-Young, `V_r` the
//! top eigenvectors of `F^T F = C^T (G + lambda I)^-1 C`), so the optimum is
//! `W_r = W_ols V_r V_r^T` and the penalised objective there is
//! `||E||^2 - sum_{i<=r} mu_i` with `mu_i` the eigenvalues of `F^T F`
//! ([`LowRank::explained`]). For `lambda = 0` this needs `X` of full column
//! rank.
//!
//! Solving is all f64, faer strictly sequential: `G + lambda I = L L^T`
//! (Cholesky), `Z = L^-1 C`, so `F^T F = Z^T Z`. The eigendecomposition runs
//! on the smaller of `Z^T Z` (k x k) and `Z Z^T` (m x m), which share their
//! non-zero spectrum; `W_r = L^-T Z V_r V_r^T = L^-T U_r U_r^T Z`.
//!
//! [`RrrAccumulator`] collects `G`, `C` and `||E||^2` chunk by chunk (token
//! batches, several simulated chips stacked) without keeping `X`. Rows are
//! folded in blocks of 256 consecutive rows (a fixed grid of global row
//! indices): each block's `X_b^T X_b` (lower triangle) and `X_b^T E_b` are
//! f32 GEMMs, computed in parallel over fixed output tiles of 192 x 192,
//! and added to f64 sums; `||E||^2` is summed in f64.
//!
//! Accuracy of the sums. Before its GEMMs a block is scaled by powers of
//! two (exact) so that its largest `|x|` and `|e|` lie in [0.5, 1): the
//! f32 sums never overflow (every finite input is accepted), and underflow
//! adds at most `2^-140 max|x|^2` (`G`) or `2^-140 max|x| max|e|` (`C`,
//! maxima over the block) to an entry, an absolute error nothing here can
//! see (unless a whole block is below 2^-126). Every entry of a block is
//! then an inner product of at most 256 terms summed in f32, so (Higham,
//! Accuracy and Stability of Numerical Algorithms, Thm 3.1)
//! `|dG_ij| <= g sum_r |x_ri| |x_rj|` and `|dC_ij| <= g sum_r |x_ri| |e_rj|`
//! with `g = 256 u / (1 - 256 u) = 1.5e-5`, `u = 2^-24`. That is the worst
//! case: rounding errors are random, so the typical error is about
//! `sqrt(256) u = 1e-6` of those sums. Adding the blocks in f64 costs
//! ~1e-16 more. On the diagonal the sum is `G_ii` itself, so `trace(G)`
//! and `lambda` are good to `g` relative. The fit is thus the exact one for
//! `G` and `C` perturbed by ~1e-6 relative (entry-wise, as above), far
//! below the sampling noise of a calibration set; integer data whose
//! scaled products and sums fit in 24 bits are summed exactly. What is
//! computed from `G` and `C` by cancellation inherits their absolute
//! error: the residual `||E||^2 - 2 tr(W^T C) + tr(W^T G W)` is off by at
//! most `g sum_r (2 |x_r|^T |W| |e_r| + || |x_r|^T |W| ||^2)`, in practice
//! by 1e-10 to 1e-8 of `||E||^2` (with f64 block sums: ~1e-16), so an
//! exact fit now typically reports a residual of 0 (clamped) rather than
//! ~1e-13 of `||E||^2`.
//!
//! Determinism: faer runs with `Par::Seq` inside each tile, rows are folded
//! into the sums on the fixed grid of row indices, each tile of each block
//! is computed by one thread with fixed arithmetic, and singular vectors
//! get a fixed sign, so the same rows in the same order give bit-identical
//! factors however they were chunked and at any thread count (on the same
//! CPU: faer picks its SIMD kernels at run time).

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Rows gathered before they are folded into `G` and `C`. Folding on this
/// fixed grid of global row indices (not at the caller's chunk boundaries)
/// makes the f64 sums, hence the result, bit-identical however the rows
/// were split into chunks.
const BLOCK_ROWS: usize = 256;

/// Edge of the output tiles of `G` and `C` that a block is folded into,
/// in parallel (a fixed function of `m` and `k`, never of the thread
/// count).
const TILE: usize = 192;

/// Why a reduced-rank fit could not be accumulated or solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RrrError {
    /// `m` or `k` is zero.
    #[error("reduced-rank regression needs m >= 1 and k >= 1 (got m = {m}, k = {k})")]
    EmptyShape { m: usize, k: usize },
    /// A buffer does not hold `rows x width` values.
    #[error("{what} holds {got} values but {rows} rows x {width} columns need {rows}*{width}")]
    Length {
        what: &'static str,
        got: usize,
        rows: usize,
        width: usize,
    },
    /// An input value is NaN or infinite.
    #[error("{what} is not finite at row {row}, column {col}")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
    },
    /// The rank is 0 or above `min(m, k)`.
    #[error("rank {rank} is out of range: it must be in 1..={max} (min(m, k))")]
    Rank { rank: usize, max: usize },
    /// `solve` was called before any row was added.
    #[error("no rows accumulated: add data before solving")]
    NoRows,
    /// The relative ridge is negative or not finite.
    #[error("ridge must be finite and >= 0, got {0}")]
    Ridge(f64),
    /// `X^T X + lambda I` has no Cholesky factor.
    #[error(
        "X^T X + lambda I is not positive definite (pivot {pivot}): the inputs are \
         rank-deficient; use ridge > 0"
    )]
    NotPositiveDefinite { pivot: usize },
    /// The factors do not fit in f32 (a near-singular `X` without ridge).
    #[error("the low-rank factors overflow f32; use ridge > 0")]
    Overflow,
    /// An iterative decomposition did not converge.
    #[error("{0} did not converge")]
    NoConvergence(&'static str),
}

/// Running sums of a reduced-rank fit: `G = X^T X`, `C = X^T E`, `||E||^2`.
#[derive(Debug, Clone)]
pub struct RrrAccumulator {
    m: usize,
    k: usize,
    /// The f64 sums of `G` (lower triangle) and `C` over the folded blocks,
    /// tile by tile.
    tiles: Vec<Tile>,
    /// `||E||^2` over every row added, row by row in arrival order.
    e_sq: f64,
    rows: usize,
    /// Rows added since the last fold, row-major, fewer than `BLOCK_ROWS`.
    pend_x: Vec<f32>,
    pend_e: Vec<f32>,
}

/// One output tile of the running sums: rows `r0..r0 + nr` and columns
/// `c0..c0 + nc` of `G` (`cross == false`) or `C` (`cross == true`).
#[derive(Debug, Clone)]
struct Tile {
    r0: usize,
    nr: usize,
    c0: usize,
    nc: usize,
    cross: bool,
    /// A diagonal tile of `G`: only its lower triangle is computed.
    diag: bool,
    /// The f64 sum, column-major `nr x nc`.
    sum: Vec<f64>,
}

/// A rank-`r` correction `W_r = A B`, with what it explains of `E`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// Input width (rows of `A`).
    pub m: usize,
    /// Output width (columns of `B`).
    pub k: usize,
    /// `r`, the number of components.
    pub rank: usize,
    /// `A`, m x r row-major: left singular vectors of `W_r` times
    /// `sqrt(singular value)`.
    pub a: Vec<f32>,
    /// `B`, r x k row-major: `sqrt(singular value)` times right singular
    /// vectors of `W_r`.
    pub b: Vec<f32>,
    /// Singular values of `W_r` (f64 solution), non-increasing, length r.
    pub singular_values: Vec<f64>,
    /// Eigenvalues `mu_i` of the fitted-values covariance
    /// `C^T (G + lambda I)^-1 C`, non-increasing, length `min(m, k)`,
    /// clamped at 0 (they are >= 0 in exact arithmetic). Keeping component
    /// `i` lowers the penalised objective by `mu_i`; equal `mu_r` and
    /// `mu_{r+1}` mean the rank-`r` optimum is not unique (the solver's
    /// choice is still a deterministic function of the data).
    pub explained: Vec<f64>,
    /// The absolute ridge `lambda = ridge * trace(G) / m` that was used.
    pub lambda: f64,
    /// `||E||^2` over the fit data.
    pub energy: f64,
    /// `||E - X A B||^2` on the fit data, for the f32 factors as stored.
    pub residual: f64,
    /// Rows the fit saw.
    pub rows: usize,
}

impl LowRank {
    /// Share of `||E||^2` that the correction removes on the fit data,
    /// `1 - residual / energy` (0 when `E` is zero: nothing to remove).
    pub fn captured(&self) -> f64 {
        if self.energy > 0.0 {
            1.0 - self.residual / self.energy
        } else {
            0.0
        }
    }

    /// The penalised objective `||E - X W_r||^2 + lambda ||W_r||^2` at the
    /// f64 optimum, from theory: `||E||^2 - sum_{i<r} mu_i` (module docs).
    pub fn objective(&self) -> f64 {
        self.energy - self.explained[..self.rank].iter().sum::<f64>()
    }
}

impl RrrAccumulator {
    /// An empty accumulator for inputs of width `m` and errors of width `k`.
    pub fn new(m: usize, k: usize) -> Result<Self, RrrError> {
        if m == 0 || k == 0 {
            return Err(RrrError::EmptyShape { m, k });
        }
        Ok(Self {
            m,
            k,
            tiles: tiles(m, k),
            e_sq: 0.0,
            rows: 0,
            pend_x: Vec::with_capacity(BLOCK_ROWS * m),
            pend_e: Vec::with_capacity(BLOCK_ROWS * k),
        })
    }

    /// Input width `m`.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Output width `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows accumulated so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `||E||^2` over the rows accumulated so far.
    pub fn energy(&self) -> f64 {
        self.e_sq
    }

    /// Adds `rows` rows: `x` is n x m and `e` is n x k, both row-major. On
    /// error nothing is added.
    pub fn add(&mut self, x: &[f32], e: &[f32], rows: usize) -> Result<(), RrrError> {
        // The caller's thread may have just run faer (e.g. a `solve`):
        // make its SSE code below fast again ([`clear_upper_state`]).
        clear_upper_state();
        check_matrix("x", x, rows, self.m)?;
        check_matrix("e", e, rows, self.k)?;
        let (m, k) = (self.m, self.k);
        for row in e.chunks_exact(k) {
            self.e_sq += sum_sq(row);
        }
        let mut r = 0;
        while r < rows {
            let held = self.pend_x.len() / m;
            let take = (BLOCK_ROWS - held).min(rows - r);
            self.pend_x.extend_from_slice(&x[r * m..(r + take) * m]);
            self.pend_e.extend_from_slice(&e[r * k..(r + take) * k]);
            r += take;
            if held + take == BLOCK_ROWS {
                fold(
                    &mut self.tiles,
                    &mut self.pend_x,
                    &mut self.pend_e,
                    BLOCK_ROWS,
                );
                self.pend_x.clear();
                self.pend_e.clear();
            }
        }
        self.rows += rows;
        Ok(())
    }

    /// The optimal rank-`rank` correction for relative ridge `ridge`
    /// (`lambda = ridge * trace(X^T X) / m`, module docs).
    pub fn solve(&self, rank: usize, ridge: f64) -> Result<LowRank, RrrError> {
        let (m, k) = (self.m, self.k);
        let max = m.min(k);
        if rank == 0 || rank > max {
            return Err(RrrError::Rank { rank, max });
        }
        if !ridge.is_finite() || ridge < 0.0 {
            return Err(RrrError::Ridge(ridge));
        }
        if self.rows == 0 {
            return Err(RrrError::NoRows);
        }
        let (g, c) = self.totals();
        let trace: f64 = (0..m).map(|i| g[(i, i)]).sum();
        let lambda = ridge * trace / m as f64;

        // G + lambda I = L L^T.
        let mut l = g.clone();
        for i in 0..m {
            l[(i, i)] += lambda;
        }
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
            m,
            Par::Seq,
            Default::default(),
        ));
        cholesky_in_place(
            l.as_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .map_err(|e| match e {
            faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                RrrError::NotPositiveDefinite { pivot: index }
            }
        })?;
        // The factor lives in the lower triangle; clear G's upper half.
        for j in 1..m {
            for i in 0..j {
                l[(i, j)] = 0.0;
            }
        }

        // Z = L^-1 C, so that C^T (G + lambda I)^-1 C = Z^T Z.
        let mut z = c.clone();
        solve_lower_triangular_in_place(l.as_ref(), z.as_mut(), Par::Seq);

        // W_r = P R^T with P m x r and R k x r (module docs).
        let (explained, mut p, r_mat) = if k <= m {
            let gram = lower_gram(z.as_ref().transpose());
            let (vals, vecs) = top_eigen(gram.as_ref(), rank)?;
            let mut p = Mat::zeros(m, rank);
            matmul(
                p.as_mut(),
                Accum::Replace,
                z.as_ref(),
                vecs.as_ref(),
                1.0,
                Par::Seq,
            );
            (vals, p, vecs)
        } else {
            let gram = lower_gram(z.as_ref());
            let (vals, vecs) = top_eigen(gram.as_ref(), rank)?;
            let mut r_mat = Mat::zeros(k, rank);
            matmul(
                r_mat.as_mut(),
                Accum::Replace,
                z.as_ref().transpose(),
                vecs.as_ref(),
                1.0,
                Par::Seq,
            );
            (vals, vecs, r_mat)
        };
        solve_upper_triangular_in_place(l.as_ref().transpose(), p.as_mut(), Par::Seq);

        let split = balanced_split(p.as_ref(), r_mat.as_ref())?;
        let a: Vec<f32> = split.a.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = split.b.iter().map(|&v| v as f32).collect();
        if a.iter().chain(&b).any(|v| !v.is_finite()) {
            return Err(RrrError::Overflow);
        }
        let residual = residual_of(g.as_ref(), c.as_ref(), self.e_sq, &a, &b, rank);
        Ok(LowRank {
            m,
            k,
            rank,
            a,
            b,
            singular_values: split.s,
            explained,
            lambda,
            energy: self.e_sq,
            residual,
            rows: self.rows,
        })
    }

    /// `||E - X A B||^2` on the accumulated data for any factors (`a`
    /// m x rank, `b` rank x k, row-major), e.g. after rounding to FP16:
    /// `||E||^2 - 2 tr(W^T C) + tr(W^T G W)`. Clamped at 0, since the
    /// cancellation leaves the error of the f32 block sums, 1e-10 to 1e-8
    /// of `||E||^2` in practice (module docs), for exact fits.
    pub fn residual(&self, a: &[f32], b: &[f32], rank: usize) -> Result<f64, RrrError> {
        if rank == 0 {
            return Err(RrrError::Rank {
                rank,
                max: self.m.min(self.k),
            });
        }
        check_matrix("a", a, self.m, rank)?;
        check_matrix("b", b, rank, self.k)?;
        let (g, c) = self.totals();
        Ok(residual_of(g.as_ref(), c.as_ref(), self.e_sq, a, b, rank))
    }

    /// Full symmetric `G` and `C` including the pending rows (folded into
    /// copies, so that later `add` calls keep the fixed block grid).
    fn totals(&self) -> (Mat<f64>, Mat<f64>) {
        let (m, k) = (self.m, self.k);
        let pending = self.pend_x.len() / m;
        let folded = (pending > 0).then(|| {
            let mut tiles = self.tiles.clone();
            let mut x = self.pend_x.clone();
            let mut e = self.pend_e.clone();
            fold(&mut tiles, &mut x, &mut e, pending);
            tiles
        });
        let tiles = folded.as_ref().unwrap_or(&self.tiles);
        let mut g = Mat::zeros(m, m);
        let mut c = Mat::zeros(m, k);
        for t in tiles {
            for j in 0..t.nc {
                let start = if t.diag { j } else { 0 };
                for i in start..t.nr {
                    let v = t.sum[j * t.nr + i];
                    let (row, col) = (t.r0 + i, t.c0 + j);
                    if t.cross {
                        c[(row, col)] = v;
                    } else {
                        g[(row, col)] = v;
                        g[(col, row)] = v;
                    }
                }
            }
        }
        (g, c)
    }
}

/// Checks that `data` is `rows x width` and finite.
fn check_matrix(
    what: &'static str,
    data: &[f32],
    rows: usize,
    width: usize,
) -> Result<(), RrrError> {
    if rows.checked_mul(width) != Some(data.len()) {
        return Err(RrrError::Length {
            what,
            got: data.len(),
            rows,
            width,
        });
    }
    if let Some(i) = first_non_finite(data) {
        return Err(RrrError::NonFinite {
            what,
            row: i / width,
            col: i % width,
        });
    }
    Ok(())
}

/// Index of the first NaN or infinity in `data`, found by a branch-free
/// (vectorisable) scan of fixed-size chunks first.
fn first_non_finite(data: &[f32]) -> Option<usize> {
    const CHUNK: usize = 1024;
    let bad = |v: &f32| v.to_bits() & 0x7f80_0000 == 0x7f80_0000;
    let chunk = data
        .chunks(CHUNK)
        .position(|c| c.iter().fold(false, |any, v| any | bad(v)))?;
    let start = chunk * CHUNK;
    data[start..].iter().position(bad).map(|i| start + i)
}

/// The tiles of `G`'s lower triangle and of `C`, a fixed function of
/// `(m, k)`.
fn tiles(m: usize, k: usize) -> Vec<Tile> {
    let tile = |r0: usize, nr: usize, c0: usize, nc: usize, cross: bool| Tile {
        r0,
        nr,
        c0,
        nc,
        cross,
        diag: !cross && r0 == c0,
        sum: vec![0.0; nr * nc],
    };
    let edges = |n: usize| (0..n).step_by(TILE).map(move |s| (s, TILE.min(n - s)));
    let mut out = Vec::new();
    for (r0, nr) in edges(m) {
        for (c0, nc) in edges(m).take_while(|&(c0, _)| c0 <= r0) {
            out.push(tile(r0, nr, c0, nc, false));
        }
        for (c0, nc) in edges(k) {
            out.push(tile(r0, nr, c0, nc, true));
        }
    }
    out
}

/// Folds one block of `rows` rows (`x` rows x m, `e` rows x k, row-major)
/// into the tiles: `G += X_b^T X_b` (lower triangle), `C += X_b^T E_b`.
///
/// The block is first scaled by powers of two (exact) so that its largest
/// `|x|` and `|e|` lie in [0.5, 1). Its products are then summed in f32,
/// where they can neither overflow nor (beyond a negligible absolute
/// error, module docs) underflow, and added to the f64 sums with the
/// scale undone. Tiles run in parallel; each tile's arithmetic is the same
/// on any thread. Scales `x` and `e` in place.
fn fold(tiles: &mut [Tile], x: &mut [f32], e: &mut [f32], rows: usize) {
    let (m, k) = (x.len() / rows, e.len() / rows);
    let sx = normalise(x);
    let se = normalise(e);
    let xb = MatRef::from_row_major_slice(x, rows, m);
    let eb = MatRef::from_row_major_slice(e, rows, k);
    tiles.par_iter_mut().for_each_init(Vec::new, |buf, t| {
        let (nr, nc) = (t.nr, t.nc);
        buf.resize(nr * nc, 0.0);
        let out = MatMut::from_column_major_slice_mut(&mut buf[..nr * nc], nr, nc);
        let lhs = xb.subcols(t.r0, nr).transpose();
        let (rhs, scale) = if t.cross {
            (eb.subcols(t.c0, nc), sx * se)
        } else {
            (xb.subcols(t.c0, nc), sx * sx)
        };
        if t.diag {
            tri_matmul(
                out,
                BlockStructure::TriangularLower,
                Accum::Replace,
                lhs,
                BlockStructure::Rectangular,
                rhs,
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
        } else {
            matmul(out, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
        }
        clear_upper_state();
        for j in 0..nc {
            let start = if t.diag { j } else { 0 };
            let src = &buf[j * nr + start..(j + 1) * nr];
            let dst = &mut t.sum[j * nr + start..(j + 1) * nr];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += scale * f64::from(s);
            }
        }
    });
}

/// Scales `v` (finite) in place by a power of two `2^-p` so that its
/// largest magnitude lies in [0.5, 1), and returns `2^p`; all zeros stay
/// as they are (returns 1). `p` is clamped to +-126 to keep the factor a
/// normal f32, which leaves the largest magnitude in [2, 4) if it is
/// 2^127 or more. The scaling is exact but for results below 2^-126.
fn normalise(v: &mut [f32]) -> f64 {
    // Finite values: the magnitude bits order like the magnitudes.
    let max = v
        .iter()
        .fold(0i32, |acc, x| acc.max((x.to_bits() & 0x7fff_ffff) as i32));
    if max == 0 {
        return 1.0;
    }
    // A biased exponent b means a magnitude below 2^(b - 126).
    let p = ((max >> 23) - 126).clamp(-126, 126);
    let factor = f32::from_bits(((127 - p) as u32) << 23);
    v.iter_mut().for_each(|x| *x *= factor);
    f64::from_bits(((1023 + p) as u64) << 52)
}

/// `sum_i v_i^2` in f64, over 8 interleaved partial sums added in a fixed
/// order (a function of the row alone).
fn sum_sq(v: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            let x = f64::from(x);
            *l += x * x;
        }
    }
    for (l, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        let x = f64::from(x);
        *l += x * x;
    }
    lanes.iter().sum()
}

/// `M M^T`, lower triangle only (the eigensolver reads only that half).
fn lower_gram(mat: MatRef<'_, f64>) -> Mat<f64> {
    let n = mat.nrows();
    let mut out = Mat::zeros(n, n);
    tri_matmul(
        out.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        mat,
        BlockStructure::Rectangular,
        mat.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    out
}

/// All eigenvalues of a symmetric PSD matrix (lower triangle given),
/// non-increasing and clamped at 0, and the eigenvectors of the top `rank`.
fn top_eigen(sym: MatRef<'_, f64>, rank: usize) -> Result<(Vec<f64>, Mat<f64>), RrrError> {
    let n = sym.nrows();
    let mut s = Diag::<f64>::zeros(n);
    let mut u = Mat::<f64>::zeros(n, n);
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Default::default(),
    ));
    self_adjoint_evd(
        sym,
        s.as_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| RrrError::NoConvergence("symmetric eigendecomposition"))?;
    // faer sorts ascending; the top components are the last columns.
    let vals: Vec<f64> = (0..n)
        .rev()
        .map(|i| s.column_vector()[i].max(0.0))
        .collect();
    let vecs = Mat::from_fn(n, rank, |i, j| u[(i, n - 1 - j)]);
    Ok((vals, vecs))
}

/// A thin SVD `U diag(s) V^T`, `s` non-increasing.
struct ThinSvd {
    u: Mat<f64>,
    s: Vec<f64>,
    v: Mat<f64>,
}

/// Thin SVD with faer, sequential.
fn thin_svd(mat: MatRef<'_, f64>) -> Result<ThinSvd, RrrError> {
    let (rows, cols) = (mat.nrows(), mat.ncols());
    let size = rows.min(cols);
    let mut s = Diag::<f64>::zeros(size);
    let mut u = Mat::<f64>::zeros(rows, size);
    let mut v = Mat::<f64>::zeros(cols, size);
    let mut mem = MemBuffer::new(svd_scratch::<f64>(
        rows,
        cols,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        Par::Seq,
        Default::default(),
    ));
    svd(
        mat,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| RrrError::NoConvergence("singular value decomposition"))?;
    let s = (0..size).map(|i| s.column_vector()[i]).collect();
    Ok(ThinSvd { u, s, v })
}

/// `W = A B` with `A` m x r and `B` r x k row-major, and the singular
/// values `s` of `W`.
struct Split {
    a: Vec<f64>,
    s: Vec<f64>,
    b: Vec<f64>,
}

/// Splits `W = P R^T` (rank r) into `A = U sqrt(S)`, `B = sqrt(S) V^T` from
/// the thin SVD `W = U S V^T`.
///
/// Why balanced: `A` and `B` are stored in FP16. Any `(A T, T^-1 B)` gives
/// the same product, but a lopsided split (e.g. `B = V^T` orthonormal, `A`
/// carrying all of `S`) pushes one factor towards FP16's subnormals when the
/// error `E` is small, or towards overflow when it is large. Giving each
/// factor `sqrt(S)` keeps both at the geometric middle of the scale; it is
/// also the split that minimises `||A||^2 + ||B||^2` (AM-GM).
fn balanced_split(p: MatRef<'_, f64>, r_mat: MatRef<'_, f64>) -> Result<Split, RrrError> {
    let (m, k, r) = (p.nrows(), r_mat.nrows(), p.ncols());
    // P = U1 S1 Q1^T, so W = U1 T with T^T = R Q1 S1 (k x r); then
    // T^T = V2 S2 U2^T and W = (U1 U2) S2 V2^T. Only r-column matrices are
    // decomposed, never the m x k product.
    let ThinSvd {
        u: u1,
        s: s1,
        v: q1,
    } = thin_svd(p)?;
    let mut tt = Mat::zeros(k, r);
    matmul(
        tt.as_mut(),
        Accum::Replace,
        r_mat,
        q1.as_ref(),
        1.0,
        Par::Seq,
    );
    for (j, &sj) in s1.iter().enumerate() {
        for i in 0..k {
            tt[(i, j)] *= sj;
        }
    }
    let ThinSvd {
        u: v2,
        s: s2,
        v: u2,
    } = thin_svd(tt.as_ref())?;
    let mut u = Mat::zeros(m, r);
    matmul(
        u.as_mut(),
        Accum::Replace,
        u1.as_ref(),
        u2.as_ref(),
        1.0,
        Par::Seq,
    );

    let mut a = vec![0.0; m * r];
    let mut b = vec![0.0; r * k];
    for j in 0..r {
        let root = s2[j].max(0.0).sqrt();
        // Singular vectors are defined up to sign: fix it so that the
        // largest-magnitude entry of B's row (first on ties) is positive,
        // making the factors independent of the SVD's sign convention.
        let mut pivot = 0;
        for i in 1..k {
            if v2[(i, j)].abs() > v2[(pivot, j)].abs() {
                pivot = i;
            }
        }
        let sign = if v2[(pivot, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..m {
            a[i * r + j] = sign * root * u[(i, j)];
        }
        for i in 0..k {
            b[j * k + i] = sign * root * v2[(i, j)];
        }
    }
    Ok(Split { a, s: s2, b })
}

/// `||E||^2 - 2 tr(W^T C) + tr(W^T G W)` for `W = A B`, clamped at 0, via
/// `tr(W^T C) = <A^T C, B>` and `tr(W^T G W) = <A^T G A, B B^T>` so that no
/// m x k or m x m product is formed.
fn residual_of(
    g: MatRef<'_, f64>,
    c: MatRef<'_, f64>,
    e_sq: f64,
    a: &[f32],
    b: &[f32],
    r: usize,
) -> f64 {
    let (m, k) = (c.nrows(), c.ncols());
    let a = Mat::from_fn(m, r, |i, j| f64::from(a[i * r + j]));
    let b = Mat::from_fn(r, k, |i, j| f64::from(b[i * k + j]));
    let mut atc = Mat::zeros(r, k);
    matmul(
        atc.as_mut(),
        Accum::Replace,
        a.transpose(),
        c,
        1.0,
        Par::Seq,
    );
    let mut ga = Mat::zeros(m, r);
    matmul(ga.as_mut(), Accum::Replace, g, a.as_ref(), 1.0, Par::Seq);
    let mut atga = Mat::zeros(r, r);
    matmul(
        atga.as_mut(),
        Accum::Replace,
        a.transpose(),
        ga.as_ref(),
        1.0,
        Par::Seq,
    );
    let mut bbt = Mat::zeros(r, r);
    matmul(
        bbt.as_mut(),
        Accum::Replace,
        b.as_ref(),
        b.transpose(),
        1.0,
        Par::Seq,
    );
    let mut cross = 0.0;
    for j in 0..k {
        for i in 0..r {
            cross += atc[(i, j)] * b[(i, j)];
        }
    }
    let mut quad = 0.0;
    for j in 0..r {
        for i in 0..r {
            quad += atga[(i, j)] * bbt[(i, j)];
        }
    }
    (e_sq - 2.0 * cross + quad).max(0.0)
}

/// Clears the upper halves of the x86 vector registers (`vzeroupper`).
///
/// faer's x86 GEMM kernels are hand-written assembly that return with the
/// upper halves of the AVX-512 registers in use. Until a `vzeroupper`, the
/// legacy-SSE instructions of all of this crate's baseline x86-64 code on
/// that thread run several times slower: measured 4x (0.75 vs 0.18 ns per
/// value) for the f32 -> f64 loop in [`fold`]. LLVM ends its own AVX
/// functions with `vzeroupper`, so matrixmultiply does not have this
/// problem.
#[cfg(target_arch = "x86_64")]
fn clear_upper_state() {
    #[target_feature(enable = "avx")]
    fn vzeroupper() {
        std::arch::x86_64::_mm256_zeroupper();
    }
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: `vzeroupper` is a safe function whose only requirement
        // is its target feature: calling a `#[target_feature]` function
        // is sound when the CPU has the features it enables, and AVX is
        // detected at run time on the line above.
        unsafe { vzeroupper() }
    }
}

/// Nothing to clear off x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn clear_upper_state() {}
