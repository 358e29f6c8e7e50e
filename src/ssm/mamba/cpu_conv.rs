//! CPU fast path for `silu(causal_depthwise_conv(x))`: one Rust loop forward, one backward.
//!
//! The tensor-op convolution ([`CausalConv1d::forward`]) costs `K` slices, `K` products and
//! `K − 1` sums over `[B, L, E]`, each swept again by autodiff, plus the two ops of `silu`. On
//! the CPU backend (`burn-ndarray` f32, with or without `Autodiff`) this file computes the same
//! function in one pass and its gradients in one more, recomputing the pre-activation instead of
//! storing it. Other backends use the tensor ops. Dispatch as in `crate::nn::activation`.
//!
//! # Glossary
//! - `x_ext [B, K−1+L, E]`: input with the `K − 1` previous inputs prepended.
//! - `w [E, K]`, `bias [E]`: the filters; `p[b,t,e] = bias[e] + Σ_k w[e,k] x_ext[b,t+k,e]`.
//! - `out = silu(p)`; `g`: gradient of `out`; `dp = g · silu'(p)`.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::backend::Backend;
use burn::tensor::{Shape, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_ndarray::NdArrayTensor;

use super::conv::CausalConv1d;
use crate::backend::{Cpu, CpuAutodiff};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::ndarray_io::values;
use crate::nn::{silu, silu_derivative};

/// `silu(conv(x_ext))`: `x_ext [B, K−1+L, E]` → `[B, L, E]`, with the CPU fast path.
pub fn causal_conv_silu<B: Backend>(conv: &CausalConv1d<B>, x_ext: Tensor<B, 3>) -> Tensor<B, 3> {
    let w = conv.weight.val(); // [E, K]
    let bias = conv.bias.as_ref().map(|b| b.val()); // [E]
    match route::<B, _, Tensor<Cpu, 3>, Tensor<CpuAutodiff, 3>>(FusedOp::ConvSilu, x_ext) {
        Routed::CpuAutodiff(x) => {
            let w: Tensor<CpuAutodiff, 2> = same(w);
            let bias: Option<Tensor<CpuAutodiff, 1>> = bias.map(same);
            same(autodiff_forward(x, w, bias))
        }
        Routed::Cpu(x) => {
            let w: Tensor<Cpu, 2> = same(w);
            let bias: Option<Tensor<Cpu, 1>> = bias.map(same);
            let prim = |t: Tensor<Cpu, 2>| t.into_primitive().tensor();
            let out = forward(
                &x.into_primitive().tensor(),
                &prim(w),
                bias.map(|b| b.into_primitive().tensor()).as_ref(),
            );
            same(Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(
                out,
            )))
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(x) => silu(conv.forward(x)),
        Routed::Other(x) => silu(conv.forward(x)),
    }
}

/// Sizes `(batch, len_ext, channels, kernel)`.
fn dims(x: &NdArrayTensor, w: &NdArrayTensor) -> (usize, usize, usize, usize) {
    let xs = x.shape();
    (xs[0], xs[1], xs[2], w.shape()[1])
}

/// Pre-activations `p [B, L, E]` (the inner loop runs over contiguous channels).
fn pre_activation(
    x: &[f32],
    w_t: &[f32],
    bias: Option<&[f32]>,
    bs: usize,
    lx: usize,
    e: usize,
    k: usize,
) -> Vec<f32> {
    let l = lx + 1 - k;
    let mut p = vec![0.0f32; bs * l * e];
    for b in 0..bs {
        for t in 0..l {
            let row = &mut p[(b * l + t) * e..(b * l + t + 1) * e];
            if let Some(bias) = bias {
                row.copy_from_slice(bias);
            }
            for kk in 0..k {
                let src = &x[(b * lx + t + kk) * e..(b * lx + t + kk + 1) * e];
                let wk = &w_t[kk * e..(kk + 1) * e];
                for ((r, &xv), &wv) in row.iter_mut().zip(src).zip(wk) {
                    *r += wv * xv;
                }
            }
        }
    }
    p
}

/// `w [E, K]` → `w_t [K, E]`.
fn transpose_w(w: &[f32], e: usize, k: usize) -> Vec<f32> {
    let mut w_t = vec![0.0f32; k * e];
    for ch in 0..e {
        for kk in 0..k {
            w_t[kk * e + ch] = w[ch * k + kk];
        }
    }
    w_t
}

fn forward(x: &NdArrayTensor, w: &NdArrayTensor, bias: Option<&NdArrayTensor>) -> NdArrayTensor {
    let (bs, lx, e, k) = dims(x, w);
    let w_t = transpose_w(&values(w), e, k);
    let bias = bias.map(values);
    let mut p = pre_activation(&values(x), &w_t, bias.as_deref(), bs, lx, e, k);
    for v in p.iter_mut() {
        *v /= 1.0 + (-*v).exp();
    }
    NdArrayTensor::from_data(TensorData::new(p, [bs, lx + 1 - k, e]))
}

/// Gradients `(dx_ext [B, K−1+L, E], dw [E, K], dbias [E])` from `g [B, L, E]`.
fn backward(
    x: &NdArrayTensor,
    w: &NdArrayTensor,
    bias: Option<&NdArrayTensor>,
    g: &NdArrayTensor,
) -> (NdArrayTensor, NdArrayTensor, NdArrayTensor) {
    let (bs, lx, e, k) = dims(x, w);
    let l = lx + 1 - k;
    let xv = values(x);
    let w_t = transpose_w(&values(w), e, k);
    let bias = bias.map(values);
    let mut dp = pre_activation(&xv, &w_t, bias.as_deref(), bs, lx, e, k);
    for (d, &gv) in dp.iter_mut().zip(values(g).iter()) {
        *d = gv * silu_derivative(*d);
    }
    let mut dx = vec![0.0f32; bs * lx * e];
    let mut dw_t = vec![0.0f32; k * e];
    let mut db = vec![0.0f32; e];
    for b in 0..bs {
        for t in 0..l {
            let dpr = &dp[(b * l + t) * e..(b * l + t + 1) * e];
            for (acc, &d) in db.iter_mut().zip(dpr) {
                *acc += d;
            }
            for kk in 0..k {
                let off = (b * lx + t + kk) * e;
                let wk = &w_t[kk * e..(kk + 1) * e];
                for ((dxv, &d), &wv) in dx[off..off + e].iter_mut().zip(dpr).zip(wk) {
                    *dxv += d * wv;
                }
                let dwk = &mut dw_t[kk * e..(kk + 1) * e];
                for ((acc, &d), &xval) in dwk.iter_mut().zip(dpr).zip(&xv[off..off + e]) {
                    *acc += d * xval;
                }
            }
        }
    }
    let mut dw = vec![0.0f32; e * k];
    for ch in 0..e {
        for kk in 0..k {
            dw[ch * k + kk] = dw_t[kk * e + ch];
        }
    }
    (
        NdArrayTensor::from_data(TensorData::new(dx, [bs, lx, e])),
        NdArrayTensor::from_data(TensorData::new(dw, [e, k])),
        NdArrayTensor::from_data(TensorData::new(db, [e])),
    )
}

/// The backward node; parents `[x_ext, w, bias]` (bias may be an untracked placeholder).
#[derive(Debug)]
struct ConvSiluBackward;

#[derive(Debug, Clone)]
struct ConvSiluState {
    x: NdArrayTensor,
    w: NdArrayTensor,
    bias: Option<NdArrayTensor>,
}

impl Backward<Cpu, 3> for ConvSiluBackward {
    type State = ConvSiluState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<Cpu>(&ops.node);
        let s = ops.state;
        let (dx, dw, db) = backward(&s.x, &s.w, s.bias.as_ref(), &g);
        for (parent, grad) in ops.parents.into_iter().zip([dx, dw, db]) {
            if let Some(node) = parent {
                grads.register::<Cpu>(node.id, grad);
            }
        }
    }
}

