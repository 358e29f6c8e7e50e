//! Every hand-written backward of the crate against an independent reference.
//!
//! The crate's CPU training path (`Autodiff<NdArray<f32>>`) runs its own backward passes: the
//! token-wise linear op, the causal conv + SiLU, SiLU and softplus, the fused selective scan, the
//! fused attention and the LSTM recurrence. Each test here writes the same layer again from plain
//! tensor ops (`matmul`, `exp`, `log`, `narrow`, `cat`, a loop over time) on
//! `Autodiff<NdArray<f64>>`, where none of the crate's kernels or custom nodes runs, and compares
//! the f32 path's value and **every** parameter and input gradient with it. The references read
//! the layers' parameters, nothing else: not the crate's forward code, masks or tables. A wrong
//! backward shared by the fused path and the crate's other f32 paths therefore cannot pass here.
//!
//! # Tolerances (derived, not measured)
//! The f64 reference is exact for this purpose (its rounding, ~1e-16, is 10⁸ below f32's). The
//! f32 path computes each value through a chain of at most `depth` operations, each of which
//! either rounds once (`exp`, a product: relative error ≤ u) or sums at most `n` terms
//! (matrix products, the scan's and the LSTM's accumulation over time, the weight gradients' sum
//! over `B·L` rows): with recursive summation its error is ≤ γ_n·Σ|terms| ≈ n·u·Σ|terms|, with
//! u = 2⁻²⁴ the f32 unit roundoff (FMA and SIMD lane trees only shrink `n`). The inputs are
//! O(1), and so is every operation's condition number at these sizes (no exponential
//! growth: |Ā| ≤ 1, σ and tanh are contractions, softmax rows sum to 1), so the errors add up
//! to ‖f32 − f64‖_∞ ≤ depth · n · u · ‖f64‖_∞ times a constant `c` for Σ|terms| / |Σ terms|,
//! which random O(1) data keeps below 4 (a norm-wise, not element-wise, check: single elements
//! can cancel). Each test states its `depth` and `n`; [`tol`] gives `4 · depth · n · u`. The
//! tests print the measured ratio error / bound: it is far below 1, and a plausible wrong
//! backward (a missing term, a transposed weight, a wrong sign in Ā's derivative) gives relative
//! errors of 1e-2 to 1, far above every bound here (the largest is ~2e-4).
//!
//! Finite differences in f64 check the references' own gradients (and the crate's forward in
//! f64) for the scalar parameters: Δ bias, `D`, `A_log` and the conv bias.
//!
//! Every test runs at each SIMD level this CPU has ([`SimdLevel::available`]), so the AVX2 and
//! AVX-512 kernels are each held to the same bound.

use burn::backend::Autodiff;
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Linear, LstmConfig, LstmState};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Element, Tensor, TensorData};
use burn_ndarray::NdArray;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::attention::{AttentionConfig, AttentionInput};
use seqlayers::backend::{Cpu, CpuAutodiff, CpuDevice};
use seqlayers::internals::{
    FusedAttentionInput, RopeTables, fused_attention_backward, fused_attention_forward,
};
use seqlayers::nn::{Norm, NormKind};
use seqlayers::position::PositionEncoding;
use seqlayers::simd::{SimdLevel, with_max_level};
use seqlayers::ssm::{Discretization, Mamba, MambaBlock, MambaConfig, MambaState};

type F64 = NdArray<f64>;
/// The reference backend: Burn's own autodiff over f64 tensor ops.
type Ref = Autodiff<F64>;
type Grads32 = <CpuAutodiff as AutodiffBackend>::Gradients;
type Grads64 = <Ref as AutodiffBackend>::Gradients;

/// f32 unit roundoff u = 2⁻²⁴.
const U32: f64 = 1.0 / 16_777_216.0;

/// The norm-wise bound `4 · depth · n · u` of the module docs.
fn tol(depth: usize, n: usize) -> f64 {
    4.0 * depth as f64 * n as f64 * U32
}

fn dev() -> CpuDevice {
    CpuDevice::default()
}

/// `max |got − want| ≤ bound · max |want|`; returns the ratio to the bound.
fn assert_close(what: &str, got: &[f32], want: &[f64], bound: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    assert!(
        scale > 1e-12,
        "{what}: the reference is zero, so this comparison would check nothing"
    );
    let err = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        err.is_finite() && err <= bound * scale,
        "{what}: max |f32 − f64| = {err:.3e} > {bound:.2e} · max|f64| = {:.3e}",
        bound * scale
    );
    err / (bound * scale)
}

/// The values of an f32-path tensor, which must really be f32 (see [`make`]).
fn f32s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "an f32-path value computed in another dtype"
    );
    t.into_data().to_vec::<f32>().unwrap()
}

/// The values of a reference tensor, which must really be f64 (see [`make`]).
fn f64s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    assert_eq!(
        t.dtype(),
        DType::F64,
        "a reference value computed in another dtype"
    );
    t.into_data().to_vec::<f64>().unwrap()
}

/// Uniform values in `(−scale, scale)` from a local RNG.
fn uniform(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// An f32 autodiff leaf holding `v`.
fn leaf32<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<CpuAutodiff, D> {
    let data: Vec<f64> = v.iter().map(|&x| x as f32 as f64).collect();
    make::<CpuAutodiff, D>(data, shape).require_grad()
}

/// An f64 reference leaf holding the same values as the f32 one (its f32 values, widened).
fn leaf64<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<Ref, D> {
    let data: Vec<f64> = v.iter().map(|&x| x as f32 as f64).collect();
    leaf64_exact(&data, shape)
}

/// An f64 reference leaf holding exactly `v`.
fn leaf64_exact<const D: usize>(v: &[f64], shape: [usize; D]) -> Tensor<Ref, D> {
    make::<Ref, D>(v.to_vec(), shape).require_grad()
}

/// Makes sure the device's default float dtype is settled as f32, the crate's CPU backend's,
/// before any f64 work of these tests could settle it as f64 for the whole process (see
/// [`make`]): the first creation without a dtype fixes it.
fn settle_f32_default() {
    let _ = Tensor::<Cpu, 1>::zeros([1], &dev());
}

/// The float dtype of backend `B` (`F32` for the crate's CPU backend, `F64` for the reference).
fn dtype_of<B: Backend>() -> DType {
    <B::FloatElem as Element>::dtype()
}

/// A tensor of `B`'s own float dtype holding `v`.
///
/// The dtype is given explicitly: `NdArray<f32>` and `NdArray<f64>` share one device
/// (`NdArrayDevice::Cpu`), and Burn 0.21 keeps one default float dtype per device and process,
/// fixed by whichever backend asks first. A plain `from_data`/`zeros` on the f64 backend after
/// the f32 one has run makes an **f32** tensor, so a reference built that way would silently
/// compute in f32 (or panic on a dtype mismatch).
fn make<B: Backend<Device = CpuDevice>, const D: usize>(
    v: Vec<f64>,
    shape: [usize; D],
) -> Tensor<B, D> {
    settle_f32_default();
    let data = TensorData::new(v, shape).convert_dtype(dtype_of::<B>());
    Tensor::from_data(data, (&dev(), dtype_of::<B>()))
}

fn zeros<B: Backend<Device = CpuDevice>, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    settle_f32_default();
    Tensor::zeros(shape, (&dev(), dtype_of::<B>()))
}

