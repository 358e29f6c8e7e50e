//! The LSTM recurrence on projected inputs: the fused op (CPU kernel, own backward) and its
//! tensor-op twin. Internal: reached by users through [`lstm_forward`](super::lstm_forward)
//! and the LSTM [`Mixer`](crate::nn::Mixer); tests and benches see it through
//! `seqlayers::internals` (the `internals` feature).

use burn::tensor::{Tensor, backend::Backend};

use super::{autodiff, kernel};
use crate::backend::{Cpu, CpuAutodiff, prim, wrap};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::error::{Result, SeqError, ensure_nonzero, ensure_shape};

/// [`lstm_recurrence`] after checking its inputs: `xw` `[B, L, 4H]` with `B, L, H > 0`, `W_h`
/// `[H, 4H]`, `h0` and `c0` `[B, H]`. Errors with [`SeqError::ZeroSize`] or
/// [`SeqError::ShapeMismatch`] (a last axis of `xw` that is not a multiple of 4 included).
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // for `seqlayers::internals`
pub fn try_lstm_recurrence<B: Backend>(
    xw: Tensor<B, 3>,
    w_h: Tensor<B, 2>,
    h0: Option<Tensor<B, 2>>,
    c0: Option<Tensor<B, 2>>,
) -> Result<(Tensor<B, 3>, Tensor<B, 2>)> {
    let [bs, l, g] = xw.dims();
    ensure_nonzero("batch size", bs)?;
    ensure_nonzero("sequence length", l)?;
    ensure_nonzero("gate width (4H)", g)?;
    if !g.is_multiple_of(4) {
        return Err(SeqError::ShapeMismatch {
            what: "gate axis of xw [B, L, 4H] (a multiple of 4)",
            expected: format!("{}", 4 * g.div_ceil(4)),
            got: g.to_string(),
        });
    }
    let hd = g / 4;
    ensure_shape("W_h [H, 4H]", &[hd, g], &w_h.dims())?;
    for (what, t) in [("h0 [B, H]", &h0), ("c0 [B, H]", &c0)] {
        if let Some(t) = t {
            ensure_shape(what, &[bs, hd], &t.dims())?;
        }
    }
    Ok(lstm_recurrence(xw, w_h, h0, c0))
}

/// The recurrence alone: hidden states `[B, L, H]` and the last cell state `[B, H]` from the
/// projected inputs `xw` `[B, L, 4H]`, `W_h` `[H, 4H]` and the optional initial states `[B, H]`.
/// The CPU kernel on `NdArray<f32>` (with its own backward node under `Autodiff`), tensor ops
/// on every other backend.
///
/// Trusts its caller; [`try_lstm_recurrence`] checks the shapes first.
pub fn lstm_recurrence<B: Backend>(
    xw: Tensor<B, 3>,
    w_h: Tensor<B, 2>,
    h0: Option<Tensor<B, 2>>,
    c0: Option<Tensor<B, 2>>,
) -> (Tensor<B, 3>, Tensor<B, 2>) {
    type Prims<B> = (
        burn::tensor::ops::FloatTensor<B>,
        burn::tensor::ops::FloatTensor<B>,
        Option<burn::tensor::ops::FloatTensor<B>>,
        Option<burn::tensor::ops::FloatTensor<B>>,
    );
    let [bs, l, g] = xw.dims();
    let dims = kernel::LstmDims { b: bs, l, h: g / 4 };
    let prims: Prims<B> = (prim(xw), prim(w_h), h0.map(prim), c0.map(prim));
    let (xw, w_h, h0, c0) =
        match route::<B, _, Prims<Cpu>, Prims<CpuAutodiff>>(FusedOp::Lstm, prims) {
            Routed::Cpu((xw, w_h, h0, c0)) => {
                let (h, c) = autodiff::cpu_forward(dims, xw, w_h, h0, c0);
                return (wrap(same(h)), wrap(same(c)));
            }
            Routed::CpuAutodiff((xw, w_h, h0, c0)) => {
                let (h, c) = autodiff::autodiff_forward(dims, xw, w_h, h0, c0);
                return (wrap(same(h)), wrap(same(c)));
            }
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            Routed::Gpu(p) => p,
            Routed::Other(p) => p,
        };
    recurrence_tensor_ops(wrap(xw), wrap(w_h), h0.map(wrap), c0.map(wrap))
}

/// The recurrence in tensor ops, one step per token (any backend; autodiff differentiates it).
pub fn recurrence_tensor_ops<B: Backend>(
    xw: Tensor<B, 3>,
    w_h: Tensor<B, 2>,
    h0: Option<Tensor<B, 2>>,
    c0: Option<Tensor<B, 2>>,
) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let [bs, l, g] = xw.dims();
    let hd = g / 4;
    let device = xw.device();
    let mut h = h0.unwrap_or_else(|| Tensor::zeros([bs, hd], &device)); // [B, H]
    let mut c = c0.unwrap_or_else(|| Tensor::zeros([bs, hd], &device)); // [B, H]
    let mut hs = Vec::with_capacity(l);
    for t in 0..l {
        let z = xw.clone().narrow(1, t, 1).reshape([bs, g]) + h.matmul(w_h.clone()); // [B, 4H]
        let gate = |k: usize| z.clone().narrow(1, k * hd, hd); // [B, H]
        let i = burn::tensor::activation::sigmoid(gate(0));
        let f = burn::tensor::activation::sigmoid(gate(1));
        let cand = gate(2).tanh();
        let o = burn::tensor::activation::sigmoid(gate(3));
        c = f * c + i * cand; // [B, H]
        h = o * c.clone().tanh(); // [B, H]
        hs.push(h.clone().unsqueeze_dim::<3>(1)); // [B, 1, H]
    }
    (Tensor::cat(hs, 1), c)
}
