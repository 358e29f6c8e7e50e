//! Configuration of [`MultiHeadAttention`] and its ablation switches.

use burn::config::Config;
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;

use burn::tensor::Tensor;

use super::{AttentionInput, MultiHeadAttention};
use crate::error::{SeqError, ensure_nonzero};
use crate::nn::{NormKind, NormPlacement, Residual};
use crate::position::PositionEncoding;

/// Where the causal mask is applied.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum CausalMasking {
    /// Correct masking: future scores are set to `−∞` before the softmax, so each row is a
    /// distribution over the visible keys only.
    PreSoftmax,
    /// Ablation ("naive" masking): the softmax runs over *all* keys and the future weights
    /// are zeroed afterwards. The surviving weights are not renormalised, and their
    /// denominator `Σ_j exp(A_ij)` still contains the future keys, so information leaks from
    /// the future into every output.
    NaivePostSoftmax,
}

/// Which of the query/key/value projections share weights (ablation).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum QkvSharing {
    /// Three separate projections `W_Q, W_K, W_V` (standard).
    Separate,
    /// `W_Q = W_K` (symmetric scores), separate `W_V`.
    SharedQK,
    /// `W_K = W_V`, separate `W_Q`.
    SharedKV,
    /// `W_Q = W_K = W_V`.
    SharedQKV,
}

impl QkvSharing {
    /// Number of distinct `D×D` projection blocks `P` in the fused matrix.
    pub fn n_projections(self) -> usize {
        match self {
            Self::Separate => 3,
            Self::SharedQK | Self::SharedKV => 2,
            Self::SharedQKV => 1,
        }
    }

    /// Block index of `(W_Q, W_K, W_V)` inside the fused `[D, P·D]` matrix.
    pub fn blocks(self) -> (usize, usize, usize) {
        match self {
            Self::Separate => (0, 1, 2),
            Self::SharedQK => (0, 0, 1),
            Self::SharedKV => (0, 1, 1),
            Self::SharedQKV => (0, 0, 0),
        }
    }
}

/// How queries, keys and values are computed from the input (an ablation switch): each of the
/// `P` distinct projections of [`QkvSharing`] is a linear map or a small MLP.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum QkvProjection {
    /// `x W + b` per projection (standard): the fused weight is `[D, P·D]`.
    Linear,
    /// A two-layer MLP per projection, `GELU(x W₁ + b₁) W₂ + b₂` (the crate's exact
    /// [`gelu`](crate::nn::gelu)), with `W₁` `[D, D_h]` and `W₂` `[D_h, D]`: the hidden weights are
    /// fused as `[D, P·D_h]`, the output weights as `[D_h, P·D]`.
    Mlp {
        /// Hidden width `D_h` of each projection's MLP (> 0).
        d_hidden: usize,
    },
}

impl QkvProjection {
    /// Checks the hidden width of [`QkvProjection::Mlp`].
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            QkvProjection::Linear => Ok(()),
            QkvProjection::Mlp { d_hidden } => {
                ensure_nonzero("Q/K/V MLP hidden width (d_hidden)", d_hidden)
            }
        }
    }
}

/// How a query and a key are compared (the scores before the softmax); an ablation switch.
/// `d` is the head width.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Similarity {
    /// `q·k / √d` (standard).
    Dot,
    /// Negative squared distance `−‖q − k‖² / √d`, computed as `(2 q·k − ‖k‖²) / √d` (the
    /// `−‖q‖²` term is the same for every key of a row and cancels in the softmax).
    NegSquaredDistance,
    /// Cosine similarity divided by a temperature: `cos(q, k) / τ` (scores in `[−1/τ, 1/τ]`).
    Cosine {
        /// Temperature `τ > 0` (e.g. 0.1).
        temperature: f64,
    },
}

impl Similarity {
    /// Checks the temperature of [`Similarity::Cosine`].
    pub fn validate(&self) -> crate::Result<()> {
        if let Similarity::Cosine { temperature } = *self
            && !(temperature.is_finite() && temperature > 0.0)
        {
            return Err(SeqError::OutOfRange {
                name: "cosine similarity temperature",
                value: temperature,
                expected: "a finite value > 0 (e.g. 0.1)",
            });
        }
        Ok(())
    }
}

/// Configuration of a multi-head attention layer.
///
/// ```
/// use seqlayers::attention::AttentionConfig;
/// use seqlayers::backend::Cpu;
/// use seqlayers::position::PositionEncoding;
///
/// let attn = AttentionConfig::new(8, 2)
///     .with_position(PositionEncoding::rope())
///     .try_init::<Cpu>(&Default::default())
///     .unwrap();
/// assert_eq!(attn.d_head, 4);
/// ```
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// Number of heads `H`; must divide `D`.
    pub n_heads: usize,
    /// Position encoding. Relative kinds (RoPE, ALiBi, Hard-ALiBi) act inside the layer;
    /// absolute kinds (learned, sinusoidal) are applied at the model input and ignored here.
    #[config(default = "PositionEncoding::None")]
    pub position: PositionEncoding,
    /// Mask future keys in self-attention.
    #[config(default = true)]
    pub causal: bool,
    /// Add a bias to the Q/K/V and output projections.
    #[config(default = true)]
    pub bias: bool,
    /// Where the causal mask is applied (ablation switch).
    #[config(default = "CausalMasking::PreSoftmax")]
    pub masking: CausalMasking,
    /// Weight sharing between the Q/K/V projections (ablation switch).
    #[config(default = "QkvSharing::Separate")]
    pub sharing: QkvSharing,
    /// How queries and keys are compared (ablation switch; only `Dot` takes the fused op).
    #[config(default = "Similarity::Dot")]
    pub similarity: Similarity,
    /// Linear or MLP Q/K/V projections (ablation switch).
    #[config(default = "QkvProjection::Linear")]
    pub qkv_projection: QkvProjection,
}

