//! Copying and n-gram lookup (Jelassi et al., "Repeat After Me: Transformers are
//! Better than State Space Models at Copying", ICML 2024).
//!
//! # Glossary
//! - `V` letters (the first `V` lowercase letters, ids `0..V`), then the specials `$` BOS (`V`),
//!   `|` separator (`V+1`), `.` EOS (`V+2`), `*` pad (`V+3`): [`CopyTask::vocab_size`] `= V + 4`.
//! - `x` the string (length `L`), `g` an n-gram (`n` letters) occurring exactly once in `x`,
//!   `a` the text that follows `g` in `x` (optionally cut to a fixed answer length).
//!
//! | task | prompt | answer |
//! |---|---|---|
//! | [`CopyKind::Copy`] | `$ x \|` | `x .` |
//! | [`CopyKind::PrefixNgram`] | `$ g \| x \|` | `a .` |
//! | [`CopyKind::SuffixNgram`] | `$ x \| g` | `a .` |
//!
//! Training rows pack examples back to back into a context of fixed length, padded with `*`,
//! with the loss on answer tokens only, as the paper's `CopyDataset` does (no state or attention
//! reset between packed examples); [`CopyConfig::with_packing`]`(false)` puts one example per
//! training row instead. Evaluation puts one example per row (padded to the longest), so the
//! [`Metric::ExactMatch`] of a row is the string-level exact match of its greedily generated
//! answer, up to and including `.`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::rngs::StdRng;

use super::task::{Batch, Metric, Targets, Task};
use crate::error::{Result, SeqError, ensure_nonzero};

/// Which string task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyKind {
    /// `$ x | x .`
    Copy,
    /// `$ g | x | a .`: the key comes before the string.
    PrefixNgram,
    /// `$ x | g a .`: the key comes after the string.
    SuffixNgram,
}

impl CopyKind {
    /// Every task.
    pub const ALL: [CopyKind; 3] = [CopyKind::Copy, CopyKind::PrefixNgram, CopyKind::SuffixNgram];

    /// The name used on the command line and in reports: `copy`, `prefix`, `suffix`.
    pub fn name(self) -> &'static str {
        match self {
            CopyKind::Copy => "copy",
            CopyKind::PrefixNgram => "prefix",
            CopyKind::SuffixNgram => "suffix",
        }
    }
}

impl fmt::Display for CopyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CopyKind {
    type Err = SeqError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "copy" => Ok(CopyKind::Copy),
            "prefix" | "prefix_ngram" | "prefix-ngram" => Ok(CopyKind::PrefixNgram),
            "suffix" | "suffix_ngram" | "suffix-ngram" => Ok(CopyKind::SuffixNgram),
            other => Err(SeqError::InvalidConfig(format!(
                "unknown task `{other}`; use copy, prefix or suffix"
            ))),
        }
    }
}

/// Parameters of a [`CopyTask`].
#[derive(Debug, Clone, PartialEq)]
pub struct CopyConfig {
    /// Which task.
    pub kind: CopyKind,
    /// Number of letters `V` (1 to 26; the n-gram tasks need at least 2).
    pub letters: usize,
    /// Key length `n` of the n-gram tasks.
    pub ngram: usize,
    /// Shortest training string.
    pub train_min: usize,
    /// Longest training string.
    pub train_max: usize,
    /// Length of a packed training row.
    pub context: usize,
    /// Cut the lookup answer to this many letters (`None`: the whole continuation).
    pub answer_len: Option<usize>,
    /// Strings drawn before giving up on finding a key that occurs exactly once.
    pub max_tries: usize,
    /// Pack training examples back to back into rows of `context` tokens (`true`, the paper's
    /// layout), or put one example per training row (`false`; a batch of `b` rows then holds
    /// exactly `b` examples and every example starts from a fresh state).
    pub packed: bool,
}

impl CopyConfig {
    /// The defaults of the issue: 10 letters, trigrams, training strings of 5 to 20 letters in
    /// rows of 220 tokens, whole answers.
    pub fn new(kind: CopyKind) -> Self {
        Self {
            kind,
            letters: 10,
            ngram: 3,
            train_min: 5,
            train_max: 20,
            context: 220,
            answer_len: None,
            max_tries: 1000,
            packed: true,
        }
    }

    /// Packs training examples into rows (`true`, the default) or puts one per row (`false`).
    pub fn with_packing(mut self, packed: bool) -> Self {
        self.packed = packed;
        self
    }

    /// Sets the number of letters.
    pub fn with_letters(mut self, letters: usize) -> Self {
        self.letters = letters;
        self
    }

