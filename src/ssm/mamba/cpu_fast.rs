//! CPU fast path for the mixer's element-wise activations (`silu`, `softplus`).
//!
//! Burn composes `silu(x) = x · sigmoid(x)` and a stable softplus from 2 and 5 tensor ops, and
//! under autodiff each op allocates and sweeps the whole `[B, L, E]` tensor again in backward.
//! On the CPU backend (`burn-ndarray`, f32) these functions run one Rust loop forward and one
//! backward instead, through a custom autodiff node on `Autodiff<NdArray<f32>>`.
//!
//! Dispatch is by type at run time ([`std::any::Any`] downcast of the tensor): `Cpu` and
//! `CpuAutodiff` take the kernels, every other backend (CUDA, other checkpoint strategies) the
//! plain tensor-op formula. Both paths compute the same function; `tests/mamba.rs` checks values
//! and gradients of one against the other.
//!
//! # Glossary
//! - `x`, `v`: input; `g`: incoming gradient; `σ(x) = 1 / (1 + e^{−x})`.
//! - `silu(x) = x σ(x)`, `silu'(x) = σ(x) (1 + x (1 − σ(x)))`.
//! - `softplus(v) = ln(1 + eᵛ)` (= `v` for `v > 20`, like the reference), `softplus'(v) = σ(v)`.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_ndarray::NdArrayTensor;

use crate::backend::{Cpu, CpuAutodiff};
use crate::dispatch::{FusedOp, Routed, route, same};
pub(super) use crate::ndarray_io::values;

/// `silu(x) = x · σ(x)`, element-wise, with the CPU fast path.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(x, Activation::Silu)
}

/// `softplus(v) = ln(1 + eᵛ)` (`v` for `v > 20`), element-wise, with the CPU fast path.
pub fn softplus<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(v, Activation::Softplus)
}

/// The tensor-op `softplus` used on backends without the fast path (and as its test oracle).
pub fn softplus_tensor_ops<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    let big = v.clone().greater_elem(20.0);
    v.clone().clamp_max(20.0).exp().log1p().mask_where(big, v)
}

/// `silu'(x) = σ(x) (1 + x (1 − σ(x)))`.
pub(super) fn silu_derivative(x: f32) -> f32 {
    Activation::Silu.derivative(x)
}

/// Which element-wise function.
#[derive(Debug, Clone, Copy)]
enum Activation {
    Silu,
    Softplus,
}

impl Activation {
    fn tensor_ops<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Silu => activation::silu(x),
            Activation::Softplus => softplus_tensor_ops(x),
        }
    }

    fn value(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Softplus if x > 20.0 => x,
            Activation::Softplus if x < -3.0 => {
                // ln(1 + t) by its series for t = eˣ < 0.05 (next term t⁶/6 < 3e-9 · t).
                let t = x.exp();
                t * (1.0 - t * (0.5 - t * (1.0 / 3.0 - t * (0.25 - t * 0.2))))
            }
            Activation::Softplus => x.exp().ln_1p(),
        }
    }

    fn derivative(self, x: f32) -> f32 {
        let s = 1.0 / (1.0 + (-x).exp());
        match self {
            Activation::Silu => s * (1.0 + x * (1.0 - s)),
            Activation::Softplus if x > 20.0 => 1.0,
            Activation::Softplus => s,
        }
    }

    /// `f(x)` on an ndarray tensor.
    fn forward(self, x: &NdArrayTensor) -> NdArrayTensor {
        let shape = x.shape();
        let out: Vec<f32> = values(x).iter().map(|&v| self.value(v)).collect();
        NdArrayTensor::from_data(TensorData::new(out, shape))
    }

    /// `g · f'(x)` on ndarray tensors.
    fn backward(self, x: &NdArrayTensor, g: &NdArrayTensor) -> NdArrayTensor {
        let shape = x.shape();
        let (xs, gs) = (values(x), values(g));
        let out: Vec<f32> = xs
            .iter()
            .zip(gs.iter())
            .map(|(&v, &g)| g * self.derivative(v))
            .collect();
        NdArrayTensor::from_data(TensorData::new(out, shape))
    }
}

/// Routes `x` to the kernel for `Cpu` / `CpuAutodiff`, to tensor ops otherwise.
fn dispatch<B: Backend, const D: usize>(x: Tensor<B, D>, f: Activation) -> Tensor<B, D> {
    match route::<B, _, Tensor<Cpu, D>, Tensor<CpuAutodiff, D>>(FusedOp::Activation, x) {
        Routed::CpuAutodiff(t) => same(autodiff_forward(t, f)),
        Routed::Cpu(t) => {
            let prim = t.into_primitive().tensor();
            same(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(
                f.forward(&prim),
            )))
        }
        #[cfg(feature = "cuda")]
        Routed::CudaAutodiff(t) => f.tensor_ops(t),
        Routed::Other(t) => f.tensor_ops(t),
    }
}

/// The backward node: remembers the input `x`, returns `g · f'(x)`.
#[derive(Debug)]
struct ActivationBackward(Activation);

impl Backward<Cpu, 1> for ActivationBackward {
    type State = NdArrayTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Cpu>(node.id, self.0.backward(&ops.state, &g));
        }
    }
}

