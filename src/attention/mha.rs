//! The multi-head attention layer.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use super::{
    CausalMasking, FusedAttentionInput, KvCache, QkvSharing, RopeTables, ScoreMask, Similarity,
    attention_with_similarity, fused_attention_forward,
};
use crate::backend::{prim, wrap};
use crate::error::{Result, SeqError};
use crate::linear;
use crate::position::{PositionEncoding, Rope, rope_tables};

/// Multi-head scaled dot-product attention with a fused Q/K/V projection.
///
/// Build it with [`AttentionConfig::try_init`](super::AttentionConfig::try_init).
#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// Fused projection `x ↦ x·[W_Q | W_K | W_V] + b`, weight `[D, P·D]` where `P` is the
    /// number of distinct projections (3, or fewer when shared; see [`QkvSharing::blocks`]).
    pub qkv: Linear<B>,
    /// Output projection `W_O`, `[D, D]`.
    pub output: Linear<B>,
    /// Model width `D`.
    pub d_model: usize,
    /// Number of heads `H`.
    pub n_heads: usize,
    /// Per-head width `d_head = D / H`.
    pub d_head: usize,
    /// Position encoding (only the relative kinds act here).
    pub position: PositionEncoding,
    /// Causal self-attention.
    pub causal: bool,
    /// Where the causal mask is applied.
    pub masking: CausalMasking,
    /// Q/K/V weight sharing.
    pub sharing: QkvSharing,
    /// How queries and keys are compared.
    pub similarity: Similarity,
}

/// Keys and values of a cross-attention layer over a fixed context (the encoder output),
/// computed once per source by [`MultiHeadAttention::cross_keys_values`] and reused at every
/// decoding step.
#[derive(Debug, Clone)]
pub struct CrossKv<B: Backend> {
    /// Keys `[B, H, Lk, d_head]`.
    keys: Tensor<B, 4>,
    /// Values `[B, H, Lk, d_head]`.
    values: Tensor<B, 4>,
    /// Context padding `[B, Lk]` (`true` = padding).
    padding: Option<Tensor<B, 2, Bool>>,
}

impl<B: Backend> CrossKv<B> {
    /// Batch size and context length `(B, Lk)`.
    pub fn dims(&self) -> (usize, usize) {
        let [b, _, lk, _] = self.keys.dims();
        (b, lk)
    }
}

