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
//! `score + MASKED` rounds to in f32) and weight 0 without an `exp`. Every product combines
//! rows of a table, a register block of one output row at a time ([`combine_rows`]): the scores
//! and `dP` rows over the keys (from `K̃ᵀ`, `Vᵀ`), the `O` and `dQ̃` rows over the features (from
//! `V`, `K̃`), and the `dVᵀ`, `dK̃ᵀ` rows over the keys (from `P`, `dS`, summed over the
//! queries). So they vectorize for any head width, and each output is stored once.
//!
//! Each row stops at the end of its unmasked prefix, rounded up to whole groups of eight keys
//! (so a causal mask costs about half of the full `Lq × Lk`): the skipped pairs have weight 0,
//! and stopping on a group boundary keeps every sum bit-identical to running the whole row
//! (the skipped terms are exact zeros, and [`dot`]'s lanes see the same keys).

use std::borrow::Cow;

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
#[cfg(test)]
fn rotated<'a>(
    q: &'a [f32],
    k: &'a [f32],
    d_k: usize,
    rope: Option<RopeRef<'_>>,
) -> (Cow<'a, [f32]>, Cow<'a, [f32]>) {
    match rope {
        Some(r) => (
            Cow::Owned(rotate_rows(q, d_k, r.cos_q, r.sin_q, 1.0)),
            Cow::Owned(rotate_rows(k, d_k, r.cos_k, r.sin_k, 1.0)),
        ),
        None => (Cow::Borrowed(q), Cow::Borrowed(k)),
    }
}

/// A `[B, H, L, w]` operand where it lies in memory: element `(b, h, l, f)` at
/// `b·strides[0] + h·strides[1] + l·strides[2] + f` (unit stride along `w`). The multi-head
/// layer's split heads are `[B, L, H, w]` memory read through swapped axes; the kernel reads
/// each block's rows where they are, inside its parallel tasks, instead of a copy into
/// `[B, H, L, w]` on the calling thread first (12% of that thread's time in a d = 96 GPT step).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads<'a> {
    /// The memory, element `(0, 0, 0, 0)` first.
    pub data: &'a [f32],
    /// Strides of the `B`, `H` and `L` axes, in elements.
    pub strides: [usize; 3],
}

impl<'a> Heads<'a> {
    /// A row-major `[B, H, L, w]` operand.
    #[cfg(test)]
    pub fn dense(data: &'a [f32], heads: usize, len: usize, width: usize) -> Self {
        Self {
            data,
            strides: [heads * len * width, len * width, width],
        }
    }

    /// Offset of row `(b, h, 0)` of block `blk` (= b·H + h).
    fn start(&self, blk: usize, heads: usize) -> usize {
        (blk / heads) * self.strides[0] + (blk % heads) * self.strides[1]
    }

    /// Rows `[L, w]` of block `blk`, borrowed when they are contiguous.
    fn block(&self, blk: usize, heads: usize, len: usize, width: usize) -> Cow<'a, [f32]> {
        let start = self.start(blk, heads);
        if self.strides[2] == width || len <= 1 {
            return Cow::Borrowed(&self.data[start..start + len * width]);
        }
        let mut rows = Vec::with_capacity(len * width);
        for l in 0..len {
            let at = start + l * self.strides[2];
            rows.extend_from_slice(&self.data[at..at + width]);
        }
        Cow::Owned(rows)
    }

    /// Block `blk` transposed, `[w, L]`.
    fn block_t(&self, blk: usize, heads: usize, len: usize, width: usize) -> Vec<f32> {
        let start = self.start(blk, heads);
        let mut t = vec![0.0; len * width];
        for l in 0..len {
            let at = start + l * self.strides[2];
            for (f, &x) in self.data[at..at + width].iter().enumerate() {
                t[f * len + l] = x;
            }
        }
        t
    }
}

/// How an output `[B, H, L, w]` is stored: row-major, or as `[B, L, H, w]` memory (the split
/// heads' layout, so that merging the heads back is free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `[B, H, L, w]`, row-major.
    Heads,
    /// `[B, L, H, w]` memory.
    Tokens,
}

