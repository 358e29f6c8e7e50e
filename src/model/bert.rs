//! [`BertEncoder`]: a BERT-family encoder (BERT, RoBERTa, MiniLM) built from the crate's one
//! residual block, and [`BertClassifier`], the encoder with a classification head.
//!
//! ```text
//! ids [B, L] → word + position + token-type embeddings → LayerNorm → dropout      (embeddings)
//!   N × { x ← LN(x + attention(x, padding))                            (post-norm Residual)
//!         x ← LN(x + W₂ GELU(W₁ x + b₁) + b₂) }                        (post-norm Residual)
//!   → hidden [B, L, D] → [CLS] | masked mean | pooler tanh(W_p h_[CLS] + b_p) → [B, D]
//! ```
//!
//! The numbers are those of Hugging Face's `BertModel`: scores `q·k / √d_head`, the exact (erf)
//! GELU, LayerNorm `(x − mean) / √(var + ε) · γ + β` with the checkpoint's ε (1e-12 for BERT),
//! padded keys masked before the softmax. Load a checkpoint with
//! [`load_bert`](super::load_bert); tests match `transformers` to ≤ 1e-4
//! (`tests/suite/pretrained.rs`).
//!
//! # Masks
//! The crate's padding masks are `Bool` with `true` = padding (never attended to, left out of
//! mean pooling). Hugging Face's `attention_mask` (`1` = real token) converts with
//! [`padding_from_attention_mask`].
//!
//! # Glossary
//! - `B` batch, `L` length, `D` hidden size, `H` heads, `I` intermediate (MLP) width, `V`
//!   vocabulary, `P` position table size, `T` token-type vocabulary, `C` classes.
//! - **`[CLS]`**: the first token of every input; its final hidden state summarizes the sequence.
//! - **Pooler**: BERT's `tanh(W_p h_[CLS] + b_p)`, trained for next-sentence prediction.
//! - **Mean pooling**: the average of the hidden states of the real (non-padding) tokens, as
//!   sentence-transformers computes sentence embeddings.
//! - **Token types** (segments): `0` for the first sentence of a pair, `1` for the second.
//! - **RoBERTa positions**: position ids count the real tokens from `pad_token_id + 1`;
//!   padding tokens get `pad_token_id` (so RoBERTa tables have `P = max_len + pad + 1` rows).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::attention::{AttentionBlock, AttentionConfig, AttentionInput};
use crate::error::{SeqError, ensure_nonzero, ensure_positive, ensure_shape};
use crate::init::materialize;
use crate::linear;
use crate::nn::{LayerNorm, MlpBlock, MlpConfig, NormKind, NormPlacement, Residual};
use crate::train::SequenceModel;

/// Configuration of a [`BertEncoder`]. The fields are those of Hugging Face's `config.json` of
/// a `BertModel` or `RobertaModel`, under the same names; [`read_bert_config`](super::read_bert_config)
/// reads one (absent fields take Hugging Face's defaults, fields the encoder does not use are
/// ignored). As a Burn `Config` it also saves and loads itself as JSON.
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `D`.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads `H`; must divide `D`.
    pub num_attention_heads: usize,
    /// Width `I` of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Rows `P` of the learned position table.
    #[config(default = 512)]
    pub max_position_embeddings: usize,
    /// Token-type (segment) vocabulary `T`.
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// ε of every LayerNorm.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// The MLP's activation; only `"gelu"` (exact, erf form) is supported.
    #[config(default = "String::from(\"gelu\")")]
    pub hidden_act: String,
    /// Dropout on the embeddings and on the MLP outputs (identity at inference; the attention
    /// has none).
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    /// Standard deviation of the embeddings' normal initialization (before loading weights).
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Id of the padding token (RoBERTa's position ids start after it).
    #[config(default = 0)]
    pub pad_token_id: usize,
    /// `"bert"` (positions `0..L`) or `"roberta"` (positions from `pad_token_id + 1`).
    #[config(default = "String::from(\"bert\")")]
    pub model_type: String,
    /// Only `"absolute"` (a learned table) is supported.
    #[config(default = "String::from(\"absolute\")")]
    pub position_embedding_type: String,
    /// Whether the encoder has BERT's pooler (the loader sets it from the checkpoint's keys).
    #[config(default = true)]
    pub pooler: bool,
}

