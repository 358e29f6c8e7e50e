//! The fused attention kernel on plain `f32` slices: forward and backward of
//! `O = softmax(s·Q·Kᵀ + bias)·V` for every (batch, head) pair, without materializing anything
//! but the weights `P` (kept by the forward for the backward).
//!
//! # Glossary
//! - `B` batch, `H` heads, `Lq`/`Lk` query/key lengths, `dk` query/key width, `dv` value width.
//! - `Q` `[B, H, Lq, dk]`, `K` `[B, H, Lk, dk]`, `V` `[B, H, Lk, dv]`, row-major.
//! - `bias` `[Hb, Lq, Lk]` with `Hb ∈ {1, H}` (broadcast over the batch, and over heads when
//!   `Hb = 1`): causal mask ([`MASKED`](super::MASKED) entries) plus ALiBi-style biases.
//! - RoPE (optional): `Q̃ = R_q Q`, `K̃ = R_k K` row by row, with `cos`, `sin` tables
//!   `[Lq, dk]` / `[Lk, dk]` in the rotate-half layout; without it `Q̃ = Q`, `K̃ = K`.
//! - `S = s·Q̃·K̃ᵀ + bias`, `P = softmax_rows(S)`, `O = P·V`.
//!
//! # Backward
//! With `dO` given: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
//! `dQ̃ = s·dS·K̃`, `dK̃ = s·dSᵀ·Q̃` (the bias is a constant: no gradient), then
//! `dQ = R_qᵀ dQ̃`, `dK = R_kᵀ dK̃`.
//!
//! Masked pairs (bias ≤ [`MASKED_THRESHOLD`]) take the bias itself as their score (exactly what
//! `score + MASKED` rounds to in f32) and weight 0 without an `exp`. All inner loops run over
//! the key index, on `Kᵀ` and `Vᵀ`, so they vectorize for any head width.
//!
//! Each row stops at the end of its unmasked prefix, rounded up to whole groups of eight keys
//! (so a causal mask costs about half of the full `Lq × Lk`): the skipped pairs have weight 0,
//! and stopping on a group boundary keeps every sum bit-identical to running the whole row
//! (the skipped terms are exact zeros, and [`dot`]'s lanes see the same keys).

use rayon::prelude::*;

use crate::simd::{MulAdd, SimdLevel, fast_exp, simd_variants};

/// A bias at or below this marks a masked pair (the crate masks with `−1e30`).
pub const MASKED_THRESHOLD: f32 = -1.0e29;

/// Below this many multiply-adds the work stays on the calling thread.
const PAR_MIN_WORK: usize = 1 << 16;

/// Sizes of one fused attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttentionDims {
    /// Batch `B`.
    pub batch: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Query length `Lq`.
    pub q_len: usize,
    /// Key/value length `Lk`.
    pub k_len: usize,
    /// Query/key width `dk`.
    pub d_k: usize,
    /// Value width `dv`.
    pub d_v: usize,
    /// Heads of the bias table: 0 (no bias), 1 (shared by heads) or `H`.
    pub bias_heads: usize,
    /// Batch rows of the bias table: 1 (shared by the batch) or `B` (e.g. key padding folded
    /// into the bias).
    pub bias_batches: usize,
}

impl AttentionDims {
    fn blocks(&self) -> usize {
        self.batch * self.heads
    }
    fn work(&self) -> usize {
        self.blocks() * self.q_len * self.k_len * (self.d_k + self.d_v)
    }
    fn parallel(&self) -> bool {
        self.work() >= PAR_MIN_WORK && rayon::current_num_threads() > 1
    }
    /// Which `[Lq, Lk]` table of the bias `[Bb, Hb, Lq, Lk]` block `blk` (= b·H + h) reads.
    fn table_of(&self, blk: usize) -> usize {
        let b = if self.bias_batches == 1 {
            0
        } else {
            blk / self.heads
        };
        let h = if self.bias_heads == 1 {
            0
        } else {
            blk % self.heads
        };
        b * self.bias_heads + h
    }

