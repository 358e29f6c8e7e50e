//! [`MambaBlock`]: the pre-norm residual block `x + mixer(rmsnorm(x))` (RMSNorm eps 1e-5).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use super::mixer::Mamba;
use super::state::MambaState;
use crate::error::Result;
use crate::nn::{NormPlacement, Residual};

/// A residual Mamba block: the crate's one [`Residual`] block around a [`Mamba`] mixer,
/// built by [`MambaConfig::try_init_block`](super::MambaConfig::try_init_block).
///
/// Checkpoint names: `layers.{i}.norm.weight` ↔ `norm.gamma`, `layers.{i}.mixer.*` ↔ `mixer.*`.
pub type MambaBlock<B> = Residual<B, Mamba<B>>;

impl<B: Backend> Residual<B, Mamba<B>> {
    /// [`Mamba::forward_padded`] wrapped in the block: padded positions (`padding` `[B, L]`
    /// `true`) return their input unchanged (the mixer outputs zero there). Same errors as
    /// [`Residual::forward_with_state`] and [`Mamba::forward_padded`].
    pub fn forward_padded(
        &self,
        x: Tensor<B, 3>,
        state: MambaState<B>,
        padding: Tensor<B, 2, Bool>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        self.check_input(&x)?;
        Ok(match self.placement {
            NormPlacement::Pre => {
                let (y, state) =
                    self.mixer
                        .forward_padded(self.norm.forward(x.clone()), state, padding)?; // [B, L, D]
                (x + y, state)
            }
            NormPlacement::Post => {
                let (y, state) = self.mixer.forward_padded(x.clone(), state, padding)?; // [B, L, D]
                (self.norm.forward(x + y), state)
            }
        })
    }
}
