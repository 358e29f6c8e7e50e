//! Multi-head scaled dot-product attention written from tensor primitives.
//!
//! `Attention(Q, K, V) = softmax(Q·Kᵀ/√d_head + bias) · V` per head, with heads split from and
//! merged back into the model width, a fused Q/K/V projection and an output projection.
//! Self-attention, cross-attention (queries from one sequence, keys/values from another),
//! causal and padding masks, the relative position encodings of [`crate::position`]
//! (RoPE on Q/K, ALiBi/Hard-ALiBi as a score bias), incremental decoding with a [`KvCache`],
//! and three ablations: naive post-softmax causal masking, shared Q/K/V projections and MLP
//! Q/K/V projections ([`QkvProjection`]).
//! [`LinearAttention`] is the kernelized causal variant (no softmax, a fixed-size decoding
//! state; its own glossary is in its module).
//!
//! Two paths compute the same thing: [`scaled_dot_product_attention`] from tensor primitives
//! (used when the weights are asked for, with padding masks, and for the naive-masking
//! ablation), and the fused operation (one op, a Rust kernel on the CPU backend, one autodiff
//! node, routed by [`crate::kernels`]) used by `forward` otherwise.
//!
//! # Glossary
//! | symbol | meaning | shape |
//! |---|---|---|
//! | `B`, `L`, `D` | batch, sequence length, model width `d_model` | |
//! | `H`, `d_head` | heads and per-head width, `D = H·d_head` | |
//! | `x` | layer input (queries' sequence) | `[B, L, D]` |
//! | `c` | context for cross-attention (keys'/values' sequence) | `[B, Lk, D]` |
//! | `W_Q, W_K, W_V` | projections, stored fused as one `[D, P·D]` matrix | |
//! | `W₁`, `D_h` | hidden layer and width of MLP projections (`GELU(x W₁ + b₁) W_Q + b_Q`, …), fused `[D, P·D_h]` | |
//! | `Q, K, V` | projected queries, keys, values after the head split | `[B, H, L, d_head]` |
//! | `A = Q·Kᵀ/√d_head + bias` | pre-softmax scores | `[B, H, Lq, Lk]` |
//! | `A' = softmax(A)` | attention weights (rows sum to 1) | `[B, H, Lq, Lk]` |
//! | `O = A'·V`, `W_O` | per-head output, output projection | `[B, L, D]` after merge |
//! | `MASKED` | score given to a masked pair, effectively `−∞` | |

pub(crate) mod backend;
mod cache;
mod config;
mod fused_autodiff;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod fused_cubecl;
mod fused_ndarray;
mod kernel;
mod linear_attention;
mod mask;
mod mha;
mod sdpa;

pub(crate) use backend::{FusedAttentionInput, RopeTables, fused_attention_forward};
pub use cache::KvCache;
pub use config::{
    AttentionBlock, AttentionConfig, CausalMasking, QkvProjection, QkvSharing, Similarity,
};
pub use linear_attention::{
    LinearAttention, LinearAttentionBlock, LinearAttentionConfig, LinearAttentionState,
};
pub use mask::{ScoreMask, causal_keep, causal_mask_bias};
pub use mha::{AttentionInput, CrossKv, MultiHeadAttention};
pub use sdpa::{AttentionOutput, attention_with_similarity, scaled_dot_product_attention};

/// Score of a masked query/key pair: effectively `−∞`.
///
/// `exp(MASKED − max)` underflows to exactly `0` in f32, so every row with at least one
/// visible key gets precisely the weights of a `−∞` mask. Being finite, a row whose keys are
/// *all* masked (e.g. a left-padded query under a causal mask) gets finite weights instead of
/// `0/0 = NaN`, which would otherwise poison the gradients of the whole batch.
pub const MASKED: f32 = crate::nn::MASKED;
