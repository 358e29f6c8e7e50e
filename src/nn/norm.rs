//! The normalization of the residual blocks: RMSNorm (Mamba, LLaMA) or LayerNorm (GPT).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

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
            NormKind::Layer => Norm::Layer(
                LayerNormConfig::new(d_model)
                    .with_epsilon(epsilon)
                    .init(device),
            ),
        })
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

    /// Normalizes over the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}
