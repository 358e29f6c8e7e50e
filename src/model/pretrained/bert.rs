//! Hugging Face `BertModel` / `RobertaModel` checkpoints → [`BertEncoder`].

use std::path::Path;

use burn::config::Config;
use burn::nn::Linear;
use burn::serde::{Deserialize, Serialize};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_store::IdentityAdapter;

use super::weights::{Expected, Weights, problem, read_config};
use crate::error::Result;
use crate::model::{BertConfig, BertEncoder};

/// Checkpoint names → [`BertEncoder`] paths, applied in order (the model prefix first). Q, K
/// and V are not here: they are read one by one and fused (see [`fuse_qkv`]).
const BERT_KEYS: [(&str, &str); 8] = [
    (r"^(bert|roberta)\.", ""),
    (r"^embeddings\.LayerNorm\.", "embeddings.layer_norm."),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.",
        "layers.${1}.attention.mixer.output.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
        "layers.${1}.attention.norm.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.",
        "layers.${1}.mlp.mixer.up.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.dense\.",
        "layers.${1}.mlp.mixer.down.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.",
        "layers.${1}.mlp.norm.",
    ),
    (r"^pooler\.dense\.", "pooler."),
];

/// The fields of any `config.json` that say which model it describes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct ModelType {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
}

impl Config for ModelType {}

/// Hugging Face's `BertConfig` / `RobertaConfig` as `config.json` holds it; absent fields take
/// Hugging Face's defaults.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct HfBert {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    hidden_dropout_prob: Option<f64>,
    initializer_range: Option<f64>,
    pad_token_id: Option<usize>,
    model_type: String,
    position_embedding_type: Option<String>,
}

impl Config for HfBert {}

impl HfBert {
    /// The crate's configuration with Hugging Face's defaults for absent fields.
    fn into_config(self) -> BertConfig {
        let defaults = BertConfig::new(0, 0, 0, 0, 0);
        BertConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self
                .max_position_embeddings
                .unwrap_or(defaults.max_position_embeddings),
            type_vocab_size: self.type_vocab_size.unwrap_or(defaults.type_vocab_size),
            layer_norm_eps: self.layer_norm_eps.unwrap_or(defaults.layer_norm_eps),
            hidden_act: self.hidden_act.unwrap_or(defaults.hidden_act),
            hidden_dropout_prob: self
                .hidden_dropout_prob
                .unwrap_or(defaults.hidden_dropout_prob),
            initializer_range: self.initializer_range.unwrap_or(defaults.initializer_range),
            pad_token_id: self.pad_token_id.unwrap_or(defaults.pad_token_id),
            model_type: self.model_type,
            position_embedding_type: self
                .position_embedding_type
                .unwrap_or(defaults.position_embedding_type),
            pooler: defaults.pooler,
        }
    }
}

/// Reads and validates the `config.json` of a BERT or RoBERTa checkpoint folder.
///
/// Errors with [`SeqError::Checkpoint`](crate::SeqError::Checkpoint) when the file is missing,
/// is not JSON of a BERT configuration, names another architecture (`model_type` other than
/// `bert` or `roberta`), or asks for something the encoder does not support (an activation
/// other than `gelu`, relative position embeddings).
pub fn read_bert_config(dir: impl AsRef<Path>) -> Result<BertConfig> {
    let dir = dir.as_ref();
    let path = dir.join("config.json");
    let head: ModelType = read_config(dir)?;
    match head.model_type.as_deref() {
        Some("bert" | "roberta") => {}
        other => {
            return Err(problem(
                &path,
                format!(
                    "unknown architecture: model_type {other:?}, architectures {:?}; load_bert \
                     reads BERT-family encoders (model_type `bert` or `roberta`)",
                    head.architectures.unwrap_or_default()
                ),
            ));
        }
    }
    let config = read_config::<HfBert>(dir)?.into_config();
    config
        .validate()
        .map_err(|e| problem(&path, format!("unsupported configuration: {e}")))?;
    Ok(config)
}

