//! Seed 004 §3 on movie-review sentences: fine-tune the pretrained MiniLM (all-MiniLM-L6-v2)
//! end to end as a binary sentiment classifier, compare AdamW with other burn-optim optimizers,
//! search batch size × learning rate × epochs, pick the best checkpoint by validation accuracy
//! and report its test accuracy once; baselines measure what pretraining buys (a frozen encoder
//! with a linear probe, the same architecture from scratch, the crate's small transformer and
//! Mamba classifiers from scratch).
//!
//! # Data
//! The 10,605 rated Rotten Tomatoes sentences of [`seqlayers::data::load_movie_reviews`]; the
//! label is the sign of the mean rating, zero ratings dropped; a seeded 80/10/10 split. Every
//! sentence is tokenized once (`[CLS] … [SEP]`, truncated to `--max-length`); a batch is
//! right-padded with `[PAD]` to its longest sentence, and the classifier reads the padding from
//! the pad id (attention key mask and mean pooling). `--quick` uses the tiny random BERT fixture
//! (`tests/fixtures/pretrained/bert_tiny`, vocabulary 100) on synthetic sentences — random ids
//! where the label is whether a "positive" id occurs more often than a "negative" one — so the
//! test suite runs it with no download.
//!
//! # Training by epochs
//! A fixed dataset is read in epochs: each epoch shuffles the training sentences with the run's
//! seeded generator and takes them in minibatches (the last one smaller), each through the
//! library's one training step, [`TrainStep`] (the step that `train::train` runs: loss,
//! divergence check, backward, clipping, the optimizer's update). After each epoch the model
//! moves to the inner backend (`model.valid()`: no autodiff graph, dropout off) and is scored on
//! the whole validation set and on a fixed sample of training sentences of the same size; the
//! weights of the best validation epoch are kept. The learning rate is constant, so the
//! checkpoint after epoch `e` of an `E`-epoch run *is* an `e`-epoch run: the search gets the
//! epochs axis from per-epoch checkpoints instead of separate runs. Why an epoch loop here and
//! not `train::train` over a `Task`: see the `train` module's documentation.
//!
//! # The committed grid and its time on two cores
//! Measured on the development machine (Intel Xeon, 2 cores, release build, `max_length` 64,
//! length-grouped batches, machine otherwise idle): fine-tuning MiniLM takes 1.09 s per step
//! at batch 32 (34 ms per sentence) and 1.90 s at batch 64 (30 ms per sentence) — about
//! 0.28 s of a step does not grow with the batch (AdamW's update of all 22.7 M parameters,
//! the word embedding's dense gradient) — so an epoch of the 8,456 training sentences takes 4.8 min (batch 32) or 4.2 min (batch
//! 64); scoring runs at about 7.5 ms per sentence (the 1,056 validation sentences: 8 s).
//! Sentences average 27 tokens (95th percentile 46, longest 79): `max_length` 64 truncates
//! 6 of 10,568, so it costs nothing to keep, and grouping batches by length makes the padding
//! nearly free (random batches of 32 took 1.79 s per step, grouped 1.09 s). The defaults are
//! sized to stay under 60 minutes:
//!
//! | phase | trainings | predicted |
//! |---|---|---|
//! | search: batch {32, 64} × AdamW lr {2e-5, 5e-5, 1e-4} × epochs 1..3, on a seeded subset of 1,000 training sentences | 6 runs × 3 epochs | 13 min |
//! | optimizers: SGD (momentum 0.9, lr 0.01), RMSprop (1e-5), AdaGrad (1e-4) against AdamW (5e-5, a grid point), batch 32, same subset | 3 runs × 3 epochs | 7 min |
//! | final: the chosen setting on all 8,456 sentences | 1 run × 1–3 epochs | 5–15 min |
//! | baselines: probe (features once, 20 epochs), scratch MiniLM (2 epochs, lr 1e-4), small transformer and Mamba (3 epochs, lr 1e-3) | 4 runs | 14 min |
//! | total | | 40–50 min |
//!
//! A shorter search (fewer sentences, epochs or grid points) trades the reliability of the
//! choice for time: a constant budget on a subset favours settings that learn fast (higher
//! rates, smaller batches), which the report notes.
//!
//! # The final comparison on several seeds
//! `--seeds a,b,c` runs the search and the optimizer comparison once, on the first seed, and
//! the final model and every baseline once per seed (data order, initialization, dropout), on
//! the first seed's split, so the test set is the same for every seed; the report adds each
//! model's mean and range and the fine-tuned model's lead over each baseline seed by seed.
//! With `--no-search` the final model is the command line's setting (`--batch`, `--lr`,
//! `--epochs`), e.g. the one a full run chose: the committed three-seed run is
//! `--no-search --batch 32 --lr 0.0001 --epochs 3 --optimizers none --seeds 0,1,2` (about
//! 30 minutes per seed on 2 cores).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use seqlayers::burn::module::{AutodiffModule, Module};
use seqlayers::burn::nn::{Linear, LinearConfig};
use seqlayers::burn::prelude::Backend;
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::burn::tensor::{Int, Tensor};
use seqlayers::data::{
    Batch, MOVIE_REVIEWS_FILE, Padding, Targets, Tokenizer, cache_dir, load_movie_reviews,
    sentiment_labels, split_sentiment,
};
use seqlayers::model::{
    BertClassifier, BertClassifierConfig, BertEncoder, BertPooling, LanguageModel,
    LanguageModelConfig, load_bert, mean_pool, read_bert_config,
};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::ssm::MambaConfig;
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{
    CurvePoint, LrSchedule, OptimizerKind, SequenceModel, TrainConfig, TrainEvent, TrainObserver,
    TrainStep, batch_loss, evaluate_batch, token_tensor,
};
use seqlayers::{Result, SeqError};

use super::cli::{CliError, RunArgs, at_least_one_each, distinct, positive_list, positive_number};
use super::driver::{Experiment, execute};
use super::parallel::init_locked;
use super::plot::{Series, line_plot};
use super::progress::Progress;
use super::report::{pct, percent};
use super::warn_on_error;

/// The folder of the tiny random BERT fixture that `--quick` fine-tunes.
pub const QUICK_MODEL_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/pretrained/bert_tiny"
);

/// The folder `scripts/fetch_pretrained.sh` puts MiniLM in, inside the cache folder.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";

/// What to run when the weights or sentences are missing.
pub const FETCH_HINT: &str = "bash scripts/fetch_pretrained.sh";

/// Flags of the `sentiment` example (every one optional).
#[derive(clap::Parser, Debug)]
#[command(
    about = "Fine-tune MiniLM on movie-review sentiment: optimizers, a hyper-parameter search and \
             baselines (seed 004 §3)"
)]
pub struct SentimentArgs {
    /// Tokens per sentence after truncation ([CLS] and [SEP] included).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Epochs of every search and optimizer run (the search reads epochs 1..=E from per-epoch
    /// checkpoints).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Comma-separated batch sizes of the search grid.
    #[arg(long, value_delimiter = ',')]
    pub grid_batch: Vec<usize>,
    /// Comma-separated AdamW learning rates of the search grid.
    #[arg(long, value_delimiter = ',')]
    pub grid_lr: Vec<f64>,
    /// Training sentences the search and the optimizer comparison use (a seeded subset of the
    /// training split; 0 = all of it). The chosen setting is then trained on all of them.
    #[arg(long)]
    pub search_train: Option<usize>,
    /// Optimizers compared with AdamW, comma-separated `name` or `name:lr` (sgd, rmsprop,
    /// adagrad, adam, adamw); `none` for no comparison.
    #[arg(long, value_delimiter = ',')]
    pub optimizers: Vec<String>,
    /// How the classifier pools the hidden states.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Baselines, comma-separated (probe, scratch, transformer, mamba) or `none`.
    #[arg(long, value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Epochs of the small transformer and Mamba baselines.
    #[arg(long)]
    pub baseline_epochs: Option<usize>,
    /// Epochs of the same architecture trained from scratch.
    #[arg(long)]
    pub scratch_epochs: Option<usize>,
    /// Training batches of random sentences instead of sentences of similar length (see
    /// `SentimentOptions::group_by_length`).
    #[arg(long)]
    pub no_length_groups: bool,
    /// No search: the final model is AdamW at `--batch`, `--lr` for `--epochs` on the whole
    /// training set (the best validation epoch kept), e.g. the setting an earlier search chose.
    #[arg(long)]
    pub no_search: bool,
    /// Folder of the pretrained model (config.json, model.safetensors, tokenizer.json; default:
    /// the cache folder's all-minilm-l6-v2).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The rated sentences (default: the cache folder's
    /// sentiment/movieReviewSnippets_GroundTruth.txt).
    #[arg(long)]
    pub reviews: Option<PathBuf>,
    /// The shared flags ([`RunArgs`]): `--lr` and `--batch` are AdamW's setting in the optimizer
    /// comparison and the baselines' batch; `--seed` seeds the split, order, initialization and
    /// dropout; `--seeds a,b,c` runs the search and the optimizer comparison on the first seed,
    /// and the final model and the baselines once per seed (the first seed's split throughout),
    /// reported as mean and range; `--steps` does not apply (training counts epochs).
    #[command(flatten)]
    pub run: RunArgs,
}

/// How the classifier pools the encoder's hidden states (the library's [`BertPooling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// The `[CLS]` token's hidden state.
    Cls,
    /// The mean over the real tokens (how sentence-transformers trained MiniLM).
    Mean,
    /// BERT's pooler over `[CLS]` (needs a checkpoint with one).
    Pooler,
}

impl Pooling {
    /// The library value.
    pub fn bert(self) -> BertPooling {
        match self {
            Pooling::Cls => BertPooling::Cls,
            Pooling::Mean => BertPooling::Mean,
            Pooling::Pooler => BertPooling::Pooler,
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::Pooler => "pooler",
        }
    }
}

/// A baseline that measures what pretraining buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The pretrained encoder frozen; a linear classifier on its pooled features.
    Probe,
    /// The same architecture from a random initialization, trained end to end.
    Scratch,
    /// The crate's small transformer (attention + MLP blocks, RoPE) from scratch.
    Transformer,
    /// The crate's small Mamba classifier from scratch.
    Mamba,
}

impl Baseline {
    /// Every baseline.
    pub const ALL: [Baseline; 4] = [
        Baseline::Probe,
        Baseline::Scratch,
        Baseline::Transformer,
        Baseline::Mamba,
    ];

    /// Name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Probe => "probe",
            Baseline::Scratch => "scratch",
            Baseline::Transformer => "transformer",
            Baseline::Mamba => "mamba",
        }
    }

    fn model(self) -> ModelKind {
        match self {
            Baseline::Probe => ModelKind::Probe,
            Baseline::Scratch => ModelKind::Scratch,
            Baseline::Transformer => ModelKind::Transformer,
            Baseline::Mamba => ModelKind::Mamba,
        }
    }
}

/// An optimizer of the comparison at its learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerChoice {
    /// The optimizer with its hyper-parameters.
    pub kind: OptimizerKind,
    /// Its (constant) learning rate.
    pub lr: f64,
}

