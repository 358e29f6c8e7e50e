//! [`AttentionBackend`] for the CubeCL backends (`Wgpu`, `Cuda`): scaled dot-product attention
//! as three `#[cube]` kernels that never hold the `[B, H, Lq, Lk]` weights.
//!
//! # Glossary
//! - `Q̃` `[B, H, Lq, dk]`, `K̃` `[B, H, Lk, dk]`: queries and keys after RoPE (applied with
//!   tensor ops before the kernels, and its transpose after); `V` `[B, H, Lk, dv]`.
//! - `S_ij = s·Q̃_i·K̃_j + bias_ij`, or `bias_ij` itself where the bias masks the pair
//!   (`≤ MASKED_THRESHOLD`, as the CPU kernel); `P = softmax_j(S)`, `O = P·V`.
//! - `lse_i = log Σ_j exp S_ij` `[B, H, Lq]`, so that `P_ij = exp(S_ij − lse_i)`.
//! - `D_i = Σ_d dO_id O_id`; `dS_ij = P_ij (dO_i·V_j − D_i)` (0 for masked pairs).
//!
//! # Work layout
//! - **Forward**: one thread per query row `(b, h, i)`: one pass over the keys for the row's
//!   maximum, one for `Σ exp` and `O_i`, written into its output row.
//! - **Backward**: the forward again (for `O`, `lse`), `D` with tensor ops, then one thread per
//!   query row for `dQ̃_i = s Σ_j dS_ij K̃_j` and one thread per key row for
//!   `dK̃_j = s Σ_i dS_ij Q̃_i` and `dV_j = Σ_i P_ij dO_i`, each recomputing `P_ij` from `lse_i`
//!   (FlashAttention-2's recomputation, without its tiling).
//!
//! Memory beyond inputs, outputs and the bias: `lse` and `D`, `[B, H, Lq]` each.

use burn::tensor::{Shape, TensorMetadata, ops::FloatTensorOps};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, kernel::into_contiguous, tensor::CubeTensor,
};
use cubecl::prelude::*;

use super::backend::{AttentionBackend, FusedAttentionGrads, FusedAttentionInput};
use super::kernel::MASKED_THRESHOLD;
use crate::backend::{cube_empty, prim, wrap};

/// Threads per cube (rows per cube).
const CUBE: usize = 64;

/// `S_ij` of query row `qr` and key row `kr` (offsets of their first elements).
#[cube]
#[allow(clippy::too_many_arguments)]
fn score(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    bias: &Tensor<f32>,
    qr: usize,
    kr: usize,
    br: usize,
    scale: f32,
    threshold: f32,
    #[comptime] has_bias: bool,
) -> f32 {
    let dk = q.shape(3);
    let mut dot = 0.0;
    for d in 0..dk {
        dot += q[qr + d * q.stride(3)] * k[kr + d * k.stride(3)];
    }
    let mut s = scale * dot;
    if has_bias {
        let b = bias[br];
        s += b;
        if b <= threshold {
            s = b;
        }
    }
    s
}

/// Offset of `t[b, h, i, 0]` (of `t[b, h, i]` for a 3-d `t`).
#[cube]
fn row(t: &Tensor<f32>, b: usize, h: usize, i: usize) -> usize {
    b * t.stride(0) + h * t.stride(1) + i * t.stride(2)
}

/// Offset of `bias[b, h, i, 0]`, broadcasting a bias of batch or head size 1.
#[cube]
fn bias_row(bias: &Tensor<f32>, b: usize, h: usize, i: usize, #[comptime] has_bias: bool) -> usize {
    let mut at = 0;
    if has_bias {
        let mut bb = b;
        if bias.shape(0) == 1 {
            bb = 0;
        }
        let mut hh = h;
        if bias.shape(1) == 1 {
            hh = 0;
        }
        at = bb * bias.stride(0) + hh * bias.stride(1) + i * bias.stride(2);
    }
    at
}

