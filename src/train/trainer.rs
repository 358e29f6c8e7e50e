//! Minibatch training of any [`SequenceModel`] on any [`Task`], with a curve, early stopping
//! and a typed divergence error.

//! (Why a hand-written loop and not `burn-train`: see the [module documentation](super).)

use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdaGrad, AdaGradConfig, GradientsParams, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::fused_adam::FusedAdam;
use super::objective::{SequenceModel, batch_loss, evaluate_batch};
use crate::data::{Batch, Metric, Task};
use crate::error::{SeqError, ensure_non_negative, ensure_nonzero, ensure_positive};

/// Which optimizer to train with (burn-optim's implementations; the learning rate, its
/// schedule and gradient clipping come from [`TrainConfig`]).
///
/// The variants carry their own hyper-parameters. [`OptimizerKind::sgd`],
/// [`OptimizerKind::rms_prop`] and [`OptimizerKind::ada_grad`] give PyTorch's defaults for the
/// ones not named (`torch.optim.SGD`, `RMSprop`, `Adagrad`), which differ from burn-optim's own
/// config defaults (dampening 0.1, RMSprop momentum 0.9, ε 1e-5).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Adam (no weight decay).
    Adam,
    /// AdamW with decoupled weight decay.
    AdamW {
        /// Decoupled weight-decay coefficient.
        weight_decay: f32,
    },
    /// Stochastic gradient descent with (heavy-ball or Nesterov) momentum:
    /// `v ← μ v + (1 − dampening) g`, `θ ← θ − lr · v` (`g + μ v` with Nesterov), the first
    /// step `v = g`. `momentum = 0` is plain SGD.
    Sgd {
        /// Momentum factor `μ` (0: no momentum).
        momentum: f64,
        /// Dampening of the gradient in the velocity.
        dampening: f64,
        /// Nesterov's look-ahead form.
        nesterov: bool,
        /// L2 penalty added to the gradient (`g + λ θ`, coupled; 0: none).
        weight_decay: f32,
    },
    /// RMSprop: `s ← α s + (1 − α) g²`, `θ ← θ − lr · g / (√s + ε)` (with momentum `μ > 0`:
    /// `b ← μ b + g / (√s + ε)`, `θ ← θ − lr · b`).
    RmsProp {
        /// Smoothing constant `α` of the squared-gradient average.
        alpha: f32,
        /// Momentum `μ` (0: none).
        momentum: f32,
        /// `ε` added to `√s`.
        epsilon: f32,
        /// Centered form (divides by an estimate of the gradient's variance instead).
        centered: bool,
        /// L2 penalty added to the gradient (coupled; 0: none).
        weight_decay: f32,
    },
    /// AdaGrad: `s ← s + g²`, `θ ← θ − lr_t · g / (√s + ε)`, `lr_t = lr / (1 + (t − 1) · decay)`.
    AdaGrad {
        /// Learning-rate decay per step (0: none).
        lr_decay: f64,
        /// `ε` added to `√s`.
        epsilon: f32,
        /// L2 penalty added to the gradient (coupled; 0: none).
        weight_decay: f32,
    },
}

impl OptimizerKind {
    /// SGD with heavy-ball momentum `momentum` and PyTorch's defaults otherwise (no dampening,
    /// no Nesterov, no weight decay).
    pub fn sgd(momentum: f64) -> Self {
        OptimizerKind::Sgd {
            momentum,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// RMSprop with PyTorch's defaults: `α = 0.99`, `ε = 1e-8`, no momentum, not centered, no
    /// weight decay.
    pub fn rms_prop() -> Self {
        OptimizerKind::RmsProp {
            alpha: 0.99,
            momentum: 0.0,
            epsilon: 1e-8,
            centered: false,
            weight_decay: 0.0,
        }
    }

    /// AdaGrad with PyTorch's defaults: no learning-rate decay, `ε = 1e-10`, no weight decay.
    pub fn ada_grad() -> Self {
        OptimizerKind::AdaGrad {
            lr_decay: 0.0,
            epsilon: 1e-10,
            weight_decay: 0.0,
        }
    }

    /// Short name for tables: `adam`, `adamw`, `sgd`, `rmsprop`, `adagrad`.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::RmsProp { .. } => "rmsprop",
            OptimizerKind::AdaGrad { .. } => "adagrad",
        }
    }

