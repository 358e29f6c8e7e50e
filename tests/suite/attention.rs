//! Numerical tests of `seqlayers::attention`: a hand-computed example, agreement with Burn's
//! own `MultiHeadAttention`, agreement with an independent scalar f64 implementation for every
//! position encoding and sharing mode, causality, the naive-masking leak, padding, and every
//! configuration error.

use crate::common::{attention, dev, max_abs_diff, seeded, values};
use burn::module::Param;
use burn::nn::attention::{MhaInput, MultiHeadAttentionConfig, generate_autoregressive_mask};
use burn::tensor::{Bool, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::SeqError;
use seqlayers::attention::{
    AttentionConfig, AttentionInput, CausalMasking, KvCache, MultiHeadAttention, QkvSharing,
};
use seqlayers::backend::Cpu;
use seqlayers::position::PositionEncoding;

type T3 = Tensor<Cpu, 3>;

/// Deterministic `N(0,1)`-ish inputs `[b, l, d]` (uniform on ±√3, variance 1).
fn random_input(seed: u64, b: usize, l: usize, d: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..b * l * d)
        .map(|_| rng.random_range(-1.732f32..1.732))
        .collect()
}

fn tensor3(data: Vec<f32>, shape: [usize; 3]) -> T3 {
    Tensor::from_data(TensorData::new(data, shape), &dev())
}

fn matrix(data: Vec<f32>, rows: usize, cols: usize) -> Tensor<Cpu, 2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), &dev())
}

// ---------------------------------------------------------------------------------------------
// Hand-computed example
// ---------------------------------------------------------------------------------------------

