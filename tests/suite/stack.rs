//! The sequence stack and the recall classifier: causality of every model, positional-table
//! behaviour beyond its length, and that the models actually learn the induction head.

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::model::{ClassifierConfig, StackClassifier};
use seqlayers::nn::Norm;
use seqlayers::position::PositionEncoding;
use seqlayers::presets::RecallModel;
use seqlayers::stack::{LayerKind, MixerBlock, SequenceStack, StackConfig, parse_layers};
use seqlayers::train::{EarlyStop, TrainConfig, evaluate_lengths, train};
use seqlayers::{SeqError, ssm::ScanKind};

use crate::common::{max_abs_diff, seeded};

fn classifier(model: RecallModel, max_len: usize) -> StackClassifier<Cpu> {
    let device = Default::default();
    let task = AssociativeRecall::new(RecallConfig::new(1)).unwrap();
    seeded(1, || {
        ClassifierConfig::new(model.stack_config(8, max_len), 16)
            .try_init::<Cpu>(task.embedding(&device), &device)
            .unwrap()
    })
}

fn tokens(values: &[i64], len: usize) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len() / len, len]),
        &Default::default(),
    )
}

#[test]
fn every_model_is_causal() {
    let len = 12;
    let a: Vec<i64> = (0..len as i64).map(|i| (i * 5 + 3) % 16).collect();
    let mut b = a.clone();
    for t in b.iter_mut().skip(7) {
        *t = (*t + 7) % 16;
    }
    for model in RecallModel::ALL {
        let net = classifier(model, 32);
        let ha = net.try_hidden(tokens(&a, len)).unwrap(); // [1, L, d]
        let hb = net.try_hidden(tokens(&b, len)).unwrap();
        let prefix = |h: Tensor<Cpu, 3>| h.slice([0..1, 0..7]).into_data().to_vec::<f32>().unwrap();
        let (pa, pb) = (prefix(ha.clone()), prefix(hb.clone()));
        let diff = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "{model}: prefix changed by {diff}");
        let later = |h: Tensor<Cpu, 3>| h.slice([0..1, 7..12]).into_data().to_vec::<f32>().unwrap();
        assert_ne!(
            later(ha),
            later(hb),
            "{model}: the future tokens had no effect at all"
        );
    }
}

