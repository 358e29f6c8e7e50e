//! [`SsmBackend`] for the CubeCL backends (`Wgpu`, `Cuda`): the selective scan as two `#[cube]`
//! kernels, a forward and a backward with recomputation, that never hold `[B, L, E, N]`.
//!
//! # Glossary
//! - `x`, `Δ` `[B, L, E]`; `A` `[E, N]`; `B`, `C` `[B, L, N]`; `D` `[E]`; `h` `[B, E, N]`.
//! - `z = Δ·A`; `Ā = Ā(z)` and `F = F(Δ, A)` the discretized transition and input factor
//!   ([`Discretization`]); `h_t = Ā_t ⊙ h_{t−1} + F_t B_t x_t`, `y_t = ⟨h_t, C_t⟩ + D x_t`.
//! - `K`: the checkpoint interval (`K = N` steps); `ck` `[B, E, ⌈L/K⌉, N]`: the state before each
//!   interval, saved by the forward.
//! - `g_t = ∂ℓ/∂h_t` `[B, E, N]`, the adjoint: `g_t = Ā_{t+1} g_{t+1} + C_t dy_t`.
//!
//! # Work layout
//! - **Forward**: one thread per `(b, e)` walks the sequence and keeps its `N` states in the
//!   `h` output (`[B, E, N]`, its final value is `h_L`), writing `y_t` after each step and, for
//!   the backward, the state at the start of every interval of `K` steps.
//! - **Backward**: one cube per `(b, tile of TILE channels)`, one thread per channel. Intervals
//!   are visited last to first: a thread recomputes the interval's states from its checkpoint
//!   into a scratch `[B, E, K, N]`, then walks it backwards, updating `g`. The per-channel
//!   gradients (`∂x`, `∂Δ`) stay in the thread; `∂A` is summed per `(b, e)` and over `b` after
//!   the kernel; `∂B_t` and `∂C_t` sum over channels, first in shared memory within the cube
//!   (one barrier pair per step) and then over tiles after the kernel.
//!
//! The backward keeps `2·TILE·N` floats in shared memory, so it takes `N ≤ 64`; larger states
//! fall back to the tensor-op adjoint.
//!
//! Memory beyond the inputs and outputs: `B·E·(⌈L/K⌉ + K)·N` floats of checkpoints and scratch
//! (about `B·E·(L + N²)` with `K = N`) and `B·⌈E/TILE⌉·L·N` per-tile partial sums, against the
//! `[B, L, E, N]` tensors of the tensor-op path.
//!
//! No subgroup (plane) operations: CubeCL turns them off on CPU adapters such as lavapipe.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{Shape, TensorMetadata, ops::FloatTensorOps};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, kernel::into_contiguous, tensor::CubeTensor,
};
use cubecl::prelude::*;

use super::backend::{
    FusedScanGrads, FusedScanInput, FusedScanOutput, SsmBackend, reference_backward,
};
use crate::backend::cube_empty;
use crate::ssm::discretization::Discretization;

/// Launches of the two kernels in this process (forward, backward): how the tests see that the
/// kernels, not the tensor-op fallback, ran.
static LAUNCHES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// `[forward, backward]` launches of the CubeCL scan kernels in this process.
pub fn cubecl_scan_launches() -> [u64; 2] {
    LAUNCHES.each_ref().map(|c| c.load(Ordering::Relaxed))
}

/// Channels per cube in the backward (threads that share the `∂B`/`∂C` sums).
const TILE: usize = 32;
/// The largest state size `N` of the kernel backward: its shared memory holds `2·TILE·N` floats,
/// 16 KiB at `N = 64` (the least a WebGPU device must offer). Larger states take the tensor-op
/// adjoint ([`reference_backward`]), with a one-time warning.
const MAX_KERNEL_STATES: usize = 64;

/// Threads per cube in the forward.
const FORWARD_CUBE: usize = 64;

/// Comptime codes of the discretization rules.
const ZOH: u32 = 0;
const SIMPLIFIED: u32 = 1;
const GENERALIZED: u32 = 2;