impl BertConfig {
    /// Whether position ids follow RoBERTa's rule (`model_type` `"roberta"`).
    pub fn is_roberta(&self) -> bool {
        self.model_type == "roberta"
    }

    /// The first position id of a sequence: 0 for BERT, `pad_token_id + 1` for RoBERTa.
    pub fn position_offset(&self) -> usize {
        if self.is_roberta() {
            self.pad_token_id + 1
        } else {
            0
        }
    }

    /// Checks every field; the error says which one to fix.
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("vocab_size", self.vocab_size)?;
        ensure_nonzero("hidden_size", self.hidden_size)?;
        ensure_nonzero("num_hidden_layers", self.num_hidden_layers)?;
        ensure_nonzero("intermediate_size", self.intermediate_size)?;
        ensure_nonzero("type_vocab_size", self.type_vocab_size)?;
        AttentionConfig::new(self.hidden_size, self.num_attention_heads).validate()?;
        if self.model_type != "bert" && self.model_type != "roberta" {
            return Err(SeqError::InvalidConfig(format!(
                "model_type `{}` is not a BERT-family encoder; use `bert` or `roberta`",
                self.model_type
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(SeqError::InvalidConfig(format!(
                "hidden_act `{}` is not supported; the encoder's MLP uses the exact (erf) GELU, \
                 `gelu`",
                self.hidden_act
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(SeqError::InvalidConfig(format!(
                "position_embedding_type `{}` is not supported; only `absolute` (a learned table)",
                self.position_embedding_type
            )));
        }
        if self.max_position_embeddings <= self.position_offset() {
            return Err(SeqError::InvalidConfig(format!(
                "max_position_embeddings ({}) leaves no position after RoBERTa's offset \
                 pad_token_id + 1 = {}; raise it",
                self.max_position_embeddings,
                self.position_offset()
            )));
        }
        if !(0.0..1.0).contains(&self.hidden_dropout_prob) {
            return Err(SeqError::OutOfRange {
                name: "hidden_dropout_prob",
                value: self.hidden_dropout_prob,
                expected: "a probability in [0, 1)",
            });
        }
        for (name, value) in [
            ("layer_norm_eps", self.layer_norm_eps),
            ("initializer_range", self.initializer_range),
        ] {
            ensure_positive(name, value)?;
        }
        Ok(())
    }

    /// Validates the configuration and builds the encoder, drawing every parameter now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<BertEncoder<B>> {
        self.validate()?;
        let (d, eps) = (self.hidden_size, self.layer_norm_eps);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let table = |rows: usize| {
            EmbeddingConfig::new(rows, d)
                .with_initializer(normal.clone())
                .init(device)
        };
        let embeddings = BertEmbeddings {
            word_embeddings: table(self.vocab_size),
            position_embeddings: table(self.max_position_embeddings),
            token_type_embeddings: table(self.type_vocab_size),
            layer_norm: LayerNorm::new(d, eps, device),
            dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| {
                let attention = AttentionConfig::new(d, self.num_attention_heads)
                    .with_causal(false)
                    .with_bias(true)
                    .try_init(device)?;
                let mlp = MlpConfig::new(d, self.intermediate_size)
                    .with_dropout(self.hidden_dropout_prob)
                    .try_init(device)?;
                Ok(BertLayer {
                    attention: Residual::new(
                        NormKind::Layer.init(d, eps, device),
                        attention,
                        NormPlacement::Post,
                    ),
                    mlp: Residual::new(
                        NormKind::Layer.init(d, eps, device),
                        mlp,
                        NormPlacement::Post,
                    ),
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(materialize(BertEncoder {
            embeddings,
            layers,
            pooler: self.pooler.then(|| LinearConfig::new(d, d).init(device)),
            position_offset: self.position_offset(),
            pad_token_id: self.pad_token_id,
        }))
    }

    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> BertEncoder<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid BertConfig: {e}"))
    }
}

/// The input embeddings: `LN(E_word[ids] + E_pos[positions] + E_type[token types])`, then
/// dropout. Checkpoint names (Hugging Face): `embeddings.{word,position,token_type}_embeddings`,
/// `embeddings.LayerNorm`.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    /// Token table `[V, D]`.
    pub word_embeddings: Embedding<B>,
    /// Learned position table `[P, D]`.
    pub position_embeddings: Embedding<B>,
    /// Segment table `[T, D]`.
    pub token_type_embeddings: Embedding<B>,
    /// LayerNorm of the sum.
    pub layer_norm: LayerNorm<B>,
    /// Dropout after the norm.
    pub dropout: Dropout,
}

/// One post-norm encoder layer: `x ← LN(x + attention(x))`, then `x ← LN(x + MLP(x))`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    /// Bidirectional self-attention with projection biases, post-norm (`attention.self.*`,
    /// `attention.output.*` in a checkpoint; Q, K and V fused into one `[D, 3D]` projection).
    pub attention: AttentionBlock<B>,
    /// The GELU MLP, post-norm (`intermediate.dense`, `output.dense`, `output.LayerNorm`).
    pub mlp: MlpBlock<B>,
}

/// How a [`BertClassifier`] (or [`BertEncoder::pool`]) turns the hidden states `[B, L, D]` into
/// one vector per sequence `[B, D]`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BertPooling {
    /// The hidden state of the first token (`[CLS]`).
    Cls,
    /// The mean over the real (non-padding) tokens, as sentence-transformers.
    Mean,
    /// BERT's pooler `tanh(W_p h_[CLS] + b_p)` (needs an encoder with a pooler).
    Pooler,
}

/// A BERT-family encoder: `ids [B, L]` → hidden states `[B, L, D]`, with poolings to `[B, D]`.
/// Build it with [`BertConfig::try_init`] or load a checkpoint with
/// [`load_bert`](super::load_bert).
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    /// Word, position and token-type embeddings with their LayerNorm.
    pub embeddings: BertEmbeddings<B>,
    /// The encoder layers, first to last.
    pub layers: Vec<BertLayer<B>>,
    /// BERT's pooler dense layer `[D, D]` (tanh after it), when the checkpoint has one.
    pub pooler: Option<Linear<B>>,
    /// The first position id: 0 (BERT) or `pad_token_id + 1` (RoBERTa).
    pub position_offset: usize,
    /// Id of the padding token.
    pub pad_token_id: usize,
}

impl<B: Backend> BertEncoder<B> {
    /// Hidden size `D`.
    pub fn d_model(&self) -> usize {
        self.embeddings.word_embeddings.weight.dims()[1]
    }

    /// Vocabulary size `V`.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.dims()[0]
    }

    /// The longest input the position table holds (`P − position_offset`).
    pub fn max_len(&self) -> usize {
        let rows = self.embeddings.position_embeddings.weight.dims()[0];
        rows.saturating_sub(self.position_offset)
    }

    /// Whether position ids follow RoBERTa's rule.
    fn roberta_positions(&self) -> bool {
        self.position_offset > 0
    }

    /// The last hidden states `[B, L, D]` of `ids` `[B, L]`, with optional `token_types`
    /// `[B, L]` (all 0 when `None`) and key `padding` `[B, L]` (`true` = padding; see
    /// [`padding_from_attention_mask`]). Padded positions get outputs too (their queries attend
    /// to the real tokens), as in Hugging Face's models; pool with the same mask.
    ///
    /// Errors with [`SeqError::ZeroSize`] on an empty batch or sequence,
    /// [`SeqError::TokenOutOfRange`] on an id or token type outside its table,
    /// [`SeqError::SequenceTooLong`] past the position table, [`SeqError::ShapeMismatch`] when
    /// `token_types` or `padding` is not `[B, L]`.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<Tensor<B, 3>> {
        let [batch, len] = ids.dims();
        super::check_token_ids(&ids, self.vocab_size(), "token")?;
        if len > self.max_len() {
            return Err(SeqError::SequenceTooLong {
                what: "BERT position table",
                len,
                max: self.max_len(),
            });
        }
        let e = &self.embeddings;
        let device = ids.device();
        let token_types = match token_types {
            Some(types) => {
                ensure_shape("token_types [B, L]", &[batch, len], &types.dims())?;
                let type_vocab = e.token_type_embeddings.weight.dims()[0];
                super::check_token_ids(&types, type_vocab, "token type")?;
                types
            }
            None => Tensor::<B, 2, Int>::zeros([batch, len], &device),
        };
        if let Some(p) = &padding {
            ensure_shape("padding mask [B, L]", &[batch, len], &p.dims())?;
        }
        let positions = if self.roberta_positions() {
            // RoBERTa: real tokens count from pad + 1, padding tokens sit at pad.
            let pad = self.pad_token_id as i64;
            let real = ids.clone().not_equal_elem(pad).int(); // [B, L]
            (real.clone().cumsum(1) * real).add_scalar(pad) // [B, L]
        } else {
            Tensor::<B, 1, Int>::arange(0..len as i64, &device)
                .reshape([1, len])
                .repeat_dim(0, batch) // [B, L]
        };
        let x = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(token_types); // [B, L, D]
        let mut x = e.dropout.forward(e.layer_norm.forward(x)); // [B, L, D]
        for layer in &self.layers {
            let input = AttentionInput::self_attention(x).maybe_padding(padding.clone());
            x = layer.attention.try_attend(input)?; // [B, L, D]
            x = layer.mlp.try_forward(x)?; // [B, L, D]
        }
        Ok(x)
    }

    /// One vector per sequence `[B, D]` from the hidden states `[B, L, D]` of
    /// [`forward`](Self::forward), with the `padding` `[B, L]` given there (only
    /// [`BertPooling::Mean`] reads it). Errors with [`SeqError::InvalidConfig`] for
    /// [`BertPooling::Pooler`] on an encoder without a pooler.
    pub fn pool(
        &self,
        hidden: Tensor<B, 3>,
        padding: Option<Tensor<B, 2, Bool>>,
        pooling: BertPooling,
    ) -> crate::Result<Tensor<B, 2>> {
        match pooling {
            BertPooling::Cls => Ok(cls_token(hidden)),
            BertPooling::Mean => Ok(mean_pool(hidden, padding)),
            BertPooling::Pooler => {
                let dense = self.pooler.as_ref().ok_or_else(|| {
                    SeqError::InvalidConfig(
                        "this encoder has no pooler (its checkpoint has no `pooler.dense`); pool \
                         with BertPooling::Cls or BertPooling::Mean"
                            .into(),
                    )
                })?;
                Ok(linear::apply(dense, cls_token(hidden)).tanh()) // [B, D]
            }
        }
    }

    /// The sentence embedding of sentence-transformers' MiniLM/MPNet models: the mean of the
    /// real tokens' hidden states, L2-normalized, `[B, D]`. Errors as
    /// [`forward`](Self::forward).
    pub fn sentence_embedding(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<Tensor<B, 2>> {
        let hidden = self.forward(ids, token_types, padding.clone())?; // [B, L, D]
        Ok(l2_normalize(mean_pool(hidden, padding)))
    }
}

/// The crate's padding mask (`true` = padding) from Hugging Face's `attention_mask` `[B, L]`
/// (`1` = real token, `0` = padding).
pub fn padding_from_attention_mask<B: Backend>(
    attention_mask: Tensor<B, 2, Int>,
) -> Tensor<B, 2, Bool> {
    attention_mask.equal_elem(0)
}

/// The hidden state of the first token: `[B, L, D]` → `[B, D]`.
pub fn cls_token<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, d] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, d]) // [B, D]
}

