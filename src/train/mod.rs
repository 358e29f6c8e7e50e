//! Training and evaluation for any model on any task.
//!
//! - [`SequenceModel`]: what a trainable model provides (token ids → logits).
//! - [`TrainConfig`] / [`train`]: minibatch training with burn-optim's Adam, AdamW, SGD with
//!   momentum, RMSprop or AdaGrad ([`OptimizerKind`]; optional warm-up + cosine schedule and
//!   gradient clipping) on any [`Task`](crate::data::Task), with a curve of the task's metric on
//!   a fixed test batch, early stopping, a typed error on NaN/∞ loss, and progress reported to a
//!   [`TrainObserver`] of the caller's choice.
//! - [`TrainStep`]: the one training step (loss → divergence check → backward → clipping →
//!   update at the scheduled rate) that [`train`] runs on every batch it samples.
//! - [`batch_loss`] / [`evaluate_batch`]: loss and metrics for labels or scored tokens.
//! - [`evaluate_lengths`]: the metric at every requested sequence length.
//! - `train_data_parallel` / `ParallelConfig` (feature `collective`): the same training with N
//!   peers that average their gradients through burn-collective (docs/SCALING.md).
//!
//! Why not `burn-train`'s `Learner`: it is built around a fixed dataset read in epochs through
//! data loaders, with its own metric loggers, dashboard and checkpoint files, while our tasks are
//! seeded generators sampled at any length whose runs need per-step curves on a fixed test batch
//! and several trainings side by side in threads. The loop here is one function ([`train`], about 165 lines),
//! reports to an observer the caller chooses, and keeps `burn-train` and its dependency tree out
//! of a crate meant to build quickly on a 2-core machine.
//!
//! **Finite datasets read in epochs.** [`train`] samples a [`Task`](crate::data::Task) step by
//! step and scores a fixed test batch. A fixed dataset read in shuffled epochs, scored on the
//! whole validation set after each epoch and kept at its best epoch (the `sentiment` example's
//! fine-tuning) needs a different *driver* of the same step: its epoch loop shuffles the
//! training set with the run's seed, calls [`TrainStep::step`] on each batch, and evaluates with
//! [`evaluate_batch`] on the model's inner backend (`model.valid()`: no autodiff graph, dropout
//! off). The step itself (optimizer, schedule, clipping, divergence check) is not written twice:
//! [`train`] and every epoch loop run [`TrainStep`]. A `Task` over the split was the other
//! choice; it would have needed state in the task (the position in the current epoch), an
//! evaluation hook to keep the best epoch's weights, and a training accuracy the curve does not
//! have.
//!
//! The experiment drivers (named runs, CSV files, reports, a progress bar) live with the examples
//! in `examples/common/`.

mod eval;
mod fused_adam;
mod objective;
#[cfg(feature = "collective")]
mod parallel;
mod trainer;

pub use eval::{LengthScore, evaluate_lengths};
pub use objective::{Scores, SequenceModel, batch_loss, evaluate_batch, token_tensor};
#[cfg(feature = "collective")]
pub use parallel::{NodeConfig, ParallelConfig, serve_orchestrator, train_data_parallel};
pub use trainer::{
    CurvePoint, EarlyStop, LrSchedule, OptimizerKind, PlateauStop, Silent, StopReason, TrainConfig,
    TrainEvent, TrainObserver, TrainReport, TrainStep, train,
};
