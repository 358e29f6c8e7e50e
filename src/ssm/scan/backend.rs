//! [`SsmBackend`]: the backend extension behind [`ScanKind::Fused`](super::ScanKind::Fused).
//!
//! # Glossary
//! - `x` `[B, L, E]`, `Δ` (`delta`) `[B, L, E]`, `A` `[E, N]`, `B`/`C` `[B, L, N]`, `D` `[E]`,
//!   `h0` `[B, E, N]`: the selective SSM inputs (raw backend primitives here).
//! - `dy` `[B, L, E]`, `dh_L` `[B, E, N]`: incoming gradients of the two outputs.
//! - `g_t = ∂ℓ/∂h_t` `[B, E, N]`: the adjoint state, solving the reversed recurrence
//!   `g_t = Ā_{t+1} ⊙ g_{t+1} + C_t dy_t` with `g_{L−1} = dh_L + C_{L−1} dy_{L−1}`.
//!
//! The trait has two primitives with default bodies written in tensor ops on `Self` (the
//! parallel scan, and its adjoint — itself a linear recurrence run in reverse), so every
//! backend works. The CPU backend overrides both with a Rust kernel; `Autodiff<B>` wires the
//! forward to a backward node that calls `B::fused_scan_backward`; the CubeCL backends (`Wgpu`,
//! `Cuda`) override both with `#[cube]` kernels (`fused_cubecl.rs`).

use burn::tensor::{Tensor, TensorPrimitive, backend::Backend, ops::FloatTensor};

pub(crate) use crate::backend::{prim, wrap};

use super::SelectiveScanInput;
use super::parallel::{recurrence_inputs, scan_parallel, selective_scan_parallel};
use crate::ssm::discretization::Discretization;

/// Raw inputs of the fused selective scan (backend float primitives).
#[derive(Debug, Clone)]
pub struct FusedScanInput<B: Backend> {
    /// Input `x`, `[B, L, E]`.
    pub x: FloatTensor<B>,
    /// Positive step `Δ`, `[B, L, E]`.
    pub delta: FloatTensor<B>,
    /// Diagonal state matrix `A`, `[E, N]`.
    pub a: FloatTensor<B>,
    /// Input matrix `B`, `[B, L, N]`.
    pub b: FloatTensor<B>,
    /// Output matrix `C`, `[B, L, N]`.
    pub c: FloatTensor<B>,
    /// Optional skip `D`, `[E]`.
    pub d: Option<FloatTensor<B>>,
    /// Optional initial state `h0`, `[B, E, N]`.
    pub h0: Option<FloatTensor<B>>,
}

/// Gradients of the fused selective scan with respect to each input (same shapes as the inputs;
/// `d`/`h0` are `Some` exactly when the input had them).
#[derive(Debug, Clone)]
pub struct FusedScanGrads<B: Backend> {
    /// `∂ℓ/∂x`, `[B, L, E]`.
    pub x: FloatTensor<B>,
    /// `∂ℓ/∂Δ`, `[B, L, E]`.
    pub delta: FloatTensor<B>,
    /// `∂ℓ/∂A`, `[E, N]`.
    pub a: FloatTensor<B>,
    /// `∂ℓ/∂B`, `[B, L, N]`.
    pub b: FloatTensor<B>,
    /// `∂ℓ/∂C`, `[B, L, N]`.
    pub c: FloatTensor<B>,
    /// `∂ℓ/∂D`, `[E]`.
    pub d: Option<FloatTensor<B>>,
    /// `∂ℓ/∂h0`, `[B, E, N]`.
    pub h0: Option<FloatTensor<B>>,
}

/// Outputs of the fused forward.
#[derive(Debug, Clone)]
pub struct FusedScanOutput<B: Backend> {
    /// `y`, `[B, L, E]`.
    pub y: FloatTensor<B>,
    /// Last state `h_L`, `[B, E, N]`.
    pub h_last: FloatTensor<B>,
    /// Backend-specific saved data for the backward (e.g. states at chunk boundaries), when
    /// asked for and supported; `None` means the backward recomputes everything.
    pub checkpoints: Option<FloatTensor<B>>,
}

/// The fused selective scan forward on any backend: the Rust kernel on `NdArray<f32>`, one
/// autodiff node with the kernel's backward on `Autodiff<NdArray<f32>>`, the CubeCL kernels on
/// `Wgpu` and `Cuda` (and one node under their `Autodiff`), the parallel scan in tensor ops
/// elsewhere (run-time dispatch by backend type).
///
/// Returns `y` `[B, L, E]`, `h_L` `[B, E, N]` and, when `save_checkpoints` and the backend has
/// a kernel, data that makes [`fused_scan_backward`] cheaper.
pub fn fused_scan_forward<B: Backend>(
    disc: Discretization,
    input: FusedScanInput<B>,
    save_checkpoints: bool,
) -> FusedScanOutput<B> {
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::dispatch::{FusedOp, Routed, route, same};
    type OnCpu = FusedScanInput<Cpu>;
    type OnCpuAutodiff = FusedScanInput<CpuAutodiff>;
    match route::<B, _, OnCpu, OnCpuAutodiff>(FusedOp::Scan, input) {
        Routed::Cpu(i) => same(Cpu::fused_scan_forward(disc, i, save_checkpoints)),
        Routed::CpuAutodiff(i) => same(CpuAutodiff::fused_scan_forward(disc, i, save_checkpoints)),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(i) => crate::dispatch::on_gpu!(B, i, |i: G| G::fused_scan_forward(
            disc,
            i,
            save_checkpoints
        )),
        Routed::Other(i) => tensor_op_forward(disc, i),
    }
}

