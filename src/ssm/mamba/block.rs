//! [`MambaBlock`]: the pre-norm residual block `x + mixer(rmsnorm(x))` (RMSNorm eps 1e-5).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use super::mixer::Mamba;
use super::state::MambaState;
use crate::error::Result;
use crate::nn::Norm;

/// A residual Mamba block, built by
/// [`MambaConfig::try_init_block`](super::MambaConfig::try_init_block).
///
/// Checkpoint names: `layers.{i}.norm.weight` ↔ `norm.gamma`, `layers.{i}.mixer.*` ↔ `mixer.*`.
#[derive(Module, Debug)]
pub struct MambaBlock<B: Backend> {
    /// Pre-norm over `d_model` (RMSNorm from [`MambaConfig::try_init_block`](super::MambaConfig::try_init_block)).
    pub norm: Norm<B>,
    /// The selective-SSM mixer.
    pub mixer: Mamba<B>,
}

impl<B: Backend> MambaBlock<B> {
    /// The state before the first token (the mixer's state; the norm is stateless).
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> MambaState<B> {
        self.mixer.zero_state(batch, device)
    }
}

impl<B: Backend> MambaBlock<B> {
    /// `x + mixer(rmsnorm(x))` from the zero state: `[B, L, D]` → `[B, L, D]`.
    ///
    /// # Panics
    /// Like [`Mamba::forward`].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.try_forward(x) {
            Ok(y) => y,
            Err(e) => panic!("MambaBlock::forward: {e}"),
        }
    }

    /// [`MambaBlock::forward`] returning the errors of [`Mamba::try_forward`] instead of
    /// panicking (the width is checked before the norm, which would panic on it).
    pub fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        Ok(self.forward_with_state(x, None, None)?.0)
    }

    /// [`Mamba::forward_with_state`] wrapped in the residual block. Padded positions
    /// (`padding` `[B, L]` `true`) return their input unchanged (the mixer outputs zero there).
    /// Same errors and non-finite propagation as [`Mamba::forward_with_state`].
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: Option<MambaState<B>>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        let [batch, len, d_model] = x.dims();
        self.mixer.check_input(batch, len, d_model)?;
        let (y, state) =
            self.mixer
                .forward_with_state(self.norm.forward(x.clone()), state, padding)?; // [B, L, D]
        Ok((x + y, state))
    }

    /// One token: `x_t + mixer.step(rmsnorm(x_t))`, `[B, D]` → `[B, D]`.
    ///
    /// # Panics
    /// Like [`Mamba::step`].
    pub fn step(&self, x_t: Tensor<B, 2>, state: MambaState<B>) -> (Tensor<B, 2>, MambaState<B>) {
        match self.try_step(x_t, state) {
            Ok(r) => r,
            Err(e) => panic!("MambaBlock::step: {e}"),
        }
    }

    /// [`MambaBlock::step`] returning a shape error instead of panicking.
    pub fn try_step(
        &self,
        x_t: Tensor<B, 2>,
        state: MambaState<B>,
    ) -> Result<(Tensor<B, 2>, MambaState<B>)> {
        let [batch, d_model] = x_t.dims();
        self.mixer.check_input(batch, 1, d_model)?;
        let (y, state) = self.mixer.try_step(self.norm.forward(x_t.clone()), state)?; // [B, D]
        Ok((x_t + y, state))
    }
}