/// The f64 reference leaf of an f32 parameter (same values).
fn param64<const D: usize>(p: &Param<Tensor<CpuAutodiff, D>>) -> Tensor<Ref, D> {
    let v = p
        .val()
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap();
    make::<Ref, D>(v, p.val().dims()).require_grad()
}

fn grad32<const D: usize>(t: &Tensor<CpuAutodiff, D>, g: &Grads32) -> Vec<f32> {
    f32s(t.grad(g).expect("the f32 path tracks this input"))
}

fn grad64<const D: usize>(t: &Tensor<Ref, D>, g: &Grads64) -> Vec<f64> {
    f64s(t.grad(g).expect("the reference tracks this input"))
}

/// Every parameter of `module` redrawn from `U(−scale, scale)` (a local seeded RNG, so the test
/// does not depend on Burn's global RNG), as fresh autodiff leaves.
fn redraw<M: Module<CpuAutodiff>>(module: M, seed: u64, scale: f64) -> M {
    struct Redraw(StdRng, f64);
    impl ModuleMapper<CpuAutodiff> for Redraw {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<CpuAutodiff, D>>,
        ) -> Param<Tensor<CpuAutodiff, D>> {
            let (id, tensor, mapper) = param.consume();
            let shape: [usize; D] = tensor.dims();
            let n = shape.iter().product();
            let fresh = leaf32(&uniform(&mut self.0, n, self.1), shape);
            Param::from_mapped_value(id, fresh, mapper)
        }
    }
    module.map(&mut Redraw(StdRng::seed_from_u64(seed), scale))
}

/// `x [B, L, D_in] · W [D_in, D_out] (+ b)` in plain tensor ops.
fn linear_ref(x: Tensor<Ref, 3>, w: &Tensor<Ref, 2>, b: Option<&Tensor<Ref, 1>>) -> Tensor<Ref, 3> {
    let [bs, l, d_in] = x.dims();
    let d_out = w.dims()[1];
    let mut y = x.reshape([bs * l, d_in]).matmul(w.clone()); // [B·L, D_out]
    if let Some(b) = b {
        y = y + b.clone().unsqueeze::<2>();
    }
    y.reshape([bs, l, d_out])
}

fn sigmoid_ref<const D: usize>(x: Tensor<Ref, D>) -> Tensor<Ref, D> {
    x.neg().exp().add_scalar(1.0).recip()
}

fn silu_ref<const D: usize>(x: Tensor<Ref, D>) -> Tensor<Ref, D> {
    x.clone() * sigmoid_ref(x)
}

/// `ln(1 + eˣ)`; the inputs here are O(1), so the plain formula is exact enough in f64.
fn softplus_ref<const D: usize>(x: Tensor<Ref, D>) -> Tensor<Ref, D> {
    x.exp().add_scalar(1.0).log()
}

/// An f64 leaf per parameter of a `Linear`.
#[derive(Clone)]
struct LinearRef {
    w: Tensor<Ref, 2>,
    b: Option<Tensor<Ref, 1>>,
}

impl LinearRef {
    fn of(l: &Linear<CpuAutodiff>) -> Self {
        Self {
            w: param64(&l.weight),
            b: l.bias.as_ref().map(param64),
        }
    }

    fn apply(&self, x: Tensor<Ref, 3>) -> Tensor<Ref, 3> {
        linear_ref(x, &self.w, self.b.as_ref())
    }

    /// `(weight, bias)` gradients of the reference and of the f32 layer, as checks.
    fn checks(
        &self,
        l: &Linear<CpuAutodiff>,
        name: &str,
        g32: &Grads32,
        g64: &Grads64,
    ) -> Vec<(String, Vec<f32>, Vec<f64>)> {
        let mut out = vec![(
            format!("{name}.weight"),
            grad32(&l.weight.val(), g32),
            grad64(&self.w, g64),
        )];
        if let (Some(b32), Some(b64)) = (&l.bias, &self.b) {
            out.push((
                format!("{name}.bias"),
                grad32(&b32.val(), g32),
                grad64(b64, g64),
            ));
        }
        out
    }
}

// ------------------------------------------------------------------------------------------
// Mamba
// ------------------------------------------------------------------------------------------

/// The Mamba mixer's parameters as f64 leaves.
#[derive(Clone)]
struct MambaRef {
    in_proj: LinearRef,
    conv_w: Tensor<Ref, 2>,
    conv_b: Option<Tensor<Ref, 1>>,
    x_proj: LinearRef,
    dt_proj: LinearRef,
    a_log: Tensor<Ref, 2>,
    d: Tensor<Ref, 1>,
    out_proj: LinearRef,
}

impl MambaRef {
    fn of(m: &Mamba<CpuAutodiff>) -> Self {
        Self {
            in_proj: LinearRef::of(&m.in_proj),
            conv_w: param64(&m.conv1d.weight),
            conv_b: m.conv1d.bias.as_ref().map(param64),
            x_proj: LinearRef::of(&m.x_proj),
            dt_proj: LinearRef::of(&m.dt_proj),
            a_log: param64(&m.a_log),
            d: param64(&m.d),
            out_proj: LinearRef::of(&m.out_proj),
        }
    }

