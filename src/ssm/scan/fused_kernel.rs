//! The fused selective-scan CPU kernel on plain `f32` slices (no Burn types).
//!
//! # Glossary
//! - `B` batch, `L` length, `E` channels, `N` state size; `K` = [`CHUNK`] steps per checkpoint.
//! - `x`, `Δ` (`delta`) `[B, L, E]`; `A` `[E, N]`; `B_t` (`bm`), `C_t` `[B, L, N]`; `D` `[E]`;
//!   `h0`, `h_L` `[B, E, N]`.
//! - `Ā`, `F`: discretized transition and B̄-factor, so `h_t = Ā_t h_{t−1} + F_t B_t x_t`.
//! - `g_t = ∂ℓ/∂h_t`: adjoint state; `carry = Ā_{t+1} g_{t+1}` flows backward in time.
//!
//! # Forward
//! One independent recurrence per `(batch b, channel e)`: for each step the `N` coefficients
//! `Ā, F` are computed on the fly (a vectorizable polynomial `exp`), the state `h` `[N]` lives
//! in a small buffer, and `y_t = Σ_n C_t h_t + D x_t` is written directly. Nothing of size
//! `[B, L, E, N]` exists. Optionally the state at the start of every chunk of `K` steps is saved
//! (`[B, E, ⌈L/K⌉, N]`, `1/K` of the full states) for the backward.
//!
//! # Backward (recompute, don't store)
//! Per `(b, e)`, chunks are processed last to first: the chunk's `K` states are recomputed from
//! its checkpoint (into a `(K+1)·N` buffer, with `Ā`, `F`), then the adjoint runs backward
//! through the chunk: `g_t = carry + C_t dy_t`, and
//! `∂C_t += dy_t h_t`, `∂x_t = D dy_t + Σ_n g_t F_t B_t`, `∂B_t += g_t F_t x_t`,
//! `∂Ā = g_t h_{t−1}`, `∂F = g_t B_t x_t` → `∂Δ_t`, `∂A` via the discretization's partials,
//! `carry = Ā_t g_t`; finally `∂h0 = carry`. The state is never recovered by dividing by `Ā`
//! (which can underflow to 0). Without saved checkpoints the backward first re-runs the forward
//! to make them.
//!
//! # Memory layout
//! At entry `x`, `Δ` (and `dy`) are transposed once to channel-major `[B, E, L]` so that each
//! task streams over `t` through contiguous memory; outputs are produced per task and scattered
//! back to `[B, L, E]`.
//!
//! # Parallelism
//! Work is split into tasks `(b, block of channels)`, run with rayon when the problem is large
//! enough ([`PAR_MIN_WORK`]); `∂B`, `∂C` (summed over channels) and `∂A`, `∂D` (summed over the
//! batch) are reduced after the tasks.

use rayon::prelude::*;

use crate::simd::{LANES, MulAdd, SimdLevel, fast_exp, hsum};
use crate::ssm::discretization::Discretization;

/// Steps per checkpoint chunk.
pub(crate) const CHUNK: usize = 64;

/// Below this many `B·L·E·N` elements the kernel runs on the calling thread.
const PAR_MIN_WORK: usize = 1 << 16;

/// Sizes of a fused-scan problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelDims {
    pub b: usize,
    pub l: usize,
    pub e: usize,
    pub n: usize,
}

impl KernelDims {
    /// Number of checkpoint chunks, `⌈L/K⌉`.
    pub(crate) fn chunks(&self) -> usize {
        self.l.div_ceil(CHUNK)
    }
}

/// Borrowed kernel inputs (row-major, shapes as in the module glossary).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelInput<'a> {
    pub x: &'a [f32],
    pub delta: &'a [f32],
    pub a: &'a [f32],
    pub bm: &'a [f32],
    pub c: &'a [f32],
    pub d: Option<&'a [f32]>,
    pub h0: Option<&'a [f32]>,
}