/// Loads a Hugging Face BERT-family checkpoint folder (`config.json` + `model.safetensors`,
/// as `save_pretrained` writes them) into a [`BertEncoder`] on `device`.
///
/// Reads `BertModel` and `RobertaModel` checkpoints, with or without the `bert.` /
/// `roberta.` prefix of the task models (`BertForSequenceClassification`, …; their heads are
/// ignored), LayerNorm weights named `weight`/`bias` or `gamma`/`beta`; the pooler is loaded
/// when the file has one. `embeddings.position_ids` and other unused tensors are skipped.
///
/// Errors (never panics): [`SeqError::Checkpoint`](crate::SeqError::Checkpoint) for a missing
/// or bad `config.json` (see [`read_bert_config`]) and a missing, truncated or corrupt
/// `model.safetensors`; [`SeqError::CheckpointTensor`](crate::SeqError::CheckpointTensor)
/// naming the key, the shape `config.json` implies and what the file holds, for a missing
/// tensor or one of another shape or type.
pub fn load_bert<B: Backend>(dir: impl AsRef<Path>, device: &B::Device) -> Result<BertEncoder<B>> {
    let dir = dir.as_ref();
    let mut config = read_bert_config(dir)?;
    let mut weights = Weights::open(dir)?;
    let prefix = ["bert.", "roberta."]
        .into_iter()
        .find(|p| weights.has_prefix(&format!("{p}embeddings.")))
        .unwrap_or("");
    config.pooler = weights.has(&format!("{prefix}pooler.dense.weight"));
    weights.check(&expected_tensors(&config, prefix))?;

    let by_hand: Vec<String> = (0..config.num_hidden_layers)
        .flat_map(|i| ["weight", "bias"].map(|p| format!("layers.{i}.attention.mixer.qkv.{p}")))
        .collect();
    let encoder = config.try_init::<B>(device)?;
    let mut encoder = weights.load_into(encoder, &BERT_KEYS, IdentityAdapter, &by_hand)?;
    for (i, layer) in encoder.layers.iter_mut().enumerate() {
        let (mut w, mut b) = (Vec::with_capacity(3), Vec::with_capacity(3));
        for part in ["query", "key", "value"] {
            let name = format!("{prefix}encoder.layer.{i}.attention.self.{part}");
            w.push(weights.read::<B, 2>(&format!("{name}.weight"), device)?); // [D, D]
            b.push(weights.read::<B, 1>(&format!("{name}.bias"), device)?); // [D]
        }
        fuse_qkv(&mut layer.attention.mixer.qkv, w, b, device);
    }
    Ok(encoder)
}

/// Sets the fused projection `qkv` (weight `[D, 3D]`, bias `[3D]`) from the checkpoint's
/// `query`, `key`, `value` weights (PyTorch `[out, in]` = `[D, D]` each) and biases (`[D]`
/// each): `W = [W_Qᵀ | W_Kᵀ | W_Vᵀ]`, `b = [b_Q, b_K, b_V]`, the column blocks that
/// [`QkvSharing::Separate`](crate::attention::QkvSharing) reads as Q, K, V.
fn fuse_qkv<B: Backend>(
    qkv: &mut Linear<B>,
    weights: Vec<Tensor<B, 2>>,
    biases: Vec<Tensor<B, 1>>,
    device: &B::Device,
) {
    let fused = Tensor::cat(weights, 0).transpose(); // [D, 3D]
    // Written out row-major: the CPU kernels read a weight as one contiguous buffer.
    let weight = Tensor::<B, 2>::from_data(fused.into_data(), device); // [D, 3D]
    let id = qkv.weight.id;
    qkv.weight = qkv.weight.clone().transform_for_load(weight, id);
    if let Some(b) = qkv.bias.take() {
        let id = b.id;
        qkv.bias = Some(b.transform_for_load(Tensor::cat(biases, 0), id)); // [3D]
    }
}

/// Every tensor an HF checkpoint of `config` holds that the encoder uses: name (after
/// `prefix`) and PyTorch shape.
fn expected_tensors(config: &BertConfig, prefix: &str) -> Vec<Expected> {
    let (d, inter) = (config.hidden_size, config.intermediate_size);
    let norm = |at: &str| {
        [("weight", "gamma"), ("bias", "beta")].map(|(name, old)| {
            Expected::new(format!("{prefix}{at}.LayerNorm.{name}"), &[d])
                .or(format!("{prefix}{at}.LayerNorm.{old}"))
        })
    };
    let linear = |at: &str, d_out: usize, d_in: usize| {
        [
            Expected::new(format!("{prefix}{at}.weight"), &[d_out, d_in]),
            Expected::new(format!("{prefix}{at}.bias"), &[d_out]),
        ]
    };
    let mut out = vec![
        Expected::new(
            format!("{prefix}embeddings.word_embeddings.weight"),
            &[config.vocab_size, d],
        ),
        Expected::new(
            format!("{prefix}embeddings.position_embeddings.weight"),
            &[config.max_position_embeddings, d],
        ),
        Expected::new(
            format!("{prefix}embeddings.token_type_embeddings.weight"),
            &[config.type_vocab_size, d],
        ),
    ];
    out.extend(norm("embeddings"));
    for i in 0..config.num_hidden_layers {
        let at = |rest: &str| format!("encoder.layer.{i}.{rest}");
        for part in ["query", "key", "value"] {
            out.extend(linear(&at(&format!("attention.self.{part}")), d, d));
        }
        out.extend(linear(&at("attention.output.dense"), d, d));
        out.extend(norm(&at("attention.output")));
        out.extend(linear(&at("intermediate.dense"), inter, d));
        out.extend(linear(&at("output.dense"), d, inter));
        out.extend(norm(&at("output")));
    }
    if config.pooler {
        out.extend(linear("pooler.dense", d, d));
    }
    out
}