/// `(comptime rule code, α)` of a discretization.
fn rule(disc: Discretization) -> (u32, f32) {
    match disc {
        Discretization::ZeroOrderHold => (ZOH, 0.0),
        Discretization::Simplified => (SIMPLIFIED, 0.0),
        Discretization::Generalized { alpha } => (GENERALIZED, alpha as f32),
    }
}

/// `φ₁(z) = (eᶻ − 1)/z`, by its series near 0 (as the CPU kernel).
#[cube]
fn phi1(z: f32) -> f32 {
    let mut out = (z.exp() - 1.0) / z;
    if z.abs() < 0.1 {
        out = 1.0 + z * (0.5 + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (1.0 / 120.0 + z / 720.0))));
    }
    out
}

/// `ψ(z) = (z eᶻ − eᶻ + 1)/z²` (`∂φ₁/∂z`), by its series near 0.
#[cube]
fn psi(z: f32) -> f32 {
    let mut out = (z * z.exp() - z.exp() + 1.0) / (z * z);
    if z.abs() < 0.25 {
        out = 0.5
            + z * (1.0 / 3.0 + z * (1.0 / 8.0 + z * (1.0 / 30.0 + z * (1.0 / 144.0 + z / 840.0))));
    }
    out
}

/// `Ā(Δ, A)` under the rule.
#[cube]
fn abar_of(delta: f32, a: f32, alpha: f32, #[comptime] disc: u32) -> f32 {
    let z = delta * a;
    let mut out = z.exp();
    if disc == GENERALIZED {
        out = (1.0 + alpha * z) / (1.0 - (1.0 - alpha) * z);
    }
    out
}

/// `F(Δ, A)`, the factor of `B_t x_t`, under the rule.
#[cube]
fn factor_of(delta: f32, a: f32, alpha: f32, #[comptime] disc: u32) -> f32 {
    let z = delta * a;
    let mut out = delta;
    if disc == ZOH {
        out = delta * phi1(z);
    }
    if disc == GENERALIZED {
        out = delta / (1.0 - (1.0 - alpha) * z);
    }
    out
}

/// `∂Ā/∂Δ · u + ∂F/∂Δ · v` (the `Δ` gradient of one state, given `u = ∂ℓ/∂Ā`, `v = ∂ℓ/∂F`).
#[cube]
fn grad_delta(delta: f32, a: f32, alpha: f32, u: f32, v: f32, #[comptime] disc: u32) -> f32 {
    let z = delta * a;
    let mut out = a * z.exp() * u + z.exp() * v;
    if disc == SIMPLIFIED {
        out = a * z.exp() * u + v;
    }
    if disc == GENERALIZED {
        let inv = 1.0 / (1.0 - (1.0 - alpha) * z);
        out = (a * u + v) * inv * inv;
    }
    out
}

/// `∂Ā/∂A · u + ∂F/∂A · v` (the `A` gradient of one state).
#[cube]
fn grad_a(delta: f32, a: f32, alpha: f32, u: f32, v: f32, #[comptime] disc: u32) -> f32 {
    let z = delta * a;
    let mut out = delta * z.exp() * u + delta * delta * psi(z) * v;
    if disc == SIMPLIFIED {
        out = delta * z.exp() * u;
    }
    if disc == GENERALIZED {
        let inv = 1.0 / (1.0 - (1.0 - alpha) * z);
        out = (delta * u + (1.0 - alpha) * delta * delta * v) * inv * inv;
    }
    out
}

