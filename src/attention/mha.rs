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
use crate::nn::MASKED;
use crate::nn::{Mixer, gelu};
use crate::position::{PositionEncoding, Rope, rope_tables};
use crate::reshape::reshape;

/// Multi-head scaled dot-product attention with a fused Q/K/V projection.
///
/// Build it with [`AttentionConfig::try_init`](super::AttentionConfig::try_init).
#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// The hidden layers of MLP projections ([`QkvProjection::Mlp`]), weight `[D, P·D_h]`:
    /// projection `p` reads `GELU` of its column block `p` instead of `x`. `None` for linear
    /// projections.
    ///
    /// [`QkvProjection::Mlp`]: super::QkvProjection::Mlp
    pub qkv_hidden: Option<Linear<B>>,
    /// Fused projection `x ↦ x·[W_Q | W_K | W_V] + b`, weight `[D, P·D]` where `P` is the
    /// number of distinct projections (3, or fewer when shared; see [`QkvSharing::blocks`]);
    /// `[D_h, P·D]` after the hidden layers of MLP projections.
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

/// Where the keys and values of an attention call come from.
#[derive(Debug, Clone)]
enum KeyValues<B: Backend> {
    /// The queries' own sequence: self-attention.
    Own,
    /// Another sequence `[B, Lk, D]`: cross-attention.
    Context(Tensor<B, 3>),
    /// Keys and values projected once by [`MultiHeadAttention::cross_keys_values`].
    Cached(CrossKv<B>),
}

/// The input of one [`MultiHeadAttention`] call, built like burn-nn's `MhaInput`: the queries'
/// sequence, where keys and values come from, and which keys are padding.
///
/// ```
/// use seqlayers::attention::{AttentionConfig, AttentionInput};
/// use seqlayers::backend::{Cpu, CpuDevice};
/// use seqlayers::burn::tensor::{Bool, Distribution, Tensor};
///
/// let device = CpuDevice::default();
/// let layer = AttentionConfig::new(16, 4).init::<Cpu>(&device);
/// let x = Tensor::<Cpu, 3>::random([2, 5, 16], Distribution::Default, &device); // [B, L, D]
/// let padding = Tensor::<Cpu, 2, Bool>::from_bool([[false; 5], [false, false, false, true, true]].into(), &device); // [B, L]
/// let y = layer.try_attend(AttentionInput::self_attention(x.clone()).padding(padding)).unwrap();
/// let (z, weights) = layer.attend_with_weights(AttentionInput::cross(y, x)).unwrap();
/// assert_eq!(z.dims(), [2, 5, 16]);
/// assert_eq!(weights.dims(), [2, 4, 5, 5]); // [B, H, Lq, Lk]
/// ```
#[derive(Debug, Clone)]
pub struct AttentionInput<B: Backend> {
    /// Queries' sequence `[B, Lq, D]`.
    queries: Tensor<B, 3>,
    /// Keys' and values' source.
    key_values: KeyValues<B>,
    /// Key padding `[B, Lk]` (`true` = padding).
    padding: Option<Tensor<B, 2, Bool>>,
}

impl<B: Backend> AttentionInput<B> {
    /// Self-attention over `x` `[B, L, D]` (causal and position-encoded as the layer is
    /// configured).
    pub fn self_attention(x: Tensor<B, 3>) -> Self {
        AttentionInput {
            queries: x,
            key_values: KeyValues::Own,
            padding: None,
        }
    }

    /// Cross-attention: queries from `queries` `[B, Lq, D]`, keys and values from `context`
    /// `[B, Lk, D]` (e.g. decoder over encoder states). Never causal and without position
    /// encoding: the two sequences' positions are not comparable.
    pub fn cross(queries: Tensor<B, 3>, context: Tensor<B, 3>) -> Self {
        AttentionInput {
            queries,
            key_values: KeyValues::Context(context),
            padding: None,
        }
    }

    /// Cross-attention over keys and values projected once by
    /// [`MultiHeadAttention::cross_keys_values`] (for every step of a decoder): the same numbers
    /// as [`cross`](Self::cross) on their context. Their padding is the one given there.
    pub fn cached(queries: Tensor<B, 3>, keys_values: CrossKv<B>) -> Self {
        AttentionInput {
            queries,
            key_values: KeyValues::Cached(keys_values),
            padding: None,
        }
    }