/// `name` or `name:lr` of `--optimizers`; without a rate, the optimizer's default for this
/// example (`adamw_lr` for Adam and AdamW).
pub fn parse_optimizer(
    text: &str,
    adamw_lr: f64,
    quick: bool,
) -> std::result::Result<OptimizerChoice, CliError> {
    let (name, lr) = match text.split_once(':') {
        Some((name, lr)) => {
            let value: f64 = lr.trim().parse().map_err(|_| {
                CliError::usage(format!(
                    "--optimizers: `{lr}` in `{text}` is not a learning rate; write name:rate, e.g. sgd:0.01"
                ))
            })?;
            positive_number(&format!("--optimizers {name}: the learning rate"), value)?;
            (name.trim(), Some(value))
        }
        None => (text.trim(), None),
    };
    let (kind, default_lr) = match name {
        "adamw" => (
            OptimizerKind::AdamW {
                weight_decay: WEIGHT_DECAY,
            },
            adamw_lr,
        ),
        "adam" => (OptimizerKind::Adam, adamw_lr),
        "sgd" => (OptimizerKind::sgd(0.9), if quick { 0.1 } else { 0.01 }),
        "rmsprop" => (OptimizerKind::rms_prop(), if quick { 1e-3 } else { 1e-5 }),
        "adagrad" => (OptimizerKind::ada_grad(), if quick { 1e-2 } else { 1e-4 }),
        other => {
            return Err(CliError::usage(format!(
                "--optimizers: unknown optimizer `{other}`; use sgd, rmsprop, adagrad, adam or adamw \
                 (optionally name:rate), or none"
            )));
        }
    };
    Ok(OptimizerChoice {
        kind,
        lr: lr.unwrap_or(default_lr),
    })
}

/// AdamW's decoupled weight decay in every AdamW run (Hugging Face's fine-tuning default).
pub const WEIGHT_DECAY: f32 = 0.01;

/// Everything the `sentiment` example can change.
#[derive(Debug, Clone)]
pub struct SentimentOptions {
    /// Synthetic sentences and the tiny fixture instead of MiniLM and the reviews.
    pub quick: bool,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Seed of the split, the data order, the initializations and dropout.
    pub seed: u64,
    /// Further seeds of the final comparison: the final model and the baselines are trained
    /// again with each (data order, initialization, dropout; the split stays `seed`'s).
    pub extra_seeds: Vec<u64>,
    /// Run the search; without it the final model is AdamW at (`batch`, `lr`) for `epochs`
    /// epochs on the whole training set.
    pub search: bool,
    /// Folder with config.json, model.safetensors (and tokenizer.json unless `quick`).
    pub model_dir: PathBuf,
    /// The rated sentences (unused when `quick`).
    pub reviews: PathBuf,
    /// Synthetic sentences of `quick`.
    pub quick_sentences: usize,
    /// Tokens per sentence after truncation.
    pub max_length: usize,
    /// Pooling of the fine-tuned classifier (and of the probe's features).
    pub pooling: Pooling,
    /// Fractions held out for validation and test.
    pub validation_fraction: f64,
    /// See `validation_fraction`.
    pub test_fraction: f64,
    /// Epochs of the search and optimizer runs.
    pub epochs: usize,
    /// Batch sizes of the search grid.
    pub grid_batch: Vec<usize>,
    /// AdamW learning rates of the search grid.
    pub grid_lr: Vec<f64>,
    /// Training sentences of the search and optimizer runs (`None`: all).
    pub search_train: Option<usize>,
    /// AdamW's batch and rate in the optimizer comparison (and the baselines' batch).
    pub batch: usize,
    /// See `batch`.
    pub lr: f64,
    /// The optimizers compared with AdamW at (`batch`, their rate).
    pub optimizers: Vec<OptimizerChoice>,
    /// Baselines to train.
    pub baselines: Vec<Baseline>,
    /// Epochs of the small transformer and Mamba baselines.
    pub baseline_epochs: usize,
    /// Epochs of the same architecture from scratch (a MiniLM-size training: the most
    /// expensive baseline).
    pub scratch_epochs: usize,
    /// Epochs of the linear probe (its steps cost almost nothing: the features are computed
    /// once).
    pub probe_epochs: usize,
    /// AdamW rate of the same architecture from scratch.
    pub scratch_lr: f64,
    /// AdamW rate of the small transformer and Mamba and of the linear probe.
    pub small_lr: f64,
    /// Width of the small transformer and Mamba.
    pub small_width: usize,
    /// Sentences per evaluation batch.
    pub eval_batch: usize,
    /// Training sentences scored in evaluation mode after each epoch (the first of the run's
    /// training set).
    pub train_sample: usize,
    /// Global gradient-norm clip of every run.
    pub grad_clip: f32,
    /// Each epoch's shuffled sentences are cut into groups of 50 batches, each group sorted by
    /// length before it is cut into batches, and the batches shuffled (Hugging Face's
    /// `group_by_length`): a batch pads to a length close to its sentences' own, which saves
    /// most of the compute spent on padding, while every batch is still a random draw.
    pub group_by_length: bool,
    /// Progress bars or lines on stderr.
    pub progress: bool,
}

impl Default for SentimentOptions {
    fn default() -> Self {
        let cache = cache_dir().unwrap_or_else(|| PathBuf::from(".cache/seqlayers"));
        Self {
            quick: false,
            out_dir: PathBuf::from("results/sentiment"),
            seed: 0,
            extra_seeds: Vec::new(),
            search: true,
            model_dir: cache.join(MINILM_DIR),
            reviews: cache.join(MOVIE_REVIEWS_FILE),
            quick_sentences: 400,
            max_length: 64,
            pooling: Pooling::Mean,
            validation_fraction: 0.1,
            test_fraction: 0.1,
            epochs: 3,
            grid_batch: vec![32, 64],
            grid_lr: vec![2e-5, 5e-5, 1e-4],
            search_train: Some(1000),
            batch: 32,
            lr: 5e-5,
            optimizers: vec![
                OptimizerChoice {
                    kind: OptimizerKind::sgd(0.9),
                    lr: 0.01,
                },
                OptimizerChoice {
                    kind: OptimizerKind::rms_prop(),
                    lr: 1e-5,
                },
                OptimizerChoice {
                    kind: OptimizerKind::ada_grad(),
                    lr: 1e-4,
                },
            ],
            baselines: Baseline::ALL.to_vec(),
            baseline_epochs: 3,
            scratch_epochs: 2,
            probe_epochs: 20,
            scratch_lr: 1e-4,
            small_lr: 1e-3,
            small_width: 64,
            eval_batch: 64,
            train_sample: 500,
            grad_clip: 1.0,
            group_by_length: true,
            progress: true,
        }
    }
}

impl SentimentOptions {
    /// The `--quick` setting: the tiny fixture on 400 synthetic sentences, two epochs.
    pub fn quick(mut self) -> Self {
        self.quick = true;
        self.model_dir = PathBuf::from(QUICK_MODEL_DIR);
        self.max_length = 16;
        self.epochs = 2;
        self.grid_batch = vec![16];
        self.grid_lr = vec![1e-3, 3e-3];
        self.search_train = Some(160);
        self.batch = 16;
        self.lr = 1e-3;
        self.optimizers = vec![
            OptimizerChoice {
                kind: OptimizerKind::sgd(0.9),
                lr: 0.1,
            },
            OptimizerChoice {
                kind: OptimizerKind::rms_prop(),
                lr: 1e-3,
            },
            OptimizerChoice {
                kind: OptimizerKind::ada_grad(),
                lr: 1e-2,
            },
        ];
        self.baseline_epochs = 2;
        self.scratch_epochs = 2;
        self.probe_epochs = 2;
        self.scratch_lr = 1e-3;
        self.small_lr = 3e-3;
        self.small_width = 16;
        self.eval_batch = 32;
        self.train_sample = 40;
        self
    }
}

/// The options of the `sentiment` command line, checked before any training: every flag value,
/// the model folder and the sentences (a missing download says to run [`FETCH_HINT`]) and
/// `--max-length` against the model's position table.
pub fn sentiment_options(args: &SentimentArgs) -> std::result::Result<SentimentOptions, CliError> {
    let run = &args.run;
    run.check()?;
    if run.steps.is_some() {
        return Err(CliError::usage(
            "--steps does not apply: sentiment trains by epochs; use --epochs (and --search-train \
             for a shorter search)",
        ));
    }
    if run.peers != 1 {
        return Err(CliError::usage(format!(
            "--peers {}: sentiment fine-tuning runs its own epoch loop, not the trainer that \
             data-parallel training wraps; use --peers 1",
            run.peers
        )));
    }
    if run.jobs != 1 {
        return Err(CliError::usage(format!(
            "--jobs {}: sentiment trains one model at a time (dropout draws from the backend's \
             global generator, so runs side by side would not be reproducible); use --jobs 1",
            run.jobs
        )));
    }
    at_least_one_each(&[
        ("--max-length", args.max_length),
        ("--epochs", args.epochs),
        ("--baseline-epochs", args.baseline_epochs),
        ("--scratch-epochs", args.scratch_epochs),
    ])?;
    positive_list("--grid-batch", &args.grid_batch)?;
    for &lr in &args.grid_lr {
        positive_number("--grid-lr", lr)?;
    }
    let lrs: Vec<String> = args.grid_lr.iter().map(|x| x.to_string()).collect();
    distinct("--grid-lr", &lrs)?;
    let mut o = SentimentOptions::default();
    if run.quick {
        o = o.quick();
    }
    let seeds = run.seeds();
    o.seed = seeds[0];
    o.extra_seeds = seeds[1..].to_vec();
    o.search = !args.no_search;
    o.out_dir = run.out_dir("sentiment");
    o.max_length = args.max_length.unwrap_or(o.max_length);
    o.epochs = args.epochs.unwrap_or(o.epochs);
    o.baseline_epochs = args.baseline_epochs.unwrap_or(o.baseline_epochs);
    o.scratch_epochs = args.scratch_epochs.unwrap_or(o.scratch_epochs);
    o.batch = run.batch.unwrap_or(o.batch);
    o.lr = run.lr.unwrap_or(o.lr);
    if !args.grid_batch.is_empty() {
        o.grid_batch = args.grid_batch.clone();
    }
    if !args.grid_lr.is_empty() {
        o.grid_lr = args.grid_lr.clone();
    }
    if let Some(n) = args.search_train {
        o.search_train = (n > 0).then_some(n);
    }
    if let Some(p) = args.pooling {
        o.pooling = p;
    }
    if !args.optimizers.is_empty() {
        if args.optimizers.iter().any(|s| s == "none") {
            if args.optimizers.len() > 1 {
                return Err(CliError::usage(
                    "--optimizers none: give `none` alone (no optimizer comparison)",
                ));
            }
            o.optimizers = Vec::new();
        } else {
            o.optimizers = args
                .optimizers
                .iter()
                .map(|s| parse_optimizer(s, o.lr, o.quick))
                .collect::<std::result::Result<_, _>>()?;
            let names: Vec<&str> = o.optimizers.iter().map(|c| c.kind.name()).collect();
            distinct("--optimizers", &names)?;
            // AdamW at (--batch, --lr) is the comparison's reference run, always there.
            o.optimizers
                .retain(|c| !matches!(c.kind, OptimizerKind::AdamW { .. }) || c.lr != o.lr);
        }
    }
    if !args.baselines.is_empty() {
        if args.baselines.iter().any(|s| s == "none") {
            if args.baselines.len() > 1 {
                return Err(CliError::usage(
                    "--baselines none: give `none` alone (no baseline)",
                ));
            }
            o.baselines = Vec::new();
        } else {
            distinct("--baselines", &args.baselines)?;
            o.baselines = args
                .baselines
                .iter()
                .map(|s| {
                    Baseline::ALL
                        .into_iter()
                        .find(|b| b.name() == s)
                        .ok_or_else(|| {
                            CliError::usage(format!(
                                "--baselines: unknown baseline `{s}`; use probe, scratch, \
                                 transformer, mamba or none"
                            ))
                        })
                })
                .collect::<std::result::Result<_, _>>()?;
        }
    }
    if args.no_length_groups {
        o.group_by_length = false;
    }
    if let Some(dir) = &args.model_dir {
        o.model_dir = dir.clone();
    }
    if let Some(path) = &args.reviews {
        o.reviews = path.clone();
    }
    check_downloads(&o)?;
    let config = read_bert_config(&o.model_dir)?;
    if o.max_length < 3 {
        return Err(CliError::usage(format!(
            "--max-length {}: a sentence needs [CLS], [SEP] and at least one token; give 3 or more",
            o.max_length
        )));
    }
    let positions = config.max_position_embeddings - config.position_offset();
    if o.max_length > positions {
        return Err(CliError::usage(format!(
            "--max-length {} exceeds the model's {positions} positions (`{}`); give at most \
             {positions}",
            o.max_length,
            o.model_dir.display()
        )));
    }
    if o.pooling == Pooling::Pooler {
        let device = Default::default();
        let encoder = load_bert::<seqlayers::backend::Cpu>(&o.model_dir, &device)?;
        if encoder.pooler.is_none() {
            return Err(CliError::usage(format!(
                "--pooling pooler: the checkpoint in `{}` has no pooler; use --pooling mean or cls",
                o.model_dir.display()
            )));
        }
    }
    Ok(o)
}