    /// Checks the hyper-parameters (finite; momentum, dampening and α in `[0, 1]`, ε > 0,
    /// weight decay and learning-rate decay ≥ 0); the error names the field.
    pub fn validate(&self) -> crate::Result<()> {
        let in_unit = |name: &'static str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(SeqError::OutOfRange {
                    name,
                    value,
                    expected: "a value in [0, 1]",
                })
            }
        };
        match *self {
            OptimizerKind::Adam => Ok(()),
            OptimizerKind::AdamW { weight_decay } => {
                ensure_non_negative("optimizer.weight_decay", weight_decay as f64)
            }
            OptimizerKind::Sgd {
                momentum,
                dampening,
                weight_decay,
                ..
            } => {
                in_unit("optimizer.momentum", momentum)?;
                in_unit("optimizer.dampening", dampening)?;
                ensure_non_negative("optimizer.weight_decay", weight_decay as f64)
            }
            OptimizerKind::RmsProp {
                alpha,
                momentum,
                epsilon,
                weight_decay,
                ..
            } => {
                in_unit("optimizer.alpha", alpha as f64)?;
                in_unit("optimizer.momentum", momentum as f64)?;
                ensure_positive("optimizer.epsilon", epsilon as f64)?;
                ensure_non_negative("optimizer.weight_decay", weight_decay as f64)
            }
            OptimizerKind::AdaGrad {
                lr_decay,
                epsilon,
                weight_decay,
            } => {
                ensure_non_negative("optimizer.lr_decay", lr_decay)?;
                ensure_positive("optimizer.epsilon", epsilon as f64)?;
                ensure_non_negative("optimizer.weight_decay", weight_decay as f64)
            }
        }
    }

    /// The burn-optim optimizer of `M`, clipping the gradients by `clip` first when given.
    fn build<B, M>(&self, clip: Option<GradientClippingConfig>) -> AnyOptimizer<B, M>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
    {
        let decay = |penalty: f32| (penalty > 0.0).then_some(WeightDecayConfig { penalty });
        match *self {
            // Adam is AdamW without decay; both run as one fused update per parameter on the
            // CPU backend (burn-optim's AdamW elsewhere).
            OptimizerKind::Adam => AnyOptimizer::Adam(adaptor(FusedAdam::new(0.0), clip)),
            OptimizerKind::AdamW { weight_decay } => {
                AnyOptimizer::Adam(adaptor(FusedAdam::new(weight_decay), clip))
            }
            OptimizerKind::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => {
                let momentum = (momentum > 0.0).then_some(MomentumConfig {
                    momentum,
                    dampening,
                    nesterov,
                });
                AnyOptimizer::Sgd(
                    SgdConfig::new()
                        .with_momentum(momentum)
                        .with_weight_decay(decay(weight_decay))
                        .with_gradient_clipping(clip)
                        .init::<B, M>(),
                )
            }
            OptimizerKind::RmsProp {
                alpha,
                momentum,
                epsilon,
                centered,
                weight_decay,
            } => AnyOptimizer::RmsProp(
                RmsPropConfig::new()
                    .with_alpha(alpha)
                    .with_momentum(momentum)
                    .with_epsilon(epsilon)
                    .with_centered(centered)
                    .with_weight_decay(decay(weight_decay))
                    .with_grad_clipping(clip)
                    .init::<B, M>(),
            ),
            OptimizerKind::AdaGrad {
                lr_decay,
                epsilon,
                weight_decay,
            } => AnyOptimizer::AdaGrad(
                AdaGradConfig::new()
                    .with_lr_decay(lr_decay)
                    .with_epsilon(epsilon)
                    .with_weight_decay(decay(weight_decay))
                    .with_grad_clipping(clip)
                    .init::<B, M>(),
            ),
        }
    }
}

/// `optimizer` with Burn's adaptor and the optional gradient clipping.
fn adaptor<O, B, M>(optimizer: O, clip: Option<GradientClippingConfig>) -> OptimizerAdaptor<O, M, B>
where
    O: burn::optim::SimpleOptimizer<B::InnerBackend>,
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let adaptor = OptimizerAdaptor::from(optimizer);
    match clip {
        Some(clip) => adaptor.with_grad_clipping(clip.init()),
        None => adaptor,
    }
}

