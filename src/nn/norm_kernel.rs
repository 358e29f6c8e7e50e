//! LayerNorm and RMSNorm over the last axis as one op: a Rust kernel forward and backward on the
//! CPU backend, Burn's tensor ops elsewhere.
//!
//! Burn 0.21 composes LayerNorm from about nine tensor ops (mean, subtract, square, mean, add,
//! sqrt, divide, scale, shift) and RMSNorm from six; under autodiff each one allocates and
//! sweeps a whole `[rows, D]` tensor forward and again backward. Here each row is normalized in
//! one pass, only the per-row statistics (`μ`, `r`) are kept for the backward, and the backward
//! is one more pass per row plus the column sums of `∂γ`, `∂β`.
//!
//! # Glossary
//! - `x`, `y`, `g = ∂y`: `[rows, D]` (every leading axis flattened); `γ`, `β`: `[D]`.
//! - LayerNorm: `μ = mean(x)`, `r = 1/√(mean((x − μ)²) + ε)`, `x̂ = (x − μ) r`, `y = x̂ γ + β`.
//! - RMSNorm: `μ = 0`, `r = 1/√(mean(x²) + ε)`, `x̂ = x r`, `y = x̂ γ`.
//! - Backward, with `ĝ = g γ`: `∂x = r (ĝ − mean(ĝ) − x̂ mean(ĝ x̂))` (LayerNorm; RMSNorm has no
//!   `mean(ĝ)` term), `∂γ = Σ_rows g x̂`, `∂β = Σ_rows g`.
//!
//! Rows are independent, so the result does not depend on the thread count; the column sums
//! run in row order.

use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};
use burn_ndarray::NdArrayTensor;
use rayon::prelude::*;

use crate::backend::{Cpu, CpuAutodiff, prim};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::ndarray_io::{column_sums, register_parent_grads, tensor, track_node, values, zeroed};

/// Which normalization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NormOp {
    /// LayerNorm (centered; `β` optional).
    Layer,
    /// RMSNorm (not centered, no `β`).
    Rms,
}

/// `norm(x) γ + β` over the last axis of `x [.., D]`, with the CPU kernel where there is one.
pub(crate) fn normalize<B: Backend, const D: usize>(
    op: NormOp,
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    match route::<B, _, Tensor<Cpu, D>, Tensor<CpuAutodiff, D>>(FusedOp::Norm, x) {
        Routed::CpuAutodiff(x) => same(autodiff_normalize(
            op,
            x,
            same(gamma),
            beta.map(same),
            epsilon,
        )),
        Routed::Cpu(x) => {
            let beta = beta.map(|b: Tensor<B, 1>| prim::<Cpu, 1>(same(b)));
            let (y, _) = forward(
                op,
                &prim(x),
                &prim::<Cpu, 1>(same(gamma)),
                beta.as_ref(),
                epsilon,
            );
            same(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(y)))
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(x) => tensor_ops(op, x, gamma, beta, epsilon),
        Routed::Other(x) => tensor_ops(op, x, gamma, beta, epsilon),
    }
}

/// The same function in Burn tensor ops (every backend without the kernel; the test oracle).
pub(crate) fn tensor_ops<B: Backend, const D: usize>(
    op: NormOp,
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    let centered = match op {
        NormOp::Layer => x.clone() - x.mean_dim(D - 1), // [.., D]
        NormOp::Rms => x,
    };
    let r = (centered.clone().square().mean_dim(D - 1) + epsilon) // [.., 1]
        .sqrt()
        .recip();
    let y = centered * r * gamma.unsqueeze(); // [.., D]
    match beta {
        Some(beta) => y + beta.unsqueeze(),
        None => y,
    }
}

/// Per-row statistics the backward needs: `μ` (0 for RMSNorm) and `r`.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

/// Rows handled per parallel task.
const ROWS_PER_TASK: usize = 64;

/// One forward task's slices: `((y, x), μ), r` of up to [`ROWS_PER_TASK`] rows.
type ForwardTask<'a> = (((&'a mut [f32], &'a [f32]), &'a mut [f32]), &'a mut [f32]);

/// One backward task's slices: `(((∂x, x), g), μ), r`.
type BackwardTask<'a> = (
    (((&'a mut [f32], &'a [f32]), &'a [f32]), &'a [f32]),
    &'a [f32],
);

