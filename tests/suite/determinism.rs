//! The same seed gives bit-identical training whatever the thread count: the fused kernels
//! (scan, attention, LSTM) split work across threads but reduce in a fixed order.

use burn::module::Module;
use seqlayers::backend::CpuAutodiff;
use seqlayers::data::{CopyConfig, CopyKind, CopyTask};
use seqlayers::model::LanguageModelConfig;
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{CurvePoint, Silent, TrainConfig, train};

use crate::common::dev;

/// Every parameter value, in visiting order.
fn parameters<M: Module<CpuAutodiff>>(model: &M) -> Vec<f32> {
    crate::common::parameter_values::<CpuAutodiff, M>(model)
}

fn bits(curve: &[CurvePoint]) -> Vec<[u64; 4]> {
    curve
        .iter()
        .map(|p| {
            [
                p.loss.to_bits(),
                p.mean_loss.to_bits(),
                p.test_score.to_bits(),
                p.test_loss.to_bits(),
            ]
        })
        .collect()
}

#[test]
fn training_is_bit_identical_for_one_or_two_threads() {
    // Sizes above every kernel's parallel threshold: B·L·E·N = 8·48·64·16 for the scan,
    // B·L·H·4H = 8·48·32·128 for the LSTM.
    let task = CopyTask::new(
        CopyConfig::new(CopyKind::Copy)
            .with_train_lengths(4, 12)
            .with_context(48),
    )
    .unwrap();
    let stack = StackConfig::new(32, parse_layers("mamba,attention+mlp,lstm").unwrap())
        .with_n_heads(2)
        .with_position(PositionEncoding::alibi());
    let model = crate::common::seeded(1, || {
        LanguageModelConfig::new(stack, task.vocab_size())
            .try_init::<CpuAutodiff>(&dev())
            .unwrap()
    });
    let config = TrainConfig {
        steps: 6,
        batch_size: 8,
        eval_every: 3,
        test_batch: 8,
        early_stop: None,
        ..TrainConfig::default()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (trained, report) =
                train(model.clone(), &task, &config, &dev(), &mut Silent).unwrap();
            (bits(&report.curve), parameters(&trained))
        })
    };
    let (curve1, params1) = run(1);
    let (curve2, params2) = run(2);
    assert_eq!(curve1.len(), 3);
    assert_eq!(curve1, curve2, "curves differ between 1 and 2 threads");
    assert!(
        params1
            .iter()
            .zip(&params2)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "trained parameters differ between 1 and 2 threads"
    );
}
