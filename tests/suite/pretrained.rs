//! Pretrained checkpoints (`seqlayers::model::{load_bert, load_mamba}`) against the outputs
//! `transformers` / sentence-transformers computed for the committed fixtures
//! (`tests/fixtures/pretrained/`, see its README), the typed errors of bad checkpoints, and the
//! real all-MiniLM-L6-v2 sentence embedding when `scripts/fetch_pretrained.sh` has fetched it.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use burn_store::{ModuleStore, SafetensorsStore};
use seqlayers::SeqError;
use seqlayers::backend::Cpu;
use seqlayers::data::cache_dir;
use seqlayers::decode::Decoder;
use seqlayers::model::{
    BertClassifierConfig, BertConfig, BertEncoder, BertPooling, cls_token, l2_normalize, load_bert,
    load_mamba, mean_pool, padding_from_attention_mask, read_mamba_config,
};
use seqlayers::train::SequenceModel;

use crate::common::{dev, max_abs_diff, values};

/// The tolerance of every comparison with `transformers` (float32 here, float64 there).
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pretrained")
        .join(name)
}

/// Tensor `name` of `dir/expected.safetensors` (read through burn-store).
fn expected(dir: &Path, name: &str) -> TensorData {
    let mut store = SafetensorsStore::from_file(dir.join("expected.safetensors"));
    store
        .get_snapshot(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no `{name}` in {}", dir.display()))
        .to_data()
        .unwrap()
}

fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().to_vec::<f32>().unwrap()
}

fn ids(data: TensorData) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(data.convert::<i64>(), &dev())
}

