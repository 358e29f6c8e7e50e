//! [`AttentionBackend`]: scaled dot-product attention as one backend operation.
//!
//! The default bodies build it from tensor primitives (any backend); the CPU backend runs the
//! Rust kernel of [`kernel`](super::kernel), the CubeCL backends (`Wgpu`, `Cuda`) the `#[cube]`
//! kernels of `fused_cubecl.rs`, and `Autodiff<B>` wraps `B`'s forward
//! in one backward node whose gradient is `B::fused_attention_backward`, so training records
//! one graph node per attention call instead of about ten.
//!
//! # Glossary
//! - `Q` `[B, H, Lq, dk]`, `K` `[B, H, Lk, dk]`, `V` `[B, H, Lk, dv]`; `s` the score scale.
//! - `bias` `[Bb, Hb, Lq, Lk]`, `Bb ∈ {1, B}`, `Hb ∈ {1, H}`: a constant (causal mask, ALiBi,
//!   key padding), no gradient.
//! - `R_q`, `R_k`: optional RoPE rotations of `Q` and `K` (tables `cos`, `sin` `[L, dk]` in the
//!   rotate-half layout of `position::rope_tables`); `Q̃ = R_q Q`, `K̃ = R_k K`.
//! - `P = softmax(s·Q̃·K̃ᵀ + bias)` `[B, H, Lq, Lk]`, `O = P·V` `[B, H, Lq, dv]`.

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, backend::Backend, ops::FloatTensor};

use super::{ScoreMask, scaled_dot_product_attention};
use crate::backend::{prim, wrap};
use crate::position::rope::{rotate_transpose_with, rotate_with};

/// RoPE rotation tables of the queries and the keys, `[L, dk]` each (constants).
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    /// `cos` at the query positions, `[Lq, dk]`.
    pub cos_q: FloatTensor<B>,
    /// `sin` at the query positions, `[Lq, dk]`.
    pub sin_q: FloatTensor<B>,
    /// `cos` at the key positions, `[Lk, dk]`.
    pub cos_k: FloatTensor<B>,
    /// `sin` at the key positions, `[Lk, dk]`.
    pub sin_k: FloatTensor<B>,
}

impl<B: Backend> RopeTables<B> {
    /// `[L, dk]` → `[1, 1, L, dk]`, the shape `rotate_with` broadcasts.
    fn table(t: &FloatTensor<B>) -> Tensor<B, 4> {
        wrap::<B, 2>(t.clone()).unsqueeze::<4>()
    }

    /// `(R_q q, R_k k)` with tensor ops.
    pub(crate) fn rotate(&self, q: Tensor<B, 4>, k: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (
            rotate_with(q, Self::table(&self.cos_q), Self::table(&self.sin_q)),
            rotate_with(k, Self::table(&self.cos_k), Self::table(&self.sin_k)),
        )
    }

    /// `(R_qᵀ dq̃, R_kᵀ dk̃)` with tensor ops.
    pub(crate) fn unrotate(
        &self,
        dq: Tensor<B, 4>,
        dk: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (
            rotate_transpose_with(dq, Self::table(&self.cos_q), Self::table(&self.sin_q)),
            rotate_transpose_with(dk, Self::table(&self.cos_k), Self::table(&self.sin_k)),
        )
    }
}

/// Inputs of the fused attention operation.
#[derive(Debug, Clone)]
pub struct FusedAttentionInput<B: Backend> {
    /// Queries `[B, H, Lq, dk]`.
    pub q: FloatTensor<B>,
    /// Keys `[B, H, Lk, dk]`.
    pub k: FloatTensor<B>,
    /// Values `[B, H, Lk, dv]`.
    pub v: FloatTensor<B>,
    /// Constant additive bias `[Bb, Hb, Lq, Lk]` with `Bb ∈ {1, B}`, `Hb ∈ {1, H}` (no
    /// gradient).
    pub bias: Option<FloatTensor<B>>,
    /// RoPE applied to `Q` and `K` inside the op (`None`: they are used as given).
    pub rope: Option<RopeTables<B>>,
    /// Score scale `s` (usually `1/√dk`).
    pub scale: f32,
}

/// Gradients of the fused attention operation.
#[derive(Debug, Clone)]
pub struct FusedAttentionGrads<B: Backend> {
    /// `dQ` `[B, H, Lq, dk]`.
    pub q: FloatTensor<B>,
    /// `dK` `[B, H, Lk, dk]`.
    pub k: FloatTensor<B>,
    /// `dV` `[B, H, Lk, dv]`.
    pub v: FloatTensor<B>,
}

/// `O = softmax(s·Q·Kᵀ + bias)·V` `[B, H, Lq, dv]` as one operation on any backend: the Rust
/// kernel on `NdArray<f32>`, the CubeCL kernels on `Wgpu` and `Cuda`, one autodiff node under
/// the `Autodiff` of each, tensor ops elsewhere (run-time dispatch by backend type). Returns the weights `P` too when `save_weights` and the
/// backend keeps them.
pub fn fused_attention_forward<B: Backend>(
    input: FusedAttentionInput<B>,
    save_weights: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::dispatch::{FusedOp, Routed, route, same};
    type OnCpu = FusedAttentionInput<Cpu>;
    type OnCpuAutodiff = FusedAttentionInput<CpuAutodiff>;
    match route::<B, _, OnCpu, OnCpuAutodiff>(FusedOp::Attention, input) {
        Routed::Cpu(i) => same(Cpu::fused_attention_forward(i, save_weights)),
        Routed::CpuAutodiff(i) => same(CpuAutodiff::fused_attention_forward(i, save_weights)),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(i) => {
            crate::dispatch::on_gpu!(B, i, |i: G| G::fused_attention_forward(i, save_weights))
        }
        Routed::Other(i) => tensor_op_forward(i, save_weights),
    }
}

