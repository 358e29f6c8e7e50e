//! ALiBi and Hard-ALiBi score biases.
//!
//! ALiBi (Press et al., 2022) adds `−m_h·|i − j|` to the score of query `i` and key `j` in head
//! `h = 1..H`, with slopes `m_h = 2^(−8h/H)` (a geometric sequence from `2^(−8/H)` down to
//! `2^(−8)`). For causal attention only `j ≤ i` survives the mask, where this is the paper's
//! `−m_h·(i − j)`.
//!
//! Hard-ALiBi (Jelassi et al., 2024, "Repeat After Me") replaces the slope by a hard window:
//! for the first `W` heads (0-based `h < W`) the bias is `0` when `|i − j| ≤ h` and `−∞`
//! otherwise, so head `h` sees only the last `h + 1` tokens (itself included); the other heads
//! get no bias (NoPE).
//!
//! The bias tables here are plain row-major `Vec<f32>` of shape `[H, Lq, Lk]`; query row `r`
//! has absolute position `q_offset + r`, key column `j` absolute position `j`.

use crate::nn::MASKED;

/// ALiBi slopes `m_h = 2^(−8h/H)` for `h = 1..=n_heads`.
pub fn alibi_slopes(n_heads: usize) -> Vec<f32> {
    (1..=n_heads)
        .map(|h| 2f64.powf(-8.0 * h as f64 / n_heads as f64) as f32)
        .collect()
}

/// ALiBi bias `−m_h·|i − j|`, row-major `[n_heads, q_len, k_len]`, for query positions
/// `q_offset .. q_offset + q_len` and key positions `0 .. k_len`.
pub fn alibi_bias(n_heads: usize, q_offset: usize, q_len: usize, k_len: usize) -> Vec<f32> {
    let mut bias = Vec::with_capacity(n_heads * q_len * k_len);
    for m in alibi_slopes(n_heads) {
        for r in 0..q_len {
            let i = q_offset + r;
            for j in 0..k_len {
                bias.push(-m * i.abs_diff(j) as f32);
            }
        }
    }
    bias
}

/// Hard-ALiBi bias, row-major `[n_heads, q_len, k_len]`: head `h < windowed_heads` gets `0`
/// for `|i − j| ≤ h` and [`MASKED`](crate::attention::MASKED) (effectively `−∞`) beyond; other heads get `0`.
pub fn hard_alibi_bias(
    n_heads: usize,
    windowed_heads: usize,
    q_offset: usize,
    q_len: usize,
    k_len: usize,
) -> Vec<f32> {
    let mut bias = Vec::with_capacity(n_heads * q_len * k_len);
    for h in 0..n_heads {
        for r in 0..q_len {
            let i = q_offset + r;
            for j in 0..k_len {
                let visible = h >= windowed_heads || i.abs_diff(j) <= h;
                bias.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    bias
}
