//! [`Residual`]: the one residual block of the crate, generic over its [`Mixer`].
//!
//! | [`NormPlacement`] | block | used by |
//! |---|---|---|
//! | [`Pre`](NormPlacement::Pre) | `x + mixer(norm(x))` | GPT, Mamba, the LSTM and MLP sublayers of a stack |
//! | [`Post`](NormPlacement::Post) | `norm(x + mixer(x))` | the original Transformer, BERT-family encoders |
//!
//! A mixer is any layer `[B, L, D] → [B, L, D]` that can also continue from a state: causal
//! self-attention ([`KvCache`](crate::attention::KvCache)), the Mamba mixer
//! ([`MambaState`](crate::ssm::MambaState)), the LSTM ([`LstmCarry`](crate::lstm::LstmCarry))
//! and the stateless MLP (`()`). Every block kind of the crate is this type with one of them:
//! `MambaBlock<B> = Residual<B, Mamba<B>>`, and so on.
//!
//! # The state convention
//! Every stateful layer, block and model of the crate decodes the same way: the state is made
//! by `init_state(batch, device)`, passed **by value** into `forward_with_state(x, state)` (or
//! `step(x_t, state)`), and returned with the output: `(y, state)`. Feeding a sequence in
//! chunks this way gives the outputs of one `forward` over the whole sequence.

use burn::module::{Module, ModuleDisplay};
use burn::serde::{Deserialize, Serialize};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};

use super::Norm;
use crate::backend::{Cpu, CpuAutodiff, prim, wrap};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::error::{Result, ensure_nonzero, ensure_shape};
use crate::ndarray_io::{sum, tensor, track_node};

/// A sequence mixer: `[B, L, D] → [B, L, D]`, from the empty state or continuing from one.
///
/// Implemented by [`MultiHeadAttention`](crate::attention::MultiHeadAttention),
/// [`Mamba`](crate::ssm::Mamba), Burn's [`Lstm`](burn::nn::Lstm) (through the fused kernel of
/// [`crate::lstm`]) and [`Mlp`](super::Mlp). Implement it for your own layer to put it in a
/// [`Residual`] block.
pub trait Mixer<B: Backend>: Module<B> + ModuleDisplay {
    /// What the mixer carries from one chunk of a sequence to the next (`()` when nothing).
    type State: Clone + core::fmt::Debug + Send;

    /// The width `D` of the input and output.
    fn d_model(&self) -> usize;

    /// `x` `[B, L, D]` → `[B, L, D]`, from the empty state.
    ///
    /// # Panics
    /// On inputs that [`try_forward`](Mixer::try_forward) rejects.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;

    /// [`forward`](Mixer::forward) returning the layer's typed error instead of panicking.
    fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>>;

    /// The state before the first position, for `batch` sequences.
    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State;

    /// The next `T ≥ 1` positions `x` `[B, T, D]`, continuing from `state`: returns
    /// `[B, T, D]` and the state after them.
    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: Self::State,
    ) -> Result<(Tensor<B, 3>, Self::State)>;

    /// One position `x_t` `[B, D]` → `([B, D], state)`; by default
    /// [`forward_with_state`](Mixer::forward_with_state) with `T = 1`.
    fn step(&self, x_t: Tensor<B, 2>, state: Self::State) -> Result<(Tensor<B, 2>, Self::State)> {
        let [batch, d] = x_t.dims();
        let (y, state) = self.forward_with_state(x_t.reshape([batch, 1, d]), state)?; // [B, 1, D]
        Ok((y.reshape([batch, d]), state))
    }
}

/// Where a [`Residual`] block normalizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(crate = "burn::serde")]
pub enum NormPlacement {
    /// `x + mixer(norm(x))`: the residual stream is never normalized (GPT-2, Mamba).
    #[default]
    Pre,
    /// `norm(x + mixer(x))`: the sum is normalized (the original Transformer, BERT).
    Post,
}

/// A residual block around a [`Mixer`]: `x + mixer(norm(x))` or `norm(x + mixer(x))`.
///
/// Build one with the config of its mixer (e.g.
/// [`MambaConfig::try_init_block`](crate::ssm::MambaConfig::try_init_block)) or with
/// [`Residual::new`]. Checkpoint names: `norm.*`, `mixer.*`.
#[derive(Module, Debug)]
pub struct Residual<B: Backend, M: Module<B>> {
    /// The norm over `D`, before the mixer or after the sum.
    pub norm: Norm<B>,
    /// The sublayer.
    pub mixer: M,
    /// Where `norm` is applied.
    pub placement: NormPlacement,
}

impl<B: Backend, M: Mixer<B>> Residual<B, M> {
    /// Wraps `mixer`; `norm` must have the mixer's width.
    pub fn new(norm: Norm<B>, mixer: M, placement: NormPlacement) -> Self {
        Residual {
            norm,
            mixer,
            placement,
        }
    }

