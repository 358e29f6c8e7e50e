//! Models: a [`SequenceStack`](crate::stack::SequenceStack) between an input embedding and an
//! output head.
//!
//! - `bert`: a BERT-family encoder (post-norm blocks, padding masks, `[CLS]` / mean / pooler
//!   pooling) and its classifier.
//! - `classifier`: the recall classifier (fixed embedding → stack → norm → class logits at the
//!   last position).
//! - `checkpoint`: saving a model with its configuration and loading it back (Burn's
//!   recorders, shapes checked, typed errors).
//! - `lm`: the causal language model (embedding → positions → stack → norm → vocabulary
//!   logits at every position, optional weight tying), decodable with state.
//! - `pretrained`: Hugging Face / state-spaces checkpoints (`config.json` +
//!   `model.safetensors`) loaded through burn-store into a [`BertEncoder`] or a Mamba
//!   [`LanguageModel`].
//! - `seq2seq`: the encoder–decoder transformer (cross-attention) for translation, decodable
//!   with caches.

mod bert;
mod checkpoint;
mod classifier;
mod lm;
mod pretrained;
mod seq2seq;

pub use bert::{
    BertClassifier, BertClassifierConfig, BertConfig, BertEmbeddings, BertEncoder, BertLayer,
    BertPooling, cls_token, l2_normalize, mean_pool, padding_from_attention_mask,
};

pub use checkpoint::{load_checkpoint, load_language_model, save_checkpoint};
pub use classifier::{ClassifierConfig, StackClassifier};
pub use lm::{LanguageModel, LanguageModelConfig};
pub use pretrained::{load_bert, load_mamba, read_bert_config, read_mamba_config};
pub use seq2seq::{
    DecoderBlock, EncoderBlock, EncoderDecoder, EncoderDecoderConfig, EncoderDecoderState,
};

/// Errors on an empty `[batch, len]` id tensor ([`SeqError::ZeroSize`](crate::SeqError::ZeroSize))
/// or an id outside `0..vocab_size` ([`SeqError::TokenOutOfRange`](crate::SeqError::TokenOutOfRange);
/// `what` names the ids in the message: "token", "source", …). Every model checks its inputs
/// with it.
pub(crate) fn check_token_ids<B: burn::tensor::backend::Backend>(
    ids: &burn::tensor::Tensor<B, 2, burn::tensor::Int>,
    vocab_size: usize,
    what: &str,
) -> crate::Result<()> {
    use burn::tensor::ElementConversion;
    let [batch, len] = ids.dims();
    crate::error::ensure_nonzero("batch size", batch)?;
    crate::error::ensure_nonzero("sequence length", len)?;
    // Host round-trip (one sync per forward on a GPU): an out-of-range id would otherwise read
    // outside the embedding table, which GPU backends do not check; a typed error needs the
    // two extremes on the host.
    let largest: i64 = ids.clone().max().into_scalar().elem();
    let smallest: i64 = ids.clone().min().into_scalar().elem();
    if smallest < 0 || largest >= vocab_size as i64 {
        return Err(crate::SeqError::TokenOutOfRange {
            what: what.to_string(),
            id: if smallest < 0 { smallest } else { largest },
            vocab_size,
        });
    }
    Ok(())
}
