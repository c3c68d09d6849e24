//! The task head: binary logistic regression on sentence embeddings.
//!
//! Fits `p(y = 1 | x) = sigmoid(w . x + b)` by minimising
//!
//! ```text
//!     J(w, b) = (1/n) sum_i [softplus(z_i) - y_i z_i] + (l2/2) ||w||^2,
//!     z_i = w . x_i + b,
//! ```
//!
//! the mean log-loss plus a ridge on `w` (the bias is not penalised). `J` is
//! strictly convex for `l2 > 0`, so its minimiser is unique and Newton's
//! method (IRLS) finds it in a few steps: gradient
//! `(1/n) X~^T (p - y) + l2 [w; 0]`, Hessian
//! `(1/n) X~^T diag(p (1 - p)) X~ + l2 diag(1, .., 1, 0)` with `X~ = [X 1]`,
//! solved by Cholesky, all in f64 and strictly sequential (deterministic).
//! A backtracking line search guards the first steps; it stops when the
//! gradient's 2-norm falls below [`GRAD_TOL`], and gives up with an error
//! after [`MAX_ITER`] Newton steps.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Mat, Par};

/// Newton steps allowed before the fit reports [`LogRegError::NotConverged`].
pub const MAX_ITER: usize = 100;

/// Convergence threshold on the 2-norm of the gradient of `J`.
pub const GRAD_TOL: f64 = 1e-10;

/// Halvings of the step before the line search gives up.
const MAX_HALVINGS: usize = 60;

/// Armijo's sufficient-decrease constant.
const ARMIJO: f64 = 1e-4;

/// Why a logistic regression could not be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogRegError {
    /// The feature width is zero.
    #[error("feature width must be at least 1")]
    ZeroWidth,
    /// No rows to fit or score.
    #[error("no rows: {0}")]
    Empty(&'static str),
    /// The feature buffer does not hold whole rows of `width` values.
    #[error("{what} holds {got} values, not {rows} rows x {width}")]
    Length {
        what: &'static str,
        got: usize,
        rows: usize,
        width: usize,
    },
    /// A label other than 0 or 1.
    #[error("label {value} at row {row}: labels must be 0 or 1")]
    Label { row: usize, value: u8 },
    /// All labels are the same.
    #[error("only class {0} is present: the fit needs both classes")]
    OneClass(u8),
    /// A feature is NaN or infinite.
    #[error("feature at row {row}, column {col} is not finite")]
    NonFinite { row: usize, col: usize },
    /// `l2` is not a finite positive number.
    #[error(
        "l2 must be finite and > 0, got {0} (without it separable data has no \
         finite optimum)"
    )]
    L2(f64),
    /// Newton's method hit the iteration cap or could not decrease `J`.
    #[error(
        "logistic regression did not converge after {iterations} Newton steps \
         (gradient norm {grad_norm:e})"
    )]
    NotConverged { iterations: usize, grad_norm: f64 },
    /// The Newton system had no Cholesky factor (cannot happen for
    /// `l2 > 0` in exact arithmetic; reported, not unwrapped).
    #[error("the Newton system is not positive definite (pivot {0})")]
    Singular(usize),
}

/// A fitted binary logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReg {
    width: usize,
    weights: Vec<f64>,
    bias: f64,
    l2: f64,
    iterations: usize,
    grad_norm: f64,
}