    /// The mixer (Gu & Dao 2023, Algorithm 2) on `u [B, L, D]` from the state
    /// `(conv window [B, E, K−1], h0 [B, E, N])` (zeros when `None`), with a sequential scan
    /// written out step by step. Returns the output `[B, L, D]`.
    fn forward(
        &self,
        u: Tensor<Ref, 3>,
        state: Option<(Tensor<Ref, 3>, Tensor<Ref, 3>)>,
        disc: Discretization,
    ) -> Tensor<Ref, 3> {
        let [bs, l, _] = u.dims();
        let [e, n] = self.a_log.dims();
        let k = self.conv_w.dims()[1];
        let r = self.dt_proj.w.dims()[0];
        let xz = self.in_proj.apply(u); // [B, L, 2E]
        let x = xz.clone().narrow(2, 0, e); // [B, L, E]
        let z = xz.narrow(2, e, e); // [B, L, E]
        let (window, mut h) = match state {
            Some((w, h)) => (w.swap_dims(1, 2), h), // [B, K−1, E], [B, E, N]
            None => (zeros([bs, k - 1, e]), zeros([bs, e, n])),
        };
        // Depthwise causal conv: out[t, e] = bias[e] + Σ_j w[e, j] · x_ext[t + j, e].
        let x_ext = Tensor::cat(vec![window, x], 1); // [B, K−1+L, E]
        let mut conv: Tensor<Ref, 3> = zeros([bs, l, e]);
        for j in 0..k {
            let w_j = self.conv_w.clone().narrow(1, j, 1).reshape([1, 1, e]);
            conv = conv + x_ext.clone().narrow(1, j, l) * w_j; // [B, L, E]
        }
        if let Some(b) = &self.conv_b {
            conv = conv + b.clone().reshape([1, 1, e]);
        }
        let xc = silu_ref(conv); // [B, L, E]
        let proj = self.x_proj.apply(xc.clone()); // [B, L, R+2N]
        let dt_low = proj.clone().narrow(2, 0, r); // [B, L, R]
        let bm = proj.clone().narrow(2, r, n); // [B, L, N]
        let cm = proj.narrow(2, r + n, n); // [B, L, N]
        let delta = softplus_ref(self.dt_proj.apply(dt_low)); // [B, L, E]
        let a = self.a_log.clone().exp().neg().reshape([1, e, n]); // A = −exp(A_log)
        let mut ys = Vec::with_capacity(l);
        for t in 0..l {
            let d_t = delta.clone().narrow(1, t, 1).reshape([bs, e, 1]);
            let x_t = xc.clone().narrow(1, t, 1).reshape([bs, e, 1]);
            let b_t = bm.clone().narrow(1, t, 1).reshape([bs, 1, n]);
            let c_t = cm.clone().narrow(1, t, 1).reshape([bs, 1, n]);
            let abar = (d_t.clone() * a.clone()).exp(); // [B, E, N]
            // B̄/B: Δ (Mamba's simplified form) or (exp(ΔA) − 1)/A (exact zero-order hold).
            let bbar = match disc {
                Discretization::Simplified => d_t.repeat_dim(2, n),
                Discretization::ZeroOrderHold => (abar.clone() - 1.0) / a.clone(),
                other => panic!("no reference for {other:?}"),
            };
            h = abar * h + bbar * b_t * x_t.clone(); // [B, E, N]
            let y_t = (h.clone() * c_t).sum_dim(2) + x_t * self.d.clone().reshape([1, e, 1]);
            ys.push(y_t.reshape([bs, 1, e]));
        }
        let y = Tensor::cat(ys, 1); // [B, L, E]
        self.out_proj.apply(y * silu_ref(z)) // [B, L, D]
    }

    fn checks(
        &self,
        m: &Mamba<CpuAutodiff>,
        g32: &Grads32,
        g64: &Grads64,
    ) -> Vec<(String, Vec<f32>, Vec<f64>)> {
        let mut out = self.in_proj.checks(&m.in_proj, "in_proj", g32, g64);
        out.push((
            "conv1d.weight".into(),
            grad32(&m.conv1d.weight.val(), g32),
            grad64(&self.conv_w, g64),
        ));
        if let (Some(b32), Some(b64)) = (&m.conv1d.bias, &self.conv_b) {
            out.push((
                "conv1d.bias".into(),
                grad32(&b32.val(), g32),
                grad64(b64, g64),
            ));
        }
        out.extend(self.x_proj.checks(&m.x_proj, "x_proj", g32, g64));
        out.extend(self.dt_proj.checks(&m.dt_proj, "dt_proj", g32, g64));
        out.push((
            "a_log".into(),
            grad32(&m.a_log.val(), g32),
            grad64(&self.a_log, g64),
        ));
        out.push(("d".into(), grad32(&m.d.val(), g32), grad64(&self.d, g64)));
        out.extend(self.out_proj.checks(&m.out_proj, "out_proj", g32, g64));
        out
    }
}

/// A Mamba case: sizes and the switches that pick different custom nodes.
#[derive(Debug, Clone, Copy)]
struct MambaCase {
    b: usize,
    l: usize,
    d_model: usize,
    d_state: usize,
    d_conv: usize,
    /// Projection biases (the linear op's 3-parent node) or none (2 parents).
    bias: bool,
    conv_bias: bool,
    disc: Discretization,
    /// Start from a non-zero state (conv window and `h0` get gradients too).
    with_state: bool,
}

const MAMBA_CASES: [MambaCase; 3] = [
    MambaCase {
        b: 2,
        l: 11,
        d_model: 6,
        d_state: 5,
        d_conv: 4,
        bias: false,
        conv_bias: true,
        disc: Discretization::Simplified,
        with_state: false,
    },
    MambaCase {
        b: 3,
        l: 7,
        d_model: 5,
        d_state: 3,
        d_conv: 3,
        bias: true,
        conv_bias: false,
        disc: Discretization::ZeroOrderHold,
        with_state: true,
    },
    MambaCase {
        b: 1,
        l: 70, // more than one checkpoint chunk (64) of the fused scan
        d_model: 4,
        d_state: 17,
        d_conv: 2,
        bias: true,
        conv_bias: true,
        disc: Discretization::Simplified,
        with_state: true,
    },
];

impl MambaCase {
    fn config(&self) -> MambaConfig {
        MambaConfig::new(self.d_model)
            .with_d_state(self.d_state)
            .with_d_conv(self.d_conv)
            .with_bias(self.bias)
            .with_conv_bias(self.conv_bias)
            .with_discretization(self.disc)
    }

    /// Depth and summation length of the bound: ~12 chained ops (in_proj, conv, SiLU, x_proj,
    /// dt_proj, softplus, exp, scan, C-contraction, gate, out_proj, and their adjoints); the
    /// longest sums are the weight gradients over `B·L` rows and the scan over `L` steps.
    fn bound(&self) -> f64 {
        tol(12, (self.b * self.l).max(2 * self.d_model))
    }

    fn state(&self, rng: &mut StdRng, e: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        self.with_state.then(|| {
            (
                uniform(rng, self.b * e * (self.d_conv - 1), 1.0),
                uniform(rng, self.b * e * self.d_state, 1.0),
            )
        })
    }
}