    /// Marks padded keys, `[B, Lk]` with `true` = padding (never attended to); `Lk = L` for
    /// self-attention. Not for [`cached`](Self::cached) inputs.
    pub fn padding(mut self, padding: Tensor<B, 2, Bool>) -> Self {
        self.padding = Some(padding);
        self
    }

    /// The queries' sequence `[B, Lq, D]`.
    pub fn queries(&self) -> &Tensor<B, 3> {
        &self.queries
    }

    /// The same input with the queries replaced by `f(queries)` (a block's pre-norm).
    pub(crate) fn map_queries(mut self, f: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>) -> Self {
        self.queries = f(self.queries);
        self
    }

    /// [`padding`](Self::padding) when `Some`.
    pub fn maybe_padding(mut self, padding: Option<Tensor<B, 2, Bool>>) -> Self {
        self.padding = padding;
        self
    }
}

impl<B: Backend> MultiHeadAttention<B> {
    /// Self-attention over `x` `[B, L, D]` → `[B, L, D]` (causal if configured).
    ///
    /// # Panics
    /// When `x` is not `[B, L, d_model]` with `B, L > 0` (see [`Self::try_forward`]).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.attend(AttentionInput::self_attention(x))
    }

    /// [`forward`](Self::forward) returning an error instead of panicking (see
    /// [`try_attend`](Self::try_attend)).
    pub fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        self.try_attend(AttentionInput::self_attention(x))
    }

    /// [`try_attend`](Self::try_attend), panicking with its error.
    ///
    /// # Panics
    /// On inputs that [`try_attend`](Self::try_attend) rejects.
    pub fn attend(&self, input: AttentionInput<B>) -> Tensor<B, 3> {
        self.try_attend(input)
            .unwrap_or_else(|e| panic!("MultiHeadAttention: {e}"))
    }

    /// The attention output `[B, Lq, D]` for `input`, after O(1) shape checks:
    /// [`SeqError::ZeroSize`] when `B`, `Lq` or `Lk` is 0 (no empty result: an empty softmax
    /// has no value), [`SeqError::ShapeMismatch`] when a last axis is not `d_model`, the
    /// context's batch differs from the queries', or the padding is not `[B, Lk]`,
    /// [`SeqError::InvalidConfig`] for a padding on a [`cached`](AttentionInput::cached) input.
    ///
    /// # Non-finite values
    /// Not checked (a read-back per call): a NaN or ±∞ in the input reaches the scores of every
    /// query of its batch row (a masked score is the score plus the mask, and a padded value is
    /// multiplied by a zero weight, both still NaN), so the whole row's output may be NaN even
    /// when the bad value sits at a padded or future position. Other rows are unaffected. Use
    /// [`ensure_finite`](crate::error::ensure_finite) first for a typed error.
    pub fn try_attend(&self, input: AttentionInput<B>) -> Result<Tensor<B, 3>> {
        self.check_attention_input(&input)?;
        let AttentionInput {
            queries,
            key_values,
            padding,
        } = input;
        Ok(match key_values {
            KeyValues::Own => self.forward_masked(queries, padding),
            KeyValues::Context(context) => self.forward_cross(queries, context, padding),
            KeyValues::Cached(kv) => self.forward_cross_cached(queries, &kv),
        })
    }

    /// The O(1) checks of [`try_attend`](Self::try_attend) and
    /// [`attend_with_weights`](Self::attend_with_weights).
    fn check_attention_input(&self, input: &AttentionInput<B>) -> Result<()> {
        let padding = input.padding.as_ref();
        match &input.key_values {
            KeyValues::Own => {
                let [batch, len] =
                    self.check_input("self-attention input [B, L, D]", &input.queries)?;
                check_padding("key padding mask [B, L]", padding, batch, len)
            }
            KeyValues::Context(context) => self.check_cross(&input.queries, context, padding),
            KeyValues::Cached(kv) => self.check_cached(&input.queries, kv, padding),
        }
    }

    /// [`try_attend`](Self::try_attend) also returning the attention weights `[B, H, Lq, Lk]`
    /// (which key each query reads; for plots). Computed from tensor primitives, not the fused
    /// op: the same numbers up to rounding.
    pub fn attend_with_weights(
        &self,
        input: AttentionInput<B>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4>)> {
        self.check_attention_input(&input)?;
        let AttentionInput {
            queries,
            key_values,
            padding,
        } = input;
        Ok(match key_values {
            KeyValues::Own => self.self_attention(queries, padding),
            KeyValues::Context(context) => {
                let (q, k, v) = self.project_cross(queries, context);
                let mask = ScoreMask::none().with_key_padding(padding);
                self.attend_heads_with_weights(q, k, v, &mask)
            }
            KeyValues::Cached(kv) => {
                let q = self.project_queries(queries); // [B, H, Lq, d_head]
                let mask = ScoreMask::none().with_key_padding(kv.padding.clone());
                self.attend_heads_with_weights(q, kv.keys, kv.values, &mask)
            }
        })
    }

    /// Errors unless `queries` fit the layer and the batch of the cached `kv`, with no padding
    /// of their own.
    fn check_cached(
        &self,
        queries: &Tensor<B, 3>,
        kv: &CrossKv<B>,
        padding: Option<&Tensor<B, 2, Bool>>,
    ) -> Result<()> {
        if padding.is_some() {
            return Err(SeqError::InvalidConfig(
                "a cached cross-attention context carries its own padding; give it to \
                 `cross_keys_values` instead of `AttentionInput::padding`"
                    .into(),
            ));
        }
        let [batch, _] = self.check_input("cross-attention queries [B, Lq, D]", queries)?;
        let (kv_batch, _) = kv.dims();
        if batch != kv_batch {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of the queries vs the cached cross-attention context",
                expected: kv_batch.to_string(),
                got: batch.to_string(),
            });
        }
        Ok(())
    }
}

