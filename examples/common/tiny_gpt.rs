//! Seed 004 §2: a character-level GPT on Shakespeare and its attention ablations (naive
//! masking, shared Q/K/V, MLP Q/K/V, positions, similarity functions, linear attention), plus
//! Mamba and hybrid language models at a matched parameter count; perplexity curves,
//! perplexity against context length, the naive mask's leak measured, samples, throughput,
//! checkpoints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use seqlayers::SeqError;
use seqlayers::attention::{CausalMasking, QkvProjection, QkvSharing, Similarity};
use seqlayers::burn::config::Config;
use seqlayers::burn::module::{AutodiffModule, Module};
use seqlayers::burn::prelude::Backend;
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::burn::tensor::{Int, Tensor, TensorData};
use seqlayers::data::{
    LanguageModelTask, Task, TextCorpus, TokenKind, Vocabulary, ngram_perplexity,
};
use seqlayers::decode::{Decoder, GenerateConfig, SampleConfig, generate_sample};
use seqlayers::model::{LanguageModel, LanguageModelConfig, load_language_model, save_checkpoint};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{
    LengthScore, LrSchedule, OptimizerKind, TrainConfig, TrainReport, evaluate_batch,
    evaluate_lengths,
};

use super::cli::{
    CliError, DEFAULT_SEED, RunArgs, at_least_one, at_least_one_each, distinct, positive_number,
    read_text_file,
};
use super::driver::{Experiment, execute};
use super::parallel::{init_locked, run_parallel};
use super::plot::{MAX_CURVES, Series, line_plot, line_plot_log2_x, panels};
use super::progress::Progress;
use super::warn_on_error;

/// One variant of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ablation {
    /// Learned positions, dot-product attention, correct masking.
    Standard,
    /// Causal mask applied after the softmax (zeroing), not as `−∞` before it.
    NaiveMask,
    /// `W_Q = W_K`.
    SharedQk,
    /// `W_K = W_V`.
    SharedKv,
    /// `W_Q = W_K = W_V`.
    SharedQkv,
    /// Sinusoidal positions instead of learned.
    Sinusoidal,
    /// Rotary positions.
    Rope,
    /// ALiBi.
    Alibi,
    /// Another similarity function.
    Similarity(Similarity),
    /// Q, K and V each a two-layer GELU MLP of hidden width `D` instead of a linear map.
    MlpQkv,
    /// Kernelized causal linear attention (`φ = elu + 1`, no softmax) in every GPT block,
    /// learned positions as the standard.
    LinearAttention,
    /// Mamba blocks only (no attention), at about the GPT's parameter count.
    Mamba,
    /// Mamba blocks with one GPT block (Mamba → attention), at about the same count.
    Hybrid,
}

impl Ablation {
    /// Every variant of the grid.
    pub const GRID: [Ablation; 14] = [
        Ablation::Standard,
        Ablation::NaiveMask,
        Ablation::SharedQk,
        Ablation::SharedKv,
        Ablation::SharedQkv,
        Ablation::Sinusoidal,
        Ablation::Rope,
        Ablation::Alibi,
        Ablation::Similarity(Similarity::NegSquaredDistance),
        Ablation::Similarity(Similarity::Cosine { temperature: 0.1 }),
        Ablation::MlpQkv,
        Ablation::LinearAttention,
        Ablation::Mamba,
        Ablation::Hybrid,
    ];

    /// The flag value.
    pub fn name(&self) -> String {
        match self {
            Ablation::Standard => "standard".into(),
            Ablation::NaiveMask => "naive-mask".into(),
            Ablation::SharedQk => "shared-qk".into(),
            Ablation::SharedKv => "shared-kv".into(),
            Ablation::SharedQkv => "shared-qkv".into(),
            Ablation::Sinusoidal => "sinusoidal".into(),
            Ablation::Rope => "rope".into(),
            Ablation::Alibi => "alibi".into(),
            Ablation::Similarity(Similarity::Dot) => "similarity=dot".into(),
            Ablation::Similarity(Similarity::NegSquaredDistance) => {
                "similarity=neg-distance".into()
            }
            Ablation::Similarity(Similarity::Cosine { temperature }) => {
                format!("similarity=cosine:{temperature}")
            }
            Ablation::MlpQkv => "mlp-qkv".into(),
            Ablation::LinearAttention => "linear-attention".into(),
            Ablation::Mamba => "mamba".into(),
            Ablation::Hybrid => "hybrid".into(),
        }
    }

    /// Parses a flag value (`learned` is `standard`).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "standard" | "learned" => Ablation::Standard,
            "naive-mask" => Ablation::NaiveMask,
            "shared-qk" => Ablation::SharedQk,
            "shared-kv" => Ablation::SharedKv,
            "shared-qkv" => Ablation::SharedQkv,
            "sinusoidal" => Ablation::Sinusoidal,
            "rope" => Ablation::Rope,
            "alibi" => Ablation::Alibi,
            "mlp-qkv" => Ablation::MlpQkv,
            "linear-attention" => Ablation::LinearAttention,
            "mamba" => Ablation::Mamba,
            "hybrid" => Ablation::Hybrid,
            "similarity=dot" => Ablation::Similarity(Similarity::Dot),
            "similarity=neg-distance" => Ablation::Similarity(Similarity::NegSquaredDistance),
            other => match other.strip_prefix("similarity=cosine") {
                Some(rest) => {
                    let temperature = match rest.strip_prefix(':') {
                        Some(t) => t.parse().map_err(|_| {
                            format!("`{other}`: the temperature after `:` must be a number")
                        })?,
                        None => 0.1,
                    };
                    Ablation::Similarity(Similarity::Cosine { temperature })
                }
                None => {
                    return Err(format!(
                        "unknown ablation `{other}`; use standard, naive-mask, shared-qk, shared-kv, shared-qkv, sinusoidal, learned, rope, alibi, similarity=dot|neg-distance|cosine[:T], mlp-qkv, linear-attention, mamba or hybrid"
                    ));
                }
            },
        })
    }
}

