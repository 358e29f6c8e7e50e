//! Language modelling on a real text: a [`Vocabulary`] (characters, or words with
//! a cap and an unknown token), a [`TextCorpus`] split into training and validation by
//! contiguous blocks, [`LanguageModelTask`] (random windows, every next token scored,
//! perplexity), and the unigram/bigram baselines a model must beat.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::task::{Batch, Metric, Targets, Task};
use crate::error::{Result, SeqError, ensure_nonzero};

/// How a text is cut into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// One token per character (every distinct character of the text).
    Char,
    /// Words and punctuation marks (runs of letters/digits/apostrophes, any other non-space
    /// character alone, a newline as `\n`; spaces dropped and put back between words when
    /// decoding), the `max_words` most frequent kept, the rest mapped to `<unk>`.
    Word {
        /// Vocabulary cap (including `<unk>`).
        max_words: usize,
    },
}

/// Token ↔ id tables of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    kind: TokenKind,
    tokens: Vec<String>,
    index: HashMap<String, u32>,
}

/// The unknown token of word vocabularies.
pub const UNKNOWN: &str = "<unk>";

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if c == '\n' {
            out.push("\n".into());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

impl Vocabulary {
    /// Builds the vocabulary of `text` (sorted characters; or the most frequent words, ties
    /// broken alphabetically, after `<unk>` at id 0).
    pub fn build(text: &str, kind: TokenKind) -> Result<Self> {
        let tokens: Vec<String> = match kind {
            TokenKind::Char => {
                let mut chars: Vec<char> = text.chars().collect();
                chars.sort_unstable();
                chars.dedup();
                chars.into_iter().map(String::from).collect()
            }
            TokenKind::Word { max_words } => {
                if max_words < 2 {
                    return Err(SeqError::InvalidConfig(format!(
                        "a word vocabulary of {max_words} entries cannot hold <unk> and a word; use at least 2"
                    )));
                }
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for w in words(text) {
                    *counts.entry(w).or_default() += 1;
                }
                let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                std::iter::once(UNKNOWN.to_string())
                    .chain(ranked.into_iter().map(|(w, _)| w).take(max_words - 1))
                    .collect()
            }
        };
        if tokens.len() < 2 {
            return Err(SeqError::InvalidConfig(
                "the text has fewer than two distinct tokens; give a longer text".into(),
            ));
        }
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Ok(Self {
            kind,
            tokens,
            index,
        })
    }

    /// A vocabulary from its token list (as saved by [`Vocabulary::tokens`]); the ids are the
    /// positions. Errors on fewer than two tokens or a repeated token.
    pub fn from_tokens(kind: TokenKind, tokens: Vec<String>) -> Result<Self> {
        if tokens.len() < 2 {
            return Err(SeqError::InvalidConfig(
                "a vocabulary needs at least two tokens".into(),
            ));
        }
        let index: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        if index.len() != tokens.len() {
            return Err(SeqError::InvalidConfig(
                "the token list repeats a token; ids must be unique".into(),
            ));
        }
        Ok(Self {
            kind,
            tokens,
            index,
        })
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Number of tokens `V`.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true (a vocabulary has at least two tokens).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokenization.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// Ids of `text`. Characters outside a character vocabulary are an error; unknown words map
    /// to `<unk>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self.kind {
            TokenKind::Char => text
                .chars()
                .map(|c| {
                    self.index.get(c.to_string().as_str()).copied().ok_or_else(|| {
                        SeqError::InvalidConfig(format!(
                            "character {c:?} is not in the vocabulary; use characters of the training text"
                        ))
                    })
                })
                .collect(),
            TokenKind::Word { .. } => Ok(words(text)
                .iter()
                .map(|w| self.index.get(w.as_str()).copied().unwrap_or(0))
                .collect()),
        }
    }

    /// The text of `ids` (ids outside the vocabulary shown as `?`).
    pub fn decode(&self, ids: &[u32]) -> String {
        let token = |id: u32| self.tokens.get(id as usize).map_or("?", String::as_str);
        match self.kind {
            TokenKind::Char => ids.iter().map(|&id| token(id)).collect(),
            TokenKind::Word { .. } => {
                let mut out = String::new();
                for &id in ids {
                    let t = token(id);
                    let glue = t.len() == 1 && !t.chars().all(char::is_alphanumeric);
                    if !(out.is_empty() || out.ends_with('\n') || glue || t == "\n") {
                        out.push(' ');
                    }
                    out.push_str(t);
                }
                out
            }
        }
    }
}

