//! The homework experiments of seeds 000/001, as library entry points.
//!
//! The examples `induction_head` and `associative_recall` parse flags into an
//! [`ExperimentOptions`], call [`induction_head`] or [`associative_recall`], and draw plots from
//! the returned [`RecallOutcome`]s; the integration tests call the same functions with
//! [`ExperimentOptions::quick`].

mod associative_recall;
mod induction_head;

pub use associative_recall::{associative_recall, associative_recall_runs};
pub use induction_head::{induction_head, induction_head_runs};

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;

use crate::classifier::ModelKind;
use crate::data::RecallConfig;
use crate::error::Result;
use crate::ssm::SsmBackend;
use crate::train::{EarlyStop, RecallOutcome, RecallRun, TrainConfig, run_recall, write_csv};

/// Settings shared by the experiments (each has its defaults; flags override them).
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Directory for CSV files, plots and `report.md`.
    pub out_dir: PathBuf,
    /// Models to train (empty: the experiment's own list).
    pub models: Vec<ModelKind>,
    /// Vocabulary size `K`.
    pub vocab: usize,
    /// Embedding width `d` (empty list: the experiment's own).
    pub dims: Vec<usize>,
    /// Training length `L`.
    pub train_len: usize,
    /// Delays `τ` (empty: the experiment's own).
    pub delays: Vec<usize>,
    /// Query-set sizes `M` (empty: the experiment's own).
    pub n_queries: Vec<usize>,
    /// Maximum optimizer steps per model.
    pub steps: usize,
    /// Learning rate.
    pub lr: f64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Evaluate the convergence curve every this many steps.
    pub eval_every: usize,
    /// Longest evaluated length (default 3L).
    pub eval_max_len: Option<usize>,
    /// Sequences per evaluated length.
    pub eval_samples: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Seed of data and initialization.
    pub seed: u64,
    /// Show progress bars.
    pub progress: bool,
    /// Evaluate only a few lengths (τ+2, L, 2L, 3L) instead of every one.
    pub sparse_eval: bool,
}

impl Default for ExperimentOptions {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("results"),
            models: Vec::new(),
            vocab: 16,
            dims: Vec::new(),
            train_len: 64,
            delays: Vec::new(),
            n_queries: Vec::new(),
            steps: 2000,
            lr: 3e-3,
            batch_size: 64,
            eval_every: 25,
            eval_max_len: None,
            eval_samples: 256,
            n_heads: 1,
            seed: 0,
            progress: true,
            sparse_eval: false,
        }
    }
}

impl ExperimentOptions {
    /// A tiny budget for smoke tests: L = 16, 20 steps, a few evaluated lengths.
    pub fn quick(mut self) -> Self {
        self.train_len = 16;
        self.steps = 20;
        self.eval_every = 10;
        self.eval_samples = 32;
        self.sparse_eval = true;
        self
    }

    /// One sentence describing the training and evaluation budget, for reports.
    pub fn training_setting(&self) -> String {
        format!(
            "training length L = {}, batch size {}, Adam lr {}, at most {} steps (early stop once the \
             accuracy on a fixed test batch of 256 sequences stays ≥ 99% for 4 evaluations, evaluated \
             every {} steps), seed {}. Accuracy is measured after training on {} fresh sequences at \
             each length from τ + 2 to {}.",
            self.train_len,
            self.batch_size,
            self.lr,
            self.steps,
            self.eval_every,
            self.seed,
            self.eval_samples,
            self.eval_max_len
                .map_or("3L".to_string(), |m| m.to_string()),
        )
    }

    fn runs_for(&self, model: ModelKind, task: RecallConfig) -> RecallRun {
        let max_len = self.eval_max_len.unwrap_or(3 * task.train_len);
        let eval_lengths = if self.sparse_eval {
            let mut v = vec![task.min_len(), task.train_len, 2 * task.train_len, max_len];
            v.sort_unstable();
            v.dedup();
            v
        } else {
            RecallRun::every_length(&task, max_len)
        };
        RecallRun {
            model,
            train: TrainConfig {
                steps: self.steps,
                batch_size: self.batch_size,
                lr: self.lr,
                eval_every: self.eval_every,
                early_stop: Some(EarlyStop {
                    accuracy: 0.99,
                    patience: 4,
                }),
                seed: self.seed,
                progress: self.progress,
                ..TrainConfig::default()
            },
            eval_lengths,
            eval_samples: self.eval_samples,
            eval_batch: 256,
            n_heads: self.n_heads,
            model_seed: self.seed,
            task,
        }
    }
}

/// Runs every run in order, printing one line per finished run.
pub fn run_all<B: AutodiffBackend + SsmBackend>(
    runs: &[RecallRun],
    device: &B::Device,
) -> Result<Vec<RecallOutcome>>
where
    B::InnerBackend: SsmBackend,
{
    let mut outcomes = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let outcome = run_recall::<B>(run, device)?;
        let l = run.task.train_len;
        eprintln!(
            "[{}/{}] {:<38} steps {:>5}  {:>6.1} ms/step  acc@L {:>5.1}%  acc@3L {:>5.1}%  ({:.0} s)",
            i + 1,
            runs.len(),
            outcome.label(),
            outcome.report.steps_run,
            outcome.report.ms_per_step,
            100.0 * outcome.accuracy_at(l).unwrap_or(f64::NAN),
            100.0 * outcome.lengths.last().map_or(f64::NAN, |x| x.accuracy),
            outcome.wall_s,
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Writes the CSV files and `report.md` into `dir`.
pub fn write_outputs(dir: &Path, outcomes: &[RecallOutcome], report: &str) -> Result<()> {
    write_csv(outcomes, dir)?;
    std::fs::write(dir.join("report.md"), report)?;
    Ok(())
}
