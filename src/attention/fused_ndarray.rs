//! [`AttentionBackend`] for the CPU backend (`burn-ndarray`): the Rust kernel of
//! [`kernel`](super::kernel) on the tensors' memory.

use burn::tensor::{TensorMetadata, ops::FloatTensor};
use burn_ndarray::NdArray;

use std::borrow::Cow;

use super::backend::{AttentionBackend, FusedAttentionGrads, FusedAttentionInput, RopeTables};
use super::kernel::{self, AttentionDims, Heads, Layout, RopeRef};
use crate::ndarray_io::{heads_memory, heads_tensor, is_split_heads, tensor, values};

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

/// The layout the kernel stores the output or gradient of `like` in: that of `like` itself
/// when it is split heads (see [`heads_tensor`]), row-major otherwise.
fn layout_like(like: &FloatTensor<NdArray<f32>>) -> Layout {
    if is_split_heads(like) {
        Layout::Tokens
    } else {
        Layout::Heads
    }
}

/// `v` (`[B, H, L, w]` stored in `layout`) as a tensor.
fn tensor_in(v: Vec<f32>, [b, h, l, w]: [usize; 4], layout: Layout) -> FloatTensor<NdArray<f32>> {
    heads_tensor(v, [b, h, l, w], layout == Layout::Tokens)
}

/// A `[B, H, L, w]` operand where it lies (`Heads`), from its memory and strides.
fn heads_of<'a>((data, strides): &'a (Cow<'a, [f32]>, [usize; 3])) -> Heads<'a> {
    Heads {
        data,
        strides: *strides,
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
        let (q, k, v) = (
            heads_memory(&input.q),
            heads_memory(&input.k),
            heads_memory(&input.v),
        );
        let layout = layout_like(&input.q);
        let out = kernel::forward(
            heads_of(&q),
            heads_of(&k),
            heads_of(&v),
            bias.as_deref(),
            tables.as_ref().map(RopeValues::slices),
            dims,
            input.scale,
            save_weights,
            &dims.row_ends(bias.as_deref()),
            layout,
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
            tensor_in(out.out, [batch, heads, q_len, d_v], layout),
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
        let (q, k, v, d_o) = (
            heads_memory(&input.q),
            heads_memory(&input.k),
            heads_memory(&input.v),
            heads_memory(&d_out),
        );
        // Each gradient stored like its input.
        let layouts = [&input.q, &input.k, &input.v].map(layout_like);
        let g = kernel::backward(
            heads_of(&q),
            heads_of(&k),
            heads_of(&v),
            &values(&weights),
            heads_of(&d_o),
            tables.as_ref().map(RopeValues::slices),
            dims,
            input.scale,
            &dims.row_ends(bias.as_deref()),
            layouts,
        );
        let shape = |t: &FloatTensor<Self>| {
            let s = t.shape();
            [s[0], s[1], s[2], s[3]]
        };
        FusedAttentionGrads {
            q: tensor_in(g.q, shape(&input.q), layouts[0]),
            k: tensor_in(g.k, shape(&input.k), layouts[1]),
            v: tensor_in(g.v, shape(&input.v), layouts[2]),
        }
    }
}
