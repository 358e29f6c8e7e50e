//! `reshape` without a copy on the CPU backend.
//!
//! burn-ndarray 0.21's `reshape` goes through ndarray's `to_shape(..).into_shared()`, which
//! copies the data even when the tensor is contiguous and only its shape changes; under
//! autodiff the backward reshapes the gradient back, with another copy. The multi-head layer
//! reshapes every projection to split its heads and back, and the loss reshapes its gather, so
//! these copies were 12% of the calling thread's time in a d = 96 GPT training step.
//!
//! On `NdArray<f32>` (and its autodiff, as one node whose backward reshapes the gradient back)
//! a row-major tensor gets its new shape over the same shared buffer; any other layout falls
//! back to burn-ndarray's reshape (a copy). Every other backend runs Burn's `reshape`.

use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{Shape, Tensor, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor};

use crate::backend::{Cpu, CpuAutodiff, prim, wrap};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::ndarray_io::track_node;

/// `x` with the shape `shape` (the same number of elements, row-major order), as Burn's
/// `reshape`, without a copy on the CPU backend when `x` is row-major.
pub(crate) fn reshape<B: Backend, const D1: usize, const D2: usize>(
    x: Tensor<B, D1>,
    shape: [usize; D2],
) -> Tensor<B, D2> {
    match route::<B, _, Tensor<Cpu, D1>, Tensor<CpuAutodiff, D1>>(FusedOp::Reshape, x) {
        Routed::CpuAutodiff(x) => same(autodiff_reshape(x, shape)),
        Routed::Cpu(x) => same(wrap::<Cpu, D2>(reshape_ndarray(prim(x), &shape))),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(x) => x.reshape(shape),
        Routed::Other(x) => x.reshape(shape),
    }
}

/// `t` with shape `shape`: the same buffer when `t` is a row-major `f32` array, burn-ndarray's
/// reshape (a copy) otherwise.
pub(crate) fn reshape_ndarray(t: NdArrayTensor, shape: &[usize]) -> NdArrayTensor {
    let elements = t.shape().num_elements();
    assert_eq!(
        elements,
        shape.iter().product::<usize>(),
        "reshape {:?} to {shape:?}: the element counts differ",
        t.shape()
    );
    let row_major = match &t {
        NdArrayTensor::F32(storage) => !t.is_borrowed() && storage.view().is_standard_layout(),
        _ => false,
    };
    match t {
        NdArrayTensor::F32(storage) if row_major => {
            // An owned array's shared buffer, not a copy; ndarray gives it the new shape in
            // place (a row-major array takes any shape of its size).
            match storage.into_shared().into_shape_with_order(shape.to_vec()) {
                Ok(array) => NdArrayTensor::from(array),
                Err(e) => unreachable!("a row-major array takes any shape of its size: {e}"),
            }
        }
        other => NdArray::<f32>::float_reshape(other, Shape::from(shape.to_vec())),
    }
}

/// The backward node: reshapes `∂y` back to the input's shape.
#[derive(Debug)]
struct ReshapeBackward;

impl Backward<Cpu, 1> for ReshapeBackward {
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Cpu>(node.id, reshape_ndarray(dy, &ops.state));
        }
    }
}

fn autodiff_reshape<const D1: usize, const D2: usize>(
    x: Tensor<CpuAutodiff, D1>,
    shape: [usize; D2],
) -> Tensor<CpuAutodiff, D2> {
    let x = prim(x);
    let from: Vec<usize> = x.primitive.shape().iter().copied().collect();
    let y = reshape_ndarray(x.primitive.clone(), &shape);
    wrap(track_node(ReshapeBackward, [&x], y, || from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn data_ptr(t: &NdArrayTensor) -> *const f32 {
        match t {
            NdArrayTensor::F32(s) => s.view().as_ptr(),
            _ => panic!("f32 tensor expected"),
        }
    }

    /// A row-major tensor keeps its buffer; a transposed one is copied into row-major order;
    /// both hold Burn's reshape's values. Under autodiff the gradient comes back in the input's
    /// shape, equal to Burn's.
    #[test]
    fn reshape_shares_row_major_buffers_and_matches_burn() {
        let device = Default::default();
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let x = Tensor::<Cpu, 3>::from_data(TensorData::new(values.clone(), [2, 3, 4]), &device);
        let p = prim(x.clone());
        let y = reshape_ndarray(p.clone(), &[6, 4]);
        assert_eq!(data_ptr(&y), data_ptr(&p), "row-major: same buffer");
        assert_eq!(
            wrap::<Cpu, 2>(y).into_data(),
            x.clone().reshape([6, 4]).into_data()
        );
        let t = x.clone().swap_dims(1, 2); // [2, 4, 3], not row-major
        let y = reshape::<Cpu, 3, 2>(t.clone(), [8, 3]);
        assert_eq!(y.into_data(), t.reshape([8, 3]).into_data());

        let weights: Vec<f32> = (0..24).map(|i| (i as f32).sin()).collect();
        let w = Tensor::<CpuAutodiff, 2>::from_data(TensorData::new(weights, [4, 6]), &device);
        let grad_of = |ours: bool, swapped: bool| {
            let x = Tensor::<CpuAutodiff, 3>::from_data(
                TensorData::new(values.clone(), [2, 3, 4]),
                &device,
            )
            .require_grad();
            let input = if swapped {
                x.clone().swap_dims(0, 1)
            } else {
                x.clone()
            };
            let y: Tensor<CpuAutodiff, 2> = if ours {
                reshape(input, [4, 6])
            } else {
                input.reshape([4, 6])
            };
            let g = (y * w.clone()).sum().backward();
            x.grad(&g).unwrap().into_data()
        };
        for swapped in [false, true] {
            assert_eq!(grad_of(true, swapped), grad_of(false, swapped));
        }
    }
}
