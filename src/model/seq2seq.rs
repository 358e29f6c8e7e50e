//! [`EncoderDecoder`]: the transformer of "Attention Is All You Need" at toy scale, for
//! translation (e.g. English → Pig-Latin words, [`crate::data::PigLatinTask`]).
//!
//! ```text
//! source [B, Ls] → E_src + PE → N_enc × (x + SA(LN x, padding); x + MLP(LN x)) → LN → memory
//! target [B, Lt] → E_tgt + PE → N_dec × (y + causal SA(LN y); y + CA(LN y, memory); y + MLP(LN y))
//!                → LN → head → logits [B, Lt, V]
//! ```
//! Blocks are pre-norm (the crate's convention, as in GPT-2). Decoding runs the decoder one
//! token at a time with a [`KvCache`] per self-attention layer and cross-attention keys/values
//! computed once per source ([`CrossKv`]); [`EncoderDecoder::translate_greedy_uncached`]
//! recomputes everything at every step and gives the same tokens (tested).
//!
//! # Glossary
//! - `Ls`, `Lt` source and target lengths; `D` width; `V` vocabulary; `H` heads.
//! - SA self-attention, CA cross-attention (queries from the decoder, keys/values from the
//!   memory), PE the absolute positions (sinusoidal by default; relative kinds act inside SA).

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use crate::attention::{AttentionBlock, AttentionConfig, AttentionInput, CrossKv, KvCache};
use crate::decode::{GenerateConfig, collect_until_stop};
use crate::error::{SeqError, ensure_nonzero};
use crate::init::materialize;
use crate::linear;
use crate::model::check_token_ids;
use crate::nn::{MlpBlock, MlpConfig, Norm, NormKind, NormPlacement, Residual};
use crate::position::{AbsolutePosition, PositionEncoding};

/// Configuration of an [`EncoderDecoder`].
#[derive(Config, Debug)]
pub struct EncoderDecoderConfig {
    /// Vocabulary size `V` (shared by source and target ids).
    pub vocab_size: usize,
    /// Model width `D`.
    pub d_model: usize,
    /// Attention heads `H` (divides `D`).
    #[config(default = 4)]
    pub n_heads: usize,
    /// Encoder blocks.
    #[config(default = 2)]
    pub encoder_layers: usize,
    /// Decoder blocks.
    #[config(default = 2)]
    pub decoder_layers: usize,
    /// Positions of both sides (sinusoidal, as in the paper).
    #[config(default = "PositionEncoding::Sinusoidal { base: 10000.0 }")]
    pub position: PositionEncoding,
    /// MLP hidden width as a multiple of `D`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Norm of the blocks.
    #[config(default = "NormKind::Layer")]
    pub norm: NormKind,
    /// Norm epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Dropout after each MLP (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Standard deviation of the embeddings' initialization: 1, as PyTorch's `nn.Embedding`, so
    /// that the tokens are not drowned by the unit-amplitude sinusoidal positions added to them.
    #[config(default = 1.0)]
    pub embedding_std: f64,
}

