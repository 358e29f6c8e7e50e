//! Minibatch training with a convergence curve and early stopping.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Classifier, accuracy};
use crate::data::AssociativeRecall;
use crate::error::{Result, SeqError, ensure_nonzero};

/// Which optimizer to train with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Adam (no weight decay).
    Adam,
    /// AdamW with decoupled weight decay.
    AdamW {
        /// Decoupled weight-decay coefficient.
        weight_decay: f32,
    },
}

/// Stop once the test-batch accuracy stays at or above `accuracy` for `patience` evaluations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStop {
    /// Accuracy threshold in `[0, 1]`.
    pub accuracy: f64,
    /// Consecutive evaluations that must reach it.
    pub patience: usize,
}

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Maximum number of optimizer steps.
    pub steps: usize,
    /// Sequences per minibatch.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Evaluate on the fixed test batch every this many steps (the convergence curve).
    pub eval_every: usize,
    /// Size of the fixed test batch.
    pub test_batch: usize,
    /// Optional early stop.
    pub early_stop: Option<EarlyStop>,
    /// Seed of the training stream and of the test batch.
    pub seed: u64,
    /// Report progress on stderr: a bar on a terminal (several runs in parallel threads get one
    /// bar each), otherwise a plain line every tenth of the budget (logs, CI).
    pub progress: bool,
    /// Name shown in front of the progress bar or lines (e.g. the model and task).
    pub name: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            eval_every: 25,
            test_batch: 256,
            early_stop: Some(EarlyStop {
                accuracy: 0.99,
                patience: 4,
            }),
            seed: 0,
            progress: true,
            name: String::new(),
        }
    }
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        ensure_nonzero("steps", self.steps)?;
        ensure_nonzero("batch_size", self.batch_size)?;
        ensure_nonzero("eval_every", self.eval_every)?;
        ensure_nonzero("test_batch", self.test_batch)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(SeqError::OutOfRange {
                name: "lr",
                value: self.lr,
                expected: "a finite value > 0",
            });
        }
        if let Some(stop) = self.early_stop {
            if !(0.0..=1.0).contains(&stop.accuracy) {
                return Err(SeqError::OutOfRange {
                    name: "early_stop.accuracy",
                    value: stop.accuracy,
                    expected: "a fraction in [0, 1]",
                });
            }
            ensure_nonzero("early_stop.patience", stop.patience)?;
        }
        Ok(())
    }
}

/// One point of the convergence curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Training loss of the last minibatch.
    pub loss: f64,
    /// Accuracy on the fixed test batch.
    pub test_accuracy: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Test-batch accuracy against steps (first point at step 0, before training).
    pub curve: Vec<CurvePoint>,
    /// Steps actually run.
    pub steps_run: usize,
    /// First step at which the early-stop threshold was reached, if it was.
    pub converged_at: Option<usize>,
    /// Mean wall time of one optimizer step (forward, backward, update), evaluation excluded.
    pub ms_per_step: f64,
}