/// Everything the `tiny_gpt` example can change.
#[derive(Debug, Clone)]
pub struct TinyGptOptions {
    /// Variants to train.
    pub ablations: Vec<Ablation>,
    /// The text (UTF-8).
    pub corpus: PathBuf,
    /// Characters or capped words.
    pub tokens: TokenKind,
    /// Training window `L`.
    pub block_size: usize,
    /// Width `D`.
    pub d_model: usize,
    /// GPT blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Mamba blocks of the Mamba-only model (chosen to match the GPT's parameter count).
    pub mamba_layers: usize,
    /// The hybrid's block list.
    pub hybrid_layers: String,
    /// Windows per step.
    pub batch: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Dropout after the MLPs.
    pub dropout: f64,
    /// Curve points.
    pub curve_points: usize,
    /// Validation windows per evaluation.
    pub eval_windows: usize,
    /// Characters sampled per model.
    pub sample_len: usize,
    /// Prompt of the samples.
    pub prompt: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Sampling top-k.
    pub top_k: usize,
    /// Blocks of the train/validation split.
    pub split_blocks: usize,
    /// Seed.
    pub seed: u64,
    /// Trainings at once.
    pub jobs: usize,
    /// Output folder (checkpoints in `<out>/checkpoints/<ablation>`).
    pub out_dir: PathBuf,
    /// Save each trained model.
    pub save: bool,
    /// Start from this checkpoint instead of a fresh initialization (its configuration wins).
    pub resume: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for TinyGptOptions {
    fn default() -> Self {
        Self {
            ablations: Ablation::GRID.to_vec(),
            corpus: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/shakespeare/plays.txt"
            )),
            tokens: TokenKind::Char,
            block_size: 64,
            d_model: 128,
            layers: 3,
            heads: 4,
            mamba_layers: 5,
            hybrid_layers: "mamba,mamba,attention+mlp,mamba".into(),
            batch: 16,
            steps: 500,
            lr: 2e-3,
            dropout: 0.0,
            curve_points: 10,
            eval_windows: 64,
            sample_len: 300,
            prompt: "ROMEO.\n".into(),
            temperature: 0.8,
            top_k: 10,
            split_blocks: 100,
            seed: 0,
            jobs: 1,
            out_dir: PathBuf::from("results/tiny_gpt"),
            save: true,
            resume: None,
            progress: true,
        }
    }
}

impl TinyGptOptions {
    /// A smoke-test budget.
    pub fn quick(mut self) -> Self {
        self.ablations = vec![Ablation::Standard, Ablation::NaiveMask, Ablation::Mamba];
        self.block_size = 16;
        self.d_model = 16;
        self.layers = 1;
        self.heads = 2;
        self.mamba_layers = 1;
        self.hybrid_layers = "mamba,attention+mlp".into();
        self.batch = 4;
        self.steps = 8;
        self.curve_points = 2;
        self.eval_windows = 8;
        self.sample_len = 24;
        self
    }

    /// The corpus and task (a missing, empty or non-UTF-8 corpus is an error that says so).
    pub fn task(&self) -> seqlayers::Result<LanguageModelTask> {
        let text = read_text_file(&self.corpus, "corpus")?;
        let corpus = TextCorpus::split(
            &text,
            self.tokens,
            self.split_blocks,
            0.1,
            &mut StdRng::seed_from_u64(self.seed),
        )?;
        LanguageModelTask::new(corpus, self.block_size)
    }

    /// The model configuration of an ablation.
    pub fn model_config(
        &self,
        ablation: Ablation,
        vocab: usize,
    ) -> seqlayers::Result<LanguageModelConfig> {
        let gpt = vec!["attention+mlp"; self.layers].join(",");
        let (layers, position) = match ablation {
            Ablation::Mamba => (
                vec!["mamba"; self.mamba_layers].join(","),
                PositionEncoding::None,
            ),
            Ablation::Hybrid => (self.hybrid_layers.clone(), PositionEncoding::None),
            Ablation::LinearAttention => (
                vec!["linear-attention+mlp"; self.layers].join(","),
                PositionEncoding::learned_clamped(self.block_size),
            ),
            Ablation::Sinusoidal => (gpt, PositionEncoding::sinusoidal()),
            Ablation::Rope => (gpt, PositionEncoding::rope()),
            Ablation::Alibi => (gpt, PositionEncoding::alibi()),
            // Clamped: perplexity past the block uses the last learned vector (an error otherwise).
            _ => (gpt, PositionEncoding::learned_clamped(self.block_size)),
        };
        let mut stack = StackConfig::new(self.d_model, parse_layers(&layers)?)
            .with_n_heads(self.heads)
            .with_position(position)
            .with_norm(NormKind::Layer)
            .with_dropout(self.dropout)
            .with_mamba(seqlayers::ssm::MambaConfig::new(self.d_model));
        match ablation {
            Ablation::NaiveMask => stack = stack.with_masking(CausalMasking::NaivePostSoftmax),
            Ablation::SharedQk => stack = stack.with_sharing(QkvSharing::SharedQK),
            Ablation::SharedKv => stack = stack.with_sharing(QkvSharing::SharedKV),
            Ablation::SharedQkv => stack = stack.with_sharing(QkvSharing::SharedQKV),
            Ablation::Similarity(s) => stack = stack.with_similarity(s),
            Ablation::MlpQkv => {
                stack = stack.with_qkv_projection(QkvProjection::Mlp {
                    d_hidden: self.d_model,
                })
            }
            _ => {}
        }
        let config = LanguageModelConfig::new(stack, vocab).with_tie_embeddings(true);
        Ok(match ablation {
            // Unit-scale sinusoids need unit-scale tokens: N(0, 1/D) embeddings times √D.
            Ablation::Sinusoidal => config
                .with_init_std(1.0 / (self.d_model as f64).sqrt())
                .with_scale_embeddings(true),
            _ => config,
        })
    }