/// Runs `f32_forward` (the crate's mixer or block on the fused CPU path) and `ref_forward` on
/// the same input, state and loss weights, and compares the output and every gradient.
fn compare_mamba(case: MambaCase, seed: u64, block: bool) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = case.config();
    let (b, l, dm) = (case.b, case.l, case.d_model);
    let mamba_block: MambaBlock<CpuAutodiff> =
        redraw(cfg.try_init_block(&dev()).unwrap(), seed, 0.5);
    let mixer = &mamba_block.mixer;
    let e = mixer.d_inner();
    let (k, n) = (case.d_conv, case.d_state);
    let u = uniform(&mut rng, b * l * dm, 1.0);
    let w = uniform(&mut rng, b * l * dm, 1.0); // loss weights: ℓ = Σ w ⊙ out
    let state = case.state(&mut rng, e);

    // f32, the crate's training path.
    let u32_ = leaf32(&u, [b, l, dm]);
    let state32 = state
        .as_ref()
        .map(|(c, h)| (leaf32(c, [b, e, k - 1]), leaf32(h, [b, e, n])));
    let ms = state32.clone().map(|(conv, ssm)| MambaState { conv, ssm });
    let out32 = match (block, ms) {
        (true, Some(ms)) => mamba_block.forward_with_state(u32_.clone(), ms),
        (true, None) => crate::common::from_zero(&mamba_block, u32_.clone()),
        (false, Some(ms)) => mixer.forward_with_state(u32_.clone(), ms),
        (false, None) => crate::common::from_zero(mixer, u32_.clone()),
    }
    .unwrap()
    .0;
    let g32 = (out32.clone() * leaf32(&w, [b, l, dm]).detach())
        .sum()
        .backward();

    // f64 reference.
    let r = MambaRef::of(mixer);
    let u64_ = leaf64(&u, [b, l, dm]);
    let state64 = state
        .as_ref()
        .map(|(c, h)| (leaf64(c, [b, e, k - 1]), leaf64(h, [b, e, n])));
    let gamma = match &mamba_block.norm {
        Norm::Rms(norm) => param64(&norm.gamma),
        Norm::Layer(_) => unreachable!("Mamba blocks use RMSNorm"),
    };
    let out64 = if block {
        let normed = rms_norm_ref(u64_.clone(), &gamma, cfg.norm_eps);
        u64_.clone() + r.forward(normed, state64.clone(), case.disc)
    } else {
        r.forward(u64_.clone(), state64.clone(), case.disc)
    };
    let g64 = (out64.clone() * leaf64(&w, [b, l, dm])).sum().backward();

    let bound = case.bound();
    let mut worst = assert_close(
        "output",
        &f32s(out32.inner()),
        &f64s(out64.clone().inner()),
        bound,
    );
    let mut checks = r.checks(mixer, &g32, &g64);
    checks.push(("input u".into(), grad32(&u32_, &g32), grad64(&u64_, &g64)));
    if let (Some((c32, h32)), Some((c64, h64))) = (&state32, &state64) {
        checks.push(("state.conv".into(), grad32(c32, &g32), grad64(c64, &g64)));
        checks.push(("state.ssm".into(), grad32(h32, &g32), grad64(h64, &g64)));
    }
    if block && let Norm::Rms(norm) = &mamba_block.norm {
        checks.push((
            "norm.gamma".into(),
            grad32(&norm.gamma.val(), &g32),
            grad64(&gamma, &g64),
        ));
    }
    for (name, got, want) in checks {
        let what = format!("{case:?} block={block}: ∂ℓ/∂{name}");
        worst = worst.max(assert_close(&what, &got, &want, bound));
    }
    worst
}

/// RMSNorm `x / sqrt(mean(x²) + ε) · γ` over the last axis.
fn rms_norm_ref(x: Tensor<Ref, 3>, gamma: &Tensor<Ref, 1>, eps: f64) -> Tensor<Ref, 3> {
    let d = gamma.dims()[0];
    let rms = x.clone().powi_scalar(2).mean_dim(2).add_scalar(eps).sqrt(); // [B, L, 1]
    x / rms * gamma.clone().reshape([1, 1, d])
}

#[test]
fn mamba_mixer_and_block_match_the_f64_reference_at_every_simd_level() {
    for level in SimdLevel::available() {
        with_max_level(level, || {
            let mut worst = 0.0f64;
            for (i, case) in MAMBA_CASES.iter().enumerate() {
                for block in [false, true] {
                    worst = worst.max(compare_mamba(*case, 10 + i as u64, block));
                }
            }
            eprintln!("Mamba vs f64 at {level}: worst error / bound = {worst:.3}");
        });
    }
}