impl<B: Backend> MultiHeadAttention<B> {
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

    /// Self-attention with an optional key padding mask `[B, L]`, unchecked.
    fn forward_masked(&self, x: Tensor<B, 3>, padding: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let [_, len, _] = x.dims();
        let device = x.device();
        // RoPE (if any) is applied inside the fused op: Q and K stay unrotated here.
        let (q, k, v, mask) = self.self_attention_inputs(x, padding, false);
        self.attend_heads(q, k, v, &mask, self.rope_tables(len, &device))
    }

    /// Self-attention returning the output `[B, L, D]` and the weights `[B, H, L, L]`,
    /// unchecked.
    fn self_attention(
        &self,
        x: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let (q, k, v, mask) = self.self_attention_inputs(x, padding, true);
        self.attend_heads_with_weights(q, k, v, &mask)
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

    /// Cross-attention of `queries` `[B, Lq, D]` over `context` `[B, Lk, D]`, unchecked.
    fn forward_cross(
        &self,
        queries: Tensor<B, 3>,
        context: Tensor<B, 3>,
        context_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let (q, k, v) = self.project_cross(queries, context);
        let mask = ScoreMask::none().with_key_padding(context_padding);
        self.attend_heads(q, k, v, &mask, None)
    }

    /// Incremental causal decoding, the crate's state convention (see
    /// [`Residual`](crate::nn::Residual)): attends the new tokens `x` `[B, T, D]` (usually
    /// `T = 1`) to everything in `cache` plus themselves, appends their keys/values, and returns
    /// `[B, T, D]` with the grown cache. Start with [`init_state`](Self::init_state). Feeding a
    /// sequence in pieces gives the outputs of one causal [`forward`](Self::forward) (up to
    /// rounding) for every position encoding, including the naive masking ablation when
    /// `T = 1` (a single new token has no future to leak).
    ///
    /// Errors when the layer is not causal ([`SeqError::InvalidConfig`]), when `B` or `T` is 0
    /// ([`SeqError::ZeroSize`]), when the last axis of `x` is not `d_model` or the batch size
    /// differs from the cache's ([`SeqError::ShapeMismatch`]). Non-finite values propagate as in
    /// [`try_attend`](Self::try_attend), and stay in the cache.
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        cache: KvCache<B>,
    ) -> Result<(Tensor<B, 3>, KvCache<B>)> {
        let mut cache = cache;
        if !self.causal {
            return Err(SeqError::InvalidConfig(
                "incremental decoding needs causal self-attention; set `causal = true`".into(),
            ));
        }
        let [batch, len] = self.check_input("forward_with_state input [B, T, D]", &x)?;
        if let Some(cached) = cache.batch_size()
            && cached != batch
        {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of forward_with_state input vs its KvCache",
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
        Ok((self.attend_heads(q, k, v, &mask, None), cache))
    }

    /// The empty cache: the state before the first token (its batch size is set by the first
    /// call).
    pub fn init_state(&self, _batch: usize, _device: &B::Device) -> KvCache<B> {
        KvCache::new()
    }

    /// `[B, L, D]` → `[B, H, L, d_head]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, _] = x.dims();
        reshape(x, [b, l, self.n_heads, self.d_head]) // [B, L, H, d_head]
            .swap_dims(1, 2) // [B, H, L, d_head]
    }

