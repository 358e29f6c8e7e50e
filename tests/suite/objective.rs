//! Losses and metrics of the task-generic trainer on token targets: hand-derived values for a
//! uniform model, and teacher-forced exact match equal to greedy generation.

use burn::module::{Module, Param};
use burn::prelude::*;
use seqlayers::SeqError;
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::data::{Batch, Metric, Targets, Task};
use seqlayers::decode::{GenerateConfig, generate_greedy};
use seqlayers::model::LanguageModelConfig;
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{SequenceModel, Silent, TrainConfig, batch_loss, evaluate_batch, train};

use crate::common::dev;

/// Logits identically zero (a uniform prediction over `V` = 5), plus one unused parameter.
#[derive(Module, Debug)]
struct Uniform<B: Backend> {
    unused: Param<Tensor<B, 1>>,
}

impl<B: Backend> SequenceModel<B> for Uniform<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> seqlayers::Result<Tensor<B, 3>> {
        let [b, l] = tokens.dims();
        Ok(Tensor::zeros([b, l, 5], &tokens.device())
            + self.unused.val().sum().mul_scalar(0.0).reshape([1, 1, 1]))
    }
}

fn token_batch() -> Batch {
    Batch {
        tokens: vec![1, 2, 3, 4, 2, 2, 2, 2],
        batch: 2,
        len: 4,
        targets: Targets::Tokens {
            ids: vec![2, 3, 4, 0, 0, 0, 1, 3],
            loss_mask: vec![false, true, true, false, true, true, false, false],
        },
        source: None,
    }
}

#[test]
fn uniform_model_has_the_hand_derived_loss_and_metrics() {
    let m = Uniform::<Cpu> {
        unused: Param::from_tensor(Tensor::zeros([1], &dev())),
    };
    let batch = token_batch();
    let loss: f32 = batch_loss(&m, &batch, &dev()).unwrap().into_scalar();
    assert!(
        (loss as f64 - 5f64.ln()).abs() < 1e-6,
        "loss {loss} vs ln 5"
    );
    let s = evaluate_batch(&m, &batch, &dev()).unwrap();
    assert!((s.perplexity - 5.0).abs() < 1e-5);
    // Arg-max of equal logits is id 0: right at the two scored zeros of row 2, wrong in row 1.
    assert_eq!(s.accuracy, 2.0 / 4.0);
    assert_eq!(s.exact_match, 1.0 / 2.0);
    assert_eq!(s.get(Metric::Perplexity), s.perplexity);
    let mut bad = token_batch();
    bad.targets = Targets::Tokens {
        ids: vec![0; 8],
        loss_mask: vec![false; 8],
    };
    // A batch that scores nothing must be refused as such, not evaluated (with the `max(1)`
    // guards it would give loss 0, perplexity 1 and accuracy 0) nor refused as a shape error.
    let err = evaluate_batch(&m, &bad, &dev()).unwrap_err();
    assert!(
        matches!(&err, SeqError::InvalidConfig(msg) if msg.contains("scores no position")),
        "{err:?}"
    );
}

#[test]
fn teacher_forced_exact_match_equals_greedy_generation() {
    let stack = StackConfig::new(8, parse_layers("mamba,attention+mlp").unwrap());
    let m = crate::common::seeded(3, || {
        LanguageModelConfig::new(stack, 7)
            .try_init::<Cpu>(&dev())
            .unwrap()
    });
    let prompt = vec![1u32, 4, 2];
    let answer = &generate_greedy(
        &m,
        std::slice::from_ref(&prompt),
        GenerateConfig::new(4),
        &dev(),
    )
    .unwrap()[0];
    // Inputs: prompt + answer[..3]; targets: the next token; scored: the answer positions.
    let tokens: Vec<u32> = prompt.iter().chain(&answer[..3]).copied().collect();
    let ids: Vec<u32> = tokens[1..].iter().chain(&answer[3..]).copied().collect();
    let loss_mask: Vec<bool> = (0..tokens.len()).map(|t| t >= prompt.len() - 1).collect();
    let batch = |ids: Vec<u32>| Batch {
        tokens: tokens.clone(),
        batch: 1,
        len: tokens.len(),
        targets: Targets::Tokens {
            ids,
            loss_mask: loss_mask.clone(),
        },
        source: None,
    };
    assert_eq!(
        evaluate_batch(&m, &batch(ids.clone()), &dev())
            .unwrap()
            .exact_match,
        1.0
    );
    let mut wrong = ids;
    let last = wrong.len() - 1;
    wrong[last] = (wrong[last] + 1) % 7;
    assert_eq!(
        evaluate_batch(&m, &batch(wrong), &dev())
            .unwrap()
            .exact_match,
        0.0
    );
}

/// "Repeat the first token": the target at every position is token 0 of the sequence.
struct RepeatFirst;

impl Task for RepeatFirst {
    fn train_len(&self) -> usize {
        6
    }

    fn sample(
        &self,
        rng: &mut rand::rngs::StdRng,
        batch: usize,
        len: usize,
    ) -> seqlayers::Result<Batch> {
        use rand::Rng;
        let tokens: Vec<u32> = (0..batch * len).map(|_| rng.random_range(0..5)).collect();
        let ids = (0..batch * len).map(|i| tokens[i / len * len]).collect();
        let loss_mask = (0..batch * len).map(|i| i % len > 0).collect();
        Ok(Batch {
            tokens,
            batch,
            len,
            targets: Targets::Tokens { ids, loss_mask },
            source: None,
        })
    }

    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
}

#[test]
fn trainer_learns_a_token_task_with_a_language_model() {
    let stack = StackConfig::new(16, parse_layers("attention+mlp").unwrap())
        .with_n_heads(2)
        .with_position(seqlayers::position::PositionEncoding::learned(6));
    let m = crate::common::seeded(5, || {
        LanguageModelConfig::new(stack, 5)
            .try_init::<CpuAutodiff>(&dev())
            .unwrap()
    });
    let config = TrainConfig {
        steps: 300,
        lr: 1e-2,
        eval_every: 50,
        early_stop: None,
        batch_size: 32,
        test_batch: 128,
        ..TrainConfig::default()
    };
    let (_, report) = train(m, &RepeatFirst, &config, &dev(), &mut Silent).unwrap();
    let (first, last) = (
        report.curve[0].test_score,
        report.curve.last().unwrap().test_score,
    );
    // Chance is 1/5; attending to position 0 solves it.
    assert!(first < 0.4 && last > 0.9, "token accuracy {first} → {last}");
    assert_eq!(report.metric, Metric::Accuracy);
}
