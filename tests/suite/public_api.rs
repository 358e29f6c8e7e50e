//! Public functions no other test reached: `MambaState::detach`, `Mamba::try_step`,
//! `MambaBlock::try_step`, `Mamba::selectivity`, `KvCache::clear`, `AbsolutePosition::try_new`
//! and a few small helpers, each checked against hand-derived values or an independent
//! computation.

use burn::tensor::{Distribution, Tensor, TensorData};
use seqlayers::attention::{AttentionConfig, KvCache, MASKED, causal_keep, causal_mask_bias};
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::data::{Metric, RecallConfig, closest_pairs};
use seqlayers::decode::strip_padding;
use seqlayers::position::{
    AbsoluteKind, AbsolutePosition, OutOfRange, PositionEncoding, sinusoidal_table,
};
use seqlayers::presets::CopyModel;
use seqlayers::ssm::ScanKind;
use seqlayers::ssm::{Mamba, MambaConfig, MambaState};

use crate::common::{attention, dev, fresh_leaves, max_abs_diff, seeded, values};

fn f64s<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f64> {
    values(t).into_iter().map(f64::from).collect()
}

fn softplus(v: f64) -> f64 {
    if v > 20.0 { v } else { v.exp().ln_1p() }
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

fn mixer(seed: u64) -> Mamba<Cpu> {
    seeded(seed, || {
        MambaConfig::new(4)
            .with_d_state(3)
            .with_d_conv(3)
            .with_dt_min(0.05)
            .with_dt_max(0.5)
            .with_scan(ScanKind::Sequential)
            .try_init(&dev())
            .unwrap()
    })
}

fn normal(seed: u64, shape: [usize; 3]) -> Tensor<Cpu, 3> {
    seeded(seed, || {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &dev())
    })
}

// ---------------------------------------------------------------------------------------------
// Mamba
// ---------------------------------------------------------------------------------------------

/// `try_step` token by token gives the outputs and the final state of one `forward_with_state`
/// (the scan path, another implementation of the same recurrence), and its `Ok` is `step`.
#[test]
fn mamba_try_step_equals_the_scanned_forward() {
    let m = mixer(1);
    let (batch, len) = (2, 5);
    let x = normal(2, [batch, len, 4]);
    let (y, last) = crate::common::from_zero(&m, x.clone()).unwrap();
    let mut state = m.init_state(batch, &dev());
    for t in 0..len {
        let x_t = x.clone().narrow(1, t, 1).reshape([batch, 4]);
        let (y_t, next) = m.step(x_t, state).unwrap();
        let want = values(y.clone().narrow(1, t, 1).reshape([batch, 4]));
        let diff = max_abs_diff(&values(y_t), &want);
        assert!(diff < 1e-5, "t = {t}: max |Δ| = {diff}");
        state = next;
    }
    // The state after the last token: the last K − 1 = 2 pre-convolution inputs and h.
    assert!(max_abs_diff(&values(state.conv), &values(last.conv)) < 1e-6);
    assert!(max_abs_diff(&values(state.ssm), &values(last.ssm)) < 1e-5);
}

/// The block's `try_step` is `x + mixer.step(rmsnorm(x))` with the RMSNorm written out by
/// hand (γ = 1 at init, ε = 1e-5): a step that forgot the residual or the norm fails.
#[test]
fn mamba_block_try_step_is_residual_around_the_normed_mixer_step() {
    let block = seeded(3, || {
        MambaConfig::new(4)
            .with_d_state(3)
            .try_init_block::<Cpu>(&dev())
            .unwrap()
    });
    let x = normal(4, [2, 1, 4]).reshape([2, 4]);
    let xv = values(x.clone());
    let mut normed = Vec::new();
    for row in xv.chunks(4) {
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / 4.0 + 1e-5).sqrt();
        normed.extend(row.iter().map(|v| v / rms));
    }
    let normed = Tensor::<Cpu, 2>::from_data(TensorData::new(normed, [2, 4]), &dev());
    let state = block.mixer.init_state(2, &dev());
    let (mix, mix_state) = block.mixer.step(normed, state.clone()).unwrap();
    let (y, next) = block.step(x, state).unwrap();
    let want: Vec<f32> = xv.iter().zip(values(mix)).map(|(a, b)| a + b).collect();
    assert!(max_abs_diff(&values(y), &want) < 1e-5);
    assert!(max_abs_diff(&values(next.ssm), &values(mix_state.ssm)) < 1e-5);
}