/// One of the optimizers of `M` (what [`OptimizerKind::build`] makes): burn-optim's, Adam and
/// AdamW as the crate's fused update.
enum AnyOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    Adam(OptimizerAdaptor<FusedAdam, M, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    RmsProp(OptimizerAdaptor<RmsProp, M, B>),
    AdaGrad(OptimizerAdaptor<AdaGrad, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> AnyOptimizer<B, M> {
    /// The update of `model` by `grads` at rate `lr`.
    fn step(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        match self {
            AnyOptimizer::Adam(o) => o.step(lr, model, grads),
            AnyOptimizer::Sgd(o) => o.step(lr, model, grads),
            AnyOptimizer::RmsProp(o) => o.step(lr, model, grads),
            AnyOptimizer::AdaGrad(o) => o.step(lr, model, grads),
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum LrSchedule {
    /// The configured rate at every step.
    Constant,
    /// Linear warm-up from 0 over `warmup_steps`, then cosine decay to `min_ratio · lr` at the
    /// last step (GPT-2 / minGPT style).
    WarmupCosine {
        /// Steps of linear warm-up.
        warmup_steps: usize,
        /// Final rate as a fraction of the peak, in `[0, 1]`.
        min_ratio: f64,
    },
}

impl LrSchedule {
    /// The rate at optimizer step `step` (1-based) of `total`, for peak rate `lr`.
    pub fn rate(&self, lr: f64, step: usize, total: usize) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::WarmupCosine {
                warmup_steps,
                min_ratio,
            } => {
                if step <= warmup_steps {
                    return lr * step as f64 / warmup_steps.max(1) as f64;
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                lr * (min_ratio + (1.0 - min_ratio) * cosine)
            }
        }
    }
}

/// Stop once the test-batch score stays at or beyond `target` for `patience` evaluations (at or
/// above for accuracy-like metrics, at or below for perplexity).
#[derive(Config, Debug, Copy, PartialEq)]
pub struct EarlyStop {
    /// Threshold on the task's metric.
    pub target: f64,
    /// Consecutive evaluations that must reach it.
    pub patience: usize,
}

/// Stop once the test-batch score has not beaten its best so far by more than `min_delta` for
/// `patience` consecutive evaluations (a plateau; "better" in the metric's direction).
#[derive(Config, Debug, Copy, PartialEq)]
pub struct PlateauStop {
    /// Consecutive evaluations without improvement that end the run.
    pub patience: usize,
    /// Smallest change of the score that counts as an improvement (e.g. 0.005 = 0.5 points of
    /// accuracy).
    pub min_delta: f64,
    /// No plateau stop before this optimizer step. Recall and induction-head runs often sit at
    /// chance for thousands of steps and then rise within a few hundred (a phase transition),
    /// so a plateau at the start is not the end of learning.
    pub min_steps: usize,
}

/// Why a training run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It ran every step of the budget.
    Budget,
    /// The early-stop target was held for its patience ([`EarlyStop`]).
    Converged,
    /// The score stopped improving ([`PlateauStop`]).
    Plateau,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Budget => "budget",
            StopReason::Converged => "converged",
            StopReason::Plateau => "plateau",
        })
    }
}

/// Hyper-parameters of a training run.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Maximum number of optimizer steps.
    #[config(default = 2000)]
    pub steps: usize,
    /// Sequences per minibatch.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Optimizer.
    #[config(default = "OptimizerKind::Adam")]
    pub optimizer: OptimizerKind,
    /// Learning-rate schedule.
    #[config(default = "LrSchedule::Constant")]
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub grad_clip: Option<f32>,
    /// Evaluate on the fixed test batch every this many steps (the convergence curve).
    #[config(default = 25)]
    pub eval_every: usize,
    /// Size of the fixed test batch.
    #[config(default = 256)]
    pub test_batch: usize,
    /// Optional early stop.
    #[config(default = "Some(EarlyStop { target: 0.99, patience: 4 })")]
    pub early_stop: Option<EarlyStop>,
    /// Optional stop on a plateau of the test-batch score.
    pub plateau_stop: Option<PlateauStop>,
    /// Seed of the training stream and of the test batch.
    #[config(default = 0)]
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The same as [`TrainConfig::new`]: 2000 steps of Adam at 1e-3, batch 64, evaluated every
    /// 25 steps on 256 examples, stopping early at 99% for 4 evaluations.
    fn default() -> Self {
        Self::new()
    }
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("steps", self.steps)?;
        ensure_nonzero("batch_size", self.batch_size)?;
        ensure_nonzero("eval_every", self.eval_every)?;
        ensure_nonzero("test_batch", self.test_batch)?;
        self.optimizer.validate()?;
        ensure_positive("lr", self.lr)?;
        if let Some(clip) = self.grad_clip
            && !(clip.is_finite() && clip > 0.0)
        {
            return Err(SeqError::OutOfRange {
                name: "grad_clip",
                value: clip as f64,
                expected: "a finite norm > 0 (or no clipping)",
            });
        }
        if let LrSchedule::WarmupCosine { min_ratio, .. } = self.schedule
            && !(0.0..=1.0).contains(&min_ratio)
        {
            return Err(SeqError::OutOfRange {
                name: "schedule.min_ratio",
                value: min_ratio,
                expected: "a fraction in [0, 1]",
            });
        }
        if let Some(stop) = self.early_stop {
            if !stop.target.is_finite() {
                return Err(SeqError::OutOfRange {
                    name: "early_stop.target",
                    value: stop.target,
                    expected: "a finite value of the task's metric",
                });
            }
            ensure_nonzero("early_stop.patience", stop.patience)?;
        }
        if let Some(stop) = self.plateau_stop {
            ensure_nonzero("plateau_stop.patience", stop.patience)?;
            ensure_non_negative("plateau_stop.min_delta", stop.min_delta)?;
        }
        Ok(())
    }
}