/// One (batch, head) block's inputs, each in the layout its pass reads: every inner loop
/// combines rows of a table, a register block of one output row at a time ([`combine_rows`]).
struct BlockInputs<'a> {
    /// Forward: `Q̃` `[Lq, dk]`; backward: `Q̃ᵀ` `[dk, Lq]` (rotated if RoPE).
    q: Cow<'a, [f32]>,
    /// Forward: `K̃ᵀ` `[dk, Lk]`; backward: `K̃` `[Lk, dk]`.
    k: Cow<'a, [f32]>,
    /// Forward: `V` `[Lk, dv]`; backward: `Vᵀ` `[dv, Lk]`.
    v: Cow<'a, [f32]>,
}

/// Which pass a [`BlockInputs`] is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    Backward,
}

impl<'a> BlockInputs<'a> {
    /// Reads block `blk` of the inputs' `q`, `k`, `v`, rotates Q and K (RoPE) and transposes
    /// what `pass` reads transposed.
    fn new(inputs: &Inputs<'a>, blk: usize, pass: Pass) -> Self {
        let Inputs {
            q,
            k,
            v,
            rope,
            dims,
            ..
        } = *inputs;
        let AttentionDims {
            heads,
            q_len,
            k_len,
            d_k,
            d_v,
            ..
        } = dims;
        let forward = pass == Pass::Forward;
        // Rows `[len, w]` of one operand, rotated by `(cos, sin)`, transposed to `[w, len]`
        // when `transposed`.
        let read = |x: Heads<'a>,
                    len: usize,
                    w: usize,
                    rotation: Option<(&[f32], &[f32])>,
                    transposed: bool| {
            match rotation {
                Some((cos, sin)) => {
                    let rows = rotate_rows(&x.block(blk, heads, len, w), w, cos, sin, 1.0);
                    Cow::Owned(if transposed {
                        transpose(&rows, len, w)
                    } else {
                        rows
                    })
                }
                None if transposed => Cow::Owned(x.block_t(blk, heads, len, w)),
                None => x.block(blk, heads, len, w),
            }
        };
        Self {
            q: read(q, q_len, d_k, rope.map(|r| (r.cos_q, r.sin_q)), !forward),
            k: read(k, k_len, d_k, rope.map(|r| (r.cos_k, r.sin_k)), forward),
            v: read(v, k_len, d_v, None, !forward),
        }
    }
}

/// Outputs `[B, H, L, w]` filled block by block from parallel tasks: block `blk` (= b·H + h)
/// owns rows `(b, h, ·)`, wherever the layout puts them, and writes only those.
struct BlockRows {
    ptr: *mut f32,
    len: usize,
    heads: usize,
    rows: usize,
    width: usize,
    layout: Layout,
}

// SAFETY: the tasks that share a `BlockRows` write disjoint rows (see `write`).
unsafe impl Sync for BlockRows {}

impl BlockRows {
    /// Offset of row `i` of block `blk`.
    fn offset(&self, blk: usize, i: usize) -> usize {
        let (b, h) = (blk / self.heads, blk % self.heads);
        match self.layout {
            Layout::Heads => ((b * self.heads + h) * self.rows + i) * self.width,
            Layout::Tokens => ((b * self.rows + i) * self.heads + h) * self.width,
        }
    }

    /// Copies block `blk`'s rows `[L, w]` to their place.
    ///
    /// # Safety
    /// No other call for the same `blk` may run at the same time (the rows of distinct blocks
    /// are disjoint, and every index is checked against the buffer's length).
    unsafe fn write(&self, blk: usize, block: &[f32]) {
        assert_eq!(block.len(), self.rows * self.width, "block rows");
        for (i, row) in block.chunks_exact(self.width).enumerate() {
            let at = self.offset(blk, i);
            assert!(
                at + self.width <= self.len,
                "row {i} of block {blk} out of bounds"
            );
            // SAFETY: in bounds (checked above), and no other task writes these elements.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.ptr.add(at), self.width) };
        }
    }
}

