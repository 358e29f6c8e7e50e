//! The fused LSTM recurrence on the CPU backend: the kernel called on the tensors' memory, and
//! under `Autodiff` one backward node that runs the kernel's backward through time.
//!
//! # Glossary
//! - `xw` `[B, L, 4H]`, `W_h` `[H, 4H]`, `h0`, `c0` `[B, H]`: the inputs (see [`super`]).
//! - packed output `[B·L·H + B·H]`: the hidden states `h` and the last cell state `c_L`,
//!   flattened and concatenated (a Burn node has one output; see the fused scan's node).

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{
    FloatDType, Shape, Slice, TensorMetadata,
    ops::{FloatTensor, FloatTensorOps},
};
use burn_ndarray::NdArray;

use super::kernel::{self, LstmBackwardInput, LstmDims, LstmKernelInput};
use crate::ndarray_io::{tensor, values};

type Cpu = NdArray<f32>;

/// The last cell state `[B·H]` of the saved cell states `[B, L, H]`.
fn last_cell(dims: LstmDims, c: &[f32]) -> Vec<f32> {
    let (l, hd) = (dims.l, dims.h);
    (0..dims.b)
        .flat_map(|b| c[((b * l) + l - 1) * hd..(b * l + l) * hd].iter().copied())
        .collect()
}

/// The forward on `NdArray<f32>` (no gradient): `h` `[B, L, H]` and `c_L` `[B, H]`.
pub(super) fn cpu_forward(
    dims: LstmDims,
    xw: FloatTensor<Cpu>,
    w_h: FloatTensor<Cpu>,
    h0: Option<FloatTensor<Cpu>>,
    c0: Option<FloatTensor<Cpu>>,
) -> (FloatTensor<Cpu>, FloatTensor<Cpu>) {
    let (xw, w_h) = (values(&xw), values(&w_h));
    let (h0, c0) = (h0.as_ref().map(values), c0.as_ref().map(values));
    let out = kernel::forward(
        dims,
        LstmKernelInput {
            xw: &xw,
            w_h: &w_h,
            h0: h0.as_deref(),
            c0: c0.as_deref(),
        },
    );
    let c_last = last_cell(dims, &out.c);
    (
        tensor(out.h, [dims.b, dims.l, dims.h]),
        tensor(c_last, [dims.b, dims.h]),
    )
}

/// The backward node of the recurrence.
#[derive(Debug)]
struct LstmRecurrenceBackward;

/// Inputs and saved forward values (`h`, `c`, activated gates) for the backward.
#[derive(Debug, Clone)]
struct LstmRecurrenceState {
    dims: LstmDims,
    xw: FloatTensor<Cpu>,
    w_h: FloatTensor<Cpu>,
    h0: Option<FloatTensor<Cpu>>,
    c0: Option<FloatTensor<Cpu>>,
    /// The packed output (its first `B·L·H` values are `h`; shared with the graph, not copied).
    packed: FloatTensor<Cpu>,
    c: Vec<f32>,
    gates: Vec<f32>,
}

impl Backward<Cpu, 4> for LstmRecurrenceBackward {
    type State = LstmRecurrenceState;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let s = ops.state;
        let dims = s.dims;
        let packed = grads.consume::<Cpu>(&ops.node); // [B·L·H + B·H]
        let packed = values(&packed);
        let nh = dims.b * dims.l * dims.h;
        let (xw, w_h) = (values(&s.xw), values(&s.w_h));
        let (h0, c0) = (s.h0.as_ref().map(values), s.c0.as_ref().map(values));
        let h = values(&s.packed);
        let g = kernel::backward(
            dims,
            LstmBackwardInput {
                input: LstmKernelInput {
                    xw: &xw,
                    w_h: &w_h,
                    h0: h0.as_deref(),
                    c0: c0.as_deref(),
                },
                h: &h[..nh],
                c: &s.c,
                gates: &s.gates,
                dh: &packed[..nh],
                dc_last: &packed[nh..],
            },
        );
        let (b, l, hd) = (dims.b, dims.l, dims.h);
        let all = [
            Some(tensor(g.xw, [b, l, 4 * hd])),
            Some(tensor(g.w_h, [hd, 4 * hd])),
            s.h0.map(|_| tensor(g.h0, [b, hd])),
            s.c0.map(|_| tensor(g.c0, [b, hd])),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(all) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Cpu>(node.id, grad);
            }
        }
    }
}

/// The forward on `Autodiff<NdArray<f32>>`: one node whose backward is the kernel's.
pub(super) fn autodiff_forward(
    dims: LstmDims,
    xw: FloatTensor<Autodiff<Cpu>>,
    w_h: FloatTensor<Autodiff<Cpu>>,
    h0: Option<FloatTensor<Autodiff<Cpu>>>,
    c0: Option<FloatTensor<Autodiff<Cpu>>>,
) -> (FloatTensor<Autodiff<Cpu>>, FloatTensor<Autodiff<Cpu>>) {
    type Ad = Autodiff<Cpu>;
    let device = <Cpu as FloatTensorOps<Cpu>>::float_device(&xw.primitive);
    // Absent initial states get an untracked placeholder node (no gradient flows to it).
    let placeholder = || {
        <FloatTensor<Ad>>::new(<Cpu as FloatTensorOps<Cpu>>::float_zeros(
            Shape::new([1]),
            &device,
            FloatDType::F32,
        ))
    };
    let nodes = [
        xw.node.clone(),
        w_h.node.clone(),
        h0.clone().unwrap_or_else(placeholder).node,
        c0.clone().unwrap_or_else(placeholder).node,
    ];
    let (xw, w_h) = (xw.primitive, w_h.primitive);
    let (h0, c0) = (h0.map(|t| t.primitive), c0.map(|t| t.primitive));
    let out = {
        let (xv, wv) = (values(&xw), values(&w_h));
        let (hv, cv) = (h0.as_ref().map(values), c0.as_ref().map(values));
        kernel::forward(
            dims,
            LstmKernelInput {
                xw: &xv,
                w_h: &wv,
                h0: hv.as_deref(),
                c0: cv.as_deref(),
            },
        )
    };
    let (b, l, hd) = (dims.b, dims.l, dims.h);
    let c_last = last_cell(dims, &out.c);
    let mut packed = out.h;
    packed.extend(c_last);
    let packed = tensor(packed, [b * l * hd + b * hd]); // [B·L·H + B·H]
    let prep = LstmRecurrenceBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful();
    let packed = match prep {
        OpsKind::Tracked(prep) => prep.finish(
            LstmRecurrenceState {
                dims,
                xw,
                w_h,
                h0,
                c0,
                packed: packed.clone(),
                c: out.c,
                gates: out.gates,
            },
            packed,
        ),
        OpsKind::UnTracked(prep) => prep.finish(packed),
    };
    debug_assert_eq!(packed.primitive.shape().num_elements(), b * l * hd + b * hd);
    let nh = b * l * hd;
    let h = Ad::float_reshape(
        Ad::float_slice(packed.clone(), &[Slice::from(0..nh)]),
        Shape::new([b, l, hd]),
    ); // [B, L, H]
    let c_last = Ad::float_reshape(
        Ad::float_slice(packed, &[Slice::from(nh..nh + b * hd)]),
        Shape::new([b, hd]),
    ); // [B, H]
    (h, c_last)
}
