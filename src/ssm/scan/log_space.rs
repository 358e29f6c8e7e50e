//! Heinsen's log-space scan (arXiv 2311.06281): the recurrence through cumulative sums of logs.
//!
//! # Glossary
//! - `a_t`, `b_t` `[B, L, E, N]`: recurrence `h_t = a_t ⊙ h_{t−1} + b_t`.
//! - `a*_t = Σ_{s≤t} log|a_s|`: log-magnitude of the prefix product `P_t = Π_{s≤t} a_s`;
//!   `σ_t = ±1` its sign (parity of the number of negative `a_s`).
//! - `LSE⁺_t`, `LSE⁻_t`: log-cumulative-sum-exp of the positive / negative parts of `b_s / P_s`.
//!
//! # Method
//! Unrolling the recurrence, `h_t = P_t (h0 + Σ_{s≤t} b_s / P_s)`. The recurrence is linear in
//! `b`, so `b_s/P_s = σ_s b_s e^{−a*_s}` is split by sign into `u⁺ − u⁻` (both `≥ 0`), and
//! `h_t = σ_t (exp(a*_t + LSE⁺_t) − exp(a*_t + LSE⁻_t))` with
//! `LSE^±_t = log Σ_{s≤t} u^±_s = logcumsumexp(log u^±_s)`. `h0` enters as an extra first
//! element with `a = 1`. Zero parts use a large negative log ([`LOG_ZERO`]) instead of `−∞`.
//! The log-cumulative-sum-exp is itself computed stably, with `logaddexp` in an odd/even
//! parallel scan (no global max shift, so nothing underflows however long the sequence).
//! For the selective SSM with `Ā = exp(ΔA)`, `log Ā = ΔA` is used directly (no `log(exp(·))`).
//!
//! # Precision (where it degrades)
//! `a*_t` and `LSE_t` are both of magnitude `S_t = Σ_{s≤t} Δ_s|A|` (the accumulated decay) and
//! cancel in `a*_t + LSE_t ≈ log|h_t|`. In f32 each carries an absolute error of about
//! `ε·S_t` (`ε ≈ 6e-8`, more from the long `cumsum`), which becomes a *relative* error of about
//! `ε·S_t` in `h_t`. So the log-space scan matches the sequential scan to ~1e-5 only while
//! `S ≲ 100`; with Mamba-like `Δ ~ 0.05`, `|A|` up to 16 it reaches `S ~ 3000` by `L = 4096`
//! and the error grows to ~1e-4–1e-3 (see `examples/scan_precision.rs` and
//! `docs/results/scan.md` for measured values). `|a|` below `e^{−87}` is clamped to it (the
//! f32 log of 0 is `−∞`), which only matters for states that have decayed to ~0 anyway.

use super::SelectiveScanInput;
use burn::tensor::{Bool, Tensor, backend::Backend};

use super::parallel::{finish_outputs, recurrence_inputs};
use crate::ssm::discretization::Discretization;

/// Stand-in for `log 0`: finite so that `−∞ − (−∞)` never produces NaN.
pub const LOG_ZERO: f32 = -1.0e30;

/// Smallest `log|a|` used (`|a|` is clamped to `e^{−87}`, near the smallest normal f32).
const LOG_A_MIN: f32 = -87.0;

/// Log-space linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t` with `h_{−1} = h0` (zero if `None`).
///
/// `a`, `b`: `[B, L, E, N]` (any signs); `h0`: `[B, E, N]`. Returns every state,
/// `[B, L, E, N]`. See the module documentation for where its precision degrades.
pub fn scan_log_space<B: Backend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    h0: Option<Tensor<B, 3>>,
) -> Tensor<B, 4> {
    let log_abs_a = a.clone().abs().clamp_min(LOG_A_MIN.exp()).log(); // [B, L, E, N]
    let negative = a.lower_elem(0.0); // [B, L, E, N]
    log_space_core(log_abs_a, Some(negative), b, h0)
}