impl LogReg {
    /// Fits the head on `x` (rows x `width`, row-major) and `labels` (one
    /// 0/1 per row) with ridge `l2 > 0` on the weights.
    pub fn fit(x: &[f32], labels: &[u8], width: usize, l2: f64) -> Result<LogReg, LogRegError> {
        if width == 0 {
            return Err(LogRegError::ZeroWidth);
        }
        let n = labels.len();
        if n == 0 {
            return Err(LogRegError::Empty("no training labels"));
        }
        check_rows("x", x, n, width)?;
        if let Some(row) = labels.iter().position(|&v| v > 1) {
            return Err(LogRegError::Label {
                row,
                value: labels[row],
            });
        }
        let ones = labels.iter().filter(|&&v| v == 1).count();
        if ones == 0 || ones == n {
            return Err(LogRegError::OneClass(labels[0]));
        }
        if !(l2.is_finite() && l2 > 0.0) {
            return Err(LogRegError::L2(l2));
        }

        let d = width + 1;
        let nf = n as f64;
        // X~ = [X 1] in f64, column-major for the products below.
        let xa = Mat::from_fn(n, d, |i, j| {
            if j < width {
                f64::from(x[i * width + j])
            } else {
                1.0
            }
        });
        // Start at the best bias-only model: w = 0, b = logit(mean y).
        let mut theta = vec![0.0; d];
        theta[width] = (ones as f64 / (n - ones) as f64).ln();
        let mut z = scores(&xa, &theta);
        let mut obj = objective(&z, labels, &theta[..width], l2);

        let mut xs = Mat::<f64>::zeros(n, d);
        let mut h = Mat::<f64>::zeros(d, d);
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
            d,
            Par::Seq,
            Default::default(),
        ));
        let mut it = 0;
        loop {
            let grad = gradient(&xa, &z, labels, &theta[..width], l2);
            let grad_norm = norm(&grad);
            if grad_norm < GRAD_TOL {
                return Ok(LogReg {
                    width,
                    weights: theta[..width].to_vec(),
                    bias: theta[width],
                    l2,
                    iterations: it,
                    grad_norm,
                });
            }
            if it == MAX_ITER {
                return Err(LogRegError::NotConverged {
                    iterations: it,
                    grad_norm,
                });
            }

            // H = X_s^T X_s + l2 diag(1, .., 1, 0), X_s = diag(sqrt(s / n)) X~.
            for j in 0..d {
                for i in 0..n {
                    xs[(i, j)] = xa[(i, j)] * (curvature(z[i]) / nf).sqrt();
                }
            }
            tri_matmul(
                h.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Replace,
                xs.as_ref().transpose(),
                BlockStructure::Rectangular,
                xs.as_ref(),
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
            for j in 0..width {
                h[(j, j)] += l2;
            }
            cholesky_in_place(
                h.as_mut(),
                Default::default(),
                Par::Seq,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|e| match e {
                faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                    LogRegError::Singular(index)
                }
            })?;
            let mut step = Mat::from_fn(d, 1, |i, _| -grad[i]);
            solve_lower_triangular_in_place(h.as_ref(), step.as_mut(), Par::Seq);
            solve_upper_triangular_in_place(h.as_ref().transpose(), step.as_mut(), Par::Seq);
            let step: Vec<f64> = (0..d).map(|i| step[(i, 0)]).collect();

            // Backtracking (Armijo). Near the optimum the decrease falls
            // below f64 resolution of J, so rounding-level increases are
            // tolerated: there the full Newton step is the right one.
            let slope: f64 = grad.iter().zip(&step).map(|(g, s)| g * s).sum();
            let slack = 64.0 * f64::EPSILON * obj.abs().max(1.0);
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..MAX_HALVINGS {
                let trial: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a + t * s).collect();
                let z_trial = scores(&xa, &trial);
                let obj_trial = objective(&z_trial, labels, &trial[..width], l2);
                if obj_trial <= obj + ARMIJO * t * slope + slack {
                    theta = trial;
                    z = z_trial;
                    obj = obj_trial;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                return Err(LogRegError::NotConverged {
                    iterations: it + 1,
                    grad_norm,
                });
            }
            it += 1;
        }
    }

    /// `p(y = 1 | x)` for each row of `x` (rows x width, row-major).
    pub fn predict_proba(&self, x: &[f32]) -> Result<Vec<f64>, LogRegError> {
        Ok(self.decision(x)?.into_iter().map(sigmoid).collect())
    }

    /// The predicted label of each row: 1 iff `w . x + b > 0`.
    ///
    /// Infallible, as its callers expect: `x` must be whole rows of
    /// finite values (the embeddings this crate produces are). A trailing
    /// partial row is not scored and a non-finite score predicts 0; use
    /// [`LogReg::decision`] or [`LogReg::predict_proba`] for checked input.
    pub fn predict(&self, x: &[f32]) -> Vec<u8> {
        x.chunks_exact(self.width)
            .map(|row| u8::from(self.score(row) > 0.0))
            .collect()
    }

    /// `w . x + b` for each row.
    pub fn decision(&self, x: &[f32]) -> Result<Vec<f64>, LogRegError> {
        if x.len() % self.width != 0 {
            return Err(LogRegError::Length {
                what: "x",
                got: x.len(),
                rows: x.len() / self.width,
                width: self.width,
            });
        }
        check_rows("x", x, x.len() / self.width, self.width)?;
        Ok(x.chunks_exact(self.width)
            .map(|row| self.score(row))
            .collect())
    }

    /// `w . x + b` for one row of `width` values.
    fn score(&self, row: &[f32]) -> f64 {
        row.iter()
            .zip(&self.weights)
            .map(|(&v, w)| f64::from(v) * w)
            .sum::<f64>()
            + self.bias
    }

    /// Feature width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The weights `w`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The bias `b`.
    pub fn bias(&self) -> f64 {
        self.bias
    }

    /// The ridge the head was fitted with.
    pub fn l2(&self) -> f64 {
        self.l2
    }

    /// Newton steps taken.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// 2-norm of the gradient of `J` at the returned parameters.
    pub fn grad_norm(&self) -> f64 {
        self.grad_norm
    }
}

