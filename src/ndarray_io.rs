//! Moving `f32` data between burn-ndarray tensors and the Rust kernels (fused scan, fused
//! attention): inputs are read in place when they are contiguous `f32` (copied otherwise, e.g.
//! a transposed view or an `f64` tensor); outputs are moved into new tensors without copying.

use std::borrow::Cow;

use burn::tensor::{FloatDType, Shape, TensorData, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor};

/// Row-major `f32` values of a tensor: borrowed when contiguous f32, copied otherwise.
pub(crate) fn values(t: &NdArrayTensor) -> Cow<'_, [f32]> {
    if let NdArrayTensor::F32(storage) = t {
        let view = storage.view();
        if let Some(slice) = view.to_slice() {
            return Cow::Borrowed(slice);
        }
        return Cow::Owned(view.iter().copied().collect());
    }
    let cast = <NdArray<f32> as burn::tensor::ops::FloatTensorOps<NdArray<f32>>>::float_cast(
        t.clone(),
        FloatDType::F32,
    );
    match cast {
        NdArrayTensor::F32(storage) => Cow::Owned(storage.view().iter().copied().collect()),
        other => unreachable!("cast to f32 gave {:?}", other.dtype()),
    }
}

/// A new tensor owning `v` with the given shape.
pub(crate) fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(v, shape.into()))
}
