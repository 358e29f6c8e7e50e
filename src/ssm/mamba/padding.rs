//! Padding masks: how padded positions become identity steps of the mixer.
//!
//! A mask `[B, L]` (`true` = real token) must leave the outputs at real positions and the final
//! [`MambaState`](super::MambaState) exactly as if the padded positions were not there. Two
//! parts of the mixer carry information across time:
//!
//! 1. **The SSM recurrence.** Setting `Δ = 0` at a padded position gives `Ā = 1, B̄ = 0` in every
//!    [`Discretization`](crate::ssm::discretization::Discretization) (ZOH: `exp(0) = 1`,
//!    `(exp(0)−1)/A = 0`; simplified: `B̄ = 0·B`; generalized: `(1+0)/(1−0) = 1`, `0/(1−0) = 0`),
//!    so `h_t = h_{t−1}`: the mixer multiplies Δ by the mask.
//! 2. **The convolution window.** A real token must see the previous `K − 1` *real* inputs. The
//!    mixer therefore reorders every sequence so its real tokens come first (in order) and the
//!    padded ones last ([`PaddingPlan::to_real_first`]), convolves, and puts the outputs back
//!    ([`PaddingPlan::back_to_time_order`]). This handles left, right and interior padding alike,
//!    and the final conv window is the last `K − 1` real inputs ([`PaddingPlan::last_window`]).
//!
//! Outputs at padded positions are set to zero.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

/// Index tensors derived once from a padding mask and reused by the mixer.
#[derive(Debug, Clone)]
pub struct PaddingPlan<B: Backend> {
    /// `perm[b, i]` = original position of the `i`-th element in real-first order `[B, L]`.
    perm: Tensor<B, 2, Int>,
    /// Inverse permutation `[B, L]`: real-first index of original position `t`.
    inverse: Tensor<B, 2, Int>,
    /// Number of real tokens per sequence `[B]`.
    n_real: Tensor<B, 1, Int>,
    /// `1` at real tokens, `0` at padding, `[B, L]`.
    pub mask: Tensor<B, 2>,
}

impl<B: Backend> PaddingPlan<B> {
    /// Builds the plan from a `[B, L]` padding mask (`true` = padding, the crate's convention).
    pub fn new(padding: Tensor<B, 2, Bool>) -> Self {
        let [batch, len] = padding.dims();
        let device = padding.device();
        let positions = Tensor::<B, 1, Int>::arange(0..len as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, len]); // [B, L]
        let pad = padding.clone().int(); // [B, L]
        // Real tokens keep key t, padded ones get t + L: sorting puts real first, in order.
        let key = positions + pad.clone() * (len as i64); // [B, L]
        let perm = key.argsort(1); // [B, L]
        let inverse = perm.clone().argsort(1); // [B, L]
        let n_real = pad.sum_dim(1).reshape([batch]).neg() + len as i64; // [B]
        Self {
            perm,
            inverse,
            n_real,
            mask: padding.bool_not().float(),
        }
    }

    /// Reorders `x: [B, L, E]` so that each sequence's real tokens come first.
    pub fn to_real_first(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        gather_time(x, self.perm.clone())
    }

    /// Undoes [`PaddingPlan::to_real_first`] on `x: [B, L, E]`.
    pub fn back_to_time_order(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        gather_time(x, self.inverse.clone())
    }

    /// The last `width` real inputs of a real-first sequence with `width` earlier inputs
    /// prepended: `x_ext: [B, width+L, E]` → `[B, width, E]` (oldest first).
    ///
    /// Real token `i` sits at `width + i`, so the window is `n_real .. n_real + width`.
    pub fn last_window(&self, x_ext: Tensor<B, 3>, width: usize) -> Tensor<B, 3> {
        let [batch, _, channels] = x_ext.dims();
        let device = x_ext.device();
        let offsets = Tensor::<B, 1, Int>::arange(0..width as i64, &device).unsqueeze::<2>(); // [1, W]
        let idx = self.n_real.clone().unsqueeze_dim::<2>(1) + offsets; // [B, W]
        let idx = idx.unsqueeze_dim::<3>(2).expand([batch, width, channels]); // [B, W, E]
        x_ext.gather(1, idx) // [B, W, E]
    }

    /// The mask broadcast over channels, `[B, L, 1]`.
    pub fn mask_bl1(&self) -> Tensor<B, 3> {
        self.mask.clone().unsqueeze_dim(2)
    }
}

/// `out[b, i, e] = x[b, idx[b, i], e]` for `x: [B, L, E]`, `idx: [B, L]`.
fn gather_time<B: Backend>(x: Tensor<B, 3>, idx: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let [batch, len, channels] = x.dims();
    let idx = idx.unsqueeze_dim::<3>(2).expand([batch, len, channels]); // [B, L, E]
    x.gather(1, idx) // [B, L, E]
}