fn autodiff_forward<const D: usize>(
    x: Tensor<CpuAutodiff, D>,
    f: Activation,
) -> Tensor<CpuAutodiff, D> {
    let x = x.into_primitive().tensor();
    let out = f.forward(&x.primitive);
    let prep = ActivationBackward(f)
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish(x.primitive, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::{Cpu, CpuAutodiff};
    use crate::ssm::mamba::test_util::{max_abs_diff, vec_of};
    use burn::tensor::TensorData;

    /// The kernels against the tensor-op formulas in value and gradient. Each backward pass
    /// gets fresh leaves (two passes through one leaf can lose a gradient to another test's
    /// backward in Burn 0.21, tracel-ai/burn#5573), and the probe weights come from a local
    /// seeded generator, not the backend's global one.
    #[test]
    fn cpu_fast_activations_match_tensor_op_formulas() {
        use burn::tensor::activation;
        type AD = CpuAutodiff;
        let device = Default::default();
        let raw: Vec<f32> = (0..240).map(|i| (i as f32 - 120.0) * 0.25).collect(); // [-30, 29.75]
        let w = {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let w: Vec<f32> = (0..240)
                .map(|_| rng.random_range(-1.732f32..1.732))
                .collect();
            Tensor::<AD, 2>::from_data(TensorData::new(w, [12, 20]), &device)
        };
        type Pair = (
            fn(Tensor<AD, 2>) -> Tensor<AD, 2>,
            fn(Tensor<AD, 2>) -> Tensor<AD, 2>,
        );
        let pairs: [(&str, Pair); 2] = [
            ("silu", (silu, activation::silu)),
            ("softplus", (softplus, softplus_tensor_ops)),
        ];
        for (name, (fast, slow)) in pairs {
            let run = |f: fn(Tensor<AD, 2>) -> Tensor<AD, 2>| {
                let x = Tensor::<AD, 2>::from_data(TensorData::new(raw.clone(), [12, 20]), &device)
                    .require_grad();
                let y = f(x.clone());
                let g = (y.clone() * w.clone()).sum().backward();
                (vec_of(y), vec_of(x.grad(&g).unwrap()))
            };
            let ((yf, gf), (ys, gs)) = (run(fast), run(slow));
            for i in 0..raw.len() {
                let tol_y = 1e-6 * ys[i].abs().max(1.0);
                assert!(
                    (yf[i] - ys[i]).abs() <= tol_y,
                    "{name}({}) = {} vs {}",
                    raw[i],
                    yf[i],
                    ys[i]
                );
                assert!(
                    (gf[i] - gs[i]).abs() <= 2e-6 * gs[i].abs().max(1.0),
                    "{name}'({}) grad {} vs {}",
                    raw[i],
                    gf[i],
                    gs[i]
                );
            }
            // The non-autodiff CPU backend takes the kernel too.
            let plain =
                Tensor::<Cpu, 2>::from_data(TensorData::new(raw.clone(), [12, 20]), &device);
            let y_plain = vec_of(match name {
                "silu" => silu(plain),
                _ => softplus(plain),
            });
            assert!(max_abs_diff(&y_plain, &ys) < 1e-5);
        }
        // Closed-form spot values.
        let v = |t: Tensor<Cpu, 1>| vec_of(t);
        let p = Tensor::<Cpu, 1>::from_floats([0.0, 25.0, -25.0, 1.0], &device);
        let sp = v(softplus(p.clone()));
        assert!(
            (sp[0] - 2f64.ln()).abs() < 1e-6
                && sp[1] == 25.0
                && (sp[2] - (-25f64).exp()).abs() < 1e-15
        );
        let si = v(silu(p));
        assert!((si[3] - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-6 && si[0] == 0.0);
    }

    /// `f(x)`, `f'(x)` in f64.
    fn reference(f: Activation, x: f64) -> (f64, f64) {
        let s = 1.0 / (1.0 + (-x).exp());
        match f {
            Activation::Silu => (x * s, s * (1.0 + x * (1.0 - s))),
            Activation::Softplus if x > 20.0 => (x, 1.0),
            Activation::Softplus => (x.exp().ln_1p(), s),
        }
    }

    #[test]
    fn activations_match_f64_to_1e6_relative() {
        // Bound: |f − f64| ≤ 1e-6 |f64| for values and for softplus' = σ; silu' crosses zero at
        // x ≈ −1.28 (a difference of two O(1) terms), so its bound is 1e-6 · max(|f'|, 1).
        for f in [Activation::Silu, Activation::Softplus] {
            let mut worst = (0.0f64, 0.0f64);
            for i in 0..=12_000 {
                let x = -40.0 + i as f32 * (70.0 / 12_000.0);
                let (v, d) = reference(f, x as f64);
                let ev = (f.value(x) as f64 - v).abs() / v.abs().max(1e-300);
                let floor = if matches!(f, Activation::Silu) {
                    1.0
                } else {
                    1e-300
                };
                let ed = (f.derivative(x) as f64 - d).abs() / d.abs().max(floor);
                worst = (worst.0.max(ev), worst.1.max(ed));
                assert!(ev <= 1e-6, "{f:?}({x}) = {} vs {v} ({ev:e})", f.value(x));
                assert!(
                    ed <= 1e-6,
                    "{f:?}'({x}) = {} vs {d} ({ed:e})",
                    f.derivative(x)
                );
            }
            assert!(worst.0 > 0.0 || worst.1 > 0.0, "the comparison ran");
        }
    }
}
