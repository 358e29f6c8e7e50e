//! The decoding state of a [`SequenceStack`](super::SequenceStack).

use burn::tensor::backend::Backend;

use crate::attention::{KvCache, LinearAttentionState};
use crate::error::{Result, SeqError};
use crate::lstm::LstmCarry;
use crate::ssm::MambaState;

use super::LayerKind;

/// What one block remembers between decoding calls.
#[derive(Debug, Clone)]
pub enum LayerState<B: Backend> {
    /// Keys and values of every position so far.
    Attention(KvCache<B>),
    /// The key–value memory `S` and key normalizer `z` of every head.
    LinearAttention(LinearAttentionState<B>),
    /// The last `K − 1` conv inputs and the SSM state `h`.
    Mamba(MambaState<B>),
    /// Cell and hidden state, each `[B, D]`.
    Lstm(LstmCarry<B>),
}

impl<B: Backend> LayerState<B> {
    /// The kind of block this state belongs to.
    pub fn kind(&self) -> LayerKind {
        match self {
            LayerState::Attention(_) => LayerKind::Attention,
            LayerState::LinearAttention(_) => LayerKind::LinearAttention,
            LayerState::Mamba(_) => LayerKind::Mamba,
            LayerState::Lstm(_) => LayerKind::Lstm,
        }
    }
}

/// The decoding state of a whole stack: one [`LayerState`] per block, and how many positions
/// have been consumed (the offset of absolute positions for the next chunk).
#[derive(Debug, Clone)]
pub struct StackState<B: Backend> {
    /// One state per block, first to last.
    pub layers: Vec<LayerState<B>>,
    /// Positions consumed so far.
    pub position: usize,
    /// Sequences in the batch.
    pub batch: usize,
}

impl<B: Backend> StackState<B> {
    /// Errors unless this state fits a stack of `blocks` blocks run on `batch` sequences.
    pub fn check(&self, batch: usize, blocks: usize) -> Result<()> {
        if self.layers.len() != blocks {
            return Err(SeqError::ShapeMismatch {
                what: "stack state (one per block)",
                expected: blocks.to_string(),
                got: self.layers.len().to_string(),
            });
        }
        if self.batch != batch {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of the decoding state",
                expected: self.batch.to_string(),
                got: batch.to_string(),
            });
        }
        Ok(())
    }
}