/// Kernel forward outputs.
#[derive(Debug, Clone)]
pub(crate) struct KernelOutput {
    /// `[B, L, E]`.
    pub y: Vec<f32>,
    /// `[B, E, N]`.
    pub h_last: Vec<f32>,
    /// `[B, E, ⌈L/K⌉, N]`: state before each chunk, when requested.
    pub checkpoints: Option<Vec<f32>>,
}

/// Kernel gradients (shapes of the inputs).
#[derive(Debug, Clone)]
pub(crate) struct KernelGrads {
    pub x: Vec<f32>,
    pub delta: Vec<f32>,
    pub a: Vec<f32>,
    pub bm: Vec<f32>,
    pub c: Vec<f32>,
    pub d: Option<Vec<f32>>,
    pub h0: Option<Vec<f32>>,
}

/// The discretization as seen by the kernel: coefficients and their partial derivatives.
trait Coeffs: Copy + Send + Sync {
    /// `(Ā, F)` at `(Δ, A)`.
    fn coeffs<M: MulAdd>(self, dt: f32, a: f32) -> (f32, f32);
    /// `(∂Ā/∂Δ, ∂Ā/∂A, ∂F/∂Δ, ∂F/∂A)` at `(Δ, A)`, given `Ā` from [`Coeffs::coeffs`].
    fn partials(self, dt: f32, a: f32, abar: f32) -> (f32, f32, f32, f32);
}

/// Zero-order hold: `Ā = e^z`, `F = Δ φ₁(z)`, `z = ΔA`.
#[derive(Clone, Copy)]
struct Zoh;
/// Mamba's rule: `Ā = e^z`, `F = Δ`.
#[derive(Clone, Copy)]
struct Simplified;
/// Generalized bilinear with `α`: `Ā = (1 + αz)/(1 − (1−α)z)`, `F = Δ/(1 − (1−α)z)`.
#[derive(Clone, Copy)]
struct Generalized {
    alpha: f32,
}

impl Coeffs for Zoh {
    #[inline(always)]
    fn coeffs<M: MulAdd>(self, dt: f32, a: f32) -> (f32, f32) {
        let z = dt * a;
        let abar = fast_exp::<M>(z);
        // φ₁(z) = (e^z − 1)/z: series near 0 (no cancellation), quotient elsewhere.
        let series =
            1.0 + z * (0.5 + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (1.0 / 120.0 + z / 720.0))));
        let small = z.abs() < 0.1;
        let z_safe = if small { 1.0 } else { z };
        let quotient = (abar - 1.0) / z_safe;
        (abar, dt * if small { series } else { quotient })
    }

    #[inline(always)]
    fn partials(self, dt: f32, a: f32, abar: f32) -> (f32, f32, f32, f32) {
        let z = dt * a;
        // ψ(z) = (z e^z − e^z + 1)/z²: series Σ (k+1) z^k/(k+2)! near 0, formula elsewhere.
        let series = 0.5
            + z * (1.0 / 3.0 + z * (1.0 / 8.0 + z * (1.0 / 30.0 + z * (1.0 / 144.0 + z / 840.0))));
        let small = z.abs() < 0.25;
        let z_safe = if small { 1.0 } else { z };
        let formula = (z_safe * abar - abar + 1.0) / (z_safe * z_safe);
        let psi = if small { series } else { formula };
        (a * abar, dt * abar, abar, dt * dt * psi)
    }
}

impl Coeffs for Simplified {
    #[inline(always)]
    fn coeffs<M: MulAdd>(self, dt: f32, a: f32) -> (f32, f32) {
        (fast_exp::<M>(dt * a), dt)
    }

    #[inline(always)]
    fn partials(self, dt: f32, a: f32, abar: f32) -> (f32, f32, f32, f32) {
        (a * abar, dt * abar, 1.0, 0.0)
    }
}

impl Coeffs for Generalized {
    #[inline(always)]
    fn coeffs<M: MulAdd>(self, dt: f32, a: f32) -> (f32, f32) {
        let z = dt * a;
        let den = 1.0 - (1.0 - self.alpha) * z;
        ((1.0 + self.alpha * z) / den, dt / den)
    }

