//! Kernel entry points for the crate's own tests and benchmarks; **not** part of the supported
//! API and free to change in any release.
//!
//! Compiled only with the `internals` feature, which `cargo test` and `cargo bench` turn on
//! through the crate's dev-dependency on itself. Users reach every kernel through the layers
//! (and see which path each op takes with [`crate::kernels`]).

pub use crate::attention::backend::{
    FusedAttentionGrads, FusedAttentionInput, RopeTables, fused_attention_backward,
    fused_attention_forward,
};
pub use crate::lstm::recurrence::{lstm_recurrence, recurrence_tensor_ops, try_lstm_recurrence};
pub use crate::position::rope::{rope_tables, rotate_transpose_with, rotate_with};
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use crate::ssm::scan::cubecl_scan_launches;
pub use crate::ssm::scan::{
    FusedScanGrads, FusedScanInput, FusedScanOutput, LOG_ZERO, fused_scan_backward,
    fused_scan_forward, reference_backward, try_fused_scan_forward,
};
