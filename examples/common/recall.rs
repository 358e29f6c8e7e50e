//! One end-to-end recall experiment (train a named model on a task, then evaluate it at every
//! length), and CSV output of many such runs. The examples `induction_head` and
//! `associative_recall` are thin command-line wrappers around [`run_recall`].

use std::fmt::Write as _;
use std::time::Instant;

use seqlayers::Result;
use seqlayers::backend::Cpu;
use seqlayers::burn::module::{AutodiffModule, Module};
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::ensure_nonzero;
use seqlayers::model::ClassifierConfig;
use seqlayers::presets::RecallModel;
use seqlayers::stack::StackConfig;
use seqlayers::train::{LengthScore, TrainConfig, TrainReport, evaluate_lengths};

use super::parallel::init_locked;
use super::progress::Progress;

/// Everything that defines one training + evaluation run.
#[derive(Debug, Clone)]
pub struct RecallRun {
    /// Model to train.
    pub model: RecallModel,
    /// Task parameters `(K, d, M, L, τ)`.
    pub task: RecallConfig,
    /// Optimizer, budget, early stop, data seed.
    pub train: TrainConfig,
    /// Sequence lengths to evaluate after training.
    pub eval_lengths: Vec<usize>,
    /// Sequences per evaluated length.
    pub eval_samples: usize,
    /// Minibatch size of the evaluation.
    pub eval_batch: usize,
    /// Attention heads of attention layers.
    pub n_heads: usize,
    /// Seed of the model's initialization.
    pub model_seed: u64,
    /// Name shown by the progress display.
    pub name: String,
    /// Show progress on stderr (see [`Progress`]).
    pub progress: bool,
}

impl RecallRun {
    /// Lengths `τ+2 ..= max_len`, every one of them.
    pub fn every_length(task: &RecallConfig, max_len: usize) -> Vec<usize> {
        (task.min_len()..=max_len.max(task.min_len())).collect()
    }
}

/// The result of a [`RecallRun`].
#[derive(Debug, Clone)]
pub struct RecallOutcome {
    /// The run that produced it.
    pub run: RecallRun,
    /// Training curve and timing.
    pub report: TrainReport,
    /// Accuracy per evaluated length.
    pub lengths: Vec<LengthScore>,
    /// Trainable parameters of the model.
    pub params: usize,
    /// Wall time of training and evaluation, seconds.
    pub wall_s: f64,
}

impl RecallOutcome {
    /// The name of this run's plot series: the model, plus the seed when there are several.
    pub fn series_name(&self, several_seeds: bool) -> String {
        if several_seeds {
            format!("{} (seed {})", self.run.model, self.run.train.seed)
        } else {
            self.run.model.to_string()
        }
    }

    /// Accuracy at length `len`, if it was evaluated.
    pub fn accuracy_at(&self, len: usize) -> Option<f64> {
        self.lengths.iter().find(|l| l.len == len).map(|l| l.score)
    }
    /// Mean accuracy over the evaluated lengths in `range`.
    pub fn mean_accuracy(&self, range: std::ops::RangeInclusive<usize>) -> Option<f64> {
        let picked: Vec<f64> = self
            .lengths
            .iter()
            .filter(|l| range.contains(&l.len))
            .map(|l| l.score)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    }
    /// Label of the run for tables and legends, e.g. `mamba M=4 τ=1 d=8`.
    pub fn label(&self) -> String {
        let t = &self.run.task;
        format!(
            "{} M={} τ={} d={}",
            self.run.model, t.n_queries, t.delay, t.dim
        )
    }
}

/// The model's stack: its positional table covers the longest evaluated length.
fn stack_config(run: &RecallRun) -> StackConfig {
    let max_len = run
        .eval_lengths
        .iter()
        .copied()
        .max()
        .unwrap_or(run.task.train_len)
        .max(run.task.train_len);
    run.model
        .stack_config(run.task.dim, max_len)
        .with_n_heads(run.n_heads)
}

/// Checks `run` without training it: the training and evaluation budget, the task, and that
/// the model can be built (heads that divide `d`, …), so a bad flag fails before any training.
pub fn check_run(run: &RecallRun) -> Result<()> {
    run.train.validate()?;
    ensure_nonzero(
        "eval_samples (sequences per evaluated length)",
        run.eval_samples,
    )?;
    ensure_nonzero("eval_batch", run.eval_batch)?;
    let task = AssociativeRecall::new(run.task.clone())?;
    let device = Default::default();
    let config = ClassifierConfig::new(stack_config(run), run.task.vocab);
    init_locked(|| config.try_init::<Cpu>(task.embedding(&device), &device))?;
    Ok(())
}

/// Trains `run.model` on `run.task` and evaluates it at `run.eval_lengths`.
pub fn run_recall<B: AutodiffBackend>(
    run: &RecallRun,
    device: &B::Device,
) -> Result<RecallOutcome>
where
{
    let started = Instant::now();
    let task = AssociativeRecall::new(run.task.clone())?;
    let stack = stack_config(run);
    // Seeding and the whole initialization (`try_init` draws every parameter) under the lock.
    let model = init_locked(|| {
        B::seed(device, run.model_seed);
        ClassifierConfig::new(stack, run.task.vocab).try_init::<B>(task.embedding(device), device)
    })?;
    let params = model.num_params();
    let mut progress = Progress::new(&run.name, run.train.steps, run.progress);
    let (model, report) = super::driver::fit(model, &task, &run.train, device, &mut progress)?;
    let lengths = evaluate_lengths(
        &model.valid(),
        &task,
        &run.eval_lengths,
        run.eval_samples,
        run.eval_batch,
        run.train.seed.wrapping_add(1),
        device,
    )?;
    Ok(RecallOutcome {
        run: run.clone(),
        report,
        lengths,
        params,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// `summary.csv`, `curves.csv` and `lengths.csv` of `outcomes`.
pub fn csv_files(outcomes: &[RecallOutcome]) -> Vec<(&'static str, String)> {
    let mut summary = String::from(
        "model,M,tau,d,seed,L,params,steps_run,stop,converged_at,ms_per_step,wall_s,acc_at_L,acc_at_2L,acc_at_3L\n",
    );
    let mut curves = String::from("model,M,tau,d,seed,step,loss,test_accuracy\n");
    let mut lengths = String::from("model,M,tau,d,seed,len,accuracy,samples\n");
    for o in outcomes {
        let t = &o.run.task;
        let key = format!(
            "{},{},{},{},{}",
            o.run.model, t.n_queries, t.delay, t.dim, o.run.train.seed
        );
        let at = |n: usize| {
            o.accuracy_at(n)
                .map_or(String::new(), |a| format!("{a:.4}"))
        };
        let _ = writeln!(
            summary,
            "{key},{},{},{},{},{},{:.2},{:.1},{},{},{}",
            t.train_len,
            o.params,
            o.report.steps_run,
            o.report.stop,
            o.report
                .converged_at
                .map_or(String::new(), |s| s.to_string()),
            o.report.ms_per_step,
            o.wall_s,
            at(t.train_len),
            at(2 * t.train_len),
            at(3 * t.train_len),
        );
        for p in &o.report.curve {
            let _ = writeln!(curves, "{key},{},{:.5},{:.4}", p.step, p.loss, p.test_score);
        }
        for l in &o.lengths {
            let _ = writeln!(lengths, "{key},{},{:.4},{}", l.len, l.score, l.samples);
        }
    }
    vec![
        ("summary.csv", summary),
        ("curves.csv", curves),
        ("lengths.csv", lengths),
    ]
}