/// A scratch folder of its own for one test, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "seqlayers-pretrained-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Copies the fixture `name` into a scratch folder, with `config.json` changed by `edit`.
fn fixture_copy(name: &str, test: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Scratch {
    let dir = scratch(test);
    let src = fixture(name);
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// BERT
// ---------------------------------------------------------------------------------------------

/// The fixture's inputs: ids, token types, padding (`true` = padding).
fn bert_inputs(
    dir: &Path,
) -> (
    Tensor<Cpu, 2, Int>,
    Tensor<Cpu, 2, Int>,
    Tensor<Cpu, 2, burn::tensor::Bool>,
) {
    (
        ids(expected(dir, "input_ids")),
        ids(expected(dir, "token_type_ids")),
        padding_from_attention_mask(ids(expected(dir, "attention_mask"))),
    )
}

#[test]
fn bert_tiny_matches_transformers() {
    let dir = fixture("bert_tiny");
    let encoder = load_bert::<Cpu>(&dir, &dev()).unwrap();
    assert!(encoder.pooler.is_some(), "the fixture has a pooler");
    let (ids, types, padding) = bert_inputs(&dir);
    let hidden = encoder
        .forward(ids.clone(), Some(types.clone()), Some(padding.clone()))
        .unwrap(); // [3, 8, 32]

    let mut report = Vec::new();
    let mut compare = |what: &str, got: Vec<f32>| {
        let want = floats(expected(&dir, what));
        let err = max_abs_diff(&got, &want);
        report.push(format!("{what} {err:.1e}"));
        assert!(err <= TOL, "{what}: max |Δ| = {err:e} > {TOL:e}");
    };
    // Every position, padded ones included (their queries attend to the real keys).
    compare("last_hidden_state", values(hidden.clone()));
    compare("cls", values(cls_token(hidden.clone())));
    let pool = |p| {
        values(
            encoder
                .pool(hidden.clone(), Some(padding.clone()), p)
                .unwrap(),
        )
    };
    compare("pooler_output", pool(BertPooling::Pooler));
    compare("mean_pooled", pool(BertPooling::Mean));
    compare(
        "mean_pooled_normalized",
        values(
            encoder
                .sentence_embedding(ids, Some(types), Some(padding))
                .unwrap(),
        ),
    );
    println!("bert_tiny max |Δ| vs transformers: {}", report.join(", "));
}

/// Each row alone, without its padding, gives the padded batch's outputs at its real tokens:
/// the padding mask hides the padded keys completely.
#[test]
fn bert_padding_rows_equal_the_unpadded_rows() {
    let dir = fixture("bert_tiny");
    let encoder = load_bert::<Cpu>(&dir, &dev()).unwrap();
    let (ids, types, padding) = bert_inputs(&dir);
    let batch = encoder
        .forward(ids.clone(), Some(types.clone()), Some(padding.clone()))
        .unwrap(); // [3, 8, 32]
    let mask: Vec<i64> = expected(&dir, "attention_mask")
        .convert::<i64>()
        .to_vec()
        .unwrap();
    for row in 0..3 {
        let real = mask[row * 8..(row + 1) * 8]
            .iter()
            .filter(|&&m| m == 1)
            .count();
        let alone = encoder
            .forward(
                ids.clone().slice([row..row + 1, 0..real]),
                Some(types.clone().slice([row..row + 1, 0..real])),
                None,
            )
            .unwrap(); // [1, real, 32]
        let in_batch = batch.clone().slice([row..row + 1, 0..real]);
        let err = max_abs_diff(&values(alone), &values(in_batch));
        assert!(err <= 1e-5, "row {row} ({real} real tokens): {err:e}");
    }
}

/// Token types default to 0, and a classifier over the loaded encoder runs through the
/// trainer's interface with the padding read from the pad id.
#[test]
fn bert_classifier_reads_padding_from_the_pad_id() {
    let dir = fixture("bert_tiny");
    let (ids, _, padding) = bert_inputs(&dir);
    let encoder = load_bert::<Cpu>(&dir, &dev()).unwrap();
    let classifier = BertClassifierConfig::new(3)
        .with_pooling(BertPooling::Mean)
        .init(encoder, &dev());
    let from_ids = classifier.last_logits(ids.clone()).unwrap(); // [3, 3]
    let explicit = classifier
        .forward(ids.clone(), None, Some(padding))
        .unwrap();
    assert_eq!(from_ids.dims(), [3, 3]);
    assert_eq!(values(from_ids.clone()), values(explicit));
    let per_position = classifier.logits(ids).unwrap(); // [3, 1, 3]
    assert_eq!(values(per_position), values(from_ids));
}

/// Writes a safetensors file (8-byte header length, JSON header, raw little-endian data) of
/// `tensors`, for checkpoints the fixtures do not have.
fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) {
    let mut header = serde_json::Map::new();
    let mut bytes = Vec::new();
    for (name, data) in tensors {
        let dtype = match data.dtype {
            burn::tensor::DType::F32 => "F32",
            burn::tensor::DType::I64 => "I64",
            other => panic!("{other:?}"),
        };
        let start = bytes.len();
        bytes.extend_from_slice(data.as_bytes());
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": data.shape.to_vec(), "data_offsets": [start, bytes.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&bytes);
    std::fs::write(path, file).unwrap();
}

/// Every tensor of a fixture's `model.safetensors`, by name.
fn fixture_tensors(name: &str) -> Vec<(String, TensorData)> {
    let mut store = SafetensorsStore::from_file(fixture(name).join("model.safetensors"));
    store
        .get_all_snapshots()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.to_data().unwrap()))
        .collect()
}

