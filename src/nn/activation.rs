//! Element-wise activations with a CPU fast path: `gelu` (the MLP's), `silu` and `softplus`
//! (the Mamba mixer's).
//!
//! Burn composes `silu(x) = x · sigmoid(x)` and a stable softplus from 2 and 5 tensor ops, and
//! under autodiff each op allocates and sweeps the whole tensor again in backward. On the CPU
//! backend (`burn-ndarray`, f32) these functions run one Rust loop forward and one backward
//! instead, through a custom autodiff node on `Autodiff<NdArray<f32>>`.
//!
//! **GELU's derivative.** Burn 0.21's `gelu` computes the exact (erf) GELU forward, but its
//! backward (`gelu_backward`, the default of every backend) is the derivative of the *tanh
//! approximation*: the gradient it returns is off by up to about 9e-4 (absolute, near
//! `x ≈ 2`) from the function it computed. [`gelu`] here differentiates the function it
//! computes on every backend: the CPU kernel's backward is `Φ(x) + x φ(x)`, and on the other
//! backends GELU is composed as `x · ½ (1 + erf(x/√2))`, whose tensor-op derivative (Burn's
//! `erf` backward is exact) is the exact one.
//!
//! Dispatch is by type at run time ([`crate::dispatch::route`]): `Cpu` and `CpuAutodiff` take
//! the kernels, every other backend the tensor-op formulas. Both paths compute the same
//! function; the tests below check each against f64 and against each other, in value and
//! gradient.
//!
//! # Glossary
//! - `x`, `v`: input; `g`: incoming gradient; `σ(x) = 1 / (1 + e^{−x})`.
//! - `silu(x) = x σ(x)`, `silu'(x) = σ(x) (1 + x (1 − σ(x)))`.
//! - `softplus(v) = ln(1 + eᵛ)` (= `v` for `v > 20`, like the reference), `softplus'(v) = σ(v)`.
//! - `Φ(x) = ½ (1 + erf(x/√2))`, the standard normal CDF; `φ(x) = e^{−x²/2} / √(2π)`, its
//!   density. `gelu(x) = x Φ(x)`, `gelu'(x) = Φ(x) + x φ(x)`.

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_ndarray::NdArrayTensor;
use rayon::prelude::*;

use crate::backend::{Cpu, CpuAutodiff};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::ndarray_io::{values, zeroed};
use crate::simd::{MulAdd, SimdLevel, fast_exp, simd_variants};

/// `gelu(x) = x Φ(x) = ½ x (1 + erf(x/√2))`, the exact (erf) GELU, element-wise, with its exact
/// derivative `Φ(x) + x φ(x)` on every backend (unlike Burn 0.21's `gelu`, whose backward is the
/// tanh approximation's derivative; see the module docs). The CPU backend runs one loop forward
/// and one backward; `Φ` there is Abramowitz–Stegun 7.1.26 (absolute error ≤ 1.5e-7 in `erf`),
/// so values and gradients agree with f64 to about 1e-6.
///
/// ```
/// use seqlayers::backend::CpuAutodiff;
/// use seqlayers::burn::tensor::Tensor;
/// use seqlayers::nn::gelu;
///
/// let device = Default::default();
/// let x = Tensor::<CpuAutodiff, 1>::from_floats([-1.0, 0.0, 2.0], &device).require_grad();
/// let y = gelu(x.clone());
/// let grad: Vec<f32> = x.grad(&y.clone().sum().backward()).unwrap().to_data().to_vec().unwrap();
/// let y: Vec<f32> = y.to_data().to_vec().unwrap();
/// // gelu(2) = 2 Φ(2) = 1.954500; gelu'(-1) = Φ(-1) − φ(-1) = -0.083315.
/// assert!((y[2] - 1.954_500).abs() < 1e-5 && y[1] == 0.0);
/// assert!((grad[0] + 0.083_315).abs() < 1e-5 && (grad[1] - 0.5).abs() < 1e-6);
/// ```
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(x, Activation::Gelu)
}