    /// The evaluated context lengths: ½, 1, 2 and 4 blocks.
    pub fn eval_lengths(&self) -> Vec<usize> {
        vec![
            (self.block_size / 2).max(1),
            self.block_size,
            2 * self.block_size,
            4 * self.block_size,
        ]
    }
}

/// A character-level GPT on Shakespeare and its attention ablations (seed 004 §2): the
/// `tiny_gpt` command line.
#[derive(clap::Parser, Debug)]
#[command(about)]
pub struct TinyGptArgs {
    /// Train or generate.
    #[command(subcommand)]
    pub mode: TinyGptMode,
}

/// The two modes of `tiny_gpt`.
#[derive(clap::Subcommand, Debug)]
pub enum TinyGptMode {
    /// Train the ablation grid (or the ones given) and write the report.
    Train(Box<TrainArgs>),
    /// Generate text from a saved checkpoint.
    Generate(GenerateArgs),
}

/// Flags of `tiny_gpt train` (every one optional).
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Comma-separated variants: standard, naive-mask, shared-qk, shared-kv, shared-qkv,
    /// sinusoidal, learned, rope, alibi, similarity=dot|neg-distance|cosine[:T],
    /// mlp-qkv, linear-attention, mamba, hybrid.
    #[arg(long = "ablation", value_delimiter = ',', value_parser = Ablation::parse)]
    pub ablations: Vec<Ablation>,
    /// Any UTF-8 text (default: the committed Shakespeare corpus).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Word-level tokens with this vocabulary cap instead of characters.
    #[arg(long)]
    pub words: Option<usize>,
    /// Training window.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Width.
    #[arg(long)]
    pub d_model: Option<usize>,
    /// GPT blocks.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Dropout after the MLPs.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Continue training from this checkpoint (its config wins; one ablation).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Do not save checkpoints.
    #[arg(long)]
    pub no_save: bool,
    /// The shared flags ([`RunArgs`]; `--batch` counts windows, one seed: it draws the split,
    /// the data order, the initialization and the samples).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `tiny_gpt generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Checkpoint folder (config.json, model.mpk, vocabulary.json).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "ROMEO.\n")]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 300)]
    pub tokens: usize,
    /// Softmax temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the k most likely tokens.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Base seed of the generation (the sampling; the first window's, each next window's one
    /// more).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

impl TrainArgs {
    /// The options of these flags, unchecked (defaults where a flag is missing).
    pub fn options(&self) -> TinyGptOptions {
        let mut o = TinyGptOptions::default();
        if self.run.quick {
            o = o.quick();
        }
        if !self.ablations.is_empty() {
            o.ablations = self.ablations.clone();
        }
        if let Some(c) = &self.corpus {
            o.corpus = c.clone();
        }
        if let Some(w) = self.words {
            o.tokens = TokenKind::Word { max_words: w };
        }
        o.block_size = self.block_size.unwrap_or(o.block_size);
        o.d_model = self.d_model.unwrap_or(o.d_model);
        o.layers = self.layers.unwrap_or(o.layers);
        o.steps = self.run.steps.unwrap_or(o.steps);
        o.batch = self.run.batch.unwrap_or(o.batch);
        o.lr = self.run.lr.unwrap_or(o.lr);
        o.dropout = self.dropout.unwrap_or(o.dropout);
        o.resume = self.resume.clone();
        o.seed = self.run.seeds()[0];
        o.jobs = self.run.jobs;
        o.save = !self.no_save;
        o.out_dir = self.run.out_dir("tiny_gpt");
        o
    }
}

