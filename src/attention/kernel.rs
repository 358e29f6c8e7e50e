//! The fused attention kernel on plain `f32` slices: forward and backward of
//! `O = softmax(s·Q·Kᵀ + bias)·V` for every (batch, head) pair, without materializing anything
//! but the weights `P` (kept by the forward for the backward).
//!
//! # Glossary
//! - `B` batch, `H` heads, `Lq`/`Lk` query/key lengths, `dk` query/key width, `dv` value width.
//! - `Q` `[B, H, Lq, dk]`, `K` `[B, H, Lk, dk]`, `V` `[B, H, Lk, dv]`, row-major.
//! - `bias` `[Hb, Lq, Lk]` with `Hb ∈ {1, H}` (broadcast over the batch, and over heads when
//!   `Hb = 1`): causal mask ([`MASKED`](super::MASKED) entries) plus ALiBi-style biases.
//! - `S = s·Q·Kᵀ + bias`, `P = softmax_rows(S)`, `O = P·V`.
//!
//! # Backward
//! With `dO` given: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
//! `dQ = s·dS·K`, `dK = s·dSᵀ·Q` (the bias is a constant: no gradient).
//!
//! Masked pairs (bias ≤ [`MASKED_THRESHOLD`]) skip their dot product in the forward (their score
//! is the bias itself, exactly what `score + MASKED` rounds to in f32) and every pair with
//! `P = 0` skips its work in the backward, so a causal mask halves the cost.

use rayon::prelude::*;

/// A bias at or below this marks a masked pair (the crate masks with `−1e30`).
pub const MASKED_THRESHOLD: f32 = -1.0e29;

/// Below this many multiply-adds the work stays on the calling thread.
const PAR_MIN_WORK: usize = 1 << 16;

/// Sizes of one fused attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
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
    /// The bias rows `[Lq, Lk]` of block `blk` (= b·H + h), if there is a bias.
    fn bias_of<'a>(&self, bias: Option<&'a [f32]>, blk: usize) -> Option<&'a [f32]> {
        let table = self.q_len * self.k_len;
        bias.map(|t| {
            let h = if self.bias_heads == 1 {
                0
            } else {
                blk % self.heads
            };
            &t[h * table..(h + 1) * table]
        })
    }
}

/// Outputs of [`forward`].
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `O` `[B, H, Lq, dv]`.
    pub out: Vec<f32>,
    /// `P` `[B, H, Lq, Lk]`.
    pub weights: Vec<f32>,
}

