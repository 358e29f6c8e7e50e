//! Seed 003, "Repeat After Me": copying and prefix/suffix n-gram lookup with transformers
//! (RoPE, NoPE, ALiBi, Hard-ALiBi), Mamba and an LSTM, on the CPU.
//!
//! ```sh
//! cargo run --release --example copying -- --quick            # seconds
//! cargo run --release --example copying -- --jobs 2           # the full comparison
//! cargo run --release --example copying -- --task copy --models T_rope,mamba --seeds 0,1,2
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `lengths.csv`, PNG plots (sample efficiency, exact match
//! against string length per task, Mamba state sizes) and `report.md` to `--out`
//! (default `results/copying`).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use common::copying::{CopyOutcome, CopyingOptions, copying, in_sweep};
use common::plot::{Series, line_plot};
use common::warn_on_error;
use seqlayers::data::CopyKind;
use seqlayers::model::CopyModel;

/// `MIN..MAX` (or a single number) as an inclusive range.
fn range(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a length range; write MIN..MAX, e.g. 5..20");
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim().trim_start_matches('=')),
        None => (s.trim(), s.trim()),
    };
    let lo: usize = lo.parse().map_err(|_| bad())?;
    let hi: usize = hi.parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(format!("`{s}`: need 1 ≤ MIN ≤ MAX"));
    }
    Ok((lo, hi))
}

/// Flags (every one optional).
#[derive(Parser, Debug)]
#[command(about = "Copying and n-gram lookup: transformers vs Mamba vs LSTM (seed 003)")]
struct Args {
    /// Comma-separated tasks: copy, prefix, suffix.
    #[arg(long = "task", value_delimiter = ',')]
    tasks: Vec<CopyKind>,
    /// Comma-separated models: T_rope, T_nope, T_alibi, T_hard_alibi, mamba, lstm.
    #[arg(long, value_delimiter = ',')]
    models: Vec<CopyModel>,
    /// Training string lengths, MIN..MAX.
    #[arg(long, value_parser = range)]
    train_len: Option<(usize, usize)>,
    /// Evaluated string lengths, MIN..MAX.
    #[arg(long, value_parser = range)]
    eval_len: Option<(usize, usize)>,
    /// Number of letters (≤ 26).
    #[arg(long)]
    vocab: Option<usize>,
    /// Key length of the lookup tasks.
    #[arg(long)]
    ngram: Option<usize>,
    /// Optimizer steps per training.
    #[arg(long)]
    steps: Option<usize>,
    /// Packed rows per step.
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Mamba state sizes of the sweep on `copy` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    state_sizes: Option<Vec<usize>>,
    /// Training lengths of the state-size sweep, `MIN..MAX`.
    #[arg(long, value_parser = range)]
    sweep_train_len: Option<(usize, usize)>,
    /// Evaluated lengths of the state-size sweep, `MIN..MAX`.
    #[arg(long, value_parser = range)]
    sweep_eval_len: Option<(usize, usize)>,
    /// Run only the Mamba state-size sweep (needs `copy` among the tasks and `mamba` among the
    /// models, as by default).
    #[arg(long, conflicts_with = "no_sweep")]
    sweep_only: bool,
    /// Skip the Mamba state-size sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Model width D of every model.
    #[arg(long)]
    d_model: Option<usize>,
    /// Attention heads of the transformers.
    #[arg(long)]
    heads: Option<usize>,
    /// Windowed heads of `T_hard_alibi` (head h sees the last h+1 tokens; the rest are NoPE).
    #[arg(long)]
    windowed_heads: Option<usize>,
    /// Mamba blocks.
    #[arg(long)]
    mamba_layers: Option<usize>,
    /// Packed training row length (raised to fit the longest example).
    #[arg(long)]
    context: Option<usize>,
    /// Examples per evaluated length.
    #[arg(long)]
    eval_samples: Option<usize>,
    /// Seed (shorthand for one seed).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Comma-separated seeds: mean and range over them.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
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
    fn options(&self) -> CopyingOptions {
        let mut o = CopyingOptions::default();
        if self.quick {
            o = o.quick();
        }
        if !self.tasks.is_empty() {
            o.tasks = self.tasks.clone();
        }
        if !self.models.is_empty() {
            o.models = self.models.clone();
        }
        o.train_len = self.train_len.unwrap_or(o.train_len);
        o.eval_len = self.eval_len.unwrap_or(o.eval_len);
        o.letters = self.vocab.unwrap_or(o.letters);
        o.ngram = self.ngram.unwrap_or(o.ngram);
        o.steps = self.steps.unwrap_or(o.steps);
        o.batch = self.batch.unwrap_or(o.batch);
        o.lr = self.lr.unwrap_or(o.lr);
        o.eval_samples = self.eval_samples.unwrap_or(o.eval_samples);
        if let Some(sizes) = &self.state_sizes {
            o.state_sizes = sizes.clone();
        }
        o.sweep_train_len = self.sweep_train_len.unwrap_or(o.sweep_train_len);
        o.sweep_eval_len = self.sweep_eval_len.unwrap_or(o.sweep_eval_len);
        o.sweep_only = self.sweep_only;
        if self.no_sweep {
            o.state_sizes.clear();
        }
        if let Some(d) = self.d_model {
            o.size.d_model = d;
        }
        if let Some(h) = self.heads {
            o.size.n_heads = h;
        }
        if let Some(w) = self.windowed_heads {
            o.size.windowed_heads = w;
        }
        if let Some(l) = self.mamba_layers {
            o.size.mamba_layers = l;
        }
        o.context = self.context.unwrap_or(o.context);
        if let Some(seed) = self.seed {
            o.seeds = vec![seed];
        } else if !self.seeds.is_empty() {
            o.seeds = self.seeds.clone();
        }
        o.jobs = self.jobs;
        // The longest example must fit a packed row.
        let longest = o
            .task(CopyKind::PrefixNgram)
            .example_len(o.train_len.1)
            .max(2 * o.train_len.1 + 3);
        o.context = o.context.max(longest);
        o.out_dir = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("results/copying"));
        o
    }
}

