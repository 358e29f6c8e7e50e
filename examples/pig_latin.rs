//! Seed 002, Pig-Latin: an encoder–decoder transformer and a Mamba translator at hidden 32 and
//! 64 on the small and large word lists, Mamba's discretizations, latency and interpretability.
//!
//! ```sh
//! cargo run --release --example pig_latin -- --quick          # seconds
//! cargo run --release --example pig_latin -- --jobs 2         # the homework's grid
//! cargo run --release --example pig_latin -- --model transformer --hidden 64 --data large
//! cargo run --release --example pig_latin -- --words my_words.txt --quick
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `mistakes.csv`, loss/accuracy curves, cross-attention
//! heatmaps, Mamba Δ/retention plots and `report.md` to `--out` (default `results/pig_latin`).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use common::pig_latin::{DataSize, Disc, PigLatinOptions, PigLatinOutcome, Translator, pig_latin};
use common::plot::{Series, heatmap, line_plot};
use common::warn_on_error;

/// Flags (every one optional).
#[derive(Parser, Debug)]
#[command(about = "Pig-Latin translation: encoder–decoder transformer vs Mamba (seed 002)")]
struct Args {
    /// Comma-separated translators: transformer, mamba.
    #[arg(long = "model", value_delimiter = ',')]
    models: Vec<Translator>,
    /// Comma-separated widths (the homework: 32, 64).
    #[arg(long = "hidden", value_delimiter = ',')]
    hiddens: Vec<usize>,
    /// Comma-separated word lists: small, large.
    #[arg(long = "data", value_delimiter = ',')]
    data: Vec<DataSize>,
    /// Discretization of the grid's Mamba runs.
    #[arg(long, value_enum)]
    discretization: Option<Disc>,
    /// Extra Mamba discretizations at the largest width and list (comma-separated; `none`
    /// for no sweep).
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<String>,
    /// Folder with pig_latin_small.txt and pig_latin_large.txt.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Build the pairs from this word list with the rule instead of the files.
    #[arg(long)]
    words: Option<PathBuf>,
    /// Optimizer steps of every run (default 3000).
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Passes over the training words instead of a step count.
    #[arg(long)]
    epochs: Option<f64>,
    /// Words per minibatch.
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Blocks of the transformer's encoder and of its decoder.
    #[arg(long)]
    transformer_layers: Option<usize>,
    /// Mamba blocks.
    #[arg(long)]
    mamba_layers: Option<usize>,
    /// Seed of split, data order and initialization.
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
    /// Backend: `cpu` (default) or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl Args {
    fn options(&self) -> Result<PigLatinOptions, String> {
        let mut o = PigLatinOptions::default();
        if self.quick {
            o = o.quick();
        }
        if !self.models.is_empty() {
            o.models = self.models.clone();
        }
        if !self.hiddens.is_empty() {
            o.hiddens = self.hiddens.clone();
        }
        if !self.data.is_empty() {
            o.data = self.data.clone();
        }
        o.discretization = self.discretization.unwrap_or(o.discretization);
        if !self.sweep.is_empty() {
            o.discretization_sweep = self
                .sweep
                .iter()
                .filter(|s| s.as_str() != "none")
                .map(|s| {
                    <Disc as clap::ValueEnum>::from_str(s, true)
                        .map_err(|_| format!("--sweep: unknown discretization `{s}` (approx-zoh, exact-zoh, bilinear, none)"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(d) = &self.data_dir {
            o.data_dir = d.clone();
        }
        o.words = self.words.clone();
        o.steps = self.steps.unwrap_or(o.steps);
        o.epochs = self.epochs.or(o.epochs);
        o.batch = self.batch.unwrap_or(o.batch);
        o.lr = self.lr.unwrap_or(o.lr);
        o.transformer_layers = self.transformer_layers.unwrap_or(o.transformer_layers);
        o.mamba_layers = self.mamba_layers.unwrap_or(o.mamba_layers);
        o.seed = self.seed;
        o.jobs = self.jobs;
        o.out_dir = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("results/pig_latin"));
        Ok(o)
    }
}

fn plots(options: &PigLatinOptions, outcomes: &[PigLatinOutcome]) {
    let dir = &options.out_dir;
    let epoch = |o: &PigLatinOutcome, step: usize| (step * o.batch) as f64 / o.train_words as f64;
    for (what, file, pick) in [
        ("training loss", "train_loss.png", 0),
        ("validation loss", "val_loss.png", 1),
        (
            "validation word accuracy (fixed batch)",
            "val_accuracy.png",
            2,
        ),
    ] {
        let series: Vec<Series> = outcomes
            .iter()
            .map(|o| Series {
                name: o.run.label(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| {
                        let y = [p.mean_loss, p.test_loss, p.test_score][pick];
                        (
                            epoch(o, p.step),
                            if pick < 2 { y.max(1e-4).log10() } else { y },
                        )
                    })
                    .collect(),
            })
            .collect();
        let y_label = if pick < 2 {
            format!("log10 {what}")
        } else {
            what.to_string()
        };
        warn_on_error(line_plot(
            &dir.join(file),
            &format!("Pig-Latin: {what}"),
            "epoch",
            &y_label,
            &series,
            false,
        ));
    }
    for o in outcomes {
        let tag = format!(
            "{}_d{}_{}{}",
            o.run.model.name(),
            o.run.hidden,
            o.run.data.name(),
            if o.run.model == Translator::Mamba {
                format!("_{}", o.run.disc.name())
            } else {
                String::new()
            }
        );
        for p in &o.probes {
            let letters: Vec<String> = p.english.chars().map(String::from).collect();
            match o.run.model {
                Translator::Transformer => {
                    let outputs: Vec<String> = p
                        .target
                        .chars()
                        .map(String::from)
                        .chain(["</s>".to_string()])
                        .collect();
                    warn_on_error(heatmap(
                        &dir.join(format!("cross_attention_{tag}_{}.png", p.english)),
                        &format!("{} → {}: cross-attention (last block)", p.english, p.target),
                        &outputs,
                        &letters,
                        &p.rows,
                    ));
                }
                Translator::Mamba => {
                    let n = p.english.len();
                    let series = vec![
                        Series {
                            name: "mean Δ, block 1 (x SOS y)".into(),
                            points: p.rows[0]
                                .iter()
                                .enumerate()
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                        Series {
                            name: "weight kept in the state at SOS".into(),
                            points: p.rows[1]
                                .iter()
                                .enumerate()
                                .take(n + 1)
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                    ];
                    warn_on_error(line_plot(
                        &dir.join(format!("mamba_state_{tag}_{}.png", p.english)),
                        &format!(
                            "{} → {}: Δ and state retention (positions 0..{} are the English letters, {} = SOS)",
                            p.english,
                            p.target,
                            n - 1,
                            n
                        ),
                        "position",
                        "value",
                        &series,
                        false,
                    ));
                }
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.jobs);
    let options = args.options().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let started = Instant::now();
    let outcomes = with_backend!(args.device.as_str(), |B, device| {
        pig_latin::<B>(&options, &device)
    });
    let outcomes = outcomes.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    plots(&options, &outcomes);
    common::print_report(&options.out_dir, started);
}