/// Gradients of the fused selective scan on any backend, given `dy` `[B, L, E]`, `dh_L`
/// `[B, E, N]` and the forward's `checkpoints` (if any): the Rust kernel on `NdArray<f32>`,
/// [`reference_backward`] elsewhere.
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // for `seqlayers::internals`
pub fn fused_scan_backward<B: Backend>(
    disc: Discretization,
    input: FusedScanInput<B>,
    checkpoints: Option<FloatTensor<B>>,
    dy: FloatTensor<B>,
    dh_last: FloatTensor<B>,
) -> FusedScanGrads<B> {
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::dispatch::{FusedOp, Routed, route, same};
    type Args<B> = (
        FusedScanInput<B>,
        Option<FloatTensor<B>>,
        FloatTensor<B>,
        FloatTensor<B>,
    );
    let args = (input, checkpoints, dy, dh_last);
    match route::<B, _, Args<Cpu>, Args<CpuAutodiff>>(FusedOp::Scan, args) {
        Routed::Cpu((i, ck, dy, dh)) => same(Cpu::fused_scan_backward(disc, i, ck, dy, dh)),
        // A backward called on the autodiff backend itself: tensor ops, differentiable.
        Routed::CpuAutodiff((i, _, dy, dh)) => same(reference_backward(disc, i, dy, dh)),
        // The kernel's backward on a plain GPU backend; tensor ops (differentiable) on its
        // `Autodiff`, where `SsmBackend::fused_scan_backward` keeps its default body.
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu((i, ck, dy, dh)) => crate::dispatch::on_gpu!(B, (i, ck, dy, dh), |a: G| {
            let (i, ck, dy, dh) = a;
            G::fused_scan_backward(disc, i, ck, dy, dh)
        }),
        Routed::Other((i, _, dy, dh)) => reference_backward(disc, i, dy, dh),
    }
}

/// The forward in tensor ops (the parallel scan): the body for backends without a kernel.
fn tensor_op_forward<B: Backend>(
    disc: Discretization,
    input: FusedScanInput<B>,
) -> FusedScanOutput<B> {
    let (y, h_last) =
        selective_scan_parallel(disc, SelectiveScanInput::<B>::from_primitives(input));
    FusedScanOutput {
        y: prim(y),
        h_last: prim(h_last),
        checkpoints: None,
    }
}

/// The crate's implementation detail behind [`fused_scan_forward`]: a backend with a fused scan.
/// The default bodies are the tensor-op formulation; `NdArray<f32>` overrides both with the
/// kernel and `Autodiff<B>` records one graph node.
pub(crate) trait SsmBackend: Backend {
    /// Fused forward: discretization, scan, `⟨h, C⟩` and `+ D x`. When `save_checkpoints`,
    /// the backend may return data that makes [`SsmBackend::fused_scan_backward`] cheaper.
    fn fused_scan_forward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        save_checkpoints: bool,
    ) -> FusedScanOutput<Self> {
        let _ = save_checkpoints;
        tensor_op_forward(disc, input)
    }

    /// Fused backward: gradients of every input given `dy` `[B, L, E]` and `dh_last`
    /// `[B, E, N]`, and the `checkpoints` returned by the forward (if any). Implementations
    /// recompute the forward states rather than storing them.
    fn fused_scan_backward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        checkpoints: Option<FloatTensor<Self>>,
        dy: FloatTensor<Self>,
        dh_last: FloatTensor<Self>,
    ) -> FusedScanGrads<Self> {
        let _ = checkpoints;
        reference_backward(disc, input, dy, dh_last)
    }
}

impl<B: Backend> SelectiveScanInput<B> {
    /// The typed view of a [`FusedScanInput`].
    fn from_primitives(p: FusedScanInput<B>) -> Self {
        Self {
            x: wrap(p.x),
            delta: wrap(p.delta),
            a: wrap(p.a),
            b: wrap(p.b),
            c: wrap(p.c),
            d: p.d.map(wrap),
            h0: p.h0.map(wrap),
        }
    }
}

