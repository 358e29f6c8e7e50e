//! The recall model: fixed embedding → (absolute positions) → [`SequenceStack`] → norm → linear
//! head on the last position, plus the named models of the recall comparison ([`ModelKind`]).

use std::fmt;
use std::str::FromStr;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::error::{SeqError, ensure_nonzero};
use crate::init::materialize;
use crate::linear;
use crate::nn::Norm;
use crate::position::{AbsolutePosition, OutOfRange, PositionEncoding};
use crate::stack::{LayerKind, SequenceStack, StackConfig};
use crate::train::SequenceModel;

/// Builds a [`StackClassifier`].
#[derive(burn::config::Config, Debug)]
pub struct ClassifierConfig {
    /// The stack (its `d_model` is the embedding width `d`).
    pub stack: StackConfig,
    /// Number of classes (`K` for recall: the head predicts a token).
    pub n_classes: usize,
}

impl ClassifierConfig {
    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(
        &self,
        embedding: Tensor<B, 2>,
        device: &B::Device,
    ) -> StackClassifier<B> {
        self.try_init(embedding, device)
            .unwrap_or_else(|e| panic!("invalid ClassifierConfig: {e}"))
    }

    /// Validates and builds the model around the fixed (untrained) embedding `[K, d]`.
    ///
    /// Every parameter is drawn here, not lazily at its first use (Burn's default for `nn`
    /// layers), so seeding the backend right before this call fixes the whole initialization
    /// even when other threads draw random numbers later.
    pub fn try_init<B: Backend>(
        &self,
        embedding: Tensor<B, 2>,
        device: &B::Device,
    ) -> crate::Result<StackClassifier<B>> {
        ensure_nonzero("n_classes", self.n_classes)?;
        let [_, dim] = embedding.dims();
        if dim != self.stack.d_model {
            return Err(SeqError::ShapeMismatch {
                what: "embedding width vs stack d_model",
                expected: self.stack.d_model.to_string(),
                got: dim.to_string(),
            });
        }
        let model = StackClassifier {
            embedding,
            position: self
                .stack
                .position
                .init_absolute(self.stack.d_model, device)?,
            stack: self.stack.try_init(device)?,
            norm: self
                .stack
                .norm
                .init(self.stack.d_model, self.stack.norm_eps, device),
            head: LinearConfig::new(self.stack.d_model, self.n_classes).init(device),
        };
        Ok(materialize(model))
    }
}

/// Sequence classifier: `tokens [B, L] → logits [B, n_classes]` read at the last position.
#[derive(Module, Debug)]
pub struct StackClassifier<B: Backend> {
    /// Fixed token embedding `V` `[K, d]` (a constant: not trained).
    embedding: Tensor<B, 2>,
    position: AbsolutePosition<B>,
    stack: SequenceStack<B>,
    norm: Norm<B>,
    head: Linear<B>,
}

impl<B: Backend> StackClassifier<B> {
    /// Hidden states of the last block, `[B, L, d]`.
    ///
    /// Errors with [`SeqError::ZeroSize`] on a batch or length of 0, with
    /// [`SeqError::TokenOutOfRange`] on an id outside `0..K` (the embedding's rows), and with
    /// [`SeqError::SequenceTooLong`] past a learned position table. Non-finite values cannot
    /// enter through ids; non-finite weights propagate to the outputs.
    pub fn try_hidden(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        let x = self.embed(tokens)?; // [B, L, d]
        let x = self.position.try_forward(x, 0)?; // [B, L, d]
        self.stack.try_forward(x)
    }
}

impl<B: Backend> StackClassifier<B> {
    /// Rows of the fixed embedding `V` for `tokens` `[B, L]` → `[B, L, d]`.
    ///
    /// A backend `select` of the rows (a gather on every backend; the table stays where it is).
    ///
    /// Errors on an empty batch or sequence and on an id outside `0..K` (the id range is read
    /// back, two scalars, as every model's id check does).
    fn embed(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        let [batch, len] = tokens.dims();
        let [vocab, dim] = self.embedding.dims();
        super::check_token_ids(&tokens, vocab, "token")?;
        let rows = self
            .embedding
            .clone()
            .select(0, tokens.reshape([batch * len])); // [B·L, d]
        Ok(rows.reshape([batch, len, dim])) // [B, L, d]
    }
}

impl<B: Backend> SequenceModel<B> for StackClassifier<B> {
    /// Class logits at every position, `[B, L, K]`.
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        let hidden = self.try_hidden(tokens)?; // [B, L, d]
        Ok(linear::apply(&self.head, self.norm.forward(hidden))) // [B, L, K]
    }

    /// Class logits at the last position, `[B, K]` (the head runs on that position only).
    fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 2>> {
        let [batch, len] = tokens.dims();
        let hidden = self.try_hidden(tokens)?; // [B, L, d]
        let [_, _, dim] = hidden.dims();
        let last = hidden.slice([0..batch, len - 1..len]).reshape([batch, dim]); // [B, d]
        Ok(self.head.forward(self.norm.forward(last))) // [B, K]
    }
}

/// The models of the attention-versus-SSM recall comparison (transformers with three position
/// encodings, Mamba, two hybrids) plus an LSTM baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
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

impl ModelKind {
    /// All models: transformers, Mamba, the hybrids, then the LSTM.
    pub const ALL: [ModelKind; 7] = [
        ModelKind::TransformerLearned,
        ModelKind::TransformerRope,
        ModelKind::TransformerNope,
        ModelKind::Mamba,
        ModelKind::HybridA,
        ModelKind::HybridB,
        ModelKind::Lstm,
    ];

    /// Short name used on the command line, in CSV files and plots.
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::TransformerLearned => "transformer-learned",
            ModelKind::TransformerRope => "transformer-rope",
            ModelKind::TransformerNope => "transformer-nope",
            ModelKind::Mamba => "mamba",
            ModelKind::HybridA => "hybrid-a",
            ModelKind::HybridB => "hybrid-b",
            ModelKind::Lstm => "lstm",
        }
    }

    /// The stack of this model at width `d`. `max_len` sizes the learned positional table
    /// (rows past the training length stay untrained and are used as they are).
    pub fn stack_config(&self, d: usize, max_len: usize) -> StackConfig {
        use LayerKind::{Attention as A, Lstm as S, Mamba as M};
        let (layers, position) = match self {
            ModelKind::TransformerLearned => (
                vec![A, A],
                PositionEncoding::Learned {
                    max_len,
                    out_of_range: OutOfRange::Error,
                },
            ),
            ModelKind::TransformerRope => (vec![A, A], PositionEncoding::rope()),
            ModelKind::TransformerNope => (vec![A, A], PositionEncoding::None),
            ModelKind::Mamba => (vec![M, M], PositionEncoding::None),
            ModelKind::HybridA => (vec![M, A], PositionEncoding::None),
            ModelKind::HybridB => (vec![M, A, M], PositionEncoding::None),
            ModelKind::Lstm => (vec![S, S], PositionEncoding::None),
        };
        StackConfig::new(d, layers.into_iter().map(Into::into).collect()).with_position(position)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = SeqError;
    fn from_str(s: &str) -> crate::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ModelKind::ALL.iter().map(|m| m.name()).collect();
                SeqError::InvalidConfig(format!(
                    "unknown model `{s}`; choose one of {}",
                    names.join(", ")
                ))
            })
    }
}
