//! Models: a [`SequenceStack`](crate::stack::SequenceStack) between an input embedding and an
//! output head.
//!
//! - [`classifier`]: the recall classifier (fixed embedding → stack → norm → class logits at the
//!   last position) and the homework's named models ([`ModelKind`]).
//! - [`checkpoint`]: saving a model with its configuration and loading it back (Burn's
//!   recorders, shapes checked, typed errors).
//! - [`lm`]: the causal language model (embedding → positions → stack → norm → vocabulary
//!   logits at every position, optional weight tying), decodable with state.
//! - [`paper`]: the models of the copying paper (`T_rope`, …, `mamba`, `lstm`) at matched sizes.
//! - [`seq2seq`]: the encoder–decoder transformer (cross-attention) for translation, decodable
//!   with caches.

pub mod checkpoint;
pub mod classifier;
pub mod lm;
pub mod paper;
pub mod seq2seq;

pub use checkpoint::{load_checkpoint, load_language_model, save_checkpoint};
pub use classifier::{ClassifierConfig, ModelKind, StackClassifier};
pub use lm::{LanguageModel, LanguageModelConfig};
pub use paper::{CopyModel, CopyModelSize};
pub use seq2seq::{
    DecoderBlock, EncoderBlock, EncoderDecoder, EncoderDecoderConfig, EncoderDecoderState,
};