/// The BERT fixture saved as a RoBERTa checkpoint (`roberta.` prefix, LayerNorm `gamma`/`beta`
/// as older checkpoints name them, the position table shifted down by `pad + 1 = 1` rows) gives
/// BERT's outputs at the real tokens, right- and left-padded: RoBERTa's position ids count the
/// real tokens from `pad + 1`.
#[test]
fn roberta_naming_and_positions() {
    let dir = scratch("roberta");
    let tensors: Vec<(String, TensorData)> = fixture_tensors("bert_tiny")
        .into_iter()
        .filter(|(k, _)| k != "embeddings.position_ids")
        .map(|(k, data)| {
            let k = k
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            let data = if k == "embeddings.position_embeddings.weight" {
                let table = Tensor::<Cpu, 2>::from_data(data, &dev()); // [64, 32]
                Tensor::cat(vec![Tensor::zeros([1, 32], &dev()), table], 0).into_data() // [65, 32]
            } else {
                data
            };
            (format!("roberta.{k}"), data)
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("bert_tiny").join("config.json")).unwrap(),
    )
    .unwrap();
    config["model_type"] = "roberta".into();
    config["max_position_embeddings"] = 65.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let roberta = load_bert::<Cpu>(&dir, &dev()).unwrap();
    assert_eq!(roberta.position_offset, 1);
    assert_eq!(roberta.max_len(), 64);
    let bert = load_bert::<Cpu>(fixture("bert_tiny"), &dev()).unwrap();
    let (ids, types, padding) = bert_inputs(&fixture("bert_tiny"));
    let want = bert
        .forward(ids.clone(), Some(types.clone()), Some(padding.clone()))
        .unwrap();
    let got = roberta
        .forward(ids.clone(), Some(types.clone()), Some(padding))
        .unwrap();
    // Row 1 has 5 real tokens, then padding (id 0 = pad_token_id).
    let real = |t: Tensor<Cpu, 3>| values(t.slice([1..2, 0..5]));
    assert!(max_abs_diff(&real(got), &real(want.clone())) <= 1e-5);

    // Left padding: the same 5 tokens after 3 pads keep positions 1..=5.
    let row = ids.slice([1..2, 0..5]);
    let left = Tensor::cat(vec![Tensor::<Cpu, 2, Int>::zeros([1, 3], &dev()), row], 1); // [1, 8]
    let left_types = Tensor::cat(
        vec![
            Tensor::<Cpu, 2, Int>::zeros([1, 3], &dev()),
            types.slice([1..2, 0..5]),
        ],
        1,
    );
    let left_padding = left.clone().equal_elem(0);
    let got = roberta
        .forward(left, Some(left_types), Some(left_padding))
        .unwrap();
    let err = max_abs_diff(&values(got.slice([0..1, 3..8])), &real(want));
    assert!(err <= 1e-5, "left-padded RoBERTa row: {err:e}");
}

// ---------------------------------------------------------------------------------------------
// Mamba
// ---------------------------------------------------------------------------------------------

/// Both namings of the same weights give `transformers`' logits, and feeding the tokens one at
/// a time (or in chunks) through the decoding state gives the full forward's.
#[test]
fn mamba_fixtures_match_transformers_and_decode_step_by_step() {
    for name in ["mamba_tiny_hf", "mamba_tiny_ssm"] {
        let dir = fixture(name);
        let model = load_mamba::<Cpu>(&dir, &dev()).unwrap();
        let tokens = ids(expected(&dir, "input_ids")); // [2, 7]
        let want = floats(expected(&dir, "logits")); // [2, 7, 48]
        let logits = model.forward(tokens.clone()).unwrap();
        let err = max_abs_diff(&values(logits.clone()), &want);
        println!("{name}: logits max |Δ| vs transformers {err:.1e}");
        assert!(err <= TOL, "{name}: {err:e}");

        for chunk in [1, 3] {
            let mut state = model.init_state(2, &dev());
            let mut pieces = Vec::new();
            let mut start = 0;
            while start < 7 {
                let len = chunk.min(7 - start);
                let (y, next) = model
                    .forward_with_state(tokens.clone().slice([0..2, start..start + len]), state)
                    .unwrap();
                pieces.push(y);
                state = next;
                start += len;
            }
            let stepped = values(Tensor::cat(pieces, 1));
            let err = max_abs_diff(&stepped, &values(logits.clone()));
            assert!(err <= 1e-5, "{name}, chunks of {chunk}: {err:e}");
        }
    }
}

