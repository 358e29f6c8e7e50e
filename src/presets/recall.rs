//! The models of the attention-versus-SSM recall comparison (associative recall and induction
//! heads): transformers with three position encodings, Mamba, two hybrids, and an LSTM baseline,
//! each as the [`StackConfig`] a [`StackClassifier`](crate::model::StackClassifier) is built on.

use std::fmt;
use std::str::FromStr;

use crate::error::SeqError;
use crate::position::{OutOfRange, PositionEncoding};
use crate::stack::{LayerKind, StackConfig};

/// The models of the attention-versus-SSM recall comparison (transformers with three position
/// encodings, Mamba, two hybrids) plus an LSTM baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecallModel {
    /// Two attention layers (no MLP) with a learned absolute positional table.
    TransformerLearned,
    /// Two attention layers with rotary embeddings.
    TransformerRope,
    /// Two attention layers with no positional encoding.
    TransformerNope,
    /// Two Mamba layers.
    Mamba,
    /// Mamba → attention, no positional encoding.
    HybridA,
    /// Mamba → attention → Mamba, no positional encoding.
    HybridB,
    /// Two LSTM layers.
    Lstm,
}

impl RecallModel {
    /// All models: transformers, Mamba, the hybrids, then the LSTM.
    pub const ALL: [RecallModel; 7] = [
        RecallModel::TransformerLearned,
        RecallModel::TransformerRope,
        RecallModel::TransformerNope,
        RecallModel::Mamba,
        RecallModel::HybridA,
        RecallModel::HybridB,
        RecallModel::Lstm,
    ];

    /// Short name used on the command line, in CSV files and plots.
    pub fn name(&self) -> &'static str {
        match self {
            RecallModel::TransformerLearned => "transformer-learned",
            RecallModel::TransformerRope => "transformer-rope",
            RecallModel::TransformerNope => "transformer-nope",
            RecallModel::Mamba => "mamba",
            RecallModel::HybridA => "hybrid-a",
            RecallModel::HybridB => "hybrid-b",
            RecallModel::Lstm => "lstm",
        }
    }

    /// The stack of this model at width `d`. `max_len` sizes the learned positional table
    /// (rows past the training length stay untrained and are used as they are).
    pub fn stack_config(&self, d: usize, max_len: usize) -> StackConfig {
        use LayerKind::{Attention as A, Lstm as S, Mamba as M};
        let (layers, position) = match self {
            RecallModel::TransformerLearned => (
                vec![A, A],
                PositionEncoding::Learned {
                    max_len,
                    out_of_range: OutOfRange::Error,
                },
            ),
            RecallModel::TransformerRope => (vec![A, A], PositionEncoding::rope()),
            RecallModel::TransformerNope => (vec![A, A], PositionEncoding::None),
            RecallModel::Mamba => (vec![M, M], PositionEncoding::None),
            RecallModel::HybridA => (vec![M, A], PositionEncoding::None),
            RecallModel::HybridB => (vec![M, A, M], PositionEncoding::None),
            RecallModel::Lstm => (vec![S, S], PositionEncoding::None),
        };
        StackConfig::new(d, layers.into_iter().map(Into::into).collect()).with_position(position)
    }
}

impl fmt::Display for RecallModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RecallModel {
    type Err = SeqError;
    fn from_str(s: &str) -> crate::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        RecallModel::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = RecallModel::ALL.iter().map(|m| m.name()).collect();
                SeqError::InvalidConfig(format!(
                    "unknown model `{s}`; choose one of {}",
                    names.join(", ")
                ))
            })
    }
}
