//! Kernelized causal linear attention (`linear-attention` in a stack): token-by-token decoding
//! and chunked prefill equal the full pass in a language model, the outputs are causal, the
//! layer equals the formula written again in f64 loops, and bad configurations are typed
//! errors. Run it alone with `cargo test --test suite linear_attention`.

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::attention::{LinearAttention, LinearAttentionConfig, LinearAttentionState};
use seqlayers::backend::Cpu;
use seqlayers::decode::Decoder;
use seqlayers::model::{LanguageModel, LanguageModelConfig, load_language_model};
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{LayerKind, LayerState, StackConfig, parse_layers};

use crate::common::{dev, max_abs_diff, seeded, values};
use crate::harness::tiny_gpt::{Ablation, TinyGptOptions, tiny_gpt};

const VOCAB: usize = 13;

/// A two-block linear-attention LM (`d_model` 8, 2 heads, learned positions up to 32).
fn language_model(seed: u64) -> LanguageModel<Cpu> {
    let stack = StackConfig::new(
        8,
        parse_layers("linear-attention+mlp,linear-attention+mlp").unwrap(),
    )
    .with_n_heads(2)
    .with_position(PositionEncoding::learned(32));
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

/// Two rows of `len` pseudo-random token ids.
fn token_rows(len: usize) -> Vec<Vec<i64>> {
    (0..2)
        .map(|r| {
            (0..len as i64)
                .map(|t| (t * 7 + 3 + 5 * r) % VOCAB as i64)
                .collect()
        })
        .collect()
}

fn layer(config: LinearAttentionConfig, seed: u64) -> LinearAttention<Cpu> {
    seeded(seed, || config.try_init::<Cpu>(&dev()).unwrap())
}

fn normal(seed: u64, shape: [usize; 3]) -> Tensor<Cpu, 3> {
    seeded(seed, || {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &dev())
    })
}

#[test]
fn step_by_step_decoding_equals_the_full_pass() {
    let lm = language_model(1);
    let rows = token_rows(20);
    let full = values(lm.forward(ids(&rows)).unwrap()); // [2, 20, V]
    // One token at a time.
    let mut state = lm.init_state(2, &dev());
    let mut stepped = Vec::new();
    for t in 0..20 {
        let piece: Vec<Vec<i64>> = rows.iter().map(|r| vec![r[t]]).collect();
        let (logits, next) = lm.forward_with_state(ids(&piece), state).unwrap(); // [2, 1, V]
        stepped.push(logits);
        state = next;
    }
    assert_eq!(state.position, 20);
    let stepped = values(Tensor::cat(stepped, 1)); // [2, 20, V]
    let diff = max_abs_diff(&full, &stepped);
    assert!(diff <= 1e-5, "step-by-step vs full pass: {diff:e}");
    // A prefill of 7, then chunks of 1, 5 and 7 (cached vs uncached).
    let mut state = lm.init_state(2, &dev());
    let mut chunked = Vec::new();
    for (start, len) in [(0, 7), (7, 1), (8, 5), (13, 7)] {
        let piece: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| r[start..start + len].to_vec())
            .collect();
        let (logits, next) = lm.forward_with_state(ids(&piece), state).unwrap();
        chunked.push(logits);
        state = next;
    }
    let chunked = values(Tensor::cat(chunked, 1));
    let diff = max_abs_diff(&full, &chunked);
    assert!(diff <= 1e-5, "chunked prefill vs full pass: {diff:e}");
    // The state is the layer's `(S, z)` per head: `[B, H, d_head, d_head]` and `[B, H, d_head]`.
    for layer in &state.layers {
        let LayerState::LinearAttention(s) = layer else {
            panic!("a {} state in a linear-attention stack", layer.kind());
        };
        assert_eq!(s.kv.dims(), [2, 2, 4, 4]);
        assert_eq!(s.k_sum.dims(), [2, 2, 4]);
    }
}

/// The full pass runs in chunks of `chunk_len`: any chunk length gives the same outputs and the
/// same final state as one position at a time through the layer's own state.
#[test]
fn the_chunk_length_does_not_change_the_outputs() {
    let x = normal(2, [2, 11, 6]); // [B, L, D]
    let reference = layer(LinearAttentionConfig::new(6, 3), 3); // one chunk (C = 64)
    let full = reference.forward(x.clone());
    for chunk_len in [1, 3, 4, 11] {
        let chunked = layer(
            LinearAttentionConfig::new(6, 3).with_chunk_len(chunk_len),
            3,
        );
        let diff = max_abs_diff(&values(full.clone()), &values(chunked.forward(x.clone())));
        assert!(diff <= 1e-5, "chunk_len {chunk_len}: {diff:e}");
    }
    let mut state = reference.init_state(2, &dev());
    let mut stepped = Vec::new();
    for t in 0..11 {
        let (y, next) = reference
            .forward_with_state(x.clone().narrow(1, t, 1), state)
            .unwrap();
        stepped.push(y);
        state = next;
    }
    let diff = max_abs_diff(&values(full), &values(Tensor::cat(stepped, 1)));
    assert!(diff <= 1e-5, "layer steps vs forward: {diff:e}");
    // The final state against a one-call pass over the whole sequence.
    let (_, whole) = reference
        .forward_with_state(x, reference.init_state(2, &dev()))
        .unwrap();
    let diff = max_abs_diff(&values(whole.kv), &values(state.kv));
    assert!(diff <= 1e-4, "S after steps vs one call: {diff:e}");
    let diff = max_abs_diff(&values(whole.k_sum), &values(state.k_sum));
    assert!(diff <= 1e-4, "z after steps vs one call: {diff:e}");
}

