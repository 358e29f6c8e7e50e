//! [`AttentionBackend`] for the CPU backend (`burn-ndarray`): the Rust kernel of
//! [`kernel`](super::kernel) on the tensors' memory.

use burn::tensor::{TensorMetadata, ops::FloatTensor};
use burn_ndarray::NdArray;

use std::borrow::Cow;

use super::backend::{AttentionBackend, FusedAttentionGrads, FusedAttentionInput, RopeTables};
use super::kernel::{self, AttentionDims, RopeRef};
use crate::ndarray_io::{heads_tensor_like, tensor, values};

/// Kernel sizes from the input shapes (checked by the caller, `MultiHeadAttention`).
fn dims_of(input: &FusedAttentionInput<NdArray<f32>>) -> AttentionDims {
    let q = input.q.shape();
    let k = input.k.shape();
    let v = input.v.shape();
    AttentionDims {
        batch: q[0],
        heads: q[1],
        q_len: q[2],
        k_len: k[2],
        d_k: q[3],
        d_v: v[3],
        bias_heads: input.bias.as_ref().map_or(0, |b| b.shape()[1]),
        bias_batches: input.bias.as_ref().map_or(1, |b| b.shape()[0]),
    }
}

/// Borrowed (or copied) values of the RoPE tables.
struct RopeValues<'a>([Cow<'a, [f32]>; 4]);

impl<'a> RopeValues<'a> {
    fn new(t: &'a RopeTables<NdArray<f32>>) -> Self {
        Self([
            values(&t.cos_q),
            values(&t.sin_q),
            values(&t.cos_k),
            values(&t.sin_k),
        ])
    }

    fn slices(&self) -> RopeRef<'_> {
        let [cos_q, sin_q, cos_k, sin_k] = &self.0;
        RopeRef {
            cos_q,
            sin_q,
            cos_k,
            sin_k,
        }
    }
}

impl AttentionBackend for NdArray<f32> {
    fn fused_attention_forward(
        input: FusedAttentionInput<Self>,
        save_weights: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let dims = dims_of(&input);
        let bias = input.bias.as_ref().map(values);
        let tables = input.rope.as_ref().map(RopeValues::new);
        let out = kernel::forward(
            &values(&input.q),
            &values(&input.k),
            &values(&input.v),
            bias.as_deref(),
            tables.as_ref().map(RopeValues::slices),
            dims,
            input.scale,
            save_weights,
            &dims.row_ends(bias.as_deref()),
        );
        let AttentionDims {
            batch,
            heads,
            q_len,
            k_len,
            d_v,
            ..
        } = dims;
        (
            heads_tensor_like(out.out, [batch, heads, q_len, d_v], &input.q),
            out.weights.map(|w| tensor(w, [batch, heads, q_len, k_len])),
        )
    }

    fn fused_attention_backward(
        input: FusedAttentionInput<Self>,
        weights: Option<FloatTensor<Self>>,
        d_out: FloatTensor<Self>,
    ) -> FusedAttentionGrads<Self> {
        let dims = dims_of(&input);
        let weights = weights.unwrap_or_else(|| {
            Self::fused_attention_forward(input.clone(), true)
                .1
                .expect("weights were asked for")
        });
        let tables = input.rope.as_ref().map(RopeValues::new);
        let bias = input.bias.as_ref().map(values);
        let g = kernel::backward(
            &values(&input.q),
            &values(&input.k),
            &values(&input.v),
            &values(&weights),
            &values(&d_out),
            tables.as_ref().map(RopeValues::slices),
            dims,
            input.scale,
            &dims.row_ends(bias.as_deref()),
        );
        // Each gradient stored like its input (see `heads_tensor_like`).
        let like = |g: Vec<f32>, t: &FloatTensor<Self>| {
            let s = t.shape();
            heads_tensor_like(g, [s[0], s[1], s[2], s[3]], t)
        };
        FusedAttentionGrads {
            q: like(g.q, &input.q),
            k: like(g.k, &input.k),
            v: like(g.v, &input.v),
        }
    }
}