    /// Sets the key length.
    pub fn with_ngram(mut self, ngram: usize) -> Self {
        self.ngram = ngram;
        self
    }

    /// Sets the training string lengths `min..=max`.
    pub fn with_train_lengths(mut self, min: usize, max: usize) -> Self {
        self.train_min = min;
        self.train_max = max;
        self
    }

    /// Sets the packed row length.
    pub fn with_context(mut self, context: usize) -> Self {
        self.context = context;
        self
    }

    /// Cuts lookup answers to `len` letters.
    pub fn with_answer_len(mut self, len: Option<usize>) -> Self {
        self.answer_len = len;
        self
    }

    /// Tokens of the longest example with a string of `len` letters.
    pub fn example_len(&self, len: usize) -> usize {
        let answer = |n: usize| {
            let rest = len.saturating_sub(n);
            self.answer_len.map_or(rest, |a| a.min(rest))
        };
        match self.kind {
            CopyKind::Copy => 2 * len + 3, // $ x | x .
            CopyKind::PrefixNgram => self.ngram + len + answer(self.ngram) + 4, // $ g | x | a .
            CopyKind::SuffixNgram => len + self.ngram + answer(self.ngram) + 3, // $ x | g a .
        }
    }

    /// Shortest string the task is defined for (the n-gram tasks need a key and one letter
    /// after it).
    pub fn min_string_len(&self) -> usize {
        match self.kind {
            CopyKind::Copy => 1,
            _ => self.ngram + 1,
        }
    }

    /// Checks every field; the errors say what to change.
    pub fn validate(&self) -> Result<()> {
        if !(1..=26).contains(&self.letters) {
            return Err(SeqError::OutOfRange {
                name: "letters",
                value: self.letters as f64,
                expected: "1 to 26 letters",
            });
        }
        ensure_nonzero("ngram", self.ngram)?;
        ensure_nonzero("train_min", self.train_min)?;
        ensure_nonzero("max_tries", self.max_tries)?;
        if let Some(a) = self.answer_len {
            ensure_nonzero("answer_len", a)?;
        }
        if self.train_min > self.train_max {
            return Err(SeqError::InvalidConfig(format!(
                "training lengths {}..{} are empty; give the shorter length first",
                self.train_min, self.train_max
            )));
        }
        if self.kind != CopyKind::Copy {
            if self.letters < 2 {
                return Err(SeqError::InvalidConfig(
                    "the n-gram tasks need at least 2 letters for a key to occur only once".into(),
                ));
            }
            if self.train_min <= self.ngram {
                return Err(SeqError::InvalidConfig(format!(
                    "strings of {} letters leave no answer after a {}-gram key; make the \
                     shortest training string longer than n = {}",
                    self.train_min, self.ngram, self.ngram
                )));
            }
        }
        let longest = self.example_len(self.train_max);
        if longest > self.context {
            return Err(SeqError::InvalidConfig(format!(
                "an example with a {}-letter string takes {longest} tokens but a training row \
                 holds {}; raise the context to at least {longest} or shorten the strings",
                self.train_max, self.context
            )));
        }
        Ok(())
    }
}

/// One example: the prompt and the answer the model must produce (ending with `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// `$ x |`, `$ g | x |` or `$ x | g`.
    pub prompt: Vec<u32>,
    /// `x .` or `a .`.
    pub answer: Vec<u32>,
}

impl Example {
    /// Prompt followed by answer.
    pub fn tokens(&self) -> Vec<u32> {
        self.prompt.iter().chain(&self.answer).copied().collect()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.answer.len()
    }

