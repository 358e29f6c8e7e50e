//! Pig-Latin (seed 002): the rule against the homework's files, batches (padded = unpadded
//! losses for both layouts), the encoder–decoder's caches (step logits = full forward, cached
//! greedy = uncached greedy, cached cross-attention = plain), the Mamba translator's state
//! decoding, typed errors, the `--quick` run of the example's driver, and the ablation variants
//! (heads, positions, Mamba's `A = −I` and constant `Δ` through training and decoding, their
//! labels, CSV columns and report lines).

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use seqlayers::SeqError;
use seqlayers::attention::AttentionConfig;
use seqlayers::attention::AttentionInput;
use seqlayers::backend::Cpu;
use seqlayers::data::{
    PigLatinTask, PigLatinVocab, QuRule, Seq2SeqLayout, Task, WordPair, load_pairs, parse_pairs,
    pig_latin, pig_latin_with,
};
use seqlayers::decode::{GenerateConfig, generate_greedy};
use seqlayers::model::{EncoderDecoder, EncoderDecoderConfig, LanguageModel};
use seqlayers::train::{SequenceModel, batch_loss, evaluate_batch};

use crate::common::{dev, max_abs_diff, values};
use crate::harness::pig_latin::{
    DataSize, PigLatinOptions, Translator, mamba_config, pig_latin as run_grid,
};

fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/piglatin")
        .join(name)
}

/// Pairs the rule translates differently, under each `qu` convention.
fn disagreements(pairs: &[WordPair], qu: QuRule) -> Vec<&WordPair> {
    pairs
        .iter()
        .filter(|p| pig_latin_with(&p.english, qu).unwrap() != p.pig_latin)
        .collect()
}

#[test]
fn rule_matches_the_homework_files() {
    let small = load_pairs(&data_file("pig_latin_small.txt")).unwrap();
    assert_eq!(small.pairs.len(), 3198, "the homework's 3,198 unique pairs");
    assert!(disagreements(&small.pairs, QuRule::Cluster).is_empty());
    assert_eq!(disagreements(&small.pairs, QuRule::Vowel).len(), 15);

    let large = load_pairs(&data_file("pig_latin_large.txt")).unwrap();
    assert_eq!(
        large.pairs.len(),
        22402,
        "the homework's 22,402 unique pairs"
    );
    assert_eq!(disagreements(&large.pairs, QuRule::Cluster).len(), 87);
    assert_eq!(disagreements(&large.pairs, QuRule::Vowel).len(), 31);
    // Every pair follows one of the two conventions but two letter-by-letter spellings of
    // abbreviations, which the file also lists in the plain form.
    let neither: Vec<(&str, &str)> = large
        .pairs
        .iter()
        .filter(|p| {
            pig_latin_with(&p.english, QuRule::Cluster).unwrap() != p.pig_latin
                && pig_latin_with(&p.english, QuRule::Vowel).unwrap() != p.pig_latin
        })
        .map(|p| (p.english.as_str(), p.pig_latin.as_str()))
        .collect();
    assert_eq!(neither, vec![("md", "mayday"), ("mp", "maypay")]);
    assert_eq!(pig_latin("mp").unwrap(), "mpay");
}

#[test]
fn bad_files_and_words_are_typed_errors() {
    let missing = load_pairs(&data_file("no_such_file.txt")).unwrap_err();
    assert!(matches!(missing, SeqError::Read { .. }), "{missing}");
    let bad = parse_pairs("the ethay\nthree words here\n", "list.txt").unwrap_err();
    assert!(
        matches!(bad, SeqError::BadData { line: 2, .. }),
        "names the line: {bad}"
    );
    // Each refusal names the offending character: an implementation that lowercased "Hello" or
    // dropped the apostrophe would return Ok, and one that refused for another reason (e.g. an
    // empty-word check run on every input) would name no character.
    let upper = pig_latin("Hello").unwrap_err();
    assert!(
        matches!(&upper, SeqError::InvalidConfig(m) if m.contains("`Hello` contains `H`")),
        "{upper:?}"
    );
    let empty = pig_latin("").unwrap_err();
    assert!(
        matches!(&empty, SeqError::InvalidConfig(m) if m.contains("empty word")),
        "{empty:?}"
    );
    let apostrophe = PigLatinVocab::encode("it's").unwrap_err();
    assert!(
        matches!(&apostrophe, SeqError::InvalidConfig(m) if m.contains("`it's` contains `'`")),
        "{apostrophe:?}"
    );
}

