//! The CubeCL selective scan on wgpu against Burn's autodiff of the sequential scan in f64.
//!
//! # Tolerances
//! Norm-wise, `max |gpu − f64| ≤ tol · max |f64|`. The f32 kernel accumulates each state over
//! at most `L` steps of `N` terms and each gradient over at most `B·L·N` terms (`∂A`), with
//! `|Ā| ≤ 1`, O(1) inputs and f32 unit roundoff `u ≈ 6e-8`; recursive summation bounds the
//! error by about `n·u` relative to the sum of magnitudes. The largest sum here has
//! `B·L·N = 3·37·5 ≈ 560` terms, `560·u ≈ 3.3e-5`; with a factor 3 for the chain of operations
//! per term (`Ā`, `F`, the product) and cancellation, values are held to `1e-4` and gradients to
//! `3e-4`. A missing term or a wrong derivative of `Ā` gives errors of 1e-2 and above.

use burn::backend::Autodiff;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_ndarray::NdArray;
use seqlayers::backend::{Wgpu, WgpuAutodiff};
use seqlayers::internals::{
    FusedScanInput, cubecl_scan_launches, fused_scan_backward, fused_scan_forward,
};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};

use crate::gpu;
use crate::scan_util::{Dims, RawCase, tensor, tracked, uniform};

type F64 = NdArray<f64>;

const DISCS: [Discretization; 4] = [
    Discretization::ZeroOrderHold,
    Discretization::Simplified,
    Discretization::Generalized { alpha: 0.5 },
    Discretization::Generalized { alpha: 0.0 },
];

const VALUE_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 3e-4;

/// `y`, `h_L`, then the gradients of x, Δ, A, B, C, D, h0 (empty when absent).
type Outcome = (Vec<f64>, Vec<f64>, [Vec<f64>; 7]);

fn flat<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// The loss weights `ℓ = Σ w_y ⊙ y + Σ w_h ⊙ h_L`.
fn loss_weights(dims: Dims, seed: u64) -> (Vec<f32>, Vec<f32>) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let Dims { b, l, e, n } = dims;
    (
        uniform(&mut rng, b * l * e, -1.0, 1.0),
        uniform(&mut rng, b * e * n, -1.0, 1.0),
    )
}

/// The case's input on `F64` with f64 storage.
fn input_f64(case: &RawCase, with_opt: bool) -> SelectiveScanInput<Autodiff<F64>> {
    let device = Default::default();
    let Dims { b, l, e, n } = case.dims;
    // A flat f64 tensor, reshaped by the caller.
    let t = |v: &Vec<f32>, _shape: Vec<usize>| {
        let data = TensorData::new(v.iter().map(|&x| x as f64).collect::<Vec<_>>(), [v.len()]);
        Tensor::<Autodiff<F64>, 1>::from_data(data, (&device, DType::F64))
    };
    SelectiveScanInput {
        x: t(&case.x, vec![b, l, e]).reshape([b, l, e]),
        delta: t(&case.delta, vec![b, l, e]).reshape([b, l, e]),
        a: t(&case.a, vec![e, n]).reshape([e, n]),
        b: t(&case.b, vec![b, l, n]).reshape([b, l, n]),
        c: t(&case.c, vec![b, l, n]).reshape([b, l, n]),
        d: with_opt.then(|| t(&case.d, vec![e]).reshape([e])),
        h0: with_opt.then(|| t(&case.h0, vec![b, e, n]).reshape([b, e, n])),
    }
}

/// Runs `kind` on an autodiff backend and returns values and gradients.
fn run<B: burn::tensor::backend::AutodiffBackend>(
    kind: ScanKind,
    disc: Discretization,
    case: &RawCase,
    inp: SelectiveScanInput<B>,
    seed: u64,
) -> Outcome {
    let device = inp.x.device();
    let inp = tracked(inp);
    let keep = inp.clone();
    let (y, h) = selective_scan(kind, disc, inp).unwrap();
    let Dims { b, l, e, n } = case.dims;
    let (wy, wh) = loss_weights(case.dims, seed);
    let wy = tensor::<B, 1>(wy, [b * l * e], &device).reshape([b, l, e]);
    let wh = tensor::<B, 1>(wh, [b * e * n], &device).reshape([b, e, n]);
    let loss = (y.clone() * wy.cast(y.dtype())).sum() + (h.clone() * wh.cast(h.dtype())).sum();
    let g = loss.backward();
    let grad3 = |t: &Tensor<B, 3>| flat(t.grad(&g).expect("a gradient"));
    let grads = [
        grad3(&keep.x),
        grad3(&keep.delta),
        flat(keep.a.grad(&g).expect("grad A")),
        grad3(&keep.b),
        grad3(&keep.c),
        keep.d
            .as_ref()
            .map(|d| flat(d.grad(&g).expect("grad D")))
            .unwrap_or_default(),
        keep.h0.as_ref().map(grad3).unwrap_or_default(),
    ];
    (flat(y), flat(h), grads)
}

/// `max |got − want| / max |want|`, asserting it is at most `tol`.
fn check(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if want.is_empty() {
        return;
    }
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    // An exactly zero gradient (∂A at one step from h0 = 0 under the simplified rule, where
    // ∂F/∂A = 0) must come out as zero.
    if scale == 0.0 {
        assert!(
            err <= 1e-6,
            "{what}: the reference is zero, the kernel gave {err:.3e}"
        );
        return;
    }
    assert!(
        err <= tol * scale,
        "{what}: max error {err:.3e} > {tol:.0e} · {scale:.3e}"
    );
}

const NAMES: [&str; 7] = ["x", "delta", "A", "B", "C", "D", "h0"];

