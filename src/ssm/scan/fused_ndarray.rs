//! [`SsmBackend`] for the CPU backend (`burn-ndarray`): runs the Rust kernel of
//! [`fused_kernel`](super::fused_kernel) directly on the tensors' memory.
//!
//! # Glossary
//! - `B` batch, `L` length, `E` channels, `N` state size (shapes as in [`FusedScanInput`]).
//! - checkpoints: states `[B, E, ⌈L/64⌉, N]` at chunk starts, saved by the forward for the
//!   backward.
//!
//! Inputs are read in place when they are contiguous `f32` (a copy is made otherwise, e.g. for a
//! transposed view or an `f64` tensor); outputs are moved into new tensors without copying.

use std::borrow::Cow;

use burn::tensor::{TensorMetadata, ops::FloatTensor};
use burn_ndarray::NdArray;

use super::backend::{FusedScanGrads, FusedScanInput, FusedScanOutput, SsmBackend};
use super::fused_kernel::{self, KernelDims, KernelInput};
use crate::ndarray_io::{tensor, values};
use crate::ssm::discretization::Discretization;

/// Kernel sizes from the input shapes (validated by `selective_scan`).
fn dims_of(input: &FusedScanInput<NdArray<f32>>) -> KernelDims {
    let xs = input.x.shape();
    let n = input.a.shape()[1];
    KernelDims {
        b: xs[0],
        l: xs[1],
        e: xs[2],
        n,
    }
}

/// Borrowed (or copied) values of every input.
struct Values<'a> {
    x: Cow<'a, [f32]>,
    delta: Cow<'a, [f32]>,
    a: Cow<'a, [f32]>,
    bm: Cow<'a, [f32]>,
    c: Cow<'a, [f32]>,
    d: Option<Cow<'a, [f32]>>,
    h0: Option<Cow<'a, [f32]>>,
}

impl<'a> Values<'a> {
    fn new(input: &'a FusedScanInput<NdArray<f32>>) -> Self {
        Self {
            x: values(&input.x),
            delta: values(&input.delta),
            a: values(&input.a),
            bm: values(&input.b),
            c: values(&input.c),
            d: input.d.as_ref().map(values),
            h0: input.h0.as_ref().map(values),
        }
    }

    fn kernel_input(&self) -> KernelInput<'_> {
        KernelInput {
            x: &self.x,
            delta: &self.delta,
            a: &self.a,
            bm: &self.bm,
            c: &self.c,
            d: self.d.as_deref(),
            h0: self.h0.as_deref(),
        }
    }
}

fn forward(
    disc: Discretization,
    input: FusedScanInput<NdArray<f32>>,
    save_checkpoints: bool,
) -> FusedScanOutput<NdArray<f32>> {
    let dims = dims_of(&input);
    let vals = Values::new(&input);
    let out = fused_kernel::forward(disc, dims, vals.kernel_input(), save_checkpoints);
    FusedScanOutput {
        y: tensor(out.y, [dims.b, dims.l, dims.e]),
        h_last: tensor(out.h_last, [dims.b, dims.e, dims.n]),
        checkpoints: out
            .checkpoints
            .map(|c| tensor(c, [dims.b, dims.e, dims.chunks(), dims.n])),
    }
}

fn backward(
    disc: Discretization,
    input: FusedScanInput<NdArray<f32>>,
    checkpoints: Option<FloatTensor<NdArray<f32>>>,
    dy: FloatTensor<NdArray<f32>>,
    dh_last: FloatTensor<NdArray<f32>>,
) -> FusedScanGrads<NdArray<f32>> {
    let dims = dims_of(&input);
    let vals = Values::new(&input);
    let ckpt = checkpoints.as_ref().map(values);
    let dy = values(&dy);
    let dh_last = values(&dh_last);
    let g = fused_kernel::backward(
        disc,
        dims,
        vals.kernel_input(),
        ckpt.as_deref(),
        &dy,
        &dh_last,
    );
    let KernelDims { b, l, e, n } = dims;
    FusedScanGrads {
        x: tensor(g.x, [b, l, e]),
        delta: tensor(g.delta, [b, l, e]),
        a: tensor(g.a, [e, n]),
        b: tensor(g.bm, [b, l, n]),
        c: tensor(g.c, [b, l, n]),
        d: g.d.map(|v| tensor(v, [e])),
        h0: g.h0.map(|v| tensor(v, [b, e, n])),
    }
}

/// The CPU backend runs the Rust kernel (tensors of another float dtype are converted to f32 on
/// the way in).
impl SsmBackend for NdArray<f32> {
    fn fused_scan_forward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        save_checkpoints: bool,
    ) -> FusedScanOutput<Self> {
        forward(disc, input, save_checkpoints)
    }

    fn fused_scan_backward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        checkpoints: Option<FloatTensor<Self>>,
        dy: FloatTensor<Self>,
        dh_last: FloatTensor<Self>,
    ) -> FusedScanGrads<Self> {
        backward(disc, input, checkpoints, dy, dh_last)
    }
}