    /// The bias rows `[Lq, Lk]` of block `blk` (= b·H + h), if there is a bias.
    fn bias_of<'a>(&self, bias: Option<&'a [f32]>, blk: usize) -> Option<&'a [f32]> {
        let table = self.q_len * self.k_len;
        let t = self.table_of(blk);
        bias.map(|bias| &bias[t * table..(t + 1) * table])
    }

    /// For every bias row `[Bb, Hb, Lq]`, where the work on it may stop: one past its last unmasked
    /// key, rounded up to a multiple of [`LANE_GROUP`] and capped at `Lk`; `Lk` for a row
    /// with no unmasked key (it is uniform, see [`forward`]). Empty without a bias.
    pub(crate) fn row_ends(&self, bias: Option<&[f32]>) -> Vec<usize> {
        let Some(bias) = bias else {
            return Vec::new();
        };
        bias.chunks_exact(self.k_len)
            .map(
                |row| match row.iter().rposition(|&b| b > MASKED_THRESHOLD) {
                    Some(last) => (last + 1).next_multiple_of(LANE_GROUP).min(self.k_len),
                    None => self.k_len,
                },
            )
            .collect()
    }

    /// The row ends ([`Self::row_ends`]) of block `blk`, `[Lq]`; `None` when every row is whole.
    fn ends_of<'a>(&self, ends: &'a [usize], blk: usize) -> Option<&'a [usize]> {
        if ends.is_empty() {
            return None;
        }
        let t = self.table_of(blk);
        Some(&ends[t * self.q_len..(t + 1) * self.q_len])
    }
}

/// Lanes of [`dot`]'s partial sums: rows stop on a multiple of this (see the module docs).
const LANE_GROUP: usize = 8;

/// RoPE tables, row-major, rotate-half layout (`cos[p, f] = cos(p·θ_{f mod dk/2})`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RopeRef<'a> {
    /// `cos` at the query positions, `[Lq, dk]`.
    pub cos_q: &'a [f32],
    /// `sin` at the query positions, `[Lq, dk]`.
    pub sin_q: &'a [f32],
    /// `cos` at the key positions, `[Lk, dk]`.
    pub cos_k: &'a [f32],
    /// `sin` at the key positions, `[Lk, dk]`.
    pub sin_k: &'a [f32],
}

/// Rotates every row of `x` `[rows, d]`: `x ⊙ cos + sign·rotate_half(x) ⊙ sin` with
/// `rotate_half([x₁, x₂]) = [−x₂, x₁]`; `sign = 1` applies `R`, `sign = −1` applies `Rᵀ`.
fn rotate_rows(x: &[f32], d: usize, cos: &[f32], sin: &[f32], sign: f32) -> Vec<f32> {
    let half = d / 2;
    let mut out = vec![0.0; x.len()];
    for ((o, x), (c, s)) in out
        .chunks_exact_mut(d)
        .zip(x.chunks_exact(d))
        .zip(cos.chunks_exact(d).zip(sin.chunks_exact(d)))
    {
        for f in 0..half {
            o[f] = x[f] * c[f] - sign * x[f + half] * s[f];
            o[f + half] = x[f + half] * c[f + half] + sign * x[f] * s[f + half];
        }
    }
    out
}

/// `(Q̃, K̃)` of one block: rotated copies with RoPE, borrowed inputs without.
fn rotated<'a>(
    q: &'a [f32],
    k: &'a [f32],
    d_k: usize,
    rope: Option<RopeRef<'_>>,
) -> (std::borrow::Cow<'a, [f32]>, std::borrow::Cow<'a, [f32]>) {
    use std::borrow::Cow;
    match rope {
        Some(r) => (
            Cow::Owned(rotate_rows(q, d_k, r.cos_q, r.sin_q, 1.0)),
            Cow::Owned(rotate_rows(k, d_k, r.cos_k, r.sin_k, 1.0)),
        ),
        None => (Cow::Borrowed(q), Cow::Borrowed(k)),
    }
}

/// One (batch, head) block's inputs in the kernels' layout.
struct BlockInputs<'a> {
    /// `Q̃` `[Lq, dk]` (rotated if RoPE).
    q: std::borrow::Cow<'a, [f32]>,
    /// `K̃ᵀ` `[dk, Lk]`.
    k_t: Vec<f32>,
    /// `Vᵀ` `[dv, Lk]`.
    v_t: Vec<f32>,
}

