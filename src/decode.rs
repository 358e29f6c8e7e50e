//! Greedy and sampled generation over any model that decodes with state.
//!
//! A [`Decoder`] runs a chunk of new tokens from a state and returns their logits and the next
//! state ([`LanguageModel`](crate::model::LanguageModel) over any stack). [`generate_greedy`]
//! prefills every prompt in one call, then feeds back the arg-max token one position at a time
//! (no prefix is recomputed), until the stop token or the length limit.
//!
//! Prompts of different lengths are decoded in groups of equal length, each group as one batch
//! with no padding, so no layer needs a padding rule to decode and every answer equals the
//! answer of its prompt alone (tested). [`strip_padding`] turns a padded batch back into
//! prompts, so left- and right-padded batches give the same answers as unpadded prompts.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{SeqError, ensure_nonzero};

/// A model that continues token sequences from a state.
pub trait Decoder<B: Backend> {
    /// What is carried between calls (KV caches, SSM states, …).
    type State;

    /// The state before the first token, for `batch` sequences.
    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State;

    /// Logits `[B, T, V]` of the next `T ≥ 1` tokens `[B, T]`, and the state after them.
    fn forward_with_state(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: Self::State,
    ) -> crate::Result<(Tensor<B, 3>, Self::State)>;
}

/// Limits of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Most tokens generated after each prompt.
    pub max_new_tokens: usize,
    /// Generation of a sequence ends after this token (which is not returned).
    pub stop_token: Option<u32>,
}

impl GenerateConfig {
    /// Up to `max_new_tokens` tokens, no stop token.
    pub fn new(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            stop_token: None,
        }
    }

    /// Ends each sequence at `token`.
    pub fn with_stop_token(mut self, token: u32) -> Self {
        self.stop_token = Some(token);
        self
    }
}

/// Greedy continuations of `prompts` (each non-empty), in the order given: the generated tokens
/// only, without the prompt and without the stop token.
///
/// No prompts give no answers (an empty `Vec`, a correct empty result). An empty prompt is a
/// [`SeqError::InvalidConfig`] naming it; the model's own errors (e.g.
/// [`SeqError::TokenOutOfRange`] for an id outside the vocabulary) are returned as they are.
pub fn generate_greedy<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    config: GenerateConfig,
    device: &B::Device,
) -> crate::Result<Vec<Vec<u32>>> {
    decode_grouped(model, prompts, config, device, &mut |logits: &[f32]| {
        argmax(logits)
    })
}

/// Settings of [`generate_sample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    /// Length limit and stop token.
    pub limits: GenerateConfig,
    /// Softmax temperature `T > 0`: logits are divided by `T` (below 1 sharper, above 1 flatter).
    pub temperature: f64,
    /// Keep only the `k` most likely tokens before sampling (`None`: all).
    pub top_k: Option<usize>,
    /// Seed of the sampling generator.
    pub seed: u64,
}

impl SampleConfig {
    /// Temperature 1, no top-k, seed 0.
    pub fn new(limits: GenerateConfig) -> Self {
        Self {
            limits,
            temperature: 1.0,
            top_k: None,
            seed: 0,
        }
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets top-k.
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Sampled continuations of `prompts`, decoded from the cached state like
/// [`generate_greedy`]: at each step the next token is drawn from
/// `softmax(logits / T)` restricted to the `top_k` most likely tokens. The same seed, prompts
/// and model give the same text; `top_k = 1` is greedy decoding.
///
/// Errors on a temperature that is not finite and positive, or `top_k = 0`.
pub fn generate_sample<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    config: SampleConfig,
    device: &B::Device,
) -> crate::Result<Vec<Vec<u32>>> {
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return Err(SeqError::OutOfRange {
            name: "temperature",
            value: config.temperature,
            expected: "a finite value > 0 (use generate_greedy for the arg-max)",
        });
    }
    if config.top_k == Some(0) {
        return Err(SeqError::ZeroSize { name: "top_k" });
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    decode_grouped(
        model,
        prompts,
        config.limits,
        device,
        &mut |logits: &[f32]| sample_token(logits, config.temperature, config.top_k, &mut rng),
    )
}

/// Index of the largest logit (the first on ties).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws a token from `softmax(logits / temperature)` over the `top_k` largest logits.
fn sample_token(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut StdRng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(top_k.unwrap_or(logits.len()).min(logits.len()));
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&i, &w) in order.iter().zip(&weights) {
        if u < w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// Decodes prompts grouped by length (each group one batch, no padding), choosing each next
/// token from its logits row with `choose`; answers come back in input order.
fn decode_grouped<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    config: GenerateConfig,
    device: &B::Device,
    choose: &mut dyn FnMut(&[f32]) -> u32,
) -> crate::Result<Vec<Vec<u32>>> {
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(SeqError::InvalidConfig(format!(
            "prompt {i} is empty; give every prompt at least one token (e.g. a start token)"
        )));
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        groups.entry(p.len()).or_default().push(i);
    }
    let mut out = vec![Vec::new(); prompts.len()];
    for (len, rows) in groups {
        let batch: Vec<&[u32]> = rows.iter().map(|&i| prompts[i].as_slice()).collect();
        for (row, generated) in rows.iter().zip(decode_equal_lengths(
            model, &batch, len, config, device, choose,
        )?) {
            out[*row] = generated;
        }
    }
    Ok(out)
}