    /// Always false (an example has a prompt and an answer).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The copying / n-gram lookup task: a seeded generator of examples and batches.
#[derive(Debug, Clone)]
pub struct CopyTask {
    config: CopyConfig,
}

impl CopyTask {
    /// Validates `config`.
    pub fn new(config: CopyConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The task's parameters.
    pub fn config(&self) -> &CopyConfig {
        &self.config
    }

    /// `V + 4` token ids.
    pub fn vocab_size(&self) -> usize {
        self.config.letters + 4
    }

    /// `$`, the first token of every example.
    pub fn bos(&self) -> u32 {
        self.config.letters as u32
    }

    /// `|`.
    pub fn sep(&self) -> u32 {
        self.config.letters as u32 + 1
    }

    /// `.`, the last token of every answer (generation stops there).
    pub fn eos(&self) -> u32 {
        self.config.letters as u32 + 2
    }

    /// `*`, the padding token (never scored).
    pub fn pad(&self) -> u32 {
        self.config.letters as u32 + 3
    }

    /// The text of `ids`: letters, `$`, `|`, `.`, `*` (`?` for ids outside the vocabulary).
    pub fn render(&self, ids: &[u32]) -> String {
        let v = self.config.letters as u32;
        ids.iter()
            .map(|&t| match t {
                t if t < v => char::from(b'a' + t as u8),
                t if t == v => '$',
                t if t == v + 1 => '|',
                t if t == v + 2 => '.',
                t if t == v + 3 => '*',
                _ => '?',
            })
            .collect()
    }

    /// Draws one example with a string of `len` letters.
    ///
    /// Errors when `len` is too short for the task, or when no string with a key that occurs
    /// exactly once was found in `max_tries` draws (too few letters for the length).
    pub fn example(&self, rng: &mut StdRng, len: usize) -> Result<Example> {
        let c = &self.config;
        if len < c.min_string_len() {
            return Err(SeqError::InvalidConfig(format!(
                "a {}-letter string is too short for the {} task (at least {})",
                len,
                c.kind,
                c.min_string_len()
            )));
        }
        let (bos, sep, eos) = (self.bos(), self.sep(), self.eos());
        let letters = c.letters as u32;
        let draw = |rng: &mut StdRng| -> Vec<u32> {
            (0..len).map(|_| rng.random_range(0..letters)).collect()
        };
        if c.kind == CopyKind::Copy {
            let x = draw(rng);
            let mut prompt = vec![bos];
            prompt.extend(&x);
            prompt.push(sep);
            let mut answer = x;
            answer.push(eos);
            return Ok(Example { prompt, answer });
        }
        let n = c.ngram;
        for _ in 0..c.max_tries {
            let x = draw(rng);
            // Keys that occur exactly once and leave at least one letter after them.
            let unique: Vec<usize> = (0..len - n)
                .filter(|&p| {
                    let key = &x[p..p + n];
                    x.windows(n).filter(|w| *w == key).count() == 1
                })
                .collect();
            if unique.is_empty() {
                continue;
            }
            let p = unique[rng.random_range(0..unique.len())];
            let key = x[p..p + n].to_vec();
            let rest = &x[p + n..];
            let take = c.answer_len.map_or(rest.len(), |a| a.min(rest.len()));
            let mut answer = rest[..take].to_vec();
            answer.push(eos);
            let prompt = match c.kind {
                CopyKind::PrefixNgram => {
                    let mut v = vec![bos];
                    v.extend(&key);
                    v.push(sep);
                    v.extend(&x);
                    v.push(sep);
                    v
                }
                _ => {
                    let mut v = vec![bos];
                    v.extend(&x);
                    v.push(sep);
                    v.extend(&key);
                    v
                }
            };
            return Ok(Example { prompt, answer });
        }
        Err(SeqError::InvalidConfig(format!(
            "no {n}-gram occurring exactly once in {} random {len}-letter strings over {} letters; \
             use more letters, a longer n-gram or shorter strings",
            c.max_tries, c.letters
        )))
    }

    /// A training batch: rows of `context` tokens packed with examples (string lengths uniform
    /// in `train_min..=train_max`), padded, the loss on answer tokens only.
    pub fn packed_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        let c = &self.config;
        let width = c.context;
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            let mut row: Vec<(u32, bool)> = Vec::with_capacity(width);
            loop {
                let len = rng.random_range(c.train_min..=c.train_max);
                let ex = self.example(rng, len)?;
                if row.len() + ex.len() > width {
                    break;
                }
                row.extend(ex.prompt.iter().map(|&t| (t, false)));
                row.extend(ex.answer.iter().map(|&t| (t, true)));
            }
            rows.push(row);
        }
        Ok(self.to_batch(rows, width))
    }

    /// One example per row (right-padded to the longest), the loss on the answer: the
    /// evaluation form.
    pub fn example_batch(&self, examples: &[Example]) -> Batch {
        let width = examples.iter().map(Example::len).max().unwrap_or(1);
        let rows = examples
            .iter()
            .map(|ex| {
                ex.prompt
                    .iter()
                    .map(|&t| (t, false))
                    .chain(ex.answer.iter().map(|&t| (t, true)))
                    .collect()
            })
            .collect();
        self.to_batch(rows, width)
    }