/// `selectivity` against the mixer's input path written out in f64 loops from its weights:
/// `Δ = softplus(dt_proj(x_proj(silu(conv(in_proj(x))))[..R]))`, and `A = −exp(A_log)`, which
/// at init is S4D-real, `A[e, n] = −(n + 1)`. A `selectivity` that skipped the softplus (raw
/// Δ, negative entries), the convolution, or returned `A_log` instead of `A` would fail.
#[test]
fn selectivity_is_the_step_size_of_the_input_path() {
    let m = mixer(5);
    let (batch, len, d) = (2, 4, 4);
    let (e, n, k, r) = (m.d_inner(), m.d_state(), m.d_conv(), m.dt_rank());
    let x = normal(6, [batch, len, d]);
    let (delta, a) = m.selectivity(x.clone()).unwrap();
    assert_eq!(delta.dims(), [batch, len, e]);

    let a = f64s(a);
    for (i, v) in a.iter().enumerate() {
        let want = -((i % n + 1) as f64);
        assert!((v - want).abs() < 1e-5, "A[{i}] = {v}, want {want}");
    }

    let xv = f64s(x);
    let w_in = f64s(m.in_proj.weight.val()); // [D, 2E]
    let b_in = m.in_proj.bias.as_ref().map(|b| f64s(b.val()));
    let w_conv = f64s(m.conv1d.weight.val()); // [E, K]
    let b_conv = m.conv1d.bias.as_ref().map(|b| f64s(b.val()));
    let w_x = f64s(m.x_proj.weight.val()); // [E, R + 2N]
    let b_x = m.x_proj.bias.as_ref().map(|b| f64s(b.val()));
    let w_dt = f64s(m.dt_proj.weight.val()); // [R, E]
    let b_dt = f64s(m.dt_proj.bias.as_ref().unwrap().val());
    let cols_x = r + 2 * n;
    let mut want = Vec::new();
    for bi in 0..batch {
        // x part of in_proj: [L][E]
        let xs: Vec<Vec<f64>> = (0..len)
            .map(|t| {
                (0..e)
                    .map(|c| {
                        let bias = b_in.as_ref().map_or(0.0, |b| b[c]);
                        bias + (0..d)
                            .map(|i| xv[(bi * len + t) * d + i] * w_in[i * 2 * e + c])
                            .sum::<f64>()
                    })
                    .collect()
            })
            .collect();
        for t in 0..len {
            // Causal depthwise convolution: tap j reads position t − (K − 1) + j (zeros before 0).
            let xc: Vec<f64> = (0..e)
                .map(|c| {
                    let mut acc = b_conv.as_ref().map_or(0.0, |b| b[c]);
                    for j in 0..k {
                        let pos = t as isize - (k as isize - 1) + j as isize;
                        if pos >= 0 {
                            acc += w_conv[c * k + j] * xs[pos as usize][c];
                        }
                    }
                    silu(acc)
                })
                .collect();
            let dt_low: Vec<f64> = (0..r)
                .map(|q| {
                    b_x.as_ref().map_or(0.0, |b| b[q])
                        + (0..e).map(|c| xc[c] * w_x[c * cols_x + q]).sum::<f64>()
                })
                .collect();
            for c in 0..e {
                let v = b_dt[c] + (0..r).map(|q| dt_low[q] * w_dt[q * e + c]).sum::<f64>();
                want.push(softplus(v));
            }
        }
    }
    let got = f64s(delta);
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-5, "Δ: max |Δ| = {err}");
    assert!(got.iter().all(|&v| v > 0.0));
}

