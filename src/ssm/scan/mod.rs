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
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod fused_cubecl;
mod fused_kernel;
mod fused_ndarray;
mod log_space;
mod parallel;
mod sequential;

#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for `seqlayers::internals`
pub use backend::{
    FusedScanGrads, FusedScanInput, FusedScanOutput, fused_scan_backward, fused_scan_forward,
    reference_backward,
};
#[cfg(feature = "internals")]
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use fused_cubecl::cubecl_scan_launches;
pub use log_space::LOG_ZERO;
pub use log_space::scan_log_space;
pub use parallel::scan_parallel;
pub use sequential::scan_sequential;

use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use crate::error::{SeqError, ensure_shape};
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
    /// The fused backend op (see [`crate::kernels`]): a kernel on the CPU backend.
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
    ///
    /// Errors with [`SeqError::ZeroSize`] when `B`, `L`, `E` or `N` is 0 (the scans have no
    /// empty result) and [`SeqError::ShapeMismatch`] naming the first tensor whose shape
    /// disagrees with `x` and `A`.
    pub fn validate(&self) -> crate::Result<(usize, usize, usize, usize)> {
        validate_shapes(ScanShapes {
            x: self.x.dims().to_vec(),
            delta: self.delta.dims().to_vec(),
            a: self.a.dims().to_vec(),
            b: self.b.dims().to_vec(),
            c: self.c.dims().to_vec(),
            d: self.d.as_ref().map(|d| d.dims().to_vec()),
            h0: self.h0.as_ref().map(|h| h.dims().to_vec()),
        })
    }
}

/// The shapes of a selective scan's inputs, of any rank (the fused op's primitives carry
/// their rank at run time).
struct ScanShapes {
    x: Vec<usize>,
    delta: Vec<usize>,
    a: Vec<usize>,
    b: Vec<usize>,
    c: Vec<usize>,
    d: Option<Vec<usize>>,
    h0: Option<Vec<usize>>,
}

/// `Err(ShapeMismatch)` unless `shape` has `rank` axes.
fn check_rank(what: &'static str, rank: usize, shape: &[usize]) -> crate::Result<()> {
    if shape.len() == rank {
        Ok(())
    } else {
        Err(SeqError::ShapeMismatch {
            what,
            expected: format!("{rank} axes"),
            got: format!("{} axes {shape:?}", shape.len()),
        })
    }
}

/// Ranks, zero sizes and agreement of the selective scan's inputs; returns `(B, L, E, N)`.
fn validate_shapes(s: ScanShapes) -> crate::Result<(usize, usize, usize, usize)> {
    check_rank("rank of x [B, L, E]", 3, &s.x)?;
    check_rank("rank of A [E, N]", 2, &s.a)?;
    let (bs, l, e, n) = (s.x[0], s.x[1], s.x[2], s.a[1]);
    crate::error::ensure_nonzero("batch", bs)?;
    crate::error::ensure_nonzero("sequence length", l)?;
    crate::error::ensure_nonzero("channels (E)", e)?;
    crate::error::ensure_nonzero("state size (N)", n)?;
    ensure_shape("delta [B, L, E]", &[bs, l, e], &s.delta)?;
    ensure_shape("A [E, N] (E from x)", &[e], &s.a[..1])?;
    ensure_shape("B [B, L, N]", &[bs, l, n], &s.b)?;
    ensure_shape("C [B, L, N]", &[bs, l, n], &s.c)?;
    if let Some(d) = &s.d {
        ensure_shape("D [E]", &[e], d)?;
    }
    if let Some(h0) = &s.h0 {
        ensure_shape("h0 [B, E, N]", &[bs, e, n], h0)?;
    }
    Ok((bs, l, e, n))
}