#[test]
fn learned_positions_past_their_table_are_an_error_not_a_panic() {
    let net = classifier(RecallModel::TransformerLearned, 16);
    let ok = net.try_hidden(tokens(&[1; 16], 16));
    assert!(ok.is_ok());
    let err = net.try_hidden(tokens(&[1; 17], 17)).unwrap_err();
    assert!(
        matches!(
            err,
            SeqError::SequenceTooLong {
                len: 17,
                max: 16,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stack_configs_are_validated() {
    let device = Default::default();
    let err = |config: StackConfig| config.try_init::<Cpu>(&device).map(|_| ()).unwrap_err();
    // Which error, not just "an error": a validation that confused the two checks (or one
    // that only failed later, inside a layer's init) would give another variant.
    assert_eq!(
        err(StackConfig::new(0, vec![LayerKind::Mamba.into()])),
        SeqError::ZeroSize { name: "d_model" }
    );
    assert_eq!(
        err(StackConfig::new(8, vec![])),
        SeqError::ZeroSize {
            name: "number of layers"
        }
    );
    let heads = StackConfig::new(8, vec![LayerKind::Attention.into()]).with_n_heads(3);
    assert!(matches!(
        heads.try_init::<Cpu>(&device),
        Err(SeqError::HeadsDoNotDivide { .. })
    ));
    let rope = StackConfig::new(6, vec![LayerKind::Attention.into()])
        .with_n_heads(2)
        .with_position(PositionEncoding::rope());
    assert!(matches!(
        rope.try_init::<Cpu>(&device),
        Err(SeqError::OddRopeDim { .. })
    ));
    let stack = seeded(2, || {
        StackConfig::new(8, parse_layers("mamba,attention+mlp,lstm").unwrap())
            .try_init::<Cpu>(&device)
            .unwrap()
    });
    assert_eq!(stack.len(), 3);
    let x = seeded(3, || {
        Tensor::<Cpu, 3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device)
    });
    let y = stack.forward(x.clone());
    assert_eq!(y.dims(), [2, 5, 8]);
    // The values, against the stack written again from its blocks' parts: pre-norm residual
    // sublayers `h + f(rmsnorm(h))`, the norm written out by hand, the LSTM run by Burn's own
    // `Lstm::forward` (not the crate's kernel). The two plausible misplacements, post-norm
    // `rmsnorm(h + f(h))` and a dropped residual `f(rmsnorm(h))`, give outputs far from the
    // stack's, so this comparison tells them apart (checked below).
    let y = y.into_data().to_vec::<f32>().unwrap();
    let by_hand = |placement| {
        stack_by_hand(&stack, x.clone(), placement)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let diff = max_abs_diff(&y, &by_hand(Placement::PreNorm));
    assert!(diff <= 1e-5, "stack vs pre-norm by hand: {diff:e}");
    for wrong in [Placement::PostNorm, Placement::NoResidual] {
        let diff = max_abs_diff(&y, &by_hand(wrong));
        assert!(diff > 0.1, "{wrong:?} is not told apart: {diff:e}");
    }
    let task = AssociativeRecall::new(RecallConfig::new(1)).unwrap();
    let wrong_width = ClassifierConfig::new(RecallModel::Mamba.stack_config(4, 8), 16);
    assert!(matches!(
        wrong_width.try_init::<Cpu>(task.embedding(&device), &device),
        Err(SeqError::ShapeMismatch { .. })
    ));
}

/// Where a block puts its norm and residual.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// `h + f(norm(h))`: the crate's (and GPT-2's, Mamba's) pre-norm block.
    PreNorm,
    /// `norm(h + f(h))`: the original Transformer's post-norm block.
    PostNorm,
    /// `f(norm(h))`: no skip connection.
    NoResidual,
}

/// `stack.forward(x)` written again from the blocks' parameters and sublayers, every block
/// RMS-normed, with the given `placement`.
fn stack_by_hand(
    stack: &SequenceStack<Cpu>,
    x: Tensor<Cpu, 3>,
    placement: Placement,
) -> Tensor<Cpu, 3> {
    // `h / sqrt(mean(h²) + ε) · γ` over the last axis.
    let rms = |norm: &Norm<Cpu>, h: Tensor<Cpu, 3>| {
        let Norm::Rms(n) = norm else {
            panic!("the stack is RMS-normed")
        };
        let d = n.gamma.val().dims()[0];
        let ms = h.clone().powf_scalar(2.0).mean_dim(2); // [B, L, 1]
        h / (ms + n.epsilon).sqrt() * n.gamma.val().reshape([1, 1, d])
    };
    let sublayer =
        |norm: &Norm<Cpu>, h: Tensor<Cpu, 3>, f: &dyn Fn(Tensor<Cpu, 3>) -> Tensor<Cpu, 3>| {
            match placement {
                Placement::PreNorm => h.clone() + f(rms(norm, h)),
                Placement::PostNorm => rms(norm, h.clone() + f(h)),
                Placement::NoResidual => f(rms(norm, h)),
            }
        };
    let mut h = x;
    for block in &stack.blocks {
        h = match &block.mixer {
            MixerBlock::Mamba(b) => sublayer(&b.norm, h, &|z| b.mixer.forward(z)),
            MixerBlock::Attention(b) => sublayer(&b.norm, h, &|z| b.mixer.forward(z)),
            MixerBlock::LinearAttention(b) => sublayer(&b.norm, h, &|z| b.mixer.forward(z)),
            MixerBlock::Lstm(b) => sublayer(&b.norm, h, &|z| b.mixer.forward(z, None).0),
        };
        if let Some(m) = &block.mlp {
            h = sublayer(&m.norm, h, &|z| m.mixer.forward(z));
        }
    }
    h
}

/// Trains `model` on the induction head at L = 16 and returns the accuracy at L. Everything is
/// seeded: the initialization (global generator, under the suite's init lock), the embedding
/// (the task's `embedding_seed`), the training batches (`TrainConfig::seed`) and the test set,
/// so the run, and the accuracy asserted on, is the same every time.
fn learn_induction_head(model: RecallModel, scan: ScanKind, steps: usize) -> f64 {
    let device = Default::default();
    let task = AssociativeRecall::new(RecallConfig::new(1).with_train_len(16)).unwrap();
    let mut stack = model.stack_config(8, 16);
    stack.mamba = stack.mamba.clone().with_scan(scan);
    let net = seeded(0, || {
        ClassifierConfig::new(stack, 16)
            .try_init::<CpuAutodiff>(task.embedding(&device), &device)
            .unwrap()
    });
    let config = TrainConfig {
        steps,
        lr: 3e-3,
        eval_every: 25,
        early_stop: Some(EarlyStop {
            target: 0.98,
            patience: 2,
        }),
        seed: 0,
        ..TrainConfig::default()
    };
    let (net, _) = train(net, &task, &config, &device, &mut seqlayers::train::Silent).unwrap();
    use burn::module::AutodiffModule;
    evaluate_lengths(&net.valid(), &task, &[16], 512, 256, 99, &device).unwrap()[0].score
}

#[test]
fn mamba_learns_the_induction_head() {
    // Chance is 1/15; a working selective scan and its gradients solve the task.
    let acc = learn_induction_head(RecallModel::Mamba, ScanKind::Fused, 600);
    assert!(acc > 0.9, "Mamba accuracy at L: {acc}");
}

#[test]
fn rope_transformer_learns_the_induction_head() {
    // Two attention layers at d = 8 learn more slowly than Mamba (see docs/results): after 1000
    // steps they are far above chance (1/15) though not yet perfect (0.76 seen at 600 steps).
    let acc = learn_induction_head(RecallModel::TransformerRope, ScanKind::Fused, 1000);
    assert!(acc > 0.5, "RoPE transformer accuracy at L: {acc}");
}
