//! Movie-review sentiment: rated review sentences, binary labels, a seeded split, and batches a
//! pretrained encoder reads with its padding mask.
//!
//! The sentences are the 10,605 Rotten Tomatoes snippets of Hutto & Gilbert's VADER study
//! (ICWSM 2014; the pool the Stanford Sentiment Treebank was built from), each with the mean of
//! 20 human ratings from −4 to +4. `scripts/fetch_pretrained.sh` unpacks them from the
//! vaderSentiment sdist into the cache folder ([`cache_dir`]). The label is the sign of the
//! rating (1 = positive); sentences rated exactly 0 are dropped.
//!
//! # Batches
//! A batch holds the sentences' token ids `[B, L]` (`[CLS] … [SEP]`, truncated to `max_length`,
//! right-padded with the tokenizer's pad id to the longest of the batch, as [`Tokenizer`] makes
//! them) and one label per sentence ([`Targets::Labels`]). A
//! [`BertClassifier`](crate::model::BertClassifier) finds the padding from the pad id and pools
//! over the real tokens.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::task::{Batch, Targets};
use super::tokenizer::{Padding, Tokenizer};
use crate::error::{Result, SeqError, ensure_nonzero};

/// The folder `scripts/fetch_pretrained.sh` fills: `$SEQLAYERS_CACHE`, else
/// `$XDG_CACHE_HOME/seqlayers`, else `$HOME/.cache/seqlayers` (`None` when none is set).
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("SEQLAYERS_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("seqlayers")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("seqlayers")))
}

/// Where `scripts/fetch_pretrained.sh` puts the review sentences, inside [`cache_dir`].
pub const MOVIE_REVIEWS_FILE: &str = "sentiment/movieReviewSnippets_GroundTruth.txt";

/// One review sentence with its mean human rating.
#[derive(Debug, Clone, PartialEq)]
pub struct RatedSentence {
    /// The id in the file (`<review>_<sentence>`).
    pub id: String,
    /// Mean rating, from −4 (very negative) to +4 (very positive).
    pub rating: f64,
    /// The sentence.
    pub text: String,
}

/// A sentence with its binary label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledSentence {
    /// The sentence.
    pub text: String,
    /// 1 = positive, 0 = negative.
    pub label: u32,
}

/// Parses the ground-truth file: one sentence per line, `id \t rating \t sentence` (CRLF or
/// LF). Errors with [`SeqError::BadData`] naming the line of a malformed row or an empty file.
pub fn parse_movie_reviews(text: &str, origin: &str) -> Result<Vec<RatedSentence>> {
    let bad = |line: usize, message: String| SeqError::BadData {
        origin: origin.to_string(),
        line,
        message,
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(id), Some(rating), Some(sentence)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(
                i + 1,
                "expected `id <tab> rating <tab> sentence`".into(),
            ));
        };
        let rating: f64 = rating
            .trim()
            .parse()
            .map_err(|_| bad(i + 1, format!("rating `{rating}` is not a number")))?;
        if !(-4.0..=4.0).contains(&rating) {
            return Err(bad(i + 1, format!("rating {rating} is outside [-4, 4]")));
        }
        out.push(RatedSentence {
            id: id.trim().to_string(),
            rating,
            text: sentence.trim().to_string(),
        });
    }
    if out.is_empty() {
        return Err(bad(0, "no rated sentence in the file".into()));
    }
    Ok(out)
}

/// Reads the ground-truth file (see [`parse_movie_reviews`]); a missing file is a
/// [`SeqError::Read`] that says to run `scripts/fetch_pretrained.sh`.
pub fn load_movie_reviews(path: &Path) -> Result<Vec<RatedSentence>> {
    let text = std::fs::read_to_string(path).map_err(|e| SeqError::Read {
        path: path.display().to_string(),
        message: format!("{e}; run scripts/fetch_pretrained.sh to fetch the sentences"),
    })?;
    parse_movie_reviews(&text, &path.display().to_string())
}

/// Binary labels from the ratings' signs; sentences rated exactly 0 are dropped. Returns the
/// labelled sentences and how many were dropped.
pub fn sentiment_labels(reviews: &[RatedSentence]) -> (Vec<LabeledSentence>, usize) {
    let labeled: Vec<LabeledSentence> = reviews
        .iter()
        .filter(|r| r.rating != 0.0)
        .map(|r| LabeledSentence {
            text: r.text.clone(),
            label: u32::from(r.rating > 0.0),
        })
        .collect();
    let dropped = reviews.len() - labeled.len();
    (labeled, dropped)
}