#[test]
fn changing_a_later_token_does_not_change_earlier_outputs() {
    let lm = language_model(4);
    let a = token_rows(12);
    let mut b = a.clone();
    for row in &mut b {
        for t in row.iter_mut().skip(7) {
            *t = (*t + 5) % VOCAB as i64;
        }
    }
    let la = lm.forward(ids(&a)).unwrap(); // [2, 12, V]
    let lb = lm.forward(ids(&b)).unwrap();
    let prefix = |l: Tensor<Cpu, 3>| values(l.narrow(1, 0, 7));
    let diff = max_abs_diff(&prefix(la.clone()), &prefix(lb.clone()));
    assert!(diff <= 1e-6, "the first 7 positions moved by {diff:e}");
    let later = |l: Tensor<Cpu, 3>| values(l.narrow(1, 7, 5));
    let diff = max_abs_diff(&later(la), &later(lb));
    assert!(diff > 1e-3, "the changed tokens had no effect ({diff:e})");
}

/// `φ(x) = elu(x) + 1`.
fn phi(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x.exp() }
}

fn f64s<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f64> {
    values(t).into_iter().map(f64::from).collect()
}

/// The layer written again from its formula in f64 loops: `q, k, v = x W + b` (columns
/// `h·d_head ..` of the Q, K and V blocks for head `h`), `S_t = Σ_{s≤t} φ(k_s) v_sᵀ`,
/// `z_t = Σ_{s≤t} φ(k_s)`, `o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)`, heads concatenated, then
/// `o W_O + b_O`. Returns `[B, L, D]` row-major.
fn reference(layer: &LinearAttention<Cpu>, x: &[f64], batch: usize, len: usize) -> Vec<f64> {
    let d = layer.d_model;
    let (h, dh) = (layer.n_heads, layer.d_head);
    let w = f64s(layer.qkv.weight.val()); // [D, 3D]
    let bias = f64s(layer.qkv.bias.as_ref().unwrap().val()); // [3D]
    let wo = f64s(layer.output.weight.val()); // [D, D]
    let bo = f64s(layer.output.bias.as_ref().unwrap().val()); // [D]
    let mut out = vec![0.0; batch * len * d];
    for b in 0..batch {
        let row = |t: usize| &x[(b * len + t) * d..(b * len + t + 1) * d];
        let project = |t: usize, col: usize| -> f64 {
            bias[col] + (0..d).map(|i| row(t)[i] * w[i * 3 * d + col]).sum::<f64>()
        };
        for head in 0..h {
            let mut s = vec![0.0; dh * dh];
            let mut z = vec![0.0; dh];
            for t in 0..len {
                let q: Vec<f64> = (0..dh).map(|j| phi(project(t, head * dh + j))).collect();
                let k: Vec<f64> = (0..dh)
                    .map(|j| phi(project(t, d + head * dh + j)))
                    .collect();
                let v: Vec<f64> = (0..dh).map(|j| project(t, 2 * d + head * dh + j)).collect();
                for i in 0..dh {
                    z[i] += k[i];
                    for j in 0..dh {
                        s[i * dh + j] += k[i] * v[j];
                    }
                }
                let norm: f64 = (0..dh).map(|i| q[i] * z[i]).sum::<f64>() + layer.eps;
                for j in 0..dh {
                    let num: f64 = (0..dh).map(|i| q[i] * s[i * dh + j]).sum();
                    out[(b * len + t) * d + head * dh + j] = num / norm;
                }
            }
        }
    }
    let mut y = vec![0.0; batch * len * d];
    for r in 0..batch * len {
        for c in 0..d {
            y[r * d + c] = bo[c] + (0..d).map(|i| out[r * d + i] * wo[i * d + c]).sum::<f64>();
        }
    }
    y
}

