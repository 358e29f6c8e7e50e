//! Loss and metrics of a model on a [`Batch`], for every kind of [`Targets`].

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::data::{Batch, Metric, Targets};
use crate::reshape::reshape;

/// A model that reads token ids and returns logits: what the trainer trains.
pub trait SequenceModel<B: Backend>: Module<B> {
    /// Logits at every position, `[batch, len, classes]` for `tokens` `[batch, len]`.
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 3>>;

    /// Logits at the last position, `[batch, classes]` (override when cheaper than
    /// [`SequenceModel::logits`]).
    fn last_logits(&self, tokens: Tensor<B, 2, Int>) -> crate::Result<Tensor<B, 2>> {
        let logits = self.logits(tokens)?; // [B, L, C]
        let [batch, len, classes] = logits.dims();
        Ok(logits.narrow(1, len - 1, 1).reshape([batch, classes]))
    }

    /// Logits `[batch, len, classes]` of the target-side `tokens` `[batch, len]` given a
    /// source sequence `[batch, source_len]` with its padding mask (`true` = padding), for
    /// models with an encoder. The default is an error: a one-stream model reads no source.
    fn logits_with_source(
        &self,
        source: Tensor<B, 2, Int>,
        source_padding: Option<Tensor<B, 2, Bool>>,
        tokens: Tensor<B, 2, Int>,
    ) -> crate::Result<Tensor<B, 3>> {
        let _ = (source, source_padding, tokens);
        Err(crate::SeqError::InvalidConfig(
            "this model reads one token stream, but the batch has a source sequence; use an \
             encoder–decoder model or the task's one-stream layout"
                .into(),
        ))
    }
}

/// The model's logits `[batch, len, classes]` on `batch`, passing the source to models with an
/// encoder.
fn batch_logits<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batch: &Batch,
    device: &B::Device,
) -> crate::Result<Tensor<B, 3>> {
    let tokens = token_tensor::<B>(batch, device);
    match &batch.source {
        None => model.logits(tokens),
        Some(source) => {
            let shape = [batch.batch, source.len];
            let ids = ids_tensor::<B, 2>(&source.tokens, shape, device);
            let padding = source.padding.iter().any(|&p| p).then(|| {
                Tensor::<B, 2, Bool>::from_data(
                    TensorData::new(source.padding.clone(), shape),
                    device,
                )
            });
            model.logits_with_source(ids, padding, tokens)
        }
    }
}

/// The batch's input ids as an `Int` tensor `[batch, len]`.
pub fn token_tensor<B: Backend>(batch: &Batch, device: &B::Device) -> Tensor<B, 2, Int> {
    ids_tensor(&batch.tokens, [batch.batch, batch.len], device)
}

fn ids_tensor<B: Backend, const D: usize>(
    ids: &[u32],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    let ids: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, shape), device)
}

/// Per-position negative log-likelihood `[B, L]` of the target ids.
fn token_nll<B: Backend>(logits: Tensor<B, 3>, ids: &[u32], device: &B::Device) -> Tensor<B, 2> {
    let [batch, len, _] = logits.dims();
    let targets = ids_tensor::<B, 3>(ids, [batch, len, 1], device); // [B, L, 1]
    let logp = log_softmax(logits, 2); // [B, L, V]
    reshape(logp.gather(2, targets), [batch, len]).neg() // [B, L]
}

fn mask_tensor<B: Backend>(mask: &[bool], shape: [usize; 2], device: &B::Device) -> Tensor<B, 2> {
    let m: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(m, shape), device)
}

/// The training loss: cross-entropy of the labels at the last position, or the mean negative
/// log-likelihood of the scored tokens.
pub fn batch_loss<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batch: &Batch,
    device: &B::Device,
) -> crate::Result<Tensor<B, 1>> {
    match &batch.targets {
        Targets::Labels(labels) => {
            let logits = model.last_logits(token_tensor::<B>(batch, device))?; // [B, C]
            let labels = ids_tensor::<B, 1>(labels, [batch.batch], device);
            Ok(CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits, labels))
        }
        Targets::Tokens { ids, loss_mask } => {
            let nll = token_nll(batch_logits(model, batch, device)?, ids, device); // [B, L]
            let mask = mask_tensor::<B>(loss_mask, [batch.batch, batch.len], device);
            let count = loss_mask.iter().filter(|&&m| m).count().max(1);
            Ok((nll * mask).sum().div_scalar(count as f32))
        }
    }
}

/// Every metric of a model on one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Mean loss (cross-entropy / negative log-likelihood per scored token).
    pub loss: f64,
    /// Fraction of labels, or of scored tokens, predicted by the arg-max.
    pub accuracy: f64,
    /// Fraction of sequences whose label, or whole scored span, is predicted exactly.
    pub exact_match: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Sequences scored.
    pub sequences: usize,
}

impl Scores {
    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Accuracy => self.accuracy,
            Metric::ExactMatch => self.exact_match,
            Metric::Perplexity => self.perplexity,
        }
    }
}

/// Scores `model` on `batch` (no gradient is needed; call it on the inner backend).
pub fn evaluate_batch<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batch: &Batch,
    device: &B::Device,
) -> crate::Result<Scores> {
    batch.validate()?;
    let n = batch.batch;
    // Host round-trips once per evaluation batch: the scores (exact match per row, masked
    // positions) are counted on the host.
    match &batch.targets {
        Targets::Labels(labels) => {
            let logits = model.last_logits(token_tensor::<B>(batch, device))?; // [B, C]
            let predicted = logits.clone().argmax(1).reshape([n]); // [B]
            let labels_t = ids_tensor::<B, 1>(labels, [n], device);
            let correct: i64 = predicted
                .equal(labels_t.clone())
                .int()
                .sum()
                .into_scalar()
                .elem();
            let loss: f64 = CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits, labels_t)
                .into_scalar()
                .elem();
            let accuracy = correct as f64 / n as f64;
            Ok(Scores {
                loss,
                accuracy,
                exact_match: accuracy,
                perplexity: loss.exp(),
                sequences: n,
            })
        }
        Targets::Tokens { ids, loss_mask } => {
            let logits = batch_logits(model, batch, device)?; // [B, L, V]
            let [batch_size, len, _] = logits.dims();
            let predicted = logits.clone().argmax(2).reshape([batch_size, len]); // [B, L]
            let nll = token_nll(logits, ids, device); // [B, L]
            let nll: Vec<f64> = nll.into_data().iter::<f64>().collect();
            let predicted: Vec<i64> = predicted.into_data().iter::<i64>().collect();
            let (mut sum, mut scored, mut right, mut exact, mut rows) = (0.0, 0usize, 0usize, 0, 0);
            for b in 0..n {
                let mut row_ok = true;
                let mut row_scored = false;
                for t in 0..batch.len {
                    let i = b * batch.len + t;
                    if loss_mask[i] {
                        row_scored = true;
                        sum += nll[i];
                        scored += 1;
                        let ok = predicted[i] == ids[i] as i64;
                        right += ok as usize;
                        row_ok &= ok;
                    }
                }
                if row_scored {
                    rows += 1;
                    exact += row_ok as usize;
                }
            }
            let loss = sum / scored.max(1) as f64;
            Ok(Scores {
                loss,
                accuracy: right as f64 / scored.max(1) as f64,
                exact_match: exact as f64 / rows.max(1) as f64,
                perplexity: loss.exp(),
                sequences: n,
            })
        }
    }
}
