//! # seqlayers
//!
//! Sequence-model layers on [Burn](https://burn.dev) behind its generic `<B: Backend>` API.
//! See `docs/ARCHITECTURE.md` for the layout and data flow.

#![warn(missing_docs)]

pub mod attention;
pub mod backend;
pub mod error;
pub mod position;

pub use error::{Result, SeqError};