/// The log-space scan from `log|a|` and the sign mask of `a` (`None`: all positive).
pub(crate) fn log_space_core<B: Backend>(
    log_abs_a: Tensor<B, 4>,
    negative: Option<Tensor<B, 4, Bool>>,
    b: Tensor<B, 4>,
    h0: Option<Tensor<B, 3>>,
) -> Tensor<B, 4> {
    let [bs, l, e, n] = b.dims();
    let device = b.device();
    // Prepend h0 as step "−1" with a = 1 (log|a| = 0, positive).
    let (log_abs_a, negative, b, offset) = match h0 {
        Some(h0) => {
            let h0 = h0.reshape([bs, 1, e, n]); // [B, 1, E, N]
            let log_abs_a = Tensor::cat(vec![Tensor::zeros([bs, 1, e, n], &device), log_abs_a], 1); // [B, L+1, E, N]
            let negative = negative.map(|m| {
                Tensor::cat(
                    vec![
                        Tensor::<B, 4>::zeros([bs, 1, e, n], &device).greater_elem(0.0),
                        m,
                    ],
                    1,
                )
            }); // [B, L+1, E, N]
            (log_abs_a, negative, Tensor::cat(vec![h0, b], 1), 1)
        }
        None => (log_abs_a, negative, b, 0),
    };

    let a_star = log_abs_a.cumsum(1); // [B, L', E, N]: log|P_t|
    // σ_t = (−1)^(number of negative a_s, s ≤ t); σ_s b_s is the signed numerator.
    let sigma = negative.map(|m| {
        let count = m.float().cumsum(1); // [B, L', E, N]
        let parity = count.clone() - count.div_scalar(2.0).floor().mul_scalar(2.0); // 0 or 1
        parity.mul_scalar(-2.0).add_scalar(1.0) // [B, L', E, N], ±1
    });
    let signed_b = match &sigma {
        Some(s) => b * s.clone(),
        None => b,
    }; // [B, L', E, N]

    let pos = signed_b.clone().greater_elem(0.0); // [B, L', E, N]
    let neg = signed_b.clone().lower_elem(0.0); // [B, L', E, N]
    let log_mag = signed_b.abs().clamp_min(f32::MIN_POSITIVE).log() - a_star.clone(); // [B, L', E, N]
    let log_pos = log_mag.clone().mask_fill(pos.bool_not(), LOG_ZERO); // [B, L', E, N]
    let log_neg = log_mag.mask_fill(neg.bool_not(), LOG_ZERO); // [B, L', E, N]
    let lse_pos = log_cumsum_exp(log_pos); // [B, L', E, N]
    let lse_neg = log_cumsum_exp(log_neg); // [B, L', E, N]
    let h = (a_star.clone() + lse_pos).exp() - (a_star + lse_neg).exp(); // [B, L', E, N]
    let h = match sigma {
        Some(s) => h * s,
        None => h,
    };
    if offset == 0 {
        h
    } else {
        h.narrow(1, offset, l) // [B, L, E, N]
    }
}

/// `logaddexp(x, y) = max + log1p(exp(−|x − y|))`, stable for any magnitudes.
fn log_add_exp<B: Backend>(x: Tensor<B, 4>, y: Tensor<B, 4>) -> Tensor<B, 4> {
    let m = x.clone().max_pair(y.clone()); // [B, L, E, N]
    let d = (x - y).abs().neg(); // [B, L, E, N]
    m + d.exp().log1p()
}

/// Stable `logcumsumexp` along dim 1: an odd/even parallel scan with [`log_add_exp`] as the
/// associative operation (same structure as [`super::scan_parallel`]).
pub(crate) fn log_cumsum_exp<B: Backend>(z: Tensor<B, 4>) -> Tensor<B, 4> {
    let [bs, l, e, n] = z.dims();
    if l == 1 {
        return z;
    }
    if l % 2 == 1 {
        let pad = Tensor::full([bs, 1, e, n], LOG_ZERO, &z.device()); // [B, 1, E, N]
        return log_cumsum_exp(Tensor::cat(vec![z, pad], 1)).narrow(1, 0, l); // [B, L, E, N]
    }
    let half = l / 2;
    let z5: Tensor<B, 5> = z.reshape([bs, half, 2, e, n]); // [B, L/2, 2, E, N]
    let even: Tensor<B, 4> = z5.clone().narrow(2, 0, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]
    let odd: Tensor<B, 4> = z5.narrow(2, 1, 1).reshape([bs, half, e, n]); // [B, L/2, E, N]
    let odd_prefix = log_cumsum_exp(log_add_exp(even.clone(), odd)); // [B, L/2, E, N]
    let even_prefix = if half == 1 {
        even
    } else {
        let prev = odd_prefix.clone().narrow(1, 0, half - 1); // [B, L/2−1, E, N]
        let rest = log_add_exp(prev, even.clone().narrow(1, 1, half - 1)); // [B, L/2−1, E, N]
        Tensor::cat(vec![even.narrow(1, 0, 1), rest], 1) // [B, L/2, E, N]
    };
    let pairs: Tensor<B, 5> = Tensor::stack(vec![even_prefix, odd_prefix], 2); // [B, L/2, 2, E, N]
    pairs.reshape([bs, l, e, n]) // [B, L, E, N]
}

/// Selective scan through the log-space scan. Returns `(y [B, L, E], h_L [B, E, N])`.
pub(crate) fn selective_scan_log_space<B: Backend>(
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
    let h = match disc {
        Discretization::ZeroOrderHold | Discretization::Simplified => {
            // log Ā = ΔA exactly; Ā > 0.
            let (_, bx) = recurrence_inputs(disc, x.clone(), delta.clone(), a.clone(), b);
            let log_a = delta.unsqueeze_dim::<4>(3) * a.unsqueeze_dims::<4>(&[0, 0]); // [B, L, E, N]
            log_space_core(log_a.clamp_min(LOG_A_MIN), None, bx, h0)
        }
        Discretization::Generalized { .. } => {
            let (abar, bx) = recurrence_inputs(disc, x.clone(), delta, a, b); // [B, L, E, N]
            scan_log_space(abar, bx, h0)
        }
    };
    finish_outputs(h, x, c, d)
}
