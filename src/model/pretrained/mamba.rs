//! Mamba checkpoints (Hugging Face `MambaForCausalLM`, state-spaces `mamba_ssm`) →
//! [`LanguageModel`] over a stack of Mamba blocks.

use std::path::Path;

use burn::config::Config;
use burn::serde::{Deserialize, Serialize};
use burn::tensor::backend::Backend;
use burn::tensor::{Shape, TensorData};
use burn_store::{ModuleAdapter, TensorSnapshot};

use super::weights::{Expected, Weights, problem, read_config, with_data};
use crate::error::Result;
use crate::model::{LanguageModel, LanguageModelConfig};
use crate::nn::NormKind;
use crate::ssm::MambaConfig;
use crate::stack::{LayerKind, StackConfig};

/// Checkpoint names (both namings) → [`LanguageModel`] paths (enum variants left out),
/// applied in order.
const MAMBA_KEYS: [(&str, &str); 7] = [
    (r"^backbone\.embeddings?\.weight$", "embedding.weight"),
    (
        r"^backbone\.layers\.(\d+)\.norm\.weight$",
        "stack.blocks.${1}.mixer.norm.gamma",
    ),
    (
        r"^backbone\.layers\.(\d+)\.mixer\.A_log$",
        "stack.blocks.${1}.mixer.mixer.a_log",
    ),
    (
        r"^backbone\.layers\.(\d+)\.mixer\.D$",
        "stack.blocks.${1}.mixer.mixer.d",
    ),
    (
        r"^backbone\.layers\.(\d+)\.mixer\.",
        "stack.blocks.${1}.mixer.mixer.",
    ),
    (r"^backbone\.norm_f\.weight$", "norm.gamma"),
    (r"^lm_head\.weight$", "head.weight"),
];

/// `dt_rank` / `time_step_rank`: a number or `"auto"` (`ceil(d_model / 16)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(crate = "burn::serde", untagged)]
enum DtRank {
    Rank(usize),
    Named(String),
}

/// The fields of `config.json` that tell the two formats (and other models) apart.
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct Header {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    d_model: Option<usize>,
}

impl Config for Header {}

/// Hugging Face's `MambaConfig` (`model_type` `mamba`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct HfMamba {
    hidden_size: usize,
    num_hidden_layers: usize,
    vocab_size: usize,
    state_size: Option<usize>,
    expand: Option<usize>,
    conv_kernel: Option<usize>,
    time_step_rank: Option<DtRank>,
    intermediate_size: Option<usize>,
    use_conv_bias: Option<bool>,
    use_bias: Option<bool>,
    layer_norm_epsilon: Option<f64>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
}

impl Config for HfMamba {}

/// state-spaces `mamba_ssm`'s `MambaConfig` (no `model_type`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct SsmMamba {
    d_model: usize,
    n_layer: usize,
    vocab_size: usize,
    ssm_cfg: Option<SsmLayer>,
    d_intermediate: Option<usize>,
    attn_layer_idx: Option<Vec<usize>>,
    rms_norm: Option<bool>,
    norm_epsilon: Option<f64>,
    pad_vocab_size_multiple: Option<usize>,
    tie_embeddings: Option<bool>,
}

impl Config for SsmMamba {}

/// `ssm_cfg` of a `mamba_ssm` configuration.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
struct SsmLayer {
    layer: Option<String>,
    d_state: Option<usize>,
    d_conv: Option<usize>,
    expand: Option<usize>,
    dt_rank: Option<DtRank>,
    conv_bias: Option<bool>,
    bias: Option<bool>,
}

/// Which naming a Mamba checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Hugging Face `MambaForCausalLM`: `backbone.embeddings.weight`, lm_head tied and absent.
    HuggingFace,
    /// state-spaces `mamba_ssm`: `backbone.embedding.weight`, `lm_head.weight` saved.
    StateSpaces,
}

impl Naming {
    /// The embedding's key.
    fn embedding_key(self) -> &'static str {
        match self {
            Naming::HuggingFace => "backbone.embeddings.weight",
            Naming::StateSpaces => "backbone.embedding.weight",
        }
    }
}

/// Reads `config.json` of a Mamba checkpoint folder, Hugging Face's (`model_type` `mamba`) or
/// state-spaces `mamba_ssm`'s (`d_model`, `n_layer`, `ssm_cfg`), as the configuration of a
/// [`LanguageModel`] over Mamba blocks: widths, state size, expansion, convolution width,
/// Δ rank (`auto` = `ceil(d_model / 16)`), biases, RMSNorm ε, tied embeddings, and the vocabulary
/// rounded up to `pad_vocab_size_multiple` (`mamba_ssm`, default 8) as `mamba_ssm` does.
///
/// Errors with [`SeqError::Checkpoint`](crate::SeqError::Checkpoint) for a missing file, JSON
/// of another model (an unknown architecture, Mamba-2 included) and options the crate's Mamba
/// block does not have (attention layers, MLP sublayers, LayerNorm instead of RMSNorm, an
/// activation other than SiLU).
pub fn read_mamba_config(dir: impl AsRef<Path>) -> Result<LanguageModelConfig> {
    Ok(read_mamba(dir.as_ref())?.0)
}

