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

use std::time::Instant;

use clap::Parser;
use common::cli::or_exit;
use common::plot::{Series, line_plot};
use common::tiny_gpt::{
    GenerateArgs, TinyGptArgs, TinyGptMode, TinyGptOptions, TinyGptOutcome, generate_vocabulary,
    sample_windowed, tiny_gpt, train_options,
};
use common::warn_on_error;
use seqlayers::data::Vocabulary;
use seqlayers::decode::{GenerateConfig, SampleConfig};
use seqlayers::model::load_language_model;

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
    let args = TinyGptArgs::parse();
    match args.mode {
        TinyGptMode::Generate(g) => {
            let vocabulary = or_exit(generate_vocabulary(&g));
            println!("{}", or_exit(generate(&g, &vocabulary)));
        }
        TinyGptMode::Train(t) => {
            let options = or_exit(train_options(&t));
            common::memory::keep_freed_memory();
            common::parallel::one_core_per_job(t.run.jobs);
            let started = Instant::now();
            let result = with_backend!(t.run.device.as_str(), |B, device| {
                tiny_gpt::<B>(&options, &device)
            });
            let (outcomes, _) = or_exit(result);
            plots(&options, &outcomes);
            common::print_report(&options.out_dir, started);
        }
    }
}
