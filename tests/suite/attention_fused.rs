//! The fused attention operation (one op: Rust kernel on the CPU, one autodiff node) against
//! attention from tensor primitives: outputs and gradients, for every mask it handles.

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::attention::{AttentionConfig, AttentionInput, MultiHeadAttention};
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::position::PositionEncoding;

use crate::common::{dev, fresh_leaves, max_abs_diff, seeded, values};

fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Output and gradients (input, fused Q/K/V weight, output weight) of `Σ w ⊙ attention(x)`,
/// through the fused path (`forward`) or the primitive one (`self_attention`). Each call runs
/// its backward pass through fresh parameter leaves (see `common::fresh_leaves`: two passes
/// through the same leaves can lose a gradient to another test's backward, burn#5573).
fn run(
    attn: &MultiHeadAttention<CpuAutodiff>,
    x: &[f32],
    w: &[f32],
    shape: [usize; 3],
    fused: bool,
) -> [Vec<f32>; 4] {
    let attn = &fresh_leaves(attn);
    let x = Tensor::<CpuAutodiff, 3>::from_data(TensorData::new(x.to_vec(), shape), &dev())
        .require_grad();
    let w = Tensor::<CpuAutodiff, 3>::from_data(TensorData::new(w.to_vec(), shape), &dev());
    let out = if fused {
        attn.forward(x.clone())
    } else {
        attn.attend_with_weights(AttentionInput::self_attention(x.clone()))
            .unwrap()
            .0
    };
    let grads = (out.clone() * w).sum().backward();
    let grad = |t: Tensor<CpuAutodiff, 2>| values::<2>(t.grad(&grads).expect("tracked"));
    [
        values::<3>(out.inner()),
        values::<3>(x.grad(&grads).expect("tracked")),
        grad(attn.qkv.weight.val()),
        grad(attn.output.weight.val()),
    ]
}

#[test]
fn fused_attention_matches_primitives_in_value_and_gradient() {
    let shape = [3, 9, 8];
    let n = shape.iter().product();
    let (x, w) = (random(1, n), random(2, n));
    for position in [
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
    ] {
        for causal in [true, false] {
            for heads in [1, 2] {
                let attn = seeded(10 + heads as u64, || {
                    AttentionConfig::new(8, heads)
                        .with_position(position.clone())
                        .with_causal(causal)
                        .try_init::<CpuAutodiff>(&dev())
                        .unwrap()
                });
                let fused = run(&attn, &x, &w, shape, true);
                let reference = run(&attn, &x, &w, shape, false);
                for (what, (a, b)) in ["output", "dx", "dW_qkv", "dW_o"]
                    .iter()
                    .zip(fused.iter().zip(&reference))
                {
                    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                    let diff = max_abs_diff(a, b);
                    assert!(
                        diff <= 2e-5 * scale.max(1.0),
                        "{position:?} causal={causal} heads={heads} {what}: max |Δ| = {diff}"
                    );
                }
            }
        }
    }
}

#[test]
fn fused_attention_without_autodiff_matches_primitives() {
    // The inference backend runs the kernel directly (no autodiff wrapper).
    let shape = [2, 33, 12];
    let n = shape.iter().product();
    let x = Tensor::<Cpu, 3>::from_data(TensorData::new(random(3, n), shape), &dev());
    for position in [PositionEncoding::rope(), PositionEncoding::alibi()] {
        let attn = seeded(12, || {
            AttentionConfig::new(12, 3)
                .with_position(position.clone())
                .try_init::<Cpu>(&dev())
                .unwrap()
        });
        let fused = values(attn.forward(x.clone()));
        let reference = values(
            attn.attend_with_weights(AttentionInput::self_attention(x.clone()))
                .unwrap()
                .0,
        );
        let diff = max_abs_diff(&fused, &reference);
        assert!(diff <= 1e-5, "{position:?}: max |Δ| = {diff}");
    }
}

#[test]
fn validated_model_runs_the_fused_kernel_on_the_inner_backend() {
    // `valid()` strips autodiff: the same weights must give the same output.
    let shape = [2, 5, 8];
    let n = shape.iter().product();
    let data = random(4, n);
    let attn = seeded(13, || {
        AttentionConfig::new(8, 2)
            .try_init::<CpuAutodiff>(&dev())
            .unwrap()
    });
    let train = values::<3>(
        attn.forward(Tensor::from_data(
            TensorData::new(data.clone(), shape),
            &dev(),
        ))
        .inner(),
    );
    let valid = values(
        attn.valid()
            .forward(Tensor::from_data(TensorData::new(data, shape), &dev())),
    );
    assert!(max_abs_diff(&train, &valid) <= 1e-6);
}

/// The fused path's input gradient against central finite differences of its own forward pass
/// on the inner backend: independent of both autodiff graphs. The primitive comparison above
/// shares the projections and the score mask with the fused op, so a mistake in that shared
/// code (e.g. a RoPE rotation applied with the wrong sign in the backward, or ALiBi's bias
/// left out of the recomputed weights) would pass it; it cannot pass this one.
#[test]
fn fused_attention_input_gradient_matches_finite_differences() {
    let shape = [2, 6, 8];
    let n: usize = shape.iter().product();
    let (x, w) = (random(5, n), random(6, n));
    for position in [PositionEncoding::rope(), PositionEncoding::alibi()] {
        let attn = seeded(14, || {
            AttentionConfig::new(8, 2)
                .with_position(position.clone())
                .try_init::<CpuAutodiff>(&dev())
                .unwrap()
        });
        let [_, dx, _, _] = run(&attn, &x, &w, shape, true);
        let inner = attn.valid();
        // Σ w ⊙ attention(x) in f64, from the f32 forward on the inner backend.
        let loss = |x: &[f32]| -> f64 {
            let out = values(inner.forward(Tensor::<Cpu, 3>::from_data(
                TensorData::new(x.to_vec(), shape),
                &dev(),
            )));
            out.iter()
                .zip(&w)
                .map(|(o, w)| (*o as f64) * (*w as f64))
                .sum()
        };
        let eps = 1e-2f32;
        for i in (0..n).step_by(7) {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&up) - loss(&down)) / (2.0 * eps as f64);
            assert!(
                (dx[i] as f64 - fd).abs() <= 2e-3 * fd.abs().max(1.0),
                "{position:?} ∂x[{i}]: autodiff {} vs finite difference {fd}",
                dx[i]
            );
        }
    }
}
