//! Associative recall AR(M) with delay τ (seeds 000/001, `reference.md` §3).
//!
//! Glossary: `K` vocabulary size, `d` embedding width, `M` number of query tokens
//! (`Q = {0, …, M−1}`), `L` training length, `τ` delay between a query and its value.
//!
//! A sequence of length `n` (0-based positions):
//! 1. draw the query `q ∈ Q` and the value `v` uniformly;
//! 2. put `q` at the last position `n−1` and at `i ~ U{0, …, n−τ−2}`;
//! 3. put `v` at `i + τ` (always before the final `q`);
//! 4. fill every other position iid from `[K] ∖ {q}`; the label is `v`.
//!
//! `n = τ + 2` is the shortest sequence. With 1-based positions the first query index is
//! `1 ..= n−τ−1`: the seeds' "1 to L−τ" would put `v` on top of the final `q` (reference §3).
//! The value is drawn from `[K] ∖ {q}` so that, as Definition 1 of the seeds requires, the query
//! appears exactly twice even when `v` would otherwise equal `q`.

use burn::prelude::*;
use rand::Rng;

use super::embedding::random_unit_embedding;
use crate::error::{Result, SeqError, ensure_nonzero};

/// Parameters `(K, d, M, L, τ)` of an associative-recall task, plus the embedding seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallConfig {
    /// Vocabulary size `K`.
    pub vocab: usize,
    /// Embedding width `d`.
    pub dim: usize,
    /// Number of query tokens `M` (`M = 1`: induction head; `M = K`: full AR).
    pub n_queries: usize,
    /// Training sequence length `L`.
    pub train_len: usize,
    /// Delay `τ` between the first query and its value (`τ = 1`: value right after query).
    pub delay: usize,
    /// Seed of the fixed embedding matrix `V`.
    pub embedding_seed: u64,
}

impl RecallConfig {
    /// The standard small setting: `K = 16, d = 8, L = 64, τ = 1`, with `M` queries.
    pub fn new(n_queries: usize) -> Self {
        Self {
            vocab: 16,
            dim: 8,
            n_queries,
            train_len: 64,
            delay: 1,
            embedding_seed: 0,
        }
    }
    /// Sets the vocabulary size `K`.
    pub fn with_vocab(mut self, vocab: usize) -> Self {
        self.vocab = vocab;
        self
    }
    /// Sets the embedding width `d`.
    pub fn with_dim(mut self, dim: usize) -> Self {
        self.dim = dim;
        self
    }
    /// Sets the training length `L`.
    pub fn with_train_len(mut self, train_len: usize) -> Self {
        self.train_len = train_len;
        self
    }
    /// Sets the delay `τ`.
    pub fn with_delay(mut self, delay: usize) -> Self {
        self.delay = delay;
        self
    }
    /// Sets the embedding seed.
    pub fn with_embedding_seed(mut self, seed: u64) -> Self {
        self.embedding_seed = seed;
        self
    }
    /// The shortest valid sequence length, `τ + 2`.
    pub fn min_len(&self) -> usize {
        self.delay + 2
    }
    /// Checks every parameter and returns the error that says what to change.
    pub fn validate(&self) -> Result<()> {
        ensure_nonzero("vocab (K)", self.vocab)?;
        ensure_nonzero("dim (d)", self.dim)?;
        ensure_nonzero("n_queries (M)", self.n_queries)?;
        ensure_nonzero("delay (tau)", self.delay)?;
        if self.vocab < 2 {
            return Err(SeqError::InvalidConfig(format!(
                "vocab (K) = {} leaves no token distinct from the query; use K >= 2",
                self.vocab
            )));
        }
        if self.n_queries > self.vocab {
            return Err(SeqError::InvalidConfig(format!(
                "n_queries (M) = {} exceeds the vocabulary K = {}; choose M <= K",
                self.n_queries, self.vocab
            )));
        }
        if self.train_len < self.min_len() {
            return Err(SeqError::InvalidConfig(format!(
                "train_len (L) = {} is shorter than tau + 2 = {}; raise L or lower tau",
                self.train_len,
                self.min_len()
            )));
        }
        Ok(())
    }
}

