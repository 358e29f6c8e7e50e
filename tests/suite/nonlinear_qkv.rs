//! MLP Q/K/V projections ([`QkvProjection::Mlp`]): the attention layer equals the formula
//! written again in f64 loops (separate and shared projections), cached decoding equals the
//! full pass in a language model, the default stays the linear layer, a zero hidden width is a
//! typed error, and the tiny GPT grid trains the ablation. Run it alone with
//! `cargo test --test suite nonlinear_qkv`.

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::attention::{AttentionConfig, MultiHeadAttention, QkvProjection, QkvSharing};
use seqlayers::backend::Cpu;
use seqlayers::decode::Decoder;
use seqlayers::model::{LanguageModel, LanguageModelConfig, load_language_model};
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{StackConfig, parse_layers};

use crate::common::{attention, dev, max_abs_diff, seeded, values};
use crate::harness::tiny_gpt::{Ablation, TinyGptOptions, tiny_gpt};

const VOCAB: usize = 11;

fn f64s<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f64> {
    values(t).into_iter().map(f64::from).collect()
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// Causal self-attention with MLP projections written again in f64 loops: projection `p` of
/// row `x` is `GELU(x W₁[:, p·D_h ..] + b₁) W₂[:, p·D ..] + b₂`, Q/K/V take the blocks
/// `sharing.blocks()`, head `h` the columns `h·d_head ..`, scores `q·k/√d_head` over keys
/// `≤ t`, softmax, heads concatenated, then `o W_O + b_O`. Returns `[B, L, D]` row-major.
fn reference(
    attn: &MultiHeadAttention<Cpu>,
    x: &[f64],
    batch: usize,
    len: usize,
    d_hidden: usize,
) -> Vec<f64> {
    let d = attn.d_model;
    let (h, dh) = (attn.n_heads, attn.d_head);
    let p = attn.sharing.n_projections();
    let hidden = attn.qkv_hidden.as_ref().expect("MLP projections");
    let w1 = f64s(hidden.weight.val()); // [D, P·D_h]
    let b1 = f64s(hidden.bias.as_ref().unwrap().val()); // [P·D_h]
    let w2 = f64s(attn.qkv.weight.val()); // [D_h, P·D]
    let b2 = f64s(attn.qkv.bias.as_ref().unwrap().val()); // [P·D]
    let wo = f64s(attn.output.weight.val()); // [D, D]
    let bo = f64s(attn.output.bias.as_ref().unwrap().val()); // [D]
    let project = |row: &[f64], block: usize| -> Vec<f64> {
        let hid: Vec<f64> = (0..d_hidden)
            .map(|j| {
                let col = block * d_hidden + j;
                gelu(
                    b1[col]
                        + (0..d)
                            .map(|i| row[i] * w1[i * p * d_hidden + col])
                            .sum::<f64>(),
                )
            })
            .collect();
        (0..d)
            .map(|c| {
                let col = block * d + c;
                b2[col]
                    + (0..d_hidden)
                        .map(|j| hid[j] * w2[j * p * d + col])
                        .sum::<f64>()
            })
            .collect()
    };
    let (qb, kb, vb) = attn.sharing.blocks();
    let mut y = vec![0.0; batch * len * d];
    for b in 0..batch {
        let rows: Vec<&[f64]> = (0..len)
            .map(|t| &x[(b * len + t) * d..(b * len + t + 1) * d])
            .collect();
        let q: Vec<Vec<f64>> = rows.iter().map(|r| project(r, qb)).collect();
        let k: Vec<Vec<f64>> = rows.iter().map(|r| project(r, kb)).collect();
        let v: Vec<Vec<f64>> = rows.iter().map(|r| project(r, vb)).collect();
        for t in 0..len {
            let mut o = vec![0.0; d];
            for head in 0..h {
                let cols = head * dh..(head + 1) * dh;
                let scores: Vec<f64> = (0..=t)
                    .map(|u| {
                        cols.clone().map(|c| q[t][c] * k[u][c]).sum::<f64>() / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in cols {
                    o[c] = (0..=t).map(|u| weights[u] * v[u][c]).sum::<f64>() / total;
                }
            }
            for c in 0..d {
                y[(b * len + t) * d + c] =
                    bo[c] + (0..d).map(|i| o[i] * wo[i * d + c]).sum::<f64>();
            }
        }
    }
    y
}

#[test]
fn mlp_projections_equal_the_formula_in_f64() {
    let (batch, len, d, d_hidden) = (2, 5, 4, 6);
    let x = seeded(1, || {
        Tensor::<Cpu, 3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), &dev())
    });
    for (seed, sharing) in [
        (2, QkvSharing::Separate),
        (3, QkvSharing::SharedQK),
        (4, QkvSharing::SharedQKV),
    ] {
        let attn = attention(
            AttentionConfig::new(d, 2)
                .with_sharing(sharing)
                .with_qkv_projection(QkvProjection::Mlp { d_hidden }),
            seed,
        );
        let p = sharing.n_projections();
        assert_eq!(
            attn.qkv_hidden.as_ref().unwrap().weight.dims(),
            [d, p * d_hidden]
        );
        assert_eq!(attn.qkv.weight.dims(), [d_hidden, p * d]);
        let want = reference(&attn, &f64s(x.clone()), batch, len, d_hidden);
        let got = f64s(attn.forward(x.clone()));
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff <= 1e-5, "{sharing:?}: layer vs f64 formula {diff:e}");
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(scale > 1e-2, "{sharing:?}: outputs too small ({scale:e})");
    }
}