fn plots(options: &CopyingOptions, outcomes: &[CopyOutcome]) {
    let dir = &options.out_dir;
    let seed = options.seeds[0];
    for &kind in &options.tasks {
        let group: Vec<&CopyOutcome> = outcomes
            .iter()
            .filter(|o| !o.run.sweep && o.run.task.kind == kind && o.run.train.seed == seed)
            .collect();
        let curves: Vec<Series> = group
            .iter()
            .map(|o| Series {
                name: o.run.model.to_string(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| (p.step as f64 * o.examples_per_step, p.test_score))
                    .collect(),
            })
            .collect();
        warn_on_error(line_plot(
            &dir.join(format!("sample_efficiency_{kind}.png")),
            &format!("{kind}: exact match at training lengths vs examples seen (seed {seed})"),
            "training examples seen",
            "string exact match",
            &curves,
            true,
        ));
        let lengths: Vec<Series> = group
            .iter()
            .map(|o| Series {
                name: o.run.model.to_string(),
                points: o.lengths.iter().map(|l| (l.len as f64, l.exact)).collect(),
            })
            .collect();
        warn_on_error(line_plot(
            &dir.join(format!("length_{kind}.png")),
            &format!(
                "{kind}: exact match vs string length (trained on {}–{})",
                options.train_len.0, options.train_len.1
            ),
            "string length",
            "string exact match",
            &lengths,
            true,
        ));
    }
    let sweep: Vec<Series> = outcomes
        .iter()
        .filter(|o| in_sweep(o) && o.run.train.seed == seed)
        .map(|o| Series {
            name: format!("N = {}", o.run.size.d_state),
            points: o.lengths.iter().map(|l| (l.len as f64, l.exact)).collect(),
        })
        .collect();
    if sweep.len() > 1 {
        warn_on_error(line_plot(
            &dir.join("state_size.png"),
            "copy: Mamba exact match vs string length for several state sizes N",
            "string length",
            "string exact match",
            &sweep,
            true,
        ));
    }
}

fn main() {
    let args = Args::parse();
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.jobs);
    let options = args.options();
    let started = Instant::now();
    let outcomes = with_backend!(args.device.as_str(), |B, device| {
        copying::<B>(&options, &device)
    });
    let outcomes = outcomes.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    plots(&options, &outcomes);
    common::print_report(&options.out_dir, started);
}