/// The forward: one thread per query row; writes `O_i` and `lse_i`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_forward_kernel(
    q: &Tensor<f32>,       // [B, H, Lq, dk]
    k: &Tensor<f32>,       // [B, H, Lk, dk]
    v: &Tensor<f32>,       // [B, H, Lk, dv]
    bias: &Tensor<f32>,    // [Bb, Hb, Lq, Lk] (read when has_bias)
    out: &mut Tensor<f32>, // [B, H, Lq, dv]
    lse: &mut Tensor<f32>, // [B, H, Lq]
    scale: f32,
    threshold: f32,
    #[comptime] has_bias: bool,
) {
    let heads = q.shape(1);
    let lq = q.shape(2);
    let lk = k.shape(2);
    let dv = v.shape(3);
    if ABSOLUTE_POS >= q.shape(0) * heads * lq {
        terminate!();
    }
    let i = ABSOLUTE_POS % lq;
    let h = (ABSOLUTE_POS / lq) % heads;
    let b = ABSOLUTE_POS / (lq * heads);
    let qr = row(q, b, h, i);
    let k0 = row(k, b, h, 0);
    let v0 = row(v, b, h, 0);
    let br = bias_row(bias, b, h, i, has_bias);
    let orow = row(out, b, h, i);
    let mut m = f32::new(-3.0e38);
    for j in 0..lk {
        let s = score(
            q,
            k,
            bias,
            qr,
            k0 + j * k.stride(2),
            br + j * bias.stride(3),
            scale,
            threshold,
            has_bias,
        );
        if s > m {
            m = s;
        }
    }
    for d in 0..dv {
        out[orow + d * out.stride(3)] = 0.0;
    }
    let mut sum = 0.0;
    for j in 0..lk {
        let s = score(
            q,
            k,
            bias,
            qr,
            k0 + j * k.stride(2),
            br + j * bias.stride(3),
            scale,
            threshold,
            has_bias,
        );
        let w = (s - m).exp();
        sum += w;
        for d in 0..dv {
            out[orow + d * out.stride(3)] += w * v[v0 + j * v.stride(2) + d * v.stride(3)];
        }
    }
    for d in 0..dv {
        out[orow + d * out.stride(3)] = out[orow + d * out.stride(3)] / sum;
    }
    lse[row(lse, b, h, i)] = m + sum.ln();
}

/// `dS_ij` from `S_ij`: `P_ij (dO_i·V_j − D_i)`, 0 for a masked pair.
#[cube]
#[allow(clippy::too_many_arguments)]
// `has_bias` is comptime and the mask test is not: the `#[cube]` macro takes them in separate
// `if`s.
#[allow(clippy::collapsible_if)]
fn d_score(
    p: f32,
    d_out: &Tensor<f32>,
    v: &Tensor<f32>,
    orow: usize,
    vr: usize,
    delta: f32,
    br_j: usize,
    bias: &Tensor<f32>,
    threshold: f32,
    #[comptime] has_bias: bool,
) -> f32 {
    let dv = v.shape(3);
    let mut dp = 0.0;
    for d in 0..dv {
        dp += d_out[orow + d * d_out.stride(3)] * v[vr + d * v.stride(3)];
    }
    let mut ds = p * (dp - delta);
    if has_bias {
        if bias[br_j] <= threshold {
            ds = 0.0;
        }
    }
    ds
}

/// `dQ̃_i = s Σ_j dS_ij K̃_j`: one thread per query row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_kernel(
    q: &Tensor<f32>,      // [B, H, Lq, dk]
    k: &Tensor<f32>,      // [B, H, Lk, dk]
    v: &Tensor<f32>,      // [B, H, Lk, dv]
    bias: &Tensor<f32>,   // [Bb, Hb, Lq, Lk]
    d_out: &Tensor<f32>,  // [B, H, Lq, dv]
    lse: &Tensor<f32>,    // [B, H, Lq]
    delta: &Tensor<f32>,  // [B, H, Lq]
    dq: &mut Tensor<f32>, // [B, H, Lq, dk]
    scale: f32,
    threshold: f32,
    #[comptime] has_bias: bool,
) {
    let heads = q.shape(1);
    let lq = q.shape(2);
    let lk = k.shape(2);
    let dk = q.shape(3);
    if ABSOLUTE_POS >= q.shape(0) * heads * lq {
        terminate!();
    }
    let i = ABSOLUTE_POS % lq;
    let h = (ABSOLUTE_POS / lq) % heads;
    let b = ABSOLUTE_POS / (lq * heads);
    let qr = row(q, b, h, i);
    let k0 = row(k, b, h, 0);
    let v0 = row(v, b, h, 0);
    let br = bias_row(bias, b, h, i, has_bias);
    let orow = row(d_out, b, h, i);
    let at = row(lse, b, h, i);
    let lse_i = lse[at];
    let delta_i = delta[row(delta, b, h, i)];
    let dqr = row(dq, b, h, i);
    for d in 0..dk {
        dq[dqr + d * dq.stride(3)] = 0.0;
    }
    for j in 0..lk {
        let kr = k0 + j * k.stride(2);
        let br_j = br + j * bias.stride(3);
        let s = score(q, k, bias, qr, kr, br_j, scale, threshold, has_bias);
        let p = (s - lse_i).exp();
        let ds = d_score(
            p,
            d_out,
            v,
            orow,
            v0 + j * v.stride(2),
            delta_i,
            br_j,
            bias,
            threshold,
            has_bias,
        );
        for d in 0..dk {
            dq[dqr + d * dq.stride(3)] += ds * k[kr + d * k.stride(3)];
        }
    }
    for d in 0..dk {
        dq[dqr + d * dq.stride(3)] = scale * dq[dqr + d * dq.stride(3)];
    }
}