/// A batch of recall sequences, stored as plain token ids (row-major `[batch, len]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecallBatch {
    /// Token ids, row-major `[batch, len]`.
    pub tokens: Vec<u32>,
    /// The value to recall, one per sequence.
    pub labels: Vec<u32>,
    /// 0-based position `i` of the first query in each sequence.
    pub query_positions: Vec<usize>,
    /// Number of sequences.
    pub batch: usize,
    /// Sequence length.
    pub len: usize,
}

impl RecallBatch {
    /// The token ids as an `Int` tensor `[batch, len]` and the labels as `[batch]`.
    pub fn to_tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 1, Int>) {
        let tokens: Vec<i64> = self.tokens.iter().map(|&t| t as i64).collect();
        let labels: Vec<i64> = self.labels.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::from_data(TensorData::new(tokens, [self.batch, self.len]), device);
        let labels = Tensor::from_data(TensorData::new(labels, [self.batch]), device);
        (tokens, labels)
    }

    /// The tokens of sequence `b`.
    pub fn sequence(&self, b: usize) -> &[u32] {
        &self.tokens[b * self.len..(b + 1) * self.len]
    }
}

/// The associative-recall task: the fixed embedding `V` and a sampler of batches.
#[derive(Debug, Clone)]
pub struct AssociativeRecall {
    config: RecallConfig,
    embedding: Vec<f32>,
}

impl AssociativeRecall {
    /// Validates `config` and draws the embedding matrix `V` from its seed.
    pub fn new(config: RecallConfig) -> Result<Self> {
        config.validate()?;
        let embedding = random_unit_embedding(config.vocab, config.dim, config.embedding_seed);
        Ok(Self { config, embedding })
    }

    /// The task's parameters.
    pub fn config(&self) -> &RecallConfig {
        &self.config
    }

    /// The fixed embedding `V` as a `[K, d]` tensor.
    pub fn embedding<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let data = TensorData::new(self.embedding.clone(), [self.config.vocab, self.config.dim]);
        Tensor::from_data(data, device)
    }

    /// Draws `batch` sequences of length `len` (any `len >= τ + 2`) from `rng`.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: usize,
        len: usize,
    ) -> Result<RecallBatch> {
        ensure_nonzero("batch", batch)?;
        let RecallConfig {
            vocab,
            n_queries,
            delay,
            ..
        } = self.config;
        if len < self.config.min_len() {
            return Err(SeqError::InvalidConfig(format!(
                "sequence length {len} is shorter than tau + 2 = {}; ask for a longer sequence",
                self.config.min_len()
            )));
        }
        let mut tokens = Vec::with_capacity(batch * len);
        let mut labels = Vec::with_capacity(batch);
        let mut query_positions = Vec::with_capacity(batch);
        // A uniform token of [K] \ {q}: draw from K−1 ids and skip over q.
        let other_than = |rng: &mut R, q: u32| {
            let t = rng.random_range(0..vocab as u32 - 1);
            if t >= q { t + 1 } else { t }
        };
        for _ in 0..batch {
            let q = rng.random_range(0..n_queries as u32);
            let v = other_than(rng, q);
            let i = rng.random_range(0..=len - delay - 2);
            for pos in 0..len {
                let token = if pos == i || pos == len - 1 {
                    q
                } else if pos == i + delay {
                    v
                } else {
                    other_than(rng, q)
                };
                tokens.push(token);
            }
            labels.push(v);
            query_positions.push(i);
        }
        Ok(RecallBatch {
            tokens,
            labels,
            query_positions,
            batch,
            len,
        })
    }
}

impl super::Task for AssociativeRecall {
    fn train_len(&self) -> usize {
        self.config.train_len
    }

    fn sample(
        &self,
        rng: &mut rand::rngs::StdRng,
        batch: usize,
        len: usize,
    ) -> Result<super::Batch> {
        let b = AssociativeRecall::sample(self, rng, batch, len)?;
        Ok(super::Batch {
            tokens: b.tokens,
            batch: b.batch,
            len: b.len,
            targets: super::Targets::Labels(b.labels),
            source: None,
        })
    }

