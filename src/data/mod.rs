//! Tasks: the [`Task`] trait every task implements, and the synthetic tasks.
//!
//! - [`AssociativeRecall`]: associative recall AR(M) with delay τ (seeds 000/001); the induction
//!   head task is the special case M = 1.
//!
//! Batches are generated on the fly from a seeded RNG, so a run is reproducible from its seed
//! and any sequence length can be drawn (training length L, evaluation up to 3L and beyond).

mod embedding;
mod recall;
mod task;

pub use embedding::{closest_pairs, random_unit_embedding};
pub use recall::{AssociativeRecall, RecallBatch, RecallConfig};
pub use task::{Batch, Metric, Targets, Task};
