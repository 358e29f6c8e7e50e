//! Helpers shared by the test modules.

use burn::tensor::Tensor;
use seqlayers::backend::{Cpu, CpuDevice};

/// The CPU device.
pub fn dev() -> CpuDevice {
    Default::default()
}

/// The values of a tensor, row-major.
pub fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest element-wise absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