impl<'a> BlockInputs<'a> {
    /// Slices block `blk` out of the inputs' `q`, `k`, `v`, rotates Q and K (RoPE) and
    /// transposes K and V.
    fn new(inputs: &Inputs<'a>, blk: usize) -> Self {
        let Inputs {
            q,
            k,
            v,
            rope,
            dims,
            ..
        } = *inputs;
        let AttentionDims {
            q_len,
            k_len,
            d_k,
            d_v,
            ..
        } = dims;
        let (q, k) = rotated(
            &q[blk * q_len * d_k..(blk + 1) * q_len * d_k],
            &k[blk * k_len * d_k..(blk + 1) * k_len * d_k],
            d_k,
            rope,
        ); // Q̃ [Lq, dk], K̃ [Lk, dk]
        Self {
            q,
            k_t: transpose(&k, k_len, d_k),
            v_t: transpose(&v[blk * k_len * d_v..(blk + 1) * k_len * d_v], k_len, d_v),
        }
    }
}

/// Outputs of [`forward`].
#[derive(Debug, Clone)]
pub(crate) struct ForwardOutput {
    /// `O` `[B, H, Lq, dv]`.
    pub out: Vec<f32>,
    /// `P` `[B, H, Lq, Lk]`, if asked for.
    pub weights: Option<Vec<f32>>,
}

/// Gradients returned by [`backward`].
#[derive(Debug, Clone)]
pub(crate) struct Gradients {
    /// `dQ` `[B, H, Lq, dk]`.
    pub q: Vec<f32>,
    /// `dK` `[B, H, Lk, dk]`.
    pub k: Vec<f32>,
    /// `dV` `[B, H, Lk, dv]`.
    pub v: Vec<f32>,
}

