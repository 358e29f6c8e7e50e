//! Command-line flags shared by the recall examples.

use std::path::PathBuf;

use super::experiments::ExperimentOptions;
use clap::Parser;
use seqlayers::model::ModelKind;

/// Flags of the recall examples (every one optional).
#[derive(Parser, Debug)]
pub struct RecallArgs {
    /// Output directory for CSV files, PNG plots and report.md.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tiny budget (L = 16, 20 steps, 4 evaluated lengths) that finishes in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Seed of data, embedding and initialization.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Several seeds (comma-separated): every run once per seed, reported as mean and range.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Stop a run once its test-batch accuracy has not improved by 0.5 points for this many
    /// steps (besides the early stop at 99% and the step budget).
    #[arg(long)]
    pub plateau_steps: Option<usize>,
    /// No plateau stop before this step (recall runs can sit at chance for thousands of steps
    /// before they rise).
    #[arg(long, default_value_t = 0)]
    pub plateau_after: usize,
    /// Comma-separated models (transformer-learned, transformer-rope, transformer-nope, mamba,
    /// hybrid-a, hybrid-b, lstm).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<ModelKind>,
    /// Comma-separated query-set sizes M.
    #[arg(long = "m", value_delimiter = ',')]
    pub n_queries: Vec<usize>,
    /// Comma-separated delays τ.
    #[arg(long = "tau", value_delimiter = ',')]
    pub delays: Vec<usize>,
    /// Comma-separated embedding widths d.
    #[arg(long = "d", value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// Training length L.
    #[arg(long = "len")]
    pub train_len: Option<usize>,
    /// Maximum optimizer steps per model.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Minibatch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Longest evaluated length (default 3L), e.g. 4096 to compare with the Mamba paper.
    #[arg(long)]
    pub eval_max: Option<usize>,
    /// Sequences per evaluated length.
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Evaluate the convergence curve every this many steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Trainings run at the same time, one thread each; above 1 the kernels and matrix products
    /// of each run one thread (results are bit-identical for any value; ms/step then includes
    /// the contention between them).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// associative_recall only: run just these problems (comma-separated, 2 and/or 3).
    #[arg(long, value_delimiter = ',')]
    pub problem: Vec<usize>,
    /// Backend: `cpu` (default) or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl RecallArgs {
    /// Experiment options from the flags, starting at the library defaults.
    pub fn options(&self, default_out: &str) -> ExperimentOptions {
        let mut o = ExperimentOptions::default();
        if self.quick {
            o = o.quick();
        }
        o.out_dir = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(default_out));
        o.seeds = if self.seeds.is_empty() {
            vec![self.seed]
        } else {
            self.seeds.clone()
        };
        o.plateau_steps = self.plateau_steps;
        o.plateau_after = self.plateau_after;
        o.problems = self.problem.clone();
        o.models = self.models.clone();
        o.n_queries = self.n_queries.clone();
        o.delays = self.delays.clone();
        o.dims = self.dims.clone();
        if let Some(v) = self.train_len {
            o.train_len = v;
        }
        if let Some(v) = self.steps {
            o.steps = v;
        }
        if let Some(v) = self.lr {
            o.lr = v;
        }
        if let Some(v) = self.batch {
            o.batch_size = v;
        }
        o.eval_max_len = self.eval_max.or(o.eval_max_len);
        if let Some(v) = self.eval_samples {
            o.eval_samples = v;
        }
        if let Some(v) = self.heads {
            o.n_heads = v;
        }
        if let Some(v) = self.eval_every {
            o.eval_every = v;
        }
        o.jobs = self.jobs;
        o
    }
}