/// `dK̃_j = s Σ_i dS_ij Q̃_i` and `dV_j = Σ_i P_ij dO_i`: one thread per key row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_kernel(
    q: &Tensor<f32>,          // [B, H, Lq, dk]
    k: &Tensor<f32>,          // [B, H, Lk, dk]
    v: &Tensor<f32>,          // [B, H, Lk, dv]
    bias: &Tensor<f32>,       // [Bb, Hb, Lq, Lk]
    d_out: &Tensor<f32>,      // [B, H, Lq, dv]
    lse: &Tensor<f32>,        // [B, H, Lq]
    delta: &Tensor<f32>,      // [B, H, Lq]
    dk_out: &mut Tensor<f32>, // [B, H, Lk, dk]
    dv_out: &mut Tensor<f32>, // [B, H, Lk, dv]
    scale: f32,
    threshold: f32,
    #[comptime] has_bias: bool,
) {
    let heads = k.shape(1);
    let lq = q.shape(2);
    let lk = k.shape(2);
    let dk = k.shape(3);
    let dv = v.shape(3);
    if ABSOLUTE_POS >= k.shape(0) * heads * lk {
        terminate!();
    }
    let j = ABSOLUTE_POS % lk;
    let h = (ABSOLUTE_POS / lk) % heads;
    let b = ABSOLUTE_POS / (lk * heads);
    let kr = row(k, b, h, j);
    let vr = row(v, b, h, j);
    let q0 = row(q, b, h, 0);
    let o0 = row(d_out, b, h, 0);
    let dkr = row(dk_out, b, h, j);
    let dvr = row(dv_out, b, h, j);
    for d in 0..dk {
        dk_out[dkr + d * dk_out.stride(3)] = 0.0;
    }
    for d in 0..dv {
        dv_out[dvr + d * dv_out.stride(3)] = 0.0;
    }
    for i in 0..lq {
        let qr = q0 + i * q.stride(2);
        let orow = o0 + i * d_out.stride(2);
        let br_j = bias_row(bias, b, h, i, has_bias) + j * bias.stride(3);
        let s = score(q, k, bias, qr, kr, br_j, scale, threshold, has_bias);
        let lse_i = lse[row(lse, b, h, i)];
        let delta_i = delta[row(delta, b, h, i)];
        let p = (s - lse_i).exp();
        for d in 0..dv {
            dv_out[dvr + d * dv_out.stride(3)] += p * d_out[orow + d * d_out.stride(3)];
        }
        let ds = d_score(
            p, d_out, v, orow, vr, delta_i, br_j, bias, threshold, has_bias,
        );
        for d in 0..dk {
            dk_out[dkr + d * dk_out.stride(3)] += ds * q[qr + d * q.stride(3)];
        }
    }
    for d in 0..dk {
        dk_out[dkr + d * dk_out.stride(3)] = scale * dk_out[dkr + d * dk_out.stride(3)];
    }
}

/// The attention kernels on one CubeCL runtime.
type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// `(Q̃, K̃, V, bias)` made contiguous, RoPE applied.
struct Prepared<R: CubeRuntime> {
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    bias: Option<CubeTensor<R>>,
}

fn prepare<R: CubeRuntime, BT: BoolElement>(
    input: &FusedAttentionInput<Cube<R, BT>>,
) -> Prepared<R> {
    let (q, k) = match &input.rope {
        Some(rope) => {
            let (q, k) = rope.rotate(wrap(input.q.clone()), wrap(input.k.clone()));
            (prim(q), prim(k))
        }
        None => (input.q.clone(), input.k.clone()),
    };
    Prepared {
        q: into_contiguous(q),
        k: into_contiguous(k),
        v: into_contiguous(input.v.clone()),
        bias: input.bias.clone().map(into_contiguous),
    }
}

