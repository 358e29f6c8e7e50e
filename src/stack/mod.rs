//! A stack of residual blocks built from a list of layer specs, with incremental decoding.
//!
//! Each block is the crate's pre-norm [`Residual`] block `x ← x + mixer(norm(x))`, where the
//! mixer is causal self-attention, causal linear attention, a Mamba mixer or an LSTM,
//! optionally followed by an MLP
//! sublayer `x ← x + mlp(norm(x))` (a GPT block is `attention+mlp`). A stack is written as a
//! comma-separated list, e.g. `"mamba,attention+mlp"` (see [`parse_layers`]).
//!
//! # Decoding with state
//! [`SequenceStack::init_state`] makes a [`StackState`] (a KV cache per attention layer, `(S, z)`
//! per linear-attention layer, the conv window and SSM state per Mamba layer, `(h, c)` per LSTM
//! layer);
//! [`SequenceStack::forward_with_state`] runs a chunk of `T ≥ 1` new positions and returns the
//! state after them, so a prompt can be prefilled in one call and continued one token at a time.
//! Feeding a sequence in pieces gives the outputs of one [`SequenceStack::forward`] (tested for
//! every layer kind, ≤ 1e-5 in f32).

mod state;

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::prelude::*;
use burn::serde::{Deserialize, Serialize};

pub use state::{LayerState, StackState};

use crate::attention::{
    AttentionBlock, AttentionConfig, CausalMasking, LinearAttentionBlock, LinearAttentionConfig,
    QkvProjection, QkvSharing, Similarity,
};
use crate::error::{SeqError, ensure_nonzero};
use crate::lstm::LstmBlock;
use crate::nn::{MlpBlock, MlpConfig, NormKind, NormPlacement, Residual};
use crate::position::PositionEncoding;
use crate::ssm::{MambaBlock, MambaConfig};

/// The sequence mixer of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
pub enum LayerKind {
    /// Causal multi-head self-attention.
    Attention,
    /// Causal multi-head linear attention (`φ(x) = elu(x) + 1` features, no softmax; see
    /// [`LinearAttention`](crate::attention::LinearAttention)).
    LinearAttention,
    /// The Mamba selective-SSM mixer.
    Mamba,
    /// A single-layer LSTM whose hidden size is the model width.
    Lstm,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Attention => "attention",
            LayerKind::LinearAttention => "linear-attention",
            LayerKind::Mamba => "mamba",
            LayerKind::Lstm => "lstm",
        })
    }
}

impl FromStr for LayerKind {
    type Err = SeqError;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "attention" | "attn" => Ok(LayerKind::Attention),
            "linear-attention" | "linear-attn" => Ok(LayerKind::LinearAttention),
            "mamba" | "ssm" => Ok(LayerKind::Mamba),
            "lstm" => Ok(LayerKind::Lstm),
            other => Err(SeqError::InvalidConfig(format!(
                "unknown layer kind `{other}`; use attention, linear-attention, mamba or lstm, optionally \
                 with `+mlp`"
            ))),
        }
    }
}

/// One block of a stack: a mixer, optionally followed by an MLP sublayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
pub struct LayerSpec {
    /// The sequence mixer.
    pub mixer: LayerKind,
    /// Whether an MLP sublayer follows the mixer (`"attention+mlp"`).
    pub mlp: bool,
}

impl From<LayerKind> for LayerSpec {
    fn from(mixer: LayerKind) -> Self {
        LayerSpec { mixer, mlp: false }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.mixer, if self.mlp { "+mlp" } else { "" })
    }
}

impl FromStr for LayerSpec {
    type Err = SeqError;
    fn from_str(s: &str) -> crate::Result<Self> {
        let mut parts = s.split('+').map(str::trim);
        let mixer = parts.next().unwrap_or_default().parse()?;
        let mut mlp = false;
        for extra in parts {
            match extra.to_ascii_lowercase().as_str() {
                "mlp" if !mlp => mlp = true,
                other => {
                    return Err(SeqError::InvalidConfig(format!(
                        "unknown sublayer `{other}` in `{s}`; a block is a mixer with an optional \
                         `+mlp`, e.g. `attention+mlp`"
                    )));
                }
            }
        }
        Ok(LayerSpec { mixer, mlp })
    }
}

/// Parses a comma-separated list of blocks, e.g. `"mamba,attention+mlp"` or
/// `"linear-attention+mlp,linear-attention+mlp"`.
pub fn parse_layers(spec: &str) -> crate::Result<Vec<LayerSpec>> {
    let layers = spec
        .split(',')
        .map(str::parse)
        .collect::<crate::Result<Vec<_>>>()?;
    ensure_nonzero("number of layers", layers.len())?;
    Ok(layers)
}

