//! Rotary position embedding (RoPE; Su et al., "RoFormer", 2021).
//!
//! Each head vector `x ∈ R^{d}` at position `p` is split into `d/2` feature pairs and pair `i`
//! is rotated by the angle `p·θ_i`, `θ_i = base^(−2i/d)`. Rotations compose, so
//! `⟨R(p)q, R(s)k⟩ = ⟨q, R(s − p)k⟩`: the score depends only on the offset `s − p`.
//!
//! Pairing convention: feature `f < d/2` is paired with `f + d/2` (the "rotate-half" layout
//! of GPT-NeoX/LLaMA), which needs only slices and no strided gathers:
//! `R(p)x = x ⊙ cos + rotate_half(x) ⊙ sin`, `rotate_half([x₁, x₂]) = [−x₂, x₁]`.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Cosine and sine tables for positions `offset .. offset + len`, each row-major
/// `[len, d_head]` in the rotate-half layout (`cos[p, f] = cos(p·θ_{f mod d/2})`).
/// `d_head` must be even.
pub fn rope_tables(offset: usize, len: usize, d_head: usize, base: f64) -> (Vec<f32>, Vec<f32>) {
    let half = d_head / 2;
    let mut cos = Vec::with_capacity(len * d_head);
    let mut sin = Vec::with_capacity(len * d_head);
    for p in offset..offset + len {
        for f in 0..d_head {
            let i = (f % half) as f64;
            let angle = p as f64 * base.powf(-2.0 * i / d_head as f64);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// The rotation of a RoPE layer with head width `d_head` (even) and frequency base `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Head width `d` (even).
    pub d_head: usize,
    /// Frequency base.
    pub base: f64,
}

impl Rope {
    /// Rotates `x` `[B, H, L, d]` whose first row sits at absolute position `offset`.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, offset: usize) -> Tensor<B, 4> {
        let [_, _, len, d] = x.dims();
        let device = x.device();
        let (cos, sin) = rope_tables(offset, len, d, self.base);
        let cos = Tensor::<B, 4>::from_data(TensorData::new(cos, [1, 1, len, d]), &device); // [1, 1, L, d]
        let sin = Tensor::<B, 4>::from_data(TensorData::new(sin, [1, 1, len, d]), &device); // [1, 1, L, d]
        rotate_with(x, cos, sin)
    }
}

/// `R x = x ⊙ cos + rotate_half(x) ⊙ sin` for `x` `[B, H, L, d]` and tables `cos`, `sin`
/// broadcastable to it (e.g. `[1, 1, L, d]`, rotate-half layout).
pub fn rotate_with<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
) -> Tensor<B, 4> {
    x.clone() * cos + rotate_half(x) * sin // [B, H, L, d]
}

/// The transpose (= inverse) of [`rotate_with`], used to carry a gradient back through the
/// rotation: `Rᵀy = y ⊙ cos − rotate_half(y) ⊙ sin`.
pub fn rotate_transpose_with<B: Backend>(
    y: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
) -> Tensor<B, 4> {
    y.clone() * cos - rotate_half(y) * sin // [B, H, L, d]
}

/// `[x₁, x₂] ↦ [−x₂, x₁]` along the last axis (`[B, H, L, d]`, `d` even).
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half); // [B, H, L, d/2]
    let x2 = x.narrow(3, half, half); // [B, H, L, d/2]
    Tensor::cat(vec![x2.neg(), x1], 3) // [B, H, L, d]
}
