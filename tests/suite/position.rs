//! Numerical tests of `seqlayers::position`: RoPE's relative-position property and hand
//! values, ALiBi slopes and bias matrices, Hard-ALiBi windows (as biases and as attention
//! weights), sinusoidal values, learned tables past their length, and every error.

use crate::common::{attention, dev, max_abs_diff, seeded, values};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::SeqError;
use seqlayers::attention::{AttentionConfig, AttentionInput, MASKED};
use seqlayers::backend::Cpu;
use seqlayers::internals::rope_tables;
use seqlayers::position::{
    OutOfRange, PositionEncoding, Rope, alibi_bias, alibi_slopes, hard_alibi_bias, sinusoidal_table,
};

fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn tensor4(data: Vec<f32>, shape: [usize; 4]) -> Tensor<Cpu, 4> {
    Tensor::from_data(TensorData::new(data, shape), &dev())
}

// ---------------------------------------------------------------------------------------------
// RoPE
// ---------------------------------------------------------------------------------------------

/// `d = 2`: θ₀ = 1, so position `p` rotates `[x₁, x₂]` by `p` radians.
/// `d = 4`, base 10000: θ₀ = 1, θ₁ = 10000^(−1/2) = 0.01; pairs are (0, 2) and (1, 3).
#[test]
fn rope_matches_hand_rotation() {
    let rope = Rope {
        d_head: 2,
        base: 10_000.0,
    };
    let x = tensor4(vec![1.0, 0.0, 0.0, 1.0], [1, 1, 2, 2]); // rows at positions 3, 4
    let out = values(rope.apply(x, 3));
    let (c3, s3, c4, s4) = (3f32.cos(), 3f32.sin(), 4f32.cos(), 4f32.sin());
    assert!(max_abs_diff(&out, &[c3, s3, -s4, c4]) < 1e-6, "{out:?}");

    let rope = Rope {
        d_head: 4,
        base: 10_000.0,
    };
    let x = tensor4(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 1, 4]);
    let out = values(rope.apply(x, 5)); // angles 5 and 0.05
    let (a, b) = (5f32, 0.05f32);
    let expected = [
        1.0 * a.cos() - 3.0 * a.sin(),
        2.0 * b.cos() - 4.0 * b.sin(),
        3.0 * a.cos() + 1.0 * a.sin(),
        4.0 * b.cos() + 2.0 * b.sin(),
    ];
    assert!(max_abs_diff(&out, &expected) < 1e-5, "{out:?}");

    let (cos, sin) = rope_tables(0, 1, 4, 10_000.0);
    assert_eq!(
        (cos, sin),
        (vec![1.0; 4], vec![0.0; 4]),
        "position 0 is the identity"
    );
}

/// `⟨R(m)q, R(n)k⟩` depends only on `n − m`: shifting both positions by `s` keeps every score.
#[test]
fn rope_scores_depend_only_on_relative_position() {
    let d = 8;
    let rope = Rope {
        d_head: d,
        base: 10_000.0,
    };
    let q = random(20, d);
    let k = random(21, d);
    let score = |m: usize, n: usize| -> f32 {
        let qm = values(rope.apply(tensor4(q.clone(), [1, 1, 1, d]), m));
        let kn = values(rope.apply(tensor4(k.clone(), [1, 1, 1, d]), n));
        qm.iter().zip(&kn).map(|(a, b)| a * b).sum()
    };
    for (m, n) in [(0, 0), (0, 3), (5, 2), (7, 7), (1, 20)] {
        let base = score(m, n);
        for shift in [1, 13, 100, 1000] {
            let shifted = score(m + shift, n + shift);
            assert!(
                (shifted - base).abs() < 1e-4,
                "({m},{n})+{shift}: {shifted} vs {base}"
            );
        }
    }
    // …but the score does change with the offset itself.
    assert!((score(0, 0) - score(0, 3)).abs() > 1e-3);
    // Rotations preserve the norm.
    let qr = values(rope.apply(tensor4(q.clone(), [1, 1, 1, d]), 37));
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    assert!((norm(&qr) - norm(&q)).abs() < 1e-5);
}

// ---------------------------------------------------------------------------------------------
// ALiBi and Hard-ALiBi
// ---------------------------------------------------------------------------------------------