/// A usage error naming the first missing file of the run and the command that fetches it.
fn check_downloads(o: &SentimentOptions) -> std::result::Result<(), CliError> {
    let mut needed = vec![
        o.model_dir.join("config.json"),
        o.model_dir.join("model.safetensors"),
    ];
    if !o.quick {
        needed.push(o.model_dir.join("tokenizer.json"));
        needed.push(o.reviews.clone());
    }
    if let Some(missing) = needed.iter().find(|p| !p.is_file()) {
        let cache = match cache_dir() {
            Some(dir) => format!("the cache folder is `{}`", dir.display()),
            None => "no cache folder: set SEQLAYERS_CACHE".into(),
        };
        return Err(CliError::usage(format!(
            "`{}` is missing; run `{FETCH_HINT}` to fetch MiniLM and the movie-review sentences \
             ({cache}), or give --model-dir and --reviews, or run --quick (no download)",
            missing.display()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data

/// One tokenized sentence: `[CLS] … [SEP]` ids (no padding) and its label (1 = positive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 = positive, 0 = negative.
    pub label: u32,
}

/// The tokenized split and what the report says about it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training sentences (seeded order).
    pub train: Vec<Example>,
    /// Validation sentences.
    pub validation: Vec<Example>,
    /// Test sentences.
    pub test: Vec<Example>,
    /// The padding id.
    pub pad_id: u32,
    /// Rows a word embedding needs.
    pub vocab_size: usize,
    /// Numbers for the report.
    pub summary: DataSummary,
}

/// Sizes and token-length statistics of the data.
#[derive(Debug, Clone, Default)]
pub struct DataSummary {
    /// Where the sentences came from.
    pub source: String,
    /// Rated sentences read.
    pub total: usize,
    /// Sentences rated exactly 0, dropped.
    pub dropped: usize,
    /// Fraction of positive labels among the kept sentences.
    pub positive: f64,
    /// Split sizes.
    pub train: usize,
    /// See `train`.
    pub validation: usize,
    /// See `train`.
    pub test: usize,
    /// Tokens per sentence before truncation (special tokens included): mean, 95th percentile,
    /// longest.
    pub tokens_mean: f64,
    /// See `tokens_mean`.
    pub tokens_p95: usize,
    /// See `tokens_mean`.
    pub tokens_max: usize,
    /// Fraction of sentences longer than `max_length` (cut by truncation).
    pub truncated: f64,
    /// The padding id.
    pub pad_id: u32,
    /// Positions of the model's table (the longest input it reads).
    pub positions: usize,
}

/// The `--quick` data: random ids of the fixture's vocabulary; `3` is "positive", `4`
/// "negative", `1`/`2` frame each sentence like `[CLS]`/`[SEP]`, `0` pads; the label is whether
/// `3` occurs more often than `4` (never equally often).
pub fn synthetic_data(o: &SentimentOptions) -> Result<Dataset> {
    const VOCAB: u32 = 100;
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0x5E47);
    let content_max = o.max_length.saturating_sub(2).max(1);
    let mut rows = Vec::with_capacity(o.quick_sentences);
    let mut lengths = Vec::new();
    for _ in 0..o.quick_sentences {
        let (pos, neg) = loop {
            let p = rng.random_range(0..4usize);
            let n = rng.random_range(0..4usize);
            if p != n && p + n <= content_max {
                break (p, n);
            }
        };
        let len = rng.random_range((pos + neg).max(2)..=content_max.max(pos + neg).max(2));
        let mut body: Vec<u32> = (0..len).map(|_| rng.random_range(5..VOCAB)).collect();
        let mut slots: Vec<usize> = (0..len).collect();
        slots.shuffle(&mut rng);
        for (k, &slot) in slots.iter().take(pos + neg).enumerate() {
            body[slot] = if k < pos { 3 } else { 4 };
        }
        let ids: Vec<u32> = [1].into_iter().chain(body).chain([2]).collect();
        lengths.push(ids.len());
        rows.push(Example {
            ids,
            label: u32::from(pos > neg),
        });
    }
    let n = rows.len();
    let n_val = ((n as f64 * o.validation_fraction) as usize).max(1);
    let n_test = ((n as f64 * o.test_fraction) as usize).max(1);
    if n_val + n_test >= n {
        return Err(SeqError::InvalidConfig(format!(
            "{n} synthetic sentences leave no training set"
        )));
    }
    let test: Vec<Example> = rows.drain(..n_test).collect();
    let validation: Vec<Example> = rows.drain(..n_val).collect();
    let positive = (validation.iter().chain(&test).chain(&rows))
        .filter(|e| e.label == 1)
        .count() as f64
        / n as f64;
    let summary = DataSummary {
        source: format!(
            "{n} synthetic sentences (ids of the fixture's vocabulary of {VOCAB}; label = more `3` than `4`)"
        ),
        total: n,
        dropped: 0,
        positive,
        train: rows.len(),
        validation: validation.len(),
        test: test.len(),
        pad_id: 0,
        positions: read_bert_config(&o.model_dir)?.max_position_embeddings,
        ..length_stats(&lengths, o.max_length)
    };
    Ok(Dataset {
        train: rows,
        validation,
        test,
        pad_id: 0,
        vocab_size: VOCAB as usize,
        summary,
    })
}

fn length_stats(lengths: &[usize], max_length: usize) -> DataSummary {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    let n = sorted.len().max(1);
    DataSummary {
        tokens_mean: sorted.iter().sum::<usize>() as f64 / n as f64,
        tokens_p95: sorted
            .get(((n as f64 * 0.95) as usize).min(n - 1))
            .copied()
            .unwrap_or(0),
        tokens_max: sorted.last().copied().unwrap_or(0),
        truncated: sorted.iter().filter(|&&l| l > max_length).count() as f64 / n as f64,
        ..DataSummary::default()
    }
}

/// The movie reviews: read, labelled by the rating's sign (zeros dropped), split with the seed
/// and tokenized once at `max_length`.
pub fn movie_review_data(o: &SentimentOptions) -> Result<Dataset> {
    let reviews = load_movie_reviews(&o.reviews)?;
    let (labeled, dropped) = sentiment_labels(&reviews);
    let split = split_sentiment(&labeled, o.validation_fraction, o.test_fraction, o.seed)?;
    let tokenizer = Tokenizer::from_file(o.model_dir.join("tokenizer.json"))?;
    // Longest sentence the model could read (its position table), for the length statistics.
    let full_length = read_bert_config(&o.model_dir)?.max_position_embeddings;
    let encode = |sentences: &[seqlayers::data::LabeledSentence],
                  max_length: usize|
     -> Result<Vec<Example>> {
        let mut out = Vec::with_capacity(sentences.len());
        for chunk in sentences.chunks(256) {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let encoded = tokenizer.encode(&texts, max_length, Padding::Longest)?;
            for ((ids, mask), s) in encoded.ids.iter().zip(&encoded.attention_mask).zip(chunk) {
                let real = mask.iter().filter(|&&m| m == 1).count();
                out.push(Example {
                    ids: ids[..real].to_vec(),
                    label: s.label,
                });
            }
        }
        Ok(out)
    };
    let lengths: Vec<usize> = encode(&labeled, full_length)?
        .iter()
        .map(|e| e.ids.len())
        .collect();
    let summary = DataSummary {
        source: format!(
            "{} rated movie-review sentences (`{}`)",
            reviews.len(),
            portable(&o.reviews)
        ),
        total: reviews.len(),
        dropped,
        positive: labeled.iter().filter(|s| s.label == 1).count() as f64
            / labeled.len().max(1) as f64,
        train: split.train.len(),
        validation: split.validation.len(),
        test: split.test.len(),
        pad_id: tokenizer.pad_id(),
        positions: full_length,
        ..length_stats(&lengths, o.max_length)
    };
    Ok(Dataset {
        train: encode(&split.train, o.max_length)?,
        validation: encode(&split.validation, o.max_length)?,
        test: encode(&split.test, o.max_length)?,
        pad_id: tokenizer.pad_id(),
        vocab_size: tokenizer.vocab_size(),
        summary,
    })
}

/// One batch of `examples`, right-padded with `pad` to the longest (the collate step).
pub fn batch_of(examples: &[&Example], pad: u32) -> Batch {
    let len = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let mut tokens = vec![pad; examples.len() * len];
    for (row, e) in examples.iter().enumerate() {
        tokens[row * len..row * len + e.ids.len()].copy_from_slice(&e.ids);
    }
    Batch {
        tokens,
        batch: examples.len(),
        len,
        targets: Targets::Labels(examples.iter().map(|e| e.label).collect()),
        source: None,
    }
}

/// Evaluation batches of at most `size` sentences, sorted by length first (less padding; the
/// order of an evaluation does not change its result).
pub fn eval_batches(examples: &[Example], pad: u32, size: usize) -> Vec<Batch> {
    let mut sorted: Vec<&Example> = examples.iter().collect();
    sorted.sort_by_key(|e| e.ids.len());
    sorted.chunks(size).map(|c| batch_of(c, pad)).collect()
}

/// Loss and accuracy over a set of sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified right.
    pub accuracy: f64,
    /// Sentences scored.
    pub n: usize,
}

impl Score {
    const NONE: Score = Score {
        loss: f64::NAN,
        accuracy: f64::NAN,
        n: 0,
    };
}

/// Loss and accuracy of `model` over `batches` (call it with the inner model: no graph,
/// dropout off).
fn score<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batches: &[Batch],
    device: &B::Device,
) -> Result<Score> {
    let (mut loss, mut right, mut n) = (0.0, 0.0, 0);
    for b in batches {
        let s = evaluate_batch(model, b, device)?;
        loss += s.loss * b.batch as f64;
        right += s.accuracy * b.batch as f64;
        n += b.batch;
    }
    Ok(Score {
        loss: loss / n.max(1) as f64,
        accuracy: right / n.max(1) as f64,
        n,
    })
}

// ---------------------------------------------------------------------------------------------
// Models

/// The crate's small transformer or Mamba as a sentence classifier: trained token embedding →
/// the language model's stack and norm → the mean over the real tokens → linear head. The stack
/// is causal, so a real token never sees the right padding and the mean is that of the unpadded
/// sentence.
#[derive(Module, Debug)]
pub struct StackSentiment<B: Backend> {
    /// Embedding, positions, stack and final norm (tied embeddings: no vocabulary head).
    pub body: LanguageModel<B>,
    /// Class head `[D, 2]`.
    pub head: Linear<B>,
    /// The padding id.
    pub pad_id: usize,
}

impl<B: Backend> SequenceModel<B> for StackSentiment<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        Ok(self.last_logits(tokens)?.unsqueeze_dim(1))
    }

    fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 2>> {
        let padding = tokens.clone().equal_elem(self.pad_id as i64); // [B, L]
        let x = self.body.embedding.forward(tokens); // [B, L, D]
        let x = self.body.position.try_forward(x, 0)?;
        let h = self.body.norm.forward(self.body.stack.try_forward(x)?); // [B, L, D]
        Ok(self.head.forward(mean_pool(h, Some(padding)))) // [B, 2]
    }
}

