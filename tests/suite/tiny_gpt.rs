//! The tiny GPT of seed 004 §2: similarity functions against hand-computed scores, cached
//! decoding of every ablation equal to the full pass (and the naive mask's leak), seeded
//! sampling, checkpoints (round trip and typed errors), and the example's `--quick` run.

use burn::tensor::{Int, Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::attention::{
    CausalMasking, QkvSharing, ScoreMask, Similarity, attention_with_similarity,
};
use seqlayers::backend::Cpu;
use seqlayers::data::{Batch, Targets};
use seqlayers::decode::{GenerateConfig, SampleConfig, generate_greedy, generate_sample};
use seqlayers::model::{LanguageModel, LanguageModelConfig, load_language_model, save_checkpoint};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{StackConfig, parse_layers};

use crate::common::{dev, max_abs_diff, values};
use crate::harness::tiny_gpt::{Ablation, TinyGptOptions, causal_perplexity, leak_probe, tiny_gpt};

const VOCAB: usize = 13;

fn lm(
    masking: CausalMasking,
    sharing: QkvSharing,
    similarity: Similarity,
    tied: bool,
) -> LanguageModelConfig {
    let stack = StackConfig::new(16, parse_layers("attention+mlp,attention+mlp").unwrap())
        .with_n_heads(2)
        .with_position(PositionEncoding::learned(32))
        .with_norm(NormKind::Layer)
        .with_masking(masking)
        .with_sharing(sharing)
        .with_similarity(similarity);
    LanguageModelConfig::new(stack, VOCAB).with_tie_embeddings(tied)
}

fn init(config: &LanguageModelConfig, seed: u64) -> LanguageModel<Cpu> {
    crate::common::seeded(seed, || config.try_init(&dev()).unwrap())
}

fn ids(rows: &[Vec<u32>]) -> Tensor<Cpu, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &dev())
}

#[test]
fn similarities_have_their_hand_computed_scores() {
    // One head, two queries, three keys, d = 2.
    let q = [[1.0f64, 0.0], [0.5, -1.0]];
    let k = [[1.0f64, 1.0], [-2.0, 0.5], [0.0, 3.0]];
    let v: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let t4 = |x: Vec<f32>, l: usize, d: usize| {
        Tensor::<Cpu, 4>::from_data(TensorData::new(x, [1, 1, l, d]), &dev())
    };
    let qf: Vec<f32> = q.iter().flatten().map(|&x| x as f32).collect();
    let kf: Vec<f32> = k.iter().flatten().map(|&x| x as f32).collect();
    let scale = 0.5f64; // pretend d_head = 4
    type Score = fn(&[f64; 2], &[f64; 2], f64) -> f64;
    let cases: [(Similarity, Score); 3] = [
        (Similarity::Dot, |a, b, s| s * (a[0] * b[0] + a[1] * b[1])),
        (Similarity::NegSquaredDistance, |a, b, s| {
            -s * ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))
        }),
        (Similarity::Cosine { temperature: 0.25 }, |a, b, _| {
            (a[0] * b[0] + a[1] * b[1]) / (a[0].hypot(a[1]) * b[0].hypot(b[1])) / 0.25
        }),
    ];
    for (similarity, score) in cases {
        let out = attention_with_similarity(
            t4(qf.clone(), 2, 2),
            t4(kf.clone(), 3, 2),
            t4(v.clone(), 3, 2),
            similarity,
            scale as f32,
            &ScoreMask::none(),
        );
        let weights = values(out.weights);
        for (i, qi) in q.iter().enumerate() {
            let s: Vec<f64> = k.iter().map(|kj| score(qi, kj, scale)).collect();
            let max = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for j in 0..3 {
                let expected = (s[j] - max).exp() / z;
                let got = weights[i * 3 + j] as f64;
                assert!(
                    (got - expected).abs() < 1e-6,
                    "{similarity:?} weight ({i},{j}) {got} vs {expected}"
                );
            }
        }
    }
    // A zero cosine temperature (a division by zero in the scores) is refused at init, naming
    // the temperature: a model that built and produced NaN/inf scores would return Ok.
    let err = lm(
        CausalMasking::PreSoftmax,
        QkvSharing::Separate,
        Similarity::Cosine { temperature: 0.0 },
        true,
    )
    .try_init::<Cpu>(&dev())
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            err,
            SeqError::OutOfRange { name: "cosine similarity temperature", value, .. } if value == 0.0
        ),
        "{err:?}"
    );
}

