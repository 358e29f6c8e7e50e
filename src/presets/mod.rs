//! Named models of the papers and exercises the crate reproduces, as configurations of the
//! generic models: the recall comparison ([`RecallModel`]: transformers with three position
//! encodings, Mamba, hybrids, LSTM) and the copying paper's models at matched sizes
//! ([`CopyModel`], "Repeat After Me", Jelassi et al. 2024). Nothing below this module depends
//! on them; build your own models from [`crate::stack`] and [`crate::model`] directly.

mod copying;
mod recall;

pub use copying::{CopyModel, CopyModelSize};
pub use recall::RecallModel;
