//! Pig-Latin translation: the rule, word-pair files (`english piglatin` lines), a seeded split,
//! and [`PigLatinTask`], which batches pairs for an encoder–decoder or for one causal stack.
//!
//! # The rule, as the data files apply it
//! Each dash-separated part of a word is translated on its own:
//! - a part that starts with a vowel (`a e i o u`) gets `way`: `apple → appleway`;
//! - otherwise its leading consonants move to the end, followed by `ay`: `chair → airchay`.
//!   `y` ends the cluster and a leading `y` leaves it empty (`rhythm → ythmrhay`,
//!   `year → yearay`),
//!   a `u` after a leading `q` belongs to the cluster (`quiet → ietquay`, [`QuRule::Cluster`]),
//!   and a part without vowels just gets `ay` (`mrs → mrsay`).
//!
//! [`pig_latin`] applies it. It matches every pair of the small file. The large file adds
//! Norvig's 20,000 common words, translated with `u` as a plain vowel (`quick → uickqay`,
//! [`QuRule::Vowel`]) while keeping the small file's pairs, so 19 words appear twice with both
//! spellings; docs/results/pig_latin lists the residuals of each rule on each file.
//!
//! # Vocabulary
//! 26 letters, `-`, and the specials SOS, EOS, PAD (`V` = 30); see [`PigLatinVocab`].

use std::collections::BTreeMap;
use std::path::Path;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::task::{Batch, Metric, Source, Targets, Task};
use crate::error::{Result, SeqError, ensure_nonzero};

/// How a leading `qu` is treated by [`pig_latin_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuRule {
    /// `qu` moves as one consonant cluster: `quiet → ietquay` (the small file's convention).
    Cluster,
    /// `u` is a vowel like any other: `quiet → uietqay` (the large file's added words).
    Vowel,
}

/// Translates `word` (lowercase letters and `-`) into Pig-Latin with the small file's
/// conventions ([`QuRule::Cluster`]).
///
/// ```
/// use seqlayers::data::pig_latin;
/// assert_eq!(pig_latin("chimney-board").unwrap(), "imneychay-oardbay");
/// assert_eq!(pig_latin("apple").unwrap(), "appleway");
/// ```
///
/// Errors on an empty word or a character outside `a–z` and `-`.
pub fn pig_latin(word: &str) -> Result<String> {
    pig_latin_with(word, QuRule::Cluster)
}

/// [`pig_latin`] with a choice of [`QuRule`].
pub fn pig_latin_with(word: &str, qu: QuRule) -> Result<String> {
    if word.is_empty() {
        return Err(SeqError::InvalidConfig(
            "cannot translate an empty word; give at least one letter".into(),
        ));
    }
    if let Some(c) = word
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c == '-'))
    {
        return Err(SeqError::InvalidConfig(format!(
            "`{word}` contains `{c}`; Pig-Latin words use lowercase letters a–z and `-` only"
        )));
    }
    let parts: Vec<String> = word
        .split('-')
        .map(|part| translate_part(part, qu))
        .collect();
    Ok(parts.join("-"))
}

fn translate_part(part: &str, qu: QuRule) -> String {
    let b = part.as_bytes();
    if b.is_empty() {
        return String::new();
    }
    if is_vowel(b[0]) {
        return format!("{part}way");
    }
    // Leading consonant cluster: up to the first vowel or `y` (empty for a leading `y`).
    let mut cut = 0;
    while cut < b.len() && !is_vowel(b[cut]) && b[cut] != b'y' {
        cut += 1;
    }
    if qu == QuRule::Cluster && cut > 0 && cut < b.len() && b[cut] == b'u' && b[cut - 1] == b'q' {
        cut += 1;
    }
    format!("{}{}ay", &part[cut..], &part[..cut])
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// The character vocabulary: ids `0..26` for `a..z`, then `-`, SOS, EOS, PAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PigLatinVocab;

impl PigLatinVocab {
    /// Id of `-`.
    pub const DASH: u32 = 26;
    /// Start of sequence: the decoder's first input (and the separator of the one-stack layout).
    pub const SOS: u32 = 27;
    /// End of sequence: the last target token.
    pub const EOS: u32 = 28;
    /// Padding (never scored, masked in attention).
    pub const PAD: u32 = 29;
    /// Vocabulary size `V`.
    pub const SIZE: usize = 30;

    /// Ids of a word's characters.
    pub fn encode(word: &str) -> Result<Vec<u32>> {
        word.bytes()
            .map(|c| match c {
                b'a'..=b'z' => Ok((c - b'a') as u32),
                b'-' => Ok(Self::DASH),
                _ => Err(SeqError::InvalidConfig(format!(
                    "`{word}` contains `{}`; the vocabulary has a–z and `-` only",
                    c as char
                ))),
            })
            .collect()
    }

    /// The text of ids (specials shown as `<s>`, `</s>`, `_`).
    pub fn decode(ids: &[u32]) -> String {
        ids.iter()
            .map(|&id| match id {
                0..=25 => ((b'a' + id as u8) as char).to_string(),
                Self::DASH => "-".into(),
                Self::SOS => "<s>".into(),
                Self::EOS => "</s>".into(),
                Self::PAD => "_".into(),
                _ => "?".into(),
            })
            .collect()
    }
}

/// An (English, Pig-Latin) pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WordPair {
    /// The English word.
    pub english: String,
    /// Its Pig-Latin translation.
    pub pig_latin: String,
}

