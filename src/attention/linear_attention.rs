//! Kernelized causal linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"):
//! the softmax of [`MultiHeadAttention`](super::MultiHeadAttention) replaced by a positive
//! feature map, so that causal attention becomes a recurrence with a fixed-size state.
//!
//! The symbols, the full pass and decoding are described on [`LinearAttention`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::causal_keep;
use crate::error::{SeqError, ensure_nonzero, ensure_positive, ensure_shape};
use crate::linear;
use crate::nn::{Mixer, NormKind, NormPlacement, Residual};

/// Configuration of a [`LinearAttention`] layer.
///
/// ```
/// use seqlayers::attention::LinearAttentionConfig;
/// use seqlayers::backend::Cpu;
///
/// let layer = LinearAttentionConfig::new(8, 2)
///     .try_init::<Cpu>(&Default::default())
///     .unwrap();
/// assert_eq!(layer.d_head, 4);
/// ```
#[derive(Config, Debug)]
pub struct LinearAttentionConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// Number of heads `H`; must divide `D`.
    pub n_heads: usize,
    /// Add a bias to the Q/K/V and output projections.
    #[config(default = true)]
    pub bias: bool,
    /// `ε` added to the normalizer `φ(q_t)ᵀ z_t` (> 0).
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Chunk length `C` of the full pass: the scores of a chunk are a `[C, C]` table per head
    /// (> 0; a speed/memory trade-off only, the outputs are the same).
    #[config(default = 64)]
    pub chunk_len: usize,
}

impl LinearAttentionConfig {
    /// Checks every field: non-zero sizes, `H | D`, `ε` finite and `> 0`.
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("n_heads", self.n_heads)?;
        ensure_nonzero("linear attention chunk_len", self.chunk_len)?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(SeqError::HeadsDoNotDivide {
                d_model: self.d_model,
                n_heads: self.n_heads,
            });
        }
        ensure_positive("linear attention eps", self.eps)
    }

    /// Validates the configuration and builds the layer with PyTorch-style `U(±1/√D)` weights
    /// and biases, drawn now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<LinearAttention<B>> {
        self.validate()?;
        let d = self.d_model;
        let layer = LinearAttention {
            qkv: LinearConfig::new(d, 3 * d)
                .with_bias(self.bias)
                .init(device),
            output: LinearConfig::new(d, d).with_bias(self.bias).init(device),
            d_model: d,
            n_heads: self.n_heads,
            d_head: d / self.n_heads,
            eps: self.eps,
            chunk_len: self.chunk_len,
        };
        Ok(crate::init::materialize(layer))
    }

    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LinearAttention<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid LinearAttentionConfig: {e}"))
    }

    /// Builds a pre-norm residual [`LinearAttentionBlock`] (RMSNorm, ε = 1e-5) around this
    /// layer, the counterpart of
    /// [`AttentionConfig::try_init_block`](super::AttentionConfig::try_init_block).
    pub fn try_init_block<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<LinearAttentionBlock<B>> {
        Ok(Residual::new(
            NormKind::Rms.init(self.d_model, 1e-5, device),
            self.try_init(device)?,
            NormPlacement::Pre,
        ))
    }

    /// Like [`try_init_block`](Self::try_init_block) but panics with the validation message.
    ///
    /// # Panics
    /// When [`try_init_block`](Self::try_init_block) returns an error.
    pub fn init_block<B: Backend>(&self, device: &B::Device) -> LinearAttentionBlock<B> {
        self.try_init_block(device)
            .unwrap_or_else(|e| panic!("invalid LinearAttentionConfig: {e}"))
    }
}

/// A residual linear-attention block: the crate's one [`Residual`] block around a
/// [`LinearAttention`], `x + linear_attention(norm(x))` (pre-norm).
pub type LinearAttentionBlock<B> = Residual<B, LinearAttention<B>>;