/// The forward: one thread per `(b, e)`. `h` starts at `h0` (or zeros) and ends at `h_L`;
/// with `save`, `ck[b, e, c, :]` is the state before step `c·K`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
// `save` is comptime and `t % k` is not: the `#[cube]` macro takes them in separate `if`s.
#[allow(clippy::collapsible_if)]
fn scan_forward_kernel(
    x: &Tensor<f32>,      // [B, L, E]
    delta: &Tensor<f32>,  // [B, L, E]
    a: &Tensor<f32>,      // [E, N]
    bm: &Tensor<f32>,     // [B, L, N]
    cm: &Tensor<f32>,     // [B, L, N]
    d: &Tensor<f32>,      // [E] (read when has_d)
    h0: &Tensor<f32>,     // [B, E, N] (read when has_h0)
    y: &mut Tensor<f32>,  // [B, L, E]
    h: &mut Tensor<f32>,  // [B, E, N]
    ck: &mut Tensor<f32>, // [B, E, ⌈L/K⌉, N] (written when save)
    alpha: f32,
    interval: u32,
    #[comptime] disc: u32,
    #[comptime] has_d: bool,
    #[comptime] has_h0: bool,
    #[comptime] save: bool,
) {
    let batch = y.shape(0);
    let len = y.shape(1);
    let width = y.shape(2);
    let n_state = a.shape(1);
    let k = interval as usize;
    if ABSOLUTE_POS >= batch * width {
        terminate!();
    }
    let b = ABSOLUTE_POS / width;
    let e = ABSOLUTE_POS % width;
    let h_row = b * h.stride(0) + e * h.stride(1);
    for n in 0..n_state {
        let mut init = 0.0;
        if has_h0 {
            init = h0[b * h0.stride(0) + e * h0.stride(1) + n * h0.stride(2)];
        }
        h[h_row + n * h.stride(2)] = init;
    }
    let mut skip = 0.0;
    if has_d {
        skip = d[e * d.stride(0)];
    }
    for t in 0..len {
        let xv = x[b * x.stride(0) + t * x.stride(1) + e * x.stride(2)];
        let dv = delta[b * delta.stride(0) + t * delta.stride(1) + e * delta.stride(2)];
        if save {
            if t % k == 0 {
                let c = t / k;
                for n in 0..n_state {
                    let at = b * ck.stride(0) + e * ck.stride(1) + c * ck.stride(2);
                    ck[at + n * ck.stride(3)] = h[h_row + n * h.stride(2)];
                }
            }
        }
        let mut acc = skip * xv;
        for n in 0..n_state {
            let av = a[e * a.stride(0) + n * a.stride(1)];
            let bv = bm[b * bm.stride(0) + t * bm.stride(1) + n * bm.stride(2)];
            let cv = cm[b * cm.stride(0) + t * cm.stride(1) + n * cm.stride(2)];
            let at = h_row + n * h.stride(2);
            let hv =
                abar_of(dv, av, alpha, disc) * h[at] + factor_of(dv, av, alpha, disc) * bv * xv;
            h[at] = hv;
            acc += hv * cv;
        }
        y[b * y.stride(0) + t * y.stride(1) + e * y.stride(2)] = acc;
    }
}