    #[inline(always)]
    fn partials(self, dt: f32, a: f32, _abar: f32) -> (f32, f32, f32, f32) {
        let z = dt * a;
        let den = 1.0 - (1.0 - self.alpha) * z;
        let inv_den2 = 1.0 / (den * den);
        (
            a * inv_den2,
            dt * inv_den2,
            inv_den2,
            (1.0 - self.alpha) * dt * dt * inv_den2,
        )
    }
}

/// Kernel-side `(Ā, F)` for one scalar pair (for tests against the closed forms).
#[cfg(test)]
fn kernel_coeffs(disc: Discretization, dt: f32, a: f32) -> (f32, f32) {
    use crate::simd::Plain;
    match disc {
        Discretization::ZeroOrderHold => Zoh.coeffs::<Plain>(dt, a),
        Discretization::Simplified => Simplified.coeffs::<Plain>(dt, a),
        Discretization::Generalized { alpha } => Generalized {
            alpha: alpha as f32,
        }
        .coeffs::<Plain>(dt, a),
    }
}

/// Runs `f` with the discretization monomorphized into a [`Coeffs`] type.
macro_rules! with_coeffs {
    ($disc:expr, $k:ident => $body:expr) => {
        match $disc {
            Discretization::ZeroOrderHold => {
                let $k = Zoh;
                $body
            }
            Discretization::Simplified => {
                let $k = Simplified;
                $body
            }
            Discretization::Generalized { alpha } => {
                let $k = Generalized {
                    alpha: alpha as f32,
                };
                $body
            }
        }
    };
}

/// One task: batch `b`, channels `e0..e1`.
#[derive(Debug, Clone, Copy)]
struct Task {
    b: usize,
    e0: usize,
    e1: usize,
}

/// Splits the problem into `(b, channel block)` tasks; one block per batch when running serially.
fn tasks(dims: KernelDims) -> (Vec<Task>, bool) {
    let work = dims.b * dims.l * dims.e * dims.n;
    let parallel = work >= PAR_MIN_WORK && rayon::current_num_threads() > 1;
    let blocks = if parallel {
        (4 * rayon::current_num_threads())
            .div_ceil(dims.b)
            .clamp(1, dims.e)
    } else {
        1
    };
    let mut out = Vec::with_capacity(dims.b * blocks);
    for b in 0..dims.b {
        for j in 0..blocks {
            let e0 = j * dims.e / blocks;
            let e1 = (j + 1) * dims.e / blocks;
            if e1 > e0 {
                out.push(Task { b, e0, e1 });
            }
        }
    }
    (out, parallel)
}

/// Maps `f` over the tasks, in parallel when asked.
fn run_tasks<R: Send>(tasks: &[Task], parallel: bool, f: impl Fn(Task) -> R + Sync) -> Vec<R> {
    if parallel {
        tasks.par_iter().map(|&t| f(t)).collect()
    } else {
        tasks.iter().map(|&t| f(t)).collect()
    }
}

/// Sum of a short slice: [`LANES`] independent accumulators (full-width vector loads of what
/// the previous loop just stored, so store-to-load forwarding works), then a tree sum.
#[inline(always)]
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        for lane in 0..LANES {
            acc[lane] += chunk[lane];
        }
    }
    for (lane, x) in chunks.remainder().iter().enumerate() {
        acc[lane] += x;
    }
    hsum(acc)
}

/// One forward step over `N` for one channel: `h ← Ā h + F B_t x_t` and `prod = h ⊙ C_t`
/// (a separate function so its `&mut` slices are known not to alias: the loop vectorizes).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_step<K: Coeffs, M: MulAdd>(
    k: K,
    dt: f32,
    xt: f32,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    h: &mut [f32],
    prod: &mut [f32],
) {
    let n = h.len();
    let (a, b, c, prod) = (&a[..n], &b[..n], &c[..n], &mut prod[..n]);
    for j in 0..n {
        let (abar, f) = k.coeffs::<M>(dt, a[j]);
        let hn = M::madd(abar, h[j], f * b[j] * xt);
        h[j] = hn;
        prod[j] = hn * c[j];
    }
}

