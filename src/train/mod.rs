//! Training and evaluation harness for sequence classifiers on synthetic tasks.
//!
//! - [`Classifier`]: what a trainable model must provide (token ids → logits).
//! - [`TrainConfig`] / [`train`]: minibatch Adam/AdamW with a progress bar, a convergence curve
//!   measured on a fixed test batch, early stopping, and a typed error on NaN/∞ loss.
//! - [`evaluate_lengths`]: accuracy at every requested sequence length (length generalization).
//! - [`run_recall`]: one named model trained and evaluated on an associative-recall task, the
//!   entry point of the homework examples; [`write_csv`] saves many runs.

mod eval;
mod recall;
pub mod report;
mod trainer;

pub use eval::{LengthAccuracy, accuracy, evaluate_lengths};
pub use recall::{RecallOutcome, RecallRun, run_recall, write_csv};
pub use trainer::{CurvePoint, EarlyStop, OptimizerKind, TrainConfig, TrainReport, train};

use burn::prelude::*;

/// A model that reads a sequence of token ids and predicts one class (the recalled value).
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits `[batch, classes]` for token ids `[batch, len]`.
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2>;
}
