//! The bottom layer: what every layer family uses, importing nothing above it.
//!
//! - [`Residual`], the one residual block (pre- or post-norm) around any [`Mixer`], and the
//!   state convention every stateful layer follows;
//! - [`Norm`]/[`NormKind`]: the RMSNorm / LayerNorm of every residual block;
//! - [`Mlp`]: the position-wise feed-forward sublayer, a stateless [`Mixer`], with [`gelu`], the
//!   exact (erf) GELU with its exact derivative on every backend (Burn 0.21's `gelu` backward
//!   is the tanh approximation's); the Mamba mixer's `silu`/`softplus` kernels live beside it;
//! - `MASKED`: the score of a masked query/key pair (public as
//!   [`seqlayers::attention::MASKED`](crate::attention::MASKED)), used by attention and by the
//!   ALiBi tables.
//!
//! The SIMD math the CPU kernels share lives with the SIMD levels in [`crate::simd`]. The
//! layer order of the crate, bottom first, is checked by `tests/suite/layering.rs`.

mod activation;
mod mlp;
mod norm;
mod norm_kernel;
mod residual;

pub use activation::gelu;
pub(crate) use activation::{silu, silu_derivative, softplus};
pub use mlp::{Mlp, MlpBlock, MlpConfig};
pub use norm::{LayerNorm, Norm, NormKind};
pub use residual::{Mixer, NormPlacement, Residual};

/// Score of a masked query/key pair (public as [`crate::attention::MASKED`], where it is
/// documented); here so that the ALiBi tables below attention can use it.
pub(crate) const MASKED: f32 = -1.0e30;
