//! Selective scans: four ways to run `h_t = Ā_t ⊙ h_{t−1} + B̄_t x_t`, `y_t = ⟨h_t, C_t⟩ + D x_t`.
//!
//! # Glossary
//! - `B` batch, `L` length, `E` channels (d_inner), `N` state size.
//! - `x` `[B, L, E]` input; `Δ` (`delta`) `[B, L, E]` positive step; `A` `[E, N]` negative
//!   diagonal state matrix; `B_t`, `C_t` `[B, L, N]` input/output matrices shared by channels;
//!   `D` `[E]` skip; `h_t` `[B, E, N]` state, starting from `h0` (zero by default).
//! - `Ā`, `B̄ = F·B`: the discretization (see [`Discretization`]).
//! - `a_t`, `b_t`: coefficients of a generic linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t`
//!   (for the selective SSM, `a_t = Ā_t` and `b_t = F_t B_t x_t`).
//!
//! # Methods ([`ScanKind`])
//! - [`ScanKind::Sequential`]: the reference, one step at a time ([`scan_sequential`]).
//! - [`ScanKind::Parallel`]: odd/even parallel scan with tensor ops ([`scan_parallel`]).
//! - [`ScanKind::LogSpace`]: Heinsen's cumsum / log-cumsum-exp formulation ([`scan_log_space`]).
//! - [`ScanKind::Fused`]: one backend op ([`fused_scan_forward`]) — a Rust kernel on the CPU backend
//!   that never materializes `[B, L, E, N]`, with a hand-written recomputing backward.

mod backend;
mod fused_autodiff;
mod fused_kernel;
mod fused_ndarray;
mod log_space;
mod parallel;
mod sequential;

pub use backend::{
    FusedScanGrads, FusedScanInput, FusedScanOutput, fused_scan_backward, fused_scan_forward,
    reference_backward,
};
pub(crate) use fused_kernel::{Fused, LANES, MulAdd, Plain, fast_exp, hsum};
pub use log_space::{LOG_ZERO, scan_log_space};
pub use parallel::scan_parallel;
pub use sequential::scan_sequential;

use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use crate::error::SeqError;
use crate::ssm::discretization::Discretization;

/// Which algorithm runs the selective scan (default: [`ScanKind::Fused`]).
#[derive(burn::config::Config, Debug, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// One step at a time with tensor ops (reference; autodiff cost `O(L log L)`).
    Sequential,
    /// Parallel odd/even scan with tensor ops (`O(L)` work, `O(log L)` depth).
    Parallel,
    /// Heinsen's log-space scan (cumulative sums of logs); see its precision note.
    LogSpace,
    /// The fused backend op ([`fused_scan_forward`]): a kernel on the CPU backend.
    Fused,
}

#[allow(clippy::derivable_impls)] // `#[derive(Default)]` clashes with `#[derive(Config)]`
impl Default for ScanKind {
    fn default() -> Self {
        ScanKind::Fused
    }
}

/// Inputs of the selective scan.
#[derive(Debug, Clone)]
pub struct SelectiveScanInput<B: Backend> {
    /// Input `x`, `[B, L, E]`.
    pub x: Tensor<B, 3>,
    /// Step size `Δ`, `[B, L, E]`, already positive (softplus applied by the caller).
    pub delta: Tensor<B, 3>,
    /// Diagonal state matrix `A`, `[E, N]`, negative.
    pub a: Tensor<B, 2>,
    /// Input matrix `B_t`, `[B, L, N]`.
    pub b: Tensor<B, 3>,
    /// Output matrix `C_t`, `[B, L, N]`.
    pub c: Tensor<B, 3>,
    /// Optional skip connection `D`, `[E]`: `y += D ⊙ x`.
    pub d: Option<Tensor<B, 1>>,
    /// Optional initial state `h0`, `[B, E, N]` (zero when `None`).
    pub h0: Option<Tensor<B, 3>>,
}

impl<B: Backend> SelectiveScanInput<B> {
    /// Checks that all shapes agree and no size is zero. Returns `(B, L, E, N)`.
    pub fn validate(&self) -> crate::Result<(usize, usize, usize, usize)> {
        let [bs, l, e] = self.x.dims();
        let [ea, n] = self.a.dims();
        crate::error::ensure_nonzero("batch", bs)?;
        crate::error::ensure_nonzero("sequence length", l)?;
        crate::error::ensure_nonzero("channels (E)", e)?;
        crate::error::ensure_nonzero("state size (N)", n)?;
        let check = |what: &'static str, expected: Vec<usize>, got: Vec<usize>| {
            if expected == got {
                Ok(())
            } else {
                Err(SeqError::ShapeMismatch {
                    what,
                    expected: format!("{expected:?}"),
                    got: format!("{got:?}"),
                })
            }
        };
        check(
            "delta [B, L, E]",
            vec![bs, l, e],
            self.delta.dims().to_vec(),
        )?;
        check("A [E, N] (E from x)", vec![e], vec![ea])?;
        check("B [B, L, N]", vec![bs, l, n], self.b.dims().to_vec())?;
        check("C [B, L, N]", vec![bs, l, n], self.c.dims().to_vec())?;
        if let Some(d) = &self.d {
            check("D [E]", vec![e], d.dims().to_vec())?;
        }
        if let Some(h0) = &self.h0 {
            check("h0 [B, E, N]", vec![bs, e, n], h0.dims().to_vec())?;
        }
        Ok((bs, l, e, n))
    }
}

/// Runs the selective scan with the chosen algorithm and discretization.
///
/// Returns `(y [B, L, E], h_L [B, E, N])`, where `h_L` is the state after the last step (feed it
/// back as `h0` to continue the sequence). Errors on mismatched shapes, zero sizes or an invalid
/// discretization.
pub fn selective_scan<B: Backend>(
    kind: ScanKind,
    disc: Discretization,
    input: SelectiveScanInput<B>,
) -> crate::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    disc.validate()?;
    input.validate()?;
    Ok(match kind {
        ScanKind::Sequential => sequential::selective_scan_sequential(disc, input),
        ScanKind::Parallel => parallel::selective_scan_parallel(disc, input),
        ScanKind::LogSpace => log_space::selective_scan_log_space(disc, input),
        ScanKind::Fused => {
            let SelectiveScanInput {
                x,
                delta,
                a,
                b,
                c,
                d,
                h0,
            } = input;
            let prim = |t: Tensor<B, 3>| t.into_primitive().tensor();
            let out = fused_scan_forward::<B>(
                disc,
                FusedScanInput {
                    x: prim(x),
                    delta: prim(delta),
                    a: a.into_primitive().tensor(),
                    b: prim(b),
                    c: prim(c),
                    d: d.map(|d| d.into_primitive().tensor()),
                    h0: h0.map(prim),
                },
                false,
            );
            (
                Tensor::from_primitive(TensorPrimitive::Float(out.y)),
                Tensor::from_primitive(TensorPrimitive::Float(out.h_last)),
            )
        }
    })
}