/// A tokenized text split into training and validation ids.
#[derive(Debug, Clone)]
pub struct TextCorpus {
    /// The vocabulary (built on the whole text).
    pub vocabulary: Vocabulary,
    /// Training ids (the blocks not held out, in order).
    pub train: Vec<u32>,
    /// Validation ids (the held-out blocks, in order).
    pub validation: Vec<u32>,
}

impl TextCorpus {
    /// Tokenizes `text`, cuts it into `blocks` contiguous blocks and holds out a seeded
    /// `validation_fraction` of them (at least one), so validation text is never interleaved
    /// with training text below the block size.
    pub fn split(
        text: &str,
        kind: TokenKind,
        blocks: usize,
        validation_fraction: f64,
        rng: &mut StdRng,
    ) -> Result<Self> {
        ensure_nonzero("blocks", blocks)?;
        if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
            return Err(SeqError::OutOfRange {
                name: "validation_fraction",
                value: validation_fraction,
                expected: "a fraction strictly between 0 and 1 (e.g. 0.1)",
            });
        }
        let vocabulary = Vocabulary::build(text, kind)?;
        let ids = vocabulary.encode(text)?;
        if blocks < 2 || ids.len() < 2 * blocks {
            return Err(SeqError::InvalidConfig(format!(
                "{} tokens cannot be cut into {blocks} blocks with one held out; use at least 2 blocks and a longer text",
                ids.len()
            )));
        }
        let held = ((blocks as f64 * validation_fraction).round() as usize).clamp(1, blocks - 1);
        let mut order: Vec<usize> = (0..blocks).collect();
        order.shuffle(rng);
        let mut is_validation = vec![false; blocks];
        for &b in &order[..held] {
            is_validation[b] = true;
        }
        let (mut train, mut validation) = (Vec::new(), Vec::new());
        for (b, &val) in is_validation.iter().enumerate() {
            let part = &ids[b * ids.len() / blocks..(b + 1) * ids.len() / blocks];
            if val {
                validation.extend_from_slice(part);
            } else {
                train.extend_from_slice(part);
            }
        }
        Ok(Self {
            vocabulary,
            train,
            validation,
        })
    }
}

/// Next-token prediction on a [`TextCorpus`]: windows of `block_size + 1` tokens, every
/// position scored, perplexity as the metric.
///
/// `train_batch` draws random training windows; `test_batch` and `sample(rng, n, len)` draw
/// random validation windows (of `len` tokens, for perplexity against context length).
#[derive(Debug, Clone)]
pub struct LanguageModelTask {
    corpus: TextCorpus,
    block_size: usize,
}

impl LanguageModelTask {
    /// A task over `corpus` with training windows of `block_size` tokens.
    pub fn new(corpus: TextCorpus, block_size: usize) -> Result<Self> {
        ensure_nonzero("block_size", block_size)?;
        for (what, part) in [
            ("training", &corpus.train),
            ("validation", &corpus.validation),
        ] {
            if part.len() <= block_size {
                return Err(SeqError::InvalidConfig(format!(
                    "the {what} text has {} tokens, not more than the block size {block_size}; use a longer text or a smaller block",
                    part.len()
                )));
            }
        }
        Ok(Self { corpus, block_size })
    }

    /// The corpus.
    pub fn corpus(&self) -> &TextCorpus {
        &self.corpus
    }

    /// Training window length.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn windows(ids: &[u32], rng: &mut StdRng, batch: usize, len: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        ensure_nonzero("window length", len)?;
        if ids.len() <= len {
            return Err(SeqError::InvalidConfig(format!(
                "a window of {len} tokens does not fit in {} tokens; ask for a shorter length",
                ids.len()
            )));
        }
        let mut tokens = Vec::with_capacity(batch * len);
        let mut targets = Vec::with_capacity(batch * len);
        for _ in 0..batch {
            let start = rng.random_range(0..ids.len() - len);
            tokens.extend_from_slice(&ids[start..start + len]);
            targets.extend_from_slice(&ids[start + 1..start + len + 1]);
        }
        let batch = Batch {
            tokens,
            batch,
            len,
            targets: Targets::Tokens {
                ids: targets,
                loss_mask: vec![true; batch * len],
            },
            source: None,
        };
        batch.validate()?;
        Ok(batch)
    }
}

impl Task for LanguageModelTask {
    fn train_len(&self) -> usize {
        self.block_size
    }

    /// Validation windows of `len` tokens.
    fn sample(&self, rng: &mut StdRng, batch: usize, len: usize) -> Result<Batch> {
        Self::windows(&self.corpus.validation, rng, batch, len)
    }

    fn train_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        Self::windows(&self.corpus.train, rng, batch, self.block_size)
    }

    fn test_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        Self::windows(&self.corpus.validation, rng, batch, self.block_size)
    }

    fn metric(&self) -> Metric {
        Metric::Perplexity
    }
}