/// [`read_mamba_config`] and the naming its format implies.
fn read_mamba(dir: &Path) -> Result<(LanguageModelConfig, Naming)> {
    let path = dir.join("config.json");
    let unsupported = |what: String| problem(&path, format!("unsupported Mamba option: {what}"));
    let header: Header = read_config(dir)?;
    let dt_rank = |rank: Option<DtRank>, d_model: usize| match rank {
        None => Ok(d_model.div_ceil(16)),
        Some(DtRank::Rank(r)) => Ok(r),
        Some(DtRank::Named(s)) if s == "auto" => Ok(d_model.div_ceil(16)),
        Some(DtRank::Named(s)) => Err(unsupported(format!("dt_rank `{s}` (a number or `auto`)"))),
    };
    let (mamba, n_layers, vocab, eps, tied, naming) = match (
        header.model_type.as_deref(),
        header.d_model,
    ) {
        (Some("mamba"), _) => {
            let c: HfMamba = read_config(dir)?;
            let d = c.hidden_size;
            let expand = c.expand.unwrap_or(2);
            if let Some(act) = c.hidden_act.filter(|a| a != "silu") {
                return Err(unsupported(format!("hidden_act `{act}` (Mamba uses silu)")));
            }
            if let Some(inner) = c.intermediate_size.filter(|&e| e != expand * d) {
                return Err(unsupported(format!(
                    "intermediate_size {inner} ≠ expand · hidden_size = {}",
                    expand * d
                )));
            }
            let mamba = MambaConfig::new(d)
                .with_d_state(c.state_size.unwrap_or(16))
                .with_d_conv(c.conv_kernel.unwrap_or(4))
                .with_expand(expand)
                .with_dt_rank(Some(dt_rank(c.time_step_rank, d)?))
                .with_conv_bias(c.use_conv_bias.unwrap_or(true))
                .with_bias(c.use_bias.unwrap_or(false));
            let eps = c.layer_norm_epsilon.unwrap_or(1e-5);
            let tied = c.tie_word_embeddings.unwrap_or(true);
            (
                mamba,
                c.num_hidden_layers,
                c.vocab_size,
                eps,
                tied,
                Naming::HuggingFace,
            )
        }
        (None, Some(_)) => {
            let c: SsmMamba = read_config(dir)?;
            let d = c.d_model;
            let layer = c.ssm_cfg.unwrap_or_default();
            if let Some(kind) = layer.layer.filter(|l| l != "Mamba1") {
                return Err(unsupported(format!("ssm_cfg.layer `{kind}` (only Mamba1)")));
            }
            if let Some(inner) = c.d_intermediate.filter(|&i| i != 0) {
                return Err(unsupported(format!(
                    "d_intermediate {inner} (MLP sublayers)"
                )));
            }
            if let Some(idx) = c.attn_layer_idx.filter(|idx| !idx.is_empty()) {
                return Err(unsupported(format!(
                    "attn_layer_idx {idx:?} (attention layers)"
                )));
            }
            if c.rms_norm == Some(false) {
                return Err(unsupported("rms_norm false (LayerNorm blocks)".into()));
            }
            let multiple = c.pad_vocab_size_multiple.unwrap_or(8).max(1);
            let mamba = MambaConfig::new(d)
                .with_d_state(layer.d_state.unwrap_or(16))
                .with_d_conv(layer.d_conv.unwrap_or(4))
                .with_expand(layer.expand.unwrap_or(2))
                .with_dt_rank(Some(dt_rank(layer.dt_rank, d)?))
                .with_conv_bias(layer.conv_bias.unwrap_or(true))
                .with_bias(layer.bias.unwrap_or(false));
            let vocab = c.vocab_size.div_ceil(multiple) * multiple;
            let eps = c.norm_epsilon.unwrap_or(1e-5);
            let tied = c.tie_embeddings.unwrap_or(true);
            (mamba, c.n_layer, vocab, eps, tied, Naming::StateSpaces)
        }
        (other, _) => {
            return Err(problem(
                &path,
                format!(
                    "unknown architecture: model_type {other:?}, architectures {:?}; load_mamba \
                     reads Hugging Face `mamba` and state-spaces mamba_ssm (Mamba1) checkpoints",
                    header.architectures.unwrap_or_default()
                ),
            ));
        }
    };
    mamba.validate().map_err(|e| unsupported(e.to_string()))?;
    let d = mamba.d_model;
    let stack = StackConfig::new(d, vec![LayerKind::Mamba.into(); n_layers])
        .with_mamba(mamba)
        .with_norm(NormKind::Rms)
        .with_norm_eps(eps);
    let config = LanguageModelConfig::new(stack, vocab).with_tie_embeddings(tied);
    Ok((config, naming))
}

