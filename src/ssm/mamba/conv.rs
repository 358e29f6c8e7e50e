//! [`CausalConv1d`]: the depthwise causal convolution of the Mamba mixer.
//!
//! Channel `e` at time `t` sees the inputs `t−K+1 ..= t` of the same channel only:
//! `out[t, e] = bias[e] + Σ_{k<K} w[e, k] · x_ext[t + k, e]`, where `x_ext` is the input with
//! `K − 1` earlier inputs prepended (zeros at the start of a sequence, or the cached window of
//! a [`MambaState`](super::MambaState)). This is PyTorch's
//! `Conv1d(E, E, K, groups=E, padding=K−1)` truncated to the first `L` outputs, i.e.
//! cross-correlation: `w[e, K−1]` multiplies the current input.
//!
//! It is computed as `K` shifted multiply-adds on the `[B, L+K−1, E]` tensor, which keeps the
//! channel axis contiguous and needs no layout change around the linear layers.
//!
//! Checkpoint names: `conv1d.weight [E, 1, K]` ↔ [`CausalConv1d::weight`] `[E, K]` (drop the
//! middle axis), `conv1d.bias [E]` ↔ [`CausalConv1d::bias`].

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::init::uniform_param;

/// Depthwise causal 1-D convolution over time (one length-`K` filter per channel).
#[derive(Module, Debug)]
pub struct CausalConv1d<B: Backend> {
    /// Filters `[E, K]`; PyTorch's default init `U(±1/sqrt(K))`.
    pub weight: Param<Tensor<B, 2>>,
    /// Per-channel bias `[E]`, `U(±1/sqrt(K))` (absent when `conv_bias = false`).
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> CausalConv1d<B> {
    /// A convolution over `channels` channels of width `kernel`, PyTorch-initialised.
    pub fn new(channels: usize, kernel: usize, bias: bool, device: &B::Device) -> Self {
        let bound = 1.0 / (kernel as f64).sqrt();
        Self {
            weight: uniform_param([channels, kernel], bound, device),
            bias: bias.then(|| uniform_param([channels], bound, device)),
        }
    }

    /// Kernel width `K`.
    pub fn kernel(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    /// Convolves a sequence whose `K − 1` previous inputs are already prepended.
    ///
    /// `x_ext: [B, K−1+L, E]` → `[B, L, E]`.
    pub fn forward(&self, x_ext: Tensor<B, 3>) -> Tensor<B, 3> {
        let k_width = self.kernel();
        let [_, len_ext, _] = x_ext.dims();
        let len = len_ext + 1 - k_width;
        let w = self.weight.val().swap_dims(0, 1); // [K, E]
        let mut acc: Option<Tensor<B, 3>> = None;
        for k in 0..k_width {
            let w_k = w.clone().narrow(0, k, 1).unsqueeze_dim::<3>(0); // [1, 1, E]
            let term = x_ext.clone().narrow(1, k, len) * w_k; // [B, L, E]
            acc = Some(match acc {
                Some(a) => a + term,
                None => term,
            });
        }
        let out = acc.expect("kernel width K >= 1 is validated by MambaConfig"); // [B, L, E]
        match &self.bias {
            Some(b) => out + b.val().unsqueeze::<3>(), // [B, L, E]
            None => out,
        }
    }

    /// One output from a full window of the last `K` inputs: `window: [B, E, K]` → `[B, E]`.
    pub fn step(&self, window: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, channels, _] = window.dims();
        let out = (window * self.weight.val().unsqueeze::<3>()) // [B, E, K]
            .sum_dim(2)
            .reshape([batch, channels]); // [B, E]
        match &self.bias {
            Some(b) => out + b.val().unsqueeze::<2>(), // [B, E]
            None => out,
        }
    }
}