/// Validation perplexity of an add-one-smoothed n-gram model (`order` 1: unigram, 2: bigram)
/// estimated on `train`, scored on every token of `validation` after the first `order − 1`.
pub fn ngram_perplexity(
    train: &[u32],
    validation: &[u32],
    vocab_size: usize,
    order: usize,
) -> Result<f64> {
    ensure_nonzero("vocab_size", vocab_size)?;
    if !(1..=2).contains(&order) {
        return Err(SeqError::InvalidConfig(format!(
            "n-gram order {order} is not supported; use 1 (unigram) or 2 (bigram)"
        )));
    }
    if validation.len() < order {
        return Err(SeqError::InvalidConfig(
            "the validation text is shorter than the n-gram order".into(),
        ));
    }
    let v = vocab_size as f64;
    let mut nll = 0.0;
    let mut n = 0usize;
    if order == 1 {
        let mut counts = vec![0.0f64; vocab_size];
        for &t in train {
            counts[t as usize] += 1.0;
        }
        let total = train.len() as f64;
        for &t in validation {
            nll -= ((counts[t as usize] + 1.0) / (total + v)).ln();
            n += 1;
        }
    } else {
        let mut pair = vec![0.0f64; vocab_size * vocab_size];
        let mut first = vec![0.0f64; vocab_size];
        for w in train.windows(2) {
            pair[w[0] as usize * vocab_size + w[1] as usize] += 1.0;
            first[w[0] as usize] += 1.0;
        }
        for w in validation.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            nll -= ((pair[a * vocab_size + b] + 1.0) / (first[a] + v)).ln();
            n += 1;
        }
    }
    Ok((nll / n as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn char_and_word_vocabularies_round_trip() {
        let text = "To be, or not to be.\nThat is the question.";
        let chars = Vocabulary::build(text, TokenKind::Char).unwrap();
        assert_eq!(chars.decode(&chars.encode(text).unwrap()), text);
        assert!(chars.encode("Z").is_err());
        // Ranked: `.` and `be` (twice), then the single ones alphabetically: `\n`, `,`,
        // `That`, `To`, … — the cap keeps <unk> and six tokens.
        let words_v = Vocabulary::build(text, TokenKind::Word { max_words: 7 }).unwrap();
        assert_eq!(words_v.len(), 7);
        let ids = words_v.encode("To be or question.").unwrap();
        assert_eq!(words_v.decode(&ids[..2]), "To be");
        assert_eq!(words_v.decode(&ids[4..]), ".");
        assert_eq!(ids[2], 0);
        assert_eq!(ids[3], 0);
    }

    #[test]
    fn split_is_contiguous_seeded_and_complete() {
        let text: String = (0..400).map(|i| (b'a' + (i % 7) as u8) as char).collect();
        let split = |seed| {
            TextCorpus::split(
                &text,
                TokenKind::Char,
                10,
                0.2,
                &mut StdRng::seed_from_u64(seed),
            )
            .unwrap()
        };
        let a = split(3);
        assert_eq!(a.train.len(), 320);
        assert_eq!(a.validation.len(), 80);
        assert_eq!(a.train, split(3).train);
        let task = LanguageModelTask::new(a, 16).unwrap();
        let b = task.train_batch(&mut StdRng::seed_from_u64(0), 4).unwrap();
        let Targets::Tokens { ids, .. } = &b.targets else {
            panic!("token targets")
        };
        assert_eq!(&b.tokens[1..16], &ids[..15], "targets are the next tokens");
        assert!(task.sample(&mut StdRng::seed_from_u64(0), 2, 79).is_ok());
        assert!(task.sample(&mut StdRng::seed_from_u64(0), 2, 80).is_err());
    }

    #[test]
    fn ngram_baselines_have_their_hand_computed_values() {
        // Unigram on train [0, 0, 1], V = 2: p(0) = 3/5, p(1) = 2/5 with add-one.
        let p = ngram_perplexity(&[0, 0, 1], &[0, 1], 2, 1).unwrap();
        let expected = (-(0.6f64.ln() + 0.4f64.ln()) / 2.0).exp();
        assert!((p - expected).abs() < 1e-12);
        // Bigram on train [0, 1, 0, 1]: p(1|0) = (2+1)/(2+2), scored on [0, 1].
        let p = ngram_perplexity(&[0, 1, 0, 1], &[0, 1], 2, 2).unwrap();
        assert!((p - 4.0 / 3.0).abs() < 1e-12);
        assert!(ngram_perplexity(&[0], &[0], 2, 3).is_err());
    }
}
