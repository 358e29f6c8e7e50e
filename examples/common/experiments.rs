//! The options shared by the homework experiments of seeds 000/001, and running many trainings.
//!
//! The examples `induction_head` and `associative_recall` parse flags into an
//! [`ExperimentOptions`] and run the `Experiment`s of the sibling modules of those names through
//! the shared driver; the integration tests call the same entry points with
//! [`ExperimentOptions::quick`].

use std::path::{Path, PathBuf};

use seqlayers::burn::tensor::backend::AutodiffBackend;

use seqlayers::data::RecallConfig;
use seqlayers::ensure_nonzero;
use seqlayers::presets::RecallModel;
use seqlayers::train::{EarlyStop, PlateauStop, TrainConfig};
use seqlayers::{Result, SeqError};

use super::cli::{CliError, RecallArgs};
use super::parallel::run_parallel;
use super::recall::{RecallOutcome, RecallRun, check_run, run_recall};

/// Settings shared by the experiments (each has its defaults; flags override them).
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Directory for CSV files, plots and `report.md`.
    pub out_dir: PathBuf,
    /// Models to train (empty: the experiment's own list).
    pub models: Vec<RecallModel>,
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
    /// Seeds of data, embedding and initialization: every run is repeated once per seed.
    pub seeds: Vec<u64>,
    /// Stop a run whose test-batch accuracy has not improved by 0.5 points for this many steps
    /// (`None`: only the early stop and the step budget end a run).
    pub plateau_steps: Option<usize>,
    /// No plateau stop before this step (runs often sit at chance before a sudden rise).
    pub plateau_after: usize,
    /// Show progress bars.
    pub progress: bool,
    /// Evaluate only a few lengths (τ+2, L, 2L, 3L) instead of every one.
    pub sparse_eval: bool,
    /// Runs trained at the same time, each in its own thread (1: one after another). Results
    /// are bit-identical whatever it is (the kernels reduce in a fixed order); the reported
    /// ms/step of concurrent runs includes their contention.
    pub jobs: usize,
    /// Which problems of an experiment with several (associative recall: 2 and 3) to run;
    /// empty: all of them.
    pub problems: Vec<usize>,
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
            seeds: vec![0],
            plateau_steps: None,
            plateau_after: 0,
            progress: true,
            sparse_eval: false,
            jobs: 1,
            problems: Vec::new(),
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
             every {} steps{}), seed{} {}. Accuracy is measured after training on {} fresh sequences at \
             each length from τ + 2 to {}.",
            self.train_len,
            self.batch_size,
            self.lr,
            self.steps,
            self.eval_every,
            self.plateau_steps.map_or(String::new(), |p| format!(
                "; plateau stop once it has not improved by 0.5 points for {p} steps{}",
                if self.plateau_after > 0 {
                    format!(", not before step {}", self.plateau_after)
                } else {
                    String::new()
                }
            )),
            if self.seeds.len() > 1 { "s" } else { "" },
            self.seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.eval_samples,
            self.eval_max_len
                .map_or("3L".to_string(), |m| m.to_string()),
        )
    }

    /// The recall task with `M = n_queries`, width `dim` and delay `delay`, and the options'
    /// vocabulary and training length (each run sets its seed, which also seeds the embedding).
    pub(super) fn task(&self, n_queries: usize, dim: usize, delay: usize) -> RecallConfig {
        RecallConfig::new(n_queries)
            .with_vocab(self.vocab)
            .with_dim(dim)
            .with_train_len(self.train_len)
            .with_delay(delay)
    }

    /// One run of `model` on `task` per seed.
    pub(super) fn runs_for(&self, model: RecallModel, task: RecallConfig) -> Vec<RecallRun> {
        self.seeds
            .iter()
            .map(|&seed| self.run_for(model, task.clone().with_embedding_seed(seed), seed))
            .collect()
    }

    fn run_for(&self, model: RecallModel, task: RecallConfig, seed: u64) -> RecallRun {
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
                    target: 0.99,
                    patience: 4,
                }),
                plateau_stop: self.plateau_steps.map(|steps| PlateauStop {
                    patience: steps.div_ceil(self.eval_every).max(1),
                    min_delta: 0.005,
                    min_steps: self.plateau_after,
                }),
                seed,
                ..TrainConfig::default()
            },
            name: {
                let name = format!(
                    "{model} M={} τ={} d={}",
                    task.n_queries, task.delay, task.dim
                );
                if self.seeds.len() > 1 {
                    format!("{name} seed {seed}")
                } else {
                    name
                }
            },
            progress: self.progress,
            eval_lengths,
            eval_samples: self.eval_samples,
            eval_batch: 256,
            n_heads: self.n_heads,
            model_seed: seed,
            task,
        }
    }
}

/// Checks every run before the first one trains (see [`check_run`]), so a bad flag fails at
/// once.
pub fn check_runs(runs: &[RecallRun], jobs: usize) -> Result<()> {
    ensure_nonzero("jobs (trainings at once; use 1 or more)", jobs)?;
    if runs.is_empty() {
        return Err(SeqError::InvalidConfig(
            "nothing to run: give at least one seed and one model".into(),
        ));
    }
    runs.iter().try_for_each(check_run)
}

/// Runs every run, `jobs` at a time (heaviest first), printing one line per finished run, and
/// returns the outcomes in the order of `runs`.
pub fn run_all<B: AutodiffBackend>(
    runs: &[RecallRun],
    device: &B::Device,
    jobs: usize,
) -> Result<Vec<RecallOutcome>> {
    check_runs(runs, jobs)?;
    let cost = |r: &RecallRun| r.task.dim * r.task.dim * r.task.train_len * r.train.steps;
    run_parallel(
        runs,
        jobs,
        cost,
        |run| run_recall::<B>(run, device),
        |k, total, o: &RecallOutcome| {
            let l = o.run.task.train_len;
            eprintln!(
                "[{k}/{total}] {:<45} steps {:>5}  {:>6.1} ms/step  acc@L {:>5.1}%  acc@max {:>5.1}%  ({:.0} s)",
                o.run.name,
                o.report.steps_run,
                o.report.ms_per_step,
                100.0 * o.accuracy_at(l).unwrap_or(f64::NAN),
                100.0 * o.lengths.last().map_or(f64::NAN, |x| x.score),
                o.wall_s,
            );
        },
    )
}

/// The options of a recall example's command line, checked: every flag value, then every run
/// of `runs` (task, budget, model) before any training starts.
pub fn recall_options(
    args: &RecallArgs,
    example: &str,
    runs: fn(&ExperimentOptions) -> Vec<RecallRun>,
) -> std::result::Result<ExperimentOptions, CliError> {
    let options = args.checked_options(example)?;
    check_runs(&runs(&options), options.jobs)?;
    Ok(options)
}

/// Creates the output folder (and checks that it can be written) before any training starts.
pub fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SeqError::write(dir, e))?;
    let probe = dir.join(".seqlayers-write-test");
    std::fs::write(&probe, b"").map_err(|e| SeqError::write(dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| SeqError::write(&probe, e))
}

/// Writes each `(file name, text)` into `dir`, naming the path that fails.
pub fn write_files<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, String)>,
) -> Result<()> {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| SeqError::write(&path, e))?;
    }
    Ok(())
}