#[test]
fn alibi_slopes_are_the_geometric_sequence_of_the_paper() {
    // H = 8: 1/2, 1/4, …, 1/256 (Press et al., 2022).
    let expected: Vec<f32> = (1..=8).map(|h| 0.5f32.powi(h)).collect();
    assert_eq!(alibi_slopes(8), expected);
    // H = 4: 2^(−2), 2^(−4), 2^(−6), 2^(−8).
    assert_eq!(alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
}

#[test]
fn alibi_bias_matrix_small_example() {
    // H = 2 → slopes 2^(−4) = 0.0625 and 2^(−8) = 0.00390625; bias −m·|i − j|, L = 3.
    let (m0, m1) = (0.0625f32, 0.003_906_25f32);
    let expected = vec![
        0.0,
        -m0,
        -2.0 * m0, //
        -m0,
        0.0,
        -m0, //
        -2.0 * m0,
        -m0,
        0.0, //
        0.0,
        -m1,
        -2.0 * m1, //
        -m1,
        0.0,
        -m1, //
        -2.0 * m1,
        -m1,
        0.0,
    ];
    assert_eq!(alibi_bias(2, 0, 3, 3), expected);
    // A decoding step at position 2 is the last row of each head.
    assert_eq!(
        alibi_bias(2, 2, 1, 3),
        vec![-2.0 * m0, -m0, 0.0, -2.0 * m1, -m1, 0.0]
    );
}

#[test]
fn hard_alibi_bias_matrix_small_example() {
    // H = 3, W = 2, L = 4: head 0 sees only itself, head 1 itself and one neighbour,
    // head 2 is NoPE.
    let x = MASKED;
    let expected = vec![
        0.0, x, x, x, //
        x, 0.0, x, x, //
        x, x, 0.0, x, //
        x, x, x, 0.0, //
        0.0, 0.0, x, x, //
        0.0, 0.0, 0.0, x, //
        x, 0.0, 0.0, 0.0, //
        x, x, 0.0, 0.0, //
        0.0, 0.0, 0.0, 0.0, //
        0.0, 0.0, 0.0, 0.0, //
        0.0, 0.0, 0.0, 0.0, //
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(hard_alibi_bias(3, 2, 0, 4, 4), expected);
}

/// Inside a causal layer, Hard-ALiBi head 0 attends only to the current token (weight 1 on
/// the diagonal), head 1 only to the last two tokens, and the unwindowed head to everything
/// before it with positive weight.
#[test]
fn hard_alibi_heads_see_only_their_window() {
    let (l, d, h) = (5, 6, 3);
    let attn = attention(
        AttentionConfig::new(d, h).with_position(PositionEncoding::hard_alibi(2)),
        101,
    );
    let x = Tensor::from_data(TensorData::new(random(22, l * d), [1, l, d]), &dev());
    let w = values(
        attn.attend_with_weights(AttentionInput::self_attention(x))
            .unwrap()
            .1,
    ); // [1, H, L, L]
    let at = |head: usize, i: usize, j: usize| w[(head * l + i) * l + j];
    for i in 0..l {
        for j in 0..l {
            let expected_visible = [j == i, j <= i && i - j <= 1, j <= i];
            for (head, visible) in expected_visible.iter().enumerate() {
                if *visible {
                    assert!(at(head, i, j) > 0.0, "head {head} ({i},{j})");
                } else {
                    assert_eq!(at(head, i, j), 0.0, "head {head} ({i},{j})");
                }
            }
        }
        assert!((at(0, i, i) - 1.0).abs() < 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Absolute encodings
// ---------------------------------------------------------------------------------------------

#[test]
fn sinusoidal_table_matches_the_formula() {
    // D = 4, base 10000: θ₀ = 1, θ₁ = 0.01. Position 1: [sin 1, cos 1, sin 0.01, cos 0.01].
    let row = sinusoidal_table(1, 1, 4, 10_000.0);
    let expected = [1f32.sin(), 1f32.cos(), 0.01f32.sin(), 0.01f32.cos()];
    assert!(max_abs_diff(&row, &expected) < 1e-7);
    // Position 0 is [0, 1, 0, 1]; an odd width ends in a sine.
    assert_eq!(
        sinusoidal_table(0, 1, 5, 10_000.0),
        vec![0.0, 1.0, 0.0, 1.0, 0.0]
    );
    // Rows at an offset are the same rows of the long table.
    let long = sinusoidal_table(0, 10, 6, 10_000.0);
    assert_eq!(sinusoidal_table(7, 3, 6, 10_000.0), long[7 * 6..].to_vec());
}

#[test]
fn sinusoidal_encoding_works_far_beyond_any_training_length() {
    let (l, d) = (192, 8); // 3 × 64
    let pe = PositionEncoding::sinusoidal()
        .init_absolute::<Cpu>(d, &dev())
        .unwrap();
    // The input is not zero, so the encoding must be *added* (not written over it), and the
    // expected rows come from Vaswani et al.'s formula in f64, not from `sinusoidal_table`
    // (which the module calls): PE[p, 2i] = sin(p·10000^(−2i/D)), PE[p, 2i+1] = cos(…).
    // A table with the pairs swapped (cos first), an exponent of −i/D instead of −2i/D, or
    // positions not shifted by the offset (10) fails this; comparing with the function that
    // builds the table could not tell.
    let input = random(24, l * d);
    let x = Tensor::<Cpu, 3>::from_data(TensorData::new(input.clone(), [1, l, d]), &dev());
    let out = values(pe.try_forward(x, 10).unwrap());
    let mut expected = Vec::with_capacity(l * d);
    for p in 10..10 + l {
        for i in 0..d / 2 {
            let angle = p as f64 / 10_000f64.powf(2.0 * i as f64 / d as f64);
            expected.extend([angle.sin(), angle.cos()]);
        }
    }
    let expected: Vec<f32> = expected
        .iter()
        .zip(&input)
        .map(|(pe, x)| (*pe + *x as f64) as f32)
        .collect();
    // Positions up to 201: |angle| ≤ 201, f64 → f32 rounding of a value in [−2, 2].
    assert!(max_abs_diff(&out, &expected) < 1e-6);
    // Hand values at position 10, D = 8: θ = 1, 0.1, 0.01, 0.001.
    assert!((out[0] - input[0] - 10f32.sin()).abs() < 1e-6);
    assert!((out[3] - input[3] - 1f32.cos()).abs() < 1e-6);
}

#[test]
fn learned_encoding_adds_rows_at_the_offset_and_handles_out_of_range() {
    let (max_len, d) = (4, 3);
    let table: Vec<f32> = (0..max_len * d).map(|i| i as f32).collect(); // row p = [3p, 3p+1, 3p+2]
    let build = |policy: OutOfRange| {
        let mut pe = seeded(1, || {
            PositionEncoding::Learned {
                max_len,
                out_of_range: policy,
            }
            .init_absolute::<Cpu>(d, &dev())
            .unwrap()
        });
        pe.table = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(table.clone(), [max_len, d]),
            &dev(),
        )));
        pe
    };
    let ones = |l: usize| Tensor::<Cpu, 3>::ones([1, l, d], &dev());

    let pe = build(OutOfRange::Error);
    assert_eq!(pe.max_len(), Some(max_len));
    let out = values(pe.try_forward(ones(2), 1).unwrap());
    assert_eq!(out, vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0]); // 1 + rows 1 and 2
    let err = pe.try_forward(ones(3), 2).unwrap_err();
    assert_eq!(
        err,
        SeqError::SequenceTooLong {
            what: "learned position table",
            len: 5,
            max: max_len
        }
    );

    // Clamp: positions ≥ max_len reuse the last row; 3 × max_len works.
    let pe = build(OutOfRange::Clamp);
    let out = values(pe.try_forward(ones(3 * max_len), 0).unwrap());
    for p in 0..3 * max_len {
        let row = p.min(max_len - 1);
        for f in 0..d {
            assert_eq!(out[p * d + f], 1.0 + (row * d + f) as f32);
        }
    }
}

#[test]
fn relative_encodings_leave_the_embeddings_unchanged() {
    for position in [
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
    ] {
        assert!(!position.is_absolute());
        let pe = position.init_absolute::<Cpu>(4, &dev()).unwrap();
        let x = Tensor::<Cpu, 3>::from_data(TensorData::new(random(23, 12), [1, 3, 4]), &dev());
        let out = values(pe.try_forward(x.clone(), 1000).unwrap());
        assert_eq!(out, values(x));
    }
    assert!(PositionEncoding::learned(3).is_absolute());
    assert!(PositionEncoding::sinusoidal().is_absolute());
}

/// Cloning a freshly built module keeps its weights (Burn's lazy initialisation would
/// otherwise re-draw them in each clone).
#[test]
fn clones_share_the_learned_table() {
    let pe = seeded(2, || {
        PositionEncoding::learned(8)
            .init_absolute::<Cpu>(4, &dev())
            .unwrap()
    });
    let copy = pe.clone();
    let a = values(pe.table.unwrap().val());
    let b = values(copy.table.unwrap().val());
    assert_eq!(a, b);
    assert!(a.iter().any(|v| *v != 0.0));
}

#[test]
fn every_position_error_is_returned() {
    let build = |p: PositionEncoding, d: usize| p.init_absolute::<Cpu>(d, &dev()).map(|_| ());
    assert_eq!(
        build(PositionEncoding::sinusoidal(), 0).unwrap_err(),
        SeqError::ZeroSize { name: "d_model" }
    );
    assert_eq!(
        build(PositionEncoding::learned(0), 4).unwrap_err(),
        SeqError::ZeroSize { name: "max_len" }
    );
    let err = build(PositionEncoding::Sinusoidal { base: 0.0 }, 4).unwrap_err();
    assert!(matches!(err, SeqError::OutOfRange { name: "base", .. }));
    let pe = PositionEncoding::sinusoidal()
        .init_absolute::<Cpu>(4, &dev())
        .unwrap();
    let err = pe
        .try_forward(Tensor::zeros([1, 2, 5], &dev()), 0)
        .unwrap_err();
    assert!(matches!(err, SeqError::ShapeMismatch { .. }), "{err:?}");
    assert_eq!(
        PositionEncoding::rope().validate_for_heads(2, 5),
        Err(SeqError::OddRopeDim { d_head: 5 })
    );
    assert_eq!(
        PositionEncoding::hard_alibi(5).validate_for_heads(4, 2),
        Err(SeqError::TooManyWindowedHeads {
            windowed_heads: 5,
            n_heads: 4
        })
    );
}