    /// The block's width `D`.
    pub fn d_model(&self) -> usize {
        self.norm.d_model()
    }

    /// The block on `x` `[B, L, D]` from the empty state.
    ///
    /// # Panics
    /// On inputs that [`try_forward`](Self::try_forward) rejects.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.placement {
            NormPlacement::Pre => {
                let y = self.mixer.forward(self.norm.forward(x.clone())); // [B, L, D]
                add(x, y)
            }
            NormPlacement::Post => {
                let y = self.mixer.forward(x.clone()); // [B, L, D]
                self.norm.forward(add(x, y))
            }
        }
    }

    /// [`forward`](Self::forward) after O(1) checks: [`SeqError::ZeroSize`] when `B` or `L` is
    /// 0, [`SeqError::ShapeMismatch`] when the last axis is not `D` (checked before the norm,
    /// which would panic on it), then the mixer's own errors.
    ///
    /// [`SeqError::ZeroSize`]: crate::SeqError::ZeroSize
    /// [`SeqError::ShapeMismatch`]: crate::SeqError::ShapeMismatch
    pub fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        self.check_input(&x)?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                let y = self.mixer.try_forward(self.norm.forward(x.clone()))?; // [B, L, D]
                add(x, y)
            }
            NormPlacement::Post => {
                let y = self.mixer.try_forward(x.clone())?; // [B, L, D]
                self.norm.forward(add(x, y))
            }
        })
    }

    /// The mixer's state before the first position (the norm is stateless).
    pub fn init_state(&self, batch: usize, device: &B::Device) -> M::State {
        self.mixer.init_state(batch, device)
    }

    /// The next `T ≥ 1` positions `x` `[B, T, D]` from `state`: `([B, T, D], state)`. Errors as
    /// [`try_forward`](Self::try_forward) and the mixer's
    /// [`forward_with_state`](Mixer::forward_with_state).
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: M::State,
    ) -> Result<(Tensor<B, 3>, M::State)> {
        self.check_input(&x)?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                let (y, state) = self
                    .mixer
                    .forward_with_state(self.norm.forward(x.clone()), state)?; // [B, T, D]
                (add(x, y), state)
            }
            NormPlacement::Post => {
                let (y, state) = self.mixer.forward_with_state(x.clone(), state)?; // [B, T, D]
                (self.norm.forward(add(x, y)), state)
            }
        })
    }

    /// One position `x_t` `[B, D]` from `state`, through the mixer's
    /// [`step`](Mixer::step): `([B, D], state)`.
    pub fn step(&self, x_t: Tensor<B, 2>, state: M::State) -> Result<(Tensor<B, 2>, M::State)> {
        let [batch, d] = x_t.dims();
        ensure_nonzero("batch size", batch)?;
        ensure_shape(
            "block step input [B, D] (last axis d_model)",
            &[batch, self.d_model()],
            &[batch, d],
        )?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                let (y, state) = self.mixer.step(self.norm.forward(x_t.clone()), state)?; // [B, D]
                (add(x_t, y), state)
            }
            NormPlacement::Post => {
                let (y, state) = self.mixer.step(x_t.clone(), state)?; // [B, D]
                (self.norm.forward(add(x_t, y)), state)
            }
        })
    }

    /// Errors unless `x` is `[B, L, D]` with `B, L > 0`.
    pub(crate) fn check_input(&self, x: &Tensor<B, 3>) -> Result<()> {
        let [batch, len, d] = x.dims();
        ensure_nonzero("batch size", batch)?;
        ensure_nonzero("sequence length", len)?;
        ensure_shape(
            "block input [B, L, D] (last axis d_model)",
            &[batch, len, self.d_model()],
            &[batch, len, d],
        )
    }
}

/// A residual block is itself a mixer, so blocks compose and generic code (a stack, a test)
/// can drive a layer and its block alike.
impl<B: Backend, M: Mixer<B>> Mixer<B> for Residual<B, M> {
    type State = M::State;

    fn d_model(&self) -> usize {
        Residual::d_model(self)
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        Residual::forward(self, x)
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        Residual::try_forward(self, x)
    }

    fn init_state(&self, batch: usize, device: &B::Device) -> M::State {
        Residual::init_state(self, batch, device)
    }

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: M::State,
    ) -> Result<(Tensor<B, 3>, M::State)> {
        Residual::forward_with_state(self, x, state)
    }

    fn step(&self, x_t: Tensor<B, 2>, state: M::State) -> Result<(Tensor<B, 2>, M::State)> {
        Residual::step(self, x_t, state)
    }
}

