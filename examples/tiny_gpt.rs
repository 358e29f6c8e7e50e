//! Seed 004 §2: a character-level GPT on Shakespeare, its attention ablations (naive masking,
//! shared Q/K/V, MLP Q/K/V, positions, similarity functions, linear attention) and Mamba /
//! hybrid language models at a matched parameter count.
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

use clap::Parser;
use common::cli::or_exit;
use common::driver::drive;
use common::tiny_gpt::{
    GenerateArgs, TinyGpt, TinyGptArgs, TinyGptMode, generate_vocabulary, sample_windowed,
};
use seqlayers::data::Vocabulary;
use seqlayers::decode::{GenerateConfig, SampleConfig};
use seqlayers::model::load_language_model;

/// Generates from the checkpoint of `a` (whose flags and vocabulary were checked).
fn generate(a: &GenerateArgs, vocabulary: &Vocabulary) -> seqlayers::Result<String> {
    let device = Default::default();
    let (model, _) = load_language_model::<seqlayers::backend::Cpu>(&a.checkpoint, &device)?;
    let config = SampleConfig::new(GenerateConfig::new(a.tokens))
        .with_temperature(a.temperature)
        .with_top_k(a.top_k)
        .with_seed(a.seed);
    // Learned positions were trained up to their table: decode in windows of that length.
    let block = model.position.max_len().unwrap_or(usize::MAX);
    sample_windowed(
        &model, vocabulary, &a.prompt, a.tokens, block, config, &device,
    )
}

fn main() {
    match TinyGptArgs::parse().mode {
        TinyGptMode::Generate(g) => {
            let vocabulary = or_exit(generate_vocabulary(&g));
            println!("{}", or_exit(generate(&g, &vocabulary)));
        }
        TinyGptMode::Train(t) => drive::<TinyGpt>(&t, &t.run),
    }
}