/// `Σ a_i b_i` with [`LANE_GROUP`] independent partial sums, so that the compiler vectorizes it.
#[inline(always)]
fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANE_GROUP];
    let split = a.len() / LANE_GROUP * LANE_GROUP;
    for (x, y) in a[..split]
        .chunks_exact(LANE_GROUP)
        .zip(b[..split].chunks_exact(LANE_GROUP))
    {
        for lane in 0..LANE_GROUP {
            acc[lane] = M::madd(x[lane], y[lane], acc[lane]);
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i` with [`LANE_GROUP`] independent partial sums (as [`dot`]).
#[inline(always)]
fn sum_lanes(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANE_GROUP];
    let split = a.len() / LANE_GROUP * LANE_GROUP;
    for x in a[..split].chunks_exact(LANE_GROUP) {
        for lane in 0..LANE_GROUP {
            acc[lane] += x[lane];
        }
    }
    let tail: f32 = a[split..].iter().sum();
    acc.iter().sum::<f32>() + tail
}

/// `y += α·x`.
#[inline(always)]
fn axpy<M: MulAdd>(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = M::madd(alpha, *x, *y);
    }
}

/// `[rows, cols]` → `[cols, rows]`, row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Runs `f(block, (a, b))` over matching chunks of two outputs, in parallel when worth it.
fn for_blocks<F>(dims: &AttentionDims, a: &mut [f32], ca: usize, b: &mut [f32], cb: usize, f: F)
where
    F: Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
{
    if dims.parallel() {
        a.par_chunks_mut(ca)
            .zip(b.par_chunks_mut(cb))
            .enumerate()
            .for_each(|(blk, (a, b))| f(blk, a, b));
    } else {
        a.chunks_mut(ca)
            .zip(b.chunks_mut(cb))
            .enumerate()
            .for_each(|(blk, (a, b))| f(blk, a, b));
    }
}

// Layout: every inner loop runs over the key index `j` (length `Lk`, contiguous), so the
// kernels work on `Kᵀ` `[dk, Lk]` and `Vᵀ` `[dv, Lk]` and vectorize whatever `dk` is.

/// One query row of the forward: `row` holds `S[i, :end]` on entry (`end = row.len()`) and
/// `P[i, :end]` on return; `out` receives `O[i, :]`.
#[inline(always)]
fn softmax_row_times_v<M: MulAdd>(
    row: &mut [f32],
    bias: Option<&[f32]>,
    v_t: &[f32],
    k_len: usize,
    out: &mut [f32],
) {
    let end = row.len();
    if let Some(b) = bias {
        // A masked score is the mask itself (what `score + MASKED` rounds to).
        for (s, &b) in row.iter_mut().zip(&b[..end]) {
            *s = if b <= MASKED_THRESHOLD { b } else { *s + b };
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Masked pairs get exactly 0 (no `exp`), unless the whole row is masked: then every score
    // equals the mask and the row is uniform, as with the primitive path. `fast_exp` is
    // branch-free, so this loop vectorizes (libm's `expf`, one call per pair, was 1.6% of a
    // d = 96 GPT step).
    let row_masked = max <= MASKED_THRESHOLD;
    for s in row.iter_mut() {
        let e = fast_exp::<M>(*s - max);
        *s = if *s <= MASKED_THRESHOLD && !row_masked {
            0.0
        } else {
            e
        };
    }
    let inv = 1.0 / sum_lanes(row);
    row.iter_mut().for_each(|s| *s *= inv);
    for (f, o) in out.iter_mut().enumerate() {
        *o = dot::<M>(row, &v_t[f * k_len..f * k_len + end]);
    }
}

/// The kernels' inputs, shared by every block.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    rope: Option<RopeRef<'a>>,
    dims: AttentionDims,
    scale: f32,
    ends: &'a [usize],
}

simd_variants!(
    forward_block,
    forward_block_generic,
    forward_block_avx2,
    forward_block_avx512,
    forward_block_body,
    (inputs: &Inputs<'_>, save_weights: bool, blk: usize, out: &mut [f32], p: &mut [f32]) -> ()
);

/// One (batch, head) block of the forward: `O` rows into `out` `[Lq, dv]`, and the weights
/// into `p` (`[Lq, Lk]` when `save_weights`, one `[Lk]` scratch row otherwise).
#[inline(always)]
fn forward_block_body<M: MulAdd>(
    inputs: &Inputs<'_>,
    save_weights: bool,
    blk: usize,
    out: &mut [f32],
    p: &mut [f32],
) {
    let dims = &inputs.dims;
    let AttentionDims {
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = *dims;
    let BlockInputs { q, k_t, v_t } = BlockInputs::new(inputs, blk);
    let bias = dims.bias_of(inputs.bias, blk); // [Lq, Lk]
    let ends = dims.ends_of(inputs.ends, blk); // [Lq]
    for i in 0..q_len {
        let end = ends.map_or(k_len, |e| e[i]);
        let row = if save_weights {
            &mut p[i * k_len..i * k_len + end] // S[i, :end], then P[i, :end]
        } else {
            let row = &mut p[..end];
            row.fill(0.0);
            row
        };
        for (f, &qf) in q[i * d_k..(i + 1) * d_k].iter().enumerate() {
            axpy::<M>(inputs.scale * qf, &k_t[f * k_len..f * k_len + end], row);
        }
        softmax_row_times_v::<M>(
            row,
            bias.map(|b| &b[i * k_len..(i + 1) * k_len]),
            &v_t,
            k_len,
            &mut out[i * d_v..(i + 1) * d_v],
        );
    }
}

/// Forward pass: `O`, and the weights `P` when `save_weights` (the backward needs them;
/// inference does not, and then only one row of scores exists at a time per block). `ends`:
/// where each bias row's work stops, from [`AttentionDims::row_ends`] (empty: every row whole).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    rope: Option<RopeRef<'_>>,
    dims: AttentionDims,
    scale: f32,
    save_weights: bool,
    ends: &[usize],
) -> ForwardOutput {
    let AttentionDims {
        q_len, k_len, d_v, ..
    } = dims;
    // One block: every query row into `p` (`[Lq, Lk]` when saving the weights, one `[Lk]`
    // scratch row otherwise), at the SIMD level of the calling thread.
    let level = SimdLevel::active();
    let inputs = Inputs {
        q,
        k,
        v,
        bias,
        rope,
        dims,
        scale,
        ends,
    };
    let block = |blk: usize, out: &mut [f32], p: &mut [f32]| {
        forward_block(level, &inputs, save_weights, blk, out, p)
    };
    let mut out = vec![0.0; dims.blocks() * q_len * d_v];
    if save_weights {
        let mut weights = vec![0.0; dims.blocks() * q_len * k_len];
        for_blocks(
            &dims,
            &mut out,
            q_len * d_v,
            &mut weights,
            q_len * k_len,
            block,
        );
        ForwardOutput {
            out,
            weights: Some(weights),
        }
    } else {
        let chunk = q_len * d_v;
        if dims.parallel() {
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each_init(|| vec![0.0; k_len], |row, (blk, out)| block(blk, out, row));
        } else {
            let mut row = vec![0.0; k_len];
            out.chunks_mut(chunk)
                .enumerate()
                .for_each(|(blk, out)| block(blk, out, &mut row));
        }
        ForwardOutput { out, weights: None }
    }
}

simd_variants!(
    backward_block,
    backward_block_generic,
    backward_block_avx2,
    backward_block_avx512,
    backward_block_body,
    (inputs: &Inputs<'_>, weights: &[f32], d_out: &[f32], blk: usize, dq: &mut [f32], dkv: &mut [f32]) -> ()
);

/// One (batch, head) block of the backward: `dQ` into `dq` `[Lq, dk]`, `dK` and `dV` into
/// `dkv` `[Lk·dk + Lk·dv]`, from the weights `P` and `dO` of all blocks.
#[inline(always)]
fn backward_block_body<M: MulAdd>(
    inputs: &Inputs<'_>,
    weights: &[f32],
    d_out: &[f32],
    blk: usize,
    dq: &mut [f32],
    dkv: &mut [f32],
) {
    let dims = &inputs.dims;
    let AttentionDims {
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = *dims;
    let (scale, rope) = (inputs.scale, inputs.rope);
    let BlockInputs { q, k_t, v_t } = BlockInputs::new(inputs, blk);
    let p = &weights[blk * q_len * k_len..(blk + 1) * q_len * k_len]; // [Lq, Lk]
    let d_o = &d_out[blk * q_len * d_v..(blk + 1) * q_len * d_v]; // [Lq, dv]
    let ends = dims.ends_of(inputs.ends, blk); // [Lq]
    let mut dk_t = vec![0.0f32; d_k * k_len]; // [dk, Lk]
    let mut dv_t = vec![0.0f32; d_v * k_len]; // [dv, Lk]
    let mut ds_row = vec![0.0f32; k_len]; // dP[i, :], then dS[i, :]
    for i in 0..q_len {
        // Keys past `end` have P[i, j] = 0, so they add exact zeros below.
        let end = ends.map_or(k_len, |e| e[i]);
        let pi = &p[i * k_len..i * k_len + end];
        let ds = &mut ds_row[..end];
        let cols = |f: usize| f * k_len..f * k_len + end; // row f of a [·, Lk] table, cut
        // dP[i, :] = Σ_f dO[i, f] Vᵀ[f, :];  dVᵀ[f, :] += dO[i, f] P[i, :].
        ds.fill(0.0);
        for (f, &g) in d_o[i * d_v..(i + 1) * d_v].iter().enumerate() {
            axpy::<M>(g, &v_t[cols(f)], ds);
            axpy::<M>(g, pi, &mut dv_t[cols(f)]);
        }
        // dS[i, :] = s·P[i, :] ⊙ (dP[i, :] − Σ_j P[i, j] dP[i, j]).
        let r = dot::<M>(pi, ds);
        for (x, &pij) in ds.iter_mut().zip(pi) {
            *x = scale * pij * (*x - r);
        }
        // dQ[i, f] = dS[i, :]·Kᵀ[f, :];  dKᵀ[f, :] += Q[i, f] dS[i, :].
        let qi = &q[i * d_k..(i + 1) * d_k];
        for f in 0..d_k {
            dq[i * d_k + f] = dot::<M>(ds, &k_t[cols(f)]);
            axpy::<M>(qi[f], ds, &mut dk_t[cols(f)]);
        }
    }
    let (dk, dv) = dkv.split_at_mut(k_len * d_k); // [Lk, dk], [Lk, dv]
    let dk_rows = transpose(&dk_t, d_k, k_len); // dK̃ [Lk, dk]
    dv.copy_from_slice(&transpose(&dv_t, d_v, k_len));
    match rope {
        // Back through the rotations: dQ = R_qᵀ dQ̃, dK = R_kᵀ dK̃.
        Some(r) => {
            let dq_rows = rotate_rows(dq, d_k, r.cos_q, r.sin_q, -1.0);
            dq.copy_from_slice(&dq_rows);
            dk.copy_from_slice(&rotate_rows(&dk_rows, d_k, r.cos_k, r.sin_k, -1.0));
        }
        None => dk.copy_from_slice(&dk_rows),
    }
}

/// Backward pass from the forward's weights `P` and the output gradient `dO` `[B, H, Lq, dv]`,
/// with the forward's row `ends` (see [`forward`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: &[f32],
    d_out: &[f32],
    rope: Option<RopeRef<'_>>,
    dims: AttentionDims,
    scale: f32,
    ends: &[usize],
) -> Gradients {
    let AttentionDims {
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = dims;
    let level = SimdLevel::active();
    let inputs = Inputs {
        q,
        k,
        v,
        bias: None,
        rope,
        dims,
        scale,
        ends,
    };
    let mut dq = vec![0.0; dims.blocks() * q_len * d_k];
    // dK and dV of a block are written together: one buffer [Lk·dk + Lk·dv] per block.
    let kv_block = k_len * (d_k + d_v);
    let mut dkv = vec![0.0; dims.blocks() * kv_block];
    for_blocks(
        &dims,
        &mut dq,
        q_len * d_k,
        &mut dkv,
        kv_block,
        |blk, dq, dkv| backward_block(level, &inputs, weights, d_out, blk, dq, dkv),
    );
    let mut gk = Vec::with_capacity(dims.blocks() * k_len * d_k);
    let mut gv = Vec::with_capacity(dims.blocks() * k_len * d_v);
    for block in dkv.chunks(kv_block) {
        let (dk, dv) = block.split_at(k_len * d_k);
        gk.extend_from_slice(dk);
        gv.extend_from_slice(dv);
    }
    Gradients {
        q: dq,
        k: gk,
        v: gv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 attention on one block, for comparison.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: &[f32],
        (lq, lk, dk, dv): (usize, usize, usize, usize),
        scale: f32,
    ) -> Vec<f64> {
        let mut out = vec![0.0; lq * dv];
        for i in 0..lq {
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    let d: f64 = (0..dk)
                        .map(|f| q[i * dk + f] as f64 * k[j * dk + f] as f64)
                        .sum();
                    scale as f64 * d + bias[i * lk + j] as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in 0..lk {
                for f in 0..dv {
                    out[i * dv + f] += e[j] / z * v[j * dv + f] as f64;
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_a_direct_computation_with_a_causal_bias() {
        let (lq, lk, dk, dv) = (5, 7, 3, 2);
        let (q, k, v) = (
            pseudo_random(lq * dk, 1),
            pseudo_random(lk * dk, 2),
            pseudo_random(lk * dv, 3),
        );
        // Causal with an offset of 2 (queries at positions 2..7) plus a slope.
        let bias: Vec<f32> = (0..lq * lk)
            .map(|x| {
                let (i, j) = (x / lk, x % lk);
                if j > i + 2 {
                    -1.0e30
                } else {
                    -0.5 * (i + 2 - j) as f32
                }
            })
            .collect();
        let dims = AttentionDims {
            batch: 1,
            heads: 1,
            q_len: lq,
            k_len: lk,
            d_k: dk,
            d_v: dv,
            bias_heads: 1,
            bias_batches: 1,
        };
        let ends = dims.row_ends(Some(&bias));
        let got = forward(&q, &k, &v, Some(&bias), None, dims, 0.7, true, &ends);
        let weights = got.weights.as_deref().expect("saved");
        let want = reference(&q, &k, &v, &bias, (lq, lk, dk, dv), 0.7);
        for (g, w) in got.out.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        // Masked pairs get exactly zero weight; rows sum to one.
        for i in 0..lq {
            let row = &weights[i * lk..(i + 1) * lk];
            assert!(row[i + 3..].iter().all(|&p| p == 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (lq, lk, dk, dv) = (4, 4, 4, 2);
        let dims = AttentionDims {
            batch: 1,
            heads: 1,
            q_len: lq,
            k_len: lk,
            d_k: dk,
            d_v: dv,
            bias_heads: 1,
            bias_batches: 1,
        };
        let bias: Vec<f32> = (0..lq * lk)
            .map(|x| if x % lk > x / lk { -1.0e30 } else { 0.0 })
            .collect();
        let (q, k, v) = (
            pseudo_random(lq * dk, 4),
            pseudo_random(lk * dk, 5),
            pseudo_random(lk * dv, 6),
        );
        let d_out = pseudo_random(lq * dv, 7);
        // RoPE-like tables: any angles work for the gradient check (cos² + sin² = 1 per pair).
        let angles: Vec<f32> = (0..lq * dk).map(|x| 0.3 * x as f32).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let (cos, sin) = (
            // Same angle for feature f and f + dk/2, as in the rotate-half layout.
            cos.chunks(dk)
                .flat_map(|r| [r[0], r[1], r[0], r[1]])
                .collect::<Vec<_>>(),
            sin.chunks(dk)
                .flat_map(|r| [r[0], r[1], r[0], r[1]])
                .collect::<Vec<_>>(),
        );
        for with_rope in [false, true] {
            let rope = with_rope.then_some(RopeRef {
                cos_q: &cos,
                sin_q: &sin,
                cos_k: &cos,
                sin_k: &sin,
            });
            // Loss = Σ dO ⊙ O, evaluated in f64 by the reference on the rotated inputs.
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                let (q, k) = rotated(q, k, dk, rope);
                reference(&q, &k, v, &bias, (lq, lk, dk, dv), 0.9)
                    .iter()
                    .zip(&d_out)
                    .map(|(o, g)| o * *g as f64)
                    .sum()
            };
            let ends = dims.row_ends(Some(&bias));
            let fwd = forward(&q, &k, &v, Some(&bias), rope, dims, 0.9, true, &ends);
            let weights = fwd.weights.as_deref().expect("saved");
            let grads = backward(&q, &k, &v, weights, &d_out, rope, dims, 0.9, &ends);
            let eps = 1e-3f32;
            let check = |which: usize, analytic: &[f32]| {
                for idx in 0..analytic.len() {
                    let mut t = [q.clone(), k.clone(), v.clone()];
                    t[which][idx] += eps;
                    let up = loss(&t[0], &t[1], &t[2]);
                    t[which][idx] -= 2.0 * eps;
                    let down = loss(&t[0], &t[1], &t[2]);
                    let numeric = (up - down) / (2.0 * eps as f64);
                    assert!(
                        (numeric - analytic[idx] as f64).abs() < 1e-3,
                        "rope={with_rope} input {which}[{idx}]: {numeric} vs {}",
                        analytic[idx]
                    );
                }
            };
            check(0, &grads.q);
            check(1, &grads.k);
            check(2, &grads.v);
        }
    }

    #[test]
    fn cut_rows_and_unsaved_weights_change_no_bit() {
        // Lk = 37 is no multiple of the lane group; two bias heads with different masks
        // (causal, and causal with the first key masked too), queries offset by 3 (cached
        // decoding shape), and a fully masked row.
        let (b, h, lq, lk, dk, dv) = (2, 2, 34, 37, 5, 3);
        let dims = AttentionDims {
            batch: b,
            heads: h,
            q_len: lq,
            k_len: lk,
            d_k: dk,
            d_v: dv,
            bias_heads: h,
            bias_batches: 1,
        };
        let bias: Vec<f32> = (0..h * lq * lk)
            .map(|x| {
                let (head, i, j) = (x / (lq * lk), x / lk % lq, x % lk);
                let masked = j > i + 3 || (head == 1 && (j == 0 || i == 5));
                if masked {
                    -1.0e30
                } else {
                    -0.1 * (i + 3 - j) as f32
                }
            })
            .collect();
        let (q, k, v) = (
            pseudo_random(b * h * lq * dk, 11),
            pseudo_random(b * h * lk * dk, 12),
            pseudo_random(b * h * lk * dv, 13),
        );
        let d_out = pseudo_random(b * h * lq * dv, 14);
        let ends = dims.row_ends(Some(&bias));
        assert_eq!(&ends[..3], &[8, 8, 8]);
        assert_eq!(ends[5], 16);
        assert_eq!(ends[lq + 5], lk, "a fully masked row stays whole");
        let whole = forward(&q, &k, &v, Some(&bias), None, dims, 0.8, true, &[]);
        let cut = forward(&q, &k, &v, Some(&bias), None, dims, 0.8, true, &ends);
        let unsaved = forward(&q, &k, &v, Some(&bias), None, dims, 0.8, false, &ends);
        assert_eq!(whole.out, cut.out);
        assert_eq!(whole.out, unsaved.out);
        assert_eq!(whole.weights, cut.weights);
        assert!(unsaved.weights.is_none());
        let weights = whole.weights.as_deref().expect("saved");
        let g_whole = backward(&q, &k, &v, weights, &d_out, None, dims, 0.8, &[]);
        let g_cut = backward(&q, &k, &v, weights, &d_out, None, dims, 0.8, &ends);
        assert_eq!(g_whole.q, g_cut.q);
        assert_eq!(g_whole.k, g_cut.k);
        assert_eq!(g_whole.v, g_cut.v);
    }
}
