//! Parallel scan with whole-tensor ops (Blelloch-style odd/even reduction).
//!
//! # Glossary
//! - `(a_t, b_t)`: the affine map `h ↦ a_t h + b_t`; maps compose associatively,
//!   `(a₁, b₁) ∘ (a₀, b₀) = (a₁a₀, a₁b₀ + b₁)`.
//! - `h_t` `[B, L, E, N]`: all states of `h_t = a_t ⊙ h_{t−1} + b_t`.
//!
//! # Algorithm
//! One level pairs step `2k` with step `2k+1` (`[B, L, …]` is reshaped to `[B, L/2, 2, …]`),
//! composes each pair into one map, and scans the half-length sequence recursively; that gives
//! the states at odd positions. Even positions follow in one more step,
//! `h_{2k} = a_{2k} h_{2k−1} + b_{2k}`, and the two halves are interleaved back by reshaping.
//! Odd lengths are padded with the identity map `(1, 0)` at the end of that level, so any `L`
//! works. Work is `O(L)` (halving at every level), depth `O(log L)`, and the autodiff graph has
//! `O(log L)` nodes.

use super::SelectiveScanInput;
use burn::tensor::{Tensor, backend::Backend};

use crate::ssm::discretization::Discretization;

/// Parallel linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t` with `h_{−1} = h0` (zero if `None`).
///
/// `a`, `b`: `[B, L, E, N]`; `h0`: `[B, E, N]`. Returns every state, `[B, L, E, N]`.
pub fn scan_parallel<B: Backend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    h0: Option<Tensor<B, 3>>,
) -> Tensor<B, 4> {
    let b = match h0 {
        Some(h0) => fold_initial_state(a.clone(), b, h0),
        None => b,
    };
    odd_even_scan(a, b)
}

/// Folds `h0` into the first input: `b_0 ← b_0 + a_0 ⊙ h0`, so the scan can start from zero.
pub(crate) fn fold_initial_state<B: Backend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    h0: Tensor<B, 3>,
) -> Tensor<B, 4> {
    let [bs, l, e, n] = b.dims();
    let a0 = a.narrow(1, 0, 1); // [B, 1, E, N]
    let first = b.clone().narrow(1, 0, 1) + a0 * h0.reshape([bs, 1, e, n]); // [B, 1, E, N]
    if l == 1 {
        first
    } else {
        Tensor::cat(vec![first, b.narrow(1, 1, l - 1)], 1) // [B, L, E, N]
    }
}

/// The recursive odd/even scan from a zero initial state.
fn odd_even_scan<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    let [bs, l, e, n] = a.dims();
    if l == 1 {
        return b;
    }
    if l % 2 == 1 {
        // Pad with the identity map (a = 1, b = 0), scan, and drop the padded step.
        let device = a.device();
        let a = Tensor::cat(vec![a, Tensor::ones([bs, 1, e, n], &device)], 1); // [B, L+1, E, N]
        let b = Tensor::cat(vec![b, Tensor::zeros([bs, 1, e, n], &device)], 1); // [B, L+1, E, N]
        return odd_even_scan(a, b).narrow(1, 0, l); // [B, L, E, N]
    }
    let half = l / 2;
    let a5: Tensor<B, 5> = a.reshape([bs, half, 2, e, n]); // [B, L/2, 2, E, N]
    let b5: Tensor<B, 5> = b.reshape([bs, half, 2, e, n]); // [B, L/2, 2, E, N]
    let a_even: Tensor<B, 4> = a5.clone().narrow(2, 0, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]
    let a_odd: Tensor<B, 4> = a5.narrow(2, 1, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]
    let b_even: Tensor<B, 4> = b5.clone().narrow(2, 0, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]
    let b_odd: Tensor<B, 4> = b5.narrow(2, 1, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]

    // Compose each (even, odd) pair: (a_odd a_even, a_odd b_even + b_odd).
    let a_pair = a_odd.clone() * a_even.clone(); // [B, L/2, E, N]
    let b_pair = a_odd * b_even.clone() + b_odd; // [B, L/2, E, N]
    let h_odd = odd_even_scan(a_pair, b_pair); // [B, L/2, E, N]: states at 1, 3, 5, …

    // h_{2k} = a_{2k} h_{2k−1} + b_{2k}, with h_{−1} = 0.
    let h_even = if half == 1 {
        b_even // [B, 1, E, N]
    } else {
        let prev = Tensor::cat(
            vec![
                Tensor::zeros([bs, 1, e, n], &h_odd.device()),
                h_odd.clone().narrow(1, 0, half - 1),
            ],
            1,
        ); // [B, L/2, E, N]
        a_even * prev + b_even // [B, L/2, E, N]
    };
    let pairs: Tensor<B, 5> = Tensor::stack(vec![h_even, h_odd], 2); // [B, L/2, 2, E, N]
    pairs.reshape([bs, l, e, n]) // [B, L, E, N]
}

/// Selective scan through [`scan_parallel`]: materializes `Ā`, `B̄x` and `h` as `[B, L, E, N]`.
/// Returns `(y [B, L, E], h_L [B, E, N])`.
pub(crate) fn selective_scan_parallel<B: Backend>(
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
    let (abar, bx) = recurrence_inputs(disc, x.clone(), delta, a, b); // [B, L, E, N] each
    let h = scan_parallel(abar, bx, h0); // [B, L, E, N]
    finish_outputs(h, x, c, d)
}

/// `(Ā, B̄ x)` of the selective SSM, each `[B, L, E, N]`.
pub(crate) fn recurrence_inputs<B: Backend>(
    disc: Discretization,
    x: Tensor<B, 3>,
    delta: Tensor<B, 3>,
    a: Tensor<B, 2>,
    b: Tensor<B, 3>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let (abar, factor) = disc.tensors(delta, a); // [B, L, E, N] each
    let bx = factor * b.unsqueeze_dim::<4>(2) * x.unsqueeze_dim::<4>(3); // [B, L, E, N]
    (abar, bx)
}

/// From all states `h` `[B, L, E, N]`: `y = ⟨h, C⟩ + D ⊙ x` `[B, L, E]` and `h_L` `[B, E, N]`.
pub(crate) fn finish_outputs<B: Backend>(
    h: Tensor<B, 4>,
    x: Tensor<B, 3>,
    c: Tensor<B, 3>,
    d: Option<Tensor<B, 1>>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [bs, l, e, n] = h.dims();
    let h_last: Tensor<B, 3> = h.clone().narrow(1, l - 1, 1).reshape([bs, e, n]); // [B, E, N]
    let y: Tensor<B, 3> = (h * c.unsqueeze_dim::<4>(2)).sum_dim(3).reshape([bs, l, e]); // [B, L, E]
    let y = match d {
        Some(d) => y + x * d.reshape([1, 1, e]), // [B, L, E]
        None => y,
    };
    (y, h_last)
}