/// The mean over the non-padding positions (`padding` `true` = padding; all positions when
/// `None`): `[B, L, D]` → `[B, D]`. A row with no real token gives zeros (sentence-transformers
/// divides by `max(count, 1e-9)`).
pub fn mean_pool<B: Backend>(
    hidden: Tensor<B, 3>,
    padding: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 2> {
    let [batch, len, d] = hidden.dims();
    match padding {
        None => hidden.mean_dim(1).reshape([batch, d]),
        Some(padding) => {
            let keep = padding.bool_not().float().reshape([batch, len, 1]); // [B, L, 1]
            let sum = (hidden * keep.clone()).sum_dim(1).reshape([batch, d]); // [B, D]
            let count = keep.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9); // [B, 1]
            sum / count // [B, D]
        }
    }
}

/// Each row divided by its Euclidean norm (at least 1e-12, as PyTorch's `F.normalize`):
/// `[B, D]` → `[B, D]`.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12); // [B, 1]
    x / norm
}

/// Configuration of a [`BertClassifier`]'s head over an encoder.
#[derive(Config, Debug)]
pub struct BertClassifierConfig {
    /// Number of classes `C`.
    pub n_classes: usize,
    /// How the hidden states become one vector per sequence.
    #[config(default = "BertPooling::Cls")]
    pub pooling: BertPooling,
    /// Dropout on the pooled vector (Hugging Face: `classifier_dropout`, else
    /// `hidden_dropout_prob`).
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl BertClassifierConfig {
    /// Puts a new linear head `[D, C]` on `encoder` (e.g. one from
    /// [`load_bert`](super::load_bert)). Errors on `n_classes = 0`, a dropout outside
    /// `[0, 1)`, or [`BertPooling::Pooler`] with an encoder without a pooler.
    pub fn try_init<B: Backend>(
        &self,
        encoder: BertEncoder<B>,
        device: &B::Device,
    ) -> crate::Result<BertClassifier<B>> {
        ensure_nonzero("n_classes", self.n_classes)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SeqError::OutOfRange {
                name: "dropout",
                value: self.dropout,
                expected: "a probability in [0, 1)",
            });
        }
        if self.pooling == BertPooling::Pooler && encoder.pooler.is_none() {
            return Err(SeqError::InvalidConfig(
                "BertPooling::Pooler needs an encoder with a pooler; use Cls or Mean".into(),
            ));
        }
        let head = LinearConfig::new(encoder.d_model(), self.n_classes).init(device);
        Ok(materialize(BertClassifier {
            encoder,
            dropout: DropoutConfig::new(self.dropout).init(),
            head,
            pooling: self.pooling,
        }))
    }

    /// Like [`try_init`](Self::try_init) but panics with the validation message.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(
        &self,
        encoder: BertEncoder<B>,
        device: &B::Device,
    ) -> BertClassifier<B> {
        self.try_init(encoder, device)
            .unwrap_or_else(|e| panic!("invalid BertClassifierConfig: {e}"))
    }
}