/// One point of the convergence curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Training loss of the last minibatch (NaN at step 0).
    pub loss: f64,
    /// Mean training loss of the minibatches since the previous point (NaN at step 0).
    pub mean_loss: f64,
    /// The task's metric on the fixed test batch.
    pub test_score: f64,
    /// Mean loss on the fixed test batch (the validation loss curve).
    pub test_loss: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// The task's metric on the test batch against steps (first point at step 0).
    pub curve: Vec<CurvePoint>,
    /// Which metric the curve holds.
    pub metric: Metric,
    /// Steps actually run.
    pub steps_run: usize,
    /// First step at which the early-stop threshold was reached, if it was.
    pub converged_at: Option<usize>,
    /// Why the run ended.
    pub stop: StopReason,
    /// Mean wall time of one optimizer step (forward, backward, update), evaluation excluded.
    pub ms_per_step: f64,
}

/// What the trainer tells its observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainEvent {
    /// Before the first step.
    Started {
        /// The step budget.
        steps: usize,
    },
    /// After each optimizer step.
    Step {
        /// Steps done.
        step: usize,
        /// Loss of the step's minibatch.
        loss: f64,
    },
    /// After each evaluation on the test batch (also at step 0).
    Evaluated(CurvePoint),
    /// The run ended (budget, early stop or divergence).
    Finished {
        /// Steps run.
        steps_run: usize,
        /// Whether the loss diverged.
        diverged: bool,
    },
}

/// Receives the trainer's progress: a progress bar, log lines, a channel, or nothing.
pub trait TrainObserver {
    /// Called on every event, in order.
    fn on_event(&mut self, event: TrainEvent);
}

impl<F: FnMut(TrainEvent)> TrainObserver for F {
    fn on_event(&mut self, event: TrainEvent) {
        self(event)
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TrainObserver for Silent {
    fn on_event(&mut self, _: TrainEvent) {}
}

/// One optimizer step of a [`TrainConfig`]: the loss of a batch ([`batch_loss`]), the
/// divergence check, backward, gradient clipping and the optimizer's update at the scheduled
/// learning rate. [`train`] runs it on batches it samples from a [`Task`]; a caller that reads
/// a finite dataset in epochs (the `sentiment` example) runs the same step on its own batches,
/// so every training of the crate goes through this one step.
pub struct TrainStep<B: AutodiffBackend, M: AutodiffModule<B>> {
    update: AnyOptimizer<B, M>,
    lr: f64,
    schedule: LrSchedule,
    total: usize,
    done: usize,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> std::fmt::Debug for TrainStep<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainStep")
            .field("lr", &self.lr)
            .field("schedule", &self.schedule)
            .field("total", &self.total)
            .field("done", &self.done)
            .finish()
    }
}

impl<B, M> TrainStep<B, M>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
{
    /// The optimizer of `config` (with its clipping) and its schedule over `config.steps`
    /// steps, after [`TrainConfig::validate`].
    pub fn new(config: &TrainConfig) -> crate::Result<Self> {
        config.validate()?;
        let clip = config.grad_clip.map(GradientClippingConfig::Norm);
        Ok(Self {
            update: config.optimizer.build::<B, M>(clip),
            lr: config.lr,
            schedule: config.schedule,
            total: config.steps,
            done: 0,
        })
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// The learning rate of the next step.
    pub fn next_lr(&self) -> f64 {
        self.schedule.rate(self.lr, self.done + 1, self.total)
    }

    /// One step on `batch`: returns the updated model and the batch's loss (before the
    /// update). A NaN or infinite loss is [`SeqError::Diverged`] naming the step (1-based).
    pub fn step(&mut self, model: M, batch: &Batch, device: &B::Device) -> crate::Result<(M, f64)> {
        self.step_synced(model, batch, device, &mut NoSync)
    }

    /// [`TrainStep::step`] with the batch's loss and gradients passed through `sync` (the
    /// data-parallel trainer's all-reduce) before the divergence check and the update.
    pub(crate) fn step_synced(
        &mut self,
        model: M,
        batch: &Batch,
        device: &B::Device,
        sync: &mut dyn StepSync,
    ) -> crate::Result<(M, f64)> {
        let step = self.done + 1;
        let loss = batch_loss(&model, batch, device)?; // [1]
        // Host round-trip per step (PyTorch's `loss.item()`): the progress display, the metrics
        // CSV and the non-finite-loss stop read it.
        let loss_value: f64 = sync.loss(loss.clone().into_scalar().elem())?;
        if !loss_value.is_finite() {
            return Err(SeqError::Diverged {
                step,
                loss: loss_value,
            });
        }
        let grads = sync.grads(GradientsParams::from_grads(loss.backward(), &model))?;
        let model = self
            .update
            .step(self.schedule.rate(self.lr, step, self.total), model, grads);
        self.done = step;
        Ok((model, loss_value))
    }
}

/// What a step shares with the other peers of a data-parallel run: the loss (reported and
/// checked for divergence) and the gradients (applied), each replaced by the peers' mean.
pub(crate) trait StepSync {
    /// The loss every peer sees for this step.
    fn loss(&mut self, loss: f64) -> crate::Result<f64>;
    /// The gradients every peer applies.
    fn grads(&mut self, grads: GradientsParams) -> crate::Result<GradientsParams>;
}

/// One process, one peer: the batch's own loss and gradients.
struct NoSync;

impl StepSync for NoSync {
    fn loss(&mut self, loss: f64) -> crate::Result<f64> {
        Ok(loss)
    }