/// Decodes prompts of one length `len` as one batch.
fn decode_equal_lengths<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[&[u32]],
    len: usize,
    config: GenerateConfig,
    device: &B::Device,
    choose: &mut dyn FnMut(&[f32]) -> u32,
) -> crate::Result<Vec<Vec<u32>>> {
    let batch = prompts.len();
    if config.max_new_tokens == 0 {
        return Ok(vec![Vec::new(); batch]);
    }
    let ids: Vec<i64> = prompts
        .iter()
        .flat_map(|p| p.iter().map(|&t| t as i64))
        .collect();
    let mut tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, len]), device); // [G, len]
    let mut state = Some(model.init_state(batch, device));
    collect_until_stop(batch, config, || {
        let current = state
            .take()
            .expect("the state is put back after every step");
        let (logits, next_state) = model.forward_with_state(tokens.clone(), current)?; // [G, T, V]
        state = Some(next_state);
        let [_, t, v] = logits.dims();
        // Host round-trip per step: sampling (temperature, top-k, the seeded generator) runs on
        // the host, and the next token is the next step's input.
        let last: Vec<f32> = logits
            .narrow(1, t - 1, 1)
            .reshape([batch, v])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| {
                SeqError::InvalidConfig(format!("reading the logits back failed: {e:?}"))
            })?; // [G·V]
        let next: Vec<i64> = last.chunks(v).map(|row| choose(row) as i64).collect(); // [G]
        tokens = Tensor::from_data(TensorData::new(next.clone(), [batch, 1]), device); // [G, 1]
        Ok(next)
    })
}

/// Calls `next_ids` (one id per row) until every row has produced `config.stop_token` or
/// `config.max_new_tokens` steps ran, and collects each row's ids before its stop token: the
/// loop shared by every decoder of the crate.
pub(crate) fn collect_until_stop(
    batch: usize,
    config: GenerateConfig,
    mut next_ids: impl FnMut() -> crate::Result<Vec<i64>>,
) -> crate::Result<Vec<Vec<u32>>> {
    let mut out = vec![Vec::new(); batch];
    let mut done = vec![false; batch];
    for _ in 0..config.max_new_tokens {
        for (b, &id) in next_ids()?.iter().enumerate() {
            if done[b] {
                continue;
            }
            if Some(id as u32) == config.stop_token {
                done[b] = true;
            } else {
                out[b].push(id as u32);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    Ok(out)
}

/// The prompt inside a padded row: `row` without the `pad` tokens at either end.
pub fn strip_padding(row: &[u32], pad: u32) -> &[u32] {
    let start = row.iter().position(|&t| t != pad).unwrap_or(row.len());
    let end = row.iter().rposition(|&t| t != pad).map_or(start, |e| e + 1);
    &row[start..end]
}

/// [`generate_greedy`] on a padded batch `tokens` `[batch, len]` (row-major), left- or
/// right-padded with `pad`: each row is stripped with [`strip_padding`] first.
///
/// Errors with [`SeqError::ZeroSize`] when `batch` or `tokens` is empty,
/// [`SeqError::ShapeMismatch`] when `tokens` is not `batch` rows of one length, and as
/// [`generate_greedy`] otherwise (a row of padding only is an empty prompt).
pub fn generate_greedy_padded<B: Backend, M: Decoder<B>>(
    model: &M,
    tokens: &[u32],
    batch: usize,
    pad: u32,
    config: GenerateConfig,
    device: &B::Device,
) -> crate::Result<Vec<Vec<u32>>> {
    ensure_nonzero("batch size", batch)?;
    ensure_nonzero("padded prompt length", tokens.len())?;
    if !tokens.len().is_multiple_of(batch) {
        return Err(SeqError::ShapeMismatch {
            what: "padded prompt batch (a multiple of the batch size)",
            expected: format!("{batch} rows"),
            got: format!("{} tokens", tokens.len()),
        });
    }
    let prompts: Vec<Vec<u32>> = tokens
        .chunks(tokens.len() / batch)
        .map(|row| strip_padding(row, pad).to_vec())
        .collect();
    generate_greedy(model, &prompts, config, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_padding_on_both_sides() {
        assert_eq!(strip_padding(&[0, 0, 5, 0, 6, 0], 0), &[5, 0, 6]);
        assert_eq!(strip_padding(&[5, 6], 0), &[5, 6]);
        assert!(strip_padding(&[0, 0], 0).is_empty());
    }
}
