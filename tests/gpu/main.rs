//! The layer suite on Burn's wgpu backend, against `NdArray<f64>` references.
//!
//! Runs on any wgpu adapter; where there is no GPU, on Mesa's software Vulkan device (lavapipe:
//! `scripts/test_wgpu.sh` installs it and runs this target). Every distinct kernel compiles on
//! its first use, so the sizes here are small.
//!
//! - `scan`: the CubeCL selective scan (forward, backward with recomputation, as the `Fused`
//!   path of `Wgpu` and `Autodiff<Wgpu>`) against Burn's autodiff of the sequential scan in f64;
//! - `attention`: the CubeCL attention kernels as one op against tensor-op attention in f64;
//! - `layers`: attention, Mamba (forward, step, chunked prefill), the LSTM, a stack, a training
//!   step and cached generation, each against the same layer with the same parameters in f64;
//! - `routing`: which path each fused op takes on `Wgpu`, that the kernel ran, and the one-time
//!   fallback warnings;
//! - `upstream`: a Burn wgpu bug the crate works around, pinned.

#[path = "../suite/scan_util.rs"]
mod scan_util;

mod attention;
mod layers;
mod routing;
mod scan;
mod upstream;

use seqlayers::backend::WgpuDevice;

/// The wgpu device of the tests: the default adapter (lavapipe on a machine without a GPU).
pub fn gpu() -> WgpuDevice {
    WgpuDevice::default()
}