/// `(y, stats)` on ndarray tensors.
fn forward(
    op: NormOp,
    x: &NdArrayTensor,
    gamma: &NdArrayTensor,
    beta: Option<&NdArrayTensor>,
    epsilon: f64,
) -> (NdArrayTensor, Stats) {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let (xv, gv) = (values(x), values(gamma));
    let bv = beta.map(values);
    let rows = xv.len() / d.max(1);
    let mut y = zeroed(xv.len());
    let mut mean = vec![0.0f32; rows];
    let mut rstd = vec![0.0f32; rows];
    let eps = epsilon as f32;
    let task = |(((y, x), mean), rstd): ForwardTask<'_>| {
        for (((y, x), mean), rstd) in y
            .chunks_exact_mut(d)
            .zip(x.chunks_exact(d))
            .zip(mean.iter_mut())
            .zip(rstd.iter_mut())
        {
            let mu = match op {
                NormOp::Layer => sum(x) / d as f32,
                NormOp::Rms => 0.0,
            };
            let var = sum_sq_dev(x, mu) / d as f32;
            let r = 1.0 / (var + eps).sqrt();
            match &bv {
                Some(b) => {
                    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gv.iter()).zip(b.iter()) {
                        *y = (x - mu) * r * g + b;
                    }
                }
                None => {
                    for ((y, &x), &g) in y.iter_mut().zip(x).zip(gv.iter()) {
                        *y = (x - mu) * r * g;
                    }
                }
            }
            (*mean, *rstd) = (mu, r);
        }
    };
    // Rows are independent: tasks of ROWS_PER_TASK rows on Rayon's pool (on one thread, or
    // with a single task, this is a plain loop).
    let chunk = ROWS_PER_TASK * d.max(1);
    y.par_chunks_mut(chunk)
        .zip(xv.par_chunks(chunk))
        .zip(mean.par_chunks_mut(ROWS_PER_TASK))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .for_each(task);
    (tensor(y, shape), Stats { mean, rstd })
}

/// `Σ x` with 8 partial sums (a fixed order; vectorizes).
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ (x − μ)²` with 8 partial sums.
fn sum_sq_dev(x: &[f32], mu: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v - mu) * (v - mu);
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| (v - mu) * (v - mu))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ a b` with 8 partial sums.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// What the backward keeps: the input, `γ` and the row statistics.
#[derive(Debug, Clone)]
struct State {
    op: NormOp,
    x: NdArrayTensor,
    gamma: NdArrayTensor,
    stats: Stats,
}

/// `(∂x, ∂γ, ∂β)` for the requested ones, from `g = ∂y`.
fn backward(state: &State, g: &NdArrayTensor, want: [bool; 3]) -> [Option<NdArrayTensor>; 3] {
    let shape = state.x.shape();
    let d = shape[shape.num_dims() - 1];
    let (xv, gammav, gv) = (values(&state.x), values(&state.gamma), values(g));
    let Stats { mean, rstd } = &state.stats;
    let dx = want[0].then(|| {
        let mut dx = zeroed(xv.len());
        let task = |((((dx, x), g), mean), rstd): BackwardTask<'_>| {
            let mut gh = vec![0.0f32; d]; // ĝ = g γ
            let mut xh = vec![0.0f32; d]; // x̂
            for ((((dx, x), g), &mu), &r) in dx
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(g.chunks_exact(d))
                .zip(mean)
                .zip(rstd)
            {
                for i in 0..d {
                    gh[i] = g[i] * gammav[i];
                    xh[i] = (x[i] - mu) * r;
                }
                let mean_gx = dot(&gh, &xh) / d as f32;
                let mean_g = match state.op {
                    NormOp::Layer => sum(&gh) / d as f32,
                    NormOp::Rms => 0.0,
                };
                for i in 0..d {
                    dx[i] = r * (gh[i] - mean_g - xh[i] * mean_gx);
                }
            }
        };
        let chunk = ROWS_PER_TASK * d.max(1);
        dx.par_chunks_mut(chunk)
            .zip(xv.par_chunks(chunk))
            .zip(gv.par_chunks(chunk))
            .zip(mean.par_chunks(ROWS_PER_TASK))
            .zip(rstd.par_chunks(ROWS_PER_TASK))
            .for_each(task);
        tensor(dx, shape.clone())
    });
    // ∂γ = Σ g x̂ and ∂β = Σ g, each column summed over the rows in order.
    let rows = mean.len();
    let dgamma = want[1].then(|| {
        column_sums(rows, d, |row, columns, acc| {
            let (mu, r) = (mean[row], rstd[row]);
            let (x, g) = (&xv[row * d..][columns.clone()], &gv[row * d..][columns]);
            for ((acc, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                *acc += g * (x - mu) * r;
            }
        })
    });
    let dbeta = want[2].then(|| {
        column_sums(rows, d, |row, columns, acc| {
            for (acc, &g) in acc.iter_mut().zip(&gv[row * d..][columns]) {
                *acc += g;
            }
        })
    });
    [
        dx,
        dgamma.map(|v| tensor(v, [d])),
        dbeta.map(|v| tensor(v, [d])),
    ]
}

/// The backward node with `β` (`N = 3`: x, γ, β) or without (`N = 2`).
#[derive(Debug)]
struct NormBackward;

impl Backward<Cpu, 3> for NormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_parent_grads(ops, grads, backward);
    }
}

impl Backward<Cpu, 2> for NormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_parent_grads(ops, grads, backward);
    }
}

