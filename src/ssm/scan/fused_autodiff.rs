//! [`SsmBackend`] for `Autodiff<B>`: the fused forward of `B` plus a custom backward node that
//! calls `B::fused_scan_backward` (no autodiff graph inside the scan).
//!
//! # Glossary
//! - `y` `[B, L, E]`, `h_L` `[B, E, N]`: the two outputs; `dy`, `dh_L` their gradients.
//! - packed output: `[B·L·E + B·E·N]`, `y` and `h_L` flattened and concatenated.
//!
//! A Burn backward node has exactly one output, while the scan has two. The node therefore
//! produces the packed vector, and `y`, `h_L` are cut out of it with ordinary (differentiable)
//! slice + reshape ops; their gradients arrive back at the node as one packed gradient (zeros
//! where an output was unused), which is split into `dy`, `dh_L`.
//!
//! The node is compute-bound (never re-run by Burn's checkpointing) and keeps as state the inner
//! inputs (reference-counted handles, no copies) and the kernel's chunk checkpoints.

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{
    FloatDType, Shape, Slice, TensorMetadata,
    ops::{FloatTensor, FloatTensorOps},
};

use super::backend::{FusedScanInput, FusedScanOutput, SsmBackend};
use crate::ssm::discretization::Discretization;

/// The backward node of the fused scan.
#[derive(Debug)]
struct FusedScanBackward;

/// What the backward needs: rule, inner inputs, saved checkpoints and the sizes.
#[derive(Debug, Clone)]
struct FusedScanState<B: SsmBackend> {
    disc: Discretization,
    input: FusedScanInput<B>,
    checkpoints: Option<FloatTensor<B>>,
    dims: [usize; 4],
}

impl<B: SsmBackend> Backward<B, 7> for FusedScanBackward {
    type State = FusedScanState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 7>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let FusedScanState {
            disc,
            input,
            checkpoints,
            dims: [b, l, e, n],
        } = ops.state;
        let packed = grads.consume::<B>(&ops.node); // [B·L·E + B·E·N]
        let ny = b * l * e;
        let dy = B::float_reshape(
            B::float_slice(packed.clone(), &[Slice::from(0..ny)]),
            Shape::new([b, l, e]),
        ); // [B, L, E]
        let dh_last = B::float_reshape(
            B::float_slice(packed, &[Slice::from(ny..ny + b * e * n)]),
            Shape::new([b, e, n]),
        ); // [B, E, N]
        let g = B::fused_scan_backward(disc, input, checkpoints, dy, dh_last);
        let all = [
            Some(g.x),
            Some(g.delta),
            Some(g.a),
            Some(g.b),
            Some(g.c),
            g.d,
            g.h0,
        ];
        for (parent, grad) in ops.parents.into_iter().zip(all) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: SsmBackend, C: CheckpointStrategy> SsmBackend for Autodiff<B, C> {
    fn fused_scan_forward(
        disc: Discretization,
        input: FusedScanInput<Self>,
        _save_checkpoints: bool,
    ) -> FusedScanOutput<Self> {
        let xs = input.x.primitive.shape();
        let (b, l, e) = (xs[0], xs[1], xs[2]);
        let n = input.a.primitive.shape()[1];
        let device = B::float_device(&input.x.primitive);
        // Absent optional inputs get an untracked placeholder node (no gradient flows to it).
        let placeholder =
            || <FloatTensor<Self>>::new(B::float_zeros(Shape::new([1]), &device, FloatDType::F32));
        let d_node = input.d.clone().unwrap_or_else(placeholder);
        let h0_node = input.h0.clone().unwrap_or_else(placeholder);
        let nodes = [
            input.x.node.clone(),
            input.delta.node.clone(),
            input.a.node.clone(),
            input.b.node.clone(),
            input.c.node.clone(),
            d_node.node.clone(),
            h0_node.node.clone(),
        ];
        let inner = FusedScanInput::<B> {
            x: input.x.primitive,
            delta: input.delta.primitive,
            a: input.a.primitive,
            b: input.b.primitive,
            c: input.c.primitive,
            d: input.d.map(|d| d.primitive),
            h0: input.h0.map(|h| h.primitive),
        };

        let prep = FusedScanBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let tracked = matches!(prep, OpsKind::Tracked(_));
        let out = B::fused_scan_forward(disc, inner.clone(), tracked);
        let packed = B::float_cat(
            vec![
                B::float_reshape(out.y, Shape::new([b * l * e])),
                B::float_reshape(out.h_last, Shape::new([b * e * n])),
            ],
            0,
        ); // [B·L·E + B·E·N]
        let packed = match prep {
            OpsKind::Tracked(prep) => prep.finish(
                FusedScanState {
                    disc,
                    input: inner,
                    checkpoints: out.checkpoints,
                    dims: [b, l, e, n],
                },
                packed,
            ),
            OpsKind::UnTracked(prep) => prep.finish(packed),
        };
        let ny = b * l * e;
        let y = Self::float_reshape(
            Self::float_slice(packed.clone(), &[Slice::from(0..ny)]),
            Shape::new([b, l, e]),
        ); // [B, L, E]
        let h_last = Self::float_reshape(
            Self::float_slice(packed, &[Slice::from(ny..ny + b * e * n)]),
            Shape::new([b, e, n]),
        ); // [B, E, N]
        FusedScanOutput {
            y,
            h_last,
            checkpoints: None,
        }
    }
}