/// The state-spaces config maps to the crate's configuration field by field; an untied config
/// loads the saved `lm_head.weight` into the head (here equal to the embedding, so the logits
/// do not change).
#[test]
fn mamba_ssm_config_and_untied_head() {
    let config = read_mamba_config(fixture("mamba_tiny_ssm")).unwrap();
    let mamba = &config.stack.mamba;
    assert_eq!(
        (
            config.stack.d_model,
            config.stack.layers.len(),
            config.vocab_size
        ),
        (16, 2, 48)
    );
    assert_eq!((mamba.d_state, mamba.d_conv, mamba.expand), (4, 4, 2));
    assert_eq!(
        (mamba.resolved_dt_rank(), mamba.conv_bias, mamba.bias),
        (1, true, false)
    );
    assert!(config.tie_embeddings);
    assert_eq!(config.stack.norm_eps, 1e-5);

    let dir = fixture_copy("mamba_tiny_ssm", "untied", |c| {
        c["tie_embeddings"] = false.into()
    });
    let model = load_mamba::<Cpu>(&dir, &dev()).unwrap();
    assert!(model.head.is_some());
    let tokens = ids(expected(&fixture("mamba_tiny_ssm"), "input_ids"));
    let want = floats(expected(&fixture("mamba_tiny_ssm"), "logits"));
    assert!(max_abs_diff(&values(model.forward(tokens).unwrap()), &want) <= TOL);

    // mamba_ssm rounds the vocabulary up to pad_vocab_size_multiple.
    let dir = fixture_copy("mamba_tiny_ssm", "vocab", |c| c["vocab_size"] = 45.into());
    assert_eq!(read_mamba_config(&dir).unwrap().vocab_size, 48);
}

// ---------------------------------------------------------------------------------------------
// Bad checkpoints
// ---------------------------------------------------------------------------------------------

/// `(key, expected, found)` of a `CheckpointTensor` error.
fn tensor_error(e: SeqError) -> (String, String, String) {
    match e {
        SeqError::CheckpointTensor {
            key,
            expected,
            found,
            ..
        } => (key, expected, found),
        other => panic!("expected SeqError::CheckpointTensor, got {other:?}"),
    }
}

/// The problem text of a `Checkpoint` error on a file called `file`.
fn checkpoint_problem(e: SeqError, file: &str) -> String {
    match e {
        SeqError::Checkpoint { path, problem } => {
            assert!(path.ends_with(file), "{path} is not {file}");
            problem
        }
        other => panic!("expected SeqError::Checkpoint, got {other:?}"),
    }
}