/// The backward: one cube per `(tile of TILE channels, b)`, one thread per channel; see the
/// module docs. `g` ends at `∂ℓ/∂h0 = Ā_0 g_0`; `da` holds `Σ_t ∂ℓ/∂A` per `(b, e)`; `db`/`dc`
/// `[B, tiles, L, N]` hold the per-tile sums over channels.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
// Kernel code keeps to the arithmetic CubeCL translates (no `usize::div_ceil`).
#[allow(clippy::manual_div_ceil)]
fn scan_backward_kernel(
    x: &Tensor<f32>,          // [B, L, E]
    delta: &Tensor<f32>,      // [B, L, E]
    a: &Tensor<f32>,          // [E, N]
    bm: &Tensor<f32>,         // [B, L, N]
    cm: &Tensor<f32>,         // [B, L, N]
    d: &Tensor<f32>,          // [E] (read when has_d)
    ck: &Tensor<f32>,         // [B, E, ⌈L/K⌉, N]
    dy: &Tensor<f32>,         // [B, L, E]
    dh_last: &Tensor<f32>,    // [B, E, N]
    hs: &mut Tensor<f32>,     // [B, E, K, N] scratch
    g: &mut Tensor<f32>,      // [B, E, N]
    dx: &mut Tensor<f32>,     // [B, L, E]
    ddelta: &mut Tensor<f32>, // [B, L, E]
    da: &mut Tensor<f32>,     // [B, E, N]
    db: &mut Tensor<f32>,     // [B, tiles, L, N]
    dc: &mut Tensor<f32>,     // [B, tiles, L, N]
    alpha: f32,
    interval: u32,
    #[comptime] disc: u32,
    #[comptime] has_d: bool,
    #[comptime] tile: usize,
    #[comptime] n_state: usize,
) {
    let len = x.shape(1);
    let width = x.shape(2);
    let k = interval as usize;
    let n_chunks = (len + k - 1) / k;
    let tid = UNIT_POS_X as usize;
    let tile_idx = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let e = tile_idx * tile + tid;
    let valid = e < width;
    // Per-thread contributions to ∂B_t and ∂C_t, summed over the tile's channels after a barrier.
    let mut share_b = SharedMemory::<f32>::new(tile * n_state);
    let mut share_c = SharedMemory::<f32>::new(tile * n_state);

    let g_row = b * g.stride(0) + e * g.stride(1);
    let da_row = b * da.stride(0) + e * da.stride(1);
    let hs_row = b * hs.stride(0) + e * hs.stride(1);
    let ck_row = b * ck.stride(0) + e * ck.stride(1);
    let mut skip = 0.0;
    if valid {
        if has_d {
            skip = d[e * d.stride(0)];
        }
        for n in 0..n_state {
            g[g_row + n * g.stride(2)] =
                dh_last[b * dh_last.stride(0) + e * dh_last.stride(1) + n * dh_last.stride(2)];
            da[da_row + n * da.stride(2)] = 0.0;
        }
    }
    for ci in 0..n_chunks {
        let c = n_chunks - 1 - ci;
        let t0 = c * k;
        let mut t1 = t0 + k;
        if t1 > len {
            t1 = len;
        }
        // Recompute the interval's states h_{t0} … h_{t1−1} from the checkpoint before t0.
        if valid {
            for n in 0..n_state {
                let av = a[e * a.stride(0) + n * a.stride(1)];
                let mut hv = ck[ck_row + c * ck.stride(2) + n * ck.stride(3)];
                for t in t0..t1 {
                    let xv = x[b * x.stride(0) + t * x.stride(1) + e * x.stride(2)];
                    let dv = delta[b * delta.stride(0) + t * delta.stride(1) + e * delta.stride(2)];
                    let bv = bm[b * bm.stride(0) + t * bm.stride(1) + n * bm.stride(2)];
                    hv = abar_of(dv, av, alpha, disc) * hv
                        + factor_of(dv, av, alpha, disc) * bv * xv;
                    hs[hs_row + (t - t0) * hs.stride(2) + n * hs.stride(3)] = hv;
                }
            }
        }
        for step in 0..(t1 - t0) {
            let t = t1 - 1 - step;
            if valid {
                let xv = x[b * x.stride(0) + t * x.stride(1) + e * x.stride(2)];
                let dv = delta[b * delta.stride(0) + t * delta.stride(1) + e * delta.stride(2)];
                let dyv = dy[b * dy.stride(0) + t * dy.stride(1) + e * dy.stride(2)];
                let mut dx_acc = skip * dyv;
                let mut ddelta_acc = 0.0;
                for n in 0..n_state {
                    let av = a[e * a.stride(0) + n * a.stride(1)];
                    let bv = bm[b * bm.stride(0) + t * bm.stride(1) + n * bm.stride(2)];
                    let cv = cm[b * cm.stride(0) + t * cm.stride(1) + n * cm.stride(2)];
                    let h_t = hs[hs_row + (t - t0) * hs.stride(2) + n * hs.stride(3)];
                    let mut h_prev = ck[ck_row + c * ck.stride(2) + n * ck.stride(3)];
                    if t > t0 {
                        h_prev = hs[hs_row + (t - t0 - 1) * hs.stride(2) + n * hs.stride(3)];
                    }
                    let at = g_row + n * g.stride(2);
                    let gv = g[at] + cv * dyv; // g_t
                    let f = factor_of(dv, av, alpha, disc);
                    dx_acc += gv * f * bv;
                    share_b[tid * n_state + n] = gv * f * xv;
                    share_c[tid * n_state + n] = dyv * h_t;
                    let d_abar = gv * h_prev;
                    let d_factor = gv * bv * xv;
                    ddelta_acc += grad_delta(dv, av, alpha, d_abar, d_factor, disc);
                    let da_at = da_row + n * da.stride(2);
                    da[da_at] += grad_a(dv, av, alpha, d_abar, d_factor, disc);
                    g[at] = abar_of(dv, av, alpha, disc) * gv; // Ā_t g_t, for step t − 1
                }
                dx[b * dx.stride(0) + t * dx.stride(1) + e * dx.stride(2)] = dx_acc;
                ddelta[b * ddelta.stride(0) + t * ddelta.stride(1) + e * ddelta.stride(2)] =
                    ddelta_acc;
            } else {
                for n in 0..n_state {
                    share_b[tid * n_state + n] = 0.0;
                    share_c[tid * n_state + n] = 0.0;
                }
            }
            sync_cube();
            let mut j = tid;
            while j < n_state {
                let mut sum_b = 0.0;
                let mut sum_c = 0.0;
                for r in 0..tile {
                    sum_b += share_b[r * n_state + j];
                    sum_c += share_c[r * n_state + j];
                }
                let at_b = b * db.stride(0) + tile_idx * db.stride(1) + t * db.stride(2);
                db[at_b + j * db.stride(3)] = sum_b;
                let at_c = b * dc.stride(0) + tile_idx * dc.stride(1) + t * dc.stride(2);
                dc[at_c + j * dc.stride(3)] = sum_c;
                j += tile;
            }
            sync_cube();
        }
    }
}