impl EncoderDecoderConfig {
    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EncoderDecoder<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid EncoderDecoderConfig: {e}"))
    }

    /// Validates the configuration and builds the model, drawing every parameter now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<EncoderDecoder<B>> {
        ensure_nonzero("vocab_size", self.vocab_size)?;
        ensure_nonzero("encoder_layers", self.encoder_layers)?;
        ensure_nonzero("decoder_layers", self.decoder_layers)?;
        ensure_nonzero("mlp_ratio", self.mlp_ratio)?;
        if !(self.embedding_std.is_finite() && self.embedding_std > 0.0) {
            return Err(SeqError::OutOfRange {
                name: "embedding_std",
                value: self.embedding_std,
                expected: "a finite value > 0 (1 is PyTorch's default)",
            });
        }
        let d = self.d_model;
        let attention = |causal: bool, position: PositionEncoding| {
            AttentionConfig::new(d, self.n_heads)
                .with_position(position)
                .with_causal(causal)
                .try_init::<B>(device)
        };
        let mlp = || {
            MlpConfig::new(d, self.mlp_ratio * d)
                .with_dropout(self.dropout)
                .try_init::<B>(device)
        };
        let norm = || self.norm.init::<B>(d, self.norm_eps, device);
        let encoder = (0..self.encoder_layers)
            .map(|_| {
                Ok(EncoderBlock {
                    attention: Residual::new(
                        norm(),
                        attention(false, self.position.clone())?,
                        NormPlacement::Pre,
                    ),
                    mlp: Residual::new(norm(), mlp()?, NormPlacement::Pre),
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let decoder = (0..self.decoder_layers)
            .map(|_| {
                Ok(DecoderBlock {
                    self_attention: Residual::new(
                        norm(),
                        attention(true, self.position.clone())?,
                        NormPlacement::Pre,
                    ),
                    cross_attention: Residual::new(
                        norm(),
                        attention(false, PositionEncoding::None)?,
                        NormPlacement::Pre,
                    ),
                    mlp: Residual::new(norm(), mlp()?, NormPlacement::Pre),
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: self.embedding_std,
        };
        let embedding = || {
            EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(normal.clone())
                .init::<B>(device)
        };
        let model = EncoderDecoder {
            source_embedding: embedding(),
            target_embedding: embedding(),
            position: self.position.init_absolute(d, device)?,
            encoder,
            encoder_norm: norm(),
            decoder,
            decoder_norm: norm(),
            head: LinearConfig::new(d, self.vocab_size).init(device),
            vocab_size: self.vocab_size,
        };
        Ok(materialize(model))
    }
}

/// `x + SA(LN x)`, then `x + MLP(LN x)`.
#[derive(Module, Debug)]
pub struct EncoderBlock<B: Backend> {
    /// Bidirectional self-attention (padding keys masked) in its residual block.
    pub attention: AttentionBlock<B>,
    /// Position-wise MLP in its residual block.
    pub mlp: MlpBlock<B>,
}

/// `y + causal SA(LN y)`, then `y + CA(LN y, memory)`, then `y + MLP(LN y)`.
#[derive(Module, Debug)]
pub struct DecoderBlock<B: Backend> {
    /// Causal self-attention in its residual block.
    pub self_attention: AttentionBlock<B>,
    /// Cross-attention over the encoder memory in its residual block.
    pub cross_attention: AttentionBlock<B>,
    /// Position-wise MLP in its residual block.
    pub mlp: MlpBlock<B>,
}

/// An encoder–decoder transformer (see the module docs).
#[derive(Module, Debug)]
pub struct EncoderDecoder<B: Backend> {
    /// Source token embedding `[V, D]`.
    pub source_embedding: Embedding<B>,
    /// Target token embedding `[V, D]`.
    pub target_embedding: Embedding<B>,
    /// Absolute positions of both sides (identity for relative kinds).
    pub position: AbsolutePosition<B>,
    /// Encoder blocks.
    pub encoder: Vec<EncoderBlock<B>>,
    /// Norm of the memory.
    pub encoder_norm: Norm<B>,
    /// Decoder blocks.
    pub decoder: Vec<DecoderBlock<B>>,
    /// Final decoder norm.
    pub decoder_norm: Norm<B>,
    /// Output head `[D, V]`.
    pub head: Linear<B>,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
}

/// What the decoder carries between steps: the memory's cross-attention keys/values and one
/// self-attention cache per decoder block.
#[derive(Debug, Clone)]
pub struct EncoderDecoderState<B: Backend> {
    /// Cross-attention keys/values of each decoder block.
    pub cross: Vec<CrossKv<B>>,
    /// Self-attention caches of each decoder block.
    pub caches: Vec<KvCache<B>>,
    /// Target tokens decoded so far (absolute position of the next one).
    pub position: usize,
}

impl<B: Backend> EncoderDecoder<B> {
    /// Source ids `[B, Ls]` (checked against the vocabulary) embedded, with positions from 0:
    /// `[B, Ls, D]`.
    fn embed_source(&self, source: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        check_token_ids(&source, self.vocab_size, "source")?;
        self.position
            .try_forward(self.source_embedding.forward(source), 0) // [B, Ls, D]
    }

    /// Target ids `[B, Lt]` (checked against the vocabulary) embedded, with positions from 0:
    /// `[B, Lt, D]` (`step` checks first and embeds from its state's position).
    fn embed_target(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        check_token_ids(&tokens, self.vocab_size, "target")?;
        self.position
            .try_forward(self.target_embedding.forward(tokens), 0) // [B, Lt, D]
    }

    /// The memory `[B, Ls, D]` of `source` `[B, Ls]` (padding `[B, Ls]`, `true` = padding).
    ///
    /// Errors with [`SeqError::ZeroSize`] on an empty batch or source,
    /// [`SeqError::TokenOutOfRange`] on an id outside `0..V`, [`SeqError::ShapeMismatch`] when
    /// `padding` is not `[B, Ls]`, [`SeqError::SequenceTooLong`] past a learned position table.
    /// Non-finite values cannot enter through ids; non-finite weights propagate.
    pub fn encode(
        &self,
        source: Tensor<B, 2, Int>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<Tensor<B, 3>> {
        let mut x = self.embed_source(source)?; // [B, Ls, D]
        for block in &self.encoder {
            let input = AttentionInput::self_attention(x).maybe_padding(padding.clone());
            x = block.attention.try_attend(input)?; // [B, Ls, D]
            x = block.mlp.forward(x); // [B, Ls, D]
        }
        Ok(self.encoder_norm.forward(x))
    }

    /// Decoder logits `[B, Lt, V]` of `tokens` `[B, Lt]` over `memory` `[B, Ls, D]`.
    ///
    /// Errors as [`encode`](Self::encode) on the ids, and with [`SeqError::ShapeMismatch`] when
    /// `memory` is not `[B, Ls, D]` for the tokens' `B` and the model's `D`, or
    /// `memory_padding` is not `[B, Ls]`. A non-finite `memory` propagates to the logits of its
    /// batch row.
    pub fn decode(
        &self,
        tokens: Tensor<B, 2, Int>,
        memory: Tensor<B, 3>,
        memory_padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<Tensor<B, 3>> {
        let mut y = self.embed_target(tokens)?; // [B, Lt, D]
        for block in &self.decoder {
            y = block.self_attention.forward(y); // [B, Lt, D]
            let input =
                AttentionInput::cross(y, memory.clone()).maybe_padding(memory_padding.clone());
            y = block.cross_attention.try_attend(input)?; // [B, Lt, D]
            y = block.mlp.forward(y); // [B, Lt, D]
        }
        Ok(linear::apply(&self.head, self.decoder_norm.forward(y))) // [B, Lt, V]
    }

    /// Teacher-forced logits `[B, Lt, V]`: `decode(tokens, encode(source))`.
    pub fn forward(
        &self,
        source: Tensor<B, 2, Int>,
        source_padding: Option<Tensor<B, 2, Bool>>,
        tokens: Tensor<B, 2, Int>,
    ) -> crate::Result<Tensor<B, 3>> {
        let memory = self.encode(source, source_padding.clone())?;
        self.decode(tokens, memory, source_padding)
    }

    /// Encodes `source` and prepares the decoding state (cross-attention keys/values, empty
    /// caches).
    pub fn start(
        &self,
        source: Tensor<B, 2, Int>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> crate::Result<EncoderDecoderState<B>> {
        let memory = self.encode(source, padding.clone())?; // [B, Ls, D]
        Ok(EncoderDecoderState {
            cross: self
                .decoder
                .iter()
                .map(|b| {
                    b.cross_attention
                        .mixer
                        .cross_keys_values(memory.clone(), padding.clone())
                })
                .collect::<crate::Result<_>>()?,
            caches: vec![KvCache::new(); self.decoder.len()],
            position: 0,
        })
    }

    /// Logits `[B, T, V]` of the next target tokens `[B, T]` given the state, and the state
    /// after them (no earlier token is recomputed).
    pub fn step(
        &self,
        tokens: Tensor<B, 2, Int>,
        mut state: EncoderDecoderState<B>,
    ) -> crate::Result<(Tensor<B, 3>, EncoderDecoderState<B>)> {
        // Ids first: their error comes before the state's.
        check_token_ids(&tokens, self.vocab_size, "target")?;
        let [batch, len] = tokens.dims();
        if state.cross.len() != self.decoder.len() || state.caches.len() != self.decoder.len() {
            return Err(SeqError::ShapeMismatch {
                what: "decoder blocks of an EncoderDecoderState",
                expected: self.decoder.len().to_string(),
                got: state.caches.len().to_string(),
            });
        }
        if let Some(cross) = state.cross.first()
            && cross.dims().0 != batch
        {
            return Err(SeqError::ShapeMismatch {
                what: "batch size of the target tokens vs the encoded source",
                expected: cross.dims().0.to_string(),
                got: batch.to_string(),
            });
        }
        let mut y = self
            .position
            .try_forward(self.target_embedding.forward(tokens), state.position)?; // [B, T, D]
        let mut caches = Vec::with_capacity(self.decoder.len());
        for ((block, cache), cross) in self
            .decoder
            .iter()
            .zip(std::mem::take(&mut state.caches))
            .zip(&state.cross)
        {
            let (h, cache) = block.self_attention.forward_with_state(y, cache)?; // [B, T, D]
            caches.push(cache);
            y = block
                .cross_attention
                .try_attend(AttentionInput::cached(h, cross.clone()))?; // [B, T, D]
            y = block.mlp.forward(y); // [B, T, D]
        }
        state.caches = caches;
        state.position += len;
        Ok((
            linear::apply(&self.head, self.decoder_norm.forward(y)),
            state,
        ))
    }

    /// Cross-attention weights `[B, H, Lt, Ls]` of every decoder block for teacher-forced
    /// `tokens` (which source token each output position reads).
    pub fn cross_attention_maps(
        &self,
        source: Tensor<B, 2, Int>,
        tokens: Tensor<B, 2, Int>,
    ) -> crate::Result<Vec<Tensor<B, 4>>> {
        let memory = self.encode(source, None)?; // [B, Ls, D]
        let mut y = self.embed_target(tokens)?; // [B, Lt, D]
        let mut maps = Vec::with_capacity(self.decoder.len());
        for block in &self.decoder {
            y = block.self_attention.forward(y); // [B, Lt, D]
            let (out, weights) = block
                .cross_attention
                .attend_with_weights(AttentionInput::cross(y, memory.clone()))?;
            maps.push(weights); // [B, H, Lt, Ls]
            y = block.mlp.forward(out); // [B, Lt, D]
        }
        Ok(maps)
    }

    /// The encoder's self-attention weights `[B, H, Ls, Ls]` of every block, first block first
    /// (which source position each position reads; for plots). The blocks run as in
    /// [`encode`](Self::encode), without padding.
    ///
    /// Errors as [`encode`](Self::encode).
    pub fn encoder_attention_maps(
        &self,
        source: Tensor<B, 2, Int>,
    ) -> crate::Result<Vec<Tensor<B, 4>>> {
        let mut x = self.embed_source(source)?; // [B, Ls, D]
        let mut maps = Vec::with_capacity(self.encoder.len());
        for block in &self.encoder {
            let (out, weights) = block
                .attention
                .attend_with_weights(AttentionInput::self_attention(x))?; // [B, Ls, D], [B, H, Ls, Ls]
            maps.push(weights);
            x = block.mlp.forward(out); // [B, Ls, D]
        }
        Ok(maps)
    }

    /// Greedy translations of `sources` (each non-empty) with the caches: the decoder starts
    /// from `start_token` and stops at `config.stop_token` (not returned) or after
    /// `config.max_new_tokens`. Sources of one length are decoded as one batch.
    pub fn translate_greedy(
        &self,
        sources: &[Vec<u32>],
        start_token: u32,
        config: GenerateConfig,
        device: &B::Device,
    ) -> crate::Result<Vec<Vec<u32>>> {
        self.translate_grouped(sources, config, device, |source| {
            let batch = source.dims()[0];
            let mut state = self.start(source, None)?;
            let mut next = start_column::<B>(batch, start_token, device);
            collect_until_stop(batch, config, || {
                let (logits, s) = self.step(next.clone(), state.clone())?; // [G, 1, V]
                state = s;
                let chosen = last_argmax(logits)?;
                next = ids_column::<B>(&chosen, device);
                Ok(chosen)
            })
        })
    }

    /// [`translate_greedy`](Self::translate_greedy) without any cache: every step re-encodes the
    /// source and re-runs the decoder over the whole prefix (the reference the cached path is
    /// tested against).
    pub fn translate_greedy_uncached(
        &self,
        sources: &[Vec<u32>],
        start_token: u32,
        config: GenerateConfig,
        device: &B::Device,
    ) -> crate::Result<Vec<Vec<u32>>> {
        self.translate_grouped(sources, config, device, |source| {
            let batch = source.dims()[0];
            let mut prefix: Vec<Vec<u32>> = vec![vec![start_token]; batch];
            collect_until_stop(batch, config, || {
                let len = prefix[0].len();
                let flat: Vec<i64> = prefix.iter().flatten().map(|&t| t as i64).collect();
                let tokens =
                    Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [batch, len]), device);
                let logits = self.forward(source.clone(), None, tokens)?; // [G, len, V]
                let chosen = last_argmax(logits)?;
                for (row, &c) in prefix.iter_mut().zip(&chosen) {
                    row.push(c as u32);
                }
                Ok(chosen)
            })
        })
    }

    /// Runs `decode_group` on each group of equal-length sources and puts the answers back in
    /// input order.
    fn translate_grouped(
        &self,
        sources: &[Vec<u32>],
        config: GenerateConfig,
        device: &B::Device,
        mut decode_group: impl FnMut(Tensor<B, 2, Int>) -> crate::Result<Vec<Vec<u32>>>,
    ) -> crate::Result<Vec<Vec<u32>>> {
        if let Some(i) = sources.iter().position(Vec::is_empty) {
            return Err(SeqError::InvalidConfig(format!(
                "source {i} is empty; give every source at least one token"
            )));
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, s) in sources.iter().enumerate() {
            groups.entry(s.len()).or_default().push(i);
        }
        let mut out = vec![Vec::new(); sources.len()];
        if config.max_new_tokens == 0 {
            return Ok(out);
        }
        for (len, rows) in groups {
            let flat: Vec<i64> = rows
                .iter()
                .flat_map(|&i| sources[i].iter().map(|&t| t as i64))
                .collect();
            let source =
                Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [rows.len(), len]), device);
            for (row, answer) in rows.iter().zip(decode_group(source)?) {
                out[*row] = answer;
            }
        }
        Ok(out)
    }
}

/// `[batch, 1]` of `token`.
fn start_column<B: Backend>(batch: usize, token: u32, device: &B::Device) -> Tensor<B, 2, Int> {
    ids_column(&vec![token as i64; batch], device)
}

fn ids_column<B: Backend>(ids: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [ids.len(), 1]), device)
}

/// Arg-max ids of the last position of `logits` `[G, T, V]`.
fn last_argmax<B: Backend>(logits: Tensor<B, 3>) -> crate::Result<Vec<i64>> {
    let [batch, t, v] = logits.dims();
    // Host round-trip per decoding step: the next input and the stop at EOS depend on the ids.
    logits
        .narrow(1, t - 1, 1)
        .reshape([batch, v])
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec()
        .map_err(|e| SeqError::InvalidConfig(format!("reading the arg-max back failed: {e:?}")))
}

impl<B: Backend> crate::train::SequenceModel<B> for EncoderDecoder<B> {
    /// An error: the encoder–decoder needs a source ([`logits_with_source`]).
    ///
    /// [`logits_with_source`]: crate::train::SequenceModel::logits_with_source
    fn logits(&self, _tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
        Err(SeqError::InvalidConfig(
            "an encoder–decoder needs a source sequence; give batches with `source` \
             (e.g. Seq2SeqLayout::EncoderDecoder)"
                .into(),
        ))
    }

    fn logits_with_source(
        &self,
        source: Tensor<B, 2, Int>,
        source_padding: Option<Tensor<B, 2, Bool>>,
        tokens: Tensor<B, 2, Int>,
    ) -> crate::Result<Tensor<B, 3>> {
        self.forward(source, source_padding, tokens)
    }
}
