//! The CPU kernel of the fused LSTM recurrence: forward that saves the gate activations and cell
//! states, and the hand-written backward through time.
//!
//! # Glossary
//! - `B` batch, `L` length, `H` hidden width; `G = 4H` the packed gates in the order
//!   `i, f, g, o` (input, forget, cell candidate, output).
//! - `z_t = xw_t + h_{t−1} W_h` `[G]`: gate pre-activations (`xw` already holds `x W_x + b`).
//! - `i, f, o = σ(z)`, `g = tanh(z)`; `c_t = f ⊙ c_{t−1} + i ⊙ g`; `h_t = o ⊙ tanh(c_t)`.
//!
//! Every batch row is independent: rows run in parallel with rayon. The weight gradient
//! `∂W_h = Σ_{b,t} h_{t−1}ᵀ ∂z_t` is one matrix product `H_prevᵀ · ∂Z` over all `B·L` rows after
//! the backward loop (`H_prev` is `h` shifted one step, `h0` first), whose summation order does
//! not depend on the thread count, so neither do the results.
//! Each row function is compiled for the baseline target, AVX2 + FMA and AVX-512F + FMA (the
//! loops over `4H` and `H` vectorize; `σ` and `tanh` use the scan kernel's branch-free `exp`),
//! and the [`SimdLevel`] read on the calling thread picks one.

use rayon::prelude::*;

use crate::simd::SimdLevel;
use crate::simd::{LANES, MulAdd, fast_exp, hsum};

/// Sizes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LstmDims {
    /// Batch `B`.
    pub b: usize,
    /// Length `L`.
    pub l: usize,
    /// Hidden width `H`.
    pub h: usize,
}

impl LstmDims {
    fn g(self) -> usize {
        4 * self.h
    }
}

/// Inputs of the recurrence (row-major `f32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LstmKernelInput<'a> {
    /// `xw` `[B, L, 4H]`: input projection plus both biases.
    pub xw: &'a [f32],
    /// `W_h` `[H, 4H]`.
    pub w_h: &'a [f32],
    /// `h0` `[B, H]` (zeros when `None`).
    pub h0: Option<&'a [f32]>,
    /// `c0` `[B, H]` (zeros when `None`).
    pub c0: Option<&'a [f32]>,
}

/// Outputs of the forward.
#[derive(Debug, Clone)]
pub(crate) struct LstmKernelOutput {
    /// Hidden states `h` `[B, L, H]`.
    pub h: Vec<f32>,
    /// Cell states `c` `[B, L, H]`.
    pub c: Vec<f32>,
    /// Activated gates `[B, L, 4H]` (`σ(i), σ(f), tanh(g), σ(o)`), kept for the backward.
    pub gates: Vec<f32>,
}

/// Gradients of the inputs.
#[derive(Debug, Clone)]
pub(crate) struct LstmKernelGrads {
    /// `∂ℓ/∂xw` `[B, L, 4H]`.
    pub xw: Vec<f32>,
    /// `∂ℓ/∂W_h` `[H, 4H]`.
    pub w_h: Vec<f32>,
    /// `∂ℓ/∂h0` `[B, H]`.
    pub h0: Vec<f32>,
    /// `∂ℓ/∂c0` `[B, H]`.
    pub c0: Vec<f32>,
}

/// Rows run in parallel above this much work (`B·L·H·4H` multiply-adds).
const PAR_MIN_WORK: usize = 1 << 18;

fn parallel(dims: LstmDims) -> bool {
    dims.b > 1
        && dims.b * dims.l * dims.h * dims.g() >= PAR_MIN_WORK
        && rayon::current_num_threads() > 1
}

/// `σ(z) = 1 / (1 + e^{−z})`, branch-free.
#[inline(always)]
fn sigmoid<M: MulAdd>(z: f32) -> f32 {
    1.0 / (1.0 + fast_exp::<M>(-z))
}

/// `tanh(z) = 2σ(2z) − 1` (absolute error ~1e-7 near 0), branch-free.
#[inline(always)]
fn tanh<M: MulAdd>(z: f32) -> f32 {
    2.0 / (1.0 + fast_exp::<M>(-2.0 * z)) - 1.0
}

/// Output columns accumulated in registers at once by [`add_vec_mat`].
const BLOCK: usize = 64;

