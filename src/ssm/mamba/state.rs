//! [`MambaState`]: everything the mixer must remember between two calls.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{Result, ensure_shape};

/// Recurrent state of one [`Mamba`](super::Mamba) mixer.
///
/// - `conv`: the last `K − 1` **pre-convolution** inputs `x` (after `in_proj`, before the
///   convolution), oldest first, `[B, E, K−1]`. The reference caches `K` inputs and shifts
///   before use; the oldest of those is never read again, so `K − 1` is all that matters.
/// - `ssm`: the SSM state `h`, `[B, E, N]`.
///
/// The all-zero state is the state before the first token, so starting from
/// [`MambaState::zeros`] is the same as passing no state.
#[derive(Debug, Clone)]
pub struct MambaState<B: Backend> {
    /// Convolution window `[B, E, K−1]` (oldest input first).
    pub conv: Tensor<B, 3>,
    /// SSM state `h` `[B, E, N]`.
    pub ssm: Tensor<B, 3>,
}

impl<B: Backend> MambaState<B> {
    /// The state before the first token.
    pub fn zeros(
        batch: usize,
        d_inner: usize,
        d_conv: usize,
        d_state: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            conv: Tensor::zeros([batch, d_inner, d_conv.saturating_sub(1)], device), // [B, E, K-1]
            ssm: Tensor::zeros([batch, d_inner, d_state], device),                   // [B, E, N]
        }
    }

    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.ssm.dims()[0]
    }

    /// The same state cut off from the autodiff graph (truncated backpropagation).
    pub fn detach(self) -> Self {
        Self {
            conv: self.conv.detach(),
            ssm: self.ssm.detach(),
        }
    }

    /// Checks the shapes against a mixer with the given sizes and batch.
    pub fn check(&self, batch: usize, d_inner: usize, d_conv: usize, d_state: usize) -> Result<()> {
        let want_conv = [batch, d_inner, d_conv.saturating_sub(1)];
        let want_ssm = [batch, d_inner, d_state];
        ensure_shape(
            "MambaState::conv [B, E, K-1]",
            &want_conv,
            &self.conv.dims(),
        )?;
        ensure_shape("MambaState::ssm [B, E, N]", &want_ssm, &self.ssm.dims())
    }
}