/// `[B, L, E]` → `[B, E, L]`: each channel's sequence becomes contiguous, so the task loops
/// over `t` read consecutive memory instead of striding by `E` (the task bodies receive `x`,
/// `Δ` and `dy` in this layout).
fn channel_major(v: &[f32], dims: KernelDims) -> Vec<f32> {
    let KernelDims {
        b: nb, l, e: ne, ..
    } = dims;
    let mut out = vec![0.0f32; nb * ne * l];
    for b in 0..nb {
        for t in 0..l {
            let src = &v[(b * l + t) * ne..(b * l + t + 1) * ne];
            for (e, &val) in src.iter().enumerate() {
                out[(b * ne + e) * l + t] = val;
            }
        }
    }
    out
}

/// Forward result of one task.
struct FwdTask {
    /// `[e1−e0, L]`.
    y: Vec<f32>,
    /// `[e1−e0, N]`.
    h_last: Vec<f32>,
    /// `[e1−e0, chunks, N]` (empty when not saved).
    ckpt: Vec<f32>,
}

crate::simd::simd_variants!(forward_task, forward_task_generic, forward_task_avx2, forward_task_avx512, forward_task_body,
    <K: Coeffs> (k: K, dims: KernelDims, inp: KernelInput<'_>, save: bool, task: Task) -> FwdTask);

/// Forward of one task: every channel of the block, all steps.
#[inline(always)]
fn forward_task_body<K: Coeffs, M: MulAdd>(
    k: K,
    dims: KernelDims,
    inp: KernelInput<'_>,
    save: bool,
    task: Task,
) -> FwdTask {
    let KernelDims { l, e: ne, n, .. } = dims;
    let nch = dims.chunks();
    let width = task.e1 - task.e0;
    let mut out = FwdTask {
        y: vec![0.0; width * l],
        h_last: vec![0.0; width * n],
        ckpt: if save {
            vec![0.0; width * nch * n]
        } else {
            Vec::new()
        },
    };
    let mut h = vec![0.0f32; n]; // [N]
    let mut prod = vec![0.0f32; n]; // [N]: h_t ⊙ C_t
    for (el, e) in (task.e0..task.e1).enumerate() {
        let a_row = &inp.a[e * n..(e + 1) * n]; // [N]
        let seq = (task.b * ne + e) * l; // start of this channel's x, Δ in [B, E, L]
        match inp.h0 {
            Some(h0) => h.copy_from_slice(&h0[(task.b * ne + e) * n..][..n]),
            None => h.fill(0.0),
        }
        let d_e = inp.d.map_or(0.0, |d| d[e]);
        for t in 0..l {
            if save && t % CHUNK == 0 {
                out.ckpt[(el * nch + t / CHUNK) * n..][..n].copy_from_slice(&h);
            }
            let row = task.b * l + t;
            let dt = inp.delta[seq + t];
            let xt = inp.x[seq + t];
            let b_row = &inp.bm[row * n..(row + 1) * n]; // [N]
            let c_row = &inp.c[row * n..(row + 1) * n]; // [N]
            forward_step::<K, M>(k, dt, xt, a_row, b_row, c_row, &mut h, &mut prod);
            out.y[el * l + t] = sum_lanes(&prod) + d_e * xt;
        }
        out.h_last[el * n..(el + 1) * n].copy_from_slice(&h);
    }
    out
}

/// Fused forward: `y`, `h_L` and optionally the chunk checkpoints.
pub(crate) fn forward(
    disc: Discretization,
    dims: KernelDims,
    input: KernelInput<'_>,
    save_checkpoints: bool,
) -> KernelOutput {
    with_coeffs!(disc, k => forward_impl(k, dims, input, save_checkpoints))
}

fn forward_impl<K: Coeffs>(
    k: K,
    dims: KernelDims,
    inp: KernelInput<'_>,
    save: bool,
) -> KernelOutput {
    let KernelDims { b: nb, l, e: ne, n } = dims;
    let nch = dims.chunks();
    let (x_cm, delta_cm) = (channel_major(inp.x, dims), channel_major(inp.delta, dims));
    let inp = KernelInput {
        x: &x_cm,
        delta: &delta_cm,
        ..inp
    };
    let (task_list, parallel) = tasks(dims);
    let level = SimdLevel::active();
    let results = run_tasks(&task_list, parallel, |task| {
        forward_task(level, k, dims, inp, save, task)
    });

    // Scatter task results into the output layouts.
    let mut y = vec![0.0f32; nb * l * ne];
    let mut h_last = vec![0.0f32; nb * ne * n];
    let mut checkpoints = save.then(|| vec![0.0f32; nb * ne * nch * n]);
    for (task, r) in task_list.iter().zip(results) {
        let width = task.e1 - task.e0;
        for (el, e) in (task.e0..task.e1).enumerate() {
            for t in 0..l {
                y[(task.b * l + t) * ne + e] = r.y[el * l + t];
            }
        }
        let base = task.b * ne + task.e0;
        h_last[base * n..(base + width) * n].copy_from_slice(&r.h_last);
        if let Some(ck) = checkpoints.as_mut() {
            ck[base * nch * n..(base + width) * nch * n].copy_from_slice(&r.ckpt);
        }
    }
    KernelOutput {
        y,
        h_last,
        checkpoints,
    }
}

/// Backward result of one task.
struct BwdTask {
    /// `[e1−e0, L]` each.
    dx: Vec<f32>,
    ddelta: Vec<f32>,
    /// `[e1−e0, N]` each.
    da: Vec<f32>,
    dh0: Vec<f32>,
    /// `[L, N]` each, summed over the task's channels.
    db: Vec<f32>,
    dc: Vec<f32>,
    /// `[e1−e0]`.
    dd: Vec<f32>,
}

/// Fused backward. `checkpoints` (from [`forward`]) are recomputed when `None`.
pub(crate) fn backward(
    disc: Discretization,
    dims: KernelDims,
    input: KernelInput<'_>,
    checkpoints: Option<&[f32]>,
    dy: &[f32],
    dh_last: &[f32],
) -> KernelGrads {
    let owned;
    let ckpt = match checkpoints {
        Some(c) => c,
        None => {
            owned = forward(disc, dims, input, true)
                .checkpoints
                .expect("forward was asked to save checkpoints");
            &owned[..]
        }
    };
    with_coeffs!(disc, k => backward_impl(k, dims, input, ckpt, dy, dh_last))
}

/// Incoming gradients and checkpoints, bundled for the task functions.
#[derive(Clone, Copy)]
struct Adjoint<'a> {
    ckpt: &'a [f32],
    dy: &'a [f32],
    dh_last: &'a [f32],
}

crate::simd::simd_variants!(backward_task, backward_task_generic, backward_task_avx2, backward_task_avx512, backward_task_body,
    <K: Coeffs> (k: K, dims: KernelDims, inp: KernelInput<'_>, adj: Adjoint<'_>, task: Task) -> BwdTask);

/// Backward of one task: chunks last to first, recompute then adjoint (see the module docs).
#[inline(always)]
fn backward_task_body<K: Coeffs, M: MulAdd>(
    k: K,
    dims: KernelDims,
    inp: KernelInput<'_>,
    adj: Adjoint<'_>,
    task: Task,
) -> BwdTask {
    let KernelDims { l, e: ne, n, .. } = dims;
    let nch = dims.chunks();
    let width = task.e1 - task.e0;
    let mut out = BwdTask {
        dx: vec![0.0; width * l],
        ddelta: vec![0.0; width * l],
        da: vec![0.0; width * n],
        dh0: vec![0.0; width * n],
        db: vec![0.0; l * n],
        dc: vec![0.0; l * n],
        dd: vec![0.0; width],
    };
    let mut hbuf = vec![0.0f32; (CHUNK + 1) * n]; // [K+1, N]: h_{start−1}, …, h_{end−1}
    let mut abuf = vec![0.0f32; CHUNK * n]; // [K, N]: Ā
    let mut fbuf = vec![0.0f32; CHUNK * n]; // [K, N]: F
    let mut carry = vec![0.0f32; n]; // [N]: Ā_{t+1} g_{t+1}
    let mut dx_terms = vec![0.0f32; n]; // [N]: g F B
    let mut ddelta_terms = vec![0.0f32; n]; // [N]: ∂Ā ∂Ā/∂Δ + ∂F ∂F/∂Δ
    for (el, e) in (task.e0..task.e1).enumerate() {
        let a_row = &inp.a[e * n..(e + 1) * n]; // [N]
        let seq = (task.b * ne + e) * l; // start of this channel's x, Δ, dy in [B, E, L]
        let d_e = inp.d.map_or(0.0, |d| d[e]);
        carry.copy_from_slice(&adj.dh_last[(task.b * ne + e) * n..][..n]);
        let mut dd_acc = 0.0f32;
        for ch in (0..nch).rev() {
            let start = ch * CHUNK;
            let end = (start + CHUNK).min(l);
            // Recompute the chunk's states from its checkpoint.
            hbuf[..n].copy_from_slice(&adj.ckpt[((task.b * ne + e) * nch + ch) * n..][..n]);
            for t in start..end {
                let i = t - start;
                let row = task.b * l + t;
                let dt = inp.delta[seq + t];
                let xt = inp.x[seq + t];
                let b_row = &inp.bm[row * n..(row + 1) * n]; // [N]
                let (prev, next) = hbuf.split_at_mut((i + 1) * n);
                let prev = &prev[i * n..(i + 1) * n]; // [N]
                let next = &mut next[..n]; // [N]
                let ab = &mut abuf[i * n..(i + 1) * n]; // [N]
                let fb = &mut fbuf[i * n..(i + 1) * n]; // [N]
                recompute_step::<K, M>(k, dt, xt, a_row, b_row, prev, next, ab, fb);
            }
            // Adjoint backward through the chunk.
            for t in (start..end).rev() {
                let i = t - start;
                let row = task.b * l + t;
                let dt = inp.delta[seq + t];
                let xt = inp.x[seq + t];
                let dyt = adj.dy[seq + t];
                let b_row = &inp.bm[row * n..(row + 1) * n]; // [N]
                let c_row = &inp.c[row * n..(row + 1) * n]; // [N]
                let h_prev = &hbuf[i * n..(i + 1) * n]; // [N]
                let h_cur = &hbuf[(i + 1) * n..(i + 2) * n]; // [N]
                let ab = &abuf[i * n..(i + 1) * n]; // [N]
                let fb = &fbuf[i * n..(i + 1) * n]; // [N]
                let db_row = &mut out.db[t * n..(t + 1) * n]; // [N]
                let dc_row = &mut out.dc[t * n..(t + 1) * n]; // [N]
                let da = &mut out.da[el * n..(el + 1) * n]; // [N]
                adjoint_step::<K, M>(
                    k,
                    AdjointScalars { dt, xt, dyt },
                    AdjointRows {
                        a: a_row,
                        b: b_row,
                        c: c_row,
                        h_prev,
                        h_cur,
                        abar: ab,
                        f: fb,
                    },
                    &mut carry,
                    &mut dx_terms,
                    &mut ddelta_terms,
                    db_row,
                    dc_row,
                    da,
                );
                out.dx[el * l + t] = sum_lanes(&dx_terms) + d_e * dyt;
                out.ddelta[el * l + t] = sum_lanes(&ddelta_terms);
                dd_acc += dyt * xt;
            }
        }
        out.dh0[el * n..(el + 1) * n].copy_from_slice(&carry);
        out.dd[el] = dd_acc;
    }
    out
}

/// Per-step scalars of the adjoint: `Δ_t`, `x_t`, `dy_t` (one channel).
#[derive(Clone, Copy)]
struct AdjointScalars {
    dt: f32,
    xt: f32,
    dyt: f32,
}

/// Per-step rows `[N]` read by the adjoint.
#[derive(Clone, Copy)]
struct AdjointRows<'a> {
    a: &'a [f32],
    b: &'a [f32],
    c: &'a [f32],
    h_prev: &'a [f32],
    h_cur: &'a [f32],
    abar: &'a [f32],
    f: &'a [f32],
}

