//! Tasks: the [`Task`] trait every task implements, and the synthetic tasks.
//!
//! - [`AssociativeRecall`]: associative recall AR(M) with delay τ (seeds 000/001); the induction
//!   head task is the special case M = 1.
//! - [`CopyTask`]: copying and prefix/suffix n-gram lookup (Jelassi et al., 2024).
//! - [`PigLatinTask`]: English → Pig-Latin translation of words, with the rule
//!   [`pig_latin`] and word-pair files.
//! - [`LanguageModelTask`]: next-token prediction on a real text ([`TextCorpus`], character or
//!   word [`Vocabulary`]), with the n-gram baselines ([`ngram_perplexity`]).
//! - Movie-review sentiment ([`load_movie_reviews`], [`split_sentiment`],
//!   [`sentiment_batches`]) tokenized for a pretrained encoder by a `tokenizer.json`
//!   [`Tokenizer`].
//!
//! Batches are generated on the fly from a seeded RNG, so a run is reproducible from its seed
//! and any sequence length can be drawn (training length L, evaluation up to 3L and beyond).

mod copying;
mod embedding;
mod piglatin;
mod recall;
mod sentiment;
mod task;
mod text;
mod tokenizer;

pub use copying::{CopyConfig, CopyKind, CopyTask, Example};
pub use embedding::{closest_pairs, random_unit_embedding};
pub use piglatin::{
    PairSet, PigLatinTask, PigLatinVocab, QuRule, Seq2SeqLayout, WordPair, load_pairs,
    pairs_from_words, parse_pairs, pig_latin, pig_latin_with, split_pairs,
};
pub use recall::{AssociativeRecall, RecallBatch, RecallConfig};
pub use sentiment::{
    LabeledSentence, MOVIE_REVIEWS_FILE, RatedSentence, SentimentSplit, cache_dir,
    load_movie_reviews, parse_movie_reviews, sentiment_batches, sentiment_labels, split_sentiment,
};
pub use task::{Batch, Metric, Source, Targets, Task};
pub use text::{LanguageModelTask, TextCorpus, TokenKind, UNKNOWN, Vocabulary, ngram_perplexity};
pub use tokenizer::{Encoded, Padding, Tokenizer};
