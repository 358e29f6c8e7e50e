//! Gradients of the fused scan: against Burn's autodiff of the sequential scan, against central
//! finite differences of an independent f64 implementation, and the tensor-op fallback backward
//! against the CPU kernel.

use crate::scan_util::{Dims, RawCase, max_rel_err, scan_f64, tensor, tracked, uniform, values};
use burn::tensor::{Tensor, TensorPrimitive};
use rand::{SeedableRng, rngs::StdRng};
use seqlayers::backend::{Cpu, CpuAutodiff, CpuDevice};
use seqlayers::internals::{FusedScanInput, fused_scan_backward, reference_backward};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};

const DISCS: [Discretization; 4] = [
    Discretization::ZeroOrderHold,
    Discretization::Simplified,
    Discretization::Generalized { alpha: 0.5 },
    Discretization::Generalized { alpha: 0.0 },
];

/// Gradients of the seven inputs, flattened (d / h0 empty when absent).
#[derive(Debug)]
struct Grads([Vec<f32>; 7]);

const NAMES: [&str; 7] = ["x", "delta", "A", "B", "C", "D", "h0"];

/// Loss weights: ℓ = Σ w_y ⊙ y + Σ w_h ⊙ h_L.
fn weights(dims: Dims, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Dims { b, l, e, n } = dims;
    (
        uniform(&mut rng, b * l * e, -1.0, 1.0),
        uniform(&mut rng, b * e * n, -1.0, 1.0),
    )
}

/// Gradients through `selective_scan` on the autodiff backend.
fn autodiff_grads(
    kind: ScanKind,
    disc: Discretization,
    case: &RawCase,
    with_opt: bool,
    seed: u64,
) -> Grads {
    let device = CpuDevice::default();
    let inp: SelectiveScanInput<CpuAutodiff> = case.input(&device, with_opt, with_opt);
    let inp = tracked(inp);
    let keep = inp.clone();
    let (y, h) = selective_scan(kind, disc, inp).unwrap();
    let Dims { b, l, e, n } = case.dims;
    let (wy, wh) = weights(case.dims, seed);
    let loss = (y * tensor::<CpuAutodiff, 3>(wy, [b, l, e], &device)).sum()
        + (h * tensor::<CpuAutodiff, 3>(wh, [b, e, n], &device)).sum();
    let g = loss.backward();
    let get3 = |t: &Tensor<CpuAutodiff, 3>| values(t.grad(&g).expect("grad"));
    Grads([
        get3(&keep.x),
        get3(&keep.delta),
        values(keep.a.grad(&g).expect("grad A")),
        get3(&keep.b),
        get3(&keep.c),
        keep.d
            .as_ref()
            .map(|d| values(d.grad(&g).expect("grad D")))
            .unwrap_or_default(),
        keep.h0.as_ref().map(get3).unwrap_or_default(),
    ])
}

fn compare(label: &str, got: &Grads, want: &Grads, tol: f32) {
    for ((name, g), w) in NAMES.iter().zip(&got.0).zip(&want.0) {
        let err = max_rel_err(g, w);
        assert!(err <= tol, "{label}: d{name} differs by {err:e} > {tol:e}");
    }
}

#[test]
fn fused_gradients_match_sequential_autodiff() {
    // 130 = two full checkpoint chunks (64) plus a partial one.
    for (i, l) in [1usize, 3, 17, 64, 130].into_iter().enumerate() {
        let dims = Dims {
            b: 2,
            l,
            e: 3,
            n: 5,
        };
        let case = RawCase::new(dims, 100 + i as u64);
        for disc in DISCS {
            for with_opt in [true, false] {
                let want = autodiff_grads(ScanKind::Sequential, disc, &case, with_opt, 7);
                let got = autodiff_grads(ScanKind::Fused, disc, &case, with_opt, 7);
                compare(
                    &format!("fused vs sequential, {disc:?}, L={l}, opt={with_opt}"),
                    &got,
                    &want,
                    2e-5,
                );
            }
        }
    }
}