/// One adjoint step over `N` (a separate function so that its `&mut` slices are known not to
/// alias, which lets LLVM vectorize after inlining). `carry` goes from `Ā_{t+1} g_{t+1}` to
/// `Ā_t g_t`; `dx_terms`/`ddelta_terms` receive the per-`n` terms of the `x` and `Δ` gradients.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adjoint_step<K: Coeffs, M: MulAdd>(
    k: K,
    s: AdjointScalars,
    r: AdjointRows<'_>,
    carry: &mut [f32],
    dx_terms: &mut [f32],
    ddelta_terms: &mut [f32],
    db_row: &mut [f32],
    dc_row: &mut [f32],
    da: &mut [f32],
) {
    let n = carry.len();
    let (dx_terms, ddelta_terms) = (&mut dx_terms[..n], &mut ddelta_terms[..n]);
    let (db_row, dc_row, da) = (&mut db_row[..n], &mut dc_row[..n], &mut da[..n]);
    let (a, b, c) = (&r.a[..n], &r.b[..n], &r.c[..n]);
    let (h_prev, h_cur, abar, f) = (&r.h_prev[..n], &r.h_cur[..n], &r.abar[..n], &r.f[..n]);
    for j in 0..n {
        let g = M::madd(c[j], s.dyt, carry[j]); // ∂ℓ/∂h_t
        dc_row[j] = M::madd(s.dyt, h_cur[j], dc_row[j]);
        let gf = g * f[j];
        dx_terms[j] = gf * b[j];
        db_row[j] = M::madd(gf, s.xt, db_row[j]);
        let d_abar = g * h_prev[j];
        let d_f = g * b[j] * s.xt;
        let (pad, paa, pfd, pfa) = k.partials(s.dt, a[j], abar[j]);
        ddelta_terms[j] = M::madd(d_abar, pad, d_f * pfd);
        da[j] = M::madd(d_abar, paa, M::madd(d_f, pfa, da[j]));
        carry[j] = abar[j] * g;
    }
}

