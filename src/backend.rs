//! Backend aliases: the CPU default (`burn-ndarray`) and, behind the `wgpu` and `cuda`
//! features, the GPU backends.
//!
//! # One CPU float type per process
//! `NdArray<f32>` ([`Cpu`]) and `NdArray<f64>` share one device, `NdArrayDevice::Cpu`, and Burn
//! 0.21 keeps one default float dtype per device and process, fixed by the first backend that
//! creates a tensor without naming a dtype. After [`Cpu`] has run, `Tensor::<NdArray<f64>, D>::
//! from_data(data, &device)` and `zeros(shape, &device)` make **f32** tensors (and the reverse
//! after `NdArray<f64>` ran first): the numbers silently lose precision, or an operation mixing
//! the two panics with "Data type mismatch". Use one of the two per process, or name the dtype
//! at creation, `Tensor::from_data(data, (&device, DType::F64))`, as the f64 reference tests
//! (`tests/suite/reference_f64.rs`) do.

use burn::backend::Autodiff;

/// The default CPU backend (`burn-ndarray`, f32).
pub type Cpu = burn_ndarray::NdArray<f32>;
/// The CPU backend with automatic differentiation, for training.
pub type CpuAutodiff = Autodiff<Cpu>;
/// The CPU device.
pub type CpuDevice = burn_ndarray::NdArrayDevice;

/// The CUDA backend (f32), available with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda<f32, i32>;
/// The CUDA backend with automatic differentiation.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = Autodiff<Cuda>;
/// A CUDA device (GPU index), available with the `cuda` feature.
#[cfg(feature = "cuda")]
pub type CudaDevice = burn_cuda::CudaDevice;

/// The wgpu backend (f32; Vulkan, Metal, DirectX, or Mesa's software Vulkan device), available
/// with the `wgpu` feature. Burn's plain `CubeBackend`, without operation fusion, so that the
/// crate's CubeCL kernels run on it.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn_wgpu::Wgpu<f32, i32, u32>;
/// The wgpu backend with automatic differentiation.
#[cfg(feature = "wgpu")]
pub type WgpuAutodiff = Autodiff<Wgpu>;
/// A wgpu device (`WgpuDevice::Cpu` selects a CPU adapter such as lavapipe).
#[cfg(feature = "wgpu")]
pub type WgpuDevice = burn_wgpu::WgpuDevice;

/// A new contiguous f32 tensor on `like`'s CubeCL device, contents undefined (the CubeCL
/// kernels' outputs and scratch buffers).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn cube_empty<R: burn_cubecl::CubeRuntime>(
    like: &burn_cubecl::tensor::CubeTensor<R>,
    shape: impl Into<burn::tensor::Shape>,
) -> burn_cubecl::tensor::CubeTensor<R> {
    burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        burn::tensor::DType::F32,
    )
}

/// Unwraps a float tensor into its primitive (for backend-level operations).
pub(crate) fn prim<B: burn::tensor::backend::Backend, const D: usize>(
    t: burn::tensor::Tensor<B, D>,
) -> burn::tensor::ops::FloatTensor<B> {
    t.into_primitive().tensor()
}

/// Wraps a float primitive into a tensor.
pub(crate) fn wrap<B: burn::tensor::backend::Backend, const D: usize>(
    p: burn::tensor::ops::FloatTensor<B>,
) -> burn::tensor::Tensor<B, D> {
    burn::tensor::Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(p))
}