/// The adjoint of the selective scan in tensor ops: the default body of
/// the fused backward on backends without a kernel (see [`fused_scan_backward`]), public so that
/// it can be tested and reused. Recomputes the states with the parallel scan.
///
/// With `u_t = F_t B_t x_t`, `h_t = Ā_t h_{t−1} + u_t`, `y_t = ⟨h_t, C_t⟩ + D x_t`:
/// `∂C_t = Σ_e dy_t h_t`, `∂D = Σ_{b,t} dy ⊙ x`, `∂x_t = D dy_t + Σ_n g_t F_t B_t`,
/// `∂B_t = Σ_e g_t F_t x_t`, `∂Ā_t = g_t h_{t−1}`, `∂F_t = g_t B_t x_t`, then the chain rule
/// through `(Ā, F)(Δ, A)` and `∂h0 = Ā_0 g_0`.
pub fn reference_backward<B: Backend>(
    disc: Discretization,
    input: FusedScanInput<B>,
    dy: FloatTensor<B>,
    dh_last: FloatTensor<B>,
) -> FusedScanGrads<B> {
    let t = SelectiveScanInput::<B>::from_primitives(input);
    let dy = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(dy));
    let dh_last = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(dh_last));
    let [bs, l, e] = t.x.dims();
    let n = t.a.dims()[1];
    let device = t.x.device();
    let (abar, factor) = disc.tensors(t.delta.clone(), t.a.clone()); // [B, L, E, N] each
    let (_, bx) = recurrence_inputs(disc, t.x.clone(), t.delta.clone(), t.a.clone(), t.b.clone()); // [B, L, E, N]
    let h = scan_parallel(abar.clone(), bx, t.h0.clone()); // [B, L, E, N]
    let h_init =
        t.h0.clone()
            .unwrap_or_else(|| Tensor::zeros([bs, e, n], &device))
            .reshape([bs, 1, e, n]); // [B, 1, E, N]
    let h_prev = if l == 1 {
        h_init
    } else {
        Tensor::cat(vec![h_init, h.clone().narrow(1, 0, l - 1)], 1) // [B, L, E, N]
    };

    // Adjoint: g_t = Ā_{t+1} g_{t+1} + C_t dy_t, run as a forward scan on the flipped sequence.
    let dy4 = dy.clone().unsqueeze_dim::<4>(3); // [B, L, E, 1]
    let src = t.c.clone().unsqueeze_dim::<4>(2) * dy4.clone(); // [B, L, E, N]
    let abar_flip = abar.clone().flip([1]); // [B, L, E, N]
    let a_rev = if l == 1 {
        Tensor::ones([bs, 1, e, n], &device)
    } else {
        Tensor::cat(
            vec![
                Tensor::ones([bs, 1, e, n], &device),
                abar_flip.narrow(1, 0, l - 1),
            ],
            1,
        ) // [B, L, E, N]
    };
    let g = scan_parallel(a_rev, src.flip([1]), Some(dh_last)).flip([1]); // [B, L, E, N]

    let b4 = t.b.clone().unsqueeze_dim::<4>(2); // [B, L, 1, N]
    let x4 = t.x.clone().unsqueeze_dim::<4>(3); // [B, L, E, 1]
    let d_c: Tensor<B, 3> = (dy4 * h).sum_dim(2).reshape([bs, l, n]); // [B, L, N]
    let gf = g.clone() * factor; // [B, L, E, N]
    let mut d_x: Tensor<B, 3> = (gf.clone() * b4.clone()).sum_dim(3).reshape([bs, l, e]); // [B, L, E]
    let d_d = t.d.map(|d| {
        d_x = d_x.clone() + dy.clone() * d.reshape([1, 1, e]);
        let dd: Tensor<B, 1> = (dy.clone() * t.x.clone()).sum_dims(&[0, 1]).reshape([e]); // [E]
        prim(dd)
    });
    let d_b: Tensor<B, 3> = (gf * x4.clone()).sum_dim(2).reshape([bs, l, n]); // [B, L, N]
    let d_abar = g.clone() * h_prev; // [B, L, E, N]
    let d_factor = g.clone() * b4 * x4; // [B, L, E, N]
    let [dabar_ddelta, dabar_da, df_ddelta, df_da] = disc.tensor_partials(t.delta, t.a); // [B, L, E, N] each
    let d_delta: Tensor<B, 3> = (d_abar.clone() * dabar_ddelta + d_factor.clone() * df_ddelta)
        .sum_dim(3)
        .reshape([bs, l, e]); // [B, L, E]
    let d_a: Tensor<B, 2> = (d_abar * dabar_da + d_factor * df_da)
        .sum_dims(&[0, 1])
        .reshape([e, n]); // [E, N]
    let d_h0 = t.h0.map(|_| {
        let g0: Tensor<B, 3> = g.narrow(1, 0, 1).reshape([bs, e, n]); // [B, E, N]
        let a0: Tensor<B, 3> = abar.narrow(1, 0, 1).reshape([bs, e, n]); // [B, E, N]
        prim(a0 * g0)
    });
    FusedScanGrads {
        x: prim(d_x),
        delta: prim(d_delta),
        a: prim(d_a),
        b: prim(d_b),
        c: prim(d_c),
        d: d_d,
        h0: d_h0,
    }
}