/// Threads and cube count for `rows` rows.
fn grid(rows: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(rows.div_ceil(CUBE) as u32, 1, 1),
        CubeDim::new_1d(CUBE as u32),
    )
}

/// Runs the forward kernel: `(O, lse)`.
fn forward<R: CubeRuntime>(p: &Prepared<R>, scale: f32) -> (CubeTensor<R>, CubeTensor<R>) {
    let [b, h, lq, _] = p.q.shape().dims::<4>();
    let dv = p.v.shape()[3];
    let out = cube_empty(&p.q, [b, h, lq, dv]);
    let lse = cube_empty(&p.q, [b, h, lq]);
    // An absent bias is never read; any tensor fills the argument.
    let bias = p.bias.clone().unwrap_or_else(|| p.q.clone());
    let (count, dim) = grid(b * h * lq);
    attention_forward_kernel::launch::<R>(
        &p.q.client,
        count,
        dim,
        p.q.clone().into_tensor_arg(),
        p.k.clone().into_tensor_arg(),
        p.v.clone().into_tensor_arg(),
        bias.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        scale,
        MASKED_THRESHOLD,
        p.bias.is_some(),
    );
    (out, lse)
}

impl<R: CubeRuntime, BT: BoolElement> AttentionBackend for Cube<R, BT> {
    fn fused_attention_forward(
        input: FusedAttentionInput<Self>,
        _save_weights: bool,
    ) -> (CubeTensor<R>, Option<CubeTensor<R>>) {
        // The weights are never kept: the backward recomputes them from `lse`.
        let (out, _) = forward(&prepare(&input), input.scale);
        (out, None)
    }

    fn fused_attention_backward(
        input: FusedAttentionInput<Self>,
        _weights: Option<CubeTensor<R>>,
        d_out: CubeTensor<R>,
    ) -> FusedAttentionGrads<Self> {
        let p = prepare(&input);
        let (out, lse) = forward(&p, input.scale);
        let d_out = into_contiguous(d_out);
        let [b, h, lq, _] = p.q.shape().dims::<4>();
        let [_, _, lk, dk] = p.k.shape().dims::<4>();
        let dv = p.v.shape()[3];
        let delta = Self::float_reshape(
            Self::float_sum_dim(Self::float_mul(d_out.clone(), out), 3),
            Shape::new([b, h, lq]),
        ); // [B, H, Lq]
        let delta = into_contiguous(delta);
        let bias = p.bias.clone().unwrap_or_else(|| p.q.clone());
        let has_bias = p.bias.is_some();
        let dq = cube_empty(&p.q, [b, h, lq, dk]);
        let (count, dim) = grid(b * h * lq);
        attention_dq_kernel::launch::<R>(
            &p.q.client,
            count,
            dim,
            p.q.clone().into_tensor_arg(),
            p.k.clone().into_tensor_arg(),
            p.v.clone().into_tensor_arg(),
            bias.clone().into_tensor_arg(),
            d_out.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            dq.clone().into_tensor_arg(),
            input.scale,
            MASKED_THRESHOLD,
            has_bias,
        );
        let dk_t = cube_empty(&p.q, [b, h, lk, dk]);
        let dv_t = cube_empty(&p.q, [b, h, lk, dv]);
        let (count, dim) = grid(b * h * lk);
        attention_dkv_kernel::launch::<R>(
            &p.q.client,
            count,
            dim,
            p.q.clone().into_tensor_arg(),
            p.k.clone().into_tensor_arg(),
            p.v.clone().into_tensor_arg(),
            bias.into_tensor_arg(),
            d_out.into_tensor_arg(),
            lse.into_tensor_arg(),
            delta.into_tensor_arg(),
            dk_t.clone().into_tensor_arg(),
            dv_t.clone().into_tensor_arg(),
            input.scale,
            MASKED_THRESHOLD,
            has_bias,
        );
        let (dq, dk_t) = match &input.rope {
            Some(rope) => {
                let (dq, dk) = rope.unrotate(wrap(dq), wrap(dk_t));
                (prim(dq), prim(dk))
            }
            None => (dq, dk_t),
        };
        FusedAttentionGrads {
            q: dq,
            k: dk_t,
            v: dv_t,
        }
    }
}