/// The stack of a small baseline at width `d`: two attention + MLP blocks with RoPE, or two
/// Mamba blocks.
pub fn small_stack(kind: ModelKind, d: usize) -> Result<StackConfig> {
    let config = match kind {
        ModelKind::Transformer => StackConfig::new(d, parse_layers("attention+mlp,attention+mlp")?)
            .with_n_heads((d / 16).max(1))
            .with_position(PositionEncoding::rope()),
        _ => StackConfig::new(d, parse_layers("mamba,mamba")?)
            .with_norm(NormKind::Rms)
            .with_position(PositionEncoding::None)
            .with_mamba(MambaConfig::new(d).with_d_state(16)),
    };
    Ok(config)
}

/// A linear classifier on fixed features: the "tokens" of a batch are row indices `[B, 1]` into
/// the feature table (the frozen encoder's pooled outputs, computed once).
#[derive(Module, Debug)]
pub struct FeatureProbe<B: Backend> {
    /// Features `[N, D]` (a constant: not trained).
    pub features: Tensor<B, 2>,
    /// Class head `[D, 2]`.
    pub head: Linear<B>,
}

impl<B: Backend> SequenceModel<B> for FeatureProbe<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        Ok(self.last_logits(tokens)?.unsqueeze_dim(1))
    }

    fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 2>> {
        let [batch, _] = tokens.dims();
        let rows = tokens.narrow(1, 0, 1).reshape([batch]); // [B]
        Ok(self.head.forward(self.features.clone().select(0, rows))) // [B, 2]
    }
}

/// The frozen encoder's pooled features of every sentence (train, validation, test rows in
/// that order) on the inner backend, and the dataset whose "sentences" are their row indices.
fn probe_features<B: Backend>(
    encoder: &BertEncoder<B>,
    data: &Dataset,
    pooling: BertPooling,
    eval_batch: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 2>, Dataset)> {
    let all: Vec<&Example> = data
        .train
        .iter()
        .chain(&data.validation)
        .chain(&data.test)
        .collect();
    let mut parts = Vec::new();
    for chunk in all.chunks(eval_batch) {
        let batch = batch_of(chunk, data.pad_id);
        let ids = token_tensor::<B>(&batch, device);
        let padding = ids.clone().equal_elem(data.pad_id as i64);
        let hidden = encoder.forward(ids, None, Some(padding.clone()))?;
        parts.push(encoder.pool(hidden, Some(padding), pooling)?);
    }
    let features = Tensor::cat(parts, 0); // [N, D]
    let mut next = 0u32;
    let mut rows = |set: &[Example]| -> Vec<Example> {
        set.iter()
            .map(|e| {
                next += 1;
                Example {
                    ids: vec![next - 1],
                    label: e.label,
                }
            })
            .collect()
    };
    let indexed = Dataset {
        train: rows(&data.train),
        validation: rows(&data.validation),
        test: rows(&data.test),
        pad_id: u32::MAX,
        vocab_size: all.len(),
        summary: data.summary.clone(),
    };
    Ok((features, indexed))
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Which model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// The pretrained encoder + a new head, trained end to end.
    FineTune,
    /// The same architecture from a random initialization.
    Scratch,
    /// A linear head on the frozen pretrained encoder's features.
    Probe,
    /// The crate's small transformer from scratch.
    Transformer,
    /// The crate's small Mamba from scratch.
    Mamba,
}

impl ModelKind {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::FineTune => "fine-tuned",
            ModelKind::Scratch => "same architecture, from scratch",
            ModelKind::Probe => "frozen encoder + linear probe",
            ModelKind::Transformer => "small transformer, from scratch",
            ModelKind::Mamba => "small Mamba, from scratch",
        }
    }
}

/// Why a run is in the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A point of the batch × learning-rate grid (AdamW).
    Search,
    /// The optimizer comparison.
    Optimizer,
    /// The chosen setting on the whole training set.
    Final,
    /// A baseline.
    Baseline,
}

impl Role {
    /// Name in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Search => "search",
            Role::Optimizer => "optimizer",
            Role::Final => "final",
            Role::Baseline => "baseline",
        }
    }
}

/// One training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Why it runs.
    pub role: Role,
    /// What it trains.
    pub model: ModelKind,
    /// Its optimizer.
    pub optimizer: OptimizerKind,
    /// Constant learning rate.
    pub lr: f64,
    /// Sentences per step.
    pub batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Training sentences (the first of the seeded training split).
    pub train_size: usize,
    /// Seed of the data order, the initialization and dropout.
    pub seed: u64,
}

impl Run {
    /// Label in tables, CSV files and plots.
    pub fn label(&self) -> String {
        let what = match self.model {
            ModelKind::FineTune => "fine-tune".to_string(),
            ModelKind::Scratch => "scratch".into(),
            ModelKind::Probe => "probe".into(),
            ModelKind::Transformer => "transformer".into(),
            ModelKind::Mamba => "mamba".into(),
        };
        format!(
            "{what} {} lr={} b={} n={}",
            self.optimizer.name(),
            self.lr,
            self.batch,
            self.train_size
        )
    }
}

/// Scores after one epoch (epoch 0: before training).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    /// Epochs done.
    pub epoch: usize,
    /// Mean training loss of the epoch's minibatches (dropout on; NaN at epoch 0).
    pub train_loss: f64,
    /// A fixed sample of training sentences (as many as the validation set), evaluation mode.
    pub train: Score,
    /// The validation set.
    pub validation: Score,
    /// Seconds of training in the epoch (evaluation excluded).
    pub train_s: f64,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run.
    pub run: Run,
    /// Parameters of the model.
    pub params: usize,
    /// Parameters the optimizer updates.
    pub trained_params: usize,
    /// Scores per epoch, from epoch 0.
    pub curve: Vec<EpochPoint>,
    /// The epoch with the best validation accuracy (the kept checkpoint; the earliest on ties).
    pub best_epoch: usize,
    /// Test loss and accuracy of that checkpoint.
    pub test: Score,
    /// Optimizer steps run.
    pub steps: usize,
    /// Mean seconds per optimizer step.
    pub s_per_step: f64,
    /// Wall time of the run (loading, training, evaluation), seconds.
    pub wall_s: f64,
    /// The step at which the loss became NaN/∞, if it did (the run stops there).
    pub diverged: Option<usize>,
}

impl RunOutcome {
    /// The kept checkpoint's epoch point.
    pub fn best(&self) -> &EpochPoint {
        self.at(self.best_epoch).unwrap_or(&self.curve[0])
    }

    /// The point of `epoch`, if it was scored.
    pub fn at(&self, epoch: usize) -> Option<&EpochPoint> {
        self.curve.iter().find(|p| p.epoch == epoch)
    }

    /// The points after training epochs (epoch ≥ 1).
    pub fn trained(&self) -> impl Iterator<Item = &EpochPoint> {
        self.curve.iter().filter(|p| p.epoch > 0)
    }

    /// Mean seconds of training per epoch.
    pub fn s_per_epoch(&self) -> f64 {
        let trained: Vec<f64> = self.trained().map(|p| p.train_s).collect();
        trained.iter().sum::<f64>() / trained.len().max(1) as f64
    }
}

/// Forward time of one evaluation batch with and without the autodiff graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTiming {
    /// Sentences and padded length of the batch.
    pub dims: [usize; 2],
    /// Milliseconds on the autodiff backend (graph recorded, dropout on).
    pub autodiff_ms: f64,
    /// Milliseconds on the inner backend (`model.valid()`).
    pub inner_ms: f64,
}

/// Everything the report needs.
#[derive(Debug, Clone)]
pub struct SentimentOutcome {
    /// The data.
    pub data: DataSummary,
    /// Padded shape `[B, L]` of the first training batch of the final run.
    pub example_batch: [usize; 2],
    /// Every run of the first seed, in order: search, optimizer comparison, final, baselines.
    pub runs: Vec<RunOutcome>,
    /// The final model and the baselines again with each further seed, seed by seed.
    pub repeats: Vec<RunOutcome>,
    /// The search's choice: run index and epoch.
    pub selected: Option<(usize, usize)>,
    /// Index of the final model's run.
    pub final_run: Option<usize>,
    /// Forward with and without the graph (Q3.3).
    pub eval_timing: Option<EvalTiming>,
    /// Wall time of the whole experiment (data, every run), seconds.
    pub wall_s: f64,
    /// The CPU model and the threads available.
    pub machine: String,
}

/// Trains `model` for `run.epochs` epochs on the first `run.train_size` training sentences,
/// scoring after each epoch and keeping the best validation epoch; returns the outcome and
/// the kept model (inner backend).
fn fit<B, M>(
    model: M,
    run: &Run,
    data: &Dataset,
    o: &SentimentOptions,
    device: &B::Device,
    trained_params: usize,
) -> Result<(RunOutcome, M::InnerModule)>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
    M::InnerModule: SequenceModel<B::InnerBackend>,
{
    let started = Instant::now();
    let params = model.num_params();
    let train: Vec<&Example> = data.train.iter().take(run.train_size).collect();
    let steps_per_epoch = train.len().div_ceil(run.batch);
    let config = TrainConfig::new()
        .with_steps(run.epochs * steps_per_epoch)
        .with_batch_size(run.batch)
        .with_lr(run.lr)
        .with_optimizer(run.optimizer)
        .with_schedule(LrSchedule::Constant)
        .with_grad_clip(Some(o.grad_clip))
        .with_early_stop(None)
        .with_seed(run.seed);
    let mut stepper = TrainStep::<B, M>::new(&config)?;
    let validation = eval_batches(&data.validation, data.pad_id, o.eval_batch);
    let sample: Vec<Example> = data
        .train
        .iter()
        .take(run.train_size.min(o.train_sample))
        .cloned()
        .collect();
    let train_sample = eval_batches(&sample, data.pad_id, o.eval_batch);
    let test = eval_batches(&data.test, data.pad_id, o.eval_batch);
    let inner_device = device.clone();
    let evaluate = |m: &M::InnerModule| -> Result<(Score, Score)> {
        Ok((
            score(m, &train_sample, &inner_device)?,
            score(m, &validation, &inner_device)?,
        ))
    };
    let mut progress = Progress::new(&run.label(), config.steps, o.progress);
    progress.on_event(TrainEvent::Started {
        steps: config.steps,
    });
    // The untrained model: scored as epoch 0 where the run's role asks for it (the final run and
    // the baselines; the search and optimizer runs all start from the same pretrained encoder
    // and seeded head), and the fallback checkpoint of a run that diverges before its first
    // evaluation.
    let mut best_model = model.valid();
    let mut curve = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    if matches!(run.role, Role::Final | Role::Baseline) {
        let (train0, val0) = evaluate(&best_model)?;
        curve.push(EpochPoint {
            epoch: 0,
            train_loss: f64::NAN,
            train: train0,
            validation: val0,
            train_s: 0.0,
        });
        best = Some((0, val0.accuracy));
    }
    let mut model = model;
    let mut order: Vec<usize> = (0..train.len()).collect();
    // The data order's own stream (the trainer's convention: `seed` draws the batches).
    let mut rng = StdRng::seed_from_u64(run.seed);
    let mut diverged = None;
    let mut train_time = 0.0;
    'epochs: for epoch in 1..=run.epochs {
        let batches = epoch_batches(&mut order, &train, run.batch, o.group_by_length, &mut rng);
        let (mut loss_sum, mut seen, mut epoch_time) = (0.0, 0usize, 0.0);
        for chunk in &batches {
            let rows: Vec<&Example> = chunk.iter().map(|&i| train[i]).collect();
            let batch = batch_of(&rows, data.pad_id);
            let t = Instant::now();
            match stepper.step(model, &batch, device) {
                Ok((next, loss)) => {
                    model = next;
                    epoch_time += t.elapsed().as_secs_f64();
                    loss_sum += loss * rows.len() as f64;
                    seen += rows.len();
                    progress.on_event(TrainEvent::Step {
                        step: stepper.steps_done(),
                        loss,
                    });
                }
                Err(SeqError::Diverged { step, .. }) => {
                    diverged = Some(step);
                    progress.on_event(TrainEvent::Finished {
                        steps_run: step - 1,
                        diverged: true,
                    });
                    // The model moved into the failed step; the kept checkpoint stays.
                    break 'epochs;
                }
                Err(e) => return Err(e),
            }
        }
        train_time += epoch_time;
        let inner = model.valid();
        let (train_score, val_score) = evaluate(&inner)?;
        let point = EpochPoint {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train: train_score,
            validation: val_score,
            train_s: epoch_time,
        };
        progress.on_event(TrainEvent::Evaluated(CurvePoint {
            step: stepper.steps_done(),
            loss: point.train_loss,
            mean_loss: point.train_loss,
            test_score: val_score.accuracy,
            test_loss: val_score.loss,
        }));
        if best.is_none_or(|(_, acc)| val_score.accuracy > acc) {
            best = Some((epoch, val_score.accuracy));
            best_model = inner;
        }
        curve.push(point);
    }
    if best.is_none() {
        // Diverged in its first epoch, never scored: the untrained model is the checkpoint.
        let (train0, val0) = evaluate(&best_model)?;
        curve.push(EpochPoint {
            epoch: 0,
            train_loss: f64::NAN,
            train: train0,
            validation: val0,
            train_s: 0.0,
        });
        best = Some((0, val0.accuracy));
    }
    let best_epoch = best.map_or(0, |(e, _)| e);
    if diverged.is_none() {
        progress.on_event(TrainEvent::Finished {
            steps_run: stepper.steps_done(),
            diverged: false,
        });
    }
    // The test set is scored only where a reported number can come from: the final run, the
    // baselines, and search runs on the whole training set (one of them is then the final
    // model). No choice reads it.
    let scored = match run.role {
        Role::Final | Role::Baseline => true,
        Role::Search => run.train_size == data.train.len(),
        Role::Optimizer => false,
    };
    let test_score = if scored {
        score(&best_model, &test, &inner_device)?
    } else {
        Score::NONE
    };
    let steps = stepper.steps_done();
    Ok((
        RunOutcome {
            run: *run,
            params,
            trained_params,
            curve,
            best_epoch,
            test: test_score,
            steps,
            s_per_step: train_time / steps.max(1) as f64,
            wall_s: started.elapsed().as_secs_f64(),
            diverged,
        },
        best_model,
    ))
}