/// The scan's kernels on one CubeCL runtime.
type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// Inputs made contiguous, with their sizes `[B, L, E, N]`.
struct Prepared<R: CubeRuntime> {
    x: CubeTensor<R>,
    delta: CubeTensor<R>,
    a: CubeTensor<R>,
    b: CubeTensor<R>,
    c: CubeTensor<R>,
    d: Option<CubeTensor<R>>,
    h0: Option<CubeTensor<R>>,
    dims: [usize; 4],
}

fn prepare<R: CubeRuntime, BT: BoolElement>(input: FusedScanInput<Cube<R, BT>>) -> Prepared<R> {
    let xs = input.x.shape();
    let n = input.a.shape()[1];
    Prepared {
        x: into_contiguous(input.x),
        delta: into_contiguous(input.delta),
        a: into_contiguous(input.a),
        b: into_contiguous(input.b),
        c: into_contiguous(input.c),
        d: input.d.map(into_contiguous),
        h0: input.h0.map(into_contiguous),
        dims: [xs[0], xs[1], xs[2], n],
    }
}

/// The checkpoint interval `K` for `N` states.
fn interval(n: usize) -> usize {
    n.max(1)
}

/// Runs the forward kernel; returns `(y, h_L, checkpoints if save)`.
fn forward<R: CubeRuntime>(
    disc: Discretization,
    p: &Prepared<R>,
    save: bool,
) -> (CubeTensor<R>, CubeTensor<R>, Option<CubeTensor<R>>) {
    let [bs, l, e, n] = p.dims;
    let k = interval(n);
    let (code, alpha) = rule(disc);
    let y = cube_empty(&p.x, [bs, l, e]);
    let h = cube_empty(&p.x, [bs, e, n]);
    let ck = if save {
        cube_empty(&p.x, [bs, e, l.div_ceil(k), n])
    } else {
        cube_empty(&p.x, [1, 1, 1, 1])
    };
    // Absent optional inputs are never read; any tensor fills the argument.
    let d = p.d.clone().unwrap_or_else(|| p.x.clone());
    let h0 = p.h0.clone().unwrap_or_else(|| p.x.clone());
    let threads = bs * e;
    let client = p.x.client.clone();
    LAUNCHES[0].fetch_add(1, Ordering::Relaxed);
    scan_forward_kernel::launch::<R>(
        &client,
        CubeCount::Static(threads.div_ceil(FORWARD_CUBE) as u32, 1, 1),
        CubeDim::new_1d(FORWARD_CUBE as u32),
        p.x.clone().into_tensor_arg(),
        p.delta.clone().into_tensor_arg(),
        p.a.clone().into_tensor_arg(),
        p.b.clone().into_tensor_arg(),
        p.c.clone().into_tensor_arg(),
        d.into_tensor_arg(),
        h0.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        h.clone().into_tensor_arg(),
        ck.clone().into_tensor_arg(),
        alpha,
        k as u32,
        code,
        p.d.is_some(),
        p.h0.is_some(),
        save,
    );
    (y, h, save.then_some(ck))
}