/// Causal multi-head linear attention with the feature map `φ(x) = elu(x) + 1`.
///
/// Build it with [`LinearAttentionConfig::try_init`].
///
/// # Glossary
/// | symbol | meaning | shape |
/// |---|---|---|
/// | `B`, `L`, `T`, `D` | batch, sequence length, new positions of a chunk, model width | |
/// | `H`, `d_head` | heads and per-head width, `D = H·d_head` | |
/// | `W_Q, W_K, W_V` | projections, stored fused as one `[D, 3D]` matrix | |
/// | `q_t, k_t, v_t` | query, key, value of position `t` in one head | `[d_head]` |
/// | `φ(x) = elu(x) + 1` | the feature map, element-wise and `> 0` | |
/// | `S_t = Σ_{s≤t} φ(k_s) v_sᵀ` | the key–value memory of one head | `[d_head, d_head]` |
/// | `z_t = Σ_{s≤t} φ(k_s)` | the key normalizer of one head | `[d_head]` |
/// | `o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)` | the output of one head at `t` | `[d_head]` |
/// | `W_O` | output projection of the merged heads | `[D, D]` |
/// | `C` | chunk length of the full pass | |
///
/// # Full pass and decoding
/// The full pass runs the sequence in chunks of `C` positions. Within a chunk it computes the
/// causal scores `A = φ(Q) φ(K)ᵀ` `[T, T]` with the future zeroed (the crate's
/// [`causal_keep`] table) and adds what the earlier chunks left in the state:
/// `o = (A V + φ(Q) S) / (A 1 + φ(Q) z + ε)`; then `S ← S + φ(K)ᵀ V` and `z ← z + Σ φ(K)`.
/// Memory is `O(L·C)`, not `O(L²)`. Decoding carries `(S, z)` per head in a
/// [`LinearAttentionState`], so a step costs `O(H·d_head²)` whatever the position; feeding a
/// sequence in pieces gives the outputs of one [`forward`](LinearAttention::forward).
///
/// There is no positional term inside the layer: a model over these blocks gets its positions
/// from an absolute encoding at the input (or from causality alone).
#[derive(Module, Debug)]
pub struct LinearAttention<B: Backend> {
    /// Fused projection `x ↦ x·[W_Q | W_K | W_V] + b`, weight `[D, 3D]`.
    pub qkv: Linear<B>,
    /// Output projection `W_O`, `[D, D]`.
    pub output: Linear<B>,
    /// Model width `D`.
    pub d_model: usize,
    /// Number of heads `H`.
    pub n_heads: usize,
    /// Per-head width `d_head = D / H`.
    pub d_head: usize,
    /// `ε` of the normalizer.
    pub eps: f64,
    /// Chunk length `C` of the full pass.
    pub chunk_len: usize,
}

/// What a [`LinearAttention`] layer carries between decoding calls: the key–value memory `S`
/// and the key normalizer `z` of every head (zeros before the first token).
#[derive(Debug, Clone)]
pub struct LinearAttentionState<B: Backend> {
    /// `S = Σ_s φ(k_s) v_sᵀ`, `[B, H, d_head, d_head]`.
    pub kv: Tensor<B, 4>,
    /// `z = Σ_s φ(k_s)`, `[B, H, d_head]`.
    pub k_sum: Tensor<B, 3>,
}

impl<B: Backend> LinearAttentionState<B> {
    /// The state before the first token of `batch` sequences, for `n_heads` heads of width
    /// `d_head`.
    pub fn zeros(batch: usize, n_heads: usize, d_head: usize, device: &B::Device) -> Self {
        Self {
            kv: Tensor::zeros([batch, n_heads, d_head, d_head], device), // [B, H, d_head, d_head]
            k_sum: Tensor::zeros([batch, n_heads, d_head], device),      // [B, H, d_head]
        }
    }

    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.kv.dims()[0]
    }
}

