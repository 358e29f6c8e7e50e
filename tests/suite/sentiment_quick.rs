//! The `--quick` run of the `sentiment` example (the tiny BERT fixture on synthetic sentences,
//! no download) through its driver (`examples/common/sentiment.rs`), and the pieces it relies
//! on: epoch batches that cover the training set once, and classifiers whose logits do not
//! depend on the padding.

use rand::SeedableRng;
use rand::rngs::StdRng;
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::burn::module::Module;
use seqlayers::burn::nn::LinearConfig;
use seqlayers::model::{LanguageModelConfig, load_bert};
use seqlayers::train::{SequenceModel, token_tensor};

use crate::harness::sentiment::{
    Baseline, Example, ModelKind, Role, SentimentArgs, SentimentOptions, StackSentiment, batch_of,
    epoch_batches, sentiment, sentiment_options, small_stack,
};

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn sentiment_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-sentiment-{}", std::process::id()));
    let options = SentimentOptions {
        out_dir: dir.clone(),
        progress: false,
        ..SentimentOptions::default()
    }
    .quick();
    let out = sentiment::<CpuAutodiff>(&options, &Default::default()).unwrap();
    // Grid 1 batch × 2 rates; AdamW's reference is a grid point, so + SGD, RMSprop, AdaGrad;
    // the search ran on a subset, so the choice is retrained (final); 4 baselines.
    let roles: Vec<Role> = out.runs.iter().map(|r| r.run.role).collect();
    assert_eq!(
        roles,
        [
            [Role::Search; 2].as_slice(),
            &[Role::Optimizer; 3],
            &[Role::Final],
            &[Role::Baseline; 4]
        ]
        .concat()
    );
    let d = &out.data;
    assert_eq!((d.train, d.validation, d.test), (320, 40, 40));
    let (chosen, epoch) = out.selected.expect("a search choice");
    let final_run = &out.runs[out.final_run.expect("a final run")];
    assert_eq!(final_run.run.role, Role::Final);
    assert_eq!(final_run.run.epochs, epoch);
    assert_eq!(
        (
            final_run.run.lr,
            final_run.run.batch,
            final_run.run.train_size
        ),
        (out.runs[chosen].run.lr, out.runs[chosen].run.batch, 320)
    );
    // The choice is the best validation accuracy of the search (no test set involved).
    let best = out
        .runs
        .iter()
        .filter(|r| r.run.role == Role::Search)
        .flat_map(|r| r.trained().map(|p| p.validation.accuracy))
        .fold(f64::MIN, f64::max);
    assert_eq!(
        out.runs[chosen].at(epoch).unwrap().validation.accuracy,
        best
    );
    for r in &out.runs {
        let epochs: Vec<usize> = r.curve.iter().map(|p| p.epoch).collect();
        let first = usize::from(matches!(r.run.role, Role::Search | Role::Optimizer));
        assert_eq!(epochs, (first..=r.run.epochs).collect::<Vec<_>>(), "{r:?}");
        assert!(r.diverged.is_none() && r.steps > 0);
        for p in &r.curve {
            for acc in [p.train.accuracy, p.validation.accuracy] {
                assert!((0.0..=1.0).contains(&acc), "{r:?}");
            }
        }
        // Test accuracy only where it is reported: the final run and the baselines.
        let tested = matches!(r.run.role, Role::Final | Role::Baseline);
        assert_eq!(r.test.n, if tested { 40 } else { 0 }, "{:?}", r.run);
        assert_eq!(r.best().validation.accuracy, {
            r.trained()
                .chain(r.at(0))
                .map(|p| p.validation.accuracy)
                .fold(f64::MIN, f64::max)
        });
    }
    // The probe trains its head only (2 classes × (32 features + bias)).
    let probe = out
        .runs
        .iter()
        .find(|r| r.run.model == ModelKind::Probe)
        .unwrap();
    assert_eq!(probe.trained_params, 66);
    assert!(probe.params > probe.trained_params);
    // The fine-tuned classifier learns the synthetic rule (a positive id counted against a
    // negative one): well above chance on held-out sentences.
    assert!(
        final_run.best().validation.accuracy >= 0.75,
        "{:?}",
        final_run.curve
    );
    let summary = read(&dir, "summary.csv");
    assert_eq!(summary.lines().count(), 1 + out.runs.len(), "{summary}");
    let curves = read(&dir, "curves.csv");
    let points: usize = out.runs.iter().map(|r| r.curve.len()).sum();
    assert_eq!(curves.lines().count(), 1 + points);
    let report = read(&dir, "report.md");
    for needle in [
        "Q1.1",
        "Q2.1",
        "Q2.3",
        "Q3.1",
        "Q3.2",
        "Q3.3",
        "Q4.1",
        "Q4.2",
        "Q4.5",
        "Q4.6",
        "Q4.7",
        "Q5.1",
        "train 320, validation 40, test 40",
        "sgd",
        "rmsprop",
        "adagrad",
        "frozen encoder + linear probe",
        "small Mamba, from scratch",
    ] {
        assert!(report.contains(needle), "report misses {needle}:\n{report}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--seeds 5,6 --no-search`: the final model (the command line's setting) and the baselines
/// once per seed on the first seed's split, the across-seed table in the report, a `seed`
/// column in the CSV files.
#[test]
fn sentiment_quick_repeats_the_final_comparison_per_seed() {
    use clap::Parser;
    let dir =
        std::env::temp_dir().join(format!("seqlayers-sentiment-seeds-{}", std::process::id()));
    let args = SentimentArgs::try_parse_from([
        "sentiment",
        "--quick",
        "--seeds",
        "5,6",
        "--no-search",
        "--optimizers",
        "none",
        "--baselines",
        "probe,mamba",
        "--out",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    let options = SentimentOptions {
        progress: false,
        ..sentiment_options(&args).unwrap()
    };
    assert_eq!(
        (options.seed, options.extra_seeds.as_slice()),
        (5, &[6][..])
    );
    assert!(!options.search);
    assert_eq!(options.baselines, [Baseline::Probe, Baseline::Mamba]);
    let out = sentiment::<CpuAutodiff>(&options, &Default::default()).unwrap();
    let describe = |runs: &[crate::harness::sentiment::RunOutcome]| -> Vec<(Role, ModelKind, u64)> {
        runs.iter()
            .map(|r| (r.run.role, r.run.model, r.run.seed))
            .collect()
    };
    let kinds = [ModelKind::FineTune, ModelKind::Probe, ModelKind::Mamba];
    let roles = [Role::Final, Role::Baseline, Role::Baseline];
    let expect = |seed| -> Vec<(Role, ModelKind, u64)> {
        roles
            .iter()
            .zip(&kinds)
            .map(|(&r, &k)| (r, k, seed))
            .collect()
    };
    assert_eq!(describe(&out.runs), expect(5));
    assert_eq!(describe(&out.repeats), expect(6));
    assert_eq!(out.selected, None);
    let (first, again) = (&out.runs[0].run, &out.repeats[0].run);
    assert_eq!(
        (first.lr, first.batch, first.epochs, first.train_size),
        (options.lr, options.batch, options.epochs, out.data.train)
    );
    assert_eq!(
        (again.lr, again.batch, again.epochs, again.train_size),
        (first.lr, first.batch, first.epochs, first.train_size)
    );
    // Another seed trains another model on the same split: the same test set, other curves.
    for (a, b) in out.runs.iter().zip(&out.repeats) {
        assert_eq!(a.test.n, b.test.n);
        assert_ne!(
            a.curve
                .iter()
                .map(|p| p.train_loss)
                .skip(1)
                .collect::<Vec<_>>(),
            b.curve
                .iter()
                .map(|p| p.train_loss)
                .skip(1)
                .collect::<Vec<_>>(),
            "{:?}",
            a.run
        );
    }
    let summary = read(&dir, "summary.csv");
    assert!(summary.starts_with("role,seed,"));
    let seeds: Vec<&str> = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(seeds, ["5", "5", "5", "6", "6", "6"]);
    let report = read(&dir, "report.md");
    for needle in [
        "The final comparison on 2 seeds",
        "Q4.6–Q4.7** No search",
        "| fine-tuned |",
        "The fine-tuned model's test accuracy above each baseline's",
    ] {
        assert!(report.contains(needle), "report misses {needle}:\n{report}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn epoch_batches_cover_the_training_set_once_and_group_by_length() {
    let examples: Vec<Example> = (0..100)
        .map(|i| Example {
            ids: vec![1; 2 + (i * 7) % 13],
            label: (i % 2) as u32,
        })
        .collect();
    let train: Vec<&Example> = examples.iter().collect();
    for group in [false, true] {
        let mut order: Vec<usize> = (0..100).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let first = epoch_batches(&mut order, &train, 8, group, &mut rng);
        let second = epoch_batches(&mut order, &train, 8, group, &mut rng);
        assert_ne!(first, second, "a new order every epoch");
        for batches in [&first, &second] {
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            assert_eq!(batches.iter().filter(|b| b.len() < 8).count(), 1);
            seen.sort_unstable();
            assert_eq!(seen, (0..100).collect::<Vec<_>>());
        }
        if group {
            // 100 sentences are one group of at most 50 batches: each batch holds neighbours
            // in length, so the lengths of consecutive batches never overlap.
            let mut spans: Vec<(usize, usize)> = first
                .iter()
                .map(|b| {
                    let lens = b.iter().map(|&i| train[i].ids.len());
                    (lens.clone().min().unwrap(), lens.max().unwrap())
                })
                .collect();
            spans.sort_unstable();
            assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
        }
    }
}

#[test]
fn classifiers_give_the_same_logits_padded_or_not() {
    let device = Default::default();
    let short = Example {
        ids: vec![1, 7, 3, 9, 2],
        label: 1,
    };
    let long = Example {
        ids: vec![1, 5, 6, 8, 3, 4, 4, 11, 12, 2],
        label: 0,
    };
    let alone = batch_of(&[&short], 0);
    let padded = batch_of(&[&short, &long], 0);
    assert_eq!((padded.batch, padded.len), (2, 10));
    let compare = |a: Vec<f32>, b: Vec<f32>, what: &str| {
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{what}: {a:?} vs {b:?}");
        }
    };
    let first_row = |t: seqlayers::burn::tensor::Tensor<Cpu, 2>| -> Vec<f32> {
        t.narrow(0, 0, 1).into_data().to_vec().unwrap()
    };
    // The fixture BERT with mean pooling (padded keys masked, pads left out of the mean).
    let encoder = load_bert::<Cpu>(
        std::path::Path::new(crate::harness::sentiment::QUICK_MODEL_DIR),
        &device,
    )
    .unwrap();
    let bert = seqlayers::model::BertClassifierConfig::new(2)
        .with_pooling(seqlayers::model::BertPooling::Mean)
        .init(encoder, &device);
    compare(
        first_row(bert.last_logits(token_tensor(&alone, &device)).unwrap()),
        first_row(bert.last_logits(token_tensor(&padded, &device)).unwrap()),
        "bert",
    );
    // The crate's small transformer and Mamba: causal stacks, mean over the real tokens.
    for kind in [ModelKind::Transformer, ModelKind::Mamba] {
        let body = LanguageModelConfig::new(small_stack(kind, 16).unwrap(), 100)
            .with_tie_embeddings(true)
            .init::<Cpu>(&device);
        let model = StackSentiment {
            body,
            head: LinearConfig::new(16, 2).init(&device),
            pad_id: 0,
        };
        assert!(model.num_params() > 0);
        compare(
            first_row(model.last_logits(token_tensor(&alone, &device)).unwrap()),
            first_row(model.last_logits(token_tensor(&padded, &device)).unwrap()),
            &format!("{kind:?}"),
        );
    }
}