/// Gradients returned by [`backward`].
#[derive(Debug, Clone)]
pub struct Gradients {
    /// `dQ` `[B, H, Lq, dk]`.
    pub q: Vec<f32>,
    /// `dK` `[B, H, Lk, dk]`.
    pub k: Vec<f32>,
    /// `dV` `[B, H, Lk, dv]`.
    pub v: Vec<f32>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += α·x`.
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
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

/// Forward pass: `O` and the weights `P`.
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    dims: AttentionDims,
    scale: f32,
) -> ForwardOutput {
    let AttentionDims {
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = dims;
    let mut out = vec![0.0; dims.blocks() * q_len * d_v];
    let mut weights = vec![0.0; dims.blocks() * q_len * k_len];
    for_blocks(
        &dims,
        &mut out,
        q_len * d_v,
        &mut weights,
        q_len * k_len,
        |blk, out, p| {
            let q = &q[blk * q_len * d_k..(blk + 1) * q_len * d_k]; // [Lq, dk]
            let k = &k[blk * k_len * d_k..(blk + 1) * k_len * d_k]; // [Lk, dk]
            let v = &v[blk * k_len * d_v..(blk + 1) * k_len * d_v]; // [Lk, dv]
            let bias = dims.bias_of(bias, blk); // [Lq, Lk]
            for i in 0..q_len {
                let qi = &q[i * d_k..(i + 1) * d_k];
                let row = &mut p[i * k_len..(i + 1) * k_len];
                // Scores S[i, :].
                let mut max = f32::NEG_INFINITY;
                for (j, s) in row.iter_mut().enumerate() {
                    let b = bias.map_or(0.0, |t| t[i * k_len + j]);
                    *s = if b <= MASKED_THRESHOLD {
                        b
                    } else {
                        scale * dot(qi, &k[j * d_k..(j + 1) * d_k]) + b
                    };
                    max = max.max(*s);
                }
                // P[i, :] = softmax(S[i, :]).
                let mut sum = 0.0;
                for s in row.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                let oi = &mut out[i * d_v..(i + 1) * d_v];
                for (j, pij) in row.iter_mut().enumerate() {
                    *pij *= inv;
                    if *pij != 0.0 {
                        axpy(*pij, &v[j * d_v..(j + 1) * d_v], oi);
                    }
                }
            }
        },
    );
    ForwardOutput { out, weights }
}

/// Backward pass from the forward's weights `P` and the output gradient `dO` `[B, H, Lq, dv]`.
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: &[f32],
    d_out: &[f32],
    dims: AttentionDims,
    scale: f32,
) -> Gradients {
    let AttentionDims {
        q_len,
        k_len,
        d_k,
        d_v,
        ..
    } = dims;
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
        |blk, dq, dkv| {
            let q = &q[blk * q_len * d_k..(blk + 1) * q_len * d_k]; // [Lq, dk]
            let k = &k[blk * k_len * d_k..(blk + 1) * k_len * d_k]; // [Lk, dk]
            let v = &v[blk * k_len * d_v..(blk + 1) * k_len * d_v]; // [Lk, dv]
            let p = &weights[blk * q_len * k_len..(blk + 1) * q_len * k_len]; // [Lq, Lk]
            let d_o = &d_out[blk * q_len * d_v..(blk + 1) * q_len * d_v]; // [Lq, dv]
            let (dk, dv) = dkv.split_at_mut(k_len * d_k); // [Lk, dk], [Lk, dv]
            let mut ds = vec![0.0f32; k_len];
            for i in 0..q_len {
                let pi = &p[i * k_len..(i + 1) * k_len];
                let doi = &d_o[i * d_v..(i + 1) * d_v];
                // dP[i, j] = dO[i]·V[j], r = Σ_j P[i, j] dP[i, j]; dV[j] += P[i, j] dO[i].
                let mut r = 0.0;
                for j in 0..k_len {
                    if pi[j] == 0.0 {
                        ds[j] = 0.0;
                        continue;
                    }
                    let dp = dot(doi, &v[j * d_v..(j + 1) * d_v]);
                    ds[j] = dp;
                    r += pi[j] * dp;
                    axpy(pi[j], doi, &mut dv[j * d_v..(j + 1) * d_v]);
                }
                // dS[i, j] = P[i, j] (dP[i, j] − r); dQ[i] += s dS[i, j] K[j]; dK[j] += s dS[i, j] Q[i].
                let qi = &q[i * d_k..(i + 1) * d_k];
                let dqi = &mut dq[i * d_k..(i + 1) * d_k];
                for j in 0..k_len {
                    if pi[j] == 0.0 {
                        continue;
                    }
                    let g = scale * pi[j] * (ds[j] - r);
                    axpy(g, &k[j * d_k..(j + 1) * d_k], dqi);
                    axpy(g, qi, &mut dk[j * d_k..(j + 1) * d_k]);
                }
            }
        },
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
        };
        let got = forward(&q, &k, &v, Some(&bias), dims, 0.7);
        let want = reference(&q, &k, &v, &bias, (lq, lk, dk, dv), 0.7);
        for (g, w) in got.out.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        // Masked pairs get exactly zero weight; rows sum to one.
        for i in 0..lq {
            let row = &got.weights[i * lk..(i + 1) * lk];
            assert!(row[i + 3..].iter().all(|&p| p == 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (lq, lk, dk, dv) = (4, 4, 3, 2);
        let dims = AttentionDims {
            batch: 1,
            heads: 1,
            q_len: lq,
            k_len: lk,
            d_k: dk,
            d_v: dv,
            bias_heads: 1,
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
        // Loss = Σ dO ⊙ O, evaluated in f64 by the reference.
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            reference(q, k, v, &bias, (lq, lk, dk, dv), 0.9)
                .iter()
                .zip(&d_out)
                .map(|(o, g)| o * *g as f64)
                .sum()
        };
        let fwd = forward(&q, &k, &v, Some(&bias), dims, 0.9);
        let grads = backward(&q, &k, &v, &fwd.weights, &d_out, dims, 0.9);
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
                    "input {which}[{idx}]: {numeric} vs {}",
                    analytic[idx]
                );
            }
        };
        check(0, &grads.q);
        check(1, &grads.k);
        check(2, &grads.v);
    }
}