/// Share of `pred` equal to `labels`.
pub fn accuracy(pred: &[u8], labels: &[u8]) -> Result<f64, LogRegError> {
    if pred.len() != labels.len() {
        return Err(LogRegError::Length {
            what: "predictions",
            got: pred.len(),
            rows: labels.len(),
            width: 1,
        });
    }
    if pred.is_empty() {
        return Err(LogRegError::Empty("no predictions to score"));
    }
    let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(hits as f64 / pred.len() as f64)
}

/// Checks that `x` is `rows x width` and finite.
fn check_rows(what: &'static str, x: &[f32], rows: usize, width: usize) -> Result<(), LogRegError> {
    if rows.checked_mul(width) != Some(x.len()) {
        return Err(LogRegError::Length {
            what,
            got: x.len(),
            rows,
            width,
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(LogRegError::NonFinite {
            row: i / width,
            col: i % width,
        });
    }
    Ok(())
}

/// `X~ theta`, one score per row.
fn scores(xa: &Mat<f64>, theta: &[f64]) -> Vec<f64> {
    let (n, d) = (xa.nrows(), xa.ncols());
    let mut z = vec![0.0; n];
    for (j, &t) in theta.iter().enumerate().take(d) {
        let col = xa.col(j);
        for (i, zi) in z.iter_mut().enumerate() {
            *zi += col[i] * t;
        }
    }
    z
}

/// `J` from the scores: mean log-loss plus `(l2/2) ||w||^2`.
fn objective(z: &[f64], labels: &[u8], w: &[f64], l2: f64) -> f64 {
    // -log p(y | z) = softplus(z) - y z = softplus(-z) for y = 1.
    let loss: f64 = z
        .iter()
        .zip(labels)
        .map(|(&z, &y)| if y == 1 { softplus(-z) } else { softplus(z) })
        .sum();
    loss / z.len() as f64 + 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>()
}

/// Gradient of `J` with respect to `[w; b]`.
fn gradient(xa: &Mat<f64>, z: &[f64], labels: &[u8], w: &[f64], l2: f64) -> Vec<f64> {
    let n = z.len() as f64;
    // p - y, written so that no 1 - p cancels: p - 1 = -sigmoid(-z).
    let resid: Vec<f64> = z
        .iter()
        .zip(labels)
        .map(|(&z, &y)| if y == 1 { -sigmoid(-z) } else { sigmoid(z) })
        .collect();
    (0..xa.ncols())
        .map(|j| {
            let col = xa.col(j);
            let g = resid
                .iter()
                .enumerate()
                .map(|(i, r)| col[i] * r)
                .sum::<f64>()
                / n;
            if j < w.len() {
                g + l2 * w[j]
            } else {
                g
            }
        })
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `1 / (1 + exp(-z))` without overflow for either sign.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(t))` without overflow or loss for large `|t|`.
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

/// `p (1 - p)` as `sigmoid(z) sigmoid(-z)`: no cancellation when p is near 1.
fn curvature(z: f64) -> f64 {
    sigmoid(z) * sigmoid(-z)
}
