//! A task's metric across sequence lengths (length generalization).

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::objective::{SequenceModel, evaluate_batch};
use crate::data::{Metric, Task};
use crate::error::{Result, ensure_nonzero};

/// The task's metric measured at one sequence length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthScore {
    /// Sequence length.
    pub len: usize,
    /// The metric over `samples` sequences (for perplexity, `exp` of the mean loss).
    pub score: f64,
    /// Number of sequences evaluated.
    pub samples: usize,
}

/// The task's metric for `model` at each length of `lengths`, on `samples` fresh sequences per
/// length drawn in minibatches of at most `batch` from a generator seeded with `seed` (one
/// stream per length, so adding lengths does not change the others' data).
pub fn evaluate_lengths<B: Backend, M: SequenceModel<B>, T: Task + ?Sized>(
    model: &M,
    task: &T,
    lengths: &[usize],
    samples: usize,
    batch: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Vec<LengthScore>> {
    ensure_nonzero("evaluation samples per length", samples)?;
    ensure_nonzero("evaluation batch size", batch)?;
    let metric = task.metric();
    let mut out = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut weighted, mut loss, mut seen) = (0.0, 0.0, 0);
        while seen < samples {
            let n = batch.min(samples - seen);
            let data = task.sample(&mut rng, n, len)?;
            let scores = evaluate_batch(model, &data, device)?;
            weighted += scores.get(metric) * n as f64;
            loss += scores.loss * n as f64;
            seen += n;
        }
        let score = match metric {
            Metric::Perplexity => (loss / samples as f64).exp(),
            _ => weighted / samples as f64,
        };
        out.push(LengthScore {
            len,
            score,
            samples,
        });
    }
    Ok(out)
}