#[test]
fn the_full_pass_equals_the_formula_in_f64() {
    let (batch, len, d) = (2, 7, 6);
    // Two chunks (4 + 3), so the state carried between chunks is checked too.
    let net = layer(LinearAttentionConfig::new(d, 2).with_chunk_len(4), 5);
    let x = normal(6, [batch, len, d]);
    let want = reference(&net, &f64s(x.clone()), batch, len);
    let got = f64s(net.forward(x));
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff <= 1e-5, "layer vs f64 formula: {diff:e}");
    // Outputs well above the tolerance, so the comparison is not between two near-zeros.
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(scale > 1e-2, "outputs too small to compare ({scale:e})");
}

#[test]
fn bad_configs_and_states_are_typed_errors() {
    let err = |c: LinearAttentionConfig| c.try_init::<Cpu>(&dev()).map(|_| ()).unwrap_err();
    assert_eq!(
        err(LinearAttentionConfig::new(6, 4)),
        SeqError::HeadsDoNotDivide {
            d_model: 6,
            n_heads: 4
        }
    );
    assert_eq!(
        err(LinearAttentionConfig::new(6, 0)),
        SeqError::ZeroSize { name: "n_heads" }
    );
    assert_eq!(
        err(LinearAttentionConfig::new(6, 2).with_chunk_len(0)),
        SeqError::ZeroSize {
            name: "linear attention chunk_len"
        }
    );
    for eps in [0.0, -1e-6, f64::NAN] {
        assert!(
            matches!(
                err(LinearAttentionConfig::new(6, 2).with_eps(eps)),
                SeqError::OutOfRange {
                    name: "linear attention eps",
                    ..
                }
            ),
            "eps = {eps}"
        );
    }
    // Through the stack: the stack's heads must divide its width for this layer too.
    let stack = StackConfig::new(8, vec![LayerKind::LinearAttention.into()]).with_n_heads(3);
    assert_eq!(
        stack.try_init::<Cpu>(&dev()).map(|_| ()).unwrap_err(),
        SeqError::HeadsDoNotDivide {
            d_model: 8,
            n_heads: 3
        }
    );
    assert!(matches!(
        parse_layers("linear-attention+ffn"),
        Err(SeqError::InvalidConfig(_))
    ));
    // Calls: a wrong width, an empty chunk, a state of another batch size or kind.
    let net = layer(LinearAttentionConfig::new(6, 2), 7);
    assert!(matches!(
        net.try_forward(Tensor::zeros([1, 3, 5], &dev())),
        Err(SeqError::ShapeMismatch { .. })
    ));
    assert_eq!(
        net.try_forward(Tensor::zeros([1, 0, 6], &dev()))
            .unwrap_err(),
        SeqError::ZeroSize {
            name: "sequence length"
        }
    );
    let wrong_batch = LinearAttentionState::<Cpu>::zeros(3, 2, 3, &dev());
    assert!(matches!(
        net.forward_with_state(Tensor::zeros([2, 1, 6], &dev()), wrong_batch),
        Err(SeqError::ShapeMismatch { .. })
    ));
    let lm = language_model(8);
    let mut state = lm.init_state(1, &dev());
    state.layers[0] = LayerState::Attention(Default::default());
    assert!(matches!(
        lm.forward_with_state(ids(&[vec![1, 2]]), state),
        Err(SeqError::InvalidConfig(_))
    ));
}

/// The tiny GPT grid's `linear-attention` ablation trains at the smoke-test budget: finite
/// perplexity, no leak, the cached (causal) evaluation equal to the full pass, and a
/// checkpoint that loads back.
#[test]
fn the_tiny_gpt_grid_trains_the_linear_attention_ablation() {
    assert!(Ablation::GRID.contains(&Ablation::LinearAttention));
    assert_eq!(
        Ablation::parse("linear-attention"),
        Ok(Ablation::LinearAttention)
    );
    assert_eq!(Ablation::LinearAttention.name(), "linear-attention");
    let dir = std::env::temp_dir().join(format!(
        "seqlayers-tinygpt-linear-attention-{}",
        std::process::id()
    ));
    let options = TinyGptOptions {
        out_dir: dir.clone(),
        progress: false,
        ..TinyGptOptions::default()
    }
    .quick();
    let options = TinyGptOptions {
        ablations: vec![Ablation::LinearAttention],
        ..options
    };
    let (outcomes, _) =
        tiny_gpt::<seqlayers::backend::CpuAutodiff>(&options, &Default::default()).unwrap();
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert!(o.params > 0 && o.val_ppl.is_finite());
    assert_eq!(o.leak, 0.0);
    assert!(
        (o.val_ppl - o.val_ppl_causal).abs() <= 1e-3 * o.val_ppl,
        "full pass {} vs cached {}",
        o.val_ppl,
        o.val_ppl_causal
    );
    let ckpt = dir.join("checkpoints").join("linear-attention");
    let (model, _) = load_language_model::<Cpu>(&ckpt, &dev()).unwrap();
    assert_eq!(burn::module::Module::num_params(&model), o.params);
    std::fs::remove_dir_all(&dir).ok();
}
