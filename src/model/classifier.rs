//! The recall model: fixed embedding → (absolute positions) → [`SequenceStack`] → norm → linear
//! head on the last position.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::error::{SeqError, ensure_nonzero};
use crate::init::materialize;
use crate::linear;
use crate::nn::Norm;
use crate::position::AbsolutePosition;
use crate::stack::{SequenceStack, StackConfig};
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