/// One head, `D = 2`, identity projections, no bias, `x = [[1, 0], [0, 1]]`.
/// `A = x·xᵀ/√2 = diag(1/√2)`, so non-causal row 0 has weights
/// `[σ(1/√2), 1 − σ(1/√2)] = [0.669761, 0.330239]` and output equal to those weights (since
/// `V = x = I`); row 1 is the mirror image. Causal row 0 sees only itself: output `[1, 0]`.
#[test]
fn tiny_example_matches_hand_computation() {
    let identity3 = vec![1., 0., 1., 0., 1., 0., 0., 1., 0., 1., 0., 1.]; // [I | I | I]
    let build = |causal: bool| {
        let mut attn = attention(
            AttentionConfig::new(2, 1)
                .with_bias(false)
                .with_causal(causal),
            101,
        );
        attn.qkv.weight = Param::from_tensor(matrix(identity3.clone(), 2, 6));
        attn.output.weight = Param::from_tensor(matrix(vec![1., 0., 0., 1.], 2, 2));
        attn
    };
    let x = tensor3(vec![1., 0., 0., 1.], [1, 2, 2]);
    let sigma = 1.0 / (1.0 + (-(0.5f64).sqrt()).exp()); // σ(1/√2) = 0.669761…
    assert!((sigma - 0.669_761).abs() < 1e-6);
    let (s, r) = (sigma as f32, 1.0 - sigma as f32);

    let out = values(build(false).forward(x.clone()));
    assert!(max_abs_diff(&out, &[s, r, r, s]) < 1e-6, "{out:?}");

    let out = values(build(true).forward(x));
    assert!(max_abs_diff(&out, &[1.0, 0.0, r, s]) < 1e-6, "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Agreement with burn::nn::attention::MultiHeadAttention
// ---------------------------------------------------------------------------------------------

/// Copies the weights of Burn's MHA (separate Q, K, V, O linears) into ours (fused QKV).
fn copy_from_burn(
    burn_mha: &burn::nn::attention::MultiHeadAttention<Cpu>,
    ours: &mut MultiHeadAttention<Cpu>,
) {
    let w = Tensor::cat(
        vec![
            burn_mha.query.weight.val(),
            burn_mha.key.weight.val(),
            burn_mha.value.weight.val(),
        ],
        1,
    );
    let b = Tensor::cat(
        vec![
            burn_mha.query.bias.as_ref().unwrap().val(),
            burn_mha.key.bias.as_ref().unwrap().val(),
            burn_mha.value.bias.as_ref().unwrap().val(),
        ],
        0,
    );
    ours.qkv.weight = Param::from_tensor(w);
    ours.qkv.bias = Some(Param::from_tensor(b));
    ours.output.weight = Param::from_tensor(burn_mha.output.weight.val());
    ours.output.bias = Some(Param::from_tensor(
        burn_mha.output.bias.as_ref().unwrap().val(),
    ));
}

#[test]
fn matches_burn_multi_head_attention() {
    let (b, l, d, h) = (3, 6, 8, 2);
    // Burn's layer draws its weights lazily: `copy_from_burn` reads them all, under the lock.
    let burn_mha = MultiHeadAttentionConfig::new(d, h)
        .with_dropout(0.0)
        .init::<Cpu>(&dev());
    let mut ours = attention(AttentionConfig::new(d, h).with_causal(false), 102);
    seeded(2, || copy_from_burn(&burn_mha, &mut ours));
    let x = tensor3(random_input(1, b, l, d), [b, l, d]);

    // Bidirectional self-attention.
    let reference = burn_mha.forward(MhaInput::self_attn(x.clone()));
    let diff = max_abs_diff(&values(ours.forward(x.clone())), &values(reference.context));
    assert!(diff <= 1e-5, "bidirectional: max |Δ| = {diff}");
    let diff = max_abs_diff(
        &values(
            ours.attend_with_weights(AttentionInput::self_attention(x.clone()))
                .unwrap()
                .1,
        ),
        &values(reference.weights),
    );
    assert!(diff <= 1e-6, "weights: max |Δ| = {diff}");

    // Key padding: the last two tokens of sequence 0 and the last one of sequence 2.
    let mut pad = vec![false; b * l];
    pad[l - 2] = true;
    pad[l - 1] = true;
    pad[3 * l - 1] = true;
    let pad = Tensor::<Cpu, 2, Bool>::from_data(TensorData::new(pad, [b, l]), &dev());
    let reference = burn_mha.forward(MhaInput::self_attn(x.clone()).mask_pad(pad.clone()));
    let diff = max_abs_diff(
        &values(ours.attend(AttentionInput::self_attention(x.clone()).padding(pad))),
        &values(reference.context),
    );
    assert!(diff <= 1e-5, "padding: max |Δ| = {diff}");

    // Causal self-attention.
    let mut causal = ours.clone();
    causal.causal = true;
    let mask = generate_autoregressive_mask::<Cpu>(b, l, &dev());
    let reference = burn_mha.forward(MhaInput::self_attn(x.clone()).mask_attn(mask));
    let diff = max_abs_diff(
        &values(causal.forward(x.clone())),
        &values(reference.context),
    );
    assert!(diff <= 1e-5, "causal: max |Δ| = {diff}");

    // Cross-attention: queries from x, keys/values from a longer context.
    let c = tensor3(random_input(2, b, l + 3, d), [b, l + 3, d]);
    let reference = burn_mha.forward(MhaInput::new(x.clone(), c.clone(), c.clone()));
    let diff = max_abs_diff(
        &values(ours.attend(AttentionInput::cross(x, c))),
        &values(reference.context),
    );
    assert!(diff <= 1e-5, "cross: max |Δ| = {diff}");
}

// ---------------------------------------------------------------------------------------------
// Independent scalar f64 implementation
// ---------------------------------------------------------------------------------------------

/// Plain-loop f64 multi-head attention for one sequence, reading the layer's weights.
/// `xq` `[Lq][D]`, `xkv` `[Lk][D]`; `cross` disables causality and position encodings.
fn reference_attention(
    attn: &MultiHeadAttention<Cpu>,
    xq: &[Vec<f64>],
    xkv: &[Vec<f64>],
    cross: bool,
    key_padding: Option<&[bool]>,
) -> Vec<Vec<f64>> {
    let d = attn.d_model;
    let (h_count, dh) = (attn.n_heads, attn.d_head);
    let p = attn.sharing.n_projections();
    let w: Vec<f64> = values(attn.qkv.weight.val())
        .iter()
        .map(|&v| v as f64)
        .collect(); // [D, P·D]
    let b: Vec<f64> = match &attn.qkv.bias {
        Some(b) => values(b.val()).iter().map(|&v| v as f64).collect(),
        None => vec![0.0; p * d],
    };
    let wo: Vec<f64> = values(attn.output.weight.val())
        .iter()
        .map(|&v| v as f64)
        .collect();
    let bo: Vec<f64> = match &attn.output.bias {
        Some(b) => values(b.val()).iter().map(|&v| v as f64).collect(),
        None => vec![0.0; d],
    };
    let project = |x: &[f64], block: usize| -> Vec<f64> {
        (0..d)
            .map(|o| {
                let col = block * d + o;
                b[col] + (0..d).map(|i| x[i] * w[i * p * d + col]).sum::<f64>()
            })
            .collect()
    };
    let (qb, kb, vb) = attn.sharing.blocks();
    let rope_base = match attn.position {
        PositionEncoding::Rope { base } if !cross => Some(base),
        _ => None,
    };
    // Rotate pair (f, f + dh/2) of a head vector by pos·base^(−2f/dh).
    let rotate = |v: &[f64], pos: usize| -> Vec<f64> {
        let Some(base) = rope_base else {
            return v.to_vec();
        };
        let half = dh / 2;
        let mut out = v.to_vec();
        for f in 0..half {
            let a = pos as f64 * base.powf(-2.0 * f as f64 / dh as f64);
            out[f] = v[f] * a.cos() - v[f + half] * a.sin();
            out[f + half] = v[f + half] * a.cos() + v[f] * a.sin();
        }
        out
    };
    let q: Vec<Vec<f64>> = xq.iter().map(|x| project(x, qb)).collect();
    let k: Vec<Vec<f64>> = xkv.iter().map(|x| project(x, kb)).collect();
    let v: Vec<Vec<f64>> = xkv.iter().map(|x| project(x, vb)).collect();
    let causal = attn.causal && !cross;
    let naive = attn.masking == CausalMasking::NaivePostSoftmax;
    let mut merged = vec![vec![0.0; d]; xq.len()];
    for head in 0..h_count {
        let range = head * dh..(head + 1) * dh;
        let slope = 2f64.powf(-8.0 * (head + 1) as f64 / h_count as f64);
        for i in 0..xq.len() {
            let qi = rotate(&q[i][range.clone()], i);
            // Scores of the keys allowed before the softmax (None = excluded).
            let scores: Vec<Option<f64>> = (0..xkv.len())
                .map(|j| {
                    let padded = key_padding.is_some_and(|m| m[j]);
                    let future = causal && j > i;
                    let window = match attn.position {
                        PositionEncoding::HardAlibi { windowed_heads }
                            if !cross && head < windowed_heads =>
                        {
                            i.abs_diff(j) > head
                        }
                        _ => false,
                    };
                    if padded || window || (future && !naive) {
                        return None;
                    }
                    let kj = rotate(&k[j][range.clone()], j);
                    let mut s =
                        qi.iter().zip(&kj).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt();
                    if matches!(attn.position, PositionEncoding::Alibi) && !cross {
                        s -= slope * i.abs_diff(j) as f64;
                    }
                    Some(s)
                })
                .collect();
            let max = scores
                .iter()
                .flatten()
                .cloned()
                .fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().flatten().map(|s| (s - max).exp()).sum();
            for (j, s) in scores.iter().enumerate() {
                let Some(s) = s else { continue };
                if causal && naive && j > i {
                    continue; // zeroed after the softmax
                }
                let weight = (s - max).exp() / z;
                for (f, c) in range.clone().enumerate() {
                    merged[i][c] += weight * v[j][head * dh + f];
                }
            }
        }
    }
    merged
        .iter()
        .map(|m| {
            (0..d)
                .map(|o| bo[o] + (0..d).map(|i| m[i] * wo[i * d + o]).sum::<f64>())
                .collect()
        })
        .collect()
}

fn rows(data: &[f32], batch: usize, l: usize, d: usize) -> Vec<Vec<f64>> {
    (0..l)
        .map(|t| {
            (0..d)
                .map(|f| data[(batch * l + t) * d + f] as f64)
                .collect()
        })
        .collect()
}

fn flatten(rows: &[Vec<f64>]) -> Vec<f32> {
    rows.iter().flatten().map(|&v| v as f32).collect()
}

fn all_encodings() -> Vec<PositionEncoding> {
    vec![
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
        PositionEncoding::hard_alibi(3),
        // Absolute kinds are ignored inside the layer (the reference treats them as NoPE).
        PositionEncoding::sinusoidal(),
    ]
}

#[test]
fn self_attention_matches_scalar_reference_for_every_encoding_and_mask() {
    let (b, l, d, h) = (2, 7, 12, 3);
    let x = random_input(3, b, l, d);
    for position in all_encodings() {
        for (causal, masking) in [
            (false, CausalMasking::PreSoftmax),
            (true, CausalMasking::PreSoftmax),
            (true, CausalMasking::NaivePostSoftmax),
        ] {
            let attn = attention(
                AttentionConfig::new(d, h)
                    .with_position(position.clone())
                    .with_causal(causal)
                    .with_masking(masking),
                103,
            );
            let out = values(attn.forward(tensor3(x.clone(), [b, l, d])));
            for batch in 0..b {
                let xs = rows(&x, batch, l, d);
                let expected = flatten(&reference_attention(&attn, &xs, &xs, false, None));
                let got = &out[batch * l * d..(batch + 1) * l * d];
                let diff = max_abs_diff(got, &expected);
                assert!(
                    diff <= 1e-5,
                    "{position:?} causal={causal} {masking:?}: max |Δ| = {diff}"
                );
            }
        }
    }
}

#[test]
fn shared_projections_match_scalar_reference() {
    let (b, l, d, h) = (2, 5, 8, 2);
    let x = random_input(4, b, l, d);
    let c = random_input(5, b, l + 2, d);
    for sharing in [
        QkvSharing::Separate,
        QkvSharing::SharedQK,
        QkvSharing::SharedKV,
        QkvSharing::SharedQKV,
    ] {
        let attn = attention(
            AttentionConfig::new(d, h)
                .with_sharing(sharing)
                .with_position(PositionEncoding::rope()),
            104,
        );
        assert_eq!(attn.qkv.weight.dims(), [d, sharing.n_projections() * d]);
        let out = values(attn.forward(tensor3(x.clone(), [b, l, d])));
        let cross = values(attn.attend(AttentionInput::cross(
            tensor3(x.clone(), [b, l, d]),
            tensor3(c.clone(), [b, l + 2, d]),
        )));
        for batch in 0..b {
            let xs = rows(&x, batch, l, d);
            let cs = rows(&c, batch, l + 2, d);
            let expected = flatten(&reference_attention(&attn, &xs, &xs, false, None));
            let diff = max_abs_diff(&out[batch * l * d..(batch + 1) * l * d], &expected);
            assert!(diff <= 1e-5, "{sharing:?} self: max |Δ| = {diff}");
            let expected = flatten(&reference_attention(&attn, &xs, &cs, true, None));
            let diff = max_abs_diff(&cross[batch * l * d..(batch + 1) * l * d], &expected);
            assert!(diff <= 1e-5, "{sharing:?} cross: max |Δ| = {diff}");
        }
    }
}

/// With `W_Q = W_K`, no bias and no position encoding the scores `Q·Qᵀ` are symmetric, so
/// `A'_ij·Z_i = A'_ji·Z_j` with `Z_i = Σ_j exp(A_ij)`: the weight ratios satisfy
/// `A'_ij/A'_ji = Z_j/Z_i`, i.e. `A'_ij·A'_jk·A'_ki = A'_ik·A'_kj·A'_ji` for every triple.
#[test]
fn shared_qk_gives_symmetric_scores() {
    let (l, d) = (5, 6);
    let attn = attention(
        AttentionConfig::new(d, 1)
            .with_sharing(QkvSharing::SharedQK)
            .with_causal(false)
            .with_bias(false),
        105,
    );
    let w = values(
        attn.attend_with_weights(AttentionInput::self_attention(tensor3(
            random_input(6, 1, l, d),
            [1, l, d],
        )))
        .unwrap()
        .1,
    );
    let a = |i: usize, j: usize| w[i * l + j] as f64;
    for (i, j, k) in [(0, 1, 2), (1, 3, 4), (0, 2, 4), (4, 3, 1)] {
        let forward = a(i, j) * a(j, k) * a(k, i);
        let backward = a(i, k) * a(k, j) * a(j, i);
        assert!(
            (forward / backward - 1.0).abs() < 1e-4,
            "{forward} vs {backward}"
        );
    }
    // A separate-projection layer breaks the identity for at least one triple.
    let separate = attention(
        AttentionConfig::new(d, 1)
            .with_causal(false)
            .with_bias(false),
        106,
    );
    let w = values(
        separate
            .attend_with_weights(AttentionInput::self_attention(tensor3(
                random_input(6, 1, l, d),
                [1, l, d],
            )))
            .unwrap()
            .1,
    );
    let a = |i: usize, j: usize| w[i * l + j] as f64;
    let worst = [(0, 1, 2), (1, 3, 4), (0, 2, 4), (4, 3, 1)]
        .iter()
        .map(|&(i, j, k)| {
            ((a(i, j) * a(j, k) * a(k, i)) / (a(i, k) * a(k, j) * a(j, i)) - 1.0).abs()
        })
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-3,
        "separate projections unexpectedly symmetric: {worst}"
    );
}

// ---------------------------------------------------------------------------------------------
// Causality and the naive-masking leak
// ---------------------------------------------------------------------------------------------

/// Perturbs tokens `t+1..` and returns (max change at positions ≤ t, max change after t).
fn perturbation_effect(attn: &MultiHeadAttention<Cpu>, t: usize) -> (f32, f32) {
    let (b, l, d) = (2, 8, attn.d_model);
    let x = random_input(7, b, l, d);
    let mut y = x.clone();
    for batch in 0..b {
        for pos in t + 1..l {
            for f in 0..d {
                y[(batch * l + pos) * d + f] += 3.0;
            }
        }
    }
    let ox = values(attn.forward(tensor3(x, [b, l, d])));
    let oy = values(attn.forward(tensor3(y, [b, l, d])));
    let (mut past, mut future) = (0.0f32, 0.0f32);
    for batch in 0..b {
        for pos in 0..l {
            for f in 0..d {
                let idx = (batch * l + pos) * d + f;
                let change = (ox[idx] - oy[idx]).abs();
                if pos <= t {
                    past = past.max(change);
                } else {
                    future = future.max(change);
                }
            }
        }
    }
    (past, future)
}

#[test]
fn perturbing_the_future_leaves_the_past_unchanged() {
    for position in all_encodings() {
        let attn = attention(
            AttentionConfig::new(8, 4).with_position(position.clone()),
            107,
        );
        for t in [0, 3, 6] {
            let (past, future) = perturbation_effect(&attn, t);
            assert_eq!(past, 0.0, "{position:?}: output ≤ {t} changed by {past}");
            assert!(
                future > 1e-3,
                "{position:?}: perturbation had no effect ({future})"
            );
        }
    }
}

#[test]
fn naive_post_softmax_mask_leaks_the_future() {
    let naive = attention(
        AttentionConfig::new(8, 2).with_masking(CausalMasking::NaivePostSoftmax),
        108,
    );
    // Even position 0 (which may only see itself) changes when the future changes.
    let (past, _) = perturbation_effect(&naive, 0);
    assert!(past > 1e-3, "naive masking did not leak: {past}");

    // The mechanism: naive weights are the *bidirectional* weights with the future zeroed,
    // A'_naive[i, j] = exp(A_ij) / Σ_{all k} exp(A_ik) for j ≤ i — the denominator still
    // sums over future keys, so rows no longer sum to 1.
    let mut bidirectional = naive.clone();
    bidirectional.causal = false;
    let (l, h) = (8, 2);
    let x = tensor3(random_input(8, 1, l, 8), [1, l, 8]);
    let wn = values(
        naive
            .attend_with_weights(AttentionInput::self_attention(x.clone()))
            .unwrap()
            .1,
    );
    let wb = values(
        bidirectional
            .attend_with_weights(AttentionInput::self_attention(x))
            .unwrap()
            .1,
    );
    for head in 0..h {
        for i in 0..l {
            let row = (head * l + i) * l;
            for j in 0..l {
                let expected = if j <= i { wb[row + j] } else { 0.0 };
                assert!((wn[row + j] - expected).abs() < 1e-7);
            }
            let sum: f32 = wn[row..row + l].iter().sum();
            let leaked: f32 = wb[row + i + 1..row + l].iter().sum();
            assert!((sum - (1.0 - leaked)).abs() < 1e-5);
            if i + 1 < l {
                assert!(sum < 1.0 - 1e-4, "row {i} sums to {sum}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Padding
// ---------------------------------------------------------------------------------------------

#[test]
fn padded_keys_are_invisible() {
    let (l, pad_len, d) = (5, 3, 8);
    let attn = attention(
        AttentionConfig::new(d, 2)
            .with_causal(false)
            .with_position(PositionEncoding::alibi()),
        109,
    );
    let x = random_input(9, 1, l + pad_len, d);
    let mut junk = x.clone();
    for v in junk[l * d..].iter_mut() {
        *v = 100.0;
    }
    let mut mask = vec![false; l + pad_len];
    mask[l..].iter_mut().for_each(|m| *m = true);
    let mask = Tensor::<Cpu, 2, Bool>::from_data(TensorData::new(mask, [1, l + pad_len]), &dev());
    let padded =
        values(attn.attend(
            AttentionInput::self_attention(tensor3(junk, [1, l + pad_len, d])).padding(mask),
        ));
    let short = values(attn.forward(tensor3(x[..l * d].to_vec(), [1, l, d])));
    let diff = max_abs_diff(&padded[..l * d], &short);
    assert!(diff <= 1e-5, "padding changed real outputs by {diff}");

    // A row whose keys are all masked (left padding under a causal mask) stays finite.
    let causal = attention(AttentionConfig::new(d, 2), 110);
    let mut left = vec![false; l];
    left[0] = true;
    let left = Tensor::<Cpu, 2, Bool>::from_data(TensorData::new(left, [1, l]), &dev());
    let out = values(causal.attend(
        AttentionInput::self_attention(tensor3(x[..l * d].to_vec(), [1, l, d])).padding(left),
    ));
    // Rows 1.. still see keys 1..=i: the scalar reference with the same padding.
    let xs = rows(&x[..l * d], 0, l, d);
    let mut flags = vec![false; l];
    flags[0] = true;
    let expected = flatten(&reference_attention(&causal, &xs, &xs, false, Some(&flags)));
    let diff = max_abs_diff(&out[d..], &expected[d..]);
    assert!(diff <= 1e-5, "rows after the pad: max |Δ| = {diff}");
    // Row 0 has no visible key: every score is the finite MASKED, so the softmax is uniform
    // over all L keys and the output is the output projection of the mean value vector. That
    // is what a layer with Q ≡ 0 (all scores 0, bidirectional) gives. An implementation masking
    // with −∞ would give NaN here; one that dropped the row (zeros) or attended only to
    // the unpadded keys would give another row.
    let mut uniform = causal.clone();
    uniform.causal = false;
    let w = values(causal.qkv.weight.val()); // [D, 3D], Q block first
    let zeroed: Vec<f32> = w
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % (3 * d) < d { 0.0 } else { v })
        .collect();
    uniform.qkv.weight = Param::from_tensor(matrix(zeroed, d, 3 * d));
    if let Some(b) = &causal.qkv.bias {
        let b: Vec<f32> = values(b.val())
            .iter()
            .enumerate()
            .map(|(i, &v)| if i < d { 0.0 } else { v })
            .collect();
        uniform.qkv.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [3 * d]),
            &dev(),
        )));
    }
    let mean_row = values(uniform.forward(tensor3(x[..l * d].to_vec(), [1, l, d])));
    let diff = max_abs_diff(&out[..d], &mean_row[..d]);
    assert!(diff <= 1e-5, "fully masked row: max |Δ| = {diff}");
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_configuration_error_is_returned() {
    let init = |c: AttentionConfig| c.try_init::<Cpu>(&dev()).map(|_| ()).unwrap_err();
    assert_eq!(
        init(AttentionConfig::new(0, 1)),
        SeqError::ZeroSize { name: "d_model" }
    );
    assert_eq!(
        init(AttentionConfig::new(8, 0)),
        SeqError::ZeroSize { name: "n_heads" }
    );
    assert_eq!(
        init(AttentionConfig::new(8, 3)),
        SeqError::HeadsDoNotDivide {
            d_model: 8,
            n_heads: 3
        }
    );
    assert_eq!(
        init(AttentionConfig::new(6, 2).with_position(PositionEncoding::rope())),
        SeqError::OddRopeDim { d_head: 3 }
    );
    assert_eq!(
        init(AttentionConfig::new(8, 2).with_position(PositionEncoding::hard_alibi(3))),
        SeqError::TooManyWindowedHeads {
            windowed_heads: 3,
            n_heads: 2
        }
    );
    assert_eq!(
        init(AttentionConfig::new(8, 2).with_position(PositionEncoding::hard_alibi(0))),
        SeqError::ZeroSize {
            name: "windowed_heads"
        }
    );
    assert_eq!(
        init(AttentionConfig::new(8, 2).with_position(PositionEncoding::learned(0))),
        SeqError::ZeroSize { name: "max_len" }
    );
    for base in [0.5, 1.0, -3.0, f64::NAN, f64::INFINITY] {
        let err = init(AttentionConfig::new(8, 2).with_position(PositionEncoding::Rope { base }));
        assert!(
            matches!(err, SeqError::OutOfRange { name: "base", .. }),
            "{err:?}"
        );
    }
    // The errors print a fix.
    assert!(
        init(AttentionConfig::new(8, 3))
            .to_string()
            .contains("choose n_heads")
    );

    // Runtime errors of incremental decoding.
    let bidirectional = attention(AttentionConfig::new(8, 2).with_causal(false), 111);
    let mut cache = KvCache::new();
    let err = bidirectional
        .forward_with_state(tensor3(vec![0.0; 8], [1, 1, 8]), cache.clone())
        .map(|(y, next)| {
            cache = next;
            y
        })
        .unwrap_err();
    assert!(matches!(err, SeqError::InvalidConfig(_)), "{err:?}");
    let causal = attention(AttentionConfig::new(8, 2), 112);
    causal
        .forward_with_state(tensor3(vec![0.0; 16], [2, 1, 8]), cache.clone())
        .map(|(y, next)| {
            cache = next;
            y
        })
        .unwrap();
    let err = causal
        .forward_with_state(tensor3(vec![0.0; 8], [1, 1, 8]), cache.clone())
        .map(|(y, next)| {
            cache = next;
            y
        })
        .unwrap_err();
    assert!(matches!(err, SeqError::ShapeMismatch { .. }), "{err:?}");
}

/// Cloning a freshly built layer keeps its weights (Burn's lazy initialisation would otherwise
/// re-draw them per clone), so ablations built by cloning compare like with like.
#[test]
fn clones_share_weights() {
    let attn = attention(AttentionConfig::new(8, 2), 113);
    let copy = attn.clone();
    let x = tensor3(random_input(13, 1, 4, 8), [1, 4, 8]);
    assert_eq!(values(attn.forward(x.clone())), values(copy.forward(x)));
}