/// `out += v · W` for `v` `[H]`, `W` `[H, G]`: blocks of [`BLOCK`] output columns stay in
/// registers while `k` runs over `v` (rows of `W` are contiguous, so the loads vectorize).
#[inline(always)]
fn add_vec_mat<M: MulAdd>(out: &mut [f32], v: &[f32], w: &[f32]) {
    let g = out.len();
    let mut j0 = 0;
    while j0 + BLOCK <= g {
        let mut acc = [0.0f32; BLOCK];
        acc.copy_from_slice(&out[j0..j0 + BLOCK]);
        for (k, &vk) in v.iter().enumerate() {
            let row = &w[k * g + j0..k * g + j0 + BLOCK];
            for (a, &wk) in acc.iter_mut().zip(row) {
                *a = M::madd(vk, wk, *a);
            }
        }
        out[j0..j0 + BLOCK].copy_from_slice(&acc);
        j0 += BLOCK;
    }
    if j0 < g {
        for (k, &vk) in v.iter().enumerate() {
            let row = &w[k * g + j0..(k + 1) * g];
            for (o, &wk) in out[j0..].iter_mut().zip(row) {
                *o = M::madd(vk, wk, *o);
            }
        }
    }
}

/// `⟨a, b⟩` with [`LANES`] independent partial sums (vectorizes; a fixed summation order).
#[inline(always)]
fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = M::madd(x[i], y[i], acc[i]);
        }
    }
    let mut sum = hsum(acc);
    for (x, y) in ra.iter().zip(rb) {
        sum = M::madd(*x, *y, sum);
    }
    sum
}