fn pairs(words: &[&str]) -> Vec<WordPair> {
    words
        .iter()
        .map(|w| WordPair {
            english: w.to_string(),
            pig_latin: pig_latin(w).unwrap(),
        })
        .collect()
}

const WORDS: [&str; 6] = ["street", "apple", "quiet", "a", "well-known", "rhythm"];

fn transformer() -> EncoderDecoder<Cpu> {
    crate::common::seeded(3, || {
        EncoderDecoderConfig::new(PigLatinVocab::SIZE, 16)
            .with_n_heads(2)
            .try_init(&dev())
            .unwrap()
    })
}

fn mamba() -> LanguageModel<Cpu> {
    let options = PigLatinOptions {
        mamba_layers: 2,
        d_state: 4,
        ..PigLatinOptions::default()
    };
    let config = mamba_config(&options, 16, crate::harness::pig_latin::Disc::Bilinear).unwrap();
    crate::common::seeded(4, || config.try_init(&dev()).unwrap())
}

/// The loss of one padded batch of every word equals the token-weighted mean of the losses of
/// each word alone (no padding at all).
fn padded_equals_unpadded<M: SequenceModel<Cpu>>(model: &M, layout: Seq2SeqLayout) {
    let all = pairs(&WORDS);
    let task = PigLatinTask::new(&all, &all, layout).unwrap();
    let padded = batch_loss(model, &task.batch_of(&all).unwrap(), &dev()).unwrap();
    let padded: f32 = padded.into_scalar();
    let (mut sum, mut tokens) = (0.0f64, 0.0f64);
    for p in &all {
        let single = task.batch_of(std::slice::from_ref(p)).unwrap();
        if let Some(source) = &single.source {
            assert!(
                !source.padding.iter().any(|&x| x),
                "one word needs no padding"
            );
        }
        let n = (p.pig_latin.len() + 1) as f64; // y EOS
        let loss: f32 = batch_loss(model, &single, &dev()).unwrap().into_scalar();
        sum += loss as f64 * n;
        tokens += n;
    }
    let unpadded = sum / tokens;
    assert!(
        (padded as f64 - unpadded).abs() <= 1e-5 * unpadded.abs(),
        "{layout:?}: padded {padded} vs unpadded {unpadded}"
    );
}

#[test]
fn padded_batches_give_the_losses_of_unpadded_words() {
    padded_equals_unpadded(&transformer(), Seq2SeqLayout::EncoderDecoder);
    padded_equals_unpadded(&mamba(), Seq2SeqLayout::Concatenated);
}

#[test]
fn models_refuse_the_other_layout() {
    let all = pairs(&WORDS[..2]);
    let ed = PigLatinTask::new(&all, &all, Seq2SeqLayout::EncoderDecoder).unwrap();
    let cat = PigLatinTask::new(&all, &all, Seq2SeqLayout::Concatenated).unwrap();
    // Each model refuses for the layout reason. A one-stream model that ignored the source and
    // scored the decoder tokens alone would return Ok; so would an encoder–decoder that read the
    // concatenated stream with an empty source. The message says which way round it went.
    let one_stream = evaluate_batch(&mamba(), &ed.batch_of(&all).unwrap(), &dev()).unwrap_err();
    assert!(
        matches!(&one_stream, SeqError::InvalidConfig(m) if m.contains("reads one token stream")),
        "{one_stream:?}"
    );
    let two_streams =
        evaluate_batch(&transformer(), &cat.batch_of(&all).unwrap(), &dev()).unwrap_err();
    assert!(
        matches!(&two_streams, SeqError::InvalidConfig(m) if m.contains("needs a source sequence")),
        "{two_streams:?}"
    );
}

