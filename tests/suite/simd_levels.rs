//! The fused scan kernel on every SIMD path this CPU can run (scalar, AVX2, AVX-512), each
//! against an independent f64 implementation, with the bounds stated in `docs/results/scan.md`:
//! - forward `y`, `h_L`: `|got − f64| ≤ 2e-6 · max(1, |f64|)`;
//! - gradients of every input: `≤ 2e-5 · max(1, |f64|)` against f64 central differences.
//!
//! The paths are selected with [`seqlayers::simd::with_max_level`], so an AVX-512 machine also
//! tests the AVX2 and scalar code (CI runs all the levels of its machine).

use burn::tensor::Tensor;
use seqlayers::backend::{CpuAutodiff, CpuDevice};
use seqlayers::simd::{SimdLevel, with_max_level};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};

use crate::scan_util::{Dims, RawCase, scan_f64, tensor, tracked, uniform, values};

const DISCS: [Discretization; 3] = [
    Discretization::ZeroOrderHold,
    Discretization::Simplified,
    Discretization::Generalized { alpha: 0.5 },
];

/// Largest `|got − want| / max(1, |want|)`.
fn max_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Fused forward `(y, h_L)` and the gradients of `Σ w_y y + Σ w_h h_L` for every input.
fn fused(case: &RawCase, disc: Discretization, wy: &[f32], wh: &[f32]) -> [Vec<f32>; 9] {
    let device = CpuDevice::default();
    let Dims { b, l, e, n } = case.dims;
    let inp: SelectiveScanInput<CpuAutodiff> = case.input(&device, true, true);
    let inp = tracked(inp);
    let keep = inp.clone();
    let (y, h) = selective_scan(ScanKind::Fused, disc, inp).unwrap();
    let loss = (y.clone() * tensor::<CpuAutodiff, 3>(wy.to_vec(), [b, l, e], &device)).sum()
        + (h.clone() * tensor::<CpuAutodiff, 3>(wh.to_vec(), [b, e, n], &device)).sum();
    let g = loss.backward();
    let grad3 = |t: &Tensor<CpuAutodiff, 3>| values(t.grad(&g).expect("tracked"));
    [
        values(y.inner()),
        values(h.inner()),
        grad3(&keep.x),
        grad3(&keep.delta),
        values(keep.a.grad(&g).expect("tracked")),
        grad3(&keep.b),
        grad3(&keep.c),
        values(keep.d.as_ref().unwrap().grad(&g).expect("tracked")),
        grad3(keep.h0.as_ref().unwrap()),
    ]
}

#[test]
fn every_simd_level_matches_the_f64_reference() {
    // 70 steps: one full checkpoint chunk (64) and a partial one; N = 19 exercises full vectors
    // and a remainder at every width.
    let dims = Dims {
        b: 2,
        l: 70,
        e: 3,
        n: 19,
    };
    let case = RawCase::new(dims, 2024);
    let mut rng = rand::SeedableRng::seed_from_u64(5);
    let wy = uniform(&mut rng, dims.b * dims.l * dims.e, -1.0, 1.0);
    let wh = uniform(&mut rng, dims.b * dims.e * dims.n, -1.0, 1.0);
    let base = case.f64_params();
    let levels = SimdLevel::available();
    assert_eq!(levels[0], SimdLevel::Scalar);
    for disc in DISCS {
        let (y_ref, h_ref) = scan_f64(disc, dims, &base);
        let loss = |p: &[Vec<f64>; 7]| {
            let (y, h) = scan_f64(disc, dims, p);
            let dot =
                |a: &[f64], w: &[f32]| a.iter().zip(w).map(|(a, &w)| a * w as f64).sum::<f64>();
            dot(&y, &wy) + dot(&h, &wh)
        };
        // f64 central differences at up to 16 entries of each input.
        let mut probes: Vec<(usize, usize, f64)> = Vec::new();
        for (i, v) in base.iter().enumerate() {
            for j in (0..v.len()).step_by((v.len() / 16).max(1)) {
                let h = 1e-5 * v[j].abs().max(1e-2);
                let (mut plus, mut minus) = (base.clone(), base.clone());
                plus[i][j] += h;
                minus[i][j] -= h;
                probes.push((i, j, (loss(&plus) - loss(&minus)) / (2.0 * h)));
            }
        }
        for &level in &levels {
            let got = with_max_level(level, || fused(&case, disc, &wy, &wh));
            let (ey, eh) = (max_err(&got[0], &y_ref), max_err(&got[1], &h_ref));
            assert!(
                ey <= 2e-6 && eh <= 2e-6,
                "{level} {disc:?}: forward error y {ey:e}, h_L {eh:e} > 2e-6"
            );
            for &(i, j, fd) in &probes {
                let g = got[2 + i][j] as f64;
                let err = (g - fd).abs() / fd.abs().max(1.0);
                assert!(
                    err <= 2e-5,
                    "{level} {disc:?}: gradient of input {i} at {j}: {g} vs f64 {fd} ({err:e})"
                );
            }
        }
    }
}

#[test]
fn simd_levels_agree_with_each_other_closely() {
    // The paths differ only in rounding (FMA, lane order of the sums over N).
    let dims = Dims {
        b: 3,
        l: 200,
        e: 8,
        n: 16,
    };
    let case = RawCase::new(dims, 7);
    let mut rng = rand::SeedableRng::seed_from_u64(8);
    let wy = uniform(&mut rng, dims.b * dims.l * dims.e, -1.0, 1.0);
    let wh = uniform(&mut rng, dims.b * dims.e * dims.n, -1.0, 1.0);
    let disc = Discretization::ZeroOrderHold;
    let scalar = with_max_level(SimdLevel::Scalar, || fused(&case, disc, &wy, &wh));
    for level in SimdLevel::available().into_iter().skip(1) {
        let got = with_max_level(level, || fused(&case, disc, &wy, &wh));
        for (k, (a, b)) in got.iter().zip(&scalar).enumerate() {
            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let err = max_err(a, &b64);
            assert!(err <= 2e-5, "{level} vs scalar, output {k}: {err:e}");
        }
    }
}

#[test]
fn cpu_backend_reciprocal_and_its_gradients_are_exact() {
    // Burn's autodiff differentiates `a / b`, `ln` and `ln_1p` through `recip`. With
    // burn-ndarray's `simd` feature that is an approximate instruction (rel. error 2^-14 on
    // AVX-512, 1.5·2^-12 on AVX2), which made the tests fail on AVX2 machines; the crate builds
    // burn-ndarray without it, so `recip` is a correctly rounded division (≤ 1 ulp here).
    use burn::tensor::TensorData;
    use seqlayers::backend::Cpu;
    let device = CpuDevice::default();
    let xs: Vec<f32> = (0..4096).map(|i| 0.37 + i as f32 * 0.731).collect();
    let x = Tensor::<Cpu, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device);
    let r = values(x.recip());
    let x_ad =
        Tensor::<CpuAutodiff, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device)
            .require_grad();
    let g = x_ad.clone().log1p().sum().backward();
    let dlog1p = values(x_ad.grad(&g).unwrap());
    for (i, &v) in xs.iter().enumerate() {
        let want = 1.0 / v as f64;
        assert!(
            ((r[i] as f64 - want) / want).abs() <= 1.2e-7,
            "1/{v}: {}",
            r[i]
        );
        let want = 1.0 / (1.0 + v as f64);
        assert!(
            ((dlog1p[i] as f64 - want) / want).abs() <= 2.5e-7,
            "ln_1p'({v}): {}",
            dlog1p[i]
        );
    }
}
