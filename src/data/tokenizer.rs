//! Subword tokenization of real text for pretrained encoders: Hugging Face's own `tokenizers`
//! crate reading a `tokenizer.json` (WordPiece for BERT-family checkpoints), with the three
//! choices a batch needs made explicit: `max_length` (truncation), padding (to the longest
//! sequence of the batch or to `max_length`), and sentence pairs (token types 0 then 1).
//!
//! # Glossary
//! - `B` batch, `L` padded length (`≤ max_length`).
//! - `ids` `[B, L]`: token ids, `[CLS] … [SEP]` added, pads with the tokenizer's pad id.
//! - `attention_mask` `[B, L]`: 1 at real tokens, 0 at pads (Hugging Face's convention);
//!   [`Encoded::padding_mask`] gives the crate's convention (`true` = padding).
//! - `type_ids` `[B, L]`: the segment of each token (0, or 1 for the second sentence of a pair).

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use tokenizers::{
    EncodeInput, PaddingParams, PaddingStrategy, PostProcessor, TruncationParams,
    TruncationStrategy,
};

use crate::error::{Result, SeqError, ensure_nonzero};

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest sequence of the batch (what sentence-transformers does).
    Longest,
    /// Every sequence to `max_length` (fixed shapes).
    MaxLength,
}

/// A `tokenizer.json` tokenizer with the truncation and padding of a batch set by the caller,
/// not by the file (MiniLM's file, for one, pads and truncates everything to 128).
pub struct Tokenizer {
    /// The Hugging Face tokenizer, its own padding and truncation turned off.
    inner: tokenizers::Tokenizer,
    /// The padding token's id and text, read from the file (`[PAD]` = 0 for BERT).
    pad_id: u32,
    /// The pad token's text.
    pad_token: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// A tokenized batch, padded to one length `L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids `[B, L]`.
    pub ids: Vec<Vec<u32>>,
    /// 1 at real tokens, 0 at pads, `[B, L]`.
    pub attention_mask: Vec<Vec<u32>>,
    /// Segment of each token, `[B, L]`.
    pub type_ids: Vec<Vec<u32>>,
}

impl Tokenizer {
    /// Reads `tokenizer.json`. Errors with [`SeqError::Read`] when the file is missing or is not
    /// a tokenizer the `tokenizers` crate can read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let read_error = |message: String| SeqError::Read {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(read_error(
                "no such file; run scripts/fetch_pretrained.sh or give the folder of a \
                 Hugging Face checkpoint"
                    .into(),
            ));
        }
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| read_error(format!("not a tokenizer.json: {e}")))?;
        let (pad_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_token.clone()),
            None => match inner.token_to_id("[PAD]") {
                Some(id) => (id, "[PAD]".to_string()),
                None => match inner.token_to_id("<pad>") {
                    Some(id) => (id, "<pad>".to_string()),
                    None => {
                        return Err(read_error(
                            "the tokenizer has no padding token ([PAD] or <pad>)".into(),
                        ));
                    }
                },
            },
        };
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| read_error(e.to_string()))?;
        Ok(Tokenizer {
            inner,
            pad_id,
            pad_token,
        })
    }

    /// The vocabulary size, added tokens included (the rows a word embedding needs).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokenizes `texts`, truncated to `max_length` tokens (special tokens included) and padded
    /// as `padding` says. Errors when `texts` is empty or `max_length` is too small to hold the
    /// special tokens.
    pub fn encode(&self, texts: &[&str], max_length: usize, padding: Padding) -> Result<Encoded> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|&t| t.into()).collect();
        self.encode_inputs(inputs, max_length, padding)
    }

    /// [`encode`](Self::encode) for sentence pairs `(first, second)`: `[CLS] a [SEP] b [SEP]`,
    /// token types 0 for the first part and 1 for the second; the longer part is truncated
    /// first.
    pub fn encode_pairs(
        &self,
        pairs: &[(&str, &str)],
        max_length: usize,
        padding: Padding,
    ) -> Result<Encoded> {
        let inputs: Vec<EncodeInput> = pairs.iter().map(|&(a, b)| (a, b).into()).collect();
        self.encode_inputs(inputs, max_length, padding)
    }

    /// The batch encoding with this call's truncation and padding.
    fn encode_inputs(
        &self,
        inputs: Vec<EncodeInput>,
        max_length: usize,
        padding: Padding,
    ) -> Result<Encoded> {
        ensure_nonzero("number of texts", inputs.len())?;
        ensure_nonzero("max_length", max_length)?;
        // The library subtracts the special tokens from max_length unchecked (and panics below
        // zero): keep room for them and one token of text.
        let is_pair = matches!(inputs[0], EncodeInput::Dual(..));
        let special = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(is_pair));
        if max_length <= special {
            return Err(SeqError::OutOfRange {
                name: "max_length",
                value: max_length as f64,
                expected: if is_pair {
                    "more than the special tokens of a pair ([CLS], 2 × [SEP] for BERT)"
                } else {
                    "more than the special tokens of a sentence ([CLS], [SEP] for BERT)"
                },
            });
        }
        let mut tokenizer = self.inner.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| SeqError::InvalidConfig(format!("truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: match padding {
                Padding::Longest => PaddingStrategy::BatchLongest,
                Padding::MaxLength => PaddingStrategy::Fixed(max_length),
            },
            pad_id: self.pad_id,
            pad_token: self.pad_token.clone(),
            ..Default::default()
        }));
        let encodings = tokenizer.encode_batch(inputs, true).map_err(|e| {
            SeqError::InvalidConfig(format!(
                "cannot tokenize to max_length {max_length}: {e}; raise max_length"
            ))
        })?;
        Ok(Encoded {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
            attention_mask: encodings
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
            type_ids: encodings
                .iter()
                .map(|e| e.get_type_ids().to_vec())
                .collect(),
        })
    }
}

impl Encoded {
    /// `[B, L]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.ids.len(), self.ids.first().map_or(0, Vec::len)]
    }

    /// Token ids `[B, L]` on `device`.
    pub fn ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        int_tensor(&self.ids, self.dims(), device)
    }

    /// Token types `[B, L]` on `device`.
    pub fn type_ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        int_tensor(&self.type_ids, self.dims(), device)
    }

    /// The crate's padding mask `[B, L]`: `true` at pads (where `attention_mask` is 0).
    pub fn padding_mask<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Bool> {
        let flat: Vec<bool> = self
            .attention_mask
            .iter()
            .flatten()
            .map(|&m| m == 0)
            .collect();
        Tensor::from_data(TensorData::new(flat, self.dims()), device)
    }
}

/// `[B, L]` rows of ids as an Int tensor.
fn int_tensor<B: Backend>(
    rows: &[Vec<u32>],
    dims: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().map(|&v| i64::from(v)).collect();
    Tensor::from_data(TensorData::new(flat, dims), device)
}