impl<B: Backend> LinearAttention<B> {
    /// Causal linear attention over `x` `[B, L, D]` → `[B, L, D]`, from the empty state.
    ///
    /// # Panics
    /// When `x` is not `[B, L, d_model]` with `B, L > 0` (see [`Self::try_forward`]).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.try_forward(x)
            .unwrap_or_else(|e| panic!("LinearAttention: {e}"))
    }

    /// [`forward`](Self::forward) after O(1) shape checks: [`SeqError::ZeroSize`] when `B` or
    /// `L` is 0, [`SeqError::ShapeMismatch`] when the last axis is not `d_model`.
    ///
    /// Non-finite values are not checked (a read-back per call): a NaN or ±∞ in `x` reaches
    /// the outputs of its batch row from its chunk on (the future of a chunk is zeroed by a
    /// multiplication, which keeps a NaN), and the state. Other rows are unaffected. Use
    /// [`ensure_finite`](crate::error::ensure_finite) first for a typed error.
    pub fn try_forward(&self, x: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        let [batch, _] = self.check_input(&x)?;
        let state = self.init_state(batch, &x.device());
        Ok(self.forward_with_state(x, state)?.0)
    }

    /// The empty state: `S = 0`, `z = 0` for `batch` sequences.
    pub fn init_state(&self, batch: usize, device: &B::Device) -> LinearAttentionState<B> {
        LinearAttentionState::zeros(batch, self.n_heads, self.d_head, device)
    }

    /// The next `T ≥ 1` positions `x` `[B, T, D]`, continuing from `state`: returns `[B, T, D]`
    /// and the state after them.
    ///
    /// Errors when `B` or `T` is 0 ([`SeqError::ZeroSize`]), when the last axis of `x` is not
    /// `d_model` or the state is not `[B, H, d_head, d_head]` / `[B, H, d_head]`
    /// ([`SeqError::ShapeMismatch`]).
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: LinearAttentionState<B>,
    ) -> crate::Result<(Tensor<B, 3>, LinearAttentionState<B>)> {
        let [batch, len] = self.check_input(&x)?;
        let (h, dh) = (self.n_heads, self.d_head);
        ensure_shape(
            "linear attention state S [B, H, d_head, d_head]",
            &[batch, h, dh, dh],
            &state.kv.dims(),
        )?;
        ensure_shape(
            "linear attention state z [B, H, d_head]",
            &[batch, h, dh],
            &state.k_sum.dims(),
        )?;
        let d = self.d_model;
        let q = feature_map(self.split_heads(linear::apply_columns(&self.qkv, x.clone(), 0, d))); // [B, H, T, d_head]
        let k = feature_map(self.split_heads(linear::apply_columns(&self.qkv, x.clone(), d, d))); // [B, H, T, d_head]
        let v = self.split_heads(linear::apply_columns(&self.qkv, x, 2 * d, d)); // [B, H, T, d_head]
        let mut state = state;
        let mut outputs = Vec::with_capacity(len.div_ceil(self.chunk_len));
        let mut start = 0;
        while start < len {
            let t = self.chunk_len.min(len - start);
            let (o, next) = self.chunk(
                q.clone().narrow(2, start, t),
                k.clone().narrow(2, start, t),
                v.clone().narrow(2, start, t),
                state,
            ); // [B, H, t, d_head]
            outputs.push(o);
            state = next;
            start += t;
        }
        let o = Tensor::cat(outputs, 2); // [B, H, T, d_head]
        Ok((linear::apply(&self.output, self.merge_heads(o)), state)) // [B, T, D]
    }

    /// One chunk of `T` positions: `φ(Q)`, `φ(K)`, `V` `[B, H, T, d_head]` and the state
    /// before them → the per-head outputs `[B, H, T, d_head]` and the state after them.
    fn chunk(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        state: LinearAttentionState<B>,
    ) -> (Tensor<B, 4>, LinearAttentionState<B>) {
        let [batch, h, t, dh] = q.dims();
        let keep: Tensor<B, 4> = Tensor::from_data(
            TensorData::new(causal_keep(0, t, t), [1, 1, t, t]),
            &q.device(),
        ); // [1, 1, T, T]
        let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * keep; // [B, H, T, T]
        let numerator = scores.clone().matmul(v.clone()) + q.clone().matmul(state.kv.clone()); // [B, H, T, d_head]
        let k_sum = state.k_sum.reshape([batch, h, dh, 1]); // [B, H, d_head, 1]
        let denominator = scores.sum_dim(3) + q.matmul(k_sum.clone()); // [B, H, T, 1]
        let out = numerator / denominator.add_scalar(self.eps); // [B, H, T, d_head]
        let kv = state.kv + k.clone().swap_dims(2, 3).matmul(v); // [B, H, d_head, d_head]
        let k_sum = (k_sum + k.sum_dim(2).swap_dims(2, 3)).reshape([batch, h, dh]); // [B, H, d_head]
        (out, LinearAttentionState { kv, k_sum })
    }

    /// Errors unless `x` is `[B, L, d_model]` with `B, L > 0`; returns `[B, L]`.
    fn check_input(&self, x: &Tensor<B, 3>) -> crate::Result<[usize; 2]> {
        let [batch, len, d] = x.dims();
        ensure_nonzero("batch size", batch)?;
        ensure_nonzero("sequence length", len)?;
        ensure_shape(
            "linear attention input [B, L, D] (last axis d_model)",
            &[batch, len, self.d_model],
            &[batch, len, d],
        )?;
        Ok([batch, len])
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
}

/// `φ(x) = elu(x) + 1`, element-wise: `x + 1` for `x > 0`, `exp(x)` otherwise, written as
/// `max(x, 0) + exp(min(x, 0))` (one expression for both sides, positive everywhere).
fn feature_map<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    x.clone().clamp_min(0.0) + x.clamp_max(0.0).exp()
}

impl<B: Backend> Mixer<B> for LinearAttention<B> {
    type State = LinearAttentionState<B>;

    fn d_model(&self) -> usize {
        self.d_model
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        LinearAttention::forward(self, x)
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        LinearAttention::try_forward(self, x)
    }

    fn init_state(&self, batch: usize, device: &B::Device) -> LinearAttentionState<B> {
        LinearAttention::init_state(self, batch, device)
    }

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: LinearAttentionState<B>,
    ) -> crate::Result<(Tensor<B, 3>, LinearAttentionState<B>)> {
        LinearAttention::forward_with_state(self, x, state)
    }
}