fn ids(rows: &[Vec<u32>]) -> Tensor<Cpu, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &dev())
}

#[test]
fn decoder_steps_equal_the_full_forward() {
    let model = transformer();
    let sources = vec![
        PigLatinVocab::encode("street").unwrap(),
        PigLatinVocab::encode("stones").unwrap(),
    ];
    let targets: Vec<Vec<u32>> = ["eetstray", "onesstay"]
        .iter()
        .map(|t| {
            [PigLatinVocab::SOS]
                .into_iter()
                .chain(PigLatinVocab::encode(t).unwrap())
                .collect()
        })
        .collect();
    let full = values(model.forward(ids(&sources), None, ids(&targets)).unwrap()); // [2, 9, V]
    let mut state = model.start(ids(&sources), None).unwrap();
    let mut stepped = Vec::new();
    // One token, then a chunk of three, then the rest one by one.
    let len = targets[0].len();
    let mut t = 0;
    while t < len {
        let take = if t == 1 { 3 } else { 1 };
        let chunk: Vec<Vec<u32>> = targets.iter().map(|r| r[t..t + take].to_vec()).collect();
        let (logits, next) = model.step(ids(&chunk), state).unwrap();
        state = next;
        stepped.push(values(logits));
        t += take;
    }
    // Reassemble [2, len, V] from the chunks.
    let v = PigLatinVocab::SIZE;
    let mut joined = vec![0.0; 2 * len * v];
    let mut t0 = 0;
    for chunk in &stepped {
        let take = chunk.len() / (2 * v);
        for b in 0..2 {
            for t in 0..take {
                let src = &chunk[(b * take + t) * v..(b * take + t + 1) * v];
                joined[(b * len + t0 + t) * v..(b * len + t0 + t + 1) * v].copy_from_slice(src);
            }
        }
        t0 += take;
    }
    let err = max_abs_diff(&full, &joined);
    assert!(err <= 1e-4, "cached decoder logits differ by {err}");
}

#[test]
fn cached_translation_equals_uncached_and_cross_attention_cache_is_exact() {
    let model = transformer();
    let sources: Vec<Vec<u32>> = WORDS
        .iter()
        .map(|w| PigLatinVocab::encode(w).unwrap())
        .collect();
    let config = GenerateConfig::new(12).with_stop_token(PigLatinVocab::EOS);
    let cached = model
        .translate_greedy(&sources, PigLatinVocab::SOS, config, &dev())
        .unwrap();
    let uncached = model
        .translate_greedy_uncached(&sources, PigLatinVocab::SOS, config, &dev())
        .unwrap();
    assert_eq!(cached, uncached);
    assert!(cached.iter().any(|c| !c.is_empty()));

    let (attention, queries, context) = crate::common::seeded(9, || {
        let attention = AttentionConfig::new(8, 2)
            .with_causal(false)
            .try_init::<Cpu>(&dev())
            .unwrap();
        let queries =
            Tensor::<Cpu, 3>::random([2, 3, 8], burn::tensor::Distribution::Default, &dev());
        let context =
            Tensor::<Cpu, 3>::random([2, 5, 8], burn::tensor::Distribution::Default, &dev());
        (attention, queries, context)
    });
    let padding = Tensor::<Cpu, 2, burn::tensor::Bool>::from_data(
        TensorData::new(
            vec![
                false, false, false, true, true, false, false, false, false, false,
            ],
            [2, 5],
        ),
        &dev(),
    );
    for mask in [None, Some(padding)] {
        let plain = attention.attend(
            AttentionInput::cross(queries.clone(), context.clone()).maybe_padding(mask.clone()),
        );
        let kv = attention
            .cross_keys_values(context.clone(), mask.clone())
            .unwrap();
        let cached = attention.attend(AttentionInput::cached(queries.clone(), kv.clone()));
        let (with_weights, weights) = attention
            .attend_with_weights(
                AttentionInput::cross(queries.clone(), context.clone()).maybe_padding(mask.clone()),
            )
            .unwrap();
        assert!(max_abs_diff(&values(plain.clone()), &values(cached)) <= 1e-6);
        assert!(max_abs_diff(&values(plain), &values(with_weights)) <= 1e-5);
        let w = values(weights); // [2, 2, 3, 5], rows sum to 1
        for row in w.chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() <= 1e-5);
        }
        if mask.is_some() {
            // Batch 0 never reads its padded context positions 3 and 4.
            assert!(w[..2 * 3 * 5].chunks(5).all(|r| r[3] == 0.0 && r[4] == 0.0));
        }
    }
}