/// The options of `tiny_gpt train`, checked before any training: every flag value, the corpus
/// (present, UTF-8, long enough for the split and the block size) and every model of the grid
/// (built once on the CPU and dropped).
pub fn train_options(args: &TrainArgs) -> std::result::Result<TinyGptOptions, CliError> {
    args.run.check()?;
    args.run.one_seed("tiny_gpt")?;
    at_least_one_each(&[
        ("--block-size", args.block_size),
        ("--d-model", args.d_model),
        ("--layers", args.layers),
    ])?;
    if let Some(w) = args.words
        && w < 2
    {
        return Err(CliError::usage(format!(
            "--words {w}: a word vocabulary needs at least 2 entries (<unk> and one word)"
        )));
    }
    if let Some(p) = args.dropout
        && !(0.0..1.0).contains(&p)
    {
        return Err(CliError::usage(format!(
            "--dropout must be at least 0 and below 1 (got {p})"
        )));
    }
    let names: Vec<String> = args.ablations.iter().map(Ablation::name).collect();
    distinct("--ablation", &names)?;
    if let Some(dir) = &args.resume {
        if args.ablations.len() != 1 {
            return Err(CliError::usage(
                "--resume continues one model: give exactly one --ablation (the checkpoint's)",
            ));
        }
        if !dir.is_dir() {
            return Err(CliError::usage(format!(
                "--resume `{}` is not a folder; give a checkpoint folder written by train",
                dir.display()
            )));
        }
    }
    let options = args.options();
    let attention = options.ablations.iter().any(|a| *a != Ablation::Mamba);
    if attention && !options.d_model.is_multiple_of(options.heads) {
        return Err(CliError::usage(format!(
            "--d-model {} is not a multiple of the {} attention heads; use a multiple of {}",
            options.d_model, options.heads, options.heads
        )));
    }
    let task = options.task()?;
    if options.resume.is_none() {
        let vocab = task.corpus().vocabulary.len();
        let device = Default::default();
        for &ablation in &options.ablations {
            let config = options.model_config(ablation, vocab)?;
            init_locked(|| config.try_init::<seqlayers::backend::Cpu>(&device))?;
        }
    }
    Ok(options)
}

/// Checks the flags of `tiny_gpt generate` before the model is loaded: the sampling values,
/// the checkpoint folder and its files, and the prompt against the saved vocabulary (which is
/// returned).
pub fn generate_vocabulary(args: &GenerateArgs) -> std::result::Result<Vocabulary, CliError> {
    at_least_one("--tokens", args.tokens)?;
    positive_number("--temperature", args.temperature)?;
    at_least_one("--top-k", args.top_k)?;
    let dir = &args.checkpoint;
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "--checkpoint `{}` is not a folder; give the folder train saved the model to \
             (results/tiny_gpt/checkpoints/<ablation>)",
            dir.display()
        )));
    }
    for file in ["config.json", "model.mpk", "vocabulary.json"] {
        if !dir.join(file).is_file() {
            return Err(CliError::usage(format!(
                "--checkpoint `{}` has no {file}; give the folder train saved the model to",
                dir.display()
            )));
        }
    }
    let path = dir.join("vocabulary.json");
    let vocabulary = VocabularyFile::load(&path)
        .map_err(|e| SeqError::Checkpoint {
            path: path.display().to_string(),
            problem: format!("cannot read the vocabulary ({e})"),
        })?
        .vocabulary()?;
    if args.prompt.is_empty() {
        return Err(CliError::usage(
            "--prompt is empty; give at least one character to continue",
        ));
    }
    if vocabulary.encode(&args.prompt).is_err() {
        let c = args
            .prompt
            .chars()
            .find(|c| vocabulary.encode(&c.to_string()).is_err())
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "--prompt has the character {c:?}, which the model never saw; use only characters \
             of its training text"
        )));
    }
    Ok(vocabulary)
}

/// The vocabulary saved next to a checkpoint (`vocabulary.json`).
#[derive(Config, Debug)]
pub struct VocabularyFile {
    /// `char` or `word`.
    pub kind: String,
    /// Word cap (0 for characters).
    pub max_words: usize,
    /// The tokens in id order.
    pub tokens: Vec<String>,
}

impl VocabularyFile {
    /// The file of `vocabulary`.
    pub fn of(vocabulary: &Vocabulary) -> Self {
        let (kind, max_words) = match vocabulary.kind() {
            TokenKind::Char => ("char", 0),
            TokenKind::Word { max_words } => ("word", max_words),
        };
        Self::new(kind.into(), max_words, vocabulary.tokens().to_vec())
    }

    /// The vocabulary back.
    pub fn vocabulary(&self) -> seqlayers::Result<Vocabulary> {
        let kind = match self.kind.as_str() {
            "char" => TokenKind::Char,
            "word" => TokenKind::Word {
                max_words: self.max_words,
            },
            other => {
                return Err(SeqError::InvalidConfig(format!(
                    "vocabulary kind `{other}` is neither char nor word"
                )));
            }
        };
        Vocabulary::from_tokens(kind, self.tokens.clone())
    }
}

/// What one training produced.
#[derive(Debug, Clone)]
pub struct TinyGptOutcome {
    /// The variant.
    pub ablation: Ablation,
    /// Parameters.
    pub params: usize,
    /// Training report (curve of validation perplexity, mean training loss).
    pub report: TrainReport,
    /// Perplexity of the model's own forward pass on training windows (with the naive mask, what
    /// training sees).
    pub train_ppl: f64,
    /// Validation perplexity, full forward pass at the block size.
    pub val_ppl: f64,
    /// Validation perplexity computed causally, one token at a time from the cached state
    /// (equal to `val_ppl` for every correct model; the honest number for the naive mask).
    pub val_ppl_causal: f64,
    /// Validation perplexity against context length.
    pub lengths: Vec<LengthScore>,
    /// Largest change of the loss at positions `≤ t` (against the original targets) when the
    /// tokens after `t` are replaced, in nats ([`leak_probe`]; 0 for a causal model).
    pub leak: f64,
    /// Training throughput, tokens/s.
    pub train_tokens_per_s: f64,
    /// Generation throughput at batch 1, tokens/s (cached state).
    pub generate_tokens_per_s: f64,
    /// A sample.
    pub sample: String,
    /// Wall time, seconds.
    pub wall_s: f64,
}

fn ids<B: Backend>(rows: &[&[u32]], device: &B::Device) -> Tensor<B, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&t| t as i64))
        .collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), device)
}