impl<B: Backend> MultiHeadAttention<B> {
    /// Self-attention over `x` `[B, L, D]` → `[B, L, D]` (causal if configured).
    ///
    /// # Panics
    /// When `x` is not `[B, L, d_model]` with `B, L > 0` (see [`Self::try_forward`]).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) returning an error instead of panicking (see
    /// [`try_forward_masked`](Self::try_forward_masked)).
    pub fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        self.try_forward_masked(x, None)
    }

    /// [`forward_masked`](Self::forward_masked) after O(1) shape checks:
    /// [`SeqError::ZeroSize`] when `B` or `L` is 0 (no empty result: an empty softmax has no
    /// value), [`SeqError::ShapeMismatch`] when the last axis of `x` is not `d_model` or
    /// `padding` is not `[B, L]`.
    ///
    /// # Non-finite values
    /// Not checked (a read-back per call): a NaN or ±∞ in `x` reaches the scores of every query
    /// of its batch row (a masked score is the score plus the mask, and a padded value is
    /// multiplied by a zero weight, both still NaN), so the whole row's output may be NaN even
    /// when the bad value sits at a padded or future position. Other rows are unaffected. Use
    /// [`ensure_finite`](crate::error::ensure_finite) first for a typed error.
    pub fn try_forward_masked(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<Tensor<B, 3>> {
        let [batch, len] = self.check_input("self-attention input [B, L, D]", &x)?;
        check_padding("key padding mask [B, L]", padding.as_ref(), batch, len)?;
        Ok(self.forward_masked(x, padding))
    }

    /// [`self_attention`](Self::self_attention) with the checks of
    /// [`try_forward_masked`](Self::try_forward_masked).
    pub fn try_self_attention(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4>)> {
        let [batch, len] = self.check_input("self-attention input [B, L, D]", &x)?;
        check_padding("key padding mask [B, L]", padding.as_ref(), batch, len)?;
        Ok(self.self_attention(x, padding))
    }

    /// [`forward_cross`](Self::forward_cross) after O(1) shape checks: `queries` `[B, Lq, D]`
    /// and `context` `[B, Lk, D]` with the same `B`, `B, Lq, Lk > 0` ([`SeqError::ZeroSize`]),
    /// `D = d_model` and `context_padding` `[B, Lk]` ([`SeqError::ShapeMismatch`]). Non-finite
    /// values propagate as in [`try_forward_masked`](Self::try_forward_masked).
    pub fn try_forward_cross(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<Tensor<B, 3>> {
        self.check_cross(&queries, &context, context_padding.as_ref())?;
        Ok(self.forward_cross(queries, context, context_padding))
    }

    /// [`cross_attention`](Self::cross_attention) with the checks of
    /// [`try_forward_cross`](Self::try_forward_cross).
    pub fn try_cross_attention(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4>)> {
        self.check_cross(&queries, &context, context_padding.as_ref())?;
        Ok(self.cross_attention(queries, context, context_padding))
    }

    /// [`cross_keys_values`](Self::cross_keys_values) after checking `context` `[B, Lk, D]`
    /// (`B, Lk > 0`, `D = d_model`) and `context_padding` `[B, Lk]`.
    pub fn try_cross_keys_values(
        &self,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<CrossKv<B>> {
        let [batch, len] = self.check_input("cross-attention context [B, Lk, D]", &context)?;
        check_padding(
            "context padding mask [B, Lk]",
            context_padding.as_ref(),
            batch,
            len,
        )?;
        Ok(self.cross_keys_values(context, context_padding))
    }

    /// [`forward_cross_cached`](Self::forward_cross_cached) after checking `queries`
    /// `[B, Lq, D]` against the layer and the batch size of `context`.
    pub fn try_forward_cross_cached(
        &self,
        queries: Tensor<B, 3>,
        context: &CrossKv<B>,
    ) -> Result<Tensor<B, 3>> {
        let [batch, _] = self.check_input("cross-attention queries [B, Lq, D]", &queries)?;
        let (kv_batch, _) = context.dims();
        if batch != kv_batch {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of the queries vs the cached cross-attention context",
                expected: kv_batch.to_string(),
                got: batch.to_string(),
            });
        }
        Ok(self.forward_cross_cached(queries, context))
    }

    /// Errors unless `x` is `[B, L, d_model]` with `B, L > 0`; returns `[B, L]`.
    fn check_input(&self, what: &'static str, x: &Tensor<B, 3>) -> Result<[usize; 2]> {
        let [batch, len, d] = x.dims();
        crate::error::ensure_nonzero("batch size", batch)?;
        crate::error::ensure_nonzero("sequence length", len)?;
        if d != self.d_model {
            return Err(SeqError::ShapeMismatch {
                what,
                expected: format!("last axis = d_model = {}", self.d_model),
                got: format!("{:?}", x.dims()),
            });
        }
        Ok([batch, len])
    }

    /// The checks of [`try_forward_cross`](Self::try_forward_cross).
    fn check_cross(
        &self,
        queries: &Tensor<B, 3>,
        context: &Tensor<B, 3>,
        context_padding: Option<&Tensor<B, 2, Bool>>,
    ) -> Result<()> {
        let [batch, _] = self.check_input("cross-attention queries [B, Lq, D]", queries)?;
        let [context_batch, context_len] =
            self.check_input("cross-attention context [B, Lk, D]", context)?;
        if batch != context_batch {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of the cross-attention context vs the queries",
                expected: batch.to_string(),
                got: context_batch.to_string(),
            });
        }
        check_padding(
            "context padding mask [B, Lk]",
            context_padding,
            batch,
            context_len,
        )
    }

    /// Self-attention with an optional key padding mask `[B, L]` (`true` = padding token,
    /// never attended to).
    ///
    /// # Panics
    /// On shapes that [`try_forward_masked`](Self::try_forward_masked) rejects.
    pub fn forward_masked(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let [_, len, _] = x.dims();
        let device = x.device();
        // RoPE (if any) is applied inside the fused op: Q and K stay unrotated here.
        let (q, k, v, mask) = self.self_attention_inputs(x, padding, false);
        self.attend(q, k, v, &mask, self.rope_tables(len, &device))
    }

    /// Attention weights `A'` `[B, H, L, L]` of a self-attention call (for plots).
    ///
    /// # Panics
    /// On shapes that [`try_self_attention`](Self::try_self_attention) rejects.
    pub fn attention_weights(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 4> {
        self.self_attention(x, padding).1
    }

    /// Self-attention returning both the output `[B, L, D]` and the weights `[B, H, L, L]`.
    ///
    /// # Panics
    /// On shapes that [`try_self_attention`](Self::try_self_attention) rejects.
    pub fn self_attention(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let (q, k, v, mask) = self.self_attention_inputs(x, padding, true);
        self.attend_with_weights(q, k, v, &mask)
    }

    /// Q, K, V `[B, H, L, d_head]` (rotated if RoPE and `rotate`) and the score mask of
    /// self-attention.
    #[allow(clippy::type_complexity)]
    fn self_attention_inputs(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
        rotate: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, ScoreMask<B>) {
        let [_, len, _] = x.dims();
        let device = x.device();
        let (q, k, v) = self.project_self(x); // 3 × [B, H, L, d_head]
        let (q, k) = if rotate {
            self.rotate(q, k, 0, 0)
        } else {
            (q, k)
        };
        let mask = ScoreMask::for_self_attention(
            &self.position,
            self.n_heads,
            self.causal,
            self.masking,
            0,
            len,
            len,
            &device,
        )
        .with_key_padding(padding);
        (q, k, v, mask)
    }

    /// Cross-attention: queries from `queries` `[B, Lq, D]`, keys and values from `context`
    /// `[B, Lk, D]` (e.g. decoder over encoder states) → `[B, Lq, D]`.
    ///
    /// Never causal and without position encoding: the two sequences' positions are not
    /// comparable (positions enter through each sequence's own self-attention/embeddings).
    /// `context_padding` `[B, Lk]` marks padded context tokens (`true`).
    ///
    /// # Panics
    /// On shapes that [`try_forward_cross`](Self::try_forward_cross) rejects.
    pub fn forward_cross(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let (q, k, v) = self.project_cross(queries, context);
        let mask = ScoreMask::none().with_key_padding(context_padding);
        self.attend(q, k, v, &mask, None)
    }

    /// Incremental causal decoding: attends the new tokens `x` `[B, T, D]` (usually `T = 1`)
    /// to everything in `cache` plus themselves, appends their keys/values, and returns
    /// `[B, T, D]`. Feeding a sequence in pieces gives the outputs of one causal
    /// [`forward`](Self::forward) (up to rounding) for every position encoding, including the
    /// naive masking ablation when `T = 1` (a single new token has no future to leak).
    ///
    /// Errors when the layer is not causal ([`SeqError::InvalidConfig`]), when `B` or `T` is 0
    /// ([`SeqError::ZeroSize`]), when the last axis of `x` is not `d_model` or the batch size
    /// differs from the cache's ([`SeqError::ShapeMismatch`]). Non-finite values propagate as in
    /// [`try_forward_masked`](Self::try_forward_masked), and stay in the cache.
    pub fn forward_step(&self, x: Tensor<B, 3>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        if !self.causal {
            return Err(SeqError::InvalidConfig(
                "incremental decoding needs causal self-attention; set `causal = true`".into(),
            ));
        }
        let [batch, len] = self.check_input("forward_step input [B, T, D]", &x)?;
        if let Some(cached) = cache.batch_size()
            && cached != batch
        {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of forward_step input vs its KvCache",
                expected: cached.to_string(),
                got: batch.to_string(),
            });
        }
        let offset = cache.len();
        let device = x.device();
        let (q, k, v) = self.project_self(x); // 3 × [B, H, T, d_head]
        let (q, k) = self.rotate(q, k, offset, offset);
        let (k, v) = cache.append(k, v); // 2 × [B, H, offset + T, d_head]
        let mask = ScoreMask::for_self_attention(
            &self.position,
            self.n_heads,
            true,
            self.masking,
            offset,
            len,
            offset + len,
            &device,
        );
        Ok(self.attend(q, k, v, &mask, None))
    }

    /// `[B, L, D]` → `[B, H, L, d_head]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, _] = x.dims();
        x.reshape([b, l, self.n_heads, self.d_head]) // [B, L, H, d_head]
            .swap_dims(1, 2) // [B, H, L, d_head]
    }

    /// `[B, H, L, d_head]` → `[B, L, D]`.
    fn merge_heads(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, _, l, _] = x.dims();
        x.swap_dims(1, 2) // [B, L, H, d_head]
            .reshape([b, l, self.d_model]) // [B, L, D]
    }

    /// The projection of `x` `[B, L, D]` by column block `block` of the fused weight (0: Q,
    /// 1: K, 2: V), split into heads: `[B, H, L, d_head]`. The weight is cut, not the output
    /// ([`linear::apply_columns`]).
    fn project_block(&self, x: Tensor<B, 3>, block: usize) -> Tensor<B, 4> {
        let d = self.d_model;
        self.split_heads(linear::apply_columns(&self.qkv, x, block * d, d)) // [B, H, L, d_head]
    }

    /// [`project_block`](Self::project_block) for every entry of `blocks`, each distinct block
    /// once (the sharing ablations reuse a block for Q and K, or for all three).
    fn project_blocks<const N: usize>(
        &self,
        x: Tensor<B, 3>,
        blocks: [usize; N],
    ) -> [Tensor<B, 4>; N] {
        let mut done: Vec<(usize, Tensor<B, 4>)> = Vec::with_capacity(N);
        blocks.map(|block| {
            if let Some((_, t)) = done.iter().find(|(b, _)| *b == block) {
                return t.clone();
            }
            let t = self.project_block(x.clone(), block);
            done.push((block, t.clone()));
            t
        })
    }

    /// Q, K, V of self-attention from `x` `[B, L, D]`, each `[B, H, L, d_head]`.
    fn project_self(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let (qb, kb, vb) = self.sharing.blocks();
        let [q, k, v] = self.project_blocks(x, [qb, kb, vb]);
        (q, k, v)
    }

    /// Q from `queries` `[B, Lq, D]`, K and V from `context` `[B, Lk, D]`, using the matching
    /// column blocks of the fused weight.
    fn project_cross(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = self.project_keys_values(context);
        (self.project_queries(queries), k, v)
    }

    /// Q of cross-attention: `queries` `[B, Lq, D]` → `[B, H, Lq, d_head]`.
    fn project_queries(&self, queries: Tensor<B, 3>) -> Tensor<B, 4> {
        let (qb, _, _) = self.sharing.blocks();
        self.project_block(queries, qb) // [B, H, Lq, d_head]
    }

    /// K and V of cross-attention: `context` `[B, Lk, D]` → 2 × `[B, H, Lk, d_head]`.
    fn project_keys_values(&self, context: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (_, kb, vb) = self.sharing.blocks();
        let [k, v] = self.project_blocks(context, [kb, vb]);
        (k, v)
    }

    /// Projects a fixed `context` `[B, Lk, D]` (e.g. the encoder output) into the keys and
    /// values of cross-attention once, for [`forward_cross_cached`](Self::forward_cross_cached)
    /// at every decoding step. `context_padding` `[B, Lk]` marks padded context tokens (`true`).
    ///
    /// Does not check its inputs; [`try_cross_keys_values`](Self::try_cross_keys_values) does.
    pub fn cross_keys_values(
        &self,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> CrossKv<B> {
        let (keys, values) = self.project_keys_values(context); // 2 × [B, H, Lk, d_head]
        CrossKv {
            keys,
            values,
            padding: context_padding,
        }
    }

    /// Cross-attention of `queries` `[B, Lq, D]` over precomputed keys and values: the same
    /// numbers as [`forward_cross`](Self::forward_cross) on their context.
    ///
    /// # Panics
    /// On queries that [`try_forward_cross_cached`](Self::try_forward_cross_cached) rejects.
    pub fn forward_cross_cached(
        &self,
        queries: Tensor<B, 3>,
        context: &CrossKv<B>,
    ) -> Tensor<B, 3> {
        let q = self.project_queries(queries); // [B, H, Lq, d_head]
        let mask = ScoreMask::none().with_key_padding(context.padding.clone());
        self.attend(q, context.keys.clone(), context.values.clone(), &mask, None)
    }

    /// Cross-attention returning the output `[B, Lq, D]` and the weights `[B, H, Lq, Lk]`
    /// (which context token each query reads; for heatmaps).
    ///
    /// # Panics
    /// On shapes that [`try_cross_attention`](Self::try_cross_attention) rejects.
    pub fn cross_attention(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let (q, k, v) = self.project_cross(queries, context);
        let mask = ScoreMask::none().with_key_padding(context_padding);
        self.attend_with_weights(q, k, v, &mask)
    }

    /// Applies RoPE (if configured) to queries at `q_offset` and keys at `k_offset`.
    fn rotate(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        q_offset: usize,
        k_offset: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match self.position {
            PositionEncoding::Rope { base } => {
                let rope = Rope {
                    d_head: self.d_head,
                    base,
                };
                (rope.apply(q, q_offset), rope.apply(k, k_offset))
            }
            _ => (q, k),
        }
    }

    /// RoPE tables for self-attention over positions `0..len` (`None` without RoPE).
    fn rope_tables(&self, len: usize, device: &B::Device) -> Option<RopeTables<B>> {
        let PositionEncoding::Rope { base } = self.position else {
            return None;
        };
        let (cos, sin) = rope_tables(0, len, self.d_head, base);
        let upload = |v: Vec<f32>| {
            prim(Tensor::<B, 2>::from_data(
                TensorData::new(v, [len, self.d_head]),
                device,
            ))
        };
        let (cos, sin) = (upload(cos), upload(sin));
        Some(RopeTables {
            cos_q: cos.clone(),
            sin_q: sin.clone(),
            cos_k: cos,
            sin_k: sin,
        })
    }

    /// Attention on split heads, head merge and output projection → `[B, Lq, D]`: the fused
    /// operation ([`fused_attention_forward`]) when the mask is a plain additive bias (causal, ALiBi,
    /// Hard-ALiBi or none), the primitive path otherwise (padding, naive masking). `rope`
    /// rotates `q` and `k` first (inside the fused op).
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: &ScoreMask<B>,
        rope: Option<RopeTables<B>>,
    ) -> Tensor<B, 3> {
        let bias_fits = mask.bias.as_ref().is_none_or(|b| {
            let [one, heads, _, _] = b.dims();
            one == 1 && (heads == 1 || heads == self.n_heads)
        });
        if !bias_fits
            || mask.key_padding.is_some()
            || mask.keep_after_softmax.is_some()
            || self.similarity != Similarity::Dot
        {
            let (q, k) = match &rope {
                Some(r) => r.rotate(q, k),
                None => (q, k),
            };
            return self.attend_with_weights(q, k, v, mask).0;
        }
        let input = FusedAttentionInput {
            q: prim(q),
            k: prim(k),
            v: prim(v),
            bias: mask.bias.clone().map(prim),
            rope,
            scale: self.scale(),
        };
        let (context, _) = fused_attention_forward::<B>(input, false);
        let merged = self.merge_heads(wrap(context)); // [B, Lq, D]
        linear::apply(&self.output, merged)
    }

    /// [`attend`](Self::attend) from tensor primitives, also returning the weights
    /// `[B, H, Lq, Lk]`.
    fn attend_with_weights(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: &ScoreMask<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let out = attention_with_similarity(q, k, v, self.similarity, self.scale(), mask);
        let merged = self.merge_heads(out.context); // [B, L, D]
        (linear::apply(&self.output, merged), out.weights) // [B, L, D], [B, H, Lq, Lk]
    }

    /// Score scale `1/√d_head`.
    fn scale(&self) -> f32 {
        1.0 / (self.d_head as f32).sqrt()
    }
}

/// Errors unless `padding` (if any) is `[batch, len]`.
fn check_padding<B: Backend>(
    what: &'static str,
    padding: Option<&Tensor<B, 2, Bool>>,
    batch: usize,
    len: usize,
) -> Result<()> {
    match padding {
        Some(p) => crate::error::ensure_shape(what, &[batch, len], &p.dims()),
        None => Ok(()),
    }
}