/// `silu(x) = x · σ(x)`, element-wise, with the CPU fast path.
pub(crate) fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(x, Activation::Silu)
}

/// `softplus(v) = ln(1 + eᵛ)` (`v` for `v > 20`), element-wise, with the CPU fast path.
pub(crate) fn softplus<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(v, Activation::Softplus)
}

/// The tensor-op `softplus` used on backends without the fast path (and as its test oracle).
fn softplus_tensor_ops<B: Backend, const D: usize>(v: Tensor<B, D>) -> Tensor<B, D> {
    let big = v.clone().greater_elem(20.0);
    v.clone().clamp_max(20.0).exp().log1p().mask_where(big, v)
}

/// The tensor-op GELU of the backends without the fast path: `x · ½ (1 + erf(x/√2))`, composed
/// so that autodiff differentiates the erf form exactly.
fn gelu_tensor_ops<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let phi = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        * 0.5; // Φ(x)
    x * phi
}

/// `silu'(x) = σ(x) (1 + x (1 − σ(x)))`.
pub(crate) fn silu_derivative(x: f32) -> f32 {
    Activation::Silu.derivative(x)
}

/// Which element-wise function.
#[derive(Debug, Clone, Copy)]
enum Activation {
    Gelu,
    Silu,
    Softplus,
}

impl Activation {
    fn tensor_ops<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Gelu => gelu_tensor_ops(x),
            Activation::Silu => activation::silu(x),
            Activation::Softplus => softplus_tensor_ops(x),
        }
    }

    fn value(self, x: f32) -> f32 {
        match self {
            Activation::Gelu => gelu_parts::<crate::simd::Plain>(x).0,
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
            Activation::Gelu => gelu_parts::<crate::simd::Plain>(x).1,
            Activation::Silu => s * (1.0 + x * (1.0 - s)),
            Activation::Softplus if x > 20.0 => 1.0,
            Activation::Softplus => s,
        }
    }

    /// `f(x)` on an ndarray tensor.
    fn forward(self, x: &NdArrayTensor) -> NdArrayTensor {
        let shape = x.shape();
        let xs = values(x);
        let out: Vec<f32> = match self {
            Activation::Gelu => {
                let mut out = zeroed(xs.len());
                gelu_slices(&xs, None, &mut out);
                out
            }
            _ => xs.iter().map(|&v| self.value(v)).collect(),
        };
        NdArrayTensor::from_data(TensorData::new(out, shape))
    }

    /// `g · f'(x)` on ndarray tensors.
    fn backward(self, x: &NdArrayTensor, g: &NdArrayTensor) -> NdArrayTensor {
        let shape = x.shape();
        let (xs, gs) = (values(x), values(g));
        let out: Vec<f32> = match self {
            Activation::Gelu => {
                let mut out = zeroed(xs.len());
                gelu_slices(&xs, Some(&gs), &mut out);
                out
            }
            _ => xs
                .iter()
                .zip(gs.iter())
                .map(|(&v, &g)| g * self.derivative(v))
                .collect(),
        };
        NdArrayTensor::from_data(TensorData::new(out, shape))
    }
}

/// `(gelu(x), gelu'(x))` in f32: `Φ` from erfc by Abramowitz–Stegun 7.1.26,
/// `erfc(z) ≈ t (a₁ + t (a₂ + t (a₃ + t (a₄ + t a₅)))) e^{−z²}` with `t = 1 / (1 + p z)`,
/// `z = |x|/√2` (absolute error ≤ 1.5e-7), sharing `e^{−x²/2}` with `φ`. Branch-free, so a loop
/// over it vectorizes.
#[inline(always)]
fn gelu_parts<M: MulAdd>(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    const INV_SQRT_2PI: f32 = 0.398_942_3; // 1/√(2π)
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / M::madd(P, z, 1.0);
    let mut poly = A[4];
    for &a in A[..4].iter().rev() {
        poly = M::madd(poly, t, a);
    }
    let e = fast_exp::<M>(-0.5 * x * x); // e^{−x²/2} = e^{−z²}
    let half_erfc = 0.5 * t * poly * e; // Φ(−|x|)
    let cdf = if x >= 0.0 { 1.0 - half_erfc } else { half_erfc }; // Φ(x)
    (x * cdf, M::madd(x * INV_SQRT_2PI, e, cdf))
}

