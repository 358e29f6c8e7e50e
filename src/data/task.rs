//! [`Task`]: what the trainer needs from any task — batches at a chosen length, and the metric
//! that scores a model on them.

use rand::rngs::StdRng;

use crate::error::{SeqError, ensure_nonzero};

/// What a batch asks the model to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class per sequence, predicted at the last position (`[batch]`), e.g. the recalled
    /// value of associative recall.
    Labels(Vec<u32>),
    /// A token per position (`[batch, len]`, row-major), scored where `loss_mask` is `true`
    /// (e.g. the answer tokens of a copy task, every position of a language model).
    Tokens {
        /// Target id at each position (usually the next input token).
        ids: Vec<u32>,
        /// `true` where the position counts in the loss and the metrics.
        loss_mask: Vec<bool>,
    },
}

/// A batch of token sequences with their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Input ids, row-major `[batch, len]`.
    pub tokens: Vec<u32>,
    /// Number of sequences.
    pub batch: usize,
    /// Sequence length.
    pub len: usize,
    /// What to predict.
    pub targets: Targets,
    /// The sequence an encoder reads (translation), `None` for one-stream tasks.
    pub source: Option<Source>,
}

/// The source side of a sequence-to-sequence batch, right-padded.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Source ids, row-major `[batch, len]`.
    pub tokens: Vec<u32>,
    /// Source length (of the longest row).
    pub len: usize,
    /// `true` at padding positions (the crate's mask convention), `[batch, len]`.
    pub padding: Vec<bool>,
}

impl Batch {
    /// Checks that the sizes agree (`tokens`, targets and mask of `batch × len`, at least one
    /// scored position per batch); every sampler's output passes through it.
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("batch", self.batch)?;
        ensure_nonzero("sequence length", self.len)?;
        let cells = self.batch * self.len;
        let check = |what: &'static str, got: usize, expected: usize| {
            if got == expected {
                Ok(())
            } else {
                Err(SeqError::ShapeMismatch {
                    what,
                    expected: expected.to_string(),
                    got: got.to_string(),
                })
            }
        };
        check("batch tokens [batch · len]", self.tokens.len(), cells)?;
        if let Some(source) = &self.source {
            ensure_nonzero("source length", source.len)?;
            let source_cells = self.batch * source.len;
            check(
                "source tokens [batch · source len]",
                source.tokens.len(),
                source_cells,
            )?;
            check(
                "source padding [batch · source len]",
                source.padding.len(),
                source_cells,
            )?;
        }
        match &self.targets {
            Targets::Labels(labels) => check("labels [batch]", labels.len(), self.batch),
            Targets::Tokens { ids, loss_mask } => {
                check("target ids [batch · len]", ids.len(), cells)?;
                check("loss mask [batch · len]", loss_mask.len(), cells)?;
                if !loss_mask.iter().any(|&m| m) {
                    return Err(SeqError::InvalidConfig(
                        "the loss mask scores no position; a batch needs at least one target"
                            .into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The headline number of a task (what the curve and early stop follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of sequences whose label (or every scored token) is predicted — higher is better.
    Accuracy,
    /// Fraction of sequences whose whole scored span is reproduced exactly by arg-max decoding —
    /// higher is better. With teacher forcing this equals greedy generation of the span (each
    /// generated token is the arg-max given a correct prefix), which a test checks.
    ExactMatch,
    /// `exp(mean negative log-likelihood)` of the scored tokens — lower is better.
    Perplexity,
}

impl Metric {
    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::Perplexity)
    }

    /// Short name for tables and CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::ExactMatch => "exact match",
            Metric::Perplexity => "perplexity",
        }
    }
}

/// A source of training and evaluation batches.
///
/// Implementations draw every batch from the given seeded generator, so a run is reproducible
/// from its seed, and accept any length at which the task is defined (training length and
/// longer, for length generalization). What "length" means is the task's: the sequence length
/// for recall, the string length for copying.
pub trait Task: Sync {
    /// The (longest) length used in training.
    fn train_len(&self) -> usize;

    /// Draws `batch` sequences at length `len` (what [`evaluate_lengths`] scores).
    ///
    /// [`evaluate_lengths`]: crate::train::evaluate_lengths
    fn sample(&self, rng: &mut StdRng, batch: usize, len: usize) -> crate::Result<Batch>;

    /// A training minibatch (default: [`Task::sample`] at [`Task::train_len`]); e.g. packed
    /// rows of several examples.
    fn train_batch(&self, rng: &mut StdRng, batch: usize) -> crate::Result<Batch> {
        self.sample(rng, batch, self.train_len())
    }

    /// The fixed batch that the training curve scores (default: [`Task::train_batch`]); e.g.
    /// one example per row at the training lengths.
    fn test_batch(&self, rng: &mut StdRng, batch: usize) -> crate::Result<Batch> {
        self.train_batch(rng, batch)
    }

    /// The headline metric.
    fn metric(&self) -> Metric;
}
