//! One convention per concept: every `try_init` draws all parameters; the stack's norm epsilon
//! reaches every norm; a padding mask means "`true` = padding" in attention and Mamba alike; an
//! attention residual block can be built from outside the crate.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Distribution, Tensor, TensorData};
use seqlayers::attention::AttentionBlock;
use seqlayers::attention::AttentionConfig;
use seqlayers::attention::AttentionInput;
use seqlayers::backend::Cpu;
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::model::{ClassifierConfig, LanguageModelConfig};
use seqlayers::nn::{Norm, NormKind, NormPlacement, Residual};
use seqlayers::position::PositionEncoding;
use seqlayers::ssm::MambaConfig;
use seqlayers::stack::{MixerBlock, StackConfig, parse_layers};

use crate::common::{dev, max_abs_diff, seeded, values};

/// Counts parameters that are still lazy (not drawn yet).
struct Lazy(usize, usize);

impl ModuleVisitor<Cpu> for Lazy {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Cpu, D>>) {
        self.0 += 1;
        if !param.is_initialized() {
            self.1 += 1;
        }
    }
}

fn lazy_params<M: Module<Cpu>>(m: &M) -> (usize, usize) {
    let mut v = Lazy(0, 0);
    m.visit(&mut v);
    (v.0, v.1)
}

#[test]
fn every_try_init_draws_all_parameters() {
    let stack = StackConfig::new(8, parse_layers("mamba+mlp,attention+mlp,lstm").unwrap())
        .with_n_heads(2)
        .with_position(PositionEncoding::learned(16));
    let task = AssociativeRecall::new(RecallConfig::new(1).with_dim(8)).unwrap();
    // Under the init lock: a parameter left lazy would draw later, outside it, and shift the
    // numbers of a seeded test on another thread.
    let (lm, classifier, attention, mamba, block) = seeded(1, || {
        (
            LanguageModelConfig::new(stack.clone(), 9)
                .try_init::<Cpu>(&dev())
                .unwrap(),
            ClassifierConfig::new(stack, 16)
                .try_init::<Cpu>(task.embedding(&dev()), &dev())
                .unwrap(),
            AttentionConfig::new(8, 2).try_init::<Cpu>(&dev()).unwrap(),
            MambaConfig::new(8).try_init::<Cpu>(&dev()).unwrap(),
            MambaConfig::new(8).try_init_block::<Cpu>(&dev()).unwrap(),
        )
    });
    for (name, (total, lazy)) in [
        ("language model", lazy_params(&lm)),
        ("classifier", lazy_params(&classifier)),
        ("attention", lazy_params(&attention)),
        ("mamba", lazy_params(&mamba)),
        ("mamba block", lazy_params(&block)),
    ] {
        assert!(total > 0, "{name}: no parameters visited");
        assert_eq!(lazy, 0, "{name}: {lazy} of {total} parameters still lazy");
    }
}

#[test]
fn the_stack_norm_epsilon_reaches_every_norm() {
    let stack = StackConfig::new(8, parse_layers("mamba+mlp,attention+mlp,lstm").unwrap())
        .with_norm_eps(3e-3);
    let lm = seeded(2, || {
        LanguageModelConfig::new(stack, 9)
            .try_init::<Cpu>(&dev())
            .unwrap()
    });
    let eps = |n: &Norm<Cpu>| match n {
        Norm::Rms(n) => n.epsilon,
        Norm::Layer(_) => unreachable!("RMSNorm by default"),
    };
    let mut seen = vec![eps(&lm.norm)];
    for block in &lm.stack.blocks {
        seen.push(match &block.mixer {
            MixerBlock::Attention(b) => eps(&b.norm),
            MixerBlock::LinearAttention(b) => eps(&b.norm),
            MixerBlock::Mamba(b) => eps(&b.norm),
            MixerBlock::Lstm(b) => eps(&b.norm),
        });
        if let Some(mlp) = &block.mlp {
            seen.push(eps(&mlp.norm));
        }
    }
    assert_eq!(seen, vec![3e-3; 6]);
}

#[test]
fn attention_and_mamba_read_the_same_padding_mask() {
    // Left padding (2 pads) of one sequence; `true` = padding for both layers. Without
    // positions, attention that never attends to pads, and Mamba that steps over them, give the
    // unpadded outputs at the real positions.
    let (d, real, pads) = (8, 5, 2);
    let x = seeded(4, || {
        Tensor::<Cpu, 3>::random([1, real, d], Distribution::Normal(0.0, 1.0), &dev())
    });
    let padded = Tensor::cat(vec![Tensor::zeros([1, pads, d], &dev()), x.clone()], 1);
    let flags: Vec<bool> = (0..real + pads).map(|t| t < pads).collect();
    let mask = Tensor::<Cpu, 2, Bool>::from_data(TensorData::new(flags, [1, real + pads]), &dev());
    let (attention, mamba) = seeded(5, || {
        let attention = AttentionConfig::new(d, 2)
            .with_causal(false)
            .try_init::<Cpu>(&dev())
            .unwrap();
        (
            attention,
            MambaConfig::new(d).try_init::<Cpu>(&dev()).unwrap(),
        )
    });
    let tail = |y: Tensor<Cpu, 3>| values(y.narrow(1, pads, real));
    let a = tail(
        attention.attend(AttentionInput::self_attention(padded.clone()).padding(mask.clone())),
    );
    assert!(max_abs_diff(&a, &values(attention.forward(x.clone()))) < 1e-5);
    let zeros = mamba.init_state(padded.dims()[0], &dev());
    let (m, _) = mamba.forward_padded(padded, zeros, mask).unwrap();
    let (m_ref, _) = crate::common::from_zero(&mamba, x).unwrap();
    assert!(max_abs_diff(&tail(m), &values(m_ref)) < 1e-5);
}

#[test]
fn an_attention_block_can_be_built_from_outside_the_crate() {
    let config = AttentionConfig::new(8, 2).with_position(PositionEncoding::rope());
    let (from_config, by_hand, x) = seeded(6, || {
        let from_config = config.try_init_block::<Cpu>(&dev()).unwrap();
        let by_hand: AttentionBlock<Cpu> = Residual::new(
            NormKind::Layer.init(8, 1e-5, &dev()),
            config.try_init::<Cpu>(&dev()).unwrap(),
            NormPlacement::Pre,
        );
        let x = Tensor::<Cpu, 3>::random([2, 6, 8], Distribution::Normal(0.0, 1.0), &dev());
        (from_config, by_hand, x)
    });
    for block in [from_config, by_hand] {
        // x + attention(norm(x)): the residual is there.
        let y = block.forward(x.clone());
        let branch = block.mixer.forward(block.norm.forward(x.clone()));
        assert!(max_abs_diff(&values(y), &values(x.clone() + branch)) < 1e-6);
    }
}