/// Logits of token-by-token decoding from the cached state, `[1, L, V]` flattened.
fn stepped_logits(model: &LanguageModel<Cpu>, tokens: &[u32]) -> Vec<f32> {
    use seqlayers::decode::Decoder;
    let mut state = model.init_state(1, &dev());
    let mut out = Vec::new();
    for &t in tokens {
        let (logits, next) = model.forward_with_state(ids(&[vec![t]]), state).unwrap();
        state = next;
        out.extend(values(logits));
    }
    out
}

#[test]
fn every_attention_ablation_decodes_like_its_full_pass_but_the_naive_mask_leaks() {
    let tokens: Vec<u32> = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8];
    for (masking, sharing, similarity) in [
        (
            CausalMasking::PreSoftmax,
            QkvSharing::Separate,
            Similarity::Dot,
        ),
        (
            CausalMasking::PreSoftmax,
            QkvSharing::SharedQK,
            Similarity::Dot,
        ),
        (
            CausalMasking::PreSoftmax,
            QkvSharing::SharedQKV,
            Similarity::NegSquaredDistance,
        ),
        (
            CausalMasking::PreSoftmax,
            QkvSharing::SharedKV,
            Similarity::Cosine { temperature: 0.1 },
        ),
        (
            CausalMasking::NaivePostSoftmax,
            QkvSharing::Separate,
            Similarity::Dot,
        ),
    ] {
        let model = init(&lm(masking, sharing, similarity, true), 7);
        let full = values(model.forward(ids(std::slice::from_ref(&tokens))).unwrap());
        let stepped = stepped_logits(&model, &tokens);
        let err = max_abs_diff(&full, &stepped);
        // Changing the last token must not move the earlier positions' logits.
        let mut changed = tokens.clone();
        *changed.last_mut().unwrap() = 0;
        let moved = values(model.forward(ids(&[changed])).unwrap());
        let v = VOCAB;
        let earlier = (tokens.len() - 1) * v;
        let leak = max_abs_diff(&full[..earlier], &moved[..earlier]);
        if masking == CausalMasking::PreSoftmax {
            assert!(
                err <= 1e-4,
                "{sharing:?} {similarity:?}: cached logits differ by {err}"
            );
            assert_eq!(leak, 0.0, "{sharing:?} {similarity:?}: the future leaked");
        } else {
            // The naive mask's full pass sees the future; its cached pass cannot.
            assert!(
                err > 1e-4,
                "naive masking: full and causal passes should differ"
            );
            assert!(
                leak > 1e-6,
                "naive masking: the last token should leak ({leak})"
            );
        }
    }
}

#[test]
fn causal_perplexity_equals_the_full_pass_for_a_causal_model() {
    let model = init(
        &lm(
            CausalMasking::PreSoftmax,
            QkvSharing::Separate,
            Similarity::Dot,
            true,
        ),
        2,
    );
    let tokens: Vec<u32> = (0..2 * 10).map(|i| (i * 5 % VOCAB) as u32).collect();
    let targets: Vec<u32> = tokens.iter().map(|t| (t + 1) % VOCAB as u32).collect();
    let batch = Batch {
        tokens,
        batch: 2,
        len: 10,
        targets: Targets::Tokens {
            ids: targets,
            loss_mask: vec![true; 20],
        },
        source: None,
    };
    let full = seqlayers::train::evaluate_batch(&model, &batch, &dev())
        .unwrap()
        .perplexity;
    let causal = causal_perplexity(&model, &batch, &dev()).unwrap();
    assert!((full - causal).abs() <= 1e-4 * full, "{full} vs {causal}");
}

