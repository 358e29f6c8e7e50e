//! Score masks: causal masking, position biases and key padding in one place.
//!
//! Masks are built once per call on the host as small `[1, H|1, Lq, Lk]` tables (the causal
//! mask and the ALiBi/Hard-ALiBi bias are combined into a single additive tensor), uploaded,
//! and broadcast over the batch, so a forward pass adds at most one bias tensor, one padding
//! fill and (naive ablation only) one multiplication to the scores.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use super::{CausalMasking, MASKED};
use crate::position::{PositionEncoding, alibi_bias, hard_alibi_bias};

/// Everything applied to the scores `A` of one attention call.
#[derive(Debug, Clone)]
pub struct ScoreMask<B: Backend> {
    /// Additive bias, broadcastable to `[B, H, Lq, Lk]` (masks as [`MASKED`]).
    pub bias: Option<Tensor<B, 4>>,
    /// Padded keys, `[B, Lk]`, `true` = padding (never attended to).
    pub key_padding: Option<Tensor<B, 2, Bool>>,
    /// 0/1 factor multiplied into the weights after the softmax (naive masking ablation),
    /// broadcastable to `[B, H, Lq, Lk]`.
    pub keep_after_softmax: Option<Tensor<B, 4>>,
}

impl<B: Backend> ScoreMask<B> {
    /// No masking at all.
    pub fn none() -> Self {
        Self {
            bias: None,
            key_padding: None,
            keep_after_softmax: None,
        }
    }

    /// Sets the key padding mask (`[B, Lk]`, `true` = padding).
    pub fn with_key_padding(mut self, padding: Option<Tensor<B, 2, Bool>>) -> Self {
        self.key_padding = padding;
        self
    }

    /// The masks of a self-attention call whose queries sit at absolute positions
    /// `q_offset .. q_offset + q_len` and keys at `0 .. k_len`.
    #[allow(clippy::too_many_arguments)]
    pub fn for_self_attention(
        position: &PositionEncoding,
        n_heads: usize,
        causal: bool,
        masking: CausalMasking,
        q_offset: usize,
        q_len: usize,
        k_len: usize,
        device: &B::Device,
    ) -> Self {
        let pre_softmax_causal = causal && masking == CausalMasking::PreSoftmax;
        let per_head = match *position {
            PositionEncoding::Alibi => Some(alibi_bias(n_heads, q_offset, q_len, k_len)),
            PositionEncoding::HardAlibi { windowed_heads } => Some(hard_alibi_bias(
                n_heads,
                windowed_heads,
                q_offset,
                q_len,
                k_len,
            )),
            _ => None,
        };
        let bias = match (per_head, pre_softmax_causal) {
            (Some(mut table), causal) => {
                if causal {
                    let mask = causal_mask_bias(q_offset, q_len, k_len);
                    for (i, value) in table.iter_mut().enumerate() {
                        *value += mask[i % mask.len()];
                    }
                }
                Some(upload(table, [1, n_heads, q_len, k_len], device))
            }
            (None, true) => Some(upload(
                causal_mask_bias(q_offset, q_len, k_len),
                [1, 1, q_len, k_len],
                device,
            )),
            (None, false) => None,
        };
        let keep_after_softmax =
            (causal && masking == CausalMasking::NaivePostSoftmax).then(|| {
                upload(
                    causal_keep(q_offset, q_len, k_len),
                    [1, 1, q_len, k_len],
                    device,
                )
            });
        Self {
            bias,
            key_padding: None,
            keep_after_softmax,
        }
    }
}

/// Causal bias, row-major `[q_len, k_len]`: `0` where key `j ≤ i = q_offset + row`,
/// [`MASKED`] for future keys.
pub fn causal_mask_bias(q_offset: usize, q_len: usize, k_len: usize) -> Vec<f32> {
    causal_table(q_offset, q_len, k_len, 0.0, MASKED)
}

/// Causal 0/1 keep matrix, row-major `[q_len, k_len]`: `1` where key `j ≤ q_offset + row`.
pub fn causal_keep(q_offset: usize, q_len: usize, k_len: usize) -> Vec<f32> {
    causal_table(q_offset, q_len, k_len, 1.0, 0.0)
}

fn causal_table(q_offset: usize, q_len: usize, k_len: usize, past: f32, future: f32) -> Vec<f32> {
    let mut table = Vec::with_capacity(q_len * k_len);
    for r in 0..q_len {
        for j in 0..k_len {
            table.push(if j <= q_offset + r { past } else { future });
        }
    }
    table
}

fn upload<B: Backend>(data: Vec<f32>, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(data, shape), device)
}