/// The pairs read from a file, with what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSet {
    /// Unique pairs in the vocabulary, sorted.
    pub pairs: Vec<WordPair>,
    /// Lines whose words use characters outside the vocabulary (digits, apostrophes).
    pub skipped: usize,
    /// Repeated lines.
    pub duplicates: usize,
}

/// Reads `english piglatin` lines: keeps the unique pairs whose words use only the vocabulary
/// (3,198 / 22,402 pairs of the files in `data/piglatin/`), counting the rest.
pub fn parse_pairs(text: &str, origin: &str) -> Result<PairSet> {
    let mut seen = std::collections::BTreeSet::new();
    let (mut skipped, mut duplicates) = (0, 0);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [english, pig] = words[..] else {
            return Err(SeqError::BadData {
                origin: origin.into(),
                line: i + 1,
                message: format!(
                    "expected two words `english piglatin`, found {}",
                    words.len()
                ),
            });
        };
        if PigLatinVocab::encode(english).is_err() || PigLatinVocab::encode(pig).is_err() {
            skipped += 1;
            continue;
        }
        let pair = WordPair {
            english: english.into(),
            pig_latin: pig.into(),
        };
        if !seen.insert(pair) {
            duplicates += 1;
        }
    }
    if seen.is_empty() {
        return Err(SeqError::BadData {
            origin: origin.into(),
            line: 0,
            message: "no usable `english piglatin` pair; is this the right file?".into(),
        });
    }
    Ok(PairSet {
        pairs: seen.into_iter().collect(),
        skipped,
        duplicates,
    })
}

/// [`parse_pairs`] on a file.
pub fn load_pairs(path: &Path) -> Result<PairSet> {
    let text = std::fs::read_to_string(path).map_err(|e| SeqError::read(path, e))?;
    parse_pairs(&text, &path.display().to_string())
}

/// Pairs for a word list (one or more words per line; other characters split words), each
/// translated by [`pig_latin`]; duplicates are dropped.
pub fn pairs_from_words(text: &str) -> Result<Vec<WordPair>> {
    let mut words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphabetic() || c == '-'))
        .map(|w| w.trim_matches('-').to_ascii_lowercase())
        .filter(|w| !w.is_empty() && !w.contains("--"))
        .collect();
    words.sort();
    words.dedup();
    if words.is_empty() {
        return Err(SeqError::InvalidConfig(
            "the word list holds no word of letters a–z; give a text file of words".into(),
        ));
    }
    words
        .into_iter()
        .map(|english| {
            let pig_latin = pig_latin(&english)?;
            Ok(WordPair { english, pig_latin })
        })
        .collect()
}

/// Splits `pairs` into (train, validation) by a seeded shuffle; `validation_fraction` in
/// `(0, 1)`, both parts non-empty.
pub fn split_pairs(
    pairs: &[WordPair],
    validation_fraction: f64,
    rng: &mut StdRng,
) -> Result<(Vec<WordPair>, Vec<WordPair>)> {
    if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
        return Err(SeqError::OutOfRange {
            name: "validation_fraction",
            value: validation_fraction,
            expected: "a fraction strictly between 0 and 1 (e.g. 0.1)",
        });
    }
    let n_val = ((pairs.len() as f64) * validation_fraction).round() as usize;
    if n_val == 0 || n_val >= pairs.len() {
        return Err(SeqError::InvalidConfig(format!(
            "{} pairs cannot be split into non-empty training and validation sets at fraction {validation_fraction}; give more pairs",
            pairs.len()
        )));
    }
    let mut shuffled = pairs.to_vec();
    shuffled.shuffle(rng);
    let val = shuffled.split_off(pairs.len() - n_val);
    Ok((shuffled, val))
}