/// Runs `task(blk, scratch, out_blocks, chunk)` for every block — in parallel when worth it —
/// and returns the `N` outputs `[B, H, L_n, w_n]` (`shapes[n] = (L_n, w_n, layout)`) that the
/// tasks' `out_blocks[n]` (`[L_n, w_n]`, every element written by the task) are copied into.
/// `chunks`: a contiguous buffer cut into one chunk per block (the saved weights), or `None`
/// (then `chunk` is empty). The outputs are written, never zero-filled first.
fn block_outputs<const N: usize, S: Send>(
    dims: &AttentionDims,
    shapes: [(usize, usize, Layout); N],
    chunks: Option<(&mut [f32], usize)>,
    init: impl Fn() -> S + Sync + Send,
    task: impl Fn(usize, &mut S, &mut [Vec<f32>; N], &mut [f32]) + Sync + Send,
) -> [Vec<f32>; N] {
    let blocks = dims.blocks();
    let mut outputs: [Vec<f32>; N] = shapes.map(|(l, w, _)| Vec::with_capacity(blocks * l * w));
    let mut rows = Vec::with_capacity(N);
    for (out, (l, w, layout)) in outputs.iter_mut().zip(shapes) {
        rows.push(BlockRows {
            ptr: out.as_mut_ptr(),
            len: blocks * l * w,
            heads: dims.heads,
            rows: l,
            width: w,
            layout,
        });
    }
    // A zero-sized chunk (`Lq·Lk = 0`) cuts nothing: every block then gets an empty one.
    let chunks = chunks.filter(|&(_, size)| size > 0);
    if let Some((buf, size)) = &chunks {
        assert_eq!(buf.len(), blocks * size, "one chunk per block");
    }
    let scratch = || (init(), shapes.map(|(l, w, _)| vec![0.0f32; l * w]));
    let run = |blk: usize, (s, out): &mut (S, [Vec<f32>; N]), chunk: &mut [f32]| {
        task(blk, s, out, chunk);
        for (rows, block) in rows.iter().zip(out.iter()) {
            // SAFETY: each block index is handed to exactly one task below.
            unsafe { rows.write(blk, block) };
        }
    };
    match (chunks, dims.parallel()) {
        (Some((buf, size)), true) => buf
            .par_chunks_mut(size)
            .enumerate()
            .for_each_init(scratch, |s, (blk, chunk)| run(blk, s, chunk)),
        (Some((buf, size)), false) => {
            let mut s = scratch();
            for (blk, chunk) in buf.chunks_mut(size).enumerate() {
                run(blk, &mut s, chunk);
            }
        }
        (None, true) => (0..blocks)
            .into_par_iter()
            .for_each_init(scratch, |s, blk| run(blk, s, &mut [])),
        (None, false) => {
            let mut s = scratch();
            for blk in 0..blocks {
                run(blk, &mut s, &mut []);
            }
        }
    }
    for (out, rows) in outputs.iter_mut().zip(&rows) {
        // SAFETY: every block's rows were written above (the layouts map the blocks' rows
        // one to one onto the whole buffer), so all `len` elements are initialized.
        unsafe { out.set_len(rows.len) };
    }
    outputs
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

/// `out[j] = Σ_f c[f]·T[f, j]` for `j < out.len()`, with the rows of `T` `stride` apart: each
/// element summed in order of `f` from its first term (`c[0]·T[0, j]`, stored, not added to a
/// zero that was read first) — bit for bit what adding one `c[f]·T[f, :]` at a time gives — but
/// a register-sized block of `out` at a time, so that each element is stored once instead of
/// once per `f`, and four vectors of sums are in flight. `out` is only written (0 for an empty
/// `c`).
#[inline(always)]
fn combine_rows<M: MulAdd>(c: &[f32], t: &[f32], stride: usize, out: &mut [f32]) {
    let (end, mut j) = (out.len(), 0);
    while j + 64 <= end {
        combine_block::<M, 64>(c, t, stride, j, &mut out[j..j + 64]);
        j += 64;
    }
    while j + 16 <= end {
        combine_block::<M, 16>(c, t, stride, j, &mut out[j..j + 16]);
        j += 16;
    }
    while j + 8 <= end {
        combine_block::<M, 8>(c, t, stride, j, &mut out[j..j + 8]);
        j += 8;
    }
    while j < end {
        combine_block::<M, 1>(c, t, stride, j, &mut out[j..j + 1]);
        j += 1;
    }
}

/// [`combine_rows`] on the `N` columns `j..j + N`.
#[inline(always)]
fn combine_block<M: MulAdd, const N: usize>(
    c: &[f32],
    t: &[f32],
    stride: usize,
    j: usize,
    out: &mut [f32],
) {
    let mut acc = [0.0f32; N];
    let mut rest = c;
    if let Some((&c0, tail)) = c.split_first() {
        for (a, &x) in acc.iter_mut().zip(&t[j..j + N]) {
            *a = c0 * x;
        }
        rest = tail;
    }
    let first = c.len() - rest.len();
    for (f, &cf) in rest.iter().enumerate() {
        let row = &t[(first + f) * stride + j..(first + f) * stride + j + N];
        for (a, &x) in acc.iter_mut().zip(row) {
            *a = M::madd(cf, x, *a);
        }
    }
    out.copy_from_slice(&acc);
}

/// `[rows, cols]` → `[cols, rows]`, row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    transpose_into(m, rows, cols, &mut t);
    t
}