#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() {
    let model = init(
        &lm(
            CausalMasking::PreSoftmax,
            QkvSharing::Separate,
            Similarity::Dot,
            true,
        ),
        3,
    );
    let prompts = vec![vec![1, 2, 3], vec![4, 5]];
    let limits = GenerateConfig::new(10);
    let greedy = generate_greedy(&model, &prompts, limits, &dev()).unwrap();
    let top1 = generate_sample(
        &model,
        &prompts,
        SampleConfig::new(limits).with_top_k(1).with_seed(9),
        &dev(),
    )
    .unwrap();
    assert_eq!(greedy, top1);
    let hot = SampleConfig::new(limits).with_temperature(2.0).with_seed(4);
    let a = generate_sample(&model, &prompts, hot, &dev()).unwrap();
    assert_eq!(a, generate_sample(&model, &prompts, hot, &dev()).unwrap());
    assert_ne!(
        a,
        generate_sample(&model, &prompts, hot.with_seed(5), &dev()).unwrap()
    );
    // With top-k = 3, every sampled token is among the 3 most likely given its prefix
    // (recomputed without any cache).
    let sampled = generate_sample(&model, &prompts, hot.with_top_k(3), &dev()).unwrap();
    for (prompt, new) in prompts.iter().zip(&sampled) {
        let mut seq = prompt.clone();
        for &t in new {
            let logits = values(model.forward(ids(&[seq.clone()])).unwrap());
            let last = &logits[(seq.len() - 1) * VOCAB..];
            let better = last.iter().filter(|&&x| x > last[t as usize]).count();
            assert!(better < 3, "token {t} is not in the top 3");
            seq.push(t);
        }
    }
    // Each bad setting is refused by name: T = 0 (logits / 0, or silently greedy) and top-k = 0
    // (an empty candidate set, or silently "no limit") would otherwise give text or NaN.
    let err = generate_sample(&model, &prompts, hot.with_temperature(0.0), &dev()).unwrap_err();
    assert!(
        matches!(err, SeqError::OutOfRange { name: "temperature", value, .. } if value == 0.0),
        "{err:?}"
    );
    let err =
        generate_sample(&model, &prompts, hot.with_temperature(f64::NAN), &dev()).unwrap_err();
    assert!(
        matches!(
            err,
            SeqError::OutOfRange {
                name: "temperature",
                ..
            }
        ),
        "{err:?}"
    );
    let err = generate_sample(&model, &prompts, hot.with_top_k(0), &dev()).unwrap_err();
    assert_eq!(err, SeqError::ZeroSize { name: "top_k" });
}

