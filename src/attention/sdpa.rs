//! The attention primitive: `softmax(s·Q·Kᵀ + bias)·V` on already split heads.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{ScoreMask, Similarity};
use crate::nn::MASKED;

/// Output of [`scaled_dot_product_attention`].
#[derive(Debug, Clone)]
pub struct AttentionOutput<B: Backend> {
    /// Per-head outputs `O = A'·V`, `[B, H, Lq, d_v]`.
    pub context: Tensor<B, 4>,
    /// Attention weights `A'`, `[B, H, Lq, Lk]` (rows sum to 1 unless naive masking zeroed
    /// some entries).
    pub weights: Tensor<B, 4>,
}

/// Scaled dot-product attention from primitives.
///
/// 1. `A = (scale·Q)·Kᵀ` — pairwise similarities (the scale is applied to `Q`, the smaller
///    tensor, which is the same as scaling `A`);
/// 2. `A += bias` (masks as [`MASKED`](crate::attention::MASKED), position biases), padded keys set
///    to `MASKED`;
/// 3. `A' = softmax(A)` over the keys;
/// 4. `A' ⊙= keep` for naive post-softmax masking (if set);
/// 5. `O = A'·V`.
///
/// Shapes: `q` `[B, H, Lq, d_k]`, `k` `[B, H, Lk, d_k]`, `v` `[B, H, Lk, d_v]`.
pub fn scaled_dot_product_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: f32,
    mask: &ScoreMask<B>,
) -> AttentionOutput<B> {
    attention_with_similarity(q, k, v, Similarity::Dot, scale, mask)
}

/// [`scaled_dot_product_attention`] with another [`Similarity`] in step 1 (`scale` = `1/√d`
/// is applied to the dot product and the distance; the cosine uses its temperature).
pub fn attention_with_similarity<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    similarity: Similarity,
    scale: f32,
    mask: &ScoreMask<B>,
) -> AttentionOutput<B> {
    let mut scores = match similarity {
        Similarity::Dot => q.mul_scalar(scale).matmul(k.swap_dims(2, 3)), // [B, H, Lq, Lk]
        Similarity::NegSquaredDistance => {
            let [b, h, lk, _] = k.dims();
            let k_sq = k.clone().powi_scalar(2).sum_dim(3).reshape([b, h, 1, lk]); // [B, H, 1, Lk]
            (q.matmul(k.swap_dims(2, 3)).mul_scalar(2.0) - k_sq).mul_scalar(scale) // [B, H, Lq, Lk]
        }
        Similarity::Cosine { temperature } => {
            let unit = |x: Tensor<B, 4>| {
                let norm = x.clone().powi_scalar(2).sum_dim(3).add_scalar(1e-12).sqrt(); // [.., 1]
                x / norm
            };
            unit(q)
                .matmul(unit(k).swap_dims(2, 3))
                .div_scalar(temperature as f32) // [B, H, Lq, Lk]
        }
    };
    if let Some(bias) = &mask.bias {
        scores = scores + bias.clone(); // [B, H, Lq, Lk] (bias broadcast over B and maybe H)
    }
    if let Some(padding) = &mask.key_padding {
        let [b, lk] = padding.dims();
        scores = scores.mask_fill(padding.clone().reshape([b, 1, 1, lk]), MASKED); // [B, H, Lq, Lk]
    }
    let mut weights = softmax(scores, 3); // [B, H, Lq, Lk]
    if let Some(keep) = &mask.keep_after_softmax {
        weights = weights * keep.clone(); // [B, H, Lq, Lk]
    }
    let context = weights.clone().matmul(v); // [B, H, Lq, d_v]
    AttentionOutput { context, weights }
}
