//! Selective state-space models (Mamba's S6 core): discretization and scans.
//!
//! # Glossary
//! - `A`, `B`, `C`, `D`: continuous SSM matrices (`A` diagonal `[E, N]`, `B_t`/`C_t` `[B, L, N]`).
//! - `Δ`: step size; `Ā`, `B̄`: the discretized transition and input matrices.
//! - `h_t`: hidden state `[B, E, N]`; `E` channels, `N` state size, `L` length, `B` batch.
//!
//! `discretization` turns `(Δ, A, B)` into `(Ā, B̄)`; `scan` runs the recurrence
//! `h_t = Ā_t ⊙ h_{t−1} + B̄_t x_t`, `y_t = ⟨h_t, C_t⟩ + D ⊙ x_t` four ways.

mod discretization;
mod mamba;
pub(crate) mod scan;

pub use discretization::Discretization;
pub use mamba::{CausalConv1d, Mamba, MambaBlock, MambaConfig, MambaState, StateMatrix, StepSize};
pub use scan::{
    ScanKind, SelectiveScanInput, scan_log_space, scan_parallel, scan_sequential, selective_scan,
    try_scan,
};
