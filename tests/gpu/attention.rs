//! The CubeCL attention kernels on wgpu against the tensor-op attention in f64, as one op:
//! output and the gradients of `Q`, `K`, `V` for cross-attention shapes (`Lq ≠ Lk`), causal
//! masks, biases broadcast over batch or heads, and RoPE.
//!
//! # Tolerances
//! Norm-wise, `max |gpu − f64| ≤ tol · max |f64|`. Each output sums `Lk ≤ 9` weighted values
//! after a `dk = 8` dot product and a softmax (depth ≈ 4, n ≈ 9: 4·4·9·u ≈ 2e-6); the gradients
//! sum another `Lq` or `Lk` terms of products of those. Values are held to `2e-5` and gradients
//! to `1e-4`; a wrong mask, scale or softmax derivative gives 1e-2 and above.

use burn::backend::Autodiff;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive, backend::Backend};
use burn_ndarray::NdArray;
use rand::{Rng, SeedableRng, rngs::StdRng};
use seqlayers::attention::MASKED;
use seqlayers::backend::Wgpu;
use seqlayers::internals::{
    FusedAttentionInput, RopeTables, fused_attention_backward, fused_attention_forward, rope_tables,
};

use crate::gpu;

type Ref = Autodiff<NdArray<f64>>;

const VALUE_TOL: f64 = 2e-5;
const GRAD_TOL: f64 = 1e-4;

/// One attention problem: sizes, data and options.
struct Case {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    dk: usize,
    dv: usize,
    /// `[Bb, Hb]` of the bias, or `None`.
    bias: Option<[usize; 2]>,
    causal: bool,
    rope: bool,
    /// Mask every key of query row 0 (a row with no visible key: uniform weights in both, but
    /// the kernels, like the CPU kernel, take a masked score as a constant, so its `dQ` is 0,
    /// where autodiff of `s·QKᵀ + bias` differentiates through the shift).
    mask_row0: bool,
}

fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The raw data of a case: q, k, v, bias, d_out.
fn data(c: &Case, seed: u64) -> [Vec<f32>; 5] {
    let mut rng = StdRng::seed_from_u64(seed);
    let q = uniform(&mut rng, c.b * c.h * c.lq * c.dk);
    let k = uniform(&mut rng, c.b * c.h * c.lk * c.dk);
    let v = uniform(&mut rng, c.b * c.h * c.lk * c.dv);
    let bias = match c.bias {
        Some([bb, hb]) => {
            let mut bias = uniform(&mut rng, bb * hb * c.lq * c.lk);
            for (at, x) in bias.iter_mut().enumerate() {
                let (i, j) = ((at / c.lk) % c.lq, at % c.lk);
                if (c.causal && j > i + (c.lk - c.lq.min(c.lk))) || (c.mask_row0 && i == 0) {
                    *x = MASKED;
                }
            }
            bias
        }
        None => Vec::new(),
    };
    let d_out = uniform(&mut rng, c.b * c.h * c.lq * c.dv);
    [q, k, v, bias, d_out]
}

fn float<B: Backend, const D: usize>(
    v: &[f32],
    shape: [usize; D],
    device: &B::Device,
    dtype: DType,
) -> Tensor<B, D> {
    let data = TensorData::new(v.to_vec(), shape).convert_dtype(dtype);
    Tensor::from_data(data, (device, dtype))
}

fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// The op's input on backend `B` (q, k, v tensors returned too, for the reference's gradients).
fn input<B: Backend>(
    c: &Case,
    d: &[Vec<f32>; 5],
    device: &B::Device,
    dtype: DType,
    track: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> (FusedAttentionInput<B>, [Tensor<B, 4>; 3]) {
    let q = track(float(&d[0], [c.b, c.h, c.lq, c.dk], device, dtype));
    let k = track(float(&d[1], [c.b, c.h, c.lk, c.dk], device, dtype));
    let v = track(float(&d[2], [c.b, c.h, c.lk, c.dv], device, dtype));
    let bias = c
        .bias
        .map(|[bb, hb]| float::<B, 4>(&d[3], [bb, hb, c.lq, c.lk], device, dtype));
    let rope = c.rope.then(|| {
        let table = |offset, len| {
            let (cos, sin) = rope_tables(offset, len, c.dk, 10_000.0);
            (
                float::<B, 2>(&cos, [len, c.dk], device, dtype)
                    .into_primitive()
                    .tensor(),
                float::<B, 2>(&sin, [len, c.dk], device, dtype)
                    .into_primitive()
                    .tensor(),
            )
        };
        let ((cos_q, sin_q), (cos_k, sin_k)) = (table(c.lk - c.lq, c.lq), table(0, c.lk));
        RopeTables {
            cos_q,
            sin_q,
            cos_k,
            sin_k,
        }
    });
    let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
    let input = FusedAttentionInput {
        q: prim(&q),
        k: prim(&k),
        v: prim(&v),
        bias: bias.map(|t| t.into_primitive().tensor()),
        rope,
        scale: 1.0 / (c.dk as f32).sqrt(),
    };
    (input, [q, k, v])
}

fn check(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    assert!(scale > 1e-9, "{what}: the reference is zero");
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max error {err:.3e} > {tol:.0e} · {scale:.3e}"
    );
}