    /// Rows of `(token, is answer)` → inputs, next-token targets and the loss mask (a position
    /// is scored when the token it predicts is an answer token).
    fn to_batch(&self, rows: Vec<Vec<(u32, bool)>>, width: usize) -> Batch {
        let pad = self.pad();
        let batch = rows.len();
        let mut tokens = Vec::with_capacity(batch * width);
        let mut ids = Vec::with_capacity(batch * width);
        let mut loss_mask = Vec::with_capacity(batch * width);
        for row in rows {
            for t in 0..width {
                tokens.push(row.get(t).map_or(pad, |&(tok, _)| tok));
                let next = row.get(t + 1);
                ids.push(next.map_or(pad, |&(tok, _)| tok));
                loss_mask.push(next.is_some_and(|&(_, answer)| answer));
            }
        }
        Batch {
            tokens,
            batch,
            len: width,
            targets: Targets::Tokens { ids, loss_mask },
            source: None,
        }
    }
}

impl Task for CopyTask {
    /// The longest training string.
    fn train_len(&self) -> usize {
        self.config.train_max
    }

    /// `batch` examples with strings of exactly `len` letters, one per row.
    fn sample(&self, rng: &mut StdRng, batch: usize, len: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        let examples = (0..batch)
            .map(|_| self.example(rng, len))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.example_batch(&examples))
    }

    /// Packed rows ([`CopyTask::packed_batch`]), or one example per row when
    /// [`CopyConfig::packed`] is off.
    fn train_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        if self.config.packed {
            self.packed_batch(rng, batch)
        } else {
            self.test_batch(rng, batch)
        }
    }

    /// One example per row, string lengths uniform in the training range.
    fn test_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        let (lo, hi) = (self.config.train_min, self.config.train_max);
        let examples = (0..batch)
            .map(|_| {
                let len = rng.random_range(lo..=hi);
                self.example(rng, len)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.example_batch(&examples))
    }

    fn metric(&self) -> Metric {
        Metric::ExactMatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn task(kind: CopyKind) -> CopyTask {
        CopyTask::new(CopyConfig::new(kind)).unwrap()
    }

    #[test]
    fn examples_have_the_task_formats_and_a_unique_key() {
        let mut rng = StdRng::seed_from_u64(1);
        for kind in CopyKind::ALL {
            let t = task(kind);
            for len in [4usize, 9, 20, 60] {
                let ex = t.example(&mut rng, len).unwrap();
                let text = t.render(&ex.tokens());
                assert_eq!(*ex.answer.last().unwrap(), t.eos(), "{text}");
                assert_eq!(ex.prompt[0], t.bos(), "{text}");
                let letters = |s: &[u32]| s.iter().all(|&c| c < 10);
                match kind {
                    CopyKind::Copy => {
                        // $ x | x .
                        assert_eq!(ex.prompt.len(), len + 2);
                        assert_eq!(ex.prompt[len + 1], t.sep());
                        assert_eq!(&ex.prompt[1..=len], &ex.answer[..len], "{text}");
                    }
                    _ => {
                        let n = 3;
                        let (key, x) = if kind == CopyKind::PrefixNgram {
                            // $ g | x |
                            assert_eq!(ex.prompt[n + 1], t.sep());
                            assert_eq!(*ex.prompt.last().unwrap(), t.sep());
                            (&ex.prompt[1..=n], &ex.prompt[n + 2..n + 2 + len])
                        } else {
                            // $ x | g
                            assert_eq!(ex.prompt[len + 1], t.sep());
                            (&ex.prompt[len + 2..], &ex.prompt[1..=len])
                        };
                        assert!(letters(key) && letters(x) && key.len() == n, "{text}");
                        let hits: Vec<usize> =
                            (0..=len - n).filter(|&p| &x[p..p + n] == key).collect();
                        assert_eq!(hits.len(), 1, "the key occurs once: {text}");
                        let after = &x[hits[0] + n..];
                        assert!(!after.is_empty());
                        assert_eq!(&ex.answer[..ex.answer.len() - 1], after, "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_loss_mask_covers_exactly_the_answers() {
        let mut rng = StdRng::seed_from_u64(2);
        for kind in CopyKind::ALL {
            let t = task(kind);
            let b = t.packed_batch(&mut rng, 3).unwrap();
            assert_eq!((b.batch, b.len), (3, 220));
            b.validate().unwrap();
            let Targets::Tokens { ids, loss_mask } = &b.targets else {
                panic!("token targets")
            };
            for r in 0..3 {
                let row = &b.tokens[r * 220..(r + 1) * 220];
                // Re-derive the answers by parsing the row: after the prompt, up to each `.`.
                let mut scored = 0;
                for i in 0..220 {
                    if i + 1 < 220 {
                        assert_eq!(ids[r * 220 + i], row[i + 1], "targets are the next tokens");
                    }
                    if loss_mask[r * 220 + i] {
                        scored += 1;
                        assert_ne!(row[i + 1], t.pad());
                        assert_ne!(row[i + 1], t.bos());
                    }
                }
                let eos = row.iter().filter(|&&c| c == t.eos()).count();
                assert!(eos >= 1, "at least one example per row");
                // Every `.` is scored, and nothing after the last example is.
                let last_eos = row.iter().rposition(|&c| c == t.eos()).unwrap();
                assert!(loss_mask[r * 220 + last_eos - 1]);
                assert!(
                    loss_mask[r * 220 + last_eos..(r + 1) * 220]
                        .iter()
                        .all(|&m| !m)
                );
                assert!(row[last_eos + 1..].iter().all(|&c| c == t.pad()));
                if kind == CopyKind::Copy {
                    // Answers are exactly half of the letters plus the `.`s.
                    let letters = row.iter().filter(|&&c| c < 10).count();
                    assert_eq!(scored, letters / 2 + eos);
                }
            }
            // Evaluation rows: one example each, the mask on its answer.
            let ex = t.example(&mut rng, 12).unwrap();
            let one = t.example_batch(std::slice::from_ref(&ex));
            let Targets::Tokens { loss_mask, .. } = &one.targets else {
                panic!()
            };
            let scored: Vec<usize> = (0..one.len).filter(|&i| loss_mask[i]).collect();
            let first = ex.prompt.len() - 1;
            assert_eq!(scored, (first..first + ex.answer.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn unpacked_training_rows_hold_one_example_each() {
        let t = CopyTask::new(CopyConfig::new(CopyKind::Copy).with_packing(false)).unwrap();
        let b = t.train_batch(&mut StdRng::seed_from_u64(3), 5).unwrap();
        b.validate().unwrap();
        assert_eq!(b.batch, 5);
        for r in 0..5 {
            let row = &b.tokens[r * b.len..(r + 1) * b.len];
            assert_eq!(row[0], t.bos(), "every row starts a new example");
            assert_eq!(row.iter().filter(|&&c| c == t.bos()).count(), 1);
            assert_eq!(row.iter().filter(|&&c| c == t.eos()).count(), 1);
            let len = row.iter().position(|&c| c == t.sep()).unwrap() - 1;
            assert!((5..=20).contains(&len), "training lengths: {len}");
        }
        // The width is the longest example, not the packed context.
        assert!(b.len <= 2 * 20 + 3);
        // Packing stays the default.
        let packed = task(CopyKind::Copy)
            .train_batch(&mut StdRng::seed_from_u64(3), 5)
            .unwrap();
        assert_eq!(packed.len, 220);
    }

    #[test]
    fn same_seed_same_batches() {
        for kind in CopyKind::ALL {
            let t = task(kind);
            let a = t.packed_batch(&mut StdRng::seed_from_u64(7), 2).unwrap();
            let b = t.packed_batch(&mut StdRng::seed_from_u64(7), 2).unwrap();
            let c = t.packed_batch(&mut StdRng::seed_from_u64(8), 2).unwrap();
            assert_eq!(a, b);
            assert_ne!(a, c);
        }
    }

    #[test]
    fn impossible_configurations_are_errors_that_name_the_fix() {
        let bad = |c: CopyConfig| CopyTask::new(c).unwrap_err().to_string();
        let e = bad(CopyConfig::new(CopyKind::PrefixNgram).with_train_lengths(3, 10));
        assert!(e.contains("longer than n"), "{e}");
        let e = bad(CopyConfig::new(CopyKind::Copy).with_train_lengths(5, 200));
        assert!(e.contains("raise the context"), "{e}");
        let e = bad(CopyConfig::new(CopyKind::Copy).with_train_lengths(9, 5));
        assert!(e.contains("shorter length first"), "{e}");
        assert!(bad(CopyConfig::new(CopyKind::Copy).with_letters(27)).contains("letters"));
        assert!(bad(CopyConfig::new(CopyKind::SuffixNgram).with_letters(1)).contains("2 letters"));
        // Two letters and trigrams: a 200-letter string has no unique trigram.
        let t = CopyTask::new(
            CopyConfig::new(CopyKind::SuffixNgram)
                .with_letters(2)
                .with_context(1000),
        )
        .unwrap();
        let e = t
            .example(&mut StdRng::seed_from_u64(0), 200)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use more letters"), "{e}");
        assert!(t.example(&mut StdRng::seed_from_u64(0), 3).is_err());
    }
}