crate::simd::simd_variants!(forward_row, forward_row_generic, forward_row_avx2, forward_row_avx512, forward_row_body,
    (dims: LstmDims, input: LstmKernelInput<'_>, b: usize, h_out: &mut [f32], c_out: &mut [f32], gates_out: &mut [f32]) -> ());

crate::simd::simd_variants!(backward_row, backward_row_generic, backward_row_avx2, backward_row_avx512, backward_row_body,
    (dims: LstmDims, bw: LstmBackwardInput<'_>, b: usize) -> RowGrads);

/// One batch row of the forward: writes `h`, `c`, `gates` of row `b`.
#[inline(always)]
fn forward_row_body<M: MulAdd>(
    dims: LstmDims,
    input: LstmKernelInput<'_>,
    b: usize,
    h_out: &mut [f32],
    c_out: &mut [f32],
    gates_out: &mut [f32],
) {
    let (l, hd, g) = (dims.l, dims.h, dims.g());
    let mut h_prev: Vec<f32> = input
        .h0
        .map_or(vec![0.0; hd], |h0| h0[b * hd..(b + 1) * hd].to_vec());
    let mut c_prev: Vec<f32> = input
        .c0
        .map_or(vec![0.0; hd], |c0| c0[b * hd..(b + 1) * hd].to_vec());
    for t in 0..l {
        let z = &mut gates_out[t * g..(t + 1) * g]; // [4H]
        z.copy_from_slice(&input.xw[(b * l + t) * g..(b * l + t + 1) * g]);
        add_vec_mat::<M>(z, &h_prev, input.w_h);
        // Activations in place, each a plain map over a contiguous run (vectorizes).
        let (z_if, z_go) = z.split_at_mut(2 * hd);
        let (z_g, z_o) = z_go.split_at_mut(hd);
        for v in z_if.iter_mut() {
            *v = sigmoid::<M>(*v);
        }
        for v in z_o.iter_mut() {
            *v = sigmoid::<M>(*v);
        }
        for v in z_g.iter_mut() {
            *v = tanh::<M>(*v);
        }
        let (i, f) = z_if.split_at(hd);
        let c_t = &mut c_out[t * hd..(t + 1) * hd];
        for k in 0..hd {
            c_t[k] = M::madd(f[k], c_prev[k], i[k] * z_g[k]);
        }
        let h_t = &mut h_out[t * hd..(t + 1) * hd];
        for k in 0..hd {
            h_t[k] = z_o[k] * tanh::<M>(c_t[k]);
        }
        c_prev.copy_from_slice(c_t);
        h_prev.copy_from_slice(h_t);
    }
}

/// The forward over all rows.
pub(crate) fn forward(dims: LstmDims, input: LstmKernelInput<'_>) -> LstmKernelOutput {
    let (l, hd, g) = (dims.l, dims.h, dims.g());
    let mut h = vec![0.0; dims.b * l * hd];
    let mut c = vec![0.0; dims.b * l * hd];
    let mut gates = vec![0.0; dims.b * l * g];
    let level = SimdLevel::active();
    let rows = h
        .chunks_mut(l * hd)
        .zip(c.chunks_mut(l * hd))
        .zip(gates.chunks_mut(l * g))
        .enumerate();
    if parallel(dims) {
        rows.par_bridge()
            .for_each(|(b, ((h, c), z))| forward_row(level, dims, input, b, h, c, z));
    } else {
        rows.for_each(|(b, ((h, c), z))| forward_row(level, dims, input, b, h, c, z));
    }
    LstmKernelOutput { h, c, gates }
}

/// Incoming gradients and saved forward values of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LstmBackwardInput<'a> {
    /// The forward's inputs.
    pub input: LstmKernelInput<'a>,
    /// Saved `h` `[B, L, H]`.
    pub h: &'a [f32],
    /// Saved `c` `[B, L, H]`.
    pub c: &'a [f32],
    /// Saved activated gates `[B, L, 4H]`.
    pub gates: &'a [f32],
    /// `∂ℓ/∂h` `[B, L, H]`.
    pub dh: &'a [f32],
    /// `∂ℓ/∂c_L` `[B, H]` (the last cell state is an output).
    pub dc_last: &'a [f32],
}

/// Per-row gradients: `∂xw` (= `∂z`) of the row, `∂h0`, `∂c0`.
struct RowGrads {
    xw: Vec<f32>,
    h0: Vec<f32>,
    c0: Vec<f32>,
}

/// Backpropagation through time for batch row `b`.
#[inline(always)]
fn backward_row_body<M: MulAdd>(dims: LstmDims, bw: LstmBackwardInput<'_>, b: usize) -> RowGrads {
    let (l, hd, g) = (dims.l, dims.h, dims.g());
    let zeros = vec![0.0; hd];
    let c0 = bw
        .input
        .c0
        .map_or(&zeros[..], |c0| &c0[b * hd..(b + 1) * hd]);
    let mut d_xw = vec![0.0; l * g];
    let mut dh_next = vec![0.0; hd]; // ∂ℓ/∂h_t through h_{t+1}
    let mut dc_next = bw.dc_last[b * hd..(b + 1) * hd].to_vec(); // ∂ℓ/∂c_t through c_{t+1}
    for t in (0..l).rev() {
        let hs = (b * l + t) * hd; // start of (b, t) in [B, L, H]
        let gs = (b * l + t) * g; // start of (b, t) in [B, L, 4H]
        let c_t = &bw.c[hs..hs + hd];
        let c_prev = if t > 0 { &bw.c[hs - hd..hs] } else { c0 };
        let act = &bw.gates[gs..gs + g];
        let dz = &mut d_xw[t * g..(t + 1) * g]; // [4H]
        for k in 0..hd {
            let (i, f, gg, o) = (act[k], act[hd + k], act[2 * hd + k], act[3 * hd + k]);
            let dh = bw.dh[hs + k] + dh_next[k];
            let tc = tanh::<M>(c_t[k]);
            let dc = dc_next[k] + dh * o * (1.0 - tc * tc);
            dz[k] = dc * gg * i * (1.0 - i);
            dz[hd + k] = dc * c_prev[k] * f * (1.0 - f);
            dz[2 * hd + k] = dc * i * (1.0 - gg * gg);
            dz[3 * hd + k] = dh * tc * o * (1.0 - o);
            dc_next[k] = dc * f;
        }
        // ∂h_{t−1} = dz W_hᵀ (∂W_h is one product after all rows, see `backward`).
        for (dh, w_row) in dh_next.iter_mut().zip(bw.input.w_h.chunks_exact(g)) {
            *dh = dot::<M>(w_row, dz);
        }
    }
    RowGrads {
        xw: d_xw,
        h0: dh_next,
        c0: dc_next,
    }
}

/// The backward over all rows; the weight gradient is summed over rows in order.
pub(crate) fn backward(dims: LstmDims, bw: LstmBackwardInput<'_>) -> LstmKernelGrads {
    let level = SimdLevel::active();
    let rows: Vec<RowGrads> = if parallel(dims) {
        (0..dims.b)
            .into_par_iter()
            .map(|b| backward_row(level, dims, bw, b))
            .collect()
    } else {
        (0..dims.b)
            .map(|b| backward_row(level, dims, bw, b))
            .collect()
    };
    let mut grads = LstmKernelGrads {
        xw: Vec::with_capacity(dims.b * dims.l * dims.g()),
        w_h: vec![0.0; dims.h * dims.g()],
        h0: Vec::with_capacity(dims.b * dims.h),
        c0: Vec::with_capacity(dims.b * dims.h),
    };
    for r in rows {
        grads.xw.extend_from_slice(&r.xw);
        grads.h0.extend_from_slice(&r.h0);
        grads.c0.extend_from_slice(&r.c0);
    }
    // ∂W_h [H, 4H] = H_prevᵀ [H, B·L] · ∂Z [B·L, 4H], H_prev = h shifted one step per row.
    let (l, hd, g) = (dims.l, dims.h, dims.g());
    let mut h_prev = vec![0.0f32; dims.b * l * hd];
    for b in 0..dims.b {
        let rows = &mut h_prev[b * l * hd..(b + 1) * l * hd];
        if let Some(h0) = bw.input.h0 {
            rows[..hd].copy_from_slice(&h0[b * hd..(b + 1) * hd]);
        }
        rows[hd..].copy_from_slice(&bw.h[b * l * hd..((b + 1) * l - 1) * hd]);
    }
    crate::linear::gemm(
        (hd, dims.b * l, g),
        &h_prev,
        (1, hd),
        &grads.xw,
        (g, 1),
        false,
        &mut grads.w_h,
        g,
    );
    grads
}