/// A sequence classifier: encoder → pooling → dropout → linear head, `[B, L]` → `[B, C]`.
///
/// For the crate's trainer ([`SequenceModel`]) the padding is read from the ids: positions
/// holding the encoder's `pad_token_id` are padding (BERT's `[PAD]` never occurs in text).
#[derive(Module, Debug)]
pub struct BertClassifier<B: Backend> {
    /// The encoder (pretrained or not).
    pub encoder: BertEncoder<B>,
    /// Dropout on the pooled vector.
    pub dropout: Dropout,
    /// Class head `[D, C]`.
    pub head: Linear<B>,
    /// How the hidden states are pooled.
    pub pooling: BertPooling,
}

impl<B: Backend> BertClassifier<B> {
    /// Class logits `[B, C]` of `ids` `[B, L]` with optional token types and padding (as
    /// [`BertEncoder::forward`], whose errors it returns).
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<Tensor<B, 2>> {
        let hidden = self.encoder.forward(ids, token_types, padding.clone())?; // [B, L, D]
        let pooled = self.encoder.pool(hidden, padding, self.pooling)?; // [B, D]
        Ok(linear::apply(&self.head, self.dropout.forward(pooled))) // [B, C]
    }

    /// The padding of `ids`: `true` where the id is the encoder's `pad_token_id`.
    pub fn padding_of(&self, ids: &Tensor<B, 2, Int>) -> Tensor<B, 2, Bool> {
        ids.clone().equal_elem(self.encoder.pad_token_id as i64)
    }
}

impl<B: Backend> SequenceModel<B> for BertClassifier<B> {
    /// The class logits as one position, `[B, 1, C]` (a classifier has no per-token output).
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        let logits = self.last_logits(tokens)?; // [B, C]
        Ok(logits.unsqueeze_dim(1)) // [B, 1, C]
    }

    /// The class logits `[B, C]`, padding read from the ids (see [`BertClassifier`]).
    fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 2>> {
        let padding = self.padding_of(&tokens);
        self.forward(tokens, None, Some(padding))
    }
}