#[test]
fn mamba_translator_decodes_with_state_like_recomputing() {
    let model = mamba();
    let prompts: Vec<Vec<u32>> = WORDS
        .iter()
        .map(|w| {
            PigLatinVocab::encode(w)
                .unwrap()
                .into_iter()
                .chain([PigLatinVocab::SOS])
                .collect()
        })
        .collect();
    let config = GenerateConfig::new(10).with_stop_token(PigLatinVocab::EOS);
    let cached = generate_greedy(&model, &prompts, config, &dev()).unwrap();
    for (prompt, got) in prompts.iter().zip(&cached) {
        // Recompute the whole prefix at every step.
        let mut seq = prompt.clone();
        let mut expected = Vec::new();
        for _ in 0..10 {
            let logits = model.forward(ids(std::slice::from_ref(&seq))).unwrap(); // [1, L, V]
            let [_, l, v] = logits.dims();
            let next = logits
                .narrow(1, l - 1, 1)
                .reshape([1, v])
                .argmax(1)
                .into_scalar() as u32;
            if next == PigLatinVocab::EOS {
                break;
            }
            expected.push(next);
            seq.push(next);
        }
        assert_eq!(got, &expected);
    }
}

#[test]
fn pig_latin_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-piglatin-{}", std::process::id()));
    let options = PigLatinOptions {
        out_dir: dir.clone(),
        progress: false,
        ..PigLatinOptions::default()
    }
    .quick();
    let outcomes =
        run_grid::<seqlayers::backend::CpuAutodiff>(&options, &Default::default()).unwrap();
    // transformer + mamba at one width on the small list, and one extra discretization.
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert_eq!(o.run.data, DataSize::Small);
        assert!(o.params > 0);
        let first = o.report.curve.first().unwrap();
        let last = o.report.curve.last().unwrap();
        assert!(
            last.test_loss < first.test_loss,
            "{}: validation loss falls",
            o.run.label()
        );
        assert!((0.0..=1.0).contains(&o.greedy_accuracy));
        // Teacher-forced arg-max and greedy decoding score the same words.
        assert!((o.greedy_accuracy - o.validation.exact_match).abs() < 1e-9);
        assert!(o.latency_ms.0 > 0.0 && o.latency_ms.1 > 0.0);
        assert_eq!(o.probes.len(), 3);
        if o.run.model == Translator::Mamba {
            // Retention is a weight in (0, 1] that grows towards the SOS position.
            let keep = &o.probes[0].rows[1];
            let n = o.probes[0].english.len();
            assert!((keep[n] - 1.0).abs() < 1e-9);
            assert!(keep[..=n].windows(2).all(|w| w[0] <= w[1] + 1e-12));
        }
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("summary.csv").lines().count(), 4);
    let report = read("report.md");
    for needle in [
        "| transformer | 16 | small",
        "## Findings",
        "Mamba discretizations",
    ] {
        assert!(report.contains(needle), "report misses {needle}");
    }
    // The seeded split and task are reproducible.
    let (a, _) = options.pairs(DataSize::Small).unwrap();
    let (b, _) = options.pairs(DataSize::Small).unwrap();
    assert_eq!(a, b);
    let task = PigLatinTask::new(&a[..50], &a[50..80], Seq2SeqLayout::EncoderDecoder).unwrap();
    let draw = |seed| {
        task.train_batch(&mut StdRng::seed_from_u64(seed), 8)
            .unwrap()
    };
    assert_eq!(draw(1), draw(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mamba_translator_takes_each_discretization() {
    use crate::harness::pig_latin::Disc;
    let options = PigLatinOptions {
        mamba_layers: 1,
        d_state: 4,
        ..PigLatinOptions::default()
    };
    let tokens = ids(&[PigLatinVocab::encode("street").unwrap()]);
    let logits: Vec<Vec<f32>> = [Disc::ApproxZoh, Disc::ExactZoh, Disc::Bilinear]
        .into_iter()
        .map(|disc| {
            let config = mamba_config(&options, 16, disc).unwrap();
            let model: LanguageModel<Cpu> =
                crate::common::seeded(5, || config.try_init(&dev()).unwrap());
            assert_eq!(model.stack.blocks.len(), 1, "one Mamba block as configured");
            values(model.forward(tokens.clone()).unwrap())
        })
        .collect();
    // Same weights, different Ā, B̄: different outputs (by a little: Δ starts small).
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let d = max_abs_diff(&logits[i], &logits[j]);
        assert!(
            d > 1e-7,
            "discretizations {i} and {j} give the same logits ({d})"
        );
    }
}

/// The Mamba block's mixers of a translator.
fn mamba_mixers<B: burn::tensor::backend::Backend>(
    model: &LanguageModel<B>,
) -> Vec<&seqlayers::ssm::Mamba<B>> {
    model
        .stack
        .blocks
        .iter()
        .filter_map(|b| match &b.mixer {
            seqlayers::stack::MixerBlock::Mamba(m) => Some(&m.mixer),
            _ => None,
        })
        .collect()
}

#[test]
fn mamba_variants_keep_a_fixed_and_delta_constant_through_training_and_decoding() {
    use burn::module::AutodiffModule;
    use seqlayers::backend::CpuAutodiff;
    use seqlayers::ssm::{StateMatrix, StepSize};
    use seqlayers::train::{Silent, TrainConfig, train};

    use burn::module::Module;

    use crate::harness::pig_latin::{Disc, mamba_variant_config, trainable_params};
    let options = PigLatinOptions {
        mamba_layers: 2,
        d_state: 4,
        ..PigLatinOptions::default()
    };
    let task = PigLatinTask::new(
        &pairs(&WORDS),
        &pairs(&["string", "orange"]),
        Seq2SeqLayout::Concatenated,
    )
    .unwrap();
    let constant = StepSize::Constant { value: 0.2 };
    for (a, dt) in [
        (StateMatrix::FixedNegIdentity, StepSize::Selective),
        (StateMatrix::Learned, constant),
        (StateMatrix::FixedNegIdentity, constant),
    ] {
        let config = mamba_variant_config(&options, 16, Disc::Bilinear, a, dt).unwrap();
        let model: LanguageModel<CpuAutodiff> =
            crate::common::seeded(7, || config.try_init(&dev()).unwrap());
        // What is fixed is not counted as trained: 2 blocks × (A_log [E = 32, N = 4] and/or
        // dt_proj [R = 1, E] + [E]).
        let frozen = 2 * match (a, dt) {
            (StateMatrix::FixedNegIdentity, StepSize::Selective) => 32 * 4,
            (StateMatrix::Learned, _) => 32 + 32,
            _ => 32 * 4 + 32 + 32,
        };
        assert_eq!(trainable_params(&model) + frozen, model.num_params());
        let before = model.valid();
        let train_config = TrainConfig {
            steps: 3,
            batch_size: 4,
            lr: 1e-2,
            eval_every: 3,
            seed: 0,
            ..TrainConfig::default()
        };
        let (trained, _) = train(model, &task, &train_config, &dev(), &mut Silent).unwrap();
        let after = trained.valid();
        let tokens = ids(&[PigLatinVocab::encode("streetsay").unwrap()]);
        for (m0, m1) in mamba_mixers(&before).into_iter().zip(mamba_mixers(&after)) {
            let moved =
                |p0: Tensor<Cpu, 2>, p1: Tensor<Cpu, 2>| max_abs_diff(&values(p0), &values(p1));
            // The rest of the mixer trains.
            assert!(moved(m0.in_proj.weight.val(), m1.in_proj.weight.val()) > 0.0);
            let a_moved = moved(m0.a_log.val(), m1.a_log.val());
            let dt_moved = moved(m0.dt_proj.weight.val(), m1.dt_proj.weight.val());
            match a {
                StateMatrix::FixedNegIdentity => {
                    assert_eq!(
                        a_moved, 0.0,
                        "A_log is not trained (AdamW's decay included)"
                    );
                    assert!(values(m1.a_log.val()).iter().all(|&v| v == 0.0));
                }
                StateMatrix::Learned => assert!(a_moved > 0.0),
            }
            match dt {
                StepSize::Constant { .. } => assert_eq!(dt_moved, 0.0, "dt_proj is unused"),
                StepSize::Selective => assert!(dt_moved > 0.0),
            }
        }
        for (delta, a_mat) in after.mamba_selectivity(tokens).unwrap() {
            if a == StateMatrix::FixedNegIdentity {
                assert!(
                    values(a_mat).iter().all(|&v| v == -1.0),
                    "A = −I after training"
                );
            }
            if let StepSize::Constant { value } = dt {
                assert!(
                    values(delta)
                        .iter()
                        .all(|&d| (f64::from(d) - value).abs() < 1e-6)
                );
            }
        }
        // Greedy decoding with the state gives what recomputing the prefix gives.
        let prompt: Vec<u32> = PigLatinVocab::encode("quiet")
            .unwrap()
            .into_iter()
            .chain([PigLatinVocab::SOS])
            .collect();
        let config = GenerateConfig::new(8).with_stop_token(PigLatinVocab::EOS);
        let cached =
            generate_greedy(&after, std::slice::from_ref(&prompt), config, &dev()).unwrap();
        let mut seq = prompt.clone();
        let mut expected = Vec::new();
        for _ in 0..8 {
            let logits = after.forward(ids(std::slice::from_ref(&seq))).unwrap(); // [1, L, V]
            let [_, l, v] = logits.dims();
            let next = logits
                .narrow(1, l - 1, 1)
                .reshape([1, v])
                .argmax(1)
                .into_scalar() as u32;
            if next == PigLatinVocab::EOS {
                break;
            }
            expected.push(next);
            seq.push(next);
        }
        assert_eq!(cached[0], expected, "{a:?}/{dt:?}");
    }
}

#[test]
fn variant_flags_make_runs_labels_and_report_lines() {
    use clap::Parser;

    use crate::harness::pig_latin::{PigLatinArgs, Positions, pig_latin_options};
    let args = PigLatinArgs::try_parse_from([
        "pig_latin",
        "--quick",
        "--sweep",
        "none",
        "--heads",
        "1,4",
        "--positions",
        "none,learned",
        "--mamba-a",
        "learned,fixed-identity",
        "--mamba-dt",
        "constant:0.1",
        "--optimizer",
        "sgd",
        "--schedule",
        "constant",
    ])
    .unwrap();
    let o = pig_latin_options(&args).unwrap();
    let runs = o.runs();
    // 2 heads × 2 positions transformers, 2 A × 1 Δ Mambas, at width 16 on the small list; the
    // default head count at width 16 (1) is left out of the label.
    assert_eq!(runs.len(), 6);
    let labels: Vec<String> = runs.iter().map(|r| r.label()).collect();
    for (i, a) in labels.iter().enumerate() {
        assert!(!labels[..i].contains(a), "label `{a}` twice");
    }
    assert!(labels.contains(&"transformer d=16 small h=4 pe=none".to_string()));
    assert!(labels.contains(&"transformer d=16 small pe=learned".to_string()));
    assert!(labels.contains(&"mamba d=16 small bilinear A=-I dt=constant:0.1".to_string()));
    assert!(labels.contains(&"mamba d=16 small bilinear dt=constant:0.1".to_string()));
    let tags: Vec<String> = runs.iter().map(|r| r.tag()).collect();
    for (i, t) in tags.iter().enumerate() {
        assert!(!tags[..i].contains(t), "plot tag `{t}` twice");
        assert!(!t.contains(':') && !t.contains(' '), "{t}");
    }
    assert!(
        runs.iter()
            .any(|r| r.positions == Positions::Learned && r.heads == 4)
    );
    // Defaults: one run per translator, labels as before.
    let plain = pig_latin_options(&PigLatinArgs::try_parse_from(["pig_latin", "--quick"]).unwrap())
        .unwrap();
    let labels: Vec<String> = plain.runs().iter().map(|r| r.label()).collect();
    assert_eq!(
        labels,
        [
            "transformer d=16 small",
            "mamba d=16 small bilinear",
            "mamba d=16 small approx-zoh"
        ]
    );
}

#[test]
fn pig_latin_quick_runs_the_variants() {
    use crate::harness::pig_latin::{Optim, Positions, Schedule};
    use seqlayers::ssm::{StateMatrix, StepSize};
    let dir = std::env::temp_dir().join(format!(
        "seqlayers-piglatin-variants-{}",
        std::process::id()
    ));
    let options = PigLatinOptions {
        out_dir: dir.clone(),
        progress: false,
        discretization_sweep: Vec::new(),
        heads: vec![2],
        positions: vec![Positions::Learned],
        mamba_a: vec![StateMatrix::FixedNegIdentity],
        mamba_dt: vec![StepSize::Constant { value: 0.1 }],
        optimizer: Optim::Adam,
        schedule: Schedule::Constant,
        ..PigLatinOptions::default().quick()
    };
    let options = PigLatinOptions {
        steps: 12,
        ..options
    };
    let outcomes =
        run_grid::<seqlayers::backend::CpuAutodiff>(&options, &Default::default()).unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(o.report.curve.iter().all(|p| p.test_loss.is_finite()));
        if o.run.model == Translator::Mamba {
            // Row 0 is the mean Δ: the constant at every position.
            assert!(o.probes[0].rows[0].iter().all(|&d| (d - 0.1).abs() < 1e-6));
        }
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let summary = read("summary.csv");
    assert!(
        summary.starts_with("model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,")
    );
    assert!(summary.contains("transformer,16,small,bilinear,2,learned,,,"));
    assert!(summary.contains("mamba,16,small,bilinear,,,fixed-identity,constant:0.1,"));
    let report = read("report.md");
    for needle in [
        "Adam (no weight decay) (lr",
        "constant rate",
        "- Transformer heads: 2.",
        "- Transformer positions: learned",
        "- Mamba A: fixed A = −I (not trained",
        "- Mamba Δ: constant Δ = 0.1 (dt_proj unused",
        "| h=2 pe=learned |",
        "| A=-I dt=constant:0.1 |",
    ] {
        assert!(report.contains(needle), "report misses {needle}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn encoder_attention_maps_are_the_softmax_of_the_first_blocks_scores() {
    // Block 1's map recomputed by hand in f64 from the layer's own weights: pre-norm input
    // `h`, fused projection `[Q | K | V] = h W + b`, heads as contiguous slices of `D`, and
    // `softmax(q_h k_hᵀ / √d_h)` over the keys. Later blocks: rows are distributions.
    let model = transformer();
    let word = PigLatinVocab::encode("street").unwrap();
    let len = word.len();
    let source = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(word.iter().map(|&t| t as i64).collect(), [1, len]),
        &dev(),
    );
    let maps = model.encoder_attention_maps(source.clone()).unwrap();
    assert_eq!(maps.len(), 2, "one map per encoder block");
    let block = &model.encoder[0].attention;
    let mha = &block.mixer;
    let (d, heads, dh) = (mha.d_model, mha.n_heads, mha.d_head);
    let x = model
        .position
        .try_forward(model.source_embedding.forward(source), 0)
        .unwrap(); // [1, L, D]
    let h: Vec<f64> = values(block.norm.forward(x))
        .iter()
        .map(|&v| v as f64)
        .collect(); // [L, D]
    let w: Vec<f64> = values(mha.qkv.weight.val())
        .iter()
        .map(|&v| v as f64)
        .collect(); // [D, 3D]
    let b: Vec<f64> = values(mha.qkv.bias.as_ref().unwrap().val())
        .iter()
        .map(|&v| v as f64)
        .collect(); // [3D]
    let project = |i: usize, col: usize| -> f64 {
        b[col]
            + (0..d)
                .map(|j| h[i * d + j] * w[j * 3 * d + col])
                .sum::<f64>()
    };
    let got = values(maps[0].clone()); // [1, H, L, L]
    let mut worst = 0.0f64;
    for head in 0..heads {
        for i in 0..len {
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    (0..dh)
                        .map(|c| project(i, head * dh + c) * project(j, d + head * dh + c))
                        .sum::<f64>()
                        / (dh as f64).sqrt()
                })
                .collect();
            let top = scores.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = scores.iter().map(|s| (s - top).exp()).sum();
            for j in 0..len {
                let want = (scores[j] - top).exp() / z;
                let have = got[((head * len) + i) * len + j] as f64;
                worst = worst.max((want - have).abs());
            }
        }
    }
    assert!(worst < 1e-5, "block 1's map is off by {worst}");
    for map in &maps {
        assert_eq!(map.dims(), [1, heads, len, len]);
        for row in values(map.clone()).chunks(len) {
            let sum: f32 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5 && row.iter().all(|&p| p >= 0.0),
                "{row:?}"
            );
        }
    }
}