/// Per-position NLL `[L]` of one window under the full forward pass.
fn nll_per_position<B: Backend>(
    model: &LanguageModel<B>,
    tokens: &[u32],
    targets: &[u32],
    device: &B::Device,
) -> seqlayers::Result<Vec<f64>> {
    let logits = model.forward(ids::<B>(&[tokens], device))?; // [1, L, V]
    let [_, l, v] = logits.dims();
    let logp = seqlayers::burn::tensor::activation::log_softmax(logits.reshape([l, v]), 1);
    let rows: Vec<f64> = logp.into_data().iter::<f64>().collect();
    Ok((0..l).map(|t| -rows[t * v + targets[t] as usize]).collect())
}

/// The leak test on one validation window of `model` ([`leak_probe`] with the model's
/// per-position losses).
fn leak<B: Backend>(
    model: &LanguageModel<B>,
    task: &LanguageModelTask,
    device: &B::Device,
) -> seqlayers::Result<f64> {
    let mut rng = StdRng::seed_from_u64(0x1EA4);
    let batch = task.sample(&mut rng, 1, task.block_size())?;
    let seqlayers::data::Targets::Tokens { ids: targets, .. } = &batch.targets else {
        return Err(SeqError::InvalidConfig(
            "a language-model batch has token targets".into(),
        ));
    };
    let vocab = task.corpus().vocabulary.len() as u32;
    leak_probe(&batch.tokens, targets, vocab, |tokens| {
        nll_per_position(model, tokens, targets, device)
    })
}

/// How much a model's loss depends on later inputs, in nats: for several cut points `t`,
/// every input token after `t` is replaced by a different one, and the loss of positions
/// `0..=t` is scored against the *original* targets (`nll(tokens)` returns the per-position
/// NLL of those targets). Position `t` predicts token `t + 1`, which is now a different input:
/// a causal model's losses at `0..=t` do not move (the result is 0), while a model that reads
/// the next input — what a naive post-softmax mask allows — loses its answer there.
pub fn leak_probe(
    tokens: &[u32],
    targets: &[u32],
    vocab: u32,
    mut nll: impl FnMut(&[u32]) -> seqlayers::Result<Vec<f64>>,
) -> seqlayers::Result<f64> {
    let l = tokens.len();
    if l < 4 || targets.len() != l || vocab < 2 {
        return Err(SeqError::InvalidConfig(format!(
            "the leak probe needs a window of at least 4 tokens with one target each and at least \
             2 token ids (got {l} tokens, {} targets, {vocab} ids)",
            targets.len()
        )));
    }
    let base = nll(tokens)?;
    let mut worst = 0.0f64;
    for cut in [l / 4, l / 2, 3 * l / 4] {
        let mut changed_tokens = tokens.to_vec();
        for (i, t) in changed_tokens.iter_mut().enumerate().skip(cut + 1) {
            *t = (*t + 1 + (i as u32 * 7) % (vocab - 1)) % vocab; // a different token
        }
        let changed = nll(&changed_tokens)?;
        for t in 0..=cut {
            // Inputs 0..=t are unchanged and the target is the original token t + 1.
            worst = worst.max((changed[t] - base[t]).abs());
        }
    }
    Ok(worst)
}

/// Perplexity of `batch` computed one token at a time from the cached state: no position can
/// see a later token, whatever the attention mask does.
pub fn causal_perplexity<B: Backend>(
    model: &LanguageModel<B>,
    batch: &seqlayers::data::Batch,
    device: &B::Device,
) -> seqlayers::Result<f64> {
    let seqlayers::data::Targets::Tokens { ids: targets, .. } = &batch.targets else {
        return Err(SeqError::InvalidConfig(
            "a language-model batch has token targets".into(),
        ));
    };
    let (n, l) = (batch.batch, batch.len);
    let mut state = model.init_state(n, device);
    let mut nll = 0.0;
    for t in 0..l {
        let column: Vec<u32> = (0..n).map(|b| batch.tokens[b * l + t]).collect();
        let rows: Vec<&[u32]> = column.chunks(1).collect();
        let (logits, next) = model.forward_with_state(ids::<B>(&rows, device), state)?; // [n, 1, V]
        state = next;
        let [_, _, v] = logits.dims();
        let logp = seqlayers::burn::tensor::activation::log_softmax(logits.reshape([n, v]), 1);
        let values: Vec<f64> = logp.into_data().iter::<f64>().collect();
        for b in 0..n {
            nll -= values[b * v + targets[b * l + t] as usize];
        }
    }
    Ok((nll / (n * l) as f64).exp())
}

/// Samples `count` tokens after `prompt` from the cached state, restarting from the last half
/// block when the context reaches the block size (absolute positions were trained up to it).
fn sample_text<B: Backend>(
    model: &LanguageModel<B>,
    vocabulary: &Vocabulary,
    options: &TinyGptOptions,
    device: &B::Device,
) -> seqlayers::Result<(String, f64)> {
    let config = SampleConfig::new(GenerateConfig::new(0))
        .with_temperature(options.temperature)
        .with_top_k(options.top_k)
        .with_seed(options.seed);
    let started = Instant::now();
    let text = sample_windowed(
        model,
        vocabulary,
        &options.prompt,
        options.sample_len,
        options.block_size,
        config,
        device,
    )?;
    let rate = options.sample_len as f64 / started.elapsed().as_secs_f64();
    Ok((text, rate))
}

