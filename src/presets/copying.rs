//! The models compared in "Repeat After Me" (Jelassi et al., ICML 2024), named as in its code, as
//! [`LanguageModelConfig`]s of matched size.

use std::fmt;
use std::str::FromStr;

use crate::error::{Result, SeqError};
use crate::model::LanguageModelConfig;
use crate::nn::NormKind;
use crate::position::PositionEncoding;
use crate::ssm::MambaConfig;
use crate::stack::{LayerKind, LayerSpec, StackConfig};

/// A model of the copying paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyModel {
    /// GPT blocks with rotary positions.
    TRope,
    /// GPT blocks without positions.
    TNope,
    /// GPT blocks with ALiBi (slopes `2^(−8h/H)`).
    TAlibi,
    /// GPT blocks where [`CopyModelSize::windowed_heads`] heads see a window (head `h` the
    /// last `h+1` tokens) and the others are NoPE.
    THardAlibi,
    /// Mamba blocks.
    Mamba,
    /// LSTM blocks.
    Lstm,
}

/// Sizes shared by the models of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyModelSize {
    /// Width `D`.
    pub d_model: usize,
    /// GPT blocks of the transformers.
    pub attention_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Heads of `T_hard_alibi` that see a window (head `h` the last `h+1` tokens); the other
    /// `n_heads − windowed_heads` heads are NoPE. The paper's default is 8 of 12.
    pub windowed_heads: usize,
    /// Mamba blocks (≈ the transformers' parameter count at 1.5× their layers).
    pub mamba_layers: usize,
    /// Mamba state size `N`.
    pub d_state: usize,
    /// LSTM blocks.
    pub lstm_layers: usize,
}

impl Default for CopyModelSize {
    /// `D = 32`: 2 GPT blocks with 4 heads, 3 of them windowed in `T_hard_alibi` (≈ 26 K parameters with a small vocabulary),
    /// 3 Mamba blocks with `N = 16` (≈ 31 K), 3 LSTM blocks (≈ 27 K) — sized for a 2-core CPU
    /// (≈ 60 ms per step of 16 rows × 110 tokens for a transformer, 50 ms for Mamba).
    fn default() -> Self {
        Self {
            d_model: 32,
            attention_layers: 2,
            n_heads: 4,
            windowed_heads: 3,
            mamba_layers: 3,
            d_state: 16,
            lstm_layers: 3,
        }
    }
}

impl CopyModel {
    /// Every model, transformers first.
    pub const ALL: [CopyModel; 6] = [
        CopyModel::TRope,
        CopyModel::TNope,
        CopyModel::TAlibi,
        CopyModel::THardAlibi,
        CopyModel::Mamba,
        CopyModel::Lstm,
    ];

    /// The paper's name: `T_rope`, `T_nope`, `T_alibi`, `T_hard_alibi`, `mamba`, `lstm`.
    pub fn name(self) -> &'static str {
        match self {
            CopyModel::TRope => "T_rope",
            CopyModel::TNope => "T_nope",
            CopyModel::TAlibi => "T_alibi",
            CopyModel::THardAlibi => "T_hard_alibi",
            CopyModel::Mamba => "mamba",
            CopyModel::Lstm => "lstm",
        }
    }

    /// True for the four transformers.
    pub fn is_transformer(self) -> bool {
        !matches!(self, CopyModel::Mamba | CopyModel::Lstm)
    }

    /// The language model of this kind at `size` over `vocab` tokens (LayerNorm, GELU MLPs in
    /// the transformers, untied head).
    pub fn config(self, size: CopyModelSize, vocab: usize) -> LanguageModelConfig {
        let gpt = LayerSpec {
            mixer: LayerKind::Attention,
            mlp: true,
        };
        let (layers, position) = match self {
            CopyModel::TRope => (vec![gpt; size.attention_layers], PositionEncoding::rope()),
            CopyModel::TNope => (vec![gpt; size.attention_layers], PositionEncoding::None),
            CopyModel::TAlibi => (vec![gpt; size.attention_layers], PositionEncoding::alibi()),
            CopyModel::THardAlibi => (
                vec![gpt; size.attention_layers],
                PositionEncoding::hard_alibi(size.windowed_heads),
            ),
            CopyModel::Mamba => (
                vec![LayerKind::Mamba.into(); size.mamba_layers],
                PositionEncoding::None,
            ),
            CopyModel::Lstm => (
                vec![LayerKind::Lstm.into(); size.lstm_layers],
                PositionEncoding::None,
            ),
        };
        let stack = StackConfig::new(size.d_model, layers)
            .with_n_heads(size.n_heads)
            .with_position(position)
            .with_norm(NormKind::Layer)
            .with_mamba(MambaConfig::new(size.d_model).with_d_state(size.d_state));
        LanguageModelConfig::new(stack, vocab)
    }
}

impl fmt::Display for CopyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CopyModel {
    type Err = SeqError;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        CopyModel::ALL
            .into_iter()
            .find(|m| m.name().to_ascii_lowercase() == key)
            .ok_or_else(|| {
                let names: Vec<_> = CopyModel::ALL.iter().map(|m| m.name()).collect();
                SeqError::InvalidConfig(format!(
                    "unknown model `{}`; choose one of {}",
                    s.trim(),
                    names.join(", ")
                ))
            })
    }
}
