//! Training and evaluation for any model on any task.
//!
//! - [`SequenceModel`]: what a trainable model provides (token ids → logits).
//! - [`TrainConfig`] / [`train`]: minibatch Adam/AdamW (optional warm-up + cosine schedule and
//!   gradient clipping) on any [`Task`](crate::data::Task), with a curve of the task's metric on
//!   a fixed test batch, early stopping, a typed error on NaN/∞ loss, and progress reported to a
//!   [`TrainObserver`] of the caller's choice.
//! - [`batch_loss`] / [`evaluate_batch`]: loss and metrics for labels or scored tokens.
//! - [`evaluate_lengths`]: the metric at every requested sequence length.
//!
//! Why not `burn-train`'s `Learner`: it is built around a fixed dataset read in epochs through
//! data loaders, with its own metric loggers, dashboard and checkpoint files, while our tasks are
//! seeded generators sampled at any length whose runs need per-step curves on a fixed test batch
//! and several trainings side by side in threads. The loop here is one function ([`train`], about 165 lines),
//! reports to an observer the caller chooses, and keeps `burn-train` and its dependency tree out
//! of a crate meant to build quickly on a 2-core machine.
//!
//! The experiment drivers (named runs, CSV files, reports, a progress bar) live with the examples
//! in `examples/common/`.

mod eval;
mod objective;
mod trainer;

pub use eval::{LengthScore, evaluate_lengths};
pub use objective::{Scores, SequenceModel, batch_loss, evaluate_batch, token_tensor};
pub use trainer::{
    CurvePoint, EarlyStop, LrSchedule, OptimizerKind, PlateauStop, Silent, StopReason, TrainConfig,
    TrainEvent, TrainObserver, TrainReport, train,
};