/// Records `y` as the output of a [`NormBackward`] step over `parents` (x, γ and maybe β).
fn track<const N: usize>(
    op: NormOp,
    parents: [&FloatTensor<CpuAutodiff>; N],
    y: NdArrayTensor,
    stats: Stats,
) -> FloatTensor<CpuAutodiff>
where
    NormBackward: Backward<Cpu, N, State = State>,
{
    track_node(NormBackward, parents, y, || State {
        op,
        x: parents[0].primitive.clone(),
        gamma: parents[1].primitive.clone(),
        stats,
    })
}

fn autodiff_normalize<const D: usize>(
    op: NormOp,
    x: Tensor<CpuAutodiff, D>,
    gamma: Tensor<CpuAutodiff, 1>,
    beta: Option<Tensor<CpuAutodiff, 1>>,
    epsilon: f64,
) -> Tensor<CpuAutodiff, D> {
    let (x, gamma, beta) = (prim(x), prim(gamma), beta.map(prim));
    let (y, stats) = forward(
        op,
        &x.primitive,
        &gamma.primitive,
        beta.as_ref().map(|b| &b.primitive),
        epsilon,
    );
    let out = match &beta {
        Some(b) => track(op, [&x, &gamma, b], y, stats),
        None => track(op, [&x, &gamma], y, stats),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64, scale: f32, shift: f32) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| shift + scale * rng.random_range(-1.0f32..1.0))
            .collect()
    }

    fn values_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    /// The kernel against the tensor-op formula on `Autodiff<NdArray<f32>>`: the value and the
    /// gradients of `x`, `γ` and `β`, for both kinds, with and without `β`, on rows that are not
    /// a multiple of the 8-lane sums (`D = 13`) and more rows than one parallel task (200 > 64),
    /// inputs far from zero mean (the centering must be exact, not `E[x²] − μ²`). The f64
    /// reference of every norm is in `tests/suite/reference_f64.rs`.
    #[test]
    fn kernel_matches_tensor_ops_in_value_and_gradient() {
        type AD = CpuAutodiff;
        let device = Default::default();
        let (rows, d) = (200, 13);
        let x = random(rows * d, 1, 2.0, 3.0);
        let w = random(rows * d, 2, 1.0, 0.0);
        let gamma = random(d, 3, 0.5, 1.0);
        let beta = random(d, 4, 0.5, 0.0);
        for (op, with_beta) in [
            (NormOp::Layer, true),
            (NormOp::Layer, false),
            (NormOp::Rms, false),
        ] {
            let run = |fused: bool| {
                let leaf = |v: &Vec<f32>| {
                    Tensor::<AD, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &device)
                };
                let xt: Tensor<AD, 2> = leaf(&x).reshape([rows, d]).require_grad();
                let gt = leaf(&gamma).require_grad();
                let bt = leaf(&beta).require_grad();
                let b = with_beta.then(|| bt.clone());
                let y = if fused {
                    normalize(op, xt.clone(), gt.clone(), b, 1e-5)
                } else {
                    tensor_ops(op, xt.clone(), gt.clone(), b, 1e-5)
                };
                let wt = Tensor::<AD, 1>::from_data(TensorData::new(w.clone(), [w.len()]), &device)
                    .reshape([rows, d]);
                let grads = (y.clone() * wt).sum().backward();
                let mut out = vec![
                    values_of(y),
                    values_of(xt.grad(&grads).unwrap()),
                    values_of(gt.grad(&grads).unwrap()),
                ];
                if with_beta {
                    out.push(values_of(bt.grad(&grads).unwrap()));
                }
                out
            };
            let (fused, plain) = (run(true), run(false));
            for (what, (a, b)) in ["y", "∂x", "∂γ", "∂β"].iter().zip(fused.iter().zip(&plain))
            {
                let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (i, (u, v)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (u - v).abs() <= 2e-5 * scale,
                        "{op:?} β={with_beta} {what}[{i}]: {u} vs {v}"
                    );
                }
            }
        }
    }

    /// Hand-derived values: the row `[1, 2, 3, 4]` has `μ = 2.5`, `σ² = 1.25`; with `γ = 1`,
    /// `β = 0` and `ε = 0`, LayerNorm gives `(x − 2.5)/√1.25` and RMSNorm `x/√7.5`.
    #[test]
    fn hand_derived_rows() {
        let device = Default::default();
        let x = Tensor::<Cpu, 2>::from_floats([[1.0, 2.0, 3.0, 4.0]], &device);
        let ones = Tensor::<Cpu, 1>::ones([4], &device);
        let layer = values_of(normalize(NormOp::Layer, x.clone(), ones.clone(), None, 0.0));
        let rms = values_of(normalize(NormOp::Rms, x, ones, None, 0.0));
        for (i, v) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
            assert!(
                (layer[i] - (v - 2.5) / 1.25f32.sqrt()).abs() < 1e-6,
                "{layer:?}"
            );
            assert!((rms[i] - v / 7.5f32.sqrt()).abs() < 1e-6, "{rms:?}");
        }
    }
}