#[test]
fn checkpoints_round_trip_and_fail_with_typed_errors() {
    let dir = std::env::temp_dir().join(format!("seqlayers-ckpt-{}", std::process::id()));
    let config = lm(
        CausalMasking::PreSoftmax,
        QkvSharing::Separate,
        Similarity::Dot,
        true,
    );
    let model = init(&config, 11);
    let tokens = ids(&[vec![1, 2, 3, 4, 5]]);
    let before = values(model.forward(tokens.clone()).unwrap());
    save_checkpoint(model, &config, &dir).unwrap();
    let (loaded, loaded_config) = load_language_model::<Cpu>(&dir, &dev()).unwrap();
    assert_eq!(
        values(loaded.forward(tokens).unwrap()),
        before,
        "identical logits"
    );
    assert_eq!(loaded_config.vocab_size, VOCAB);

    let is_checkpoint_error = |e: SeqError, needle: &str| {
        let text = e.to_string();
        assert!(matches!(e, SeqError::Checkpoint { .. }), "{text}");
        assert!(text.contains(needle), "`{text}` should mention `{needle}`");
    };
    // No checkpoint at all.
    is_checkpoint_error(
        load_language_model::<Cpu>(&dir.join("missing"), &dev()).unwrap_err(),
        "config.json",
    );
    // Weights of another configuration (width 16 saved, width 32 asked).
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(dir.join("model.mpk"), other.join("model.mpk")).unwrap();
    let mut wider = config.clone();
    wider.stack.d_model = 32;
    burn::config::Config::save(&wider, other.join("config.json")).unwrap();
    is_checkpoint_error(
        load_language_model::<Cpu>(&other, &dev()).unwrap_err(),
        "shape",
    );
    // A tensor the configuration needs is not in the file (untied head).
    let untied = config.clone().with_tie_embeddings(false);
    burn::config::Config::save(&untied, other.join("config.json")).unwrap();
    is_checkpoint_error(
        load_language_model::<Cpu>(&other, &dev()).unwrap_err(),
        "model.mpk",
    );
    // A truncated file.
    let bytes = std::fs::read(dir.join("model.mpk")).unwrap();
    std::fs::write(other.join("model.mpk"), &bytes[..bytes.len() / 2]).unwrap();
    burn::config::Config::save(&config, other.join("config.json")).unwrap();
    is_checkpoint_error(
        load_language_model::<Cpu>(&other, &dev()).unwrap_err(),
        "truncated",
    );
    // A config file that is not JSON of this model.
    std::fs::write(other.join("config.json"), "{ not json").unwrap();
    is_checkpoint_error(
        load_language_model::<Cpu>(&other, &dev()).unwrap_err(),
        "configuration",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The leak probe sees a model that reads the very next input (what the naive mask lets a model
/// learn: training perplexity near 1, garbage when fed causally), and reads 0 for a causal one.
#[test]
fn the_leak_probe_catches_a_model_that_copies_the_next_token() {
    let tokens: Vec<u32> = (0..32u32).map(|i| (i * 5 + 3) % VOCAB as u32).collect();
    let targets: Vec<u32> = (1..=32u32).map(|i| (i * 5 + 3) % VOCAB as u32).collect();
    // Copies input t + 1 when it is there: 0.01 nats when that input is the target, 5 otherwise.
    let next_token_copier = |x: &[u32]| -> seqlayers::Result<Vec<f64>> {
        Ok((0..x.len())
            .map(|t| match x.get(t + 1) {
                Some(&next) if next == targets[t] => 0.01,
                Some(_) => 5.0,
                None => 1.0,
            })
            .collect())
    };
    let leak = leak_probe(&tokens, &targets, VOCAB as u32, next_token_copier).unwrap();
    assert!((leak - 4.99).abs() < 1e-9, "{leak}");
    // A causal model: the loss at t depends on inputs 0..=t only.
    let causal = |x: &[u32]| -> seqlayers::Result<Vec<f64>> {
        Ok((0..x.len())
            .map(|t| 0.1 * f64::from(x[t]) + 0.01 * x[..t].iter().sum::<u32>() as f64)
            .collect())
    };
    assert_eq!(
        leak_probe(&tokens, &targets, VOCAB as u32, causal).unwrap(),
        0.0
    );
    // A model that reads two tokens ahead moves too (what the old probe measured).
    let two_ahead = |x: &[u32]| -> seqlayers::Result<Vec<f64>> {
        Ok((0..x.len())
            .map(|t| x.get(t + 2).map_or(0.0, |&v| 0.1 * f64::from(v)))
            .collect())
    };
    assert!(leak_probe(&tokens, &targets, VOCAB as u32, two_ahead).unwrap() > 0.0);
    assert!(leak_probe(&tokens[..2], &targets[..2], VOCAB as u32, causal).is_err());
}

#[test]
fn tiny_gpt_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-tinygpt-{}", std::process::id()));
    let options = TinyGptOptions {
        out_dir: dir.clone(),
        progress: false,
        ..TinyGptOptions::default()
    }
    .quick();
    let (outcomes, (unigram, bigram)) =
        tiny_gpt::<seqlayers::backend::CpuAutodiff>(&options, &Default::default()).unwrap();
    assert!(bigram < unigram && bigram > 1.0);
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert!(o.params > 0 && o.val_ppl.is_finite());
        assert_eq!(o.lengths.len(), 4);
        if o.ablation == Ablation::NaiveMask {
            assert!(o.leak > 0.0);
        } else {
            assert_eq!(o.leak, 0.0, "{}", o.ablation.name());
            assert!((o.val_ppl - o.val_ppl_causal).abs() <= 1e-3 * o.val_ppl);
        }
        assert!(o.sample.starts_with(&options.prompt));
        let ckpt = dir.join("checkpoints").join(o.ablation.name());
        let (model, _) = load_language_model::<Cpu>(&ckpt, &dev()).unwrap();
        assert_eq!(burn::module::Module::num_params(&model), o.params);
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("summary.csv").lines().count(), 4);
    let report = read("report.md");
    for needle in [
        "Baselines",
        "naive-mask",
        "## Perplexity against context length",
        "Naive masking",
    ] {
        assert!(report.contains(needle), "report misses {needle}");
    }
    // The temperature after `:` is read, not replaced by the 0.1 default; an unknown name and a
    // non-numeric temperature are refused with messages that say which.
    assert_eq!(
        Ablation::parse("similarity=cosine:0.5"),
        Ok(Ablation::Similarity(Similarity::Cosine {
            temperature: 0.5
        }))
    );
    let err = Ablation::parse("bogus").unwrap_err();
    assert!(err.contains("unknown ablation `bogus`"), "{err}");
    let err = Ablation::parse("similarity=cosine:hot").unwrap_err();
    assert!(err.contains("must be a number"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
