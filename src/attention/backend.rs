//! [`AttentionBackend`]: scaled dot-product attention as one backend operation.
//!
//! The default bodies build it from tensor primitives (any backend, e.g. CUDA); the CPU backend
//! runs the Rust kernel of [`kernel`](super::kernel), and `Autodiff<B>` wraps `B`'s forward
//! in one backward node whose gradient is `B::fused_attention_backward`, so training records
//! one graph node per attention call instead of about ten.
//!
//! # Glossary
//! - `Q` `[B, H, Lq, dk]`, `K` `[B, H, Lk, dk]`, `V` `[B, H, Lk, dv]`; `s` the score scale.
//! - `bias` `[1, Hb, Lq, Lk]`, `Hb ∈ {1, H}`: a constant (causal mask, ALiBi), no gradient.
//! - `P = softmax(s·Q·Kᵀ + bias)` `[B, H, Lq, Lk]`, `O = P·V` `[B, H, Lq, dv]`.

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, backend::Backend, ops::FloatTensor};

use super::{ScoreMask, scaled_dot_product_attention};
use crate::backend::{prim, wrap};

/// Inputs of the fused attention operation.
#[derive(Debug, Clone)]
pub struct FusedAttentionInput<B: Backend> {
    /// Queries `[B, H, Lq, dk]`.
    pub q: FloatTensor<B>,
    /// Keys `[B, H, Lk, dk]`.
    pub k: FloatTensor<B>,
    /// Values `[B, H, Lk, dv]`.
    pub v: FloatTensor<B>,
    /// Constant additive bias `[1, Hb, Lq, Lk]` with `Hb ∈ {1, H}` (no gradient).
    pub bias: Option<FloatTensor<B>>,
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

/// A backend that can run attention as one operation. Implemented for the CPU backend (Rust
/// kernel), for `Autodiff` of any implementor (custom backward node) and, with the `cuda`
/// feature, for CUDA (the default tensor-op bodies).
pub trait AttentionBackend: Backend {
    /// `O = softmax(s·Q·Kᵀ + bias)·V` `[B, H, Lq, dv]`, and the weights `P` when `save_weights`
    /// (for the backward; a backend may return `None` and recompute them).
    fn fused_attention_forward(
        input: FusedAttentionInput<Self>,
        save_weights: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let mask = ScoreMask {
            bias: input.bias.map(wrap),
            ..ScoreMask::none()
        };
        let out = scaled_dot_product_attention::<Self>(
            wrap(input.q),
            wrap(input.k),
            wrap(input.v),
            input.scale,
            &mask,
        );
        (prim(out.context), save_weights.then(|| prim(out.weights)))
    }

    /// Gradients of `Σ dO ⊙ O` with respect to `Q`, `K`, `V`, given the forward's weights (or
    /// `None` to recompute them).
    fn fused_attention_backward(
        input: FusedAttentionInput<Self>,
        weights: Option<FloatTensor<Self>>,
        d_out: FloatTensor<Self>,
    ) -> FusedAttentionGrads<Self> {
        let q: Tensor<Self, 4> = wrap(input.q);
        let k: Tensor<Self, 4> = wrap(input.k);
        let v: Tensor<Self, 4> = wrap(input.v);
        let d_out: Tensor<Self, 4> = wrap(d_out);
        let p: Tensor<Self, 4> = match weights {
            Some(w) => wrap(w),
            None => {
                let mut scores = q
                    .clone()
                    .mul_scalar(input.scale)
                    .matmul(k.clone().swap_dims(2, 3)); // [B, H, Lq, Lk]
                if let Some(bias) = input.bias {
                    scores = scores + wrap::<Self, 4>(bias);
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
        FusedAttentionGrads {
            q: prim(d_q),
            k: prim(d_k),
            v: prim(d_v),
        }
    }
}

/// The GPU backend uses the tensor-op default bodies.
#[cfg(feature = "cuda")]
impl AttentionBackend for crate::backend::Cuda {}