    /// `[B, H, L, d_head]` → `[B, L, D]`.
    fn merge_heads(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, _, l, _] = x.dims();
        let x = x.swap_dims(1, 2); // [B, L, H, d_head]
        reshape(x, [b, l, self.d_model]) // [B, L, D]
    }

    /// The projection of `x` `[B, L, D]` by column block `block` of the fused weight (0: Q,
    /// 1: K, 2: V), split into heads: `[B, H, L, d_head]`. The weight is cut, not the output
    /// ([`linear::apply_columns`]). With MLP projections, `x` first goes through block
    /// `block` of the hidden layer and GELU.
    fn project_block(&self, x: Tensor<B, 3>, block: usize) -> Tensor<B, 4> {
        let d = self.d_model;
        let x = match &self.qkv_hidden {
            Some(hidden) => {
                let d_hidden = hidden.weight.dims()[1] / self.sharing.n_projections();
                gelu(linear::apply_columns(hidden, x, block * d_hidden, d_hidden)) // [B, L, D_h]
            }
            None => x,
        };
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
    /// values of cross-attention once, for [`AttentionInput::cached`] at every decoding step.
    /// `context_padding` `[B, Lk]` marks padded context tokens (`true`).
    ///
    /// Errors unless `context` is `[B, Lk, D]` (`B, Lk > 0`, `D = d_model`) and
    /// `context_padding` is `[B, Lk]`.
    pub fn cross_keys_values(
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
        let (keys, values) = self.project_keys_values(context); // 2 × [B, H, Lk, d_head]
        Ok(CrossKv {
            keys,
            values,
            padding: context_padding,
        })
    }

    /// Cross-attention of `queries` `[B, Lq, D]` over precomputed keys and values, unchecked.
    fn forward_cross_cached(&self, queries: Tensor<B, 3>, context: &CrossKv<B>) -> Tensor<B, 3> {
        let q = self.project_queries(queries); // [B, H, Lq, d_head]
        let mask = ScoreMask::none().with_key_padding(context.padding.clone());
        self.attend_heads(q, context.keys.clone(), context.values.clone(), &mask, None)
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
    fn attend_heads(
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
        if !bias_fits || mask.keep_after_softmax.is_some() || self.similarity != Similarity::Dot {
            let (q, k) = match &rope {
                Some(r) => r.rotate(q, k),
                None => (q, k),
            };
            return self.attend_heads_with_weights(q, k, v, mask).0;
        }
        // Padded keys fold into the bias as a per-batch table `[B, Hb, Lq, Lk]`, filled with
        // MASKED where the key is padding (what the tensor-op path's `mask_fill` does).
        let bias = match &mask.key_padding {
            Some(padding) => {
                let [batch, k_len] = padding.dims();
                let q_len = q.dims()[2];
                let base = match &mask.bias {
                    Some(bias) => {
                        let heads = bias.dims()[1];
                        bias.clone().expand([batch, heads, q_len, k_len])
                    }
                    None => Tensor::zeros([batch, 1, q_len, k_len], &q.device()),
                };
                Some(base.mask_fill(padding.clone().reshape([batch, 1, 1, k_len]), MASKED))
            }
            None => mask.bias.clone(),
        };
        let input = FusedAttentionInput {
            q: prim(q),
            k: prim(k),
            v: prim(v),
            bias: bias.map(prim),
            rope,
            scale: self.scale(),
        };
        let (context, _) = fused_attention_forward::<B>(input, false);
        let merged = self.merge_heads(wrap(context)); // [B, Lq, D]
        linear::apply(&self.output, merged)
    }

    /// [`attend_heads`](Self::attend_heads) from tensor primitives, also returning the weights
    /// `[B, H, Lq, Lk]`.
    fn attend_heads_with_weights(
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

impl<B: Backend> Mixer<B> for MultiHeadAttention<B> {
    type State = KvCache<B>;

    fn d_model(&self) -> usize {
        self.d_model
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        MultiHeadAttention::forward(self, x)
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        MultiHeadAttention::try_forward(self, x)
    }

    fn init_state(&self, batch: usize, device: &B::Device) -> KvCache<B> {
        MultiHeadAttention::init_state(self, batch, device)
    }

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: KvCache<B>,
    ) -> Result<(Tensor<B, 3>, KvCache<B>)> {
        MultiHeadAttention::forward_with_state(self, x, state)
    }
}