/// How a pair becomes a model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq2SeqLayout {
    /// Source in [`Batch::source`]; decoder input `SOS y`, targets `y EOS`.
    EncoderDecoder,
    /// One causal sequence `x SOS y` with targets `y EOS` on the `SOS y` positions (a Mamba or
    /// any stack read by [`LanguageModel`](crate::model::LanguageModel)).
    Concatenated,
}

/// A pair as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EncodedPair {
    source: Vec<u32>,
    target: Vec<u32>,
}

/// Pig-Latin translation as a [`Task`]: word accuracy ([`Metric::ExactMatch`]) of the
/// translation up to and including EOS.
///
/// - `train_batch`: all words of a minibatch share the source length
///   (so encoder and cross-attention need no padding); targets are right-padded.
/// - `test_batch` mixes validation words of all lengths, right-padded with masks.
/// - `sample(rng, n, len)` draws validation words of source length `len`.
#[derive(Debug, Clone)]
pub struct PigLatinTask {
    train: Vec<EncodedPair>,
    validation: Vec<EncodedPair>,
    /// Training pairs grouped by source length.
    train_groups: BTreeMap<usize, Vec<usize>>,
    validation_groups: BTreeMap<usize, Vec<usize>>,
    layout: Seq2SeqLayout,
}

impl PigLatinTask {
    /// A task over the given training and validation pairs.
    pub fn new(train: &[WordPair], validation: &[WordPair], layout: Seq2SeqLayout) -> Result<Self> {
        ensure_nonzero("training pairs", train.len())?;
        ensure_nonzero("validation pairs", validation.len())?;
        let encode = |pairs: &[WordPair]| -> Result<Vec<EncodedPair>> {
            pairs
                .iter()
                .map(|p| {
                    Ok(EncodedPair {
                        source: PigLatinVocab::encode(&p.english)?,
                        target: PigLatinVocab::encode(&p.pig_latin)?,
                    })
                })
                .collect()
        };
        let group = |pairs: &[EncodedPair]| {
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, p) in pairs.iter().enumerate() {
                groups.entry(p.source.len()).or_default().push(i);
            }
            groups
        };
        let train = encode(train)?;
        let validation = encode(validation)?;
        Ok(Self {
            train_groups: group(&train),
            validation_groups: group(&validation),
            train,
            validation,
            layout,
        })
    }

    /// The layout of the batches.
    pub fn layout(&self) -> Seq2SeqLayout {
        self.layout
    }

    /// Number of training pairs.
    pub fn train_size(&self) -> usize {
        self.train.len()
    }

    /// Number of validation pairs.
    pub fn validation_size(&self) -> usize {
        self.validation.len()
    }

    /// The whole validation set as batches of at most `batch` words of one source length each
    /// (for exact validation loss and word accuracy).
    pub fn validation_batches(&self, batch: usize) -> Result<Vec<Batch>> {
        Self::grouped_batches(
            &self.validation,
            &self.validation_groups,
            batch,
            self.layout,
        )
    }

    /// The whole training set in the same form as [`validation_batches`](Self::validation_batches).
    pub fn train_batches(&self, batch: usize) -> Result<Vec<Batch>> {
        Self::grouped_batches(&self.train, &self.train_groups, batch, self.layout)
    }

    fn grouped_batches(
        pairs: &[EncodedPair],
        groups: &BTreeMap<usize, Vec<usize>>,
        batch: usize,
        layout: Seq2SeqLayout,
    ) -> Result<Vec<Batch>> {
        ensure_nonzero("batch", batch)?;
        groups
            .values()
            .flat_map(|rows| rows.chunks(batch))
            .map(|chunk| {
                let chosen: Vec<&EncodedPair> = chunk.iter().map(|&i| &pairs[i]).collect();
                build_batch(&chosen, layout)
            })
            .collect()
    }

    /// The validation words with their references, in a fixed order (source ids, target ids
    /// without EOS).
    pub fn validation_pairs(&self) -> Vec<(Vec<u32>, Vec<u32>)> {
        self.validation
            .iter()
            .map(|p| (p.source.clone(), p.target.clone()))
            .collect()
    }

    /// One batch of the given pairs (any lengths; padded with masks) in this task's layout.
    pub fn batch_of(&self, pairs: &[WordPair]) -> Result<Batch> {
        let encoded: Vec<EncodedPair> = pairs
            .iter()
            .map(|p| {
                Ok(EncodedPair {
                    source: PigLatinVocab::encode(&p.english)?,
                    target: PigLatinVocab::encode(&p.pig_latin)?,
                })
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&EncodedPair> = encoded.iter().collect();
        build_batch(&refs, self.layout)
    }
}

/// Right-pads `pairs` into one batch of `layout`.
fn build_batch(pairs: &[&EncodedPair], layout: Seq2SeqLayout) -> Result<Batch> {
    ensure_nonzero("batch", pairs.len())?;
    let pad = PigLatinVocab::PAD;
    let n = pairs.len();
    match layout {
        Seq2SeqLayout::EncoderDecoder => {
            let src_len = pairs.iter().map(|p| p.source.len()).max().unwrap_or(0);
            let len = pairs.iter().map(|p| p.target.len() + 1).max().unwrap_or(0);
            let mut source = vec![pad; n * src_len];
            let mut padding = vec![true; n * src_len];
            let mut tokens = vec![pad; n * len];
            let mut ids = vec![pad; n * len];
            let mut loss_mask = vec![false; n * len];
            for (b, p) in pairs.iter().enumerate() {
                for (t, &c) in p.source.iter().enumerate() {
                    source[b * src_len + t] = c;
                    padding[b * src_len + t] = false;
                }
                // input: SOS y; target: y EOS.
                let row = b * len;
                tokens[row] = PigLatinVocab::SOS;
                for (t, &c) in p.target.iter().enumerate() {
                    tokens[row + t + 1] = c;
                    ids[row + t] = c;
                    loss_mask[row + t] = true;
                }
                ids[row + p.target.len()] = PigLatinVocab::EOS;
                loss_mask[row + p.target.len()] = true;
            }
            let batch = Batch {
                tokens,
                batch: n,
                len,
                targets: Targets::Tokens { ids, loss_mask },
                source: Some(Source {
                    tokens: source,
                    len: src_len,
                    padding,
                }),
            };
            batch.validate()?;
            Ok(batch)
        }
        Seq2SeqLayout::Concatenated => {
            // x SOS y, targets y EOS at the SOS..y positions.
            let len = pairs
                .iter()
                .map(|p| p.source.len() + 1 + p.target.len())
                .max()
                .unwrap_or(0);
            let mut tokens = vec![pad; n * len];
            let mut ids = vec![pad; n * len];
            let mut loss_mask = vec![false; n * len];
            for (b, p) in pairs.iter().enumerate() {
                let row = b * len;
                let s = p.source.len();
                tokens[row..row + s].copy_from_slice(&p.source);
                tokens[row + s] = PigLatinVocab::SOS;
                tokens[row + s + 1..row + s + 1 + p.target.len()].copy_from_slice(&p.target);
                for (t, &c) in p
                    .target
                    .iter()
                    .chain([PigLatinVocab::EOS].iter())
                    .enumerate()
                {
                    ids[row + s + t] = c;
                    loss_mask[row + s + t] = true;
                }
            }
            let batch = Batch {
                tokens,
                batch: n,
                len,
                targets: Targets::Tokens { ids, loss_mask },
                source: None,
            };
            batch.validate()?;
            Ok(batch)
        }
    }
}

impl Task for PigLatinTask {
    /// The longest training source word.
    fn train_len(&self) -> usize {
        self.train_groups.keys().next_back().copied().unwrap_or(1)
    }

    fn sample(&self, rng: &mut StdRng, batch: usize, len: usize) -> Result<Batch> {
        let rows = self.validation_groups.get(&len).ok_or_else(|| {
            SeqError::InvalidConfig(format!(
                "no validation word has {len} letters; choose a length in {:?}",
                self.validation_groups.keys().collect::<Vec<_>>()
            ))
        })?;
        let chosen: Vec<&EncodedPair> = (0..batch)
            .map(|_| &self.validation[rows[rng.random_range(0..rows.len())]])
            .collect();
        build_batch(&chosen, self.layout)
    }

    /// Words of one source length (a length drawn in proportion to its number of words).
    fn train_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        let anchor = &self.train[rng.random_range(0..self.train.len())];
        let rows = &self.train_groups[&anchor.source.len()];
        let chosen: Vec<&EncodedPair> = (0..batch)
            .map(|_| &self.train[rows[rng.random_range(0..rows.len())]])
            .collect();
        build_batch(&chosen, self.layout)
    }

    /// `batch` validation words of mixed lengths (all of them if fewer), padded.
    fn test_batch(&self, rng: &mut StdRng, batch: usize) -> Result<Batch> {
        ensure_nonzero("batch", batch)?;
        let mut order: Vec<usize> = (0..self.validation.len()).collect();
        order.shuffle(rng);
        order.truncate(batch);
        let chosen: Vec<&EncodedPair> = order.iter().map(|&i| &self.validation[i]).collect();
        build_batch(&chosen, self.layout)
    }

    fn metric(&self) -> Metric {
        Metric::ExactMatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rule_follows_the_files_conventions() {
        for (en, pl) in [
            ("the", "ethay"),
            ("of", "ofway"),
            ("family", "amilyfay"),
            ("rhythm", "ythmrhay"),
            ("year", "yearay"),
            ("quiet", "ietquay"),
            ("square", "aresquay"),
            ("mrs", "mrsay"),
            ("chimney-board", "imneychay-oardbay"),
            ("well-known", "ellway-ownknay"),
        ] {
            assert_eq!(pig_latin(en).unwrap(), pl, "{en}");
        }
        assert_eq!(pig_latin_with("quiet", QuRule::Vowel).unwrap(), "uietqay");
        assert!(pig_latin("don't").is_err());
        assert!(pig_latin("").is_err());
    }

    #[test]
    fn layouts_put_targets_where_the_loss_is() {
        let pairs = [
            WordPair {
                english: "ab".into(),
                pig_latin: "abway".into(),
            },
            WordPair {
                english: "c".into(),
                pig_latin: "cay".into(),
            },
        ];
        let ed = PigLatinTask::new(&pairs, &pairs, Seq2SeqLayout::EncoderDecoder).unwrap();
        let b = ed.batch_of(&pairs).unwrap();
        let (s, e, p) = (PigLatinVocab::SOS, PigLatinVocab::EOS, PigLatinVocab::PAD);
        assert_eq!((b.batch, b.len), (2, 6));
        assert_eq!(b.tokens, vec![s, 0, 1, 22, 0, 24, s, 2, 0, 24, p, p]);
        let Targets::Tokens { ids, loss_mask } = &b.targets else {
            panic!("token targets")
        };
        assert_eq!(ids, &vec![0, 1, 22, 0, 24, e, 2, 0, 24, e, p, p]);
        assert_eq!(loss_mask.iter().filter(|&&m| m).count(), 6 + 4);
        let src = b.source.as_ref().unwrap();
        assert_eq!(src.tokens, vec![0, 1, 2, p]);
        assert_eq!(src.padding, vec![false, false, false, true]);

        let cat = PigLatinTask::new(&pairs, &pairs, Seq2SeqLayout::Concatenated).unwrap();
        let b = cat.batch_of(&pairs).unwrap();
        assert_eq!(b.len, 2 + 1 + 5);
        assert_eq!(&b.tokens[..8], &[0, 1, s, 0, 1, 22, 0, 24]);
        assert_eq!(&b.tokens[8..], &[2, s, 2, 0, 24, p, p, p]);
        let Targets::Tokens { ids, loss_mask } = &b.targets else {
            panic!("token targets")
        };
        assert_eq!(&ids[2..8], &[0, 1, 22, 0, 24, e]);
        assert_eq!(
            &loss_mask[..8],
            &[false, false, true, true, true, true, true, true]
        );
        assert_eq!(
            &loss_mask[8..],
            &[false, true, true, true, true, false, false, false]
        );
    }

    #[test]
    fn training_batches_share_a_source_length_and_split_is_seeded() {
        let words = "a bb ccc dd eee ffff g hh iii jjjj kk";
        let pairs = pairs_from_words(words).unwrap();
        let (tr1, va1) = split_pairs(&pairs, 0.3, &mut StdRng::seed_from_u64(4)).unwrap();
        let (tr2, va2) = split_pairs(&pairs, 0.3, &mut StdRng::seed_from_u64(4)).unwrap();
        assert_eq!((&tr1, &va1), (&tr2, &va2));
        assert_eq!(tr1.len() + va1.len(), pairs.len());
        let task = PigLatinTask::new(&tr1, &va1, Seq2SeqLayout::EncoderDecoder).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..20 {
            let b = task.train_batch(&mut rng, 5).unwrap();
            assert!(!b.source.unwrap().padding.iter().any(|&p| p));
        }
        assert!(split_pairs(&pairs, 1.0, &mut rng).is_err());
        assert!(parse_pairs("one two three\n", "x").is_err());
        assert!(parse_pairs("12 12\n", "x").is_err());
    }
}