/// `out = gelu(x)`, or `out = g · gelu'(x)` when `g` is given; in parallel chunks on large
/// tensors (element-wise, so the result does not depend on the chunking).
fn gelu_slices(x: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    let level = SimdLevel::active();
    let run = |i: usize, out: &mut [f32]| {
        let x = &x[i * CHUNK..i * CHUNK + out.len()];
        let g = g.map(|g| &g[i * CHUNK..i * CHUNK + out.len()]);
        gelu_chunk(level, x, g, out);
    };
    if x.len() > CHUNK && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| run(i, o));
    } else {
        out.chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| run(i, o));
    }
}

simd_variants!(gelu_chunk, gelu_chunk_generic, gelu_chunk_avx2, gelu_chunk_avx512, gelu_chunk_body,
    (x: &[f32], g: Option<&[f32]>, out: &mut [f32]) -> ());

#[inline(always)]
fn gelu_chunk_body<M: MulAdd>(x: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    match g {
        None => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = gelu_parts::<M>(v).0;
            }
        }
        Some(g) => {
            for ((o, &v), &g) in out.iter_mut().zip(x).zip(g) {
                *o = g * gelu_parts::<M>(v).1;
            }
        }
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
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(t) => f.tensor_ops(t),
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
    use burn::tensor::TensorData;

    /// The values of `t` as f64.
    fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().iter::<f64>().collect()
    }

    /// Largest element-wise `|a − b|`.
    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

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
        let pairs: [(&str, Pair); 3] = [
            ("gelu", (gelu, gelu_tensor_ops)),
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
                "gelu" => gelu(plain),
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
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (x * cdf, cdf + x * pdf)
            }
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

    /// GELU on the CPU kernel (every SIMD level this CPU has) against f64 `x Φ(x)` and
    /// `Φ(x) + x φ(x)` with libm's `erf`: absolute error ≤ 1e-6 · max(1, |x|) in value and
    /// ≤ 1e-6 in the derivative (A&S 7.1.26's erfc is accurate to 1.5e-7 absolute; f32
    /// rounding adds a few ulps).
    #[test]
    fn gelu_kernel_matches_f64_at_every_simd_level() {
        let xs: Vec<f32> = (0..=20_000).map(|i| -12.0 + i as f32 * 0.0012).collect();
        let ones = vec![1.0f32; xs.len()];
        for level in SimdLevel::available() {
            let (mut value, mut slope) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
            crate::simd::with_max_level(level, || {
                gelu_slices(&xs, None, &mut value);
                gelu_slices(&xs, Some(&ones), &mut slope);
            });
            let (mut worst_v, mut worst_d) = (0.0f64, 0.0f64);
            for (i, &x) in xs.iter().enumerate() {
                let (v, d) = reference(Activation::Gelu, x as f64);
                let ev = (value[i] as f64 - v).abs() / (x.abs() as f64).max(1.0);
                let ed = (slope[i] as f64 - d).abs();
                worst_v = worst_v.max(ev);
                worst_d = worst_d.max(ed);
                assert!(ev <= 1e-6, "{level:?} gelu({x}) = {} vs {v}", value[i]);
                assert!(ed <= 1e-6, "{level:?} gelu'({x}) = {} vs {d}", slope[i]);
            }
            assert!(worst_v > 0.0 && worst_d > 0.0, "the comparison ran");
        }
        // Exact points: gelu(0) = 0, gelu'(0) = ½; far out gelu is x or 0 (−30 Φ(−30) ≈ −1e-196,
        // below f32's range) and gelu' is 1 or 0.
        let edge = [0.0f32, 30.0, -30.0];
        let mut out = [9.0f32; 3];
        gelu_slices(&edge, None, &mut out);
        assert_eq!(out[..2], [0.0, 30.0]);
        assert!(out[2] <= 0.0 && out[2] > -1e-37, "gelu(-30) = {}", out[2]);
        gelu_slices(&edge, Some(&[1.0; 3]), &mut out);
        assert_eq!(out[..2], [0.5, 1.0]);
        assert!(out[2].abs() < 1e-36, "gelu'(-30) = {}", out[2]);
    }

    /// The other backends' GELU (`x · ½ (1 + erf(x/√2))` in tensor ops) differentiates the erf
    /// form exactly: on `Autodiff<NdArray<f64>>` its gradient is the f64 `Φ(x) + x φ(x)` to
    /// 1e-12, and matches central differences of its own values. Burn 0.21's `gelu`, whose
    /// backward is the tanh approximation's derivative, misses it by more than 5e-4 (about
    /// 9e-4 near x = 2) — the reason the crate has its own.
    #[test]
    fn gelu_tensor_ops_have_the_exact_derivative() {
        type F64 = burn::backend::Autodiff<burn_ndarray::NdArray<f64>>;
        let device = Default::default();
        // An explicit dtype: NdArray<f32> and NdArray<f64> share one device and Burn 0.21 one
        // default float dtype per device, so a plain `from_data` could make an f32 tensor (see
        // tests/suite/reference_f64.rs).
        let f64 = burn::tensor::DType::F64;
        let xs: Vec<f64> = (0..161).map(|i| -8.0 + i as f64 * 0.1).collect();
        let grad_of = |f: fn(Tensor<F64, 1>) -> Tensor<F64, 1>| -> (Vec<f64>, Vec<f64>) {
            let x = Tensor::<F64, 1>::from_data(
                TensorData::new(xs.clone(), [xs.len()]),
                (&device, f64),
            )
            .require_grad();
            let y = f(x.clone());
            let g = y.clone().sum().backward();
            (vec_of(y), vec_of(x.grad(&g).unwrap()))
        };
        let (values, grads) = grad_of(gelu);
        let (_, burn_grads) = grad_of(activation::gelu);
        let mut burn_worst = 0.0f64;
        for (i, &x) in xs.iter().enumerate() {
            let (v, d) = reference(Activation::Gelu, x);
            assert!(
                (values[i] - v).abs() <= 1e-12,
                "gelu({x}) = {} vs {v}",
                values[i]
            );
            assert!(
                (grads[i] - d).abs() <= 1e-12,
                "gelu'({x}) = {} vs {d}",
                grads[i]
            );
            burn_worst = burn_worst.max((burn_grads[i] - d).abs());
        }
        assert!(
            burn_worst > 5e-4,
            "Burn's gelu backward is now within {burn_worst:e}"
        );
        // Central differences of the tensor-op values themselves (h = 1e-5: error ~ h² f‴).
        let h = 1e-5;
        let at = |shift: f64| -> Vec<f64> {
            let x: Vec<f64> = xs.iter().map(|x| x + shift).collect();
            vec_of(gelu_tensor_ops(
                Tensor::<burn_ndarray::NdArray<f64>, 1>::from_data(
                    TensorData::new(x, [xs.len()]),
                    (&device, f64),
                ),
            ))
        };
        let (up, down) = (at(h), at(-h));
        for i in 0..xs.len() {
            let numeric = (up[i] - down[i]) / (2.0 * h);
            assert!(
                (numeric - grads[i]).abs() < 1e-8,
                "x = {}: {numeric} vs {}",
                xs[i],
                grads[i]
            );
        }
    }
}
