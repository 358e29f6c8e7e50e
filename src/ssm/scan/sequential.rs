//! Sequential scan: one time step at a time, with tensor ops.
//!
//! # Glossary
//! - `a_t`, `b_t`: coefficients of the linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t`.
//! - `Ā_t`, `F_t`: discretized transition and B̄-factor (see [`Discretization`]).
//! - `h_t` `[B, E, N]`: state after step `t`; `y_t = ⟨h_t, C_t⟩ + D ⊙ x_t`.
//!
//! # Autodiff cost
//! Taking step `t` out of a `[B, L, …]` tensor with `narrow`/`chunk` costs `O(size of the whole
//! tensor)` in Burn's backward (the slice gradient is a zero tensor of full size with the piece
//! assigned), so `L` slices would make the backward `O(L²)`. [`split_steps`] instead halves the
//! tensor recursively: each level of the tree touches every element once, so the whole split is
//! `O(L log L)` in forward and backward. The selective scan also never builds a `[B, L, E, N]`
//! tensor: `Ā_t`, `B̄_t x_t` are formed per step from `[B, E]` and `[B, N]` slices.

use super::SelectiveScanInput;
use burn::tensor::{Tensor, backend::Backend};

use crate::ssm::discretization::Discretization;

/// Splits `t` along `dim` into `len(dim)` pieces of size 1 (dimension kept), by recursive
/// halving so that the autodiff cost is `O(len · log len)` instead of `O(len²)`.
pub(crate) fn split_steps<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    dim: usize,
) -> Vec<Tensor<B, D>> {
    let len = t.dims()[dim];
    let mut out = Vec::with_capacity(len);
    split_rec(t, dim, &mut out);
    out
}

fn split_rec<B: Backend, const D: usize>(t: Tensor<B, D>, dim: usize, out: &mut Vec<Tensor<B, D>>) {
    let len = t.dims()[dim];
    if len <= 1 {
        out.push(t);
        return;
    }
    let mid = len / 2;
    split_rec(t.clone().narrow(dim, 0, mid), dim, out);
    split_rec(t.narrow(dim, mid, len - mid), dim, out);
}

/// Sequential linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t` with `h_{−1} = h0` (zero if `None`).
///
/// `a`, `b`: `[B, L, E, N]`; `h0`: `[B, E, N]`. Returns every state, `[B, L, E, N]`.
pub fn scan_sequential<B: Backend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    h0: Option<Tensor<B, 3>>,
) -> Tensor<B, 4> {
    let [bs, _l, e, n] = a.dims();
    let a_steps = split_steps(a, 1); // L × [B, 1, E, N]
    let b_steps = split_steps(b, 1); // L × [B, 1, E, N]
    let mut h: Option<Tensor<B, 4>> = h0.map(|h0| h0.reshape([bs, 1, e, n])); // [B, 1, E, N]
    let mut hs = Vec::with_capacity(a_steps.len());
    for (a_t, b_t) in a_steps.into_iter().zip(b_steps) {
        let next = match h {
            Some(prev) => a_t * prev + b_t, // [B, 1, E, N]
            None => b_t,                    // [B, 1, E, N]
        };
        hs.push(next.clone());
        h = Some(next);
    }
    Tensor::cat(hs, 1) // [B, L, E, N]
}

/// Sequential selective scan: the reference implementation. Returns `(y [B, L, E], h_L [B, E, N])`.
///
/// Inputs as in [`super::SelectiveScanInput`] (shapes already validated).
pub(crate) fn selective_scan_sequential<B: Backend>(
    disc: Discretization,
    input: SelectiveScanInput<B>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let SelectiveScanInput {
        x,
        delta,
        a,
        b,
        c,
        d,
        h0,
    } = input;
    let [bs, l, e] = x.dims();
    let n = a.dims()[1];
    let x_steps = split_steps(x.clone(), 1); // L × [B, 1, E]
    let delta_steps = split_steps(delta, 1); // L × [B, 1, E]
    let b_steps = split_steps(b, 1); // L × [B, 1, N]
    let c_steps = split_steps(c, 1); // L × [B, 1, N]
    let mut h: Tensor<B, 3> = h0.unwrap_or_else(|| Tensor::zeros([bs, e, n], &x.device())); // [B, E, N]
    let mut ys = Vec::with_capacity(l);
    for (((x_t, delta_t), b_t), c_t) in x_steps
        .into_iter()
        .zip(delta_steps)
        .zip(b_steps)
        .zip(c_steps)
    {
        let (abar, factor) = disc.tensors(delta_t, a.clone()); // [B, 1, E, N] each
        let abar: Tensor<B, 3> = abar.reshape([bs, e, n]); // [B, E, N]
        let factor: Tensor<B, 3> = factor.reshape([bs, e, n]); // [B, E, N]
        let bx = factor * b_t.clone() * x_t.reshape([bs, e, 1]); // [B, E, N] (b_t is [B, 1, N])
        h = abar * h + bx; // [B, E, N]
        let y_t = (h.clone() * c_t).sum_dim(2); // [B, E, 1]
        ys.push(y_t.reshape([bs, 1, e])); // [B, 1, E]
    }
    let mut y = Tensor::cat(ys, 1); // [B, L, E]
    if let Some(d) = d {
        y = y + x * d.reshape([1, 1, e]); // [B, L, E]
    }
    (y, h)
}
