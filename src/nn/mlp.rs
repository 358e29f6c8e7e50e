//! The position-wise MLP sublayer of a transformer block: `W₂ · GELU(W₁ x + b₁) + b₂`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Mixer, Residual, gelu};
use crate::error::{SeqError, ensure_nonzero, ensure_shape};
use crate::init::materialize;
use crate::linear;

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Model width `D` (input and output).
    pub d_model: usize,
    /// Hidden width (GPT uses `4 D`).
    pub d_hidden: usize,
    /// Dropout on the output (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl MlpConfig {
    /// Like [`try_init`](Self::try_init) but panics with the validation message; for
    /// configurations known to be valid.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) returns an error.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid MlpConfig: {e}"))
    }

    /// Validates the sizes and builds the sublayer, drawing every weight now.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<Mlp<B>> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("MLP hidden width", self.d_hidden)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SeqError::OutOfRange {
                name: "dropout",
                value: self.dropout,
                expected: "a probability in [0, 1)",
            });
        }
        let mlp = Mlp {
            up: LinearConfig::new(self.d_model, self.d_hidden).init(device),
            down: LinearConfig::new(self.d_hidden, self.d_model).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        };
        Ok(materialize(mlp))
    }
}

/// Position-wise feed-forward sublayer `[B, L, D] → [B, L, D]` (GELU, exact erf form, with its
/// exact derivative: [`gelu`]).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `W₁`, `[D, D_hidden]`.
    pub up: Linear<B>,
    /// `W₂`, `[D_hidden, D]`.
    pub down: Linear<B>,
    /// Output dropout (identity at inference).
    pub dropout: Dropout,
}

impl<B: Backend> Mlp<B> {
    /// `W₂ GELU(W₁ x + b₁) + b₂`, for any rank (the last axis is `D`).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let h = gelu(linear::apply(&self.up, x)); // [..., D_hidden]
        self.dropout.forward(linear::apply(&self.down, h)) // [..., D]
    }
}

/// The MLP sublayer of a block: `x + mlp(norm(x))`.
pub type MlpBlock<B> = Residual<B, Mlp<B>>;

impl<B: Backend> Mlp<B> {
    /// The width `D` of the input and output.
    pub fn d_model(&self) -> usize {
        self.up.weight.dims()[0]
    }
}

/// Position-wise: no state (`()`), and a chunk's output does not depend on earlier chunks.
impl<B: Backend> Mixer<B> for Mlp<B> {
    type State = ();

    fn d_model(&self) -> usize {
        Mlp::d_model(self)
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        Mlp::forward(self, x)
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        let [batch, len, d] = x.dims();
        ensure_shape(
            "MLP input [B, L, D]",
            &[batch, len, Mlp::d_model(self)],
            &[batch, len, d],
        )?;
        Ok(Mlp::forward(self, x))
    }

    fn init_state(&self, _batch: usize, _device: &B::Device) -> Self::State {}

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: Self::State,
    ) -> crate::Result<(Tensor<B, 3>, Self::State)> {
        Ok((Mixer::try_forward(self, x)?, state))
    }
}