/// [`fused_scan_forward`] after checking its inputs: the ranks of the primitives (`x`, `Δ`,
/// `B`, `C` rank 3, `A` rank 2, `D` rank 1, `h0` rank 3), their shapes and the discretization,
/// with the errors of [`SelectiveScanInput::validate`]. [`fused_scan_forward`] itself trusts
/// its caller (it is the op behind [`selective_scan`], which validates first).
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // for `seqlayers::internals`
pub fn try_fused_scan_forward<B: Backend>(
    disc: Discretization,
    input: FusedScanInput<B>,
    save_checkpoints: bool,
) -> crate::Result<FusedScanOutput<B>> {
    use burn::tensor::TensorMetadata;
    disc.validate()?;
    validate_shapes(ScanShapes {
        x: input.x.shape().to_vec(),
        delta: input.delta.shape().to_vec(),
        a: input.a.shape().to_vec(),
        b: input.b.shape().to_vec(),
        c: input.c.shape().to_vec(),
        d: input.d.as_ref().map(|d| d.shape().to_vec()),
        h0: input.h0.as_ref().map(|h| h.shape().to_vec()),
    })?;
    Ok(fused_scan_forward::<B>(disc, input, save_checkpoints))
}

/// The generic linear recurrence `h_t = a_t ⊙ h_{t−1} + b_t` ([`scan_sequential`],
/// [`scan_parallel`] or [`scan_log_space`], picked by `kind`) after checking its inputs: `a`
/// and `b` `[B, L, E, N]` of one shape with no zero size, `h0` `[B, E, N]`. Returns every state
/// `[B, L, E, N]`.
///
/// Errors with [`SeqError::ZeroSize`], [`SeqError::ShapeMismatch`], or
/// [`SeqError::InvalidConfig`] for [`ScanKind::Fused`] (the fused op computes the whole
/// selective scan only; call [`selective_scan`]). Non-finite coefficients propagate to every
/// later state of their `(batch, channel, state)` lane.
pub fn try_scan<B: Backend>(
    kind: ScanKind,
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    h0: Option<Tensor<B, 3>>,
) -> crate::Result<Tensor<B, 4>> {
    let [bs, l, e, n] = a.dims();
    crate::error::ensure_nonzero("batch", bs)?;
    crate::error::ensure_nonzero("sequence length", l)?;
    crate::error::ensure_nonzero("channels (E)", e)?;
    crate::error::ensure_nonzero("state size (N)", n)?;
    ensure_shape("b [B, L, E, N] (as a)", &[bs, l, e, n], &b.dims())?;
    if let Some(h0) = &h0 {
        ensure_shape("h0 [B, E, N]", &[bs, e, n], &h0.dims())?;
    }
    match kind {
        ScanKind::Sequential => Ok(scan_sequential(a, b, h0)),
        ScanKind::Parallel => Ok(scan_parallel(a, b, h0)),
        ScanKind::LogSpace => Ok(scan_log_space(a, b, h0)),
        ScanKind::Fused => Err(SeqError::InvalidConfig(
            "the fused scan runs the whole selective scan, not a bare recurrence; call \
             `selective_scan`, or pick ScanKind::Sequential, Parallel or LogSpace"
                .into(),
        )),
    }
}

/// Runs the selective scan with the chosen algorithm and discretization.
///
/// Returns `(y [B, L, E], h_L [B, E, N])`, where `h_L` is the state after the last step (feed it
/// back as `h0` to continue the sequence). Errors on mismatched shapes, zero sizes or an invalid
/// discretization (see [`SelectiveScanInput::validate`]); the ranks are fixed by the types.
///
/// Non-finite values are not checked (a read-back per call): a NaN or ±∞ in an input
/// propagates to the outputs and the final state of its batch row (and, through `A` or `D`,
/// of its channel in every row). One exception: [`ScanKind::LogSpace`] splits `B̄x` by sign,
/// and a NaN there is neither positive nor negative, so its states skip it (only the skip term
/// `D ⊙ x` carries it to `y`). Use [`ensure_finite`](crate::error::ensure_finite) on untrusted
/// inputs for a typed error.
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
