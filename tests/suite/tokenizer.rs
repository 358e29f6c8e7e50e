//! The `tokenizer.json` tokenizer against the ids Hugging Face's Python `tokenizers` library
//! computed for MiniLM's tokenizer (tests/fixtures/pretrained/minilm/expected.json), and the
//! sentiment batches built from it. Needs the tokenizer fetched by
//! `scripts/fetch_pretrained.sh`; without it the tests say so and skip, unless
//! `SEQLAYERS_REQUIRE_PRETRAINED` is set (as `.ci/run` does), when they fail.

use std::path::{Path, PathBuf};

use seqlayers::SeqError;
use seqlayers::backend::Cpu;
use seqlayers::data::{LabeledSentence, Padding, Targets, Tokenizer, cache_dir, sentiment_batches};
use serde_json::Value;

use crate::common::dev;

/// The fetched MiniLM `tokenizer.json`, or `None` (with the reason printed).
fn minilm_tokenizer() -> Option<Tokenizer> {
    let path = cache_dir()?.join("all-minilm-l6-v2").join("tokenizer.json");
    if !path.is_file() {
        let why = format!(
            "{} is missing; run scripts/fetch_pretrained.sh",
            path.display()
        );
        assert!(
            std::env::var_os("SEQLAYERS_REQUIRE_PRETRAINED").is_none(),
            "SEQLAYERS_REQUIRE_PRETRAINED is set but {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    Some(Tokenizer::from_file(&path).expect("the fetched tokenizer.json reads"))
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pretrained/minilm/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows of an i64 tensor of the fixture as `u32`.
fn rows(fixture: &Value, name: &str) -> Vec<Vec<u32>> {
    let t = &fixture["tensors"][name];
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<u32> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    data.chunks(shape[1]).map(<[u32]>::to_vec).collect()
}

fn sentences(fixture: &Value) -> Vec<String> {
    fixture["meta"]["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn minilm_tokenizer_matches_the_python_library() {
    let Some(tokenizer) = minilm_tokenizer() else {
        return;
    };
    let fx = fixture();
    let texts = sentences(&fx);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(tokenizer.vocab_size(), 30522);
    assert_eq!(tokenizer.pad_id(), 0);

    // Padded to the longest sentence (what sentence-transformers does), nothing truncated.
    let longest = tokenizer.encode(&texts, 256, Padding::Longest).unwrap();
    assert_eq!(longest.ids, rows(&fx, "input_ids"));
    assert_eq!(longest.attention_mask, rows(&fx, "attention_mask"));
    assert_eq!(longest.type_ids, rows(&fx, "token_type_ids"));
    assert_eq!(longest.dims(), [4, 27]);

    // Truncated and padded to 16 (the last sentence loses its tail, keeps its [SEP]).
    let fixed = tokenizer.encode(&texts, 16, Padding::MaxLength).unwrap();
    assert_eq!(fixed.ids, rows(&fx, "max16_input_ids"));
    assert_eq!(fixed.attention_mask, rows(&fx, "max16_attention_mask"));
    assert_eq!(fixed.type_ids, rows(&fx, "max16_token_type_ids"));

    // A sentence pair: token types 0 then 1.
    let pair = &fx["meta"]["pair"];
    let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    let encoded = tokenizer
        .encode_pairs(&[(a, b)], 16, Padding::MaxLength)
        .unwrap();
    assert_eq!(encoded.ids, rows(&fx, "pair_max16_input_ids"));
    assert_eq!(
        encoded.attention_mask,
        rows(&fx, "pair_max16_attention_mask")
    );
    assert_eq!(encoded.type_ids, rows(&fx, "pair_max16_token_type_ids"));

    // The tensors and the crate's padding mask (`true` = padding) agree with the rows.
    let ids = longest.ids_tensor::<Cpu>(&dev());
    assert_eq!(ids.dims(), [4, 27]);
    let padding: Vec<bool> = longest
        .padding_mask::<Cpu>(&dev())
        .into_data()
        .iter::<bool>()
        .collect();
    let want: Vec<bool> = rows(&fx, "attention_mask")
        .concat()
        .iter()
        .map(|&m| m == 0)
        .collect();
    assert_eq!(padding, want);
}

#[test]
fn tokenizer_errors_are_typed() {
    let missing = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("no/such/tokenizer.json");
    assert!(matches!(
        Tokenizer::from_file(&missing),
        Err(SeqError::Read { .. })
    ));
    let not_json = std::env::temp_dir().join(format!("seqlayers-tok-{}.json", std::process::id()));
    std::fs::write(&not_json, "{ not a tokenizer").unwrap();
    let err = Tokenizer::from_file(&not_json).unwrap_err();
    std::fs::remove_file(&not_json).ok();
    assert!(matches!(err, SeqError::Read { .. }), "{err:?}");

    let Some(tokenizer) = minilm_tokenizer() else {
        return;
    };
    assert!(matches!(
        tokenizer.encode(&[], 16, Padding::Longest),
        Err(SeqError::ZeroSize { .. })
    ));
    assert!(matches!(
        tokenizer.encode(&["a"], 0, Padding::Longest),
        Err(SeqError::ZeroSize { .. })
    ));
    // No room for [CLS], [SEP] and a token (the library would panic): a typed error.
    for (result, what) in [
        (
            tokenizer.encode(&["a b c"], 2, Padding::MaxLength),
            "sentence in 2",
        ),
        (
            tokenizer.encode_pairs(&[("a b c", "d e f")], 3, Padding::MaxLength),
            "pair in 3",
        ),
    ] {
        assert!(
            matches!(
                result,
                Err(SeqError::OutOfRange {
                    name: "max_length",
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    }
    assert!(tokenizer.encode(&["a b c"], 3, Padding::MaxLength).is_ok());
    assert!(
        tokenizer
            .encode_pairs(&[("a b c", "d e f")], 4, Padding::MaxLength)
            .is_ok()
    );
}

#[test]
fn sentiment_batches_hold_padded_ids_and_labels() {
    let Some(tokenizer) = minilm_tokenizer() else {
        return;
    };
    let fx = fixture();
    let sentences: Vec<LabeledSentence> = sentences(&fx)
        .into_iter()
        .enumerate()
        .map(|(i, text)| LabeledSentence {
            text,
            label: (i % 2) as u32,
        })
        .collect();
    let batches = sentiment_batches(&sentences, &tokenizer, 256, 3).unwrap();
    assert_eq!(batches.len(), 2);
    let first = &batches[0];
    assert_eq!(first.targets, Targets::Labels(vec![0, 1, 0]));
    assert!(first.source.is_none());
    // The first three sentences, padded to their own longest with the pad id 0: the
    // fixture's rows (padded to the longest of all four) cut to that length.
    let want = rows(&fx, "input_ids");
    let len = first.len;
    assert_eq!(first.tokens.len(), 3 * len);
    let longest = want[..3]
        .iter()
        .map(|row| row.iter().rposition(|&id| id != 0).unwrap() + 1)
        .max()
        .unwrap();
    assert_eq!(len, longest);
    for (r, row) in want.iter().take(3).enumerate() {
        assert_eq!(&first.tokens[r * len..(r + 1) * len], &row[..len]);
    }
    assert_eq!(batches[1].batch, 1);
}
