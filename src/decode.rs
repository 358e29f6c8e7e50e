//! Greedy generation over any model that decodes with state.
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
pub fn generate_greedy<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    config: GenerateConfig,
    device: &B::Device,
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
        for (row, generated) in rows
            .iter()
            .zip(greedy_equal_lengths(model, &batch, len, config, device)?)
        {
            out[*row] = generated;
        }
    }
    Ok(out)
}

/// [`generate_greedy`] for prompts of one length `len`, as one batch.
fn greedy_equal_lengths<B: Backend, M: Decoder<B>>(
    model: &M,
    prompts: &[&[u32]],
    len: usize,
    config: GenerateConfig,
    device: &B::Device,
) -> crate::Result<Vec<Vec<u32>>> {
    let batch = prompts.len();
    let mut out = vec![Vec::new(); batch];
    if config.max_new_tokens == 0 {
        return Ok(out);
    }
    let ids: Vec<i64> = prompts
        .iter()
        .flat_map(|p| p.iter().map(|&t| t as i64))
        .collect();
    let mut tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, len]), device); // [G, len]
    let mut state = model.init_state(batch, device);
    let mut done = vec![false; batch];
    for _ in 0..config.max_new_tokens {
        let (logits, next_state) = model.forward_with_state(tokens, state)?; // [G, T, V]
        state = next_state;
        let [_, t, v] = logits.dims();
        let last = logits.narrow(1, t - 1, 1).reshape([batch, v]); // [G, V]
        let next: Vec<i64> = last
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .map_err(|e| {
                SeqError::InvalidConfig(format!("reading the arg-max back failed: {e:?}"))
            })?; // [G]
        for (b, &id) in next.iter().enumerate() {
            if done[b] {
                continue;
            }
            let id = id as u32;
            if Some(id) == config.stop_token {
                done[b] = true;
            } else {
                out[b].push(id);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        tokens = Tensor::from_data(TensorData::new(next, [batch, 1]), device); // [G, 1]
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
pub fn generate_greedy_padded<B: Backend, M: Decoder<B>>(
    model: &M,
    tokens: &[u32],
    batch: usize,
    pad: u32,
    config: GenerateConfig,
    device: &B::Device,
) -> crate::Result<Vec<Vec<u32>>> {
    ensure_nonzero("batch size", batch)?;
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