/// Configuration of a [`SequenceStack`].
#[derive(Config, Debug)]
pub struct StackConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// The blocks, first to last.
    pub layers: Vec<LayerSpec>,
    /// Heads of every attention and linear-attention block.
    #[config(default = 1)]
    pub n_heads: usize,
    /// Positional encoding. Relative kinds (RoPE, ALiBi, …) go to every attention block;
    /// absolute kinds (learned, sinusoidal) are added to the embeddings by the model that owns
    /// the stack (see [`crate::model`]).
    #[config(default = "PositionEncoding::None")]
    pub position: PositionEncoding,
    /// Template of every Mamba block; its `d_model` and `norm_eps` are replaced by the stack's.
    #[config(default = "MambaConfig::new(0)")]
    pub mamba: MambaConfig,
    /// Normalization of every block (and of the model's final norm).
    #[config(default = "NormKind::Rms")]
    pub norm: NormKind,
    /// Epsilon of every norm.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Hidden width of the MLP sublayers as a multiple of `D`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Dropout on the output of the MLP sublayers (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Where attention blocks apply the causal mask (ablation switch).
    #[config(default = "CausalMasking::PreSoftmax")]
    pub masking: CausalMasking,
    /// Q/K/V weight sharing of the attention blocks (ablation switch).
    #[config(default = "QkvSharing::Separate")]
    pub sharing: QkvSharing,
    /// Query–key similarity of the attention blocks (ablation switch).
    #[config(default = "Similarity::Dot")]
    pub similarity: Similarity,
    /// Linear or MLP Q/K/V projections of the attention blocks (ablation switch).
    #[config(default = "QkvProjection::Linear")]
    pub qkv_projection: QkvProjection,
}

impl StackConfig {
    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SequenceStack<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid StackConfig: {e}"))
    }

    /// Validates the configuration and builds the stack, drawing every parameter now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<SequenceStack<B>> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("number of layers", self.layers.len())?;
        ensure_nonzero("mlp_ratio", self.mlp_ratio)?;
        let norm = |device: &B::Device| self.norm.init(self.d_model, self.norm_eps, device);
        let mut blocks = Vec::with_capacity(self.layers.len());
        for spec in &self.layers {
            let mixer = match spec.mixer {
                LayerKind::Attention => MixerBlock::Attention(Residual::new(
                    norm(device),
                    AttentionConfig::new(self.d_model, self.n_heads)
                        .with_position(self.position.clone())
                        .with_masking(self.masking)
                        .with_sharing(self.sharing)
                        .with_similarity(self.similarity)
                        .with_qkv_projection(self.qkv_projection)
                        .try_init(device)?,
                    NormPlacement::Pre,
                )),
                LayerKind::LinearAttention => MixerBlock::LinearAttention(Residual::new(
                    norm(device),
                    LinearAttentionConfig::new(self.d_model, self.n_heads).try_init(device)?,
                    NormPlacement::Pre,
                )),
                LayerKind::Mamba => {
                    let mut config = self.mamba.clone().with_norm_eps(self.norm_eps);
                    config.d_model = self.d_model;
                    MixerBlock::Mamba(Residual::new(
                        norm(device),
                        config.try_init(device)?,
                        NormPlacement::Pre,
                    ))
                }
                LayerKind::Lstm => {
                    MixerBlock::Lstm(crate::lstm::init_block(norm(device), self.d_model, device))
                }
            };
            let mlp = if spec.mlp {
                Some(Residual::new(
                    norm(device),
                    MlpConfig::new(self.d_model, self.mlp_ratio * self.d_model)
                        .with_dropout(self.dropout)
                        .try_init(device)?,
                    NormPlacement::Pre,
                ))
            } else {
                None
            };
            blocks.push(Block { mixer, mlp });
        }
        Ok(SequenceStack { blocks })
    }
}

/// The mixing half of a [`Block`]: one [`Residual`] block of any mixer kind.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // built once per layer; size is irrelevant
pub enum MixerBlock<B: Backend> {
    /// Self-attention block.
    Attention(AttentionBlock<B>),
    /// Linear-attention block.
    LinearAttention(LinearAttentionBlock<B>),
    /// Mamba block.
    Mamba(MambaBlock<B>),
    /// LSTM block.
    Lstm(LstmBlock<B>),
}

/// One block of a [`SequenceStack`]: a residual mixer, then an optional residual MLP.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// `x + mixer(norm(x))`.
    pub mixer: MixerBlock<B>,
    /// `x + mlp(norm(x))`, if the spec says `+mlp`.
    pub mlp: Option<MlpBlock<B>>,
}