    fn grads(&mut self, grads: GradientsParams) -> crate::Result<GradientsParams> {
        Ok(grads)
    }
}

/// Trains `model` on `task` at its training length and returns the trained model with a report.
///
/// The training stream and the fixed test batch are drawn from `config.seed`, so two runs with
/// the same seed and model initialization are identical. A NaN or infinite loss stops the run
/// with [`SeqError::Diverged`].
pub fn train<B, M, T>(
    mut model: M,
    task: &T,
    config: &TrainConfig,
    device: &B::Device,
    observer: &mut dyn TrainObserver,
) -> crate::Result<(M, TrainReport)>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
    M::InnerModule: SequenceModel<B::InnerBackend>,
    T: Task + ?Sized,
{
    let mut trainer = TrainStep::<B, M>::new(config)?;
    let metric = task.metric();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut test_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x7E57));
    let test_batch = task.test_batch(&mut test_rng, config.test_batch)?;

    let inner_device = device.clone();
    let evaluate = |model: &M| -> crate::Result<(f64, f64)> {
        let scores =
            evaluate_batch::<B::InnerBackend, _>(&model.valid(), &test_batch, &inner_device)?;
        Ok((scores.get(metric), scores.loss))
    };
    observer.on_event(TrainEvent::Started {
        steps: config.steps,
    });
    let (test_score, test_loss) = evaluate(&model)?;
    let first = CurvePoint {
        step: 0,
        loss: f64::NAN,
        mean_loss: f64::NAN,
        test_score,
        test_loss,
    };
    let (mut loss_sum, mut loss_count) = (0.0, 0usize);
    observer.on_event(TrainEvent::Evaluated(first));
    let mut curve = vec![first];
    let mut streak = 0;
    let mut converged_at = None;
    let mut stop_reason = StopReason::Budget;
    let better = |a: f64, b: f64| {
        if metric.higher_is_better() {
            a > b
        } else {
            a < b
        }
    };
    let mut best = first.test_score;
    let mut stale = 0;
    let mut train_time = 0.0;
    let mut steps_run = 0;