/// One epoch's batches of indices into `train`: `order` reshuffled, cut into batches of `batch`
/// (the last one smaller) or, with `group_by_length`, into groups of 50 batches each sorted by
/// length (longest first) before it is cut, the batches then shuffled.
pub fn epoch_batches(
    order: &mut [usize],
    train: &[&Example],
    batch: usize,
    group_by_length: bool,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    order.shuffle(rng);
    if !group_by_length {
        return order.chunks(batch).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for group in order.chunks(50 * batch) {
        let mut group = group.to_vec();
        group.sort_by_key(|&i| std::cmp::Reverse(train[i].ids.len()));
        batches.extend(group.chunks(batch).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// The fine-tuned (or from-scratch) BERT classifier of `run`, initialized under the lock with
/// the run's seed.
fn bert_classifier<B: AutodiffBackend>(
    o: &SentimentOptions,
    pretrained: bool,
    seed: u64,
    device: &B::Device,
) -> Result<BertClassifier<B>> {
    init_locked(|| {
        B::seed(device, seed);
        let encoder = if pretrained {
            load_bert::<B>(&o.model_dir, device)?
        } else {
            let mut config = read_bert_config(&o.model_dir)?;
            config.pooler = o.pooling == Pooling::Pooler;
            config.try_init::<B>(device)?
        };
        BertClassifierConfig::new(2)
            .with_pooling(o.pooling.bert())
            .try_init(encoder, device)
    })
}

/// Trains and evaluates one run.
pub fn run_one<B: AutodiffBackend>(
    o: &SentimentOptions,
    run: &Run,
    data: &Dataset,
    device: &B::Device,
) -> Result<RunOutcome> {
    let started = Instant::now();
    let mut outcome = match run.model {
        ModelKind::FineTune | ModelKind::Scratch => {
            let model =
                bert_classifier::<B>(o, run.model == ModelKind::FineTune, run.seed, device)?;
            let trained = model.num_params();
            fit(model, run, data, o, device, trained)?.0
        }
        ModelKind::Probe => {
            let encoder = load_bert::<B::InnerBackend>(&o.model_dir, device)?;
            let encoder_params = encoder.num_params();
            let (features, indexed) =
                probe_features(&encoder, data, o.pooling.bert(), o.eval_batch, device)?;
            let d = features.dims()[1];
            let model = init_locked(|| {
                B::seed(device, run.seed);
                FeatureProbe::<B> {
                    features: Tensor::from_inner(features),
                    head: LinearConfig::new(d, 2).init(device),
                }
            });
            let trained = model.head.num_params();
            let mut out = fit(model, run, &indexed, o, device, trained)?.0;
            out.params = encoder_params + trained;
            out
        }
        ModelKind::Transformer | ModelKind::Mamba => {
            let stack = small_stack(run.model, o.small_width)?;
            let model = init_locked(|| -> Result<StackSentiment<B>> {
                B::seed(device, run.seed);
                let body = LanguageModelConfig::new(stack, data.vocab_size)
                    .with_tie_embeddings(true)
                    .try_init::<B>(device)?;
                Ok(StackSentiment {
                    body,
                    head: LinearConfig::new(o.small_width, 2).init(device),
                    pad_id: data.pad_id as usize,
                })
            })?;
            let trained = model.num_params();
            fit(model, run, data, o, device, trained)?.0
        }
    };
    outcome.wall_s = started.elapsed().as_secs_f64();
    if o.progress {
        let best = outcome.best();
        eprintln!(
            "{:<44} {:>9} params  {:>6.2} s/step  {:>5.0} s/epoch  best val acc {:>5.1}% (epoch {}){}  ({:.0} s)",
            run.label(),
            outcome.params,
            outcome.s_per_step,
            outcome.s_per_epoch(),
            100.0 * best.validation.accuracy,
            outcome.best_epoch,
            if outcome.test.n > 0 {
                format!("  test {:.1}%", 100.0 * outcome.test.accuracy)
            } else {
                String::new()
            },
            outcome.wall_s
        );
    }
    Ok(outcome)
}

/// Forward time of the first validation batch with the autodiff graph (the loss, no backward)
/// and on the inner backend (evaluation), with the pretrained classifier.
fn eval_timing<B: AutodiffBackend>(
    o: &SentimentOptions,
    data: &Dataset,
    device: &B::Device,
) -> Result<EvalTiming> {
    let model = bert_classifier::<B>(o, true, o.seed, device)?;
    let batches = eval_batches(&data.validation, data.pad_id, o.eval_batch);
    let batch = batches
        .last()
        .ok_or_else(|| SeqError::InvalidConfig("no validation sentence".into()))?;
    let t = Instant::now();
    let loss = batch_loss(&model, batch, device)?;
    let _ = loss.into_scalar();
    let autodiff_ms = 1e3 * t.elapsed().as_secs_f64();
    let inner = model.valid();
    let t = Instant::now();
    evaluate_batch(&inner, batch, device)?;
    let inner_ms = 1e3 * t.elapsed().as_secs_f64();
    Ok(EvalTiming {
        dims: [batch.batch, batch.len],
        autodiff_ms,
        inner_ms,
    })
}

/// The search grid and the optimizer comparison (before the search's choice is known).
pub fn planned_runs(o: &SentimentOptions, train_len: usize) -> Vec<Run> {
    let search_size = o.search_train.map_or(train_len, |n| n.min(train_len));
    let adamw = OptimizerKind::AdamW {
        weight_decay: WEIGHT_DECAY,
    };
    let mut runs = Vec::new();
    let grid_batch: &[usize] = if o.search { &o.grid_batch } else { &[] };
    for &batch in grid_batch {
        for &lr in &o.grid_lr {
            runs.push(Run {
                role: Role::Search,
                model: ModelKind::FineTune,
                optimizer: adamw,
                lr,
                batch,
                epochs: o.epochs,
                train_size: search_size,
                seed: o.seed,
            });
        }
    }
    if !o.optimizers.is_empty() {
        let reference = Run {
            role: Role::Optimizer,
            model: ModelKind::FineTune,
            optimizer: adamw,
            lr: o.lr,
            batch: o.batch,
            epochs: o.epochs,
            train_size: search_size,
            seed: o.seed,
        };
        let in_grid = runs
            .iter()
            .any(|r| (r.lr, r.batch) == (reference.lr, reference.batch));
        if !in_grid {
            runs.push(reference);
        }
        for c in &o.optimizers {
            runs.push(Run {
                optimizer: c.kind,
                lr: c.lr,
                ..reference
            });
        }
    }
    runs
}

/// The baselines' runs on the whole training set, with `seed`.
pub fn baseline_runs(o: &SentimentOptions, train_len: usize, seed: u64) -> Vec<Run> {
    let adamw = OptimizerKind::AdamW {
        weight_decay: WEIGHT_DECAY,
    };
    o.baselines
        .iter()
        .map(|b| Run {
            role: Role::Baseline,
            model: b.model(),
            optimizer: adamw,
            lr: match b {
                Baseline::Scratch => o.scratch_lr,
                _ => o.small_lr,
            },
            batch: o.batch,
            epochs: match b {
                Baseline::Scratch => o.scratch_epochs,
                Baseline::Probe => o.probe_epochs,
                _ => o.baseline_epochs,
            },
            train_size: train_len,
            seed,
        })
        .collect()
}

/// The search's choice: the (run, epoch) of the best validation accuracy among the search runs
/// (ties: the earlier epoch, then the earlier run).
pub fn select(runs: &[RunOutcome]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, f64)> = None;
    for (i, r) in runs.iter().enumerate() {
        if r.run.role != Role::Search {
            continue;
        }
        for p in r.trained() {
            let better = best.is_none_or(|(_, epoch, acc)| {
                p.validation.accuracy > acc || (p.validation.accuracy == acc && p.epoch < epoch)
            });
            if better {
                best = Some((i, p.epoch, p.validation.accuracy));
            }
        }
    }
    best.map(|(i, e, _)| (i, e))
}

/// Runs the whole experiment.
pub fn run_sentiment<B: AutodiffBackend>(
    o: &SentimentOptions,
    device: &B::Device,
) -> Result<SentimentOutcome> {
    let started = Instant::now();
    let data = if o.quick {
        synthetic_data(o)?
    } else {
        movie_review_data(o)?
    };
    let train_len = data.train.len();
    let mut runs = Vec::new();
    for run in planned_runs(o, train_len) {
        runs.push(run_one::<B>(o, &run, &data, device)?);
    }
    let selected = select(&runs);
    let mut final_run = None;
    let chosen = match selected {
        Some((i, epoch)) if runs[i].run.train_size == train_len => {
            final_run = Some(i);
            Some(Run {
                role: Role::Final,
                epochs: epoch,
                ..runs[i].run
            })
        }
        Some((i, epoch)) => Some(Run {
            role: Role::Final,
            epochs: epoch,
            train_size: train_len,
            ..runs[i].run
        }),
        None if !o.search => Some(Run {
            role: Role::Final,
            model: ModelKind::FineTune,
            optimizer: OptimizerKind::AdamW {
                weight_decay: WEIGHT_DECAY,
            },
            lr: o.lr,
            batch: o.batch,
            epochs: o.epochs,
            train_size: train_len,
            seed: o.seed,
        }),
        None => None,
    };
    if let (Some(run), None) = (chosen, final_run) {
        runs.push(run_one::<B>(o, &run, &data, device)?);
        final_run = Some(runs.len() - 1);
    }
    for run in baseline_runs(o, train_len, o.seed) {
        runs.push(run_one::<B>(o, &run, &data, device)?);
    }
    // The final comparison again with every further seed (the split stays the first seed's).
    let mut repeats = Vec::new();
    for &seed in &o.extra_seeds {
        let again = chosen.map(|run| Run { seed, ..run });
        for run in again.into_iter().chain(baseline_runs(o, train_len, seed)) {
            repeats.push(run_one::<B>(o, &run, &data, device)?);
        }
    }
    let eval_timing = Some(eval_timing::<B>(o, &data, device)?);
    let first = final_run.map(|i| runs[i].run).unwrap_or(Run {
        role: Role::Final,
        model: ModelKind::FineTune,
        optimizer: OptimizerKind::Adam,
        lr: o.lr,
        batch: o.batch,
        epochs: 1,
        train_size: train_len,
        seed: o.seed,
    });
    // The final run's first batch, drawn as `fit` draws it.
    let mut rng = StdRng::seed_from_u64(o.seed);
    let train: Vec<&Example> = data.train.iter().take(first.train_size).collect();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let batches = epoch_batches(&mut order, &train, first.batch, o.group_by_length, &mut rng);
    let rows: Vec<&Example> = batches[0].iter().map(|&i| train[i]).collect();
    let example = batch_of(&rows, data.pad_id);
    Ok(SentimentOutcome {
        data: data.summary.clone(),
        example_batch: [example.batch, example.len],
        runs,
        repeats,
        selected,
        final_run,
        eval_timing,
        wall_s: started.elapsed().as_secs_f64(),
        machine: machine(),
    })
}

/// The CPU model (from `/proc/cpuinfo`, where there is one) and the threads available.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {threads} threads")
}

/// Runs the experiment with `options` on backend `B` and writes its CSV files and `report.md`.
pub fn sentiment<B: AutodiffBackend>(
    options: &SentimentOptions,
    device: &B::Device,
) -> Result<SentimentOutcome> {
    execute::<Sentiment, B>(options, device)
}

/// The `sentiment` example.
pub struct Sentiment;

impl Experiment for Sentiment {
    type Args = SentimentArgs;
    type Options = SentimentOptions;
    type Outcome = SentimentOutcome;

    fn options(args: &SentimentArgs) -> std::result::Result<SentimentOptions, CliError> {
        sentiment_options(args)
    }

    fn out_dir(o: &SentimentOptions) -> &Path {
        &o.out_dir
    }

    fn run<B: AutodiffBackend>(
        o: &SentimentOptions,
        device: &B::Device,
    ) -> Result<SentimentOutcome> {
        run_sentiment::<B>(o, device)
    }

    fn csv(outcome: &SentimentOutcome) -> Vec<(&'static str, String)> {
        csv_files(outcome)
    }

    fn report(o: &SentimentOptions, outcome: &SentimentOutcome) -> String {
        report(o, outcome)
    }

    fn plots(o: &SentimentOptions, outcome: &SentimentOutcome) {
        plots(o, outcome)
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// `summary.csv` (one row per run) and `curves.csv` (one row per run and epoch).
pub fn csv_files(outcome: &SentimentOutcome) -> Vec<(&'static str, String)> {
    let mut summary = String::from(
        "role,seed,model,optimizer,lr,batch,epochs,train_size,params,trained_params,steps,s_per_step,s_per_epoch,best_epoch,train_acc_at_best,val_loss_at_best,val_acc_at_best,test_loss,test_acc,diverged_at_step,wall_s\n",
    );
    let mut curves = String::from(
        "role,seed,model,optimizer,lr,batch,train_size,epoch,train_loss,train_eval_loss,train_eval_acc,val_loss,val_acc,train_s\n",
    );
    for r in outcome.runs.iter().chain(&outcome.repeats) {
        let run = &r.run;
        let best = r.best();
        // Model names hold commas ("same architecture, from scratch"): quoted, as RFC 4180 says.
        let key = format!(
            "{},{},\"{}\",{},{},{}",
            run.role.name(),
            run.seed,
            run.model.name(),
            run.optimizer.name(),
            run.lr,
            run.batch
        ); // the columns both files start with
        let _ = writeln!(
            summary,
            "{key},{},{},{},{},{},{:.4},{:.2},{},{:.5},{:.5},{:.5},{:.5},{:.5},{},{:.1}",
            run.epochs,
            run.train_size,
            r.params,
            r.trained_params,
            r.steps,
            r.s_per_step,
            r.s_per_epoch(),
            r.best_epoch,
            best.train.accuracy,
            best.validation.loss,
            best.validation.accuracy,
            r.test.loss,
            r.test.accuracy,
            r.diverged.map_or(String::new(), |s| s.to_string()),
            r.wall_s
        );
        for p in &r.curve {
            let _ = writeln!(
                curves,
                "{key},{},{},{:.5},{:.5},{:.5},{:.5},{:.5},{:.2}",
                run.train_size,
                p.epoch,
                p.train_loss,
                p.train.loss,
                p.train.accuracy,
                p.validation.loss,
                p.validation.accuracy,
                p.train_s
            );
        }
    }
    vec![("summary.csv", summary), ("curves.csv", curves)]
}

fn minutes(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// `report.md`: the setting, answers to the seed's questions Q1–Q5 in this crate's terms, and
/// the tables, computed from the numbers.
/// `path` for a committed report: inside the cache folder as `$SEQLAYERS_CACHE/…` (the folder
/// `scripts/fetch_pretrained.sh` fills, which differs between machines), otherwise as given.
fn portable(path: &Path) -> String {
    match cache_dir().and_then(|cache| path.strip_prefix(cache).ok().map(Path::to_path_buf)) {
        Some(inside) => format!("$SEQLAYERS_CACHE/{}", inside.display()),
        None => path.display().to_string(),
    }
}

pub fn report(o: &SentimentOptions, out: &SentimentOutcome) -> String {
    let d = &out.data;
    let mut s = String::from("# Movie-review sentiment: fine-tuning MiniLM (seed 004 §3)\n\n");
    let model = if o.quick {
        "the tiny random BERT fixture `tests/fixtures/pretrained/bert_tiny` (`--quick`: synthetic \
         data, numbers meaningless)"
            .to_string()
    } else {
        format!(
            "all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads; `{}`)",
            portable(&o.model_dir)
        )
    };
    let _ = writeln!(
        s,
        "Model: {model}, {} pooling, dropout 0.1 (embeddings, MLP outputs, head), a new linear \
         head with 2 classes. Data: {}. Seed {}; wall time of the experiment {} on this machine \
         (every run one after another).\n",
        o.pooling.name(),
        d.source,
        o.seed,
        minutes(out.wall_s)
    );
    let _ = writeln!(
        s,
        "Every run: constant learning rate, gradient norm clipped at {}, cross-entropy; after each \
         epoch the model is scored in evaluation mode on the whole validation set and on a fixed \
         sample of {} training sentences (the first of the run's training set), and the epoch with \
         the best validation accuracy is kept.\n",
        o.grad_clip, o.train_sample
    );

    // Q1
    s.push_str("## Step 1: tokenization and batches (Q1.1, Q1.2)\n\n");
    let _ = writeln!(
        s,
        "- **padding**: `Tokenizer::encode(texts, max_length, Padding::Longest)` right-pads with \
         `[PAD]` (id {}) to the longest sentence of the batch (`Padding::MaxLength` pads to \
         `max_length`). The example tokenizes each sentence once without padding and pads when it \
         builds a batch (`batch_of`, the collate step). The classifier finds the padding from the \
         pad id: padded keys are masked before the attention softmax and left out of mean \
         pooling, so a sentence gets the same logits whatever it is padded to.\n\
         - **truncation / max_length**: sentences are cut to `max_length` = {} tokens, `[CLS]` \
         and `[SEP]` included ({} of the sentences are longer: mean {:.1} tokens, 95th percentile \
         {}, longest {}). The model's position table holds {} positions (Hugging Face truncates \
         at the model's limit, 512 for BERT, when asked to truncate without a length).\n\
         - **return_tensors**: a `Batch` holds the ids row-major with their shape; \
         `train::token_tensor` makes the `Int` tensor `[B, L]` on the run's device \
         (`Encoded::ids_tensor` / `padding_mask` for a tokenized batch).\n\
         - **Why these defaults** (Q1.2): padding to the longest of the batch costs no compute on \
         pads beyond the batch's own longest sentence, and it is exact because the pads are \
         masked; truncation at a cap keeps every input inside the position table and bounds \
         memory and time (attention is quadratic in L). We cap at {} instead of 512 to save CPU \
         time: it changes only the {} of sentences above it.\n",
        d.pad_id,
        o.max_length,
        pct(d.truncated),
        d.tokens_mean,
        d.tokens_p95,
        d.tokens_max,
        d.positions,
        o.max_length,
        pct(d.truncated),
    );

    // Q2
    s.push_str("## Step 2: data (Q2.1–Q2.3)\n\n");
    let _ = writeln!(
        s,
        "- **Sizes** (Q2.1): {} sentences read, {} rated exactly 0 dropped, {} positive; seeded \
         split (seed {}): **train {}, validation {}, test {}**.{}\n\
         - **Batching** (Q2.2): `batch_size` sentences per optimizer step; `shuffle`: the training \
         sentences are reshuffled every epoch from the run's seeded generator (validation and \
         test are read in a fixed order, sorted by length to pad less); `collate_fn`: `batch_of` \
         (right-pad to the longest, labels beside); `num_workers`: none — the sentences are \
         tokenized once before training and a batch is a copy of ids, while the two cores go to \
         the matrix products.{}\n\
         - **A batch** (Q2.3): ids `Tensor<B, 2, Int>` `[{}, {}]` (the first training batch of the \
         final run: {} sentences padded to its longest, {} tokens); the padding mask \
         `Tensor<B, 2, Bool>` `[{}, {}]`, `true` at pads (Hugging Face's `attention_mask` is its \
         negation, `padding_from_attention_mask` converts), computed by the model from the ids; \
         the labels `Targets::Labels`, one `u32` per sentence (`[{}]`, 1 = positive), an `Int` \
         tensor `[B]` inside the loss.\n",
        d.total,
        d.dropped,
        pct(d.positive),
        o.seed,
        d.train,
        d.validation,
        d.test,
        match o.search_train {
            Some(n) if n < d.train && o.search => format!(
                " The search and the optimizer comparison train on the first {n} training \
                 sentences (a seeded subset); the chosen setting is retrained on all {}.",
                d.train
            ),
            _ => String::new(),
        },
        if o.group_by_length {
            " Batches are grouped by length: each epoch's shuffled sentences are cut into groups \
             of 50 batches, each group sorted by length before it is cut, and the batches \
             shuffled, so a batch pads little while it is still a random draw (Hugging Face's \
             `group_by_length`; `--no-length-groups` turns it off — on the development machine \
             it cut a MiniLM step at batch 32 from 1.79 s to 1.09 s)."
        } else {
            " Batches are random draws padded to their longest (`--no-length-groups`)."
        },
        out.example_batch[0],
        out.example_batch[1],
        out.example_batch[0],
        out.example_batch[1],
        out.example_batch[0],
        out.example_batch[1],
        out.example_batch[0],
    );

    // Q3
    s.push_str("## Step 3: training and evaluation (Q3.1–Q3.3)\n\n");
    s.push_str(
        "- **The three lines** (Q3.1), in `train::TrainStep::step`: `optimizer.zero_grad()` has no \
         counterpart: `loss.backward()` returns a fresh `Gradients` container each step and \
         nothing accumulates in the parameters; `loss.backward()` computes the gradient of the \
         loss for every tracked parameter (`GradientsParams::from_grads` keeps those of the \
         model); `optimizer.step(lr, model, grads)` clips the gradients and returns the updated \
         model (Burn's modules are values: the update consumes the old one).\n\
         - **Train vs eval mode** (Q3.2): Burn has no mode flag. `Dropout` draws its mask only \
         when the tensor's backend records gradients (`B::ad_enabled()`); training runs on the \
         autodiff backend, so dropout is on, and `model.valid()` returns the same weights on the \
         inner backend, where dropout is the identity. The BERT encoder has dropout on the \
         embeddings and the MLP outputs and the head on the pooled vector, p = 0.1; LayerNorm \
         behaves the same in both modes (no BatchNorm here).\n",
    );
    match out.eval_timing {
        Some(t) => {
            let _ = writeln!(
                s,
                "- **Evaluation without gradients** (Q3.3): `torch.no_grad()` is the inner backend: \
                 every evaluation runs on `model.valid()`, which records no graph, so no \
                 activation is kept for a backward pass. A forward of {} sentences × {} tokens took \
                 {:.0} ms on the autodiff backend (graph recorded, dropout on) and {:.0} ms on the \
                 inner backend.\n",
                t.dims[0], t.dims[1], t.autodiff_ms, t.inner_ms
            );
        }
        None => s.push('\n'),
    }

    // Q4
    s.push_str("## Step 4: training (Q4.1–Q4.7)\n\n");
    let final_run = out.final_run.map(|i| &out.runs[i]);
    if let Some(f) = final_run {
        let run = &f.run;
        let _ = writeln!(
            s,
            "**Q4.1** `curves.png`: training and validation loss and accuracy per epoch of the \
             final model (AdamW, lr {}, batch {}, {} epochs on {} sentences; {:.2} s per step, {} \
             per epoch on this machine):\n",
            run.lr,
            run.batch,
            run.epochs,
            run.train_size,
            f.s_per_step,
            minutes(f.s_per_epoch())
        );
        s.push_str("| epoch | train loss (dropout on) | train acc (eval mode) | val loss | val acc |\n|---|---|---|---|---|\n");
        for p in &f.curve {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {} |",
                p.epoch,
                if p.train_loss.is_nan() {
                    "–".into()
                } else {
                    format!("{:.3}", p.train_loss)
                },
                pct(p.train.accuracy),
                p.validation.loss,
                pct(p.validation.accuracy)
            );
        }
        let trained: Vec<&EpochPoint> = f.trained().collect();
        if let Some(bt) = trained
            .iter()
            .max_by(|a, b| a.train.accuracy.total_cmp(&b.train.accuracy))
        {
            let bv = f.best();
            let first = trained[0];
            let last = trained[trained.len() - 1];
            let val_loss_min = trained
                .iter()
                .min_by(|a, b| a.validation.loss.total_cmp(&b.validation.loss))
                .map_or(0, |p| p.epoch);
            let _ = writeln!(
                s,
                "\n**Q4.2** Best training accuracy at epoch {} ({}), best validation accuracy at \
                 epoch {} ({}). From epoch {} to {} the training loss went {:.3} → {:.3} and the \
                 training accuracy {} → {}, while the validation loss went {:.3} → {:.3} (lowest at \
                 epoch {val_loss_min}) and the validation accuracy {} → {}. {}\n",
                bt.epoch,
                pct(bt.train.accuracy),
                bv.epoch,
                pct(bv.validation.accuracy),
                first.epoch,
                last.epoch,
                first.train_loss,
                last.train_loss,
                pct(first.train.accuracy),
                pct(last.train.accuracy),
                first.validation.loss,
                last.validation.loss,
                pct(first.validation.accuracy),
                pct(last.validation.accuracy),
                if last.validation.loss > first.validation.loss
                    && last.train_loss < first.train_loss
                {
                    "The curves part: the training loss keeps falling while the validation \
                     loss rises — the model starts to fit its training sentences (memorizing) \
                     faster than it learns what carries over."
                } else if trained.len() > 1 {
                    "Training and validation curves move together over these epochs: no sign of \
                     over-fitting yet."
                } else {
                    "One epoch: no trend to read."
                }
            );
            if let Some(start) = f.at(0) {
                let total = bv.validation.accuracy - start.validation.accuracy;
                if total > 0.0 && bv.epoch > 1 {
                    let _ = writeln!(
                        s,
                        "Of the validation gain from the untrained head ({}) to the best epoch, \
                         {:.0}% came in the first epoch.\n",
                        pct(start.validation.accuracy),
                        100.0 * (first.validation.accuracy - start.validation.accuracy) / total
                    );
                }
            }
        }
    }
    s.push_str(
        "**Q4.3** The training sentences are shuffled every epoch so that each minibatch is a \
         fresh random sample (an unbiased gradient estimate, and no fixed order for the model to \
         follow); validation and test only measure — their order does not change the score, so \
         they are read in a fixed order (here sorted by length, which pads less).\n\n\
         **Q4.4** An optimizer turns the gradient of the minibatch loss into a parameter update. \
         SGD steps along −lr·g; momentum averages the gradients over steps (less noise, faster \
         along consistent directions); Adam and AdamW scale each parameter's step by running \
         estimates of its gradient's mean and magnitude (RMSprop keeps only the magnitude, \
         AdaGrad the sum of all squared gradients, so its steps keep shrinking); AdamW decays the \
         weights separately from the gradient.\n\n",
    );
    let opt_runs: Vec<&RunOutcome> = out
        .runs
        .iter()
        .filter(|r| {
            r.run.role == Role::Optimizer
                || (r.run.role == Role::Search
                    && (r.run.lr, r.run.batch) == (o.lr, o.batch)
                    && !o.optimizers.is_empty())
        })
        .collect();
    if !opt_runs.is_empty() {
        let _ = writeln!(
            s,
            "**Q4.5** Optimizers at batch {}, {} epochs on {} sentences, each at a learning rate \
             suited to it (SGD's step is lr · g, up to 10× that with momentum 0.9, not normalized \
             per parameter as in the adaptive methods, whose steps are about lr, so SGD runs at a \
             far larger rate than AdamW's {}), `optimizers.png`:\n",
            o.batch, o.epochs, opt_runs[0].run.train_size, o.lr
        );
        s.push_str("| optimizer | lr | train loss, epoch 1 → last | val acc per epoch | best val acc | s/step |\n|---|---|---|---|---|---|\n");
        for r in &opt_runs {
            let losses: Vec<String> = r
                .trained()
                .map(|p| format!("{:.3}", p.train_loss))
                .collect();
            let accs: Vec<String> = r.curve.iter().map(|p| pct(p.validation.accuracy)).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.2} |",
                r.run.optimizer.name(),
                r.run.lr,
                if r.diverged.is_some() {
                    format!("diverged at step {}", r.diverged.unwrap_or(0))
                } else if losses.len() > 1 {
                    format!("{} → {}", losses[0], losses[losses.len() - 1])
                } else {
                    losses.join("")
                },
                accs.join(", "),
                pct(r.best().validation.accuracy),
                r.s_per_step
            );
        }
        let best = opt_runs.iter().max_by(|a, b| {
            a.best()
                .validation
                .accuracy
                .total_cmp(&b.best().validation.accuracy)
        });
        if let Some(b) = best {
            let fell: Vec<String> = opt_runs
                .iter()
                .filter_map(|r| {
                    let last = r.trained().last()?;
                    (r.best().validation.accuracy - last.validation.accuracy > 0.02).then(|| {
                        format!(
                            "{} ({} at epoch {} → {} at epoch {})",
                            r.run.optimizer.name(),
                            pct(r.best().validation.accuracy),
                            r.best_epoch,
                            pct(last.validation.accuracy),
                            last.epoch
                        )
                    })
                })
                .collect();
            let _ = writeln!(
                s,
                "\nBest validation accuracy: {} ({}).{}\n",
                b.run.optimizer.name(),
                pct(b.best().validation.accuracy),
                if fell.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Fell more than 2 points below its best by the last epoch: {}.",
                        fell.join("; ")
                    )
                }
            );
        }
    }
    let search: Vec<&RunOutcome> = out
        .runs
        .iter()
        .filter(|r| r.run.role == Role::Search)
        .collect();
    if !search.is_empty() {
        let _ = writeln!(
            s,
            "**Q4.6** Strategy: a full grid over batch size {:?} × AdamW learning rate {:?} × \
             epochs 1..={} ({} trainings), on {} training sentences{}. The learning rate is \
             constant, so the checkpoint after epoch e of a {}-epoch run is exactly an e-epoch \
             run: one run per (batch, lr) gives the whole epochs axis, and the grid costs {} \
             trainings instead of {}. The choice is the highest validation accuracy (ties: \
             fewer epochs); the test set is not looked at. A grid because it is small enough to run \
             whole on two cores and shows each axis's effect; random search would pay off with \
             more axes.\n",
            o.grid_batch,
            o.grid_lr,
            o.epochs,
            search.len(),
            search[0].run.train_size,
            if search[0].run.train_size < d.train {
                " (a subset, to fit the time budget; the chosen setting is then trained on the \
                 whole training set)"
            } else {
                ""
            },
            o.epochs,
            search.len(),
            search.len() * o.epochs
        );
        let _ = writeln!(
            s,
            "| batch | lr | {} |\n|---|---|{}",
            (1..=o.epochs)
                .map(|e| format!("val acc, epoch {e}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(o.epochs)
        );
        for r in &search {
            let accs: Vec<String> = (1..=o.epochs)
                .map(|e| r.at(e).map_or("–".into(), |p| pct(p.validation.accuracy)))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                r.run.batch,
                r.run.lr,
                accs.join(" | ")
            );
        }
        if let Some((i, epoch)) = out.selected {
            let c = &out.runs[i];
            let p = c.at(epoch).unwrap_or(c.best());
            let _ = writeln!(
                s,
                "\n**Q4.7** Chosen: batch {}, lr {}, {} epoch{} — validation accuracy {}, \
                 training accuracy {} (on {} sentences).{}\n",
                c.run.batch,
                c.run.lr,
                epoch,
                if epoch == 1 { "" } else { "s" },
                pct(p.validation.accuracy),
                pct(p.train.accuracy),
                c.run.train_size,
                match final_run {
                    Some(f) if f.run.role == Role::Final => format!(
                        " Retrained on all {} training sentences for {} epoch{}: best validation \
                         accuracy {} at epoch {} (training accuracy {}).",
                        f.run.train_size,
                        f.run.epochs,
                        if f.run.epochs == 1 { "" } else { "s" },
                        pct(f.best().validation.accuracy),
                        f.best_epoch,
                        pct(f.best().train.accuracy)
                    ),
                    _ => String::new(),
                }
            );
        }
    } else if !o.search {
        let _ = writeln!(
            s,
            "**Q4.6–Q4.7** No search in this run (`--no-search`): the final model is AdamW at batch \
             {}, lr {}, {} epoch{} on all {} training sentences, the best validation epoch kept \
             (the setting is given on the command line, e.g. the one a full run's search chose).\n",
            o.batch,
            o.lr,
            o.epochs,
            if o.epochs == 1 { "" } else { "s" },
            d.train
        );
    }

    // Q5 and baselines
    s.push_str("## Step 5: test accuracy (Q5.1) and what pretraining buys\n\n");
    if let Some(f) = final_run {
        let _ = writeln!(
            s,
            "**Q5.1** Test accuracy of the chosen checkpoint (epoch {} of the final run): **{}** \
             on {} sentences (test loss {:.3}).\n",
            f.best_epoch,
            pct(f.test.accuracy),
            f.test.n,
            f.test.loss
        );
    }
    let baselines: Vec<&RunOutcome> = final_run
        .into_iter()
        .chain(out.runs.iter().filter(|r| r.run.role == Role::Baseline))
        .collect();
    if baselines.len() > 1 {
        s.push_str("| model | params (trained) | lr | epochs | best epoch | train acc | val acc | test acc | s/epoch |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in &baselines {
            let _ = writeln!(
                s,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                r.run.model.name(),
                r.params,
                r.trained_params,
                r.run.lr,
                r.run.epochs,
                r.best_epoch,
                pct(r.best().train.accuracy),
                pct(r.best().validation.accuracy),
                pct(r.test.accuracy),
                minutes(r.s_per_epoch())
            );
        }
        if let Some(f) = final_run {
            let mut parts = Vec::new();
            for r in baselines.iter().skip(1) {
                parts.push(format!(
                    "{} {:+.1} points",
                    r.run.model.name(),
                    100.0 * (r.test.accuracy - f.test.accuracy)
                ));
            }
            let _ = writeln!(
                s,
                "\nTest accuracy relative to the fine-tuned model: {}. The frozen probe shows how \
                 much of the task the pretrained sentence embedding already separates; the \
                 from-scratch runs show what the same data teaches without pretraining \
                 (`baselines.png`: validation accuracy per epoch).\n",
                parts.join("; ")
            );
        }
        let rising: Vec<String> = baselines
            .iter()
            .filter(|r| r.best_epoch == r.run.epochs && r.run.epochs > 1)
            .map(|r| format!("{} ({} epochs)", r.run.model.name(), r.run.epochs))
            .collect();
        if !rising.is_empty() {
            let _ = writeln!(
                s,
                "Best at their last epoch, so more epochs might still help: {}.\n",
                rising.join(", ")
            );
        }
    }
    s.push_str(&seed_section(o, out, &baselines));
    s.push_str(&time_section(o, out));
    let has = |role: Role| out.runs.iter().any(|r| r.run.role == role);
    let _ = writeln!(
        s,
        "## Files\n\n`summary.csv` (one row per run: setting, timing, the kept epoch's accuracies, \
         its test accuracy), `curves.csv` (per run and epoch: training loss, training-sample and \
         validation loss and accuracy), `curves.png` (Q4.1){}{}, `baselines.png`.",
        if has(Role::Optimizer) {
            ", `optimizers.png` / `optimizers_loss.png` (Q4.5)"
        } else {
            ""
        },
        if has(Role::Search) {
            ", `search.png` (Q4.6)"
        } else {
            ""
        }
    );
    s
}

/// The final comparison across seeds: each model's test and validation accuracy as mean and
/// range over the first seed's run (`compared`) and its repeats, and each baseline's distance
/// from the fine-tuned model seed by seed.
fn seed_section(o: &SentimentOptions, out: &SentimentOutcome, compared: &[&RunOutcome]) -> String {
    if out.repeats.is_empty() || compared.is_empty() {
        return String::new();
    }
    let seeds: Vec<u64> = std::iter::once(o.seed)
        .chain(o.extra_seeds.iter().copied())
        .collect();
    let of_model = |model: ModelKind| -> Vec<&RunOutcome> {
        compared
            .iter()
            .copied()
            .filter(|r| r.run.model == model)
            .chain(out.repeats.iter().filter(|r| r.run.model == model))
            .collect()
    };
    let mut s = format!(
        "### The final comparison on {} seeds\n\nSeeds {:?}: each seed draws the data order, \
         the new head's (or the whole model's) initialization and dropout; the split is seed \
         {}'s throughout, so every model is scored on the same {} test sentences. Mean \
         (min–max) over the seeds:\n\n\
         | model | test acc | val acc (kept epoch) | test acc per seed | kept epoch per seed |\n\
         |---|---|---|---|---|\n",
        seeds.len(),
        seeds,
        o.seed,
        out.data.test
    );
    let mut fine_tuned: Vec<f64> = Vec::new();
    for first in compared {
        let runs = of_model(first.run.model);
        let test: Vec<f64> = runs.iter().map(|r| r.test.accuracy).collect();
        let val: Vec<f64> = runs.iter().map(|r| r.best().validation.accuracy).collect();
        if first.run.model == ModelKind::FineTune {
            fine_tuned = test.clone();
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            first.run.model.name(),
            percent(&test, 1),
            percent(&val, 1),
            test.iter().map(|&a| pct(a)).collect::<Vec<_>>().join(", "),
            runs.iter()
                .map(|r| r.best_epoch.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if fine_tuned.len() == seeds.len() {
        let mut parts = Vec::new();
        for first in compared
            .iter()
            .filter(|r| r.run.model != ModelKind::FineTune)
        {
            let test: Vec<f64> = of_model(first.run.model)
                .iter()
                .map(|r| r.test.accuracy)
                .collect();
            if test.len() != fine_tuned.len() {
                continue;
            }
            let gaps: Vec<f64> = fine_tuned
                .iter()
                .zip(&test)
                .map(|(f, b)| 100.0 * (f - b))
                .collect();
            let lo = gaps.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            parts.push(format!(
                "{} by {:.1} to {:.1} points{}",
                first.run.model.name(),
                lo,
                hi,
                if lo > 0.0 {
                    " (every seed)"
                } else {
                    " (not on every seed)"
                }
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "\nThe fine-tuned model's test accuracy above each baseline's, seed by seed: {}.\n",
                parts.join("; ")
            );
        }
    }
    s
}

/// Where the time went, per phase, and the step and epoch times behind the plan.
fn time_section(o: &SentimentOptions, out: &SentimentOutcome) -> String {
    let mut s = format!(
        "## Time\n\nMachine: {} (burn-ndarray, CPU). Whole experiment: {}.\n\n\
         | phase | runs | sentence-epochs trained | wall |\n|---|---|---|---|\n",
        out.machine,
        minutes(out.wall_s)
    );
    for role in [Role::Search, Role::Optimizer, Role::Final, Role::Baseline] {
        let runs: Vec<&RunOutcome> = out.runs.iter().filter(|r| r.run.role == role).collect();
        if runs.is_empty() {
            continue;
        }
        let seen: usize = runs
            .iter()
            .map(|r| r.run.train_size * r.trained().count())
            .sum();
        let wall: f64 = runs.iter().map(|r| r.wall_s).sum();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            role.name(),
            runs.len(),
            seen,
            minutes(wall)
        );
    }
    if !out.repeats.is_empty() {
        let seen: usize = out
            .repeats
            .iter()
            .map(|r| r.run.train_size * r.trained().count())
            .sum();
        let wall: f64 = out.repeats.iter().map(|r| r.wall_s).sum();
        let _ = writeln!(
            s,
            "| final + baselines, seeds {:?} | {} | {} | {} |",
            o.extra_seeds,
            out.repeats.len(),
            seen,
            minutes(wall)
        );
    }
    let mut rates = Vec::new();
    for batch in o.grid_batch.iter().chain([&o.batch]) {
        let steps: Vec<&RunOutcome> = out
            .runs
            .iter()
            .filter(|r| r.run.model == ModelKind::FineTune && r.run.batch == *batch && r.steps > 0)
            .collect();
        if steps.is_empty() || rates.iter().any(|(b, _)| b == batch) {
            continue;
        }
        let total: f64 = steps.iter().map(|r| r.s_per_step * r.steps as f64).sum();
        let count: usize = steps.iter().map(|r| r.steps).sum();
        rates.push((*batch, total / count as f64));
    }
    if !rates.is_empty() {
        let parts: Vec<String> = rates
            .iter()
            .map(|(b, t)| {
                format!(
                    "{t:.2} s per step at batch {b} ({:.0} ms per sentence, so {} per epoch of the \
                     {} training sentences)",
                    1e3 * t / *b as f64,
                    minutes(t * out.data.train.div_ceil(*b) as f64),
                    out.data.train
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "\nFine-tuning (forward, backward, clipping, the optimizer's update of every parameter; \
             evaluation excluded): {}. Sentences are at most {} tokens, {}.\n",
            parts.join("; "),
            o.max_length,
            if o.group_by_length {
                "in batches grouped by length"
            } else {
                "in random batches padded to their longest"
            }
        );
    }
    s
}

/// The PNG plots.
fn plots(o: &SentimentOptions, out: &SentimentOutcome) {
    let dir = &o.out_dir;
    if let Some(f) = out.final_run.map(|i| &out.runs[i]) {
        let pick = |name: &str, get: fn(&EpochPoint) -> f64, skip0: bool| Series {
            name: name.into(),
            points: f
                .curve
                .iter()
                .filter(|p| !(skip0 && p.epoch == 0))
                .map(|p| (p.epoch as f64, get(p)))
                .collect(),
        };
        let series = vec![
            pick(
                "train loss (minibatches, dropout on)",
                |p| p.train_loss,
                true,
            ),
            pick("validation loss", |p| p.validation.loss, false),
            pick(
                "train accuracy (eval mode, sample)",
                |p| p.train.accuracy,
                false,
            ),
            pick("validation accuracy", |p| p.validation.accuracy, false),
        ];
        warn_on_error(line_plot(
            &dir.join("curves.png"),
            &format!(
                "Fine-tuning: loss and accuracy per epoch (AdamW lr {}, batch {})",
                f.run.lr, f.run.batch
            ),
            "epoch",
            "loss / accuracy",
            &series,
            false,
        ));
    }
    let by_role = |keep: &dyn Fn(&RunOutcome) -> bool, get: fn(&EpochPoint) -> f64, skip0: bool| {
        out.runs
            .iter()
            .filter(|r| keep(r))
            .map(|r| Series {
                name: format!(
                    "{} lr={} b={}",
                    r.run.optimizer.name(),
                    r.run.lr,
                    r.run.batch
                ),
                points: r
                    .curve
                    .iter()
                    .filter(|p| !(skip0 && p.epoch == 0))
                    .map(|p| (p.epoch as f64, get(p)))
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let optimizer_run = |r: &RunOutcome| {
        r.run.role == Role::Optimizer
            || (r.run.role == Role::Search
                && (r.run.lr, r.run.batch) == (o.lr, o.batch)
                && !o.optimizers.is_empty())
    };
    if !o.optimizers.is_empty() {
        warn_on_error(line_plot(
            &dir.join("optimizers.png"),
            "Optimizers: validation accuracy per epoch",
            "epoch",
            "validation accuracy",
            &by_role(&optimizer_run, |p| p.validation.accuracy, false),
            false,
        ));
        warn_on_error(line_plot(
            &dir.join("optimizers_loss.png"),
            "Optimizers: training loss per epoch (mean over the epoch's minibatches)",
            "epoch",
            "training loss",
            &by_role(&optimizer_run, |p| p.train_loss, true),
            false,
        ));
    }
    warn_on_error(line_plot(
        &dir.join("search.png"),
        "Search (AdamW): validation accuracy per epoch",
        "epoch",
        "validation accuracy",
        &by_role(
            &|r| r.run.role == Role::Search,
            |p| p.validation.accuracy,
            false,
        ),
        false,
    ));
    let compared: Vec<Series> = out
        .runs
        .iter()
        .enumerate()
        .filter(|(i, r)| Some(*i) == out.final_run || r.run.role == Role::Baseline)
        .map(|(_, r)| Series {
            name: r.run.model.name().to_string(),
            points: r
                .curve
                .iter()
                .map(|p| (p.epoch as f64, p.validation.accuracy))
                .collect(),
        })
        .collect();
    if compared.len() > 1 {
        warn_on_error(line_plot(
            &dir.join("baselines.png"),
            "What pretraining buys: validation accuracy per epoch",
            "epoch",
            "validation accuracy",
            &compared,
            false,
        ));
    }
}