impl<B: Backend> Block<B> {
    /// Applies the block to `x` `[B, L, D]` from the empty state.
    ///
    /// # Panics
    /// When `x` is not `[B, L, D]` with `B, L > 0` (see [`SequenceStack::try_forward`]).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match &self.mixer {
            MixerBlock::Attention(b) => b.forward(x),
            MixerBlock::LinearAttention(b) => b.forward(x),
            MixerBlock::Mamba(b) => b.forward(x),
            MixerBlock::Lstm(b) => b.forward(x),
        };
        match &self.mlp {
            Some(m) => m.forward(x),
            None => x,
        }
    }

    /// The state of this block before the first token.
    fn init_state(&self, batch: usize, device: &B::Device) -> LayerState<B> {
        match &self.mixer {
            MixerBlock::Attention(b) => LayerState::Attention(b.init_state(batch, device)),
            MixerBlock::LinearAttention(b) => {
                LayerState::LinearAttention(b.init_state(batch, device))
            }
            MixerBlock::Mamba(b) => LayerState::Mamba(b.init_state(batch, device)),
            MixerBlock::Lstm(b) => LayerState::Lstm(b.init_state(batch, device)),
        }
    }

    /// Applies the block to the next `T` positions `x` `[B, T, D]`, continuing from `state`.
    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: LayerState<B>,
    ) -> crate::Result<(Tensor<B, 3>, LayerState<B>)> {
        let (x, state) = match (&self.mixer, state) {
            (MixerBlock::Attention(b), LayerState::Attention(s)) => {
                let (y, s) = b.forward_with_state(x, s)?;
                (y, LayerState::Attention(s))
            }
            (MixerBlock::LinearAttention(b), LayerState::LinearAttention(s)) => {
                let (y, s) = b.forward_with_state(x, s)?;
                (y, LayerState::LinearAttention(s))
            }
            (MixerBlock::Mamba(b), LayerState::Mamba(s)) => {
                let (y, s) = b.forward_with_state(x, s)?;
                (y, LayerState::Mamba(s))
            }
            (MixerBlock::Lstm(b), LayerState::Lstm(s)) => {
                let (y, s) = b.forward_with_state(x, s)?;
                (y, LayerState::Lstm(s))
            }
            (_, other) => {
                return Err(SeqError::InvalidConfig(format!(
                    "a {} state was given to a {} block; make the state with \
                     `SequenceStack::init_state` of this stack",
                    other.kind(),
                    self.kind()
                )));
            }
        };
        let x = match &self.mlp {
            Some(m) => m.forward_with_state(x, ())?.0,
            None => x,
        };
        Ok((x, state))
    }

    /// The model width `D` of the block (the width of its pre-norm).
    pub fn d_model(&self) -> usize {
        match &self.mixer {
            MixerBlock::Attention(b) => b.d_model(),
            MixerBlock::LinearAttention(b) => b.d_model(),
            MixerBlock::Mamba(b) => b.d_model(),
            MixerBlock::Lstm(b) => b.d_model(),
        }
    }

    /// The mixer kind.
    pub fn kind(&self) -> LayerKind {
        match &self.mixer {
            MixerBlock::Attention(_) => LayerKind::Attention,
            MixerBlock::LinearAttention(_) => LayerKind::LinearAttention,
            MixerBlock::Mamba(_) => LayerKind::Mamba,
            MixerBlock::Lstm(_) => LayerKind::Lstm,
        }
    }
}

/// Residual blocks applied in order: `[B, L, D] → [B, L, D]`.
#[derive(Module, Debug)]
pub struct SequenceStack<B: Backend> {
    /// The blocks, first to last.
    pub blocks: Vec<Block<B>>,
}

impl<B: Backend> SequenceStack<B> {
    /// `Δ` `[B, L, E]` and `A` `[E, N]` of every Mamba block for the input `x` `[B, L, D]`
    /// (see [`Mamba::selectivity`](crate::ssm::Mamba::selectivity)); other blocks give
    /// nothing.
    pub fn mamba_selectivity(
        &self,
        x: Tensor<B, 3>,
    ) -> crate::Result<Vec<(Tensor<B, 3>, Tensor<B, 2>)>> {
        self.check_input(&x)?;
        let mut out = Vec::new();
        let mut x = x;
        for block in &self.blocks {
            if let MixerBlock::Mamba(m) = &block.mixer {
                out.push(m.mixer.selectivity(m.norm.forward(x.clone()))?);
            }
            x = block.forward(x); // [B, L, D]
        }
        Ok(out)
    }