    fn metric(&self) -> super::Metric {
        super::Metric::Accuracy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn task(m: usize, delay: usize) -> AssociativeRecall {
        AssociativeRecall::new(RecallConfig::new(m).with_delay(delay)).unwrap()
    }

    #[test]
    fn every_sequence_satisfies_the_definition() {
        for (m, delay) in [(1, 1), (4, 1), (16, 1), (1, 5), (16, 10)] {
            let task = task(m, delay);
            let mut rng = StdRng::seed_from_u64(7);
            for len in [delay + 2, delay + 3, 17, 64, 192] {
                let batch = task.sample(&mut rng, 200, len).unwrap();
                for b in 0..batch.batch {
                    let seq = batch.sequence(b);
                    let q = seq[len - 1];
                    let i = batch.query_positions[b];
                    assert!((q as usize) < m, "query {q} outside Q = first {m} tokens");
                    let q_positions: Vec<usize> = (0..len).filter(|&p| seq[p] == q).collect();
                    assert_eq!(
                        q_positions,
                        vec![i, len - 1],
                        "q must appear exactly at i and at the end"
                    );
                    assert!(i + delay < len - 1);
                    assert_eq!(
                        seq[i + delay],
                        batch.labels[b],
                        "value at i + tau is the label"
                    );
                    assert!(seq.iter().all(|&t| (t as usize) < 16));
                }
            }
        }
    }

    #[test]
    fn first_query_position_is_uniform() {
        // len 12, delay 1 → i ∈ {0..=9}: 10 cells; chi-square with 9 dof, 0.999 quantile ≈ 27.9.
        let task = task(1, 1);
        let mut rng = StdRng::seed_from_u64(3);
        let batch = task.sample(&mut rng, 20_000, 12).unwrap();
        let mut counts = [0usize; 10];
        for &i in &batch.query_positions {
            counts[i] += 1;
        }
        let expected = 20_000.0 / 10.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 27.9, "chi2 = {chi2}, counts = {counts:?}");
    }

    #[test]
    fn labels_and_queries_cover_their_ranges_uniformly() {
        let task = task(4, 1);
        let mut rng = StdRng::seed_from_u64(11);
        let batch = task.sample(&mut rng, 16_000, 8).unwrap();
        let mut q_counts = [0usize; 4];
        for b in 0..batch.batch {
            q_counts[batch.sequence(b)[7] as usize] += 1;
        }
        for c in q_counts {
            assert!(
                (c as f64 - 4000.0).abs() < 250.0,
                "query counts {q_counts:?}"
            );
        }
        let mut v_counts = [0usize; 16];
        for &v in &batch.labels {
            v_counts[v as usize] += 1;
        }
        assert!(
            v_counts.iter().all(|&c| c > 700),
            "value counts {v_counts:?}"
        );
    }

    #[test]
    fn same_seed_same_data() {
        let task = task(8, 2);
        let a = task.sample(&mut StdRng::seed_from_u64(5), 32, 40).unwrap();
        let b = task.sample(&mut StdRng::seed_from_u64(5), 32, 40).unwrap();
        let c = task.sample(&mut StdRng::seed_from_u64(6), 32, 40).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        let bad = [
            RecallConfig::new(17),                                // M > K
            RecallConfig::new(0),                                 // M = 0
            RecallConfig::new(1).with_dim(0),                     // d = 0
            RecallConfig::new(1).with_vocab(0),                   // K = 0
            RecallConfig::new(1).with_delay(0),                   // tau = 0
            RecallConfig::new(1).with_train_len(3).with_delay(2), // L < tau + 2
        ];
        for config in bad {
            assert!(
                AssociativeRecall::new(config.clone()).is_err(),
                "{config:?} accepted"
            );
        }
        let task = task(1, 5);
        let mut rng = StdRng::seed_from_u64(0);
        assert!(matches!(
            task.sample(&mut rng, 4, 6),
            Err(SeqError::InvalidConfig(_))
        ));
        assert!(matches!(
            task.sample(&mut rng, 0, 64),
            Err(SeqError::ZeroSize { .. })
        ));
        assert!(task.sample(&mut rng, 4, 7).is_ok());
    }

    #[test]
    fn tensors_match_the_batch() {
        type B = crate::backend::Cpu;
        let task = task(2, 1);
        let batch = task.sample(&mut StdRng::seed_from_u64(1), 3, 5).unwrap();
        let (tokens, labels) = batch.to_tensors::<B>(&Default::default());
        assert_eq!(tokens.dims(), [3, 5]);
        let t: Vec<i64> = tokens.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(
            t,
            batch.tokens.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        let l: Vec<i64> = labels.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(
            l,
            batch.labels.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        let e = task.embedding::<B>(&Default::default());
        assert_eq!(e.dims(), [16, 8]);
    }
}