#[test]
fn the_cubecl_attention_matches_f64_tensor_ops_in_value_and_gradient() {
    let cases = [
        // Cross-attention sizes, no bias, dv ≠ dk.
        Case {
            b: 2,
            h: 2,
            lq: 5,
            lk: 9,
            dk: 8,
            dv: 6,
            bias: None,
            causal: false,
            rope: false,
            mask_row0: false,
        },
        // Causal self-attention with a mask broadcast over batch and heads, RoPE.
        Case {
            b: 2,
            h: 2,
            lq: 7,
            lk: 7,
            dk: 8,
            dv: 8,
            bias: Some([1, 1]),
            causal: true,
            rope: true,
            mask_row0: false,
        },
        // Per-head bias (ALiBi-like) broadcast over batch, causal, queries at the end of the keys.
        Case {
            b: 2,
            h: 3,
            lq: 4,
            lk: 9,
            dk: 4,
            dv: 4,
            bias: Some([1, 3]),
            causal: true,
            rope: true,
            mask_row0: false,
        },
        // Per-batch bias, no mask.
        Case {
            b: 2,
            h: 1,
            lq: 6,
            lk: 6,
            dk: 8,
            dv: 5,
            bias: Some([2, 1]),
            causal: false,
            rope: false,
            mask_row0: false,
        },
    ];
    for (n, c) in cases.iter().enumerate() {
        let d = data(c, 40 + n as u64);
        // Reference: Burn's autodiff of the tensor-op attention in f64 (loss Σ dO ⊙ O).
        let cpu = Default::default();
        let (inp, [q, k, v]) = input::<Ref>(c, &d, &cpu, DType::F64, |t| t.require_grad());
        let (out, _) = fused_attention_forward(inp, false);
        let out = Tensor::<Ref, 4>::from_primitive(TensorPrimitive::Float(out));
        let w = float::<Ref, 4>(&d[4], [c.b, c.h, c.lq, c.dv], &cpu, DType::F64);
        let grads = (out.clone() * w).sum().backward();
        let want = [
            flat(out),
            flat(q.grad(&grads).unwrap()),
            flat(k.grad(&grads).unwrap()),
            flat(v.grad(&grads).unwrap()),
        ];
        // The CubeCL kernels on the plain wgpu backend: forward, then backward (recomputing).
        let (inp, _) = input::<Wgpu>(c, &d, &gpu(), DType::F32, |t| t);
        let (out, weights) = fused_attention_forward(inp.clone(), true);
        assert!(
            weights.is_none(),
            "the kernels keep no [B, H, Lq, Lk] weights"
        );
        let d_out = float::<Wgpu, 4>(&d[4], [c.b, c.h, c.lq, c.dv], &gpu(), DType::F32);
        let g = fused_attention_backward(inp, None, d_out.into_primitive().tensor());
        let wrap = |p| flat(Tensor::<Wgpu, 4>::from_primitive(TensorPrimitive::Float(p)));
        let got = [wrap(out), wrap(g.q), wrap(g.k), wrap(g.v)];
        for (i, what) in ["O", "dQ", "dK", "dV"].iter().enumerate() {
            let tol = if i == 0 { VALUE_TOL } else { GRAD_TOL };
            check(&format!("case {n} {what}"), &got[i], &want[i], tol);
        }
    }
}

/// A query row that sees no key (every bias entry masked) gets uniform weights, as the tensor
/// ops and the CPU kernel give, and no gradient to its query: the kernels take a masked score
/// as the constant mask.
#[test]
fn a_fully_masked_row_is_uniform_with_no_query_gradient() {
    let c = Case {
        b: 1,
        h: 1,
        lq: 3,
        lk: 4,
        dk: 4,
        dv: 3,
        bias: Some([1, 1]),
        causal: false,
        rope: false,
        mask_row0: true,
    };
    let d = data(&c, 7);
    let (inp, _) = input::<Wgpu>(&c, &d, &gpu(), DType::F32, |t| t);
    let (out, _) = fused_attention_forward(inp.clone(), false);
    let out = flat(Tensor::<Wgpu, 4>::from_primitive(TensorPrimitive::Float(
        out,
    )));
    for f in 0..c.dv {
        let mean = (0..c.lk).map(|j| d[2][j * c.dv + f] as f64).sum::<f64>() / c.lk as f64;
        assert!(
            (out[f] - mean).abs() < 1e-6,
            "row 0, feature {f}: {} vs the mean {mean}",
            out[f]
        );
    }
    let d_out = float::<Wgpu, 4>(&d[4], [c.b, c.h, c.lq, c.dv], &gpu(), DType::F32);
    let g = fused_attention_backward(inp, None, d_out.into_primitive().tensor());
    let dq = flat(Tensor::<Wgpu, 4>::from_primitive(TensorPrimitive::Float(
        g.q,
    )));
    assert!(
        dq[..c.dk].iter().all(|&x| x == 0.0),
        "row 0's dQ: {:?}",
        &dq[..c.dk]
    );
    assert!(
        dq[c.dk..].iter().any(|&x| x != 0.0),
        "the other rows have a gradient"
    );
}