    for step in 1..=config.steps {
        let batch = task.train_batch(&mut rng, config.batch_size)?;
        batch.validate()?;
        let started = Instant::now();
        let loss_value = match trainer.step(model, &batch, device) {
            Ok((updated, loss)) => {
                model = updated;
                loss
            }
            Err(e) => {
                if matches!(e, SeqError::Diverged { .. }) {
                    observer.on_event(TrainEvent::Finished {
                        steps_run,
                        diverged: true,
                    });
                }
                return Err(e);
            }
        };
        train_time += started.elapsed().as_secs_f64();
        steps_run = step;
        loss_sum += loss_value;
        loss_count += 1;
        observer.on_event(TrainEvent::Step {
            step,
            loss: loss_value,
        });

        if step % config.eval_every == 0 || step == config.steps {
            let (test_score, test_loss) = evaluate(&model)?;
            let point = CurvePoint {
                step,
                loss: loss_value,
                mean_loss: loss_sum / loss_count.max(1) as f64,
                test_score,
                test_loss,
            };
            (loss_sum, loss_count) = (0.0, 0);
            curve.push(point);
            observer.on_event(TrainEvent::Evaluated(point));
            if let Some(stop) = config.early_stop {
                let reached = if metric.higher_is_better() {
                    point.test_score >= stop.target
                } else {
                    point.test_score <= stop.target
                };
                if reached {
                    streak += 1;
                    converged_at.get_or_insert(step);
                    if streak >= stop.patience {
                        stop_reason = StopReason::Converged;
                        break;
                    }
                } else {
                    streak = 0;
                    converged_at = None;
                }
            }
            if let Some(plateau) = config.plateau_stop {
                let margin = if metric.higher_is_better() {
                    plateau.min_delta
                } else {
                    -plateau.min_delta
                };
                if better(point.test_score, best + margin) || best.is_nan() {
                    best = point.test_score;
                    stale = 0;
                } else {
                    stale += 1;
                    if stale >= plateau.patience && point.step >= plateau.min_steps {
                        stop_reason = StopReason::Plateau;
                        break;
                    }
                }
            }
        }
    }
    observer.on_event(TrainEvent::Finished {
        steps_run,
        diverged: false,
    });
    let ms_per_step = 1e3 * train_time / steps_run.max(1) as f64;
    Ok((
        model,
        TrainReport {
            curve,
            metric,
            steps_run,
            converged_at,
            stop: stop_reason,
            ms_per_step,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuAutodiff;
    use crate::data::{AssociativeRecall, RecallConfig};
    use burn::module::Param;
    use burn::nn::Linear;

    /// Bag-of-tokens probe: mean one-hot of the tokens → linear. Cheap and differentiable.
    #[derive(Module, Debug)]
    struct Probe<B: Backend> {
        linear: Linear<B>,
        scale: Param<Tensor<B, 1>>,
    }

    impl<B: Backend> SequenceModel<B> for Probe<B> {
        fn logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>> {
            let [batch, _] = tokens.dims();
            Ok(self.last_logits(tokens)?.reshape([batch, 1, 16]))
        }

        fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 2>> {
            let [batch, len] = tokens.dims();
            let one_hot = tokens.reshape([batch * len]).one_hot::<2>(16).float(); // [B·L, K]
            let bag = one_hot
                .reshape([batch, len, 16])
                .mean_dim(1)
                .reshape([batch, 16]); // [B, K]
            Ok(self.linear.forward(bag) * self.scale.val().unsqueeze())
        }
    }

    /// The probe with Burn's default `Linear` initialization, `U(−k, k)` with `k = 1/√16`, drawn
    /// from a local RNG seeded here rather than from Burn's global generator: seeding that one
    /// would race with the other unit tests drawing from it on other threads (no lock is shared
    /// with them), so two "same seed" probes could differ.
    fn probe(device: &crate::backend::CpuDevice) -> Probe<CpuAutodiff> {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(1);
        let k = 1.0 / 16f32.sqrt();
        let mut uniform = |shape: Vec<usize>| {
            let n = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-k..k)).collect();
            TensorData::new(v, shape)
        };
        Probe {
            linear: Linear {
                weight: Param::from_tensor(Tensor::from_data(uniform(vec![16, 16]), device)),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    uniform(vec![16]),
                    device,
                ))),
            },
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
            early_stop: None,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn same_seed_gives_the_same_run() {
        let device = Default::default();
        let (_, a) = train(probe(&device), &task(), &quiet(10), &device, &mut Silent).unwrap();
        let (_, b) = train(probe(&device), &task(), &quiet(10), &device, &mut Silent).unwrap();
        let (_, c) = train(
            probe(&device),
            &task(),
            &TrainConfig {
                seed: 9,
                ..quiet(10)
            },
            &device,
            &mut Silent,
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
        let (_, report) = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap();
        let first = report.curve[1].loss;
        let last = report.curve.last().unwrap().loss;
        assert!(last < first, "loss {first} → {last}");
        assert!(
            report.curve.last().unwrap().test_score > 0.15,
            "{:?}",
            report.curve.last()
        );
    }

    #[test]
    fn every_optimizer_lowers_the_loss_of_a_tiny_model() {
        // 60 steps of each optimizer at a rate that suits it: the loss on the fixed test batch
        // falls clearly below its value at step 0 (≈ ln 16 for the fresh probe).
        let device = Default::default();
        let cases = [
            (OptimizerKind::Adam, 3e-2),
            (OptimizerKind::AdamW { weight_decay: 0.01 }, 3e-2),
            (OptimizerKind::sgd(0.9), 0.5),
            (
                OptimizerKind::Sgd {
                    momentum: 0.9,
                    dampening: 0.1,
                    nesterov: true,
                    weight_decay: 1e-4,
                },
                0.5,
            ),
            (OptimizerKind::sgd(0.0), 2.0),
            (OptimizerKind::rms_prop(), 1e-2),
            (
                OptimizerKind::RmsProp {
                    alpha: 0.9,
                    momentum: 0.5,
                    epsilon: 1e-6,
                    centered: true,
                    weight_decay: 1e-4,
                },
                5e-3,
            ),
            (OptimizerKind::ada_grad(), 0.1),
        ];
        for (optimizer, lr) in cases {
            let config = TrainConfig {
                lr,
                optimizer,
                grad_clip: Some(5.0),
                ..quiet(60)
            };
            let (_, report) =
                train(probe(&device), &task(), &config, &device, &mut Silent).unwrap();
            let first = report.curve[0].test_loss;
            let last = report.curve.last().unwrap().test_loss;
            assert!(
                last < first - 0.1,
                "{optimizer:?} at lr {lr}: test loss {first} → {last}"
            );
        }
    }

    #[test]
    fn bad_optimizer_settings_are_errors_naming_the_field() {
        let cases = [
            (OptimizerKind::sgd(1.5), "optimizer.momentum"),
            (
                OptimizerKind::Sgd {
                    momentum: 0.9,
                    dampening: -0.1,
                    nesterov: false,
                    weight_decay: 0.0,
                },
                "optimizer.dampening",
            ),
            (
                OptimizerKind::RmsProp {
                    alpha: 0.99,
                    momentum: 0.0,
                    epsilon: 0.0,
                    centered: false,
                    weight_decay: 0.0,
                },
                "optimizer.epsilon",
            ),
            (
                OptimizerKind::AdaGrad {
                    lr_decay: f64::NAN,
                    epsilon: 1e-10,
                    weight_decay: 0.0,
                },
                "optimizer.lr_decay",
            ),
            (
                OptimizerKind::AdamW { weight_decay: -1.0 },
                "optimizer.weight_decay",
            ),
        ];
        for (optimizer, field) in cases {
            let config = TrainConfig {
                optimizer,
                ..quiet(1)
            };
            match config.validate() {
                Err(SeqError::OutOfRange { name, .. }) => assert_eq!(name, field, "{optimizer:?}"),
                other => panic!("{optimizer:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn train_step_driven_by_hand_repeats_train() {
        // `train` is `TrainStep` on the task's batches: the same batches by hand give the same
        // losses, bit for bit.
        let device = Default::default();
        let config = TrainConfig {
            optimizer: OptimizerKind::AdamW { weight_decay: 0.01 },
            grad_clip: Some(1.0),
            schedule: LrSchedule::WarmupCosine {
                warmup_steps: 3,
                min_ratio: 0.1,
            },
            ..quiet(10)
        };
        let (_, report) = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap();
        let mut stepper = TrainStep::<CpuAutodiff, Probe<CpuAutodiff>>::new(&config).unwrap();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut model = probe(&device);
        let mut losses = Vec::new();
        for _ in 0..10 {
            let batch = task().train_batch(&mut rng, config.batch_size).unwrap();
            let (next, loss) = stepper.step(model, &batch, &device).unwrap();
            model = next;
            losses.push(loss);
        }
        assert_eq!(stepper.steps_done(), 10);
        assert_eq!(report.curve[1].loss, losses[4]);
        assert_eq!(report.curve[2].loss, losses[9]);
    }

    #[test]
    fn early_stop_ends_the_run_and_records_the_step() {
        let device = Default::default();
        let config = TrainConfig {
            early_stop: Some(EarlyStop {
                target: 0.0,
                patience: 2,
            }),
            ..quiet(100)
        };
        let (_, report) = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap();
        assert_eq!(report.steps_run, 10);
        assert_eq!(report.converged_at, Some(5));
        assert_eq!(report.stop, StopReason::Converged);
    }

    #[test]
    fn plateau_stop_ends_a_run_that_stops_improving() {
        let device = Default::default();
        // Accuracy cannot rise by 2 (200 points): every evaluation after step 0 is stale, so
        // with evaluations every 5 steps and patience 3 the run ends at step 15.
        let config = TrainConfig {
            plateau_stop: Some(PlateauStop {
                patience: 3,
                min_delta: 2.0,
                min_steps: 0,
            }),
            ..quiet(100)
        };
        let (_, report) = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap();
        assert_eq!(report.steps_run, 15);
        assert_eq!(report.stop, StopReason::Plateau);
        assert_eq!(report.curve.len(), 4);
        // With `min_steps: 32` the first evaluation at or after step 32 (step 35) ends it.
        let late = TrainConfig {
            plateau_stop: Some(PlateauStop {
                min_steps: 32,
                ..config.plateau_stop.unwrap()
            }),
            ..config.clone()
        };
        let (_, report) = train(probe(&device), &task(), &late, &device, &mut Silent).unwrap();
        assert_eq!((report.steps_run, report.stop), (35, StopReason::Plateau));
        // Without it, the same run uses its whole budget.
        let (_, report) = train(probe(&device), &task(), &quiet(20), &device, &mut Silent).unwrap();
        assert_eq!((report.steps_run, report.stop), (20, StopReason::Budget));
        let bad = TrainConfig {
            plateau_stop: Some(PlateauStop {
                patience: 0,
                min_delta: 0.0,
                min_steps: 0,
            }),
            ..quiet(10)
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("plateau_stop.patience")
        );
    }

    #[test]
    fn non_finite_loss_is_an_error() {
        let device = Default::default();
        let config = TrainConfig {
            lr: 1e38,
            ..quiet(50)
        };
        let err = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap_err();
        assert!(matches!(err, SeqError::Diverged { .. }), "{err}");
    }

    #[test]
    fn warmup_cosine_schedule_has_its_hand_computed_values() {
        let s = LrSchedule::WarmupCosine {
            warmup_steps: 10,
            min_ratio: 0.1,
        };
        assert!((s.rate(1e-3, 5, 110) - 5e-4).abs() < 1e-12);
        assert!((s.rate(1e-3, 10, 110) - 1e-3).abs() < 1e-12);
        // Half-way through the decay: cos(π/2) = 0 → 0.1 + 0.9 · 0.5 = 0.55.
        assert!((s.rate(1e-3, 60, 110) - 5.5e-4).abs() < 1e-12);
        assert!((s.rate(1e-3, 110, 110) - 1e-4).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.rate(0.3, 7, 9), 0.3);
    }

    #[test]
    fn observer_sees_every_step_and_evaluation() {
        let device = Default::default();
        let mut events = Vec::new();
        let mut record = |e: TrainEvent| events.push(e);
        train(probe(&device), &task(), &quiet(10), &device, &mut record).unwrap();
        let steps = events
            .iter()
            .filter(|e| matches!(e, TrainEvent::Step { .. }))
            .count();
        let evals = events
            .iter()
            .filter(|e| matches!(e, TrainEvent::Evaluated(_)))
            .count();
        assert_eq!((steps, evals), (10, 3));
        assert!(matches!(events[0], TrainEvent::Started { steps: 10 }));
        assert!(matches!(
            events.last(),
            Some(TrainEvent::Finished {
                steps_run: 10,
                diverged: false
            })
        ));
    }

    #[test]
    fn bad_configs_are_errors() {
        // Each config is refused for its own field, before any step: a validation that checked
        // one field for another (or let training run into a NaN) would name another one.
        let device = Default::default();
        let cases: [(TrainConfig, &str); 7] = [
            (
                TrainConfig {
                    steps: 0,
                    ..quiet(1)
                },
                "steps",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..quiet(1)
                },
                "batch_size",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..quiet(1)
                },
                "lr",
            ),
            (
                TrainConfig {
                    lr: f64::NAN,
                    ..quiet(1)
                },
                "lr",
            ),
            (
                TrainConfig {
                    grad_clip: Some(0.0),
                    ..quiet(1)
                },
                "grad_clip",
            ),
            (
                TrainConfig {
                    schedule: LrSchedule::WarmupCosine {
                        warmup_steps: 1,
                        min_ratio: 2.0,
                    },
                    ..quiet(1)
                },
                "schedule.min_ratio",
            ),
            (
                TrainConfig {
                    early_stop: Some(EarlyStop {
                        target: f64::NAN,
                        patience: 1,
                    }),
                    ..quiet(1)
                },
                "early_stop.target",
            ),
        ];
        for (config, field) in cases {
            let err = train(probe(&device), &task(), &config, &device, &mut Silent).unwrap_err();
            // Zero counts are `ZeroSize`, bad values `OutOfRange`; both name the field.
            let named = match &err {
                SeqError::ZeroSize { name } => *name,
                SeqError::OutOfRange { name, .. } => *name,
                _ => "",
            };
            assert_eq!(named, field, "{config:?}: {err:?}");
        }
    }
}
