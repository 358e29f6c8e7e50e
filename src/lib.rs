//! # seqlayers
//!
//! Sequence-model layers on [Burn](https://burn.dev) behind its generic `<B: Backend>` API.
//! See `docs/ARCHITECTURE.md` for the layout and data flow.

#![warn(missing_docs)]
// A public type must be nameable by users wherever it appears in the public API.
#![warn(unnameable_types)]

pub mod attention;
pub mod backend;
pub mod data;
pub mod decode;
mod dispatch;
pub mod error;
mod init;
mod linear;
pub mod lstm;
pub mod model;
mod ndarray_io;
mod nn;
pub mod position;
pub mod simd;
pub mod ssm;
pub mod stack;
pub mod train;

pub use burn;
pub use dispatch::{FusedOp, KernelPath, kernel_path, kernels};
pub use error::{Result, SeqError};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