/// `detach` keeps the values and cuts the graph: a loss on the second chunk reaches the first
/// chunk's input through the carried state, and no longer does once the state is detached
/// (truncated backpropagation). A `detach` that returned the state unchanged would leave
/// the first chunk's gradient there; one that zeroed the state would change the values.
#[test]
fn detached_state_keeps_its_values_and_stops_the_gradient() {
    type Ad = CpuAutodiff;
    let m: Mamba<Ad> = seeded(7, || {
        MambaConfig::new(4)
            .with_d_state(3)
            .try_init(&dev())
            .unwrap()
    });
    let data = values(normal(8, [1, 6, 4]));
    let chunk = |from: usize| {
        Tensor::<Ad, 3>::from_data(
            TensorData::new(data[from * 4..(from + 3) * 4].to_vec(), [1, 3, 4]),
            &dev(),
        )
        .require_grad()
    };
    let run = |detach: bool| {
        // Fresh parameter leaves per backward pass (common::fresh_leaves, burn#5573).
        let m = fresh_leaves(&m);
        let (x1, x2) = (chunk(0), chunk(3));
        let (_, state) = crate::common::from_zero(&m, x1.clone()).unwrap();
        let state: MambaState<Ad> = if detach { state.detach() } else { state };
        let carried = (
            values(state.conv.clone().inner()),
            values(state.ssm.clone().inner()),
        );
        let (y2, _) = m.forward_with_state(x2.clone(), state).unwrap();
        let out = values(y2.clone().inner());
        let grads = y2.sum().backward();
        let g1 = x1.grad(&grads).map(values);
        let g2 = values(x2.grad(&grads).expect("the second chunk is always reached"));
        (carried, out, g1, g2)
    };
    let (kept, out_kept, g1_kept, g2_kept) = run(false);
    let (cut, out_cut, g1_cut, g2_cut) = run(true);
    assert_eq!(kept, cut, "detach changed the state's values");
    assert_eq!(out_kept, out_cut, "detach changed the next chunk's output");
    assert_eq!(
        g2_kept, g2_cut,
        "the second chunk's own gradient is unchanged"
    );
    let g1_kept = g1_kept.expect("without detach the gradient reaches the first chunk");
    assert!(g1_kept.iter().any(|v| v.abs() > 1e-6), "{g1_kept:?}");
    // Cut: x1 gets no gradient at all (or an all-zero one).
    assert!(
        g1_cut.is_none_or(|g| g.iter().all(|&v| v == 0.0)),
        "the gradient crossed a detached state"
    );
}

// ---------------------------------------------------------------------------------------------
// Attention and positions
// ---------------------------------------------------------------------------------------------

/// After `clear` a cache is at position 0 again: empty, no batch size, and decoding a new
/// sequence through it gives what a new cache gives (with RoPE the outputs depend on the
/// absolute position, so a `clear` that kept the length or the values would show).
#[test]
fn cleared_kv_cache_starts_over_at_position_zero() {
    let attn = attention(
        AttentionConfig::new(8, 2).with_position(PositionEncoding::rope()),
        9,
    );
    let first = normal(10, [1, 3, 8]);
    let second = normal(11, [2, 2, 8]); // another batch size: only legal after a clear
    let mut cache = KvCache::new();
    attn.forward_with_state(first, cache.clone())
        .map(|(y, next)| {
            cache = next;
            y
        })
        .unwrap();
    assert_eq!((cache.len(), cache.batch_size()), (3, Some(1)));
    cache.clear();
    assert_eq!(cache.len(), 0);
    assert!(cache.is_empty());
    assert_eq!(cache.batch_size(), None);
    let reused = values(
        attn.forward_with_state(second.clone(), cache.clone())
            .map(|(y, next)| {
                cache = next;
                y
            })
            .unwrap(),
    );
    let fresh = values(
        attn.forward_with_state(second.clone(), KvCache::new())
            .map(|(y, _)| y)
            .unwrap(),
    );
    assert_eq!(reused, fresh);
    assert_eq!(cache.len(), 2);
    // And both equal the full causal pass over the same two tokens.
    assert!(max_abs_diff(&reused, &values(attn.forward(second))) < 1e-5);
}

