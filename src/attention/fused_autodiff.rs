//! [`AttentionBackend`] for `Autodiff<B>`: `B`'s fused forward recorded as a single graph node
//! whose backward is `B::fused_attention_backward` (with the weights `P` saved by the forward).

use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::ops::FloatTensor;

use super::backend::{AttentionBackend, FusedAttentionInput, RopeTables};

/// The backward node of the fused attention.
#[derive(Debug)]
struct FusedAttentionBackward;

/// What the backward needs: the inner inputs and the saved weights.
#[derive(Debug, Clone)]
struct FusedAttentionState<B: AttentionBackend> {
    input: FusedAttentionInput<B>,
    weights: Option<FloatTensor<B>>,
}

impl<B: AttentionBackend> Backward<B, 3> for FusedAttentionBackward {
    type State = FusedAttentionState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let FusedAttentionState { input, weights } = ops.state;
        let d_out = grads.consume::<B>(&ops.node); // [B, H, Lq, dv]
        let g = B::fused_attention_backward(input, weights, d_out);
        for (parent, grad) in ops.parents.into_iter().zip([g.q, g.k, g.v]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: AttentionBackend, C: CheckpointStrategy> AttentionBackend for Autodiff<B, C> {
    fn fused_attention_forward(
        input: FusedAttentionInput<Self>,
        save_weights: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let nodes = [
            input.q.node.clone(),
            input.k.node.clone(),
            input.v.node.clone(),
        ];
        let inner = FusedAttentionInput::<B> {
            q: input.q.primitive,
            k: input.k.primitive,
            v: input.v.primitive,
            bias: input.bias.map(|b| b.primitive),
            rope: input.rope.map(|r| RopeTables {
                cos_q: r.cos_q.primitive,
                sin_q: r.sin_q.primitive,
                cos_k: r.cos_k.primitive,
                sin_k: r.sin_k.primitive,
            }),
            scale: input.scale,
        };
        let prep = FusedAttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let tracked = matches!(prep, OpsKind::Tracked(_));
        let (out, weights) = B::fused_attention_forward(inner.clone(), tracked || save_weights);
        let out = match prep {
            OpsKind::Tracked(prep) => prep.finish(
                FusedAttentionState {
                    input: inner,
                    weights: weights.clone(),
                },
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        // Weights handed to the caller are constants (no gradient flows through them).
        (
            out,
            weights
                .filter(|_| save_weights)
                .map(<FloatTensor<Self>>::new),
        )
    }
}