/// Loads a Mamba checkpoint folder (`config.json` + `model.safetensors`) into a
/// [`LanguageModel`] on `device`: Hugging Face `MambaForCausalLM` naming
/// (`backbone.embeddings.weight`, `backbone.layers.N.{norm, mixer.*}`,
/// `backbone.norm_f.weight`, `lm_head` tied) or the state-spaces `mamba_ssm` naming
/// (`backbone.embedding.weight`, …, `lm_head.weight`), told apart by the keys (the
/// configuration format by [`read_mamba_config`]).
///
/// Tensor mapping (PyTorch → crate): linear weights `[out, in]` transposed, `conv1d.weight`
/// `[E, 1, K]` → `[E, K]`, `A_log` → `a_log`, `D` → `d`, RMSNorm `weight` → `gamma`. A saved
/// `lm_head.weight` is the head of an untied model and ignored when the embeddings are tied.
///
/// Errors (never panics): [`SeqError::Checkpoint`](crate::SeqError::Checkpoint) for a missing
/// or bad `config.json` and a missing, truncated or corrupt `model.safetensors`;
/// [`SeqError::CheckpointTensor`](crate::SeqError::CheckpointTensor) naming the key, the shape
/// `config.json` implies and what the file holds.
pub fn load_mamba<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<LanguageModel<B>> {
    let dir = dir.as_ref();
    let (config, naming) = read_mamba(dir)?;
    let weights = Weights::open(dir)?;
    // The keys decide the naming; without either embedding key, the configuration's format does.
    let naming = [Naming::HuggingFace, Naming::StateSpaces]
        .into_iter()
        .find(|n| weights.has(n.embedding_key()))
        .unwrap_or(naming);
    weights.check(&expected_tensors(&config, naming))?;
    let model = config.try_init::<B>(device)?;
    weights.load_into(model, &MAMBA_KEYS, ConvWeight, &[])
}

/// Every tensor a Mamba checkpoint of `config` holds that the model uses, with its PyTorch
/// shape.
fn expected_tensors(config: &LanguageModelConfig, naming: Naming) -> Vec<Expected> {
    let mamba = &config.stack.mamba;
    let (d, v) = (config.stack.d_model, config.vocab_size);
    let (e, n, k, r) = (
        mamba.d_inner(),
        mamba.d_state,
        mamba.d_conv,
        mamba.resolved_dt_rank(),
    );
    let mut out = vec![Expected::new(naming.embedding_key(), &[v, d])];
    for i in 0..config.stack.layers.len() {
        let at = |rest: &str| format!("backbone.layers.{i}.{rest}");
        let mixer =
            |rest: &str, shape: &[usize]| Expected::new(at(&format!("mixer.{rest}")), shape);
        out.push(Expected::new(at("norm.weight"), &[d]));
        out.push(mixer("in_proj.weight", &[2 * e, d]));
        if mamba.bias {
            out.push(mixer("in_proj.bias", &[2 * e]));
        }
        out.push(mixer("conv1d.weight", &[e, 1, k]));
        if mamba.conv_bias {
            out.push(mixer("conv1d.bias", &[e]));
        }
        out.push(mixer("x_proj.weight", &[r + 2 * n, e]));
        out.push(mixer("dt_proj.weight", &[e, r]));
        out.push(mixer("dt_proj.bias", &[e]));
        out.push(mixer("A_log", &[e, n]));
        out.push(mixer("D", &[e]));
        out.push(mixer("out_proj.weight", &[d, e]));
        if mamba.bias {
            out.push(mixer("out_proj.bias", &[d]));
        }
    }
    out.push(Expected::new("backbone.norm_f.weight", &[d]));
    if !config.tie_embeddings {
        out.push(Expected::new("lm_head.weight", &[v, d]));
    }
    out
}

/// PyTorch's depthwise `Conv1d` weight `[E, 1, K]` → the crate's
/// [`CausalConv1d`](crate::ssm) filters `[E, K]` (the middle axis dropped; same order).
#[derive(Debug, Clone, Copy)]
struct ConvWeight;

impl ModuleAdapter for ConvWeight {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let is_conv_weight = snapshot.module_type().as_deref() == Some("Struct:CausalConv1d")
            && snapshot
                .path_stack
                .as_ref()
                .and_then(|p| p.last())
                .is_some_and(|name| name == "weight");
        let dims = snapshot.shape.as_slice();
        if !is_conv_weight || dims.len() != 3 || dims[1] != 1 {
            return snapshot.clone();
        }
        let (e, k) = (dims[0], dims[2]);
        let data = snapshot.clone_data_fn();
        with_data(snapshot, snapshot.dtype, Shape::new([e, k]), move || {
            let mut d: TensorData = data()?;
            d.shape = Shape::new([e, k]);
            Ok(d)
        })
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}
