//! The normalization of the residual blocks: RMSNorm (Mamba, LLaMA) or LayerNorm (GPT).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::norm_kernel::{NormOp, normalize};

/// Which normalization a block applies before its sublayers.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) · γ` (no centering, no bias).
    Rms,
    /// `(x − mean) / std · γ + β`.
    Layer,
}

impl NormKind {
    /// Builds the norm over the last axis of width `d_model` (`γ = 1`, `β = 0`, made now).
    pub fn init<B: Backend>(self, d_model: usize, epsilon: f64, device: &B::Device) -> Norm<B> {
        crate::init::materialize(match self {
            NormKind::Rms => Norm::Rms(
                RmsNormConfig::new(d_model)
                    .with_epsilon(epsilon)
                    .init(device),
            ),
            NormKind::Layer => Norm::Layer(LayerNorm::new(d_model, epsilon, device)),
        })
    }
}

/// LayerNorm over the last axis, `(x − μ) / √(σ² + ε) · γ + β`: Burn's `LayerNorm` with the
/// same parameters and names (so checkpoints and the pretrained loaders see the same record),
/// and `ε` readable, which the crate's one-op kernel needs.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// The scale `γ`, `[D]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// The shift `β`, `[D]`.
    pub beta: Option<Param<Tensor<B, 1>>>,
    /// `ε`, added to the variance.
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// A LayerNorm of width `d_model` with `γ = 1`, `β = 0`.
    pub fn new(d_model: usize, epsilon: f64, device: &B::Device) -> Self {
        let burn_norm = LayerNormConfig::new(d_model)
            .with_epsilon(epsilon)
            .init(device);
        crate::init::materialize(LayerNorm {
            gamma: burn_norm.gamma,
            beta: burn_norm.beta,
            epsilon,
        })
    }

    /// Normalizes over the last axis (the crate's one-op kernel on the CPU backend).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        normalize(
            NormOp::Layer,
            x,
            self.gamma.val(),
            self.beta.as_ref().map(|b| b.val()),
            self.epsilon,
        )
    }
}

/// A normalization layer of either kind.
#[derive(Module, Debug)]
pub enum Norm<B: Backend> {
    /// RMSNorm.
    Rms(RmsNorm<B>),
    /// LayerNorm.
    Layer(LayerNorm<B>),
}

impl<B: Backend> Norm<B> {
    /// The width `D` it normalizes (the length of its scale `γ`).
    pub fn d_model(&self) -> usize {
        match self {
            Norm::Rms(n) => n.gamma.val().dims()[0],
            Norm::Layer(n) => n.gamma.val().dims()[0],
        }
    }

    /// Normalizes over the last axis (one op with a hand-written backward on the CPU backend:
    /// see `norm_kernel`; Burn's tensor ops elsewhere).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Norm::Rms(n) => normalize(NormOp::Rms, x, n.gamma.val(), None, n.epsilon),
            Norm::Layer(n) => n.forward(x),
        }
    }
}