#[test]
fn the_embedding_summary_finds_planted_clusters() {
    // Vowels on one axis, consonants on another, `-` and `</s>` equal, `<s>` on a third:
    // hand-derived similarities 1, 1 and 0, `</s>` nearest to `-`, and all variance in a
    // 3-point configuration of which two components keep most.
    use crate::harness::pig_latin::embedding_view;
    let mut table = vec![vec![0.0; 4]; PigLatinVocab::SIZE];
    for t in 0..26u32 {
        let axis = if [0, 4, 8, 14, 20].contains(&t) { 0 } else { 1 };
        table[t as usize][axis] = 1.0;
    }
    table[PigLatinVocab::DASH as usize][2] = 1.0;
    table[PigLatinVocab::EOS as usize][2] = 1.0;
    table[PigLatinVocab::SOS as usize][3] = 1.0;
    table[PigLatinVocab::PAD as usize] = vec![9.0; 4]; // left out
    let view = embedding_view(&table);
    assert_eq!(view.points.len(), PigLatinVocab::SIZE - 1);
    assert!((view.cos_vowels - 1.0).abs() < 1e-12);
    assert!((view.cos_consonants - 1.0).abs() < 1e-12);
    assert!(view.cos_vowel_consonant.abs() < 1e-12);
    assert!((view.cos_dash_eos - 1.0).abs() < 1e-12);
    assert_eq!(view.dash_eos_rank, 1);
    assert_eq!(view.others, PigLatinVocab::SIZE - 2);
    // Points of one group share their coordinates.
    let a = &view.points[0];
    let e = &view.points[4];
    assert!((a.2 - e.2).abs() < 1e-9 && (a.3 - e.3).abs() < 1e-9);
    assert!(
        view.explained > 0.5 && view.explained <= 1.0 + 1e-12,
        "{}",
        view.explained
    );
}