/// Train, validation and test sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentimentSplit {
    /// Training sentences.
    pub train: Vec<LabeledSentence>,
    /// Validation sentences (model selection).
    pub validation: Vec<LabeledSentence>,
    /// Test sentences (reported once, for the chosen model).
    pub test: Vec<LabeledSentence>,
}

/// Shuffles `sentences` with `seed` and cuts off `validation_fraction` and `test_fraction` of
/// them (rounded down, at least one each); the rest is the training set. Errors when the
/// fractions are not in `(0, 1)` with a non-empty training set left.
pub fn split_sentiment(
    sentences: &[LabeledSentence],
    validation_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<SentimentSplit> {
    for (name, value) in [
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ] {
        if !(value > 0.0 && value < 1.0) {
            return Err(SeqError::OutOfRange {
                name,
                value,
                expected: "a fraction in (0, 1)",
            });
        }
    }
    let n = sentences.len();
    let n_val = ((n as f64 * validation_fraction) as usize).max(1);
    let n_test = ((n as f64 * test_fraction) as usize).max(1);
    if n_val + n_test >= n {
        return Err(SeqError::InvalidConfig(format!(
            "{n} sentences leave no training set after {n_val} for validation and {n_test} for \
             test; lower the fractions"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let pick = |range: std::ops::Range<usize>| -> Vec<LabeledSentence> {
        order[range].iter().map(|&i| sentences[i].clone()).collect()
    };
    Ok(SentimentSplit {
        test: pick(0..n_test),
        validation: pick(n_test..n_test + n_val),
        train: pick(n_test + n_val..n),
    })
}

/// Tokenizes `sentences` into batches of at most `batch` (in order; shuffle the sentences
/// first for training): ids `[B, L]`, truncated to `max_length` tokens and right-padded with
/// the pad id to the longest of the batch, and the labels.
pub fn sentiment_batches(
    sentences: &[LabeledSentence],
    tokenizer: &Tokenizer,
    max_length: usize,
    batch: usize,
) -> Result<Vec<Batch>> {
    ensure_nonzero("batch size", batch)?;
    ensure_nonzero("number of sentences", sentences.len())?;
    sentences
        .chunks(batch)
        .map(|chunk| {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let encoded = tokenizer.encode(&texts, max_length, Padding::Longest)?;
            let [rows, len] = encoded.dims();
            let out = Batch {
                tokens: encoded.ids.concat(),
                batch: rows,
                len,
                targets: Targets::Labels(chunk.iter().map(|s| s.label).collect()),
                source: None,
            };
            out.validate()?;
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(n: usize) -> Vec<LabeledSentence> {
        (0..n)
            .map(|i| LabeledSentence {
                text: format!("s{i}"),
                label: (i % 2) as u32,
            })
            .collect()
    }

    #[test]
    fn parses_rows_and_names_the_bad_line() {
        let text = "1_1\t2.5\tA fine film .\r\n1_2\t-1.25\tDull .\r\n\r\n2_1\t0\tIt exists .\n";
        let rows = parse_movie_reviews(text, "t").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].rating, -1.25);
        assert_eq!(rows[0].text, "A fine film .");
        let (labeled, dropped) = sentiment_labels(&rows);
        assert_eq!(dropped, 1);
        assert_eq!(labeled.iter().map(|s| s.label).collect::<Vec<_>>(), [1, 0]);
        for (bad, line) in [
            ("1_1\t2.5\tok\nbroken row\n", 2),
            ("1_1\tgood\tok\n", 1),
            ("1_1\t7\tok\n", 1),
        ] {
            match parse_movie_reviews(bad, "t") {
                Err(SeqError::BadData { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(parse_movie_reviews("\n\n", "t").is_err());
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let all = sentences(100);
        let a = split_sentiment(&all, 0.1, 0.2, 7).unwrap();
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (70, 10, 20)
        );
        assert_eq!(a, split_sentiment(&all, 0.1, 0.2, 7).unwrap());
        assert_ne!(a, split_sentiment(&all, 0.1, 0.2, 8).unwrap());
        let mut seen: Vec<String> = a
            .train
            .iter()
            .chain(&a.validation)
            .chain(&a.test)
            .map(|s| s.text.clone())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        assert!(split_sentiment(&all, 0.0, 0.2, 7).is_err());
        assert!(split_sentiment(&all, 0.5, 0.5, 7).is_err());
    }

    #[test]
    fn cache_dir_follows_the_fetch_script() {
        // Only the precedence is checked here: the process environment is shared by the tests.
        if let Some(dir) = std::env::var_os("SEQLAYERS_CACHE").filter(|v| !v.is_empty()) {
            assert_eq!(cache_dir(), Some(PathBuf::from(dir)));
        } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            assert_eq!(cache_dir(), Some(PathBuf::from(dir).join("seqlayers")));
        }
    }
}