impl<R: CubeRuntime, BT: BoolElement> SsmBackend for Cube<R, BT> {
    fn fused_scan_forward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        save_checkpoints: bool,
    ) -> FusedScanOutput<Self> {
        let p = prepare(input);
        let (y, h_last, checkpoints) = forward(disc, &p, save_checkpoints);
        FusedScanOutput {
            y,
            h_last,
            checkpoints,
        }
    }

    fn fused_scan_backward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        checkpoints: Option<CubeTensor<R>>,
        dy: CubeTensor<R>,
        dh_last: CubeTensor<R>,
    ) -> FusedScanGrads<Self> {
        let n = input.a.shape()[1];
        if n > MAX_KERNEL_STATES {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "seqlayers: the CubeCL scan backward holds N ≤ {MAX_KERNEL_STATES} states in shared \
                     memory; N = {n} takes the tensor-op adjoint, which allocates [B, L, E, N] \
                     tensors (reported once)"
                )
            });
            return reference_backward(disc, input, dy, dh_last);
        }
        let p = prepare(input);
        let [bs, l, e, n] = p.dims;
        let k = interval(n);
        let ck = match checkpoints {
            Some(ck) => ck,
            None => forward(disc, &p, true)
                .2
                .expect("the forward saves when asked"),
        };
        let dy = into_contiguous(dy);
        let dh_last = into_contiguous(dh_last);
        let (code, alpha) = rule(disc);
        let tiles = e.div_ceil(TILE);
        let hs = cube_empty(&p.x, [bs, e, k, n]);
        let g = cube_empty(&p.x, [bs, e, n]);
        let dx = cube_empty(&p.x, [bs, l, e]);
        let ddelta = cube_empty(&p.x, [bs, l, e]);
        let da = cube_empty(&p.x, [bs, e, n]);
        let db = cube_empty(&p.x, [bs, tiles, l, n]);
        let dc = cube_empty(&p.x, [bs, tiles, l, n]);
        let d = p.d.clone().unwrap_or_else(|| p.x.clone());
        let client = p.x.client.clone();
        LAUNCHES[1].fetch_add(1, Ordering::Relaxed);
        scan_backward_kernel::launch::<R>(
            &client,
            CubeCount::Static(tiles as u32, bs as u32, 1),
            CubeDim::new_1d(TILE as u32),
            p.x.clone().into_tensor_arg(),
            p.delta.clone().into_tensor_arg(),
            p.a.clone().into_tensor_arg(),
            p.b.clone().into_tensor_arg(),
            p.c.clone().into_tensor_arg(),
            d.into_tensor_arg(),
            ck.into_tensor_arg(),
            dy.clone().into_tensor_arg(),
            dh_last.into_tensor_arg(),
            hs.into_tensor_arg(),
            g.clone().into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            ddelta.clone().into_tensor_arg(),
            da.clone().into_tensor_arg(),
            db.clone().into_tensor_arg(),
            dc.clone().into_tensor_arg(),
            alpha,
            k as u32,
            code,
            p.d.is_some(),
            TILE,
            n,
        );
        // Sums the kernel leaves to tensor ops: over tiles (∂B, ∂C), batch (∂A), and ∂D = Σ dy ⊙ x.
        let over_tiles = |t: CubeTensor<R>| {
            Self::float_reshape(Self::float_sum_dim(t, 1), Shape::new([bs, l, n])) // [B, L, N]
        };
        let d_a = Self::float_reshape(Self::float_sum_dim(da, 0), Shape::new([e, n])); // [E, N]
        let d_d = p.d.as_ref().map(|_| {
            let prod = Self::float_mul(dy, p.x.clone()); // [B, L, E]
            let summed = Self::float_sum_dim(Self::float_sum_dim(prod, 0), 1); // [1, 1, E]
            Self::float_reshape(summed, Shape::new([e])) // [E]
        });
        FusedScanGrads {
            x: dx,
            delta: ddelta,
            a: d_a,
            b: over_tiles(db),
            c: over_tiles(dc),
            d: d_d,
            h0: p.h0.as_ref().map(|_| g),
        }
    }
}