/// `try_new` builds the kind each encoding asks for: sinusoids with their base (encodings from
/// the formula), a learned table of the right shape drawn from N(0, 0.02²), the clamping policy
/// of `learned_clamped`, and the identity for the relative kinds.
#[test]
fn absolute_position_try_new_builds_each_kind() {
    let d = 6;
    let sin = AbsolutePosition::<Cpu>::try_new(&PositionEncoding::sinusoidal(), d, &dev()).unwrap();
    assert_eq!(sin.kind, AbsoluteKind::Sinusoidal(10_000.0));
    assert_eq!((sin.max_len(), sin.d_model), (None, d));
    let pe = values(sin.encodings(2, 1, &dev()).unwrap().unwrap());
    // Position 2, D = 6: θ = 1, 10000^(−1/3), 10000^(−2/3).
    let expected: Vec<f32> = (0..3)
        .flat_map(|i| {
            let angle = 2.0 * 10_000f64.powf(-2.0 * i as f64 / 6.0);
            [angle.sin() as f32, angle.cos() as f32]
        })
        .collect();
    assert!(max_abs_diff(&pe, &expected) < 1e-6, "{pe:?}");

    let (max_len, width) = (64, 32);
    let learned = seeded(12, || {
        AbsolutePosition::<Cpu>::try_new(&PositionEncoding::learned(max_len), width, &dev())
            .unwrap()
    });
    assert_eq!(learned.kind, AbsoluteKind::Learned(OutOfRange::Error));
    assert_eq!(learned.max_len(), Some(max_len));
    let table = f64s(learned.table.as_ref().unwrap().val());
    assert_eq!(table.len(), max_len * width);
    // 2048 draws of N(0, 0.02²): sample sd within 10% (its standard error is 1.6%), mean
    // within 5 standard errors (0.02/√2048 = 4.4e-4). A table drawn U(±1/√D), or N(0, 1),
    // fails this.
    let mean = table.iter().sum::<f64>() / table.len() as f64;
    let sd = (table.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / table.len() as f64).sqrt();
    assert!(mean.abs() < 2.2e-3, "mean {mean}");
    assert!((sd / 0.02 - 1.0).abs() < 0.1, "sd {sd}");

    let clamped = seeded(13, || {
        AbsolutePosition::<Cpu>::try_new(&PositionEncoding::learned_clamped(4), 2, &dev()).unwrap()
    });
    assert_eq!(clamped.kind, AbsoluteKind::Learned(OutOfRange::Clamp));
    let rows = values(clamped.encodings(2, 4, &dev()).unwrap().unwrap()); // positions 2..6
    let table = values(clamped.table.as_ref().unwrap().val());
    assert_eq!(rows[..4], table[4..8]); // rows 2, 3
    assert_eq!(rows[4..6], table[6..8]); // position 4 → last row
    assert_eq!(rows[6..8], table[6..8]); // position 5 → last row

    for relative in [
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
    ] {
        let pe = AbsolutePosition::<Cpu>::try_new(&relative, d, &dev()).unwrap();
        assert_eq!(pe.kind, AbsoluteKind::Identity, "{relative:?}");
        assert!(pe.table.is_none() && pe.encodings(0, 3, &dev()).unwrap().is_none());
        assert_eq!(
            relative.is_relative(),
            !matches!(relative, PositionEncoding::None)
        );
    }
    assert!(!PositionEncoding::sinusoidal().is_relative());
    assert!(!PositionEncoding::learned_clamped(3).is_relative());
    // The sinusoidal kind and the free function agree on a shifted block as well.
    let block = values(sin.encodings(5, 2, &dev()).unwrap().unwrap());
    assert_eq!(block, sinusoidal_table(5, 2, d, 10_000.0));
}

