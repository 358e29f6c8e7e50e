//! A stack of residual sequence-mixing blocks built from a list of layer kinds.
//!
//! Each block is pre-norm residual: `x + mixer(norm(x))`, where the mixer is causal
//! self-attention, a Mamba mixer or an LSTM. A stack is written as a comma-separated list, e.g.
//! `"mamba,attention,mamba"` (see [`parse_layers`]).

use std::fmt;
use std::str::FromStr;

use burn::nn::{Lstm, LstmConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

use crate::attention::{AttentionConfig, MultiHeadAttention};
use crate::error::{Result, SeqError, ensure_nonzero};
use crate::position::PositionEncoding;
use crate::ssm::SsmBackend;
use crate::ssm::mamba::{MambaBlock, MambaConfig};

/// The sequence mixer of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Causal multi-head self-attention (no MLP).
    Attention,
    /// The Mamba selective-SSM mixer.
    Mamba,
    /// A single-layer LSTM whose hidden size is the model width.
    Lstm,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Attention => "attention",
            LayerKind::Mamba => "mamba",
            LayerKind::Lstm => "lstm",
        })
    }
}

impl FromStr for LayerKind {
    type Err = SeqError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "attention" | "attn" => Ok(LayerKind::Attention),
            "mamba" | "ssm" => Ok(LayerKind::Mamba),
            "lstm" => Ok(LayerKind::Lstm),
            other => Err(SeqError::InvalidConfig(format!(
                "unknown layer kind `{other}`; use attention, mamba or lstm"
            ))),
        }
    }
}

/// Parses a comma-separated list of layer kinds, e.g. `"mamba,attention"`.
pub fn parse_layers(spec: &str) -> Result<Vec<LayerKind>> {
    let layers = spec
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<_>>>()?;
    ensure_nonzero("number of layers", layers.len())?;
    Ok(layers)
}

/// Configuration of a [`SequenceStack`].
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Model width `D`.
    pub d_model: usize,
    /// The mixers, first to last.
    pub layers: Vec<LayerKind>,
    /// Attention heads of every attention block.
    pub n_heads: usize,
    /// Positional encoding. Relative kinds (RoPE, ALiBi, …) go to every attention block;
    /// absolute kinds (learned, sinusoidal) are added to the embeddings by the model that owns
    /// the stack (see [`crate::classifier`]).
    pub position: PositionEncoding,
    /// Template of every Mamba block (its `d_model` is overwritten by the stack's).
    pub mamba: MambaConfig,
    /// Epsilon of the RMS norms.
    pub norm_eps: f64,
}

impl StackConfig {
    /// A stack of `layers` at width `d_model`, one head, no positional encoding and the
    /// reference Mamba defaults.
    pub fn new(d_model: usize, layers: Vec<LayerKind>) -> Self {
        Self {
            d_model,
            layers,
            n_heads: 1,
            position: PositionEncoding::None,
            mamba: MambaConfig::new(d_model),
            norm_eps: 1e-5,
        }
    }
    /// Sets the attention heads.
    pub fn with_heads(mut self, n_heads: usize) -> Self {
        self.n_heads = n_heads;
        self
    }
    /// Sets the positional encoding.
    pub fn with_position(mut self, position: PositionEncoding) -> Self {
        self.position = position;
        self
    }
    /// Sets the Mamba template.
    pub fn with_mamba(mut self, mamba: MambaConfig) -> Self {
        self.mamba = mamba;
        self
    }

    /// Validates the configuration and builds the stack.
    pub fn try_init<B: SsmBackend>(&self, device: &B::Device) -> Result<SequenceStack<B>> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("number of layers", self.layers.len())?;
        let mut blocks = Vec::with_capacity(self.layers.len());
        for kind in &self.layers {
            blocks.push(match kind {
                LayerKind::Attention => {
                    let config = AttentionConfig::new(self.d_model, self.n_heads)
                        .with_position(self.position.clone());
                    Block::Attention(AttentionBlock {
                        norm: RmsNormConfig::new(self.d_model)
                            .with_epsilon(self.norm_eps)
                            .init(device),
                        attention: config.try_init(device)?,
                    })
                }
                LayerKind::Mamba => {
                    let mut config = self.mamba.clone();
                    config.d_model = self.d_model;
                    Block::Mamba(config.try_init_block(device)?)
                }
                LayerKind::Lstm => Block::Lstm(LstmBlock {
                    norm: RmsNormConfig::new(self.d_model)
                        .with_epsilon(self.norm_eps)
                        .init(device),
                    lstm: LstmConfig::new(self.d_model, self.d_model, true).init(device),
                }),
            });
        }
        Ok(SequenceStack { blocks })
    }
}

/// Pre-norm residual attention block: `x + attention(norm(x))`.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    norm: RmsNorm<B>,
    attention: MultiHeadAttention<B>,
}

/// Pre-norm residual LSTM block: `x + lstm(norm(x))`.
#[derive(Module, Debug)]
pub struct LstmBlock<B: Backend> {
    norm: RmsNorm<B>,
    lstm: Lstm<B>,
}

/// One residual block of a [`SequenceStack`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // built once per layer; size is irrelevant
pub enum Block<B: SsmBackend> {
    /// Self-attention block.
    Attention(AttentionBlock<B>),
    /// Mamba block.
    Mamba(MambaBlock<B>),
    /// LSTM block.
    Lstm(LstmBlock<B>),
}

impl<B: SsmBackend> Block<B> {
    /// Applies the block to `x` `[batch, len, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Block::Attention(b) => x.clone() + b.attention.forward(b.norm.forward(x)),
            Block::Mamba(b) => b.forward(x),
            Block::Lstm(b) => {
                let (h, _) = b.lstm.forward(b.norm.forward(x.clone()), None); // [B, L, D]
                x + h
            }
        }
    }
}

/// Residual blocks applied in order: `[batch, len, d_model] → [batch, len, d_model]`.
#[derive(Module, Debug)]
pub struct SequenceStack<B: SsmBackend> {
    blocks: Vec<Block<B>>,
}

impl<B: SsmBackend> SequenceStack<B> {
    /// Applies every block in order.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.blocks.iter().fold(x, |x, block| block.forward(x))
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
        assert_eq!(
            parse_layers("mamba, Attention,mamba").unwrap(),
            vec![LayerKind::Mamba, LayerKind::Attention, LayerKind::Mamba]
        );
        assert_eq!(parse_layers("lstm").unwrap(), vec![LayerKind::Lstm]);
        assert!(parse_layers("mamba,mlp").is_err());
        assert!(parse_layers("").is_err());
        for kind in [LayerKind::Attention, LayerKind::Mamba, LayerKind::Lstm] {
            assert_eq!(kind.to_string().parse::<LayerKind>().unwrap(), kind);
        }
    }
}
