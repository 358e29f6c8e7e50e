//! Key/value cache for incremental (token-by-token) decoding.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The keys and values a causal self-attention layer has produced so far.
///
/// Keys are stored *after* RoPE rotation at their absolute positions, so cached entries never
/// need recomputing. One cache per layer; start each sequence with [`KvCache::new`].
#[derive(Debug, Clone, Default)]
pub struct KvCache<B: Backend> {
    /// Cached keys `[B, H, T, d_head]`.
    pub(crate) keys: Option<Tensor<B, 4>>,
    /// Cached values `[B, H, T, d_head]`.
    pub(crate) values: Option<Tensor<B, 4>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache (position 0).
    pub fn new() -> Self {
        Self {
            keys: None,
            values: None,
        }
    }

    /// Number of cached positions `T` (the absolute position of the next token).
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// `true` before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the cached entries, `None` when empty.
    pub fn batch_size(&self) -> Option<usize> {
        self.keys.as_ref().map(|k| k.dims()[0])
    }

    /// Forgets everything (back to position 0).
    pub fn clear(&mut self) {
        self.keys = None;
        self.values = None;
    }

    /// Appends new keys/values `[B, H, T_new, d_head]` and returns all of them.
    pub(crate) fn append(
        &mut self,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let keys = match self.keys.take() {
            Some(old) => Tensor::cat(vec![old, k], 2), // [B, H, T + T_new, d_head]
            None => k,
        };
        let values = match self.values.take() {
            Some(old) => Tensor::cat(vec![old, v], 2), // [B, H, T + T_new, d_head]
            None => v,
        };
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys, values)
    }
}