/// `t [cols, rows] = mᵀ` for a row-major `m [rows, cols]`.
fn transpose_into(m: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
}

/// One query row's softmax: `row` holds `S[i, :end]` on entry (`end = row.len()`) and
/// `P[i, :end]` on return.
#[inline(always)]
fn softmax_row<M: MulAdd>(row: &mut [f32], bias: Option<&[f32]>) {
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
}

/// The kernels' inputs, shared by every block.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    q: Heads<'a>,
    k: Heads<'a>,
    v: Heads<'a>,
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
    let BlockInputs { q, k: k_t, v } = BlockInputs::new(inputs, blk, Pass::Forward);
    let bias = dims.bias_of(inputs.bias, blk); // [Lq, Lk]
    let ends = dims.ends_of(inputs.ends, blk); // [Lq]
    let mut coef = vec![0.0f32; d_k]; // s·Q[i, :]
    for i in 0..q_len {
        let end = ends.map_or(k_len, |e| e[i]);
        let row = if save_weights {
            &mut p[i * k_len..i * k_len + end] // S[i, :end], then P[i, :end]
        } else {
            &mut p[..end]
        };
        // S[i, :] = Σ_f (s·Q[i, f]) Kᵀ[f, :]. The first term is stored, not added: a freshly
        // mapped weights page that is read before it is written is mapped to the zero page
        // first and copied on the write, with a TLB flush on every core (7% of a d = 96 GPT
        // step). Bit for bit the same as adding it to zeros.
        for (c, &qf) in coef.iter_mut().zip(&q[i * d_k..(i + 1) * d_k]) {
            *c = inputs.scale * qf;
        }
        combine_rows::<M>(&coef, &k_t, k_len, row);
        softmax_row::<M>(row, bias.map(|b| &b[i * k_len..(i + 1) * k_len]));
        // O[i, :] = Σ_j P[i, j] V[j, :] (keys past `end` have P[i, j] = 0).
        combine_rows::<M>(row, &v, d_v, &mut out[i * d_v..(i + 1) * d_v]);
    }
}

/// Forward pass: `O` stored in `layout`, and the weights `P` `[B, H, Lq, Lk]` when
/// `save_weights` (the backward needs them; inference does not, and then only one row of
/// scores exists at a time per block). `ends`: where each bias row's work stops, from
/// [`AttentionDims::row_ends`] (empty: every row whole).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    bias: Option<&[f32]>,
    rope: Option<RopeRef<'_>>,
    dims: AttentionDims,
    scale: f32,
    save_weights: bool,
    ends: &[usize],
    layout: Layout,
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
    let shapes = [(q_len, d_v, layout)]; // O [B, H, Lq, dv]
    if save_weights {
        let mut weights = vec![0.0; dims.blocks() * q_len * k_len];
        let [out] = block_outputs(
            &dims,
            shapes,
            Some((&mut weights, q_len * k_len)),
            || (),
            |blk, _, [out], p| forward_block(level, &inputs, true, blk, out, p),
        );
        ForwardOutput {
            out,
            weights: Some(weights),
        }
    } else {
        let [out] = block_outputs(
            &dims,
            shapes,
            None,
            || vec![0.0; k_len],
            |blk, row, [out], _| forward_block(level, &inputs, false, blk, out, row),
        );
        ForwardOutput { out, weights: None }
    }
}

simd_variants!(
    backward_block,
    backward_block_generic,
    backward_block_avx2,
    backward_block_avx512,
    backward_block_body,
    (inputs: &Inputs<'_>, weights: &[f32], d_out: Heads<'_>, blk: usize, grads: &mut [Vec<f32>; 3]) -> ()
);

