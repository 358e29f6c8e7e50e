//! [`LanguageModel`]: a causal language model over any [`SequenceStack`].
//!
//! `tokens [B, L] → E[tokens] (+ absolute positions) → stack → final norm → logits [B, L, V]`,
//! with the head either its own `[D, V]` matrix or the transposed embedding (weight tying).
//! The same head serves attention (GPT blocks), Mamba, LSTM and hybrid stacks, so they can be
//! compared at a matched parameter count.
//!
//! # Glossary
//! - `V` vocabulary size, `D` model width, `B` batch, `L` length, `T` new positions of a chunk.
//! - `E` `[V, D]` token embedding; `PE` the absolute positions (identity for relative kinds).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::decode::Decoder;
use crate::error::{SeqError, ensure_nonzero};
use crate::init::materialize;
use crate::linear;
use crate::nn::Norm;
use crate::position::AbsolutePosition;
use crate::stack::{SequenceStack, StackConfig, StackState};

/// Configuration of a [`LanguageModel`].
#[derive(Config, Debug)]
pub struct LanguageModelConfig {
    /// The stack (its `d_model` is the embedding width; its position encoding is added to the
    /// embeddings when absolute, applied inside attention when relative).
    pub stack: StackConfig,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Use the transposed embedding as the output head (GPT-2's weight tying).
    #[config(default = false)]
    pub tie_embeddings: bool,
    /// Standard deviation of the embedding (and head) initialization (GPT-2: 0.02).
    #[config(default = 0.02)]
    pub init_std: f64,
    /// Multiply the token embeddings by `√D` before the positions are added (Vaswani et al.,
    /// for unit-amplitude sinusoidal positions, with `init_std = 1/√D`).
    #[config(default = false)]
    pub scale_embeddings: bool,
}

impl LanguageModelConfig {
    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LanguageModel<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid LanguageModelConfig: {e}"))
    }

    /// Validates the configuration and builds the model, drawing every parameter now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<LanguageModel<B>> {
        ensure_nonzero("vocab_size", self.vocab_size)?;
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(SeqError::OutOfRange {
                name: "init_std",
                value: self.init_std,
                expected: "a finite value > 0 (0.02 is standard)",
            });
        }
        let d = self.stack.d_model;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: self.init_std,
        };
        let model = LanguageModel {
            embedding: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(normal.clone())
                .init(device),
            position: self.stack.position.init_absolute(d, device)?,
            stack: self.stack.try_init(device)?,
            norm: self.stack.norm.init(d, self.stack.norm_eps, device),
            head: (!self.tie_embeddings).then(|| {
                LinearConfig::new(d, self.vocab_size)
                    .with_bias(false)
                    .with_initializer(normal)
                    .init(device)
            }),
            vocab_size: self.vocab_size,
            embedding_scale: if self.scale_embeddings {
                (d as f64).sqrt()
            } else {
                1.0
            },
        };
        Ok(materialize(model))
    }
}

/// A causal language model: next-token logits at every position.
#[derive(Module, Debug)]
pub struct LanguageModel<B: Backend> {
    /// Token embedding `E` `[V, D]`.
    pub embedding: Embedding<B>,
    /// Absolute positions added to the embeddings (identity for relative kinds).
    pub position: AbsolutePosition<B>,
    /// The residual blocks.
    pub stack: SequenceStack<B>,
    /// Final norm before the head.
    pub norm: Norm<B>,
    /// Output head `[D, V]`; `None` when tied to the embedding.
    pub head: Option<Linear<B>>,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Factor on the token embeddings before the positions are added (1, or `√D`).
    pub embedding_scale: f64,
}

impl<B: Backend> LanguageModel<B> {
    /// Logits `[B, L, V]` for `tokens` `[B, L]` (position `t` predicts token `t + 1`).
    ///
    /// Errors on an id `≥ V` or a learned position table shorter than `L`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        let x = self.embed(tokens, 0)?; // [B, L, D]
        Ok(self.logits(self.stack.forward(x)))
    }

    /// `Δ` `[B, L, E]` and `A` `[E, N]` of each Mamba block of the stack for `tokens`
    /// (interpretability: what each block writes into its state at each position).
    pub fn mamba_selectivity(
        &self,
        tokens: Tensor<B, 2, Int>,
    ) -> crate::Result<Vec<(Tensor<B, 3>, Tensor<B, 2>)>> {
        let x = self.embed(tokens, 0)?; // [B, L, D]
        self.stack.mamba_selectivity(x)
    }

    /// `E[tokens] + PE[offset ..]`, `[B, L, D]`, after checking the ids.
    fn embed(&self, tokens: Tensor<B, 2, Int>, offset: usize) -> crate::Result<Tensor<B, 3>> {
        super::check_token_ids(&tokens, self.vocab_size, "token")?;
        let mut x = self.embedding.forward(tokens); // [B, L, D]
        if self.embedding_scale != 1.0 {
            x = x.mul_scalar(self.embedding_scale);
        }
        self.position.try_forward(x, offset)
    }

    /// Final norm and head: hidden `[B, L, D]` → logits `[B, L, V]`.
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.norm.forward(hidden); // [B, L, D]
        match &self.head {
            Some(head) => linear::apply(head, h), // [B, L, V]
            None => {
                let e = self.embedding.weight.val(); // [V, D]
                linear::matmul_tokens(h, e.transpose()) // [B, L, V]
            }
        }
    }
}

impl<B: Backend> Decoder<B> for LanguageModel<B> {
    type State = StackState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> StackState<B> {
        self.stack.init_state(batch, device)
    }

    fn forward_with_state(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: StackState<B>,
    ) -> crate::Result<(Tensor<B, 3>, StackState<B>)> {
        let x = self.embed(tokens, state.position)?; // [B, T, D]
        let (h, state) = self.stack.forward_with_state(x, state)?; // [B, T, D]
        Ok((self.logits(h), state))
    }
}

impl<B: Backend> crate::train::SequenceModel<B> for LanguageModel<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        self.forward(tokens)
    }
}