/// A two-block GPT (`d_model` 8, 2 heads, RoPE) with MLP projections.
fn language_model(seed: u64) -> LanguageModel<Cpu> {
    let stack = StackConfig::new(8, parse_layers("attention+mlp,attention+mlp").unwrap())
        .with_n_heads(2)
        .with_position(PositionEncoding::rope())
        .with_qkv_projection(QkvProjection::Mlp { d_hidden: 12 });
    seeded(seed, || {
        LanguageModelConfig::new(stack, VOCAB)
            .try_init::<Cpu>(&dev())
            .unwrap()
    })
}

fn ids(rows: &[Vec<i64>]) -> Tensor<Cpu, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), &dev())
}

#[test]
fn cached_decoding_equals_the_full_pass_with_mlp_projections() {
    let lm = language_model(5);
    for block in &lm.stack.blocks {
        let seqlayers::stack::MixerBlock::Attention(a) = &block.mixer else {
            panic!("an attention stack");
        };
        assert!(
            a.mixer.qkv_hidden.is_some(),
            "the stack passes the option on"
        );
    }
    let rows: Vec<Vec<i64>> = (0..2)
        .map(|r| {
            (0..15)
                .map(|t| (t * 5 + 2 + 3 * r) % VOCAB as i64)
                .collect()
        })
        .collect();
    let full = values(lm.forward(ids(&rows)).unwrap()); // [2, 15, V]
    for pieces in [vec![1; 15], vec![6, 1, 8]] {
        let mut state = lm.init_state(2, &dev());
        let mut outputs = Vec::new();
        let mut start = 0;
        for len in pieces.iter().copied() {
            let piece: Vec<Vec<i64>> = rows
                .iter()
                .map(|r| r[start..start + len].to_vec())
                .collect();
            let (logits, next) = lm.forward_with_state(ids(&piece), state).unwrap();
            outputs.push(logits);
            state = next;
            start += len;
        }
        let diff = max_abs_diff(&full, &values(Tensor::cat(outputs, 1)));
        assert!(diff <= 1e-5, "pieces {pieces:?} vs full pass: {diff:e}");
    }
}

#[test]
fn the_default_projection_is_the_linear_layer() {
    let config = AttentionConfig::new(8, 2);
    assert_eq!(config.qkv_projection, QkvProjection::Linear);
    let linear = attention(config.clone(), 6);
    assert!(linear.qkv_hidden.is_none());
    assert_eq!(linear.qkv.weight.dims(), [8, 24]);
    // The MLP adds `W₁` `[D, 3 D_h]` and `b₁` `[3 D_h]`, and `W₂` reads `D_h` features, not `D`.
    let mlp = attention(
        config.with_qkv_projection(QkvProjection::Mlp { d_hidden: 5 }),
        6,
    );
    let count = |m: &MultiHeadAttention<Cpu>| burn::module::Module::num_params(m);
    let (d, dh) = (8, 5);
    assert_eq!(
        count(&mlp) - count(&linear),
        (d * 3 * dh + 3 * dh) + (dh * 3 * d) - (d * 3 * d)
    );
}

#[test]
fn a_zero_hidden_width_is_a_typed_error() {
    let zero = QkvProjection::Mlp { d_hidden: 0 };
    let want = SeqError::ZeroSize {
        name: "Q/K/V MLP hidden width (d_hidden)",
    };
    assert_eq!(
        AttentionConfig::new(8, 2)
            .with_qkv_projection(zero)
            .try_init::<Cpu>(&dev())
            .map(|_| ())
            .unwrap_err(),
        want
    );
    let stack = StackConfig::new(8, parse_layers("attention+mlp").unwrap())
        .with_n_heads(2)
        .with_qkv_projection(zero);
    assert_eq!(stack.try_init::<Cpu>(&dev()).map(|_| ()).unwrap_err(), want);
}

/// The tiny GPT grid's `mlp-qkv` ablation trains at the smoke-test budget: finite perplexity,
/// no leak, the cached evaluation equal to the full pass, and a checkpoint that loads back
/// with its hidden layers.
#[test]
fn the_tiny_gpt_grid_trains_the_mlp_qkv_ablation() {
    assert!(Ablation::GRID.contains(&Ablation::MlpQkv));
    assert_eq!(Ablation::parse("mlp-qkv"), Ok(Ablation::MlpQkv));
    assert_eq!(Ablation::MlpQkv.name(), "mlp-qkv");
    let dir =
        std::env::temp_dir().join(format!("seqlayers-tinygpt-mlp-qkv-{}", std::process::id()));
    let options = TinyGptOptions {
        out_dir: dir.clone(),
        progress: false,
        ..TinyGptOptions::default()
    }
    .quick();
    let options = TinyGptOptions {
        ablations: vec![Ablation::MlpQkv, Ablation::Standard],
        ..options
    };
    let (outcomes, _) =
        tiny_gpt::<seqlayers::backend::CpuAutodiff>(&options, &Default::default()).unwrap();
    assert_eq!(outcomes.len(), 2);
    let find = |a: Ablation| outcomes.iter().find(|o| o.ablation == a).unwrap();
    let (mlp, standard) = (find(Ablation::MlpQkv), find(Ablation::Standard));
    // One block of `D = 16`: `W₁` `[16, 48]` and `b₁` `[48]` more, `W₂` as wide as `W_QKV`.
    assert_eq!(mlp.params - standard.params, 16 * 48 + 48);
    assert!(mlp.val_ppl.is_finite());
    assert_eq!(mlp.leak, 0.0);
    assert!((mlp.val_ppl - mlp.val_ppl_causal).abs() <= 1e-3 * mlp.val_ppl);
    let ckpt = dir.join("checkpoints").join("mlp-qkv");
    let (model, _) = load_language_model::<Cpu>(&ckpt, &dev()).unwrap();
    assert_eq!(burn::module::Module::num_params(&model), mlp.params);
    std::fs::remove_dir_all(&dir).ok();
}