/// Samples `count` tokens after `prompt` from the cached state in windows: when the context
/// reaches `block` tokens (the longest trained), decoding restarts from its last `block / 2`
/// tokens. `config`'s length limit is ignored; its seed starts the first window.
pub fn sample_windowed<B: Backend>(
    model: &LanguageModel<B>,
    vocabulary: &Vocabulary,
    prompt: &str,
    count: usize,
    block: usize,
    config: SampleConfig,
    device: &B::Device,
) -> seqlayers::Result<String> {
    let mut context = vocabulary.encode(prompt)?;
    if context.is_empty() {
        return Err(SeqError::InvalidConfig(
            "the prompt is empty; give at least one character".into(),
        ));
    }
    let mut generated: Vec<u32> = Vec::new();
    let mut seed = config.seed;
    while generated.len() < count {
        let room = block.saturating_sub(context.len()).max(1);
        let n = room.min(count - generated.len());
        let window = SampleConfig {
            limits: GenerateConfig::new(n),
            seed,
            ..config
        };
        let new = generate_sample(model, std::slice::from_ref(&context), window, device)?.remove(0);
        seed = seed.wrapping_add(1);
        generated.extend_from_slice(&new);
        context.extend_from_slice(&new);
        if context.len() >= block {
            context = context[context.len() - (block / 2).max(1)..].to_vec();
        }
    }
    Ok(format!("{prompt}{}", vocabulary.decode(&generated)))
}

