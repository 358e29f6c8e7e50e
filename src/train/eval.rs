//! Accuracy on a batch and across sequence lengths.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::Classifier;
use crate::data::{AssociativeRecall, RecallBatch};
use crate::error::Result;

/// Fraction of sequences of `batch` whose arg-max logit equals the label.
pub fn accuracy<B: Backend, M: Classifier<B>>(
    model: &M,
    batch: &RecallBatch,
    device: &B::Device,
) -> f64 {
    let (tokens, labels) = batch.to_tensors::<B>(device);
    let predicted = model.logits(tokens).argmax(1).reshape([batch.batch]); // [batch]
    let correct: i64 = predicted.equal(labels).int().sum().into_scalar().elem();
    correct as f64 / batch.batch as f64
}

/// Accuracy measured at one sequence length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthAccuracy {
    /// Sequence length.
    pub len: usize,
    /// Fraction correct over `samples` sequences.
    pub accuracy: f64,
    /// Number of sequences evaluated.
    pub samples: usize,
}

/// Accuracy of `model` at each length of `lengths`, on `samples` fresh sequences per length
/// drawn in minibatches of at most `batch` from a generator seeded with `seed` (one stream per
/// length, so adding lengths does not change the others' data).
pub fn evaluate_lengths<B: Backend, M: Classifier<B>>(
    model: &M,
    task: &AssociativeRecall,
    lengths: &[usize],
    samples: usize,
    batch: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Vec<LengthAccuracy>> {
    let mut out = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut correct = 0.0;
        let mut seen = 0;
        while seen < samples {
            let n = batch.min(samples - seen);
            let data = task.sample(&mut rng, n, len)?;
            correct += accuracy(model, &data, device) * n as f64;
            seen += n;
        }
        out.push(LengthAccuracy {
            len,
            accuracy: correct / samples as f64,
            samples,
        });
    }
    Ok(out)
}
