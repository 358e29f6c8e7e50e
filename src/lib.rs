//! # seqlayers
//!
//! Sequence-model layers on [Burn](https://burn.dev) behind its generic `<B: Backend>` API.
//! See `docs/ARCHITECTURE.md` for the layout and data flow.

#![warn(missing_docs)]

pub mod backend;
pub mod error;
pub mod ssm;

pub use error::{Result, SeqError};