impl AttentionConfig {
    /// Checks every field: non-zero sizes, `H | D`, and the position encoding against the
    /// head layout (even `d_head` for RoPE, at most `H` windowed heads for Hard-ALiBi).
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("n_heads", self.n_heads)?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(SeqError::HeadsDoNotDivide {
                d_model: self.d_model,
                n_heads: self.n_heads,
            });
        }
        self.similarity.validate()?;
        self.qkv_projection.validate()?;
        self.position
            .validate_for_heads(self.n_heads, self.d_model / self.n_heads)
    }

    /// Validates the configuration and builds the layer with PyTorch-style
    /// `U(±1/√D)` weights and biases.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<MultiHeadAttention<B>> {
        self.validate()?;
        let d = self.d_model;
        let p = self.sharing.n_projections();
        let (qkv_hidden, d_in) = match self.qkv_projection {
            QkvProjection::Linear => (None, d),
            QkvProjection::Mlp { d_hidden } => (
                Some(
                    LinearConfig::new(d, p * d_hidden)
                        .with_bias(self.bias)
                        .init(device),
                ),
                d_hidden,
            ),
        };
        let attention = MultiHeadAttention {
            qkv_hidden,
            qkv: LinearConfig::new(d_in, p * d)
                .with_bias(self.bias)
                .init(device),
            output: LinearConfig::new(d, d).with_bias(self.bias).init(device),
            d_model: d,
            n_heads: self.n_heads,
            d_head: d / self.n_heads,
            position: self.position.clone(),
            causal: self.causal,
            masking: self.masking,
            sharing: self.sharing,
            similarity: self.similarity,
        };
        // Burn initialises parameters lazily (and a clone of a never-read parameter draws its
        // own values): draw them now, the crate's one init rule.
        Ok(crate::init::materialize(attention))
    }

    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiHeadAttention<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid AttentionConfig: {e}"))
    }
}

/// A residual self-attention block: the crate's one [`Residual`] block around a
/// [`MultiHeadAttention`], `x + attention(norm(x))` (pre-norm) or `norm(x + attention(x))`
/// (post-norm). Build it with [`AttentionConfig::try_init_block`] or [`Residual::new`].
pub type AttentionBlock<B> = Residual<B, MultiHeadAttention<B>>;

impl AttentionConfig {
    /// Builds a pre-norm residual [`AttentionBlock`] (RMSNorm, ε = 1e-5) around this layer, the
    /// counterpart of [`MambaConfig::try_init_block`](crate::ssm::MambaConfig::try_init_block).
    pub fn try_init_block<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<AttentionBlock<B>> {
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
    pub fn init_block<B: Backend>(&self, device: &B::Device) -> AttentionBlock<B> {
        self.try_init_block(device)
            .unwrap_or_else(|e| panic!("invalid AttentionConfig: {e}"))
    }
}

impl<B: Backend> Residual<B, MultiHeadAttention<B>> {
    /// The block around any attention call: `x + attend(input with queries norm(x))`
    /// (pre-norm) or `norm(x + attend(input))` (post-norm), where `x` are the input's queries.
    /// For a padded self-attention (an encoder), cross-attention over a memory (a decoder) or
    /// a cached memory. Errors as [`MultiHeadAttention::try_attend`].
    pub fn try_attend(&self, input: AttentionInput<B>) -> crate::Result<Tensor<B, 3>> {
        let x = input.queries().clone(); // [B, Lq, D]
        self.check_input(&x)?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                x + self
                    .mixer
                    .try_attend(input.map_queries(|q| self.norm.forward(q)))?
            }
            NormPlacement::Post => self.norm.forward(x + self.mixer.try_attend(input)?),
        })
    }

    /// [`try_attend`](Self::try_attend) also returning the attention weights
    /// `[B, H, Lq, Lk]` (see [`MultiHeadAttention::attend_with_weights`]).
    pub fn attend_with_weights(
        &self,
        input: AttentionInput<B>,
    ) -> crate::Result<(Tensor<B, 3>, Tensor<B, 4>)> {
        let x = input.queries().clone(); // [B, Lq, D]
        self.check_input(&x)?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                let (y, w) = self
                    .mixer
                    .attend_with_weights(input.map_queries(|q| self.norm.forward(q)))?;
                (x + y, w)
            }
            NormPlacement::Post => {
                let (y, w) = self.mixer.attend_with_weights(input)?;
                (self.norm.forward(x + y), w)
            }
        })
    }
}