/// One (batch, head) block of the backward: `grads = [dQ, dK, dV]` of the block (`[Lq, dk]`,
/// `[Lk, dk]`, `[Lk, dv]`), from the weights `P` and `dO` of all blocks.
#[inline(always)]
fn backward_block_body<M: MulAdd>(
    inputs: &Inputs<'_>,
    weights: &[f32],
    d_out: Heads<'_>,
    blk: usize,
    grads: &mut [Vec<f32>; 3],
) {
    let [dq, dk, dv] = grads;
    let dims = &inputs.dims;
    let AttentionDims {
        heads,
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = *dims;
    let (scale, rope) = (inputs.scale, inputs.rope);
    let BlockInputs { q: q_t, k, v: v_t } = BlockInputs::new(inputs, blk, Pass::Backward);
    let p = &weights[blk * q_len * k_len..(blk + 1) * q_len * k_len]; // [Lq, Lk]
    let d_o = d_out.block(blk, heads, q_len, d_v); // [Lq, dv]
    let ends = dims.ends_of(inputs.ends, blk); // [Lq]
    // dS [Lq, Lk]; keys past a row's `end` keep dS[i, j] = 0, as P[i, j] = 0 there.
    let mut d_s = vec![0.0f32; q_len * k_len];
    for i in 0..q_len {
        let end = ends.map_or(k_len, |e| e[i]);
        let pi = &p[i * k_len..i * k_len + end];
        let ds = &mut d_s[i * k_len..i * k_len + end];
        // dP[i, :] = Σ_f dO[i, f] Vᵀ[f, :].
        combine_rows::<M>(&d_o[i * d_v..(i + 1) * d_v], &v_t, k_len, ds);
        // dS[i, :] = s·P[i, :] ⊙ (dP[i, :] − Σ_j P[i, j] dP[i, j]).
        let r = dot::<M>(pi, ds);
        for (x, &pij) in ds.iter_mut().zip(pi) {
            *x = scale * pij * (*x - r);
        }
        // dQ̃[i, :] = Σ_j dS[i, j] K̃[j, :].
        combine_rows::<M>(ds, &k, d_k, &mut dq[i * d_k..(i + 1) * d_k]);
    }
    // dVᵀ[f, :] = Σ_i dO[i, f] P[i, :] and dK̃ᵀ[f, :] = Σ_i Q̃[i, f] dS[i, :]: one row of each
    // per feature, summed over the queries a register block of keys at a time.
    let d_o_t = transpose(&d_o, q_len, d_v); // dOᵀ [dv, Lq]
    let mut dv_t = vec![0.0f32; d_v * k_len]; // [dv, Lk]
    for (f, row) in dv_t.chunks_exact_mut(k_len).enumerate() {
        combine_rows::<M>(&d_o_t[f * q_len..(f + 1) * q_len], p, k_len, row);
    }
    transpose_into(&dv_t, d_v, k_len, dv); // dV [Lk, dv]
    let mut dk_t = vec![0.0f32; d_k * k_len]; // [dk, Lk]
    for (f, row) in dk_t.chunks_exact_mut(k_len).enumerate() {
        combine_rows::<M>(&q_t[f * q_len..(f + 1) * q_len], &d_s, k_len, row);
    }
    match rope {
        // Back through the rotations: dQ = R_qᵀ dQ̃, dK = R_kᵀ dK̃.
        Some(r) => {
            let dq_rows = rotate_rows(dq, d_k, r.cos_q, r.sin_q, -1.0);
            dq.copy_from_slice(&dq_rows);
            let dk_rows = transpose(&dk_t, d_k, k_len); // dK̃ [Lk, dk]
            dk.copy_from_slice(&rotate_rows(&dk_rows, d_k, r.cos_k, r.sin_k, -1.0));
        }
        None => transpose_into(&dk_t, d_k, k_len, dk),
    }
}

/// Backward pass from the forward's weights `P` `[B, H, Lq, Lk]` and the output gradient `dO`
/// `[B, H, Lq, dv]`, with the forward's row `ends` (see [`forward`]): `dQ`, `dK`, `dV` stored
/// in `layouts`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    weights: &[f32],
    d_out: Heads<'_>,
    rope: Option<RopeRef<'_>>,
    dims: AttentionDims,
    scale: f32,
    ends: &[usize],
    [layout_q, layout_k, layout_v]: [Layout; 3],
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
    let shapes = [
        (q_len, d_k, layout_q), // dQ [B, H, Lq, dk]
        (k_len, d_k, layout_k), // dK [B, H, Lk, dk]
        (k_len, d_v, layout_v), // dV [B, H, Lk, dv]
    ];
    let [q, k, v] = block_outputs(
        &dims,
        shapes,
        None,
        || (),
        |blk, _, grads, _| backward_block(level, &inputs, weights, d_out, blk, grads),
    );
    Gradients { q, k, v }
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

    /// Row-major `[B, H, L, w]` views of the test inputs.
    struct Views(AttentionDims);

    impl Views {
        fn q<'a>(&self, x: &'a [f32]) -> Heads<'a> {
            Heads::dense(x, self.0.heads, self.0.q_len, self.0.d_k)
        }
        fn k<'a>(&self, x: &'a [f32]) -> Heads<'a> {
            Heads::dense(x, self.0.heads, self.0.k_len, self.0.d_k)
        }
        fn v<'a>(&self, x: &'a [f32]) -> Heads<'a> {
            Heads::dense(x, self.0.heads, self.0.k_len, self.0.d_v)
        }
        fn d_out<'a>(&self, x: &'a [f32]) -> Heads<'a> {
            Heads::dense(x, self.0.heads, self.0.q_len, self.0.d_v)
        }
        /// [`forward`] on row-major inputs, the output row-major.
        fn forward(
            &self,
            [q, k, v]: [&[f32]; 3],
            bias: &[f32],
            rope: Option<RopeRef<'_>>,
            scale: f32,
            save_weights: bool,
            ends: &[usize],
        ) -> ForwardOutput {
            let (q, k, v) = (self.q(q), self.k(k), self.v(v));
            let layout = Layout::Heads;
            forward(
                q,
                k,
                v,
                Some(bias),
                rope,
                self.0,
                scale,
                save_weights,
                ends,
                layout,
            )
        }
        /// [`backward`] on row-major inputs, the gradients row-major.
        fn backward(
            &self,
            [q, k, v]: [&[f32]; 3],
            weights: &[f32],
            d_out: &[f32],
            rope: Option<RopeRef<'_>>,
            scale: f32,
            ends: &[usize],
        ) -> Gradients {
            let (q, k, v, d_out) = (self.q(q), self.k(k), self.v(v), self.d_out(d_out));
            let layouts = [Layout::Heads; 3];
            backward(q, k, v, weights, d_out, rope, self.0, scale, ends, layouts)
        }
    }

    /// `[B, H, L, w]` row-major values stored as `[B, L, H, w]` memory (the split heads'
    /// layout).
    fn tokens_layout(x: &[f32], (b, h, l, w): (usize, usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for bi in 0..b {
            for hi in 0..h {
                for li in 0..l {
                    let from = ((bi * h + hi) * l + li) * w;
                    let to = ((bi * l + li) * h + hi) * w;
                    out[to..to + w].copy_from_slice(&x[from..from + w]);
                }
            }
        }
        out
    }

    impl AttentionDims {
        /// Sizes with a bias of `bias_heads` heads shared by the batch.
        fn new(
            batch: usize,
            heads: usize,
            (q_len, k_len): (usize, usize),
            (d_k, d_v): (usize, usize),
            bias_heads: usize,
        ) -> Self {
            Self {
                batch,
                heads,
                q_len,
                k_len,
                d_k,
                d_v,
                bias_heads,
                bias_batches: 1,
            }
        }
    }

    /// `[B, L, H, w]` memory seen as `[B, H, L, w]`.
    fn tokens_view(x: &[f32], h: usize, l: usize, w: usize) -> Heads<'_> {
        Heads {
            data: x,
            strides: [l * h * w, w, h * w],
        }
    }

    /// Inputs read through the split heads' strides and outputs stored in that layout give the
    /// same bits as the row-major ones, forward and backward, with RoPE and a causal bias.
    #[test]
    fn split_head_layout_in_and_out_changes_no_bit() {
        let (b, h, lq, lk, dk, dv) = (3, 4, 9, 9, 6, 5);
        let dims = AttentionDims::new(b, h, (lq, lk), (dk, dv), 1);
        let bias: Vec<f32> = (0..lq * lk)
            .map(|x| if x % lk > x / lk { -1.0e30 } else { 0.0 })
            .collect();
        let (q, k, v, d_out) = (
            pseudo_random(b * h * lq * dk, 21),
            pseudo_random(b * h * lk * dk, 22),
            pseudo_random(b * h * lk * dv, 23),
            pseudo_random(b * h * lq * dv, 24),
        );
        let angles: Vec<f32> = (0..lq * dk)
            .map(|x| 0.2 * (x % dk / 2 + x / dk) as f32)
            .collect();
        let (cos, sin): (Vec<f32>, Vec<f32>) = angles.iter().map(|a| (a.cos(), a.sin())).unzip();
        let rope = RopeRef {
            cos_q: &cos,
            sin_q: &sin,
            cos_k: &cos,
            sin_k: &sin,
        };
        let ends = dims.row_ends(Some(&bias));
        let views = Views(dims);
        let split = |x: &[f32], l: usize, w: usize| tokens_layout(x, (b, h, l, w));
        let (q_s, k_s, v_s, d_s) = (
            split(&q, lq, dk),
            split(&k, lk, dk),
            split(&v, lk, dv),
            split(&d_out, lq, dv),
        );
        for rope in [None, Some(rope)] {
            let dense = views.forward([&q, &k, &v], &bias, rope, 0.6, true, &ends);
            let tokens = forward(
                tokens_view(&q_s, h, lq, dk),
                tokens_view(&k_s, h, lk, dk),
                tokens_view(&v_s, h, lk, dv),
                Some(&bias),
                rope,
                dims,
                0.6,
                true,
                &ends,
                Layout::Tokens,
            );
            assert_eq!(split(&dense.out, lq, dv), tokens.out);
            assert_eq!(dense.weights, tokens.weights);
            let weights = dense.weights.as_deref().expect("saved");
            let g = views.backward([&q, &k, &v], weights, &d_out, rope, 0.6, &ends);
            let strided_backward = |layouts: [Layout; 3]| {
                backward(
                    tokens_view(&q_s, h, lq, dk),
                    tokens_view(&k_s, h, lk, dk),
                    tokens_view(&v_s, h, lk, dv),
                    weights,
                    tokens_view(&d_s, h, lq, dv),
                    rope,
                    dims,
                    0.6,
                    &ends,
                    layouts,
                )
            };
            let g_s = strided_backward([Layout::Tokens; 3]);
            assert_eq!(split(&g.q, lq, dk), g_s.q);
            assert_eq!(split(&g.k, lk, dk), g_s.k);
            assert_eq!(split(&g.v, lk, dv), g_s.v);
            // Mixed: strided inputs, row-major outputs.
            let g_m = strided_backward([Layout::Heads; 3]);
            assert_eq!(g.q, g_m.q);
            assert_eq!(g.k, g_m.k);
            assert_eq!(g.v, g_m.v);
        }
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
        let views = Views(dims);
        let got = views.forward([&q, &k, &v], &bias, None, 0.7, true, &ends);
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
            let views = Views(dims);
            let fwd = views.forward([&q, &k, &v], &bias, rope, 0.9, true, &ends);
            let weights = fwd.weights.as_deref().expect("saved");
            let grads = views.backward([&q, &k, &v], weights, &d_out, rope, 0.9, &ends);
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
        let views = Views(dims);
        assert_eq!(&ends[..3], &[8, 8, 8]);
        assert_eq!(ends[5], 16);
        assert_eq!(ends[lq + 5], lk, "a fully masked row stays whole");
        let whole = views.forward([&q, &k, &v], &bias, None, 0.8, true, &[]);
        let cut = views.forward([&q, &k, &v], &bias, None, 0.8, true, &ends);
        let unsaved = views.forward([&q, &k, &v], &bias, None, 0.8, false, &ends);
        assert_eq!(whole.out, cut.out);
        assert_eq!(whole.out, unsaved.out);
        assert_eq!(whole.weights, cut.weights);
        assert!(unsaved.weights.is_none());
        let weights = whole.weights.as_deref().expect("saved");
        let g_whole = views.backward([&q, &k, &v], weights, &d_out, None, 0.8, &[]);
        let g_cut = views.backward([&q, &k, &v], weights, &d_out, None, 0.8, &ends);
        assert_eq!(g_whole.q, g_cut.q);
        assert_eq!(g_whole.k, g_cut.k);
        assert_eq!(g_whole.v, g_cut.v);
    }
}
