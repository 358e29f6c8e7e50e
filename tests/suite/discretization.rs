//! Discretization rules: closed forms on scalars, tensor form, small-Δ agreement, validation.

use burn::tensor::{Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::backend::{Cpu, CpuDevice};
use seqlayers::ssm::Discretization;

fn close(got: f32, want: f64, rel: f64) -> bool {
    ((got as f64) - want).abs() <= rel * want.abs().max(1e-30)
}

#[test]
fn zero_order_hold_matches_closed_form() {
    // Δ = 0.5, A = -2: Ā = e^{-1}, B̄/B = (e^{-1} - 1)/(-2) = (1 - e^{-1})/2.
    let (abar, f) = Discretization::ZeroOrderHold.scalar(0.5, -2.0);
    let e1 = (-1.0f64).exp();
    assert!(close(abar, e1, 1e-6), "{abar}");
    assert!(close(f, (1.0 - e1) / 2.0, 1e-6), "{f}");
    // A = 0: the limit B̄/B = Δ.
    let (abar, f) = Discretization::ZeroOrderHold.scalar(0.3, 0.0);
    assert_eq!((abar, f), (1.0, 0.3));
    // Tiny ΔA: no cancellation (exact value Δ·(1 + z/2 + …)).
    let (_, f) = Discretization::ZeroOrderHold.scalar(1e-3, -1e-3);
    assert!(close(f, 1e-3 * (1.0 - 5e-7), 1e-7), "{f}");
}

#[test]
fn simplified_matches_closed_form() {
    let (abar, f) = Discretization::Simplified.scalar(0.5, -2.0);
    assert!(close(abar, (-1.0f64).exp(), 1e-6));
    assert_eq!(f, 0.5);
}

#[test]
fn generalized_matches_closed_forms() {
    // Δ = 0.5, A = -2 → z = -1.
    // α = 1 (forward Euler): Ā = 1 + z = 0, B̄/B = Δ.
    assert_eq!(
        Discretization::Generalized { alpha: 1.0 }.scalar(0.5, -2.0),
        (0.0, 0.5)
    );
    // α = 0 (backward Euler): Ā = 1/(1 - z) = 1/2, B̄/B = Δ/(1 - z) = 1/4.
    assert_eq!(
        Discretization::Generalized { alpha: 0.0 }.scalar(0.5, -2.0),
        (0.5, 0.25)
    );
    // α = ½ (bilinear): Ā = (1 + z/2)/(1 - z/2) = 1/3, B̄/B = Δ/(1 - z/2) = 1/3.
    let (abar, f) = Discretization::bilinear().scalar(0.5, -2.0);
    assert!(
        close(abar, 1.0 / 3.0, 1e-6) && close(f, 1.0 / 3.0, 1e-6),
        "{abar} {f}"
    );
    assert_eq!(
        Discretization::bilinear(),
        Discretization::Generalized { alpha: 0.5 }
    );
}

#[test]
fn all_rules_agree_as_delta_goes_to_zero() {
    let rules = [
        Discretization::ZeroOrderHold,
        Discretization::Simplified,
        Discretization::Generalized { alpha: 0.0 },
        Discretization::bilinear(),
        Discretization::Generalized { alpha: 1.0 },
    ];
    for a in [-16.0f32, -1.0, -0.25] {
        let mut prev_spread = f64::INFINITY;
        for delta in [1e-1f32, 1e-2, 1e-3, 1e-4] {
            let vals: Vec<(f32, f32)> = rules.iter().map(|r| r.scalar(delta, a)).collect();
            // Ā → 1 + ΔA and B̄/B → Δ up to O(Δ²): the spread between rules shrinks like Δ².
            let spread_a = vals.iter().map(|v| v.0).fold(f32::MIN, f32::max)
                - vals.iter().map(|v| v.0).fold(f32::MAX, f32::min);
            let spread_f = vals.iter().map(|v| v.1 / delta).fold(f32::MIN, f32::max)
                - vals.iter().map(|v| v.1 / delta).fold(f32::MAX, f32::min);
            let z2 = (delta * a) as f64 * (delta * a) as f64;
            assert!(
                spread_a as f64 <= z2 + 1e-6,
                "Ā spread {spread_a} at Δ={delta}, A={a}"
            );
            assert!(
                spread_f as f64 <= (delta * a).abs() as f64 + 1e-6,
                "F spread {spread_f}"
            );
            assert!((spread_a as f64) < prev_spread || spread_a < 1e-6);
            prev_spread = spread_a as f64;
        }
    }
}

#[test]
fn alpha_outside_unit_interval_is_an_error() {
    for alpha in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let err = Discretization::Generalized { alpha }
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, SeqError::OutOfRange { name: "alpha", .. }),
            "{err}"
        );
    }
    for alpha in [0.0, 0.5, 1.0] {
        assert!(Discretization::Generalized { alpha }.validate().is_ok());
    }
    assert!(Discretization::ZeroOrderHold.validate().is_ok());
    assert!(Discretization::Simplified.validate().is_ok());
}