#[test]
fn parallel_autodiff_gradients_match_sequential() {
    let dims = Dims {
        b: 2,
        l: 37,
        e: 3,
        n: 4,
    };
    let case = RawCase::new(dims, 5);
    for disc in DISCS {
        let want = autodiff_grads(ScanKind::Sequential, disc, &case, true, 3);
        let got = autodiff_grads(ScanKind::Parallel, disc, &case, true, 3);
        // Burn's autodiff differentiates `a / b` with `recip`, exact since the crate turned off
        // burn-ndarray's SIMD `recip` (an approximate instruction; issue 13).
        compare(
            &format!("parallel vs sequential, {disc:?}"),
            &got,
            &want,
            2e-5,
        );
    }
}

/// ℓ(inputs) = Σ w_y ⊙ y + Σ w_h ⊙ h_L in f64, from the independent loop implementation.
fn loss_f64(disc: Discretization, dims: Dims, p: &[Vec<f64>; 7], wy: &[f32], wh: &[f32]) -> f64 {
    let (y, h) = scan_f64(disc, dims, p);
    let dot = |a: &[f64], w: &[f32]| a.iter().zip(w).map(|(a, &w)| a * w as f64).sum::<f64>();
    dot(&y, wy) + dot(&h, wh)
}

#[test]
fn fused_gradients_match_finite_differences() {
    let dims = Dims {
        b: 2,
        l: 70,
        e: 2,
        n: 3,
    };
    let case = RawCase::new(dims, 42);
    let (wy, wh) = weights(dims, 9);
    for disc in DISCS {
        let got = autodiff_grads(ScanKind::Fused, disc, &case, true, 9);
        let base = case.f64_params();
        for (i, name) in NAMES.iter().enumerate() {
            // Probe up to 12 entries spread over the tensor (all of them for small ones).
            let len = base[i].len();
            let step = (len / 12).max(1);
            for j in (0..len).step_by(step) {
                let h = 1e-6 * base[i][j].abs().max(1e-2);
                let mut plus = base.clone();
                plus[i][j] += h;
                let mut minus = base.clone();
                minus[i][j] -= h;
                let fd = (loss_f64(disc, dims, &plus, &wy, &wh)
                    - loss_f64(disc, dims, &minus, &wy, &wh))
                    / (2.0 * h);
                let g = got.0[i][j] as f64;
                let err = (g - fd).abs() / fd.abs().max(1.0);
                assert!(
                    err < 1e-4,
                    "{disc:?} d{name}[{j}]: fused {g}, finite difference {fd} (err {err:e})"
                );
            }
        }
    }
}

fn prim<const D: usize>(
    t: Tensor<Cpu, D>,
) -> <Cpu as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn wrap<const D: usize>(
    p: <Cpu as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive,
) -> Tensor<Cpu, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

#[test]
fn reference_backward_matches_cpu_kernel() {
    let device = CpuDevice::default();
    for (l, with_opt) in [(1usize, true), (5, false), (129, true)] {
        let dims = Dims {
            b: 2,
            l,
            e: 3,
            n: 4,
        };
        let case = RawCase::new(dims, 77 + l as u64);
        let (wy, wh) = weights(dims, 1);
        for disc in DISCS {
            let mk = || {
                let i: SelectiveScanInput<Cpu> = case.input(&device, with_opt, with_opt);
                FusedScanInput::<Cpu> {
                    x: prim(i.x),
                    delta: prim(i.delta),
                    a: prim(i.a),
                    b: prim(i.b),
                    c: prim(i.c),
                    d: i.d.map(prim),
                    h0: i.h0.map(prim),
                }
            };
            let dy = || prim(tensor::<Cpu, 3>(wy.clone(), [2, l, 3], &device));
            let dh = || prim(tensor::<Cpu, 3>(wh.clone(), [2, 3, 4], &device));
            let kernel = fused_scan_backward::<Cpu>(disc, mk(), None, dy(), dh());
            let reference = reference_backward::<Cpu>(disc, mk(), dy(), dh());
            let flat = |g: seqlayers::internals::FusedScanGrads<Cpu>| {
                Grads([
                    values(wrap::<3>(g.x)),
                    values(wrap::<3>(g.delta)),
                    values(wrap::<2>(g.a)),
                    values(wrap::<3>(g.b)),
                    values(wrap::<3>(g.c)),
                    g.d.map(|d| values(wrap::<1>(d))).unwrap_or_default(),
                    g.h0.map(|h| values(wrap::<3>(h))).unwrap_or_default(),
                ])
            };
            compare(
                &format!("reference vs kernel, {disc:?}, L={l}"),
                &flat(reference),
                &flat(kernel),
                2e-5,
            );
        }
    }
}
