//! The Mamba (S6) block: a selective state-space mixer with a depthwise causal convolution, a
//! SiLU gate and input-dependent step sizes, plus its recurrent (token-by-token) form.
//!
//! Follows the reference `mamba_simple.py` (state-spaces/mamba; Gu & Dao, 2023, Algorithm 2)
//! exactly:
//!
//! ```text
//! [x ; z]   = in_proj(u)                       u: [B, L, D] -> [B, L, 2E]
//! x         = silu(causal_depthwise_conv(x))   kernel K, left zero-pad K-1
//! [δ; B; C] = x_proj(x)                        split [R, N, N]
//! Δ         = softplus(dt_proj(δ))             [B, L, E]  (or a constant, StepSize)
//! A         = -exp(A_log)                      [E, N]     (or −1, StateMatrix)
//! h_t       = Ā_t ⊙ h_{t-1} + B̄_t x_t          (Ā, B̄ from the chosen Discretization)
//! y_t       = h_t · C_t + D ⊙ x_t
//! out       = out_proj(y ⊙ silu(z))            [B, L, D]
//! ```
//!
//! # Glossary (paper symbol → code name)
//!
//! | symbol | meaning | code |
//! |---|---|---|
//! | B | batch size (also the input matrix `B_t`, see below) | `batch` |
//! | L | sequence length | `len` |
//! | D | model width `d_model` (also the skip vector `D`, see below) | `d_model` |
//! | E | inner width `expand · d_model` | `d_inner` |
//! | N | state size per channel | `d_state` |
//! | K | depthwise convolution width | `d_conv` |
//! | R | rank of the Δ projection, `ceil(D/16)` by default | `dt_rank` |
//! | Δ | positive step size per token and channel | `delta` |
//! | δ | low-rank pre-activation of Δ | `dt_low` |
//! | A | diagonal state matrix, `-exp(A_log)`, `[E, N]` | `a_log` |
//! | B_t, C_t | input/output projections of the state, shared by channels, `[N]` | `b`, `c` |
//! | D | per-channel skip, `[E]` | `d` |
//! | h | SSM state, `[B, E, N]` | `MambaState::ssm` |
//! | z | gate branch | `z` |
//!
//! # Files
//! - `config`: [`MambaConfig`] (all options, validation, `try_init`).
//! - `init` (private): the reference initialisations (Δ bias, S4D-real `A_log`, uniform weights).
//! - `conv`: [`CausalConv1d`], the depthwise causal convolution.
//! - `cpu_conv` (private): one-loop `silu(conv(x))` with a custom backward on the CPU backend
//!   (tensor ops on the others); `silu` and `softplus` come from `crate::nn`'s activations.
//! - `state`: [`MambaState`], the recurrent state (conv window + SSM state).
//! - `padding` (private): how a padding mask turns into identity steps.
//! - `mixer`: [`Mamba`], the mixer (`forward`, `forward_with_state`, `step`).
//! - `block`: [`MambaBlock`], the crate's residual block around the mixer, pre-norm `x + mixer(rmsnorm(x))`.

mod block;
mod config;
mod conv;
mod cpu_conv;
mod init;
mod mixer;
mod padding;
mod state;

pub use block::MambaBlock;
pub use config::{MambaConfig, StateMatrix, StepSize};
pub use conv::CausalConv1d;
pub use mixer::Mamba;
pub use state::MambaState;

/// Helpers of the fast paths' unit tests.
#[cfg(test)]
mod test_util {
    use burn::tensor::{Tensor, backend::Backend};

    /// The values of `t` as f64.
    pub(super) fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().iter::<f64>().collect()
    }

    /// Largest element-wise `|a − b|`.
    pub(super) fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }
}