#[test]
fn tensor_form_matches_scalar_form() {
    let device = CpuDevice::default();
    let deltas = vec![1e-4f32, 0.01, 0.05, 0.1, 0.7, 2.0]; // [B=1, L=2, E=3]
    let a_vals = vec![-1.0f32, -4.0, -1e-3, -16.0, 0.0, -0.5]; // [E=3, N=2]
    let delta = Tensor::<Cpu, 3>::from_data(TensorData::new(deltas.clone(), [1, 2, 3]), &device);
    let a = Tensor::<Cpu, 2>::from_data(TensorData::new(a_vals.clone(), [3, 2]), &device);
    for rule in [
        Discretization::ZeroOrderHold,
        Discretization::Simplified,
        Discretization::bilinear(),
        Discretization::Generalized { alpha: 0.0 },
    ] {
        let (abar, f) = rule.tensors(delta.clone(), a.clone());
        let abar = abar.into_data().to_vec::<f32>().unwrap();
        let f = f.into_data().to_vec::<f32>().unwrap();
        for t in 0..2 {
            for e in 0..3 {
                for n in 0..2 {
                    let (sa, sf) = rule.scalar(deltas[t * 3 + e], a_vals[e * 2 + n]);
                    let i = (t * 3 + e) * 2 + n;
                    assert!(
                        close(abar[i], sa as f64, 1e-6),
                        "{rule:?} Ā[{i}] {} vs {sa}",
                        abar[i]
                    );
                    assert!(
                        close(f[i], sf as f64, 1e-6),
                        "{rule:?} F[{i}] {} vs {sf}",
                        f[i]
                    );
                }
            }
        }
    }
}

#[test]
fn scalar_partials_match_finite_differences() {
    let rules = [
        Discretization::ZeroOrderHold,
        Discretization::Simplified,
        Discretization::bilinear(),
        Discretization::Generalized { alpha: 0.2 },
    ];
    // f64 reference of (Ā, F) for the finite differences.
    let exact = |r: Discretization, d: f64, a: f64| -> (f64, f64) {
        let z = d * a;
        match r {
            Discretization::ZeroOrderHold => (z.exp(), if a == 0.0 { d } else { z.exp_m1() / a }),
            Discretization::Simplified => (z.exp(), d),
            Discretization::Generalized { alpha } => {
                let den = 1.0 - (1.0 - alpha) * z;
                ((1.0 + alpha * z) / den, d / den)
            }
        }
    };
    for r in rules {
        for (d, a) in [(0.05f32, -3.0f32), (0.3, -0.5), (0.01, -0.01), (1.0, -2.0)] {
            let (pad, paa, pfd, pfa) = r.scalar_grad(d, a);
            let h = 1e-6;
            let (dd, aa) = (d as f64, a as f64);
            let fd_d = |i: usize| {
                let p = exact(r, dd + h, aa);
                let m = exact(r, dd - h, aa);
                if i == 0 {
                    (p.0 - m.0) / (2.0 * h)
                } else {
                    (p.1 - m.1) / (2.0 * h)
                }
            };
            let fd_a = |i: usize| {
                let p = exact(r, dd, aa + h);
                let m = exact(r, dd, aa - h);
                if i == 0 {
                    (p.0 - m.0) / (2.0 * h)
                } else {
                    (p.1 - m.1) / (2.0 * h)
                }
            };
            for (got, want, what) in [
                (pad, fd_d(0), "dĀ/dΔ"),
                (paa, fd_a(0), "dĀ/dA"),
                (pfd, fd_d(1), "dF/dΔ"),
                (pfa, fd_a(1), "dF/dA"),
            ] {
                assert!(
                    ((got as f64) - want).abs() <= 1e-5 * want.abs().max(1e-3),
                    "{r:?} Δ={d} A={a}: {what} = {got}, finite difference {want}"
                );
            }
        }
    }
}