    /// Runs every block on `x` `[B, L, D]` from the empty state.
    ///
    /// # Panics
    /// On inputs that [`try_forward`](Self::try_forward) rejects.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }

    /// [`forward`](Self::forward) after O(1) shape checks: [`SeqError::ZeroSize`] when `B` or
    /// `L` is 0 (rejected rather than returned empty, as Mamba blocks have no empty result),
    /// [`SeqError::ShapeMismatch`] when the last axis is not the stack's `d_model`.
    ///
    /// Non-finite values are not checked (a read-back per call): a NaN or ±∞ in `x` propagates
    /// through every layer kind to the outputs of its batch row (attention spreads it over the
    /// whole row); other rows are unaffected. Use [`ensure_finite`](crate::error::ensure_finite)
    /// first for a typed error.
    pub fn try_forward(&self, x: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        self.check_input(&x)?;
        Ok(self.forward(x))
    }

    /// The model width `D` (`None` for a stack without blocks).
    pub fn d_model(&self) -> Option<usize> {
        self.blocks.first().map(Block::d_model)
    }

    /// Errors unless `x` is `[B, L, d_model]` with `B, L > 0`.
    fn check_input(&self, x: &Tensor<B, 3>) -> crate::Result<()> {
        let [batch, len, d] = x.dims();
        ensure_nonzero("batch size", batch)?;
        ensure_nonzero("sequence length", len)?;
        match self.d_model() {
            Some(want) if want != d => Err(SeqError::ShapeMismatch {
                what: "stack input features (d_model)",
                expected: want.to_string(),
                got: d.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The state before the first token, for `batch` sequences.
    pub fn init_state(&self, batch: usize, device: &B::Device) -> StackState<B> {
        StackState {
            layers: self
                .blocks
                .iter()
                .map(|b| b.init_state(batch, device))
                .collect(),
            position: 0,
            batch,
        }
    }

    /// Runs the next `T ≥ 1` positions `x` `[B, T, D]` through every block, continuing from
    /// `state`; returns `[B, T, D]` and the state after them.
    ///
    /// Errors when `B` or `T` is 0 or the last axis is not `d_model` (as
    /// [`try_forward`](Self::try_forward)), when the state belongs to another stack or batch
    /// size, or a layer's own check fails (e.g. a non-causal attention layer, a learned table
    /// too short). Non-finite values propagate into the outputs and the state.
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: StackState<B>,
    ) -> crate::Result<(Tensor<B, 3>, StackState<B>)> {
        let [batch, len, _] = x.dims();
        state.check(batch, self.blocks.len())?;
        ensure_nonzero("chunk length", len)?;
        self.check_input(&x)?;
        let mut layers = Vec::with_capacity(self.blocks.len());
        let mut x = x;
        for (block, layer) in self.blocks.iter().zip(state.layers) {
            let (y, layer) = block.forward_with_state(x, layer)?;
            x = y;
            layers.push(layer);
        }
        Ok((
            x,
            StackState {
                layers,
                position: state.position + len,
                batch,
            },
        ))
    }

    /// One position: `x_t` `[B, D]` → `([B, D], state)`; [`Self::forward_with_state`] with `T = 1`.
    pub fn step(
        &self,
        x_t: Tensor<B, 2>,
        state: StackState<B>,
    ) -> crate::Result<(Tensor<B, 2>, StackState<B>)> {
        let [batch, d] = x_t.dims();
        let (y, state) = self.forward_with_state(x_t.reshape([batch, 1, d]), state)?;
        Ok((y.reshape([batch, d]), state))
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when the stack has no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layer_lists() {
        let m = LayerSpec::from(LayerKind::Mamba);
        let a = LayerSpec::from(LayerKind::Attention);
        let gpt = LayerSpec {
            mixer: LayerKind::Attention,
            mlp: true,
        };
        assert_eq!(
            parse_layers("mamba, Attention,mamba").unwrap(),
            vec![m, a, m]
        );
        assert_eq!(parse_layers("attention+mlp,mamba").unwrap(), vec![gpt, m]);
        assert_eq!(parse_layers("lstm").unwrap()[0].mixer, LayerKind::Lstm);
        let linear = LayerSpec {
            mixer: LayerKind::LinearAttention,
            mlp: true,
        };
        assert_eq!(
            parse_layers("linear-attention+mlp,linear-attn+mlp").unwrap(),
            vec![linear, linear]
        );
        for bad in ["mamba,mlp", "", "attention+mlp+mlp", "attention+ffn"] {
            assert!(parse_layers(bad).is_err(), "{bad}");
        }
        for spec in [m, a, gpt, linear] {
            assert_eq!(spec.to_string().parse::<LayerSpec>().unwrap(), spec);
        }
    }
}
