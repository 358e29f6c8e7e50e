//! The bottom layer: what every layer family uses, importing nothing above it.
//!
//! - [`Norm`]/[`NormKind`]: the RMSNorm / LayerNorm of every residual block (re-exported as
//!   `seqlayers::stack::{Norm, NormKind}`);
//! - [`MASKED`]: the score of a masked query/key pair (re-exported as
//!   `seqlayers::attention::MASKED`), used by attention and by the ALiBi tables.
//!
//! The SIMD math the CPU kernels share lives with the SIMD levels in [`crate::simd`]. The
//! layer order of the crate, bottom first, is checked by `tests/suite/layering.rs`.

mod norm;

pub use norm::{Norm, NormKind};

/// Score of a masked query/key pair: effectively `−∞`.
///
/// `exp(MASKED − max)` underflows to exactly `0` in f32, so every row with at least one
/// visible key gets precisely the weights of a `−∞` mask. Being finite, a row whose keys are
/// *all* masked (e.g. a left-padded query under a causal mask) gets finite weights instead of
/// `0/0 = NaN`, which would otherwise poison the gradients of the whole batch.
pub const MASKED: f32 = -1.0e30;