/// One recompute step over `N`: `Ā`, `F` and `h_t = Ā h_{t−1} + F B_t x_t`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn recompute_step<K: Coeffs, M: MulAdd>(
    k: K,
    dt: f32,
    xt: f32,
    a: &[f32],
    b: &[f32],
    prev: &[f32],
    next: &mut [f32],
    abar: &mut [f32],
    f: &mut [f32],
) {
    let n = next.len();
    let (abar, f) = (&mut abar[..n], &mut f[..n]);
    let (a, b, prev) = (&a[..n], &b[..n], &prev[..n]);
    for j in 0..n {
        let (ab, fj) = k.coeffs::<M>(dt, a[j]);
        abar[j] = ab;
        f[j] = fj;
        next[j] = ab * prev[j] + fj * b[j] * xt;
    }
}

fn backward_impl<K: Coeffs>(
    k: K,
    dims: KernelDims,
    inp: KernelInput<'_>,
    ckpt: &[f32],
    dy: &[f32],
    dh_last: &[f32],
) -> KernelGrads {
    let KernelDims { b: nb, l, e: ne, n } = dims;
    let (x_cm, delta_cm) = (channel_major(inp.x, dims), channel_major(inp.delta, dims));
    let dy_cm = channel_major(dy, dims);
    let inp = KernelInput {
        x: &x_cm,
        delta: &delta_cm,
        ..inp
    };
    let adj = Adjoint {
        ckpt,
        dy: &dy_cm,
        dh_last,
    };
    let (task_list, parallel) = tasks(dims);
    let level = SimdLevel::active();
    let results = run_tasks(&task_list, parallel, |task| {
        backward_task(level, k, dims, inp, adj, task)
    });

    // Reduce and scatter.
    let mut g = KernelGrads {
        x: vec![0.0; nb * l * ne],
        delta: vec![0.0; nb * l * ne],
        a: vec![0.0; ne * n],
        bm: vec![0.0; nb * l * n],
        c: vec![0.0; nb * l * n],
        d: inp.d.map(|_| vec![0.0; ne]),
        h0: inp.h0.map(|_| vec![0.0; nb * ne * n]),
    };
    for (task, r) in task_list.iter().zip(results) {
        let width = task.e1 - task.e0;
        for (el, e) in (task.e0..task.e1).enumerate() {
            for t in 0..l {
                let idx = (task.b * l + t) * ne + e;
                g.x[idx] = r.dx[el * l + t];
                g.delta[idx] = r.ddelta[el * l + t];
            }
        }
        for (dst, src) in g.a[task.e0 * n..task.e1 * n].iter_mut().zip(&r.da) {
            *dst += src;
        }
        let bl = task.b * l * n;
        for (dst, src) in g.bm[bl..bl + l * n].iter_mut().zip(&r.db) {
            *dst += src;
        }
        for (dst, src) in g.c[bl..bl + l * n].iter_mut().zip(&r.dc) {
            *dst += src;
        }
        if let Some(dd) = g.d.as_mut() {
            for (dst, src) in dd[task.e0..task.e1].iter_mut().zip(&r.dd) {
                *dst += src;
            }
        }
        if let Some(dh0) = g.h0.as_mut() {
            let base = (task.b * ne + task.e0) * n;
            dh0[base..base + width * n].copy_from_slice(&r.dh0);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_coefficients_match_closed_forms() {
        let discs = [
            Discretization::ZeroOrderHold,
            Discretization::Simplified,
            Discretization::Generalized { alpha: 0.0 },
            Discretization::Generalized { alpha: 0.5 },
            Discretization::Generalized { alpha: 1.0 },
        ];
        for disc in discs {
            for &dt in &[1e-4f32, 1e-3, 0.01, 0.05, 0.1, 0.5, 2.0] {
                for &a in &[-16.0f32, -3.0, -1.0, -0.1, -1e-4, 0.0] {
                    let (ka, kf) = kernel_coeffs(disc, dt, a);
                    let (sa, sf) = disc.scalar(dt, a);
                    let rel = |x: f32, y: f32| (x - y).abs() / y.abs().max(1e-30);
                    assert!(
                        rel(ka, sa) < 1e-6,
                        "{disc:?} dt={dt} a={a}: abar {ka} vs {sa}"
                    );
                    assert!(
                        rel(kf, sf) < 2e-6,
                        "{disc:?} dt={dt} a={a}: factor {kf} vs {sf}"
                    );
                }
            }
        }
    }

    #[test]
    fn task_split_covers_every_channel_once() {
        for dims in [
            KernelDims {
                b: 1,
                l: 4096,
                e: 7,
                n: 16,
            },
            KernelDims {
                b: 3,
                l: 2,
                e: 1,
                n: 1,
            },
            KernelDims {
                b: 8,
                l: 1024,
                e: 64,
                n: 16,
            },
        ] {
            let (list, _) = tasks(dims);
            let mut seen = vec![0u32; dims.b * dims.e];
            for t in list {
                for e in t.e0..t.e1 {
                    seen[t.b * dims.e + e] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{dims:?}: {seen:?}");
        }
    }
}