/// Gradients of `Σ dO ⊙ O` with respect to `Q`, `K`, `V` on any backend (the kernel on
/// `NdArray<f32>`, tensor ops elsewhere), given the forward's weights or `None`.
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // for `seqlayers::internals`
pub fn fused_attention_backward<B: Backend>(
    input: FusedAttentionInput<B>,
    weights: Option<FloatTensor<B>>,
    d_out: FloatTensor<B>,
) -> FusedAttentionGrads<B> {
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::dispatch::{FusedOp, Routed, route, same};
    type Args<B> = (
        FusedAttentionInput<B>,
        Option<FloatTensor<B>>,
        FloatTensor<B>,
    );
    match route::<B, _, Args<Cpu>, Args<CpuAutodiff>>(FusedOp::Attention, (input, weights, d_out)) {
        Routed::Cpu((i, w, d)) => same(Cpu::fused_attention_backward(i, w, d)),
        // A backward called on the autodiff backend itself: tensor ops, differentiable.
        Routed::CpuAutodiff((i, w, d)) => same(tensor_op_backward(i, w, d)),
        // The kernels' backward on a plain GPU backend; tensor ops (differentiable) on its
        // `Autodiff`, where `AttentionBackend::fused_attention_backward` keeps its default body.
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu((i, w, d)) => crate::dispatch::on_gpu!(B, (i, w, d), |a: G| {
            let (i, w, d) = a;
            G::fused_attention_backward(i, w, d)
        }),
        Routed::Other((i, w, d)) => tensor_op_backward(i, w, d),
    }
}

/// The forward from tensor primitives.
fn tensor_op_forward<B: Backend>(
    input: FusedAttentionInput<B>,
    save_weights: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let mask = ScoreMask {
        bias: input.bias.map(wrap),
        ..ScoreMask::none()
    };
    let (q, k) = (wrap(input.q), wrap(input.k));
    let (q, k) = match &input.rope {
        Some(rope) => rope.rotate(q, k),
        None => (q, k),
    };
    let out = scaled_dot_product_attention::<B>(q, k, wrap(input.v), input.scale, &mask);
    (prim(out.context), save_weights.then(|| prim(out.weights)))
}

/// The backward from tensor primitives.
fn tensor_op_backward<B: Backend>(
    input: FusedAttentionInput<B>,
    weights: Option<FloatTensor<B>>,
    d_out: FloatTensor<B>,
) -> FusedAttentionGrads<B> {
    let (q, k): (Tensor<B, 4>, Tensor<B, 4>) = (wrap(input.q), wrap(input.k));
    let (q, k) = match &input.rope {
        Some(rope) => rope.rotate(q, k), // Q̃, K̃
        None => (q, k),
    };
    let v: Tensor<B, 4> = wrap(input.v);
    let d_out: Tensor<B, 4> = wrap(d_out);
    let p: Tensor<B, 4> = match weights {
        Some(w) => wrap(w),
        None => {
            let mut scores = q
                .clone()
                .mul_scalar(input.scale)
                .matmul(k.clone().swap_dims(2, 3)); // [B, H, Lq, Lk]
            if let Some(bias) = input.bias {
                scores = scores + wrap::<B, 4>(bias);
            }
            softmax(scores, 3)
        }
    };
    let d_v = p.clone().swap_dims(2, 3).matmul(d_out.clone()); // [B, H, Lk, dv]
    let d_p = d_out.matmul(v.swap_dims(2, 3)); // [B, H, Lq, Lk]
    let row = (d_p.clone() * p.clone()).sum_dim(3); // [B, H, Lq, 1]
    let d_s = p * (d_p - row); // [B, H, Lq, Lk]
    let d_q = d_s.clone().matmul(k).mul_scalar(input.scale); // [B, H, Lq, dk]
    let d_k = d_s.swap_dims(2, 3).matmul(q).mul_scalar(input.scale); // [B, H, Lk, dk]
    let (d_q, d_k) = match &input.rope {
        Some(rope) => rope.unrotate(d_q, d_k),
        None => (d_q, d_k),
    };
    FusedAttentionGrads {
        q: prim(d_q),
        k: prim(d_k),
        v: prim(d_v),
    }
}

/// The crate's implementation detail behind [`fused_attention_forward`]: a backend with a fused
/// attention op. Default bodies in tensor ops; `NdArray<f32>` overrides them with the kernel and
/// `Autodiff<B>` records one graph node.
pub(crate) trait AttentionBackend: Backend {
    /// `O = softmax(s·Q·Kᵀ + bias)·V` `[B, H, Lq, dv]`, and the weights `P` when `save_weights`
    /// (for the backward; a backend may return `None` and recompute them).
    fn fused_attention_forward(
        input: FusedAttentionInput<Self>,
        save_weights: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        tensor_op_forward(input, save_weights)
    }

    /// Gradients of `Σ dO ⊙ O` with respect to `Q`, `K`, `V` (before the rotation, if RoPE),
    /// given the forward's weights (or `None` to recompute them).
    fn fused_attention_backward(
        input: FusedAttentionInput<Self>,
        weights: Option<FloatTensor<Self>>,
        d_out: FloatTensor<Self>,
    ) -> FusedAttentionGrads<Self> {
        tensor_op_backward(input, weights, d_out)
    }
}