/// The causal tables by hand: query rows at offset 1 (absolute positions 1, 2) over 4 keys.
#[test]
fn causal_tables_by_hand() {
    let x = MASKED;
    assert_eq!(
        causal_mask_bias(1, 2, 4),
        vec![0.0, 0.0, x, x, 0.0, 0.0, 0.0, x]
    );
    assert_eq!(
        causal_keep(1, 2, 4),
        vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    );
    // A decoding step at position 3 sees all 4 keys.
    assert_eq!(causal_mask_bias(3, 1, 4), vec![0.0; 4]);
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn strip_padding_removes_pads_at_both_ends_only() {
    assert_eq!(strip_padding(&[0, 0, 5, 0, 7, 0], 0), &[5, 0, 7]);
    assert_eq!(strip_padding(&[5, 6], 0), &[5, 6]);
    assert_eq!(strip_padding(&[0, 0, 0], 0), &[] as &[u32]);
    assert_eq!(strip_padding(&[], 0), &[] as &[u32]);
    assert_eq!(strip_padding(&[9, 1, 9], 9), &[1]);
}

/// Rows e₀, e₁, (e₀ + e₁)/√2 (scaled by 3, which cosine ignores) and −e₀: the pairs by
/// cosine are (0, 2) and (1, 2) at 1/√2, then (0, 1) and (1, 3) at 0, (2, 3) at −1/√2, and
/// (0, 3) at −1.
#[test]
fn closest_pairs_ranks_by_cosine() {
    let s = 3.0 / 2f32.sqrt();
    let table = [1.0, 0.0, 0.0, 1.0, s, s, -1.0, 0.0];
    let pairs = closest_pairs(&table, 2, 6);
    let h = 1.0 / 2f32.sqrt();
    let want = [
        (0, 2, h),
        (1, 2, h),
        (0, 1, 0.0),
        (1, 3, 0.0),
        (2, 3, -h),
        (0, 3, -1.0),
    ];
    assert_eq!(pairs.len(), 6);
    for ((i, j, c), (wi, wj, wc)) in pairs.iter().zip(want) {
        assert!((c - wc).abs() < 1e-6, "({i}, {j}): {c} vs {wc}");
        // Ties (equal cosines) may come in either order; the set of each tie is fixed.
        if wc == h || wc == 0.0 {
            assert!(want.iter().any(|&(a, b, w)| (a, b) == (*i, *j) && w == wc));
        } else {
            assert_eq!((*i, *j), (wi, wj));
        }
    }
    assert_eq!(closest_pairs(&table, 2, 1).len(), 1);
}

#[test]
fn small_predicates_by_hand() {
    assert_eq!(RecallConfig::new(1).with_delay(5).min_len(), 7); // τ + 2
    assert!(Metric::Accuracy.higher_is_better());
    assert!(Metric::ExactMatch.higher_is_better());
    assert!(!Metric::Perplexity.higher_is_better());
    let transformers: Vec<&str> = CopyModel::ALL
        .iter()
        .filter(|m| m.is_transformer())
        .map(|m| m.name())
        .collect();
    assert_eq!(
        transformers,
        vec!["T_rope", "T_nope", "T_alibi", "T_hard_alibi"]
    );
}

/// Every config's `init` builds what `try_init` builds, and panics with the typed error's
/// message (naming the config) where `try_init` errors.
#[test]
fn every_config_init_matches_try_init_or_panics_with_its_message() {
    use burn::module::Module;
    use seqlayers::model::{ClassifierConfig, EncoderDecoderConfig, LanguageModelConfig};
    use seqlayers::nn::MlpConfig;
    use seqlayers::stack::{StackConfig, parse_layers};

    let device = seqlayers::backend::CpuDevice::default();
    type B = seqlayers::backend::Cpu;
    fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("init must panic on an invalid config");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    let stack = StackConfig::new(8, parse_layers("mamba,attention+mlp").unwrap());
    // The parameter counts of `init` and `try_init` agree (both draw every parameter).
    assert_eq!(
        stack.init::<B>(&device).num_params(),
        stack.try_init::<B>(&device).unwrap().num_params()
    );
    let lm = LanguageModelConfig::new(stack.clone(), 11);
    assert_eq!(
        lm.init::<B>(&device).num_params(),
        lm.try_init::<B>(&device).unwrap().num_params()
    );
    let mlp = MlpConfig::new(8, 32);
    assert_eq!(
        mlp.init::<B>(&device).num_params(),
        8 * 32 + 32 + 32 * 8 + 8
    );
    let s2s = EncoderDecoderConfig::new(11, 8);
    assert_eq!(
        s2s.init::<B>(&device).num_params(),
        s2s.try_init::<B>(&device).unwrap().num_params()
    );
    let table = Tensor::<B, 2>::zeros([5, 8], &device);
    let classifier = ClassifierConfig::new(stack.clone(), 3);
    assert_eq!(
        classifier.init::<B>(table.clone(), &device).num_params(),
        classifier
            .try_init::<B>(table, &device)
            .unwrap()
            .num_params()
    );
    let block = AttentionConfig::new(8, 2);
    assert_eq!(
        block.init_block::<B>(&device).num_params(),
        block.try_init_block::<B>(&device).unwrap().num_params()
    );

    let bad_stack = StackConfig::new(0, parse_layers("mamba").unwrap());
    let d = device;
    let text = panic_text(move || {
        bad_stack.init::<B>(&d);
    });
    assert!(
        text.starts_with("invalid StackConfig: ") && text.contains("d_model"),
        "{text}"
    );
    let text = panic_text(move || {
        MlpConfig::new(8, 0).init::<B>(&d);
    });
    assert!(
        text.starts_with("invalid MlpConfig: ") && text.contains("MLP hidden width"),
        "{text}"
    );
    let text = panic_text(move || {
        LanguageModelConfig::new(StackConfig::new(8, parse_layers("mamba").unwrap()), 0)
            .init::<B>(&d);
    });
    assert!(
        text.starts_with("invalid LanguageModelConfig: ") && text.contains("vocab_size"),
        "{text}"
    );
    let text = panic_text(move || {
        AttentionConfig::new(8, 3).init_block::<B>(&d);
    });
    assert!(text.starts_with("invalid AttentionConfig: "), "{text}");
}

/// `TrainConfig` is a Burn `Config`: `new()` is the documented default, the builder sets
/// fields, and it round-trips through its JSON file unchanged (nested enums and stops included).
#[test]
fn train_config_is_a_burn_config() {
    use burn::config::Config;
    use seqlayers::train::{EarlyStop, LrSchedule, OptimizerKind, PlateauStop, TrainConfig};

    let default = TrainConfig::default();
    assert_eq!(TrainConfig::new(), default);
    assert_eq!(
        (default.steps, default.batch_size, default.lr),
        (2000, 64, 1e-3)
    );
    let config = TrainConfig::new()
        .with_steps(300)
        .with_optimizer(OptimizerKind::AdamW { weight_decay: 0.1 })
        .with_schedule(LrSchedule::WarmupCosine {
            warmup_steps: 20,
            min_ratio: 0.1,
        })
        .with_grad_clip(Some(1.0))
        .with_early_stop(None)
        .with_plateau_stop(Some(PlateauStop {
            patience: 5,
            min_delta: 0.005,
            min_steps: 100,
        }));
    assert_eq!(config.steps, 300);
    let path = std::env::temp_dir().join(format!("seqlayers-train-{}.json", std::process::id()));
    config.save(&path).unwrap();
    let loaded = TrainConfig::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded, config);
    assert_ne!(loaded, default);
    assert_eq!(
        default.early_stop,
        Some(EarlyStop {
            target: 0.99,
            patience: 4
        })
    );
    // Every optimizer, with its hyper-parameters, survives the JSON file.
    for optimizer in [
        OptimizerKind::Adam,
        OptimizerKind::sgd(0.9),
        OptimizerKind::Sgd {
            momentum: 0.8,
            dampening: 0.1,
            nesterov: true,
            weight_decay: 1e-4,
        },
        OptimizerKind::rms_prop(),
        OptimizerKind::RmsProp {
            alpha: 0.9,
            momentum: 0.5,
            epsilon: 1e-6,
            centered: true,
            weight_decay: 0.01,
        },
        OptimizerKind::ada_grad(),
    ] {
        let config = TrainConfig::new().with_optimizer(optimizer);
        config.save(&path).unwrap();
        let loaded = TrainConfig::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(loaded, config, "{}", optimizer.name());
    }
}