/// Trains `model` on `task` at its training length and returns the trained model with a report.
///
/// The training stream and the fixed test batch are drawn from `config.seed`, so two runs with
/// the same seed and model initialization are identical. A NaN or infinite loss stops the run
/// with [`SeqError::Diverged`].
pub fn train<B, M>(
    mut model: M,
    task: &AssociativeRecall,
    config: &TrainConfig,
    device: &B::Device,
) -> Result<(M, TrainReport)>
where
    B: AutodiffBackend,
    M: Classifier<B> + AutodiffModule<B>,
    M::InnerModule: Classifier<B::InnerBackend>,
{
    config.validate()?;
    let len = task.config().train_len;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut test_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x7E57));
    let test_batch = task.sample(&mut test_rng, config.test_batch, len)?;
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut optimizer: Box<dyn FnMut(M, GradientsParams) -> M> = match config.optimizer {
        OptimizerKind::Adam => {
            let mut optim = AdamConfig::new().init::<B, M>();
            let lr = config.lr;
            Box::new(move |m, g| optim.step(lr, m, g))
        }
        OptimizerKind::AdamW { weight_decay } => {
            let mut optim = AdamWConfig::new()
                .with_weight_decay(weight_decay)
                .init::<B, M>();
            let lr = config.lr;
            Box::new(move |m, g| optim.step(lr, m, g))
        }
    };

    let progress = Progress::new(config);

    let inner_device = device.clone();
    let evaluate =
        |model: &M| accuracy::<B::InnerBackend, _>(&model.valid(), &test_batch, &inner_device);
    let mut curve = vec![CurvePoint {
        step: 0,
        loss: f64::NAN,
        test_accuracy: evaluate(&model),
    }];
    let mut streak = 0;
    let mut converged_at = None;
    let mut train_time = 0.0;
    let mut steps_run = 0;

    for step in 1..=config.steps {
        let batch = task.sample(&mut rng, config.batch_size, len)?;
        let started = Instant::now();
        let (tokens, labels) = batch.to_tensors::<B>(device);
        let logits = model.logits(tokens); // [batch, K]
        let loss = loss_fn.forward(logits, labels); // [1]
        let loss_value: f64 = loss.clone().into_scalar().elem();
        if !loss_value.is_finite() {
            progress.abandon(&format!("diverged at step {step}"));
            return Err(SeqError::Diverged {
                step,
                loss: loss_value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer(model, grads);
        train_time += started.elapsed().as_secs_f64();
        steps_run = step;
        progress.bar.inc(1);

        if step % config.eval_every == 0 || step == config.steps {
            let test_accuracy = evaluate(&model);
            curve.push(CurvePoint {
                step,
                loss: loss_value,
                test_accuracy,
            });
            progress.update(step, loss_value, test_accuracy);
            if let Some(stop) = config.early_stop {
                if test_accuracy >= stop.accuracy {
                    streak += 1;
                    converged_at.get_or_insert(step);
                    if streak >= stop.patience {
                        break;
                    }
                } else {
                    streak = 0;
                    converged_at = None;
                }
            }
        }
    }
    progress.finish();
    let ms_per_step = 1e3 * train_time / steps_run.max(1) as f64;
    Ok((
        model,
        TrainReport {
            curve,
            steps_run,
            converged_at,
            ms_per_step,
        },
    ))
}

/// Progress of one run: a bar in a shared [`MultiProgress`] on a terminal, plain lines otherwise.
struct Progress {
    bar: ProgressBar,
    /// Print a line every this many steps (0: never), when stderr is not a terminal.
    line_every: usize,
    /// Step at or after which the next line is printed.
    next_line: std::cell::Cell<usize>,
    name: String,
    steps: usize,
}

impl Progress {
    fn new(config: &TrainConfig) -> Self {
        static BARS: OnceLock<MultiProgress> = OnceLock::new();
        let terminal = std::io::stderr().is_terminal();
        let bar = if config.progress && terminal {
            BARS.get_or_init(MultiProgress::new)
                .add(ProgressBar::new(config.steps as u64))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("static template"),
        );
        bar.set_prefix(config.name.clone());
        let line_every = if config.progress && !terminal {
            config.steps.div_ceil(10).max(1)
        } else {
            0
        };
        Self {
            bar,
            line_every,
            next_line: std::cell::Cell::new(line_every),
            name: config.name.clone(),
            steps: config.steps,
        }
    }

    fn update(&self, step: usize, loss: f64, test_accuracy: f64) {
        self.bar
            .set_message(format!("loss {loss:.3} test acc {test_accuracy:.3}"));
        if self.line_every > 0 && step >= self.next_line.get() {
            self.next_line.set(step + self.line_every);
            eprintln!(
                "{} step {step}/{}: loss {loss:.3}, test acc {test_accuracy:.3}",
                self.name, self.steps
            );
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn abandon(&self, message: &str) {
        if self.line_every > 0 {
            eprintln!("{} {message}", self.name);
        }
        self.bar.abandon_with_message(message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuAutodiff;
    use crate::data::RecallConfig;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};

    /// Bag-of-tokens probe: mean one-hot of the tokens → linear. Cheap and differentiable.
    #[derive(Module, Debug)]
    struct Probe<B: Backend> {
        linear: Linear<B>,
        scale: Param<Tensor<B, 1>>,
    }

    impl<B: Backend> Classifier<B> for Probe<B> {
        fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
            let [batch, len] = tokens.dims();
            let one_hot = tokens.reshape([batch * len]).one_hot::<2>(16).float(); // [B·L, K]
            let bag = one_hot
                .reshape([batch, len, 16])
                .mean_dim(1)
                .reshape([batch, 16]); // [B, K]
            self.linear.forward(bag) * self.scale.val().unsqueeze()
        }
    }

    fn probe(device: &crate::backend::CpuDevice) -> Probe<CpuAutodiff> {
        CpuAutodiff::seed(device, 1);
        Probe {
            linear: LinearConfig::new(16, 16).init(device),
            scale: Param::from_tensor(Tensor::ones([1], device)),
        }
    }

    fn task() -> AssociativeRecall {
        AssociativeRecall::new(RecallConfig::new(1).with_train_len(12)).unwrap()
    }

    fn quiet(steps: usize) -> TrainConfig {
        TrainConfig {
            steps,
            eval_every: 5,
            test_batch: 64,
            progress: false,
            early_stop: None,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn same_seed_gives_the_same_run() {
        let device = Default::default();
        let (_, a) = train(probe(&device), &task(), &quiet(10), &device).unwrap();
        let (_, b) = train(probe(&device), &task(), &quiet(10), &device).unwrap();
        let (_, c) = train(
            probe(&device),
            &task(),
            &TrainConfig {
                seed: 9,
                ..quiet(10)
            },
            &device,
        )
        .unwrap();
        let losses = |r: &TrainReport| r.curve.iter().map(|p| p.loss).collect::<Vec<_>>();
        assert_eq!(a.curve.len(), 3); // steps 0, 5, 10
        assert_eq!(losses(&a)[1..], losses(&b)[1..]);
        assert_ne!(losses(&a)[1..], losses(&c)[1..]);
        assert_eq!(a.steps_run, 10);
    }

    #[test]
    fn training_lowers_the_loss_on_a_learnable_signal() {
        // The bag of tokens reveals which tokens are present; the label (the value token) is
        // always present, so the probe beats chance (1/15) clearly.
        let device = Default::default();
        let config = TrainConfig {
            lr: 3e-2,
            ..quiet(150)
        };
        let (_, report) = train(probe(&device), &task(), &config, &device).unwrap();
        let first = report.curve[1].loss;
        let last = report.curve.last().unwrap().loss;
        assert!(last < first, "loss {first} → {last}");
        assert!(
            report.curve.last().unwrap().test_accuracy > 0.15,
            "{:?}",
            report.curve.last()
        );
    }

    #[test]
    fn early_stop_ends_the_run_and_records_the_step() {
        let device = Default::default();
        let config = TrainConfig {
            early_stop: Some(EarlyStop {
                accuracy: 0.0,
                patience: 2,
            }),
            ..quiet(100)
        };
        let (_, report) = train(probe(&device), &task(), &config, &device).unwrap();
        assert_eq!(report.steps_run, 10);
        assert_eq!(report.converged_at, Some(5));
    }

    #[test]
    fn non_finite_loss_is_an_error() {
        let device = Default::default();
        let config = TrainConfig {
            lr: 1e38,
            ..quiet(50)
        };
        let err = train(probe(&device), &task(), &config, &device).unwrap_err();
        assert!(matches!(err, SeqError::Diverged { .. }), "{err}");
    }

    #[test]
    fn bad_configs_are_errors() {
        let device = Default::default();
        for config in [
            TrainConfig {
                steps: 0,
                ..quiet(1)
            },
            TrainConfig {
                batch_size: 0,
                ..quiet(1)
            },
            TrainConfig {
                lr: -1.0,
                ..quiet(1)
            },
            TrainConfig {
                lr: f64::NAN,
                ..quiet(1)
            },
            TrainConfig {
                early_stop: Some(EarlyStop {
                    accuracy: 1.5,
                    patience: 1,
                }),
                ..quiet(1)
            },
        ] {
            assert!(
                train(probe(&device), &task(), &config, &device).is_err(),
                "{config:?}"
            );
        }
    }
}