#[test]
fn bad_checkpoints_are_typed_errors_naming_the_key() {
    // A missing tensor: a third layer the file does not have.
    let dir = fixture_copy("bert_tiny", "missing", |c| {
        c["num_hidden_layers"] = 3.into()
    });
    let (key, expected, found) = tensor_error(load_bert::<Cpu>(&dir, &dev()).unwrap_err());
    assert_eq!(key, "encoder.layer.2.attention.self.query.weight");
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("[32, 32] (floats)", "nothing")
    );

    // A wrong shape: config.json says intermediate 48, the file holds 64.
    let dir = fixture_copy("bert_tiny", "shape", |c| c["intermediate_size"] = 48.into());
    let (key, expected, found) = tensor_error(load_bert::<Cpu>(&dir, &dev()).unwrap_err());
    assert_eq!(key, "encoder.layer.0.intermediate.dense.weight");
    assert_eq!(expected, "[48, 32] (floats)");
    assert_eq!(found, "[64, 32] (F32)");

    // A tensor of another type (integers where floats belong).
    let dir = fixture_copy("bert_tiny", "dtype", |_| {});
    let tensors: Vec<(String, TensorData)> = fixture_tensors("bert_tiny")
        .into_iter()
        .map(|(k, data)| match k.as_str() {
            "embeddings.token_type_embeddings.weight" => (k, data.convert::<i64>()),
            _ => (k, data),
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let (key, _, found) = tensor_error(load_bert::<Cpu>(&dir, &dev()).unwrap_err());
    assert_eq!(key, "embeddings.token_type_embeddings.weight");
    assert_eq!(found, "[2, 32] (I64)");

    // Mamba: an untied head that Hugging Face's file (tied, no lm_head) does not have.
    let dir = fixture_copy("mamba_tiny_hf", "head", |c| {
        c["tie_word_embeddings"] = false.into()
    });
    let (key, expected, found) = tensor_error(load_mamba::<Cpu>(&dir, &dev()).unwrap_err());
    assert_eq!(key, "lm_head.weight");
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("[48, 16] (floats)", "nothing")
    );

    // Mamba: a state size the file does not have shows at the first tensor it shapes.
    let dir = fixture_copy("mamba_tiny_hf", "state", |c| c["state_size"] = 8.into());
    let (key, expected, found) = tensor_error(load_mamba::<Cpu>(&dir, &dev()).unwrap_err());
    assert_eq!(key, "backbone.layers.0.mixer.x_proj.weight");
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("[17, 32] (floats)", "[9, 32] (F32)")
    );

    // An unknown architecture, for either loader, and an unsupported Mamba option.
    let dir = fixture_copy("bert_tiny", "arch", |c| {
        c["model_type"] = "distilbert".into()
    });
    let problem = checkpoint_problem(load_bert::<Cpu>(&dir, &dev()).unwrap_err(), "config.json");
    assert!(
        problem.contains("unknown architecture") && problem.contains("distilbert"),
        "{problem}"
    );
    let problem = checkpoint_problem(
        load_mamba::<Cpu>(fixture("bert_tiny"), &dev()).unwrap_err(),
        "config.json",
    );
    assert!(
        problem.contains("unknown architecture") && problem.contains("bert"),
        "{problem}"
    );
    let dir = fixture_copy("mamba_tiny_ssm", "attn", |c| {
        c["attn_layer_idx"] = serde_json::json!([1])
    });
    let problem = checkpoint_problem(load_mamba::<Cpu>(&dir, &dev()).unwrap_err(), "config.json");
    assert!(problem.contains("attn_layer_idx"), "{problem}");
    let dir = fixture_copy("bert_tiny", "act", |c| c["hidden_act"] = "relu".into());
    let problem = checkpoint_problem(load_bert::<Cpu>(&dir, &dev()).unwrap_err(), "config.json");
    assert!(problem.contains("hidden_act"), "{problem}");

    // A truncated file (an interrupted download) or a garbled header, for both loaders.
    for name in ["bert_tiny", "mamba_tiny_hf"] {
        let dir = fixture_copy(name, &format!("truncated-{name}"), |_| {});
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let mut garbled = bytes.clone();
        garbled[8..24].copy_from_slice(b"not a JSON head!");
        for broken in [&bytes[..bytes.len() / 2], &bytes[..6], &garbled[..]] {
            std::fs::write(dir.join("model.safetensors"), broken).unwrap();
            let e = if name == "bert_tiny" {
                load_bert::<Cpu>(&dir, &dev()).map(|_| ())
            } else {
                load_mamba::<Cpu>(&dir, &dev()).map(|_| ())
            };
            let problem = checkpoint_problem(e.unwrap_err(), "model.safetensors");
            assert!(problem.contains("truncated"), "{problem}");
        }
    }

    // No config.json, no model.safetensors.
    let dir = scratch("empty");
    let problem = checkpoint_problem(load_bert::<Cpu>(&dir, &dev()).unwrap_err(), "config.json");
    assert!(problem.contains("no such file"), "{problem}");
    std::fs::copy(
        fixture("bert_tiny").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let problem = checkpoint_problem(
        load_bert::<Cpu>(&dir, &dev()).unwrap_err(),
        "model.safetensors",
    );
    assert!(problem.contains("no such file"), "{problem}");

    // config.json that is not JSON of this model.
    std::fs::write(
        dir.join("config.json"),
        "{\"model_type\": \"bert\", \"hidden_size\": \"big\"}",
    )
    .unwrap();
    let problem = checkpoint_problem(load_bert::<Cpu>(&dir, &dev()).unwrap_err(), "config.json");
    assert!(problem.contains("not a configuration"), "{problem}");
}

