//! The CPU kernel of the fused LSTM recurrence: forward that saves the gate activations and cell
//! states, and the hand-written backward through time.
//!
//! # Glossary
//! - `B` batch, `L` length, `H` hidden width; `G = 4H` the packed gates in the order
//!   `i, f, g, o` (input, forget, cell candidate, output).
//! - `z_t = xw_t + h_{t−1} W_h` `[G]`: gate pre-activations (`xw` already holds `x W_x + b`).
//! - `i, f, o = σ(z)`, `g = tanh(z)`; `c_t = f ⊙ c_{t−1} + i ⊙ g`; `h_t = o ⊙ tanh(c_t)`.
//!
//! Every batch row is independent: rows run in parallel with rayon, and the weight gradient is
//! summed over rows in a fixed order afterwards, so results do not depend on the thread count.

use rayon::prelude::*;

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

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// `out += v · W` for `v` `[H]`, `W` `[H, G]` (row by row: contiguous, vectorizable).
#[inline]
fn add_vec_mat(out: &mut [f32], v: &[f32], w: &[f32]) {
    let g = out.len();
    for (k, &vk) in v.iter().enumerate() {
        let row = &w[k * g..(k + 1) * g];
        for (o, &wk) in out.iter_mut().zip(row) {
            *o += vk * wk;
        }
    }
}

/// One batch row of the forward: writes `h`, `c`, `gates` of row `b`.
fn forward_row(
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
        add_vec_mat(z, &h_prev, input.w_h);
        let (zi, rest) = z.split_at_mut(hd);
        let (zf, rest) = rest.split_at_mut(hd);
        let (zg, zo) = rest.split_at_mut(hd);
        let c_t = &mut c_out[t * hd..(t + 1) * hd];
        let h_t = &mut h_out[t * hd..(t + 1) * hd];
        for k in 0..hd {
            let i = sigmoid(zi[k]);
            let f = sigmoid(zf[k]);
            let gg = zg[k].tanh();
            let o = sigmoid(zo[k]);
            let c = f * c_prev[k] + i * gg;
            (zi[k], zf[k], zg[k], zo[k]) = (i, f, gg, o);
            c_t[k] = c;
            h_t[k] = o * c.tanh();
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
    let rows = h
        .chunks_mut(l * hd)
        .zip(c.chunks_mut(l * hd))
        .zip(gates.chunks_mut(l * g))
        .enumerate();
    if parallel(dims) {
        rows.par_bridge()
            .for_each(|(b, ((h, c), z))| forward_row(dims, input, b, h, c, z));
    } else {
        rows.for_each(|(b, ((h, c), z))| forward_row(dims, input, b, h, c, z));
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

/// Per-row gradients: `∂xw` of the row, the row's part of `∂W_h`, `∂h0`, `∂c0`.
struct RowGrads {
    xw: Vec<f32>,
    w_h: Vec<f32>,
    h0: Vec<f32>,
    c0: Vec<f32>,
}

/// Backpropagation through time for batch row `b`.
fn backward_row(dims: LstmDims, bw: LstmBackwardInput<'_>, b: usize) -> RowGrads {
    let (l, hd, g) = (dims.l, dims.h, dims.g());
    let zeros = vec![0.0; hd];
    let h0 = bw
        .input
        .h0
        .map_or(&zeros[..], |h0| &h0[b * hd..(b + 1) * hd]);
    let c0 = bw
        .input
        .c0
        .map_or(&zeros[..], |c0| &c0[b * hd..(b + 1) * hd]);
    let mut d_xw = vec![0.0; l * g];
    let mut d_wh = vec![0.0; hd * g];
    let mut dh_next = vec![0.0; hd]; // ∂ℓ/∂h_t through h_{t+1}
    let mut dc_next = bw.dc_last[b * hd..(b + 1) * hd].to_vec(); // ∂ℓ/∂c_t through c_{t+1}
    for t in (0..l).rev() {
        let hs = (b * l + t) * hd; // start of (b, t) in [B, L, H]
        let gs = (b * l + t) * g; // start of (b, t) in [B, L, 4H]
        let c_t = &bw.c[hs..hs + hd];
        let c_prev = if t > 0 { &bw.c[hs - hd..hs] } else { c0 };
        let h_prev = if t > 0 { &bw.h[hs - hd..hs] } else { h0 };
        let act = &bw.gates[gs..gs + g];
        let dz = &mut d_xw[t * g..(t + 1) * g]; // [4H]
        for k in 0..hd {
            let (i, f, gg, o) = (act[k], act[hd + k], act[2 * hd + k], act[3 * hd + k]);
            let dh = bw.dh[hs + k] + dh_next[k];
            let tc = c_t[k].tanh();
            let dc = dc_next[k] + dh * o * (1.0 - tc * tc);
            dz[k] = dc * gg * i * (1.0 - i);
            dz[hd + k] = dc * c_prev[k] * f * (1.0 - f);
            dz[2 * hd + k] = dc * i * (1.0 - gg * gg);
            dz[3 * hd + k] = dh * tc * o * (1.0 - o);
            dc_next[k] = dc * f;
        }
        // ∂W_h += h_{t−1}ᵀ dz; ∂h_{t−1} = dz W_hᵀ.
        for k in 0..hd {
            let wk = &bw.input.w_h[k * g..(k + 1) * g];
            let dwk = &mut d_wh[k * g..(k + 1) * g];
            let hk = h_prev[k];
            let mut acc = 0.0;
            for j in 0..g {
                dwk[j] += hk * dz[j];
                acc += wk[j] * dz[j];
            }
            dh_next[k] = acc;
        }
    }
    RowGrads {
        xw: d_xw,
        w_h: d_wh,
        h0: dh_next,
        c0: dc_next,
    }
}

/// The backward over all rows; the weight gradient is summed over rows in order.
pub(crate) fn backward(dims: LstmDims, bw: LstmBackwardInput<'_>) -> LstmKernelGrads {
    let rows: Vec<RowGrads> = if parallel(dims) {
        (0..dims.b)
            .into_par_iter()
            .map(|b| backward_row(dims, bw, b))
            .collect()
    } else {
        (0..dims.b).map(|b| backward_row(dims, bw, b)).collect()
    };
    let mut grads = LstmKernelGrads {
        xw: Vec::with_capacity(dims.b * dims.l * dims.g()),
        w_h: vec![0.0; dims.h * dims.g()],
        h0: Vec::with_capacity(dims.b * dims.h),
        c0: Vec::with_capacity(dims.b * dims.h),
    };
    for r in rows {
        grads.xw.extend_from_slice(&r.xw);
        for (a, v) in grads.w_h.iter_mut().zip(&r.w_h) {
            *a += v;
        }
        grads.h0.extend_from_slice(&r.h0);
        grads.c0.extend_from_slice(&r.c0);
    }
    grads
}