/// Trains and evaluates one variant (and saves it when `options.save`).
pub fn run_tiny_gpt<B: AutodiffBackend>(
    options: &TinyGptOptions,
    task: &LanguageModelTask,
    ablation: Ablation,
    device: &B::Device,
) -> seqlayers::Result<TinyGptOutcome> {
    let started = Instant::now();
    let vocab = task.corpus().vocabulary.len();
    let (model, config): (LanguageModel<B>, LanguageModelConfig) = match &options.resume {
        Some(dir) => {
            let (model, config) = load_language_model::<B>(dir, device)?;
            if config.vocab_size != vocab {
                return Err(SeqError::Checkpoint {
                    path: dir.display().to_string(),
                    problem: format!(
                        "the checkpoint has {} tokens but this corpus has {vocab}; resume on the same corpus and tokenization",
                        config.vocab_size
                    ),
                });
            }
            (model, config)
        }
        None => {
            let config = options.model_config(ablation, vocab)?;
            let model = init_locked(|| {
                B::seed(device, options.seed);
                config.try_init(device)
            })?;
            (model, config)
        }
    };
    let params = model.num_params();
    let train_config = TrainConfig {
        steps: options.steps,
        batch_size: options.batch,
        lr: options.lr,
        optimizer: OptimizerKind::AdamW { weight_decay: 0.1 },
        schedule: LrSchedule::WarmupCosine {
            warmup_steps: (options.steps / 20).max(1),
            min_ratio: 0.1,
        },
        grad_clip: Some(1.0),
        eval_every: (options.steps / options.curve_points.max(1)).max(1),
        test_batch: options.eval_windows,
        early_stop: None,
        plateau_stop: None,
        seed: options.seed,
    };
    let mut progress = Progress::new(&ablation.name(), options.steps, options.progress);
    let (model, report) = super::driver::fit(model, task, &train_config, device, &mut progress)?;
    let model = model.valid();
    if options.save {
        let dir = options
            .out_dir
            .join("checkpoints")
            .join(ablation.name().replace([':', '='], "_"));
        save_checkpoint(model.clone(), &config, &dir)?;
        let path = dir.join("vocabulary.json");
        VocabularyFile::of(&task.corpus().vocabulary)
            .save(&path)
            .map_err(|e| SeqError::write(&path, e))?;
    }
    let inner = device.clone();
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0x7EA1);
    let train_batch = task.train_batch(&mut rng, options.eval_windows)?;
    let train_ppl = evaluate_batch(&model, &train_batch, &inner)?.perplexity;
    let val_batch = task.test_batch(&mut rng, options.eval_windows)?;
    let val_ppl = evaluate_batch(&model, &val_batch, &inner)?.perplexity;
    let val_ppl_causal = causal_perplexity(&model, &val_batch, &inner)?;
    let lengths = evaluate_lengths(
        &model,
        task,
        &options.eval_lengths(),
        options.eval_windows / 2,
        16,
        options.seed,
        &inner,
    )?;
    let leak = leak(&model, task, &inner)?;
    let (sample, generate_tokens_per_s) =
        sample_text(&model, &task.corpus().vocabulary, options, &inner)?;
    Ok(TinyGptOutcome {
        ablation,
        params,
        train_tokens_per_s: 1e3 * (options.batch * options.block_size) as f64 / report.ms_per_step,
        report,
        train_ppl,
        val_ppl,
        val_ppl_causal,
        lengths,
        leak,
        generate_tokens_per_s,
        sample,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// The baselines of the corpus: (unigram, bigram) validation perplexity.
pub fn baselines(task: &LanguageModelTask) -> seqlayers::Result<(f64, f64)> {
    let c = task.corpus();
    let v = c.vocabulary.len();
    Ok((
        ngram_perplexity(&c.train, &c.validation, v, 1)?,
        ngram_perplexity(&c.train, &c.validation, v, 2)?,
    ))
}

/// Runs the grid, writes CSV files and `report.md`, and returns the outcomes and the
/// (unigram, bigram) baselines.
pub fn tiny_gpt<B: AutodiffBackend>(
    options: &TinyGptOptions,
    device: &B::Device,
) -> seqlayers::Result<(Vec<TinyGptOutcome>, (f64, f64))> {
    let results = execute::<TinyGpt, B>(options, device)?;
    Ok((results.outcomes, results.baselines))
}

/// What a `tiny_gpt train` run returns.
pub struct TinyGptResults {
    /// One per ablation.
    pub outcomes: Vec<TinyGptOutcome>,
    /// (unigram, bigram) validation perplexity.
    pub baselines: (f64, f64),
    /// The corpus and task the models trained on.
    pub task: LanguageModelTask,
}

/// `tiny_gpt train`.
pub struct TinyGpt;

impl Experiment for TinyGpt {
    type Args = TrainArgs;
    type Options = TinyGptOptions;
    type Outcome = TinyGptResults;

    fn options(args: &TrainArgs) -> std::result::Result<TinyGptOptions, CliError> {
        train_options(args)
    }

    fn out_dir(options: &TinyGptOptions) -> &Path {
        &options.out_dir
    }

    fn run<B: AutodiffBackend>(
        o: &Self::Options,
        device: &B::Device,
    ) -> seqlayers::Result<Self::Outcome> {
        let task = o.task()?;
        let baselines = baselines(&task)?;
        let cost = |a: &Ablation| match a {
            Ablation::Mamba | Ablation::Hybrid => 3,
            Ablation::Similarity(_) | Ablation::NaiveMask => 2,
            _ => 1,
        };
        let outcomes = run_parallel(
            &o.ablations,
            o.jobs,
            cost,
            |a| run_tiny_gpt::<B>(o, &task, *a, device),
            |k, total, o: &TinyGptOutcome| {
                eprintln!(
                    "[{k}/{total}] {:<26} {:>8} params  {:>7.1} ms/step  val ppl {:>6.2} (causal {:>6.2})  ({:.0} s)",
                    o.ablation.name(),
                    o.params,
                    o.report.ms_per_step,
                    o.val_ppl,
                    o.val_ppl_causal,
                    o.wall_s
                );
            },
        )?;
        Ok(TinyGptResults {
            outcomes,
            baselines,
            task,
        })
    }

    fn csv(results: &TinyGptResults) -> Vec<(&'static str, String)> {
        csv_files(&results.outcomes)
    }

    fn report(options: &TinyGptOptions, results: &TinyGptResults) -> String {
        report(options, &results.task, results.baselines, &results.outcomes)
    }

    fn plots(options: &TinyGptOptions, results: &TinyGptResults) {
        plots(options, &results.outcomes)
    }
}

/// `summary.csv`, `curves.csv`, `lengths.csv`, `samples.md`.
pub fn csv_files(outcomes: &[TinyGptOutcome]) -> Vec<(&'static str, String)> {
    let mut summary = String::from(
        "ablation,params,ms_per_step,train_tokens_per_s,generate_tokens_per_s,train_ppl,val_ppl,val_ppl_causal,leak,wall_s\n",
    );
    let mut curves = String::from("ablation,step,train_loss,val_loss,val_ppl\n");
    let mut lengths = String::from("ablation,context,val_ppl\n");
    let mut samples = String::from("# Samples\n\n");
    for o in outcomes {
        let name = o.ablation.name();
        let _ = writeln!(
            summary,
            "{name},{},{:.2},{:.0},{:.0},{:.4},{:.4},{:.4},{:.6},{:.1}",
            o.params,
            o.report.ms_per_step,
            o.train_tokens_per_s,
            o.generate_tokens_per_s,
            o.train_ppl,
            o.val_ppl,
            o.val_ppl_causal,
            o.leak,
            o.wall_s
        );
        for p in &o.report.curve {
            let _ = writeln!(
                curves,
                "{name},{},{:.5},{:.5},{:.4}",
                p.step, p.mean_loss, p.test_loss, p.test_score
            );
        }
        for l in &o.lengths {
            let _ = writeln!(lengths, "{name},{},{:.4}", l.len, l.score);
        }
        let _ = writeln!(samples, "## {name}\n\n```text\n{}\n```\n", o.sample);
    }
    vec![
        ("summary.csv", summary),
        ("curves.csv", curves),
        ("lengths.csv", lengths),
        ("samples.md", samples),
    ]
}

/// `report.md`.
pub fn report(
    options: &TinyGptOptions,
    task: &LanguageModelTask,
    base: (f64, f64),
    outcomes: &[TinyGptOutcome],
) -> String {
    let c = task.corpus();
    let mut s = String::from("# Tiny GPT on Shakespeare (seed 004 §2)\n\n");
    let _ = writeln!(
        s,
        "Setting: {} ({} tokens of vocabulary {}: {} training / {} validation, held out as 10% of {} contiguous blocks); windows of {} tokens, {} per step, {} AdamW steps (lr {}, weight decay 0.1, warm-up + cosine, clip 1.0), seed {}. GPT: {} blocks of width {} with {} heads (pre-LayerNorm, GELU MLP, tied embeddings); Mamba: {} Mamba blocks; hybrid: `{}`. Perplexities on {} random validation windows.\n",
        options
            .corpus
            .file_name()
            .map_or("corpus".into(), |f| f.to_string_lossy().to_string()),
        c.train.len() + c.validation.len(),
        c.vocabulary.len(),
        c.train.len(),
        c.validation.len(),
        options.split_blocks,
        options.block_size,
        options.batch,
        options.steps,
        options.lr,
        options.seed,
        options.layers,
        options.d_model,
        options.heads,
        options.mamba_layers,
        options.hybrid_layers,
        options.eval_windows
    );
    let _ = writeln!(
        s,
        "Baselines (add-one smoothed, estimated on the training text): unigram perplexity {:.2}, bigram {:.2}.\n",
        base.0, base.1
    );
    s.push_str("| model | params | train ppl | val ppl | val ppl, causal | leak | train tok/s | generate tok/s |\n|---|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2e} | {:.0} | {:.0} |",
            o.ablation.name(),
            o.params,
            o.train_ppl,
            o.val_ppl,
            o.val_ppl_causal,
            o.leak,
            o.train_tokens_per_s,
            o.generate_tokens_per_s
        );
    }
    s.push_str("\n`val ppl` runs the whole window at once (what training sees); `val ppl, causal` feeds the tokens one at a time from the cached state, so no position can see a later token. `leak` is the largest change of a position's loss (scored against its original target) when every later input token, the one it predicts included, is replaced.\n\n## Perplexity against context length\n\n| model |");
    let lens = options.eval_lengths();
    for l in &lens {
        let _ = write!(s, " {l} |");
    }
    s.push_str("\n|---|");
    for _ in &lens {
        s.push_str("---|");
    }
    s.push('\n');
    for o in outcomes {
        let _ = write!(s, "| {} |", o.ablation.name());
        for l in &o.lengths {
            let _ = write!(s, " {:.2} |", l.score);
        }
        s.push('\n');
    }
    s.push_str("\nLearned positions are clamped past the block (the last learned vector is reused).\n\n## Findings (computed from the tables)\n\n");
    if let Some(std) = outcomes.iter().find(|o| o.ablation == Ablation::Standard) {
        let _ = writeln!(
            s,
            "- Standard GPT: validation perplexity {:.2} vs bigram {:.2} and unigram {:.2}, i.e. a validation loss of {:.3} nats vs {:.3} for the bigram ({:+.3}).",
            std.val_ppl,
            base.1,
            base.0,
            std.val_ppl.ln(),
            base.1.ln(),
            std.val_ppl.ln() - base.1.ln()
        );
        if let Some(n) = outcomes.iter().find(|o| o.ablation == Ablation::NaiveMask) {
            let _ = writeln!(
                s,
                "- Naive masking: training-time perplexity {:.2} (standard {:.2}), but {:.2} when evaluated causally — the softmax denominator leaks later tokens (a position's loss moves by up to {:.3} nats when later tokens change; standard {:.1e}).",
                n.val_ppl, std.val_ppl, n.val_ppl_causal, n.leak, std.leak
            );
        }
        let mut ranked: Vec<&TinyGptOutcome> = outcomes
            .iter()
            .filter(|o| o.ablation != Ablation::NaiveMask)
            .collect();
        ranked.sort_by(|a, b| a.val_ppl_causal.total_cmp(&b.val_ppl_causal));
        let order: Vec<String> = ranked
            .iter()
            .map(|o| format!("{} {:.2}", o.ablation.name(), o.val_ppl_causal))
            .collect();
        let _ = writeln!(
            s,
            "- Ranking by causal validation perplexity: {}.",
            order.join(" < ")
        );
        for o in outcomes {
            if let (Some(at), Some(far)) = (o.lengths.get(1), o.lengths.last())
                && matches!(
                    o.ablation,
                    Ablation::Standard
                        | Ablation::Sinusoidal
                        | Ablation::Rope
                        | Ablation::Alibi
                        | Ablation::LinearAttention
                        | Ablation::Mamba
                )
            {
                let _ = writeln!(
                    s,
                    "- {}: perplexity {:.2} at the block size, {:.2} at 4×.",
                    o.ablation.name(),
                    at.score,
                    far.score
                );
            }
        }
    }
    s.push_str("\nSamples: [samples.md](samples.md). Plots: `val_ppl.png`, `train_loss.png`, `context_length.png` (split into `_1`, `_2`, … panels of at most 7 curves, each with the first model as reference, when there are more).\n");
    s
}

/// Validation perplexity and training loss against steps; perplexity against context length.
fn plots(options: &TinyGptOptions, outcomes: &[TinyGptOutcome]) {
    let dir = &options.out_dir;
    let curve = |pick: usize| -> Vec<Series> {
        outcomes
            .iter()
            .map(|o| Series {
                name: o.ablation.name(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| {
                        (
                            p.step as f64,
                            if pick == 0 { p.test_score } else { p.mean_loss },
                        )
                    })
                    .collect(),
            })
            .collect()
    };
    for (file, title, y_label, pick) in [
        (
            "val_ppl.png",
            "validation perplexity (full window)",
            "perplexity",
            0,
        ),
        ("train_loss.png", "training loss", "mean loss (nats)", 1),
    ] {
        for (path, panel, part) in panels(&dir.join(file), &curve(pick), MAX_CURVES) {
            warn_on_error(line_plot(
                &path,
                &format!("{title}{part}"),
                "step",
                y_label,
                &panel,
                false,
            ));
        }
    }
    let lengths: Vec<Series> = outcomes
        .iter()
        .map(|o| Series {
            name: o.ablation.name(),
            points: o.lengths.iter().map(|l| (l.len as f64, l.score)).collect(),
        })
        .collect();
    for (path, panel, part) in panels(&dir.join("context_length.png"), &lengths, MAX_CURVES) {
        warn_on_error(line_plot_log2_x(
            &path,
            &format!("validation perplexity vs context length{part}"),
            "context (tokens)",
            "perplexity",
            &panel,
        ));
    }
}