/// The residual connection's sum `x + y` of two tensors of one shape (Burn's `+` otherwise).
///
/// On the CPU backend (and its autodiff, as one node that passes `∂(x + y)` to both) the sum
/// is written into the buffer of an operand nobody else holds — the sublayer's fresh output —
/// in parallel chunks on Rayon's pool. Burn's `+` adds on the calling thread into a fresh
/// buffer while the pool waits, and faults its pages in: 3% of a MiniLM-size encoder step.
/// Addition commutes, so the values are Burn's `x + y`, bit for bit.
pub(crate) fn add<B: Backend, const D: usize>(x: Tensor<B, D>, y: Tensor<B, D>) -> Tensor<B, D> {
    if x.dims() != y.dims() {
        return x + y; // broadcasting: Burn's
    }
    type On<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>);
    match route::<B, _, On<Cpu, D>, On<CpuAutodiff, D>>(FusedOp::Add, (x, y)) {
        Routed::CpuAutodiff((x, y)) => same(autodiff_add(x, y)),
        Routed::Cpu((x, y)) => same(wrap::<Cpu, D>(sum(prim(x), prim(y)))),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu((x, y)) => x + y,
        Routed::Other((x, y)) => x + y,
    }
}

/// The backward node of [`add`]: `∂x = ∂y = ∂(x + y)`.
#[derive(Debug)]
struct AddBackward;

impl Backward<Cpu, 2> for AddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_sum = grads.consume::<Cpu>(&ops.node);
        let [x, y] = ops.parents;
        match (x, y) {
            (Some(x), Some(y)) => {
                grads.register::<Cpu>(x.id, d_sum.clone());
                grads.register::<Cpu>(y.id, d_sum);
            }
            (Some(only), None) | (None, Some(only)) => grads.register::<Cpu>(only.id, d_sum),
            (None, None) => {}
        }
    }
}

fn autodiff_add<const D: usize>(
    x: Tensor<CpuAutodiff, D>,
    y: Tensor<CpuAutodiff, D>,
) -> Tensor<CpuAutodiff, D> {
    let (mut x, mut y) = (prim(x), prim(y));
    // The values move out (so that a buffer held by nobody else is summed in place); the
    // autodiff tensors keep their nodes, which is all the node needs of them.
    let take = |p: &mut burn_ndarray::NdArrayTensor| std::mem::replace(p, tensor(Vec::new(), [0]));
    let out = sum(take(&mut x.primitive), take(&mut y.primitive));
    wrap(track_node(AddBackward, [&x, &y], out, || ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn values(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    fn leaf<B: Backend>(seed: u32) -> Tensor<B, 3> {
        let shape = [2, 3, 5];
        Tensor::from_data(
            TensorData::new(values(seed, 30), shape),
            &Default::default(),
        )
    }

    fn bits<B: Backend>(t: Tensor<B, 3>) -> Vec<u32> {
        t.into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    /// [`add`] against Burn's `+`, bit for bit, with each operand held elsewhere or not (the
    /// sum goes into an operand's buffer only when nobody else holds it: a held operand keeps
    /// its values), on the plain backend and under autodiff, where both operands get the
    /// gradient (`x` also reaches the loss directly, so its two gradients are summed).
    #[test]
    fn add_matches_burn_and_leaves_held_operands_alone() {
        let (x, y) = (leaf::<Cpu>(1), leaf::<Cpu>(2));
        let (x_bits, want) = (bits(x.clone()), bits(x.clone() + y.clone()));
        assert_eq!(bits(add(x.clone(), y.clone())), want, "both held");
        assert_eq!(bits(add(x.clone(), leaf::<Cpu>(2))), want, "y owned");
        assert_eq!(
            bits(add(leaf::<Cpu>(2), x.clone())),
            want,
            "x held, first owned"
        );
        assert_eq!(
            bits(add(leaf::<Cpu>(1), leaf::<Cpu>(2))),
            want,
            "both owned"
        );
        assert_eq!(bits(x), x_bits, "a held operand is not written");
        assert_eq!(
            bits(y),
            bits(leaf::<Cpu>(2)),
            "a held operand is not written"
        );

        let probe = leaf::<CpuAutodiff>(3);
        let run = |ours: bool| {
            let x = leaf::<CpuAutodiff>(1).require_grad();
            let w = leaf::<CpuAutodiff>(2).require_grad();
            let y = x.clone() * w.clone(); // a fresh output, held by nobody else
            let sum = if ours {
                add(x.clone(), y)
            } else {
                x.clone() + y
            };
            let loss = (sum.clone() * probe.clone()).sum() + (x.clone() * x.clone()).sum();
            let g = loss.backward();
            (
                bits(sum),
                bits(x.grad(&g).unwrap()),
                bits(w.grad(&g).unwrap()),
            )
        };
        assert_eq!(run(true), run(false));
    }
}