/// Central differences `(ℓ(θ + h) − ℓ(θ − h)) / 2h` in f64 (no autodiff) for entries of the
/// scalar parameters, against the reference's autodiff gradient (f64: the O(h²) truncation and
/// the rounding of the two losses bound the difference) and the f32 fused path's gradient (the f32
/// bound of the Mamba case). This checks the reference's own backward, so the comparisons above
/// rest on differences, not on Burn's autodiff alone.
#[test]
fn scalar_parameter_gradients_match_finite_differences() {
    let case = MambaCase {
        conv_bias: true,  // checked here
        ..MAMBA_CASES[1]  // ZOH, projection biases
    };
    let (b, l, dm) = (case.b, case.l, case.d_model);
    let mixer32: Mamba<CpuAutodiff> = redraw(case.config().try_init(&dev()).unwrap(), 5, 0.5);
    let mut rng = StdRng::seed_from_u64(6);
    let u = uniform(&mut rng, b * l * dm, 1.0);
    let w = uniform(&mut rng, b * l * dm, 1.0);

    // Gradients: f32 fused path and f64 reference.
    let out32 = mixer32.forward(leaf32(&u, [b, l, dm]));
    let g32 = (out32 * leaf32(&w, [b, l, dm]).detach()).sum().backward();
    let r = MambaRef::of(&mixer32);
    let out64 = r.forward(leaf64(&u, [b, l, dm]), None, case.disc);
    let g64 = (out64 * leaf64(&w, [b, l, dm])).sum().backward();

    let loss = |r: &MambaRef| -> f64 {
        let out = r.forward(leaf64(&u, [b, l, dm]), None, case.disc);
        let total = (out * leaf64(&w, [b, l, dm])).sum();
        assert_eq!(total.dtype(), DType::F64);
        total.into_scalar()
    };
    let h = 1e-5;
    let loss_scale = loss(&r).abs().max(1.0);
    type Setter = fn(&mut MambaRef, Tensor<Ref, 1>);
    /// Name, values θ, f32 fused gradient, f64 reference gradient, how to set θ.
    type Scalar<'a> = (&'a str, Tensor<Ref, 1>, Vec<f32>, Vec<f64>, Setter);
    let conv_b = r.conv_b.as_ref().unwrap();
    let dt_b = r.dt_proj.b.as_ref().unwrap();
    let scalars: [Scalar; 4] = [
        (
            "dt_proj.bias (Δ bias)",
            dt_b.clone(),
            grad32(&mixer32.dt_proj.bias.as_ref().unwrap().val(), &g32),
            grad64(dt_b, &g64),
            |r, t| r.dt_proj.b = Some(t),
        ),
        (
            "d",
            r.d.clone(),
            grad32(&mixer32.d.val(), &g32),
            grad64(&r.d, &g64),
            |r, t| r.d = t,
        ),
        (
            "conv1d.bias",
            conv_b.clone(),
            grad32(&mixer32.conv1d.bias.as_ref().unwrap().val(), &g32),
            grad64(conv_b, &g64),
            |r, t| r.conv_b = Some(t),
        ),
        (
            "a_log (flattened)",
            r.a_log.clone().flatten::<1>(0, 1),
            grad32(&mixer32.a_log.val(), &g32),
            grad64(&r.a_log, &g64),
            |r, t| {
                let [e, n] = r.a_log.dims();
                r.a_log = t.reshape([e, n]);
            },
        ),
    ];
    for (name, theta, g_f32, g_ref, set) in scalars {
        let theta: Vec<f64> = f64s(theta.inner());
        let entries = theta.len().min(6);
        let mut fd = Vec::with_capacity(entries);
        for i in 0..entries {
            let at = |delta: f64| {
                let mut v = theta.clone();
                v[i] += delta;
                let mut perturbed = r.clone();
                set(&mut perturbed, leaf64_exact(&v, [v.len()]));
                loss(&perturbed)
            };
            fd.push((at(h) - at(-h)) / (2.0 * h));
        }
        let scale = fd.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 1e-6, "{name}: the loss does not depend on it");
        let err = fd
            .iter()
            .zip(&g_ref)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        // Truncation h²/6·|ℓ‴| (≤ 1e-7 of the gradients here) plus the rounding of the two
        // losses, 2ε·|ℓ| / 2h.
        let bound = 1e-7 * scale + f64::EPSILON * loss_scale / h;
        assert!(
            err <= bound,
            "{name}: reference autodiff {:?} vs finite differences {fd:?}",
            &g_ref[..entries]
        );
        assert_close(
            &format!("{name}: f32 fused path vs finite differences"),
            &g_f32[..entries],
            &fd,
            case.bound(),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Norms
// ------------------------------------------------------------------------------------------

#[test]
fn norms_match_the_f64_reference() {
    let (b, l, d) = (2, 5, 7);
    let mut rng = StdRng::seed_from_u64(3);
    let x = uniform(&mut rng, b * l * d, 2.0);
    let w = uniform(&mut rng, b * l * d, 1.0);
    for kind in [NormKind::Rms, NormKind::Layer] {
        let norm: Norm<CpuAutodiff> = redraw(kind.init(d, 1e-5, &dev()), 4, 1.5);
        let x32 = leaf32(&x, [b, l, d]);
        let y32 = norm.forward(x32.clone());
        let g32 = (y32.clone() * leaf32(&w, [b, l, d]).detach())
            .sum()
            .backward();
        let x64 = leaf64(&x, [b, l, d]);
        let (y64, params) = match &norm {
            Norm::Rms(n) => {
                let gamma = param64(&n.gamma);
                (
                    rms_norm_ref(x64.clone(), &gamma, 1e-5),
                    vec![(n.gamma.val(), gamma)],
                )
            }
            Norm::Layer(n) => {
                let gamma = param64(&n.gamma);
                let beta = param64(n.beta.as_ref().expect("LayerNorm has β"));
                let mean = x64.clone().mean_dim(2); // [B, L, 1]
                let centered = x64.clone() - mean;
                let var = centered.clone().powi_scalar(2).mean_dim(2); // biased, [B, L, 1]
                let y = centered / var.add_scalar(1e-5).sqrt() * gamma.clone().reshape([1, 1, d])
                    + beta.clone().reshape([1, 1, d]);
                let b32 = n.beta.as_ref().unwrap().val();
                (y, vec![(n.gamma.val(), gamma), (b32, beta)])
            }
        };
        let g64 = (y64.clone() * leaf64(&w, [b, l, d])).sum().backward();
        // depth ~6 (mean, square, sqrt, divide, scale; adjoints), sums over D or B·L.
        let bound = tol(6, (b * l).max(d));
        assert_close(
            &format!("{kind:?} value"),
            &f32s(y32.inner()),
            &f64s(y64.inner()),
            bound,
        );
        assert_close(
            &format!("{kind:?} ∂x"),
            &grad32(&x32, &g32),
            &grad64(&x64, &g64),
            bound,
        );
        for (i, (p32, p64)) in params.iter().enumerate() {
            assert_close(
                &format!("{kind:?} ∂param {i}"),
                &grad32(p32, &g32),
                &grad64(p64, &g64),
                bound,
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// LSTM
// ------------------------------------------------------------------------------------------

#[test]
fn lstm_matches_the_f64_reference_at_every_simd_level() {
    let (b, l, d, hd) = (3, 9, 5, 6);
    for bias in [true, false] {
        let lstm = redraw(
            LstmConfig::new(d, hd, bias).init::<CpuAutodiff>(&dev()),
            7,
            0.6,
        );
        let mut rng = StdRng::seed_from_u64(8);
        let x = uniform(&mut rng, b * l * d, 1.0);
        let h0 = uniform(&mut rng, b * hd, 0.8);
        let c0 = uniform(&mut rng, b * hd, 0.8);
        let wh = uniform(&mut rng, b * l * hd, 1.0);
        let wc = uniform(&mut rng, b * hd, 1.0);

        // Reference: Burn's gate layout (`input_transform`, `hidden_transform` per gate), each
        // gate written out: z = x W_x + b_x + h W_h + b_h.
        let x64 = leaf64(&x, [b, l, d]);
        let (h064, c064) = (leaf64(&h0, [b, hd]), leaf64(&c0, [b, hd]));
        let gates = [
            &lstm.input_gate,
            &lstm.forget_gate,
            &lstm.cell_gate,
            &lstm.output_gate,
        ];
        let refs: Vec<(LinearRef, LinearRef)> = gates
            .iter()
            .map(|g| {
                (
                    LinearRef::of(&g.input_transform),
                    LinearRef::of(&g.hidden_transform),
                )
            })
            .collect();
        let (mut h, mut c) = (h064.clone(), c064.clone());
        let mut hs = Vec::with_capacity(l);
        for t in 0..l {
            let x_t = x64.clone().narrow(1, t, 1); // [B, 1, D]
            let h_t = h.clone().reshape([b, 1, hd]);
            let z: Vec<Tensor<Ref, 2>> = refs
                .iter()
                .map(|(wx, wh)| (wx.apply(x_t.clone()) + wh.apply(h_t.clone())).reshape([b, hd]))
                .collect();
            let (i, f, g, o) = (
                sigmoid_ref(z[0].clone()),
                sigmoid_ref(z[1].clone()),
                z[2].clone().tanh(),
                sigmoid_ref(z[3].clone()),
            );
            c = f * c + i * g;
            h = o * c.clone().tanh();
            hs.push(h.clone().reshape([b, 1, hd]));
        }
        let loss64 = (Tensor::cat(hs, 1) * leaf64(&wh, [b, l, hd])).sum()
            + (c.clone() * leaf64(&wc, [b, hd])).sum();
        let g64 = loss64.backward();

        for level in SimdLevel::available() {
            with_max_level(level, || {
                let lstm = crate::common::fresh_leaves(&lstm);
                let x32 = leaf32(&x, [b, l, d]);
                let (h032, c032) = (leaf32(&h0, [b, hd]), leaf32(&c0, [b, hd]));
                let (hs32, state) = seqlayers::lstm::lstm_forward(
                    &lstm,
                    x32.clone(),
                    Some(LstmState::new(c032.clone(), h032.clone())),
                );
                let g32 = ((hs32 * leaf32(&wh, [b, l, hd]).detach()).sum()
                    + (state.cell * leaf32(&wc, [b, hd]).detach()).sum())
                .backward();
                // depth ~8 per step (gates, σ/tanh, cell update; adjoints), sums over L steps
                // and the weight gradients over B·L rows.
                let bound = tol(8, b * l);
                let mut checks = vec![
                    ("x".to_string(), grad32(&x32, &g32), grad64(&x64, &g64)),
                    ("h0".into(), grad32(&h032, &g32), grad64(&h064, &g64)),
                    ("c0".into(), grad32(&c032, &g32), grad64(&c064, &g64)),
                ];
                let gates32 = [
                    &lstm.input_gate,
                    &lstm.forget_gate,
                    &lstm.cell_gate,
                    &lstm.output_gate,
                ];
                for (gi, ((rx, rh), g)) in refs.iter().zip(gates32).enumerate() {
                    checks.extend(rx.checks(
                        &g.input_transform,
                        &format!("gate {gi} W_x"),
                        &g32,
                        &g64,
                    ));
                    checks.extend(rh.checks(
                        &g.hidden_transform,
                        &format!("gate {gi} W_h"),
                        &g32,
                        &g64,
                    ));
                }
                let mut worst = 0.0f64;
                for (name, got, want) in checks {
                    let what = format!("LSTM bias={bias} at {level}: ∂ℓ/∂{name}");
                    worst = worst.max(assert_close(&what, &got, &want, bound));
                }
                eprintln!("LSTM bias={bias} vs f64 at {level}: worst error / bound = {worst:.3}");
            });
        }
    }
}

// ------------------------------------------------------------------------------------------
// Attention: the fused op and the layer
// ------------------------------------------------------------------------------------------

/// Score bias `[Bb, Hb, Lq, Lk]` of one case, built here from the definitions (−1e30 for a masked
/// score: `exp` of it is exactly 0 in f32 and f64).
#[derive(Debug, Clone, Copy, PartialEq)]
enum BiasCase {
    None,
    /// Causal: key `j` visible to query `i` iff `j ≤ i` (shared by the heads).
    Causal,
    /// ALiBi `−m_h (i − j)`, `m_h = 2^(−8h/H)`, plus the causal mask (per head).
    CausalAlibi,
    /// Hard-ALiBi windows: head `h < W` sees `|i − j| ≤ h`, others all keys; plus causal.
    CausalHardAlibi {
        windowed: usize,
    },
    /// Random O(1) per-head bias, and query row 2 fully masked (its output is the mean of V).
    RandomWithMaskedRow,
    /// Key padding as the attention layer folds it into the bias: one table per sequence,
    /// sequence `b` with its last `5 + 6 b` keys masked for every query.
    KeyPadding,
}

const MASK: f64 = -1e30;

impl BiasCase {
    /// `(Bb, Hb, values)`.
    fn table(
        self,
        rng: &mut StdRng,
        b: usize,
        h: usize,
        l: usize,
    ) -> Option<(usize, usize, Vec<f64>)> {
        let causal = |i: usize, j: usize| if j <= i { 0.0 } else { MASK };
        match self {
            BiasCase::None => None,
            BiasCase::Causal => Some((1, 1, (0..l * l).map(|p| causal(p / l, p % l)).collect())),
            BiasCase::KeyPadding => Some((
                b,
                1,
                (0..b * l * l)
                    .map(|p| {
                        let (bb, j) = (p / (l * l), p % l);
                        if j + 5 + 6 * bb >= l { MASK } else { 0.0 }
                    })
                    .collect(),
            )),
            BiasCase::CausalAlibi => Some((
                1,
                h,
                (0..h * l * l)
                    .map(|p| {
                        let (hh, i, j) = (p / (l * l), (p / l) % l, p % l);
                        let m = 2f64.powf(-8.0 * (hh + 1) as f64 / h as f64);
                        -m * i.abs_diff(j) as f64 + causal(i, j)
                    })
                    .collect(),
            )),
            BiasCase::CausalHardAlibi { windowed } => Some((
                1,
                h,
                (0..h * l * l)
                    .map(|p| {
                        let (hh, i, j) = (p / (l * l), (p / l) % l, p % l);
                        let visible = hh >= windowed || i.abs_diff(j) <= hh;
                        causal(i, j) + if visible { 0.0 } else { MASK }
                    })
                    .collect(),
            )),
            BiasCase::RandomWithMaskedRow => Some((
                1,
                h,
                (0..h * l * l)
                    .map(|p| {
                        if (p / l) % l == 2 {
                            MASK
                        } else {
                            rng.random_range(-1.0..1.0)
                        }
                    })
                    .collect(),
            )),
        }
    }
}

/// RoPE tables `[L, dk]` written here from the definition (rotate-half pairing,
/// `θ_i = base^(−2i/dk)`).
fn rope_ref(l: usize, dk: usize, base: f64) -> (Vec<f64>, Vec<f64>) {
    let half = dk / 2;
    let angle = |p: usize, f: usize| p as f64 * base.powf(-2.0 * (f % half) as f64 / dk as f64);
    let cos = (0..l * dk).map(|i| angle(i / dk, i % dk).cos()).collect();
    let sin = (0..l * dk).map(|i| angle(i / dk, i % dk).sin()).collect();
    (cos, sin)
}

/// `R x = x ⊙ cos + [−x₂, x₁] ⊙ sin` on `[B, H, L, dk]` with tables `[L, dk]`.
fn rotate_ref(x: Tensor<Ref, 4>, cos: &Tensor<Ref, 2>, sin: &Tensor<Ref, 2>) -> Tensor<Ref, 4> {
    let dk = x.dims()[3];
    let half = dk / 2;
    let rotated = Tensor::cat(
        vec![
            x.clone().narrow(3, half, half).neg(),
            x.clone().narrow(3, 0, half),
        ],
        3,
    );
    x * cos.clone().unsqueeze::<4>() + rotated * sin.clone().unsqueeze::<4>()
}

/// `softmax(s·Q̃K̃ᵀ + bias)·V` in plain f64 tensor ops.
fn attention_ref(
    q: Tensor<Ref, 4>,
    k: Tensor<Ref, 4>,
    v: Tensor<Ref, 4>,
    bias: Option<Tensor<Ref, 4>>,
    rope: Option<&(Tensor<Ref, 2>, Tensor<Ref, 2>)>,
    scale: f64,
) -> Tensor<Ref, 4> {
    let (q, k) = match rope {
        Some((cos, sin)) => (rotate_ref(q, cos, sin), rotate_ref(k, cos, sin)),
        None => (q, k),
    };
    let mut s = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale); // [B, H, Lq, Lk]
    if let Some(bias) = bias {
        s = s + bias;
    }
    let max = s.clone().detach().max_dim(3); // [B, H, Lq, 1], a constant shift
    let e = (s - max).exp();
    let p = e.clone() / e.sum_dim(3);
    p.matmul(v) // [B, H, Lq, dv]
}

/// One fused-attention case at the op level: the CPU kernel through `Autodiff<NdArray<f32>>`,
/// and the tensor-op backward (`fused_attention_backward` on `NdArray<f64>`, the body that CUDA
/// training uses), both against [`attention_ref`].
fn compare_fused_attention(bias_case: BiasCase, rope: bool, seed: u64) -> f64 {
    // Lk = 37: rows are cut at a multiple of 8 keys below 37 (the kernel's row-cut path) and
    // the last block is partial.
    let (b, h, l, dk) = (2, 3, 37, 8);
    let scale = 1.0 / (dk as f64).sqrt();
    let mut rng = StdRng::seed_from_u64(seed);
    let [q, k, v, w] = [0; 4].map(|_| uniform(&mut rng, b * h * l * dk, 1.0));
    let bias = bias_case.table(&mut rng, b, h, l);
    let shape = [b, h, l, dk];
    let tables = rope.then(|| rope_ref(l, dk, 10_000.0));

    // Reference.
    let (q64, k64, v64) = (leaf64(&q, shape), leaf64(&k, shape), leaf64(&v, shape));
    let bias64 = bias
        .as_ref()
        .map(|(bb, hb, t)| make::<Ref, 4>(t.clone(), [*bb, *hb, l, l]));
    let rope64 = tables.as_ref().map(|(c, s)| {
        let t = |x: &Vec<f64>| make::<Ref, 2>(x.clone(), [l, dk]);
        (t(c), t(s))
    });
    let out64 = attention_ref(
        q64.clone(),
        k64.clone(),
        v64.clone(),
        bias64,
        rope64.as_ref(),
        scale,
    );
    let g64 = (out64.clone() * leaf64(&w, shape)).sum().backward();

    // The crate's RoPE tables, to check them too.
    let crate_tables = rope.then(|| seqlayers::internals::rope_tables(0, l, dk, 10_000.0));
    /// The constants of one case: bias table, the crate's RoPE tables, sizes, score scale.
    struct Constants<'a> {
        bias: &'a Option<(usize, usize, Vec<f64>)>,
        tables: &'a Option<(Vec<f32>, Vec<f32>)>,
        l: usize,
        dk: usize,
        scale: f64,
    }
    fn input<B: Backend<Device = CpuDevice>>(
        (q, k, v): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>),
        c: &Constants<'_>,
    ) -> FusedAttentionInput<B> {
        let Constants {
            bias,
            tables,
            l,
            dk,
            scale,
        } = *c;
        let prim = |t: Tensor<B, 2>| t.into_primitive().tensor();
        let table =
            |x: &Vec<f32>| prim(make::<B, 2>(x.iter().map(|&v| v as f64).collect(), [l, dk]));
        FusedAttentionInput {
            q: q.into_primitive().tensor(),
            k: k.into_primitive().tensor(),
            v: v.into_primitive().tensor(),
            bias: bias.as_ref().map(|(bb, hb, t)| {
                let t: Vec<f32> = t.iter().map(|&x| x as f32).collect();
                make::<B, 4>(t.iter().map(|&v| v as f64).collect(), [*bb, *hb, l, l])
                    .into_primitive()
                    .tensor()
            }),
            rope: tables.as_ref().map(|(c, s)| RopeTables {
                cos_q: table(c),
                sin_q: table(s),
                cos_k: table(c),
                sin_k: table(s),
            }),
            scale: scale as f32,
        }
    }
    let consts = Constants {
        bias: &bias,
        tables: &crate_tables,
        l,
        dk,
        scale,
    };
    let wrap = |p: burn::tensor::ops::FloatTensor<CpuAutodiff>| {
        Tensor::<CpuAutodiff, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(p))
    };

    // f32: the kernel with its autodiff node.
    let (q32, k32, v32) = (leaf32(&q, shape), leaf32(&k, shape), leaf32(&v, shape));
    let inp = input((q32.clone(), k32.clone(), v32.clone()), &consts);
    let out32 = wrap(fused_attention_forward(inp, false).0);
    let g32 = (out32.clone() * leaf32(&w, shape).detach())
        .sum()
        .backward();
    // depth ~8 (scores, softmax, ·V; adjoints), sums over Lk keys.
    let bound = tol(8, l);
    let tag = format!("{bias_case:?} rope={rope}");
    let mut worst = assert_close(
        &format!("{tag}: O"),
        &f32s(out32.inner()),
        &f64s(out64.clone().inner()),
        bound,
    );
    for (name, t32, t64) in [("Q", &q32, &q64), ("K", &k32, &k64), ("V", &v32, &v64)] {
        let what = format!("{tag}: ∂ℓ/∂{name}");
        worst = worst.max(assert_close(
            &what,
            &grad32(t32, &g32),
            &grad64(t64, &g64),
            bound,
        ));
    }

    // f64: the tensor-op backward (no kernel, no autodiff), with and without saved weights.
    let plain = |x: &Vec<f64>| make::<F64, 4>(x.clone(), shape);
    for saved in [false, true] {
        let inp = input((plain(&q), plain(&k), plain(&v)), &consts);
        let (out, weights) = fused_attention_forward::<F64>(inp.clone(), saved);
        assert_eq!(
            weights.is_some(),
            saved,
            "the tensor-op forward returns P when asked"
        );
        let d_out = plain(&w).into_primitive().tensor();
        let grads = fused_attention_backward::<F64>(inp, weights, d_out);
        let wrap64 = |p: burn::tensor::ops::FloatTensor<F64>| {
            Tensor::<F64, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(p))
        };
        // f64 against f64: only the f32 rounding of the inputs and tables (shared) and f64
        // rounding differ, so 1e-5 relative is loose (the RoPE tables came from f32).
        let close = |what: &str, got: Vec<f64>, want: Vec<f64>| {
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            assert!(
                err <= 1e-5 * scale,
                "{tag} tensor-op saved={saved}: {what}: {err:e}"
            );
        };
        close("O", f64s(wrap64(out)), f64s(out64.clone().inner()));
        close("∂Q", f64s(wrap64(grads.q)), grad64(&q64, &g64));
        close("∂K", f64s(wrap64(grads.k)), grad64(&k64, &g64));
        close("∂V", f64s(wrap64(grads.v)), grad64(&v64, &g64));
    }

    // The CPU kernel's backward called directly (without the autodiff node, weights recomputed).
    let plain32 =
        |x: &Vec<f64>| make::<Cpu, 4>(x.iter().map(|&v| v as f32 as f64).collect(), shape);
    let inp = input((plain32(&q), plain32(&k), plain32(&v)), &consts);
    let grads = fused_attention_backward::<Cpu>(inp, None, plain32(&w).into_primitive().tensor());
    let wrap32 = |p: burn::tensor::ops::FloatTensor<Cpu>| {
        Tensor::<Cpu, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(p))
    };
    assert_close(
        &format!("{tag}: kernel ∂Q"),
        &f32s(wrap32(grads.q)),
        &grad64(&q64, &g64),
        bound,
    );
    assert_close(
        &format!("{tag}: kernel ∂K"),
        &f32s(wrap32(grads.k)),
        &grad64(&k64, &g64),
        bound,
    );
    assert_close(
        &format!("{tag}: kernel ∂V"),
        &f32s(wrap32(grads.v)),
        &grad64(&v64, &g64),
        bound,
    );
    worst
}