fn autodiff_forward(
    x: Tensor<CpuAutodiff, 3>,
    w: Tensor<CpuAutodiff, 2>,
    bias: Option<Tensor<CpuAutodiff, 1>>,
) -> Tensor<CpuAutodiff, 3> {
    let device = x.device();
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let e = w.primitive.shape()[0];
    let has_bias = bias.is_some();
    // A missing bias becomes an untracked zero vector (no gradient reaches it).
    let bias = bias
        .unwrap_or_else(|| Tensor::zeros(Shape::new([e]), &device))
        .into_primitive()
        .tensor();
    let bias_prim = has_bias.then(|| bias.primitive.clone());
    let out = forward(&x.primitive, &w.primitive, bias_prim.as_ref());
    let prep = ConvSiluBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish(
            ConvSiluState {
                x: x.primitive,
                w: w.primitive,
                bias: bias_prim,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::{Cpu, CpuAutodiff};
    use crate::ssm::mamba::test_util::{max_abs_diff, vec_of};

    /// Values `U(−scale, scale)` from a local seeded generator (the backend's global one is
    /// shared with every other test thread).
    fn data(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// The one-loop `silu(conv(x))` (values and gradients of input, filters and bias) agrees with
    /// the tensor-op convolution followed by `silu`, with and without a bias. Each backward pass
    /// builds its own leaves (input and filters): two passes through one leaf can lose a
    /// gradient to another test's backward in Burn 0.21 (tracel-ai/burn#5573).
    #[test]
    fn cpu_conv_silu_matches_tensor_op_convolution() {
        use crate::ssm::mamba::CausalConv1d;
        type AD = CpuAutodiff;
        let device = Default::default();
        for (bias, k) in [(true, 4), (false, 3), (true, 1)] {
            let (e, l) = (5, 7);
            let bound = 1.0 / (k as f32).sqrt();
            let weight = data(1, e * k, bound);
            let bias_data = bias.then(|| data(2, e, bound));
            let x_data = data(3, 2 * (l + k - 1) * e, 2.5);
            let conv_on = |device: &crate::backend::CpuDevice| CausalConv1d::<AD> {
                weight: burn::module::Param::from_tensor(
                    Tensor::<AD, 2>::from_data(TensorData::new(weight.clone(), [e, k]), device)
                        .require_grad(),
                ),
                bias: bias_data.as_ref().map(|b| {
                    burn::module::Param::from_tensor(
                        Tensor::<AD, 1>::from_data(TensorData::new(b.clone(), [e]), device)
                            .require_grad(),
                    )
                }),
            };
            let input = || {
                Tensor::<AD, 3>::from_data(
                    TensorData::new(x_data.clone(), [2, l + k - 1, e]),
                    &device,
                )
            };
            let w = Tensor::<AD, 3>::from_data(
                TensorData::new(data(4, 2 * l * e, 1.7), [2, l, e]),
                &device,
            );
            let run = |fast: bool| {
                let conv = conv_on(&device);
                let x = input().require_grad();
                let y = if fast {
                    causal_conv_silu(&conv, x.clone())
                } else {
                    burn::tensor::activation::silu(conv.forward(x.clone()))
                };
                let g = (y.clone() * w.clone()).sum().backward();
                let mut out = vec![
                    vec_of(y),
                    vec_of(x.grad(&g).unwrap()),
                    vec_of(conv.weight.grad(&g).unwrap()),
                ];
                if let Some(b) = &conv.bias {
                    out.push(vec_of(b.grad(&g).unwrap()));
                }
                out
            };
            let (fast, slow) = (run(true), run(false));
            assert_eq!(fast.len(), slow.len());
            for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    max_abs_diff(f, s) < 1e-5,
                    "bias {bias} K {k} part #{i}: {}",
                    max_abs_diff(f, s)
                );
            }
            // Plain CPU backend (no autodiff) takes the kernel as well.
            let conv = conv_on(&device);
            let conv_plain = CausalConv1d::<Cpu> {
                weight: burn::module::Param::from_tensor(conv.weight.val().inner()),
                bias: conv
                    .bias
                    .as_ref()
                    .map(|b| burn::module::Param::from_tensor(b.val().inner())),
            };
            let y_plain = vec_of(causal_conv_silu(&conv_plain, input().inner()));
            assert!(max_abs_diff(&y_plain, &slow[0]) < 1e-5);
        }
    }
}
