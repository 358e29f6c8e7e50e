//! Seed 004 §2: a character-level GPT on Shakespeare, its attention ablations (naive masking,
//! shared Q/K/V, positions, similarity functions) and Mamba / hybrid language models at a
//! matched parameter count.
//!
//! ```sh
//! cargo run --release --example tiny_gpt -- train --quick                 # seconds
//! cargo run --release --example tiny_gpt -- train --jobs 2                # the whole grid
//! cargo run --release --example tiny_gpt -- train --ablation naive-mask,standard
//! cargo run --release --example tiny_gpt -- generate --checkpoint results/tiny_gpt/checkpoints/standard --prompt "JULIET." --tokens 400
//! cargo run --release --example tiny_gpt -- train --ablation standard --resume results/tiny_gpt/checkpoints/standard --steps 500
//! ```
//!
//! `train` writes `summary.csv`, `curves.csv`, `lengths.csv`, `samples.md`, PNG plots,
//! `report.md` and one checkpoint per model (`checkpoints/<ablation>/`: `config.json`,
//! `model.mpk`, `vocabulary.json`) to `--out` (default `results/tiny_gpt`).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use common::plot::{Series, line_plot};
use common::tiny_gpt::{
    Ablation, TinyGptOptions, TinyGptOutcome, VocabularyFile, sample_windowed, tiny_gpt,
};
use common::warn_on_error;
use seqlayers::burn::config::Config;
use seqlayers::data::TokenKind;
use seqlayers::decode::{GenerateConfig, SampleConfig};
use seqlayers::model::load_language_model;

/// A character-level GPT on Shakespeare and its attention ablations (seed 004 §2).
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Train the ablation grid (or the ones given) and write the report.
    Train(TrainArgs),
    /// Generate text from a saved checkpoint.
    Generate(GenerateArgs),
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Comma-separated variants: standard, naive-mask, shared-qk, shared-kv, shared-qkv,
    /// sinusoidal, learned, rope, alibi, similarity=dot|neg-distance|cosine[:T], mamba, hybrid.
    #[arg(long = "ablation", value_delimiter = ',', value_parser = Ablation::parse)]
    ablations: Vec<Ablation>,
    /// Any UTF-8 text (default: the committed Shakespeare corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Word-level tokens with this vocabulary cap instead of characters.
    #[arg(long)]
    words: Option<usize>,
    /// Training window.
    #[arg(long)]
    block_size: Option<usize>,
    /// Width.
    #[arg(long)]
    d_model: Option<usize>,
    /// GPT blocks.
    #[arg(long)]
    layers: Option<usize>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Windows per step.
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Dropout after the MLPs.
    #[arg(long)]
    dropout: Option<f64>,
    /// Continue training from this checkpoint (its config wins; one ablation).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Seed of split, data order, initialization and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Trainings at the same time (above 1, each runs its kernels and matrix products on one
    /// thread).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// A smoke run that finishes in seconds.
    #[arg(long)]
    quick: bool,
    /// Output folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not save checkpoints.
    #[arg(long)]
    no_save: bool,
    /// Backend: `cpu` (default) or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Checkpoint folder (config.json, model.mpk, vocabulary.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "ROMEO.\n")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 300)]
    tokens: usize,
    /// Softmax temperature.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample among the k most likely tokens.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn options(a: &TrainArgs) -> TinyGptOptions {
    let mut o = TinyGptOptions::default();
    if a.quick {
        o = o.quick();
    }
    if !a.ablations.is_empty() {
        o.ablations = a.ablations.clone();
    }
    if let Some(c) = &a.corpus {
        o.corpus = c.clone();
    }
    if let Some(w) = a.words {
        o.tokens = TokenKind::Word { max_words: w };
    }
    o.block_size = a.block_size.unwrap_or(o.block_size);
    o.d_model = a.d_model.unwrap_or(o.d_model);
    o.layers = a.layers.unwrap_or(o.layers);
    o.steps = a.steps.unwrap_or(o.steps);
    o.batch = a.batch.unwrap_or(o.batch);
    o.lr = a.lr.unwrap_or(o.lr);
    o.dropout = a.dropout.unwrap_or(o.dropout);
    o.resume = a.resume.clone();
    o.seed = a.seed;
    o.jobs = a.jobs;
    o.save = !a.no_save;
    o.out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/tiny_gpt"));
    o
}

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
    warn_on_error(line_plot(
        &dir.join("val_ppl.png"),
        "validation perplexity (full window)",
        "step",
        "perplexity",
        &curve(0),
        false,
    ));
    warn_on_error(line_plot(
        &dir.join("train_loss.png"),
        "training loss",
        "step",
        "mean loss (nats)",
        &curve(1),
        false,
    ));
    let lengths: Vec<Series> = outcomes
        .iter()
        .map(|o| Series {
            name: o.ablation.name(),
            points: o.lengths.iter().map(|l| (l.len as f64, l.score)).collect(),
        })
        .collect();
    warn_on_error(line_plot(
        &dir.join("context_length.png"),
        "validation perplexity vs context length",
        "context (tokens)",
        "perplexity",
        &lengths,
        true,
    ));
}

fn generate(a: &GenerateArgs) -> seqlayers::Result<String> {
    let device = Default::default();
    let (model, _) = load_language_model::<seqlayers::backend::Cpu>(&a.checkpoint, &device)?;
    let vocab_path = a.checkpoint.join("vocabulary.json");
    let vocabulary = VocabularyFile::load(&vocab_path)
        .map_err(|e| seqlayers::SeqError::Checkpoint {
            path: vocab_path.display().to_string(),
            problem: format!("cannot read the vocabulary ({e})"),
        })?
        .vocabulary()?;
    let config = SampleConfig::new(GenerateConfig::new(a.tokens))
        .with_temperature(a.temperature)
        .with_top_k(a.top_k)
        .with_seed(a.seed);
    // Learned positions were trained up to their table: decode in windows of that length.
    let block = model.position.max_len().unwrap_or(usize::MAX);
    sample_windowed(
        &model,
        &vocabulary,
        &a.prompt,
        a.tokens,
        block,
        config,
        &device,
    )
}

fn main() {
    let args = Args::parse();
    match args.mode {
        Mode::Generate(g) => match generate(&g) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        },
        Mode::Train(t) => {
            common::memory::keep_freed_memory();
            common::parallel::one_core_per_job(t.jobs);
            let options = options(&t);
            let started = Instant::now();
            let result = with_backend!(t.device.as_str(), |B, device| {
                tiny_gpt::<B>(&options, &device)
            });
            let (outcomes, _) = result.unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1);
            });
            plots(&options, &outcomes);
            common::print_report(&options.out_dir, started);
        }
    }
}