#[test]
fn fused_attention_matches_the_f64_reference_for_every_mask_and_bias() {
    let cases = [
        BiasCase::None,
        BiasCase::Causal,
        BiasCase::CausalAlibi,
        BiasCase::CausalHardAlibi { windowed: 2 },
        BiasCase::RandomWithMaskedRow,
        BiasCase::KeyPadding,
    ];
    let mut worst = 0.0f64;
    for level in SimdLevel::available() {
        for (i, case) in cases.into_iter().enumerate() {
            for rope in [false, true] {
                let ratio =
                    with_max_level(level, || compare_fused_attention(case, rope, 30 + i as u64));
                worst = worst.max(ratio);
            }
        }
    }
    eprintln!("fused attention vs f64 (every SIMD level): worst error / bound = {worst:.3}");
}

/// The whole layer (Q/K/V through cut weight columns, heads, the fused op, output projection):
/// every weight's gradient against the reference.
#[test]
fn attention_layer_matches_the_f64_reference() {
    let (b, l, d, h) = (2, 13, 12, 3);
    let dh = d / h;
    let positions = [
        (PositionEncoding::None, false, BiasCase::None),
        (PositionEncoding::None, true, BiasCase::Causal),
        (
            PositionEncoding::Rope { base: 10_000.0 },
            true,
            BiasCase::Causal,
        ),
        (PositionEncoding::Alibi, true, BiasCase::CausalAlibi),
        (
            PositionEncoding::HardAlibi { windowed_heads: 2 },
            true,
            BiasCase::CausalHardAlibi { windowed: 2 },
        ),
        // Key padding (the encoder's case): folded into a per-sequence bias for the kernel.
        (PositionEncoding::None, false, BiasCase::KeyPadding),
    ];
    for (i, (position, causal, bias_case)) in positions.into_iter().enumerate() {
        let cfg = AttentionConfig::new(d, h)
            .with_position(position.clone())
            .with_causal(causal);
        let attn = redraw(
            cfg.try_init::<CpuAutodiff>(&dev()).unwrap(),
            40 + i as u64,
            0.5,
        );
        let mut rng = StdRng::seed_from_u64(50 + i as u64);
        let x = uniform(&mut rng, b * l * d, 1.0);
        let w = uniform(&mut rng, b * l * d, 1.0);

        let x32 = leaf32(&x, [b, l, d]);
        let out32 = if bias_case == BiasCase::KeyPadding {
            // The padding BiasCase::KeyPadding's table masks: the last 5 + 6 b keys of row b.
            let pads: Vec<bool> = (0..b * l).map(|p| p % l + 5 + 6 * (p / l) >= l).collect();
            let padding = Tensor::<CpuAutodiff, 2, burn::tensor::Bool>::from_data(
                burn::tensor::TensorData::new(pads, [b, l]),
                &dev(),
            );
            attn.attend(AttentionInput::self_attention(x32.clone()).padding(padding))
        } else {
            attn.forward(x32.clone())
        };
        let g32 = (out32.clone() * leaf32(&w, [b, l, d]).detach())
            .sum()
            .backward();

        // Reference: Q/K/V are the three column blocks of the fused `qkv` weight.
        let qkv = LinearRef::of(&attn.qkv);
        let out_proj = LinearRef::of(&attn.output);
        let x64 = leaf64(&x, [b, l, d]);
        let heads = |t: Tensor<Ref, 3>| t.reshape([b, l, h, dh]).swap_dims(1, 2); // [B, H, L, dh]
        let all = qkv.apply(x64.clone()); // [B, L, 3D]
        let [q, k, v] = [0, 1, 2].map(|j| heads(all.clone().narrow(2, j * d, d)));
        let bias64 = bias_case
            .table(&mut rng, b, h, l)
            .map(|(bb, hb, t)| make::<Ref, 4>(t, [bb, hb, l, l]));
        let rope64 = matches!(position, PositionEncoding::Rope { .. }).then(|| {
            let (c, s) = rope_ref(l, dh, 10_000.0);
            let t = |x: Vec<f64>| make::<Ref, 2>(x, [l, dh]);
            (t(c), t(s))
        });
        let ctx = attention_ref(q, k, v, bias64, rope64.as_ref(), 1.0 / (dh as f64).sqrt());
        let merged = ctx.swap_dims(1, 2).reshape([b, l, d]); // [B, L, D]
        let out64 = out_proj.apply(merged);
        let g64 = (out64.clone() * leaf64(&w, [b, l, d])).sum().backward();

        let bound = tol(10, (b * l).max(d));
        let tag = format!("{position:?} causal={causal}");
        assert_close(
            &format!("{tag}: output"),
            &f32s(out32.inner()),
            &f64s(out64.clone().inner()),
            bound,
        );
        let mut checks = qkv.checks(&attn.qkv, "qkv", &g32, &g64);
        checks.extend(out_proj.checks(&attn.output, "output", &g32, &g64));
        checks.push(("x".into(), grad32(&x32, &g32), grad64(&x64, &g64)));
        for (name, got, want) in checks {
            assert_close(&format!("{tag}: ∂ℓ/∂{name}"), &got, &want, bound);
        }
    }
}