/// A BERT configuration that the encoder does not support is an error of `try_init` too.
#[test]
fn bert_config_is_validated() {
    let config = BertConfig::new(10, 8, 1, 2, 16);
    assert!(config.try_init::<Cpu>(&dev()).is_ok());
    let bad = config.clone().with_hidden_act("gelu_new".into());
    assert!(
        matches!(bad.try_init::<Cpu>(&dev()), Err(SeqError::InvalidConfig(m)) if m.contains("gelu_new"))
    );
    let bad = BertConfig::new(10, 8, 1, 3, 16);
    assert!(matches!(
        bad.try_init::<Cpu>(&dev()),
        Err(SeqError::HeadsDoNotDivide { .. })
    ));
    let encoder: BertEncoder<Cpu> = config.with_max_position_embeddings(4).init(&dev());
    let too_long = Tensor::<Cpu, 2, Int>::ones([1, 5], &dev());
    assert!(matches!(
        encoder.forward(too_long, None, None),
        Err(SeqError::SequenceTooLong { len: 5, max: 4, .. })
    ));
    let padding = Tensor::<Cpu, 2, Int>::zeros([1, 3], &dev()).equal_elem(1);
    assert!(matches!(
        encoder.forward(Tensor::ones([1, 2], &dev()), None, Some(padding)),
        Err(SeqError::ShapeMismatch { .. })
    ));
    let out_of_range = Tensor::<Cpu, 2, Int>::full([1, 2], 10, &dev());
    assert!(matches!(
        encoder.forward(out_of_range, None, None),
        Err(SeqError::TokenOutOfRange { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// MiniLM (the real weights, when fetched)
// ---------------------------------------------------------------------------------------------

/// The fetched all-MiniLM-L6-v2 folder (see [`cache_dir`]).
fn minilm_dir() -> Option<PathBuf> {
    Some(cache_dir()?.join("all-minilm-l6-v2"))
}

/// seqlayers' MiniLM sentence embedding (mean-pooled, L2-normalized) equals
/// sentence-transformers' for the committed sentences, from their committed token ids.
#[test]
fn minilm_sentence_embedding_matches_sentence_transformers() {
    let Some(dir) = minilm_dir().filter(|d| d.join("model.safetensors").is_file()) else {
        let why = format!(
            "all-MiniLM-L6-v2 is not in the cache folder ({:?}); run scripts/fetch_pretrained.sh",
            minilm_dir()
        );
        assert!(
            std::env::var_os("SEQLAYERS_REQUIRE_PRETRAINED").is_none(),
            "SEQLAYERS_REQUIRE_PRETRAINED is set but {why}"
        );
        println!("skipped: {why}");
        return;
    };
    let encoder = load_bert::<Cpu>(&dir, &dev()).unwrap();
    assert_eq!((encoder.d_model(), encoder.layers.len()), (384, 6));
    let fixtures = fixture("minilm");
    let tokens = ids(expected(&fixtures, "input_ids")); // [4, 27]
    let types = ids(expected(&fixtures, "token_type_ids"));
    let padding = padding_from_attention_mask(ids(expected(&fixtures, "attention_mask")));
    let hidden = encoder
        .forward(tokens, Some(types), Some(padding.clone()))
        .unwrap(); // [4, 27, 384]
    let mean = mean_pool(hidden, Some(padding));
    let mean_err = max_abs_diff(
        &values(mean.clone()),
        &floats(expected(&fixtures, "mean_pooled")),
    );
    let embedding = l2_normalize(mean);
    let err = max_abs_diff(
        &values(embedding),
        &floats(expected(&fixtures, "embeddings")),
    );
    println!(
        "MiniLM max |Δ| vs sentence-transformers: embeddings {err:.1e}, mean-pooled {mean_err:.1e}"
    );
    assert!(
        err <= TOL && mean_err <= TOL,
        "embeddings {err:e}, mean-pooled {mean_err:e}"
    );
}