fn compare(tag: &str, got: &Outcome, want: &Outcome) {
    check(&format!("{tag} y"), &got.0, &want.0, VALUE_TOL);
    check(&format!("{tag} h_L"), &got.1, &want.1, VALUE_TOL);
    for (i, name) in NAMES.iter().enumerate() {
        check(&format!("{tag} ∂{name}"), &got.2[i], &want.2[i], GRAD_TOL);
    }
}

/// Sizes that cover a partial channel tile (E = 40 > 32), a partial checkpoint interval
/// (L = 37, K = N = 5), one step, and N = 16.
const CASES: [Dims; 3] = [
    Dims {
        b: 3,
        l: 37,
        e: 40,
        n: 5,
    },
    Dims {
        b: 1,
        l: 1,
        e: 3,
        n: 4,
    },
    Dims {
        b: 2,
        l: 16,
        e: 8,
        n: 16,
    },
];

#[test]
fn the_cubecl_scan_matches_the_f64_sequential_scan_in_value_and_gradient() {
    let before = cubecl_scan_launches();
    let mut seed = 0;
    for dims in CASES {
        for disc in DISCS {
            for with_opt in [true, false] {
                seed += 1;
                let case = RawCase::new(dims, seed);
                let tag = format!("{dims:?} {disc:?} D/h0={with_opt}");
                let want = run(
                    ScanKind::Sequential,
                    disc,
                    &case,
                    input_f64(&case, with_opt),
                    seed,
                );
                let on_gpu = case.input::<WgpuAutodiff>(&gpu(), with_opt, with_opt);
                let got = run(ScanKind::Fused, disc, &case, on_gpu, seed);
                compare(&tag, &got, &want);
            }
        }
    }
    let after = cubecl_scan_launches();
    let runs = 3 * 4 * 2;
    assert!(
        after[0] - before[0] >= runs && after[1] - before[1] >= runs,
        "the CubeCL forward and backward ran once per case: {before:?} → {after:?}"
    );
}

/// The kernels called directly on the plain backend: the forward without checkpoints and the
/// backward that recomputes them (the path of a backward called without a saved forward).
#[test]
fn the_plain_backend_kernels_match_without_saved_checkpoints() {
    let dims = CASES[0];
    for (i, disc) in DISCS.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let case = RawCase::new(dims, seed);
        let want = run(
            ScanKind::Sequential,
            disc,
            &case,
            input_f64(&case, true),
            seed,
        );
        let inp = case.input::<Wgpu>(&gpu(), true, true);
        let prim = |t: Tensor<Wgpu, 3>| t.into_primitive().tensor();
        let raw = || FusedScanInput::<Wgpu> {
            x: prim(inp.x.clone()),
            delta: prim(inp.delta.clone()),
            a: inp.a.clone().into_primitive().tensor(),
            b: prim(inp.b.clone()),
            c: prim(inp.c.clone()),
            d: inp.d.clone().map(|d| d.into_primitive().tensor()),
            h0: inp.h0.clone().map(prim),
        };
        let out = fused_scan_forward(disc, raw(), false);
        assert!(out.checkpoints.is_none(), "no checkpoints when not asked");
        let wrap = |p| Tensor::<Wgpu, 3>::from_primitive(TensorPrimitive::Float(p));
        let Dims { b, l, e, n } = dims;
        let (wy, wh) = loss_weights(dims, seed);
        let dy = tensor::<Wgpu, 1>(wy, [b * l * e], &gpu()).reshape([b, l, e]);
        let dh = tensor::<Wgpu, 1>(wh, [b * e * n], &gpu()).reshape([b, e, n]);
        let g = fused_scan_backward(disc, raw(), None, prim(dy), prim(dh));
        let w1 = |p| flat(Tensor::<Wgpu, 1>::from_primitive(TensorPrimitive::Float(p)));
        let w2 = |p| flat(Tensor::<Wgpu, 2>::from_primitive(TensorPrimitive::Float(p)));
        let got = (
            flat(wrap(out.y)),
            flat(wrap(out.h_last)),
            [
                flat(wrap(g.x)),
                flat(wrap(g.delta)),
                w2(g.a),
                flat(wrap(g.b)),
                flat(wrap(g.c)),
                w1(g.d.expect("∂D")),
                flat(wrap(g.h0.expect("∂h0"))),
            ],
        );
        compare(&format!("plain {disc:?}"), &got, &want);
    }
}

/// A gradient that is wrong in one place must fail the comparison: the check is not vacuous.
#[test]
fn the_comparison_catches_a_perturbed_gradient() {
    let want = vec![1.0, -2.0, 0.5];
    let mut got = want.clone();
    got[1] += 2e-3 * 2.0;
    let caught = std::panic::catch_unwind(|| check("perturbed", &got, &want, GRAD_TOL));
    assert!(caught.is_err(), "a 2e-3 relative error passed");
}

/// A state above the kernel backward's limit (`N = 80 > 64`, the tensor-op adjoint on the plain
/// backend) still matches.
#[test]
fn a_state_above_the_kernel_limit_still_matches() {
    let dims = Dims {
        b: 1,
        l: 5,
        e: 3,
        n: 80,
    };
    let disc = Discretization::ZeroOrderHold;
    let case = RawCase::new(dims, 77);
    let want = run(
        ScanKind::Sequential,
        disc,
        &case,
        input_f64(&case, true),
        77,
    );
    let on_gpu = case.input::<WgpuAutodiff>(&gpu(), true, true);
    let got = run(ScanKind::Fused, disc, &case, on_gpu, 77);
    compare("N = 80", &got, &want);
}
