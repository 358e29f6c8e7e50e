//! The fused LSTM: Burn's [`Lstm`] parameters, run as one input projection and one recurrence
//! op. On the CPU backend the recurrence is a Rust kernel with a hand-written backward through
//! time (one autodiff node instead of ~20 tracked ops per token); every other backend runs it
//! in tensor ops.
//!
//! # Glossary
//! - `B` batch, `L` length, `D` input width, `H` hidden width.
//! - Gates packed as `[i, f, g, o]` along the last axis (`4H`): input, forget, cell candidate,
//!   output — Burn's four [`GateController`](burn::nn::GateController)s side by side.
//! - `W_x` `[D, 4H]`, `W_h` `[H, 4H]`, `b` `[4H]` (Burn's input and hidden biases summed).
//! - `xw = x W_x + b` `[B, L, 4H]`; `z_t = xw_t + h_{t−1} W_h`;
//!   `i, f, o = σ(z)`, `g = tanh(z)`; `c_t = f ⊙ c_{t−1} + i ⊙ g`; `h_t = o ⊙ tanh(c_t)`.
//!
//! [`lstm_forward`] equals [`Lstm::forward`] in value and gradient (tested to 1e-5) for the
//! configuration the stack builds (batch first, forward direction, no clipping, no coupled
//! forget gate, sigmoid/tanh activations); any other configuration is passed to
//! [`Lstm::forward`] unchanged.

mod autodiff;
mod kernel;
pub(crate) mod recurrence;

use burn::nn::activation::Activation;
use burn::nn::{Lstm, LstmState};
use burn::tensor::{Tensor, backend::Backend};

use crate::error::{Result, SeqError, ensure_nonzero, ensure_shape};
use crate::init::materialize;
use crate::nn::{Mixer, Norm, NormPlacement, Residual};
use recurrence::lstm_recurrence;

/// Runs `lstm` over `x` `[B, L, D]` from `state` (zeros when `None`), like [`Lstm::forward`]:
/// returns every hidden state `[B, L, H]` and the last `(cell, hidden)` state `[B, H]` each.
///
/// ```
/// use seqlayers::backend::{Cpu, CpuDevice};
/// use seqlayers::burn::nn::LstmConfig;
/// use seqlayers::burn::tensor::{Distribution, Tensor};
///
/// let device = CpuDevice::default();
/// let lstm = LstmConfig::new(8, 16, true).init::<Cpu>(&device);
/// let x = Tensor::<Cpu, 3>::random([2, 5, 8], Distribution::Default, &device); // [B, L, D]
/// let (h, state) = seqlayers::lstm::lstm_forward(&lstm, x.clone(), None);
/// let (h_ref, _) = lstm.forward(x, None);
/// assert_eq!(h.dims(), [2, 5, 16]);
/// assert_eq!(state.hidden.dims(), [2, 16]);
/// assert!(h.sub(h_ref).abs().max().into_scalar() < 1e-5);
/// ```
///
/// # Panics
/// When `x` or `state` do not fit `lstm` (see [`try_lstm_forward`] for a `Result` and the
/// empty-input and non-finite rules).
pub fn lstm_forward<B: Backend>(
    lstm: &Lstm<B>,
    x: Tensor<B, 3>,
    state: Option<LstmState<B, 2>>,
) -> (Tensor<B, 3>, LstmState<B, 2>) {
    if !fusable(lstm) || x.dims()[1] == 0 {
        return lstm.forward(x, state);
    }
    let [bs, l, _] = x.dims();
    let (w_x, bias, w_h) = packed_weights(lstm); // [D, 4H], [4H], [H, 4H]
    let mut xw = crate::linear::matmul_tokens(x, w_x); // [B, L, 4H]
    if let Some(bias) = bias {
        xw = xw + bias.unsqueeze::<3>();
    }
    let (c0, h0) = match state {
        Some(s) => (Some(s.cell), Some(s.hidden)),
        None => (None, None),
    };
    let (h, c_last) = lstm_recurrence(xw, w_h, h0, c0); // [B, L, H], [B, H]
    let hd = lstm.d_hidden;
    let h_last = h.clone().narrow(1, l - 1, 1).reshape([bs, hd]); // [B, H]
    (h, LstmState::new(c_last, h_last))
}

/// [`lstm_forward`] after checking its inputs (O(1) shape checks, no read-back).
///
/// - `x` `[B, L, D]` (`[L, B, D]` when not batch-first) with `D` the LSTM's input width, else
///   [`SeqError::ShapeMismatch`];
/// - `B = 0`: [`SeqError::ZeroSize`];
/// - `L = 0`: a correct empty result, hidden states `[B, 0, H]` and `state` returned unchanged
///   (zeros when `None`): no step ran;
/// - `state` cell and hidden each `[B, H]`, else [`SeqError::ShapeMismatch`].
///
/// Non-finite inputs are not checked: a NaN or ±∞ in `x` or `state` propagates to the hidden
/// states of its batch row from that step on (other rows are unaffected). Use
/// [`ensure_finite`](crate::error::ensure_finite) first for a typed error.
pub fn try_lstm_forward<B: Backend>(
    lstm: &Lstm<B>,
    x: Tensor<B, 3>,
    state: Option<LstmState<B, 2>>,
) -> Result<(Tensor<B, 3>, LstmState<B, 2>)> {
    let [first, second, d] = x.dims();
    let bs = if lstm.batch_first { first } else { second };
    ensure_nonzero("batch size", bs)?;
    let d_input = lstm.input_gate.input_transform.weight.val().dims()[0]; // W_x [D, H]
    if d != d_input {
        return Err(SeqError::ShapeMismatch {
            what: "LSTM input features (d_input)",
            expected: d_input.to_string(),
            got: d.to_string(),
        });
    }
    if let Some(s) = &state {
        check_state(bs, lstm.d_hidden, &s.cell, &s.hidden)?;
    }
    Ok(lstm_forward(lstm, x, state))
}

/// Errors unless `cell` and `hidden` are both `[batch, d_hidden]`.
pub(crate) fn check_state<B: Backend>(
    batch: usize,
    d_hidden: usize,
    cell: &Tensor<B, 2>,
    hidden: &Tensor<B, 2>,
) -> Result<()> {
    for (what, t) in [
        ("LSTM cell state [B, H]", cell),
        ("LSTM hidden state [B, H]", hidden),
    ] {
        ensure_shape(what, &[batch, d_hidden], &t.dims())?;
    }
    Ok(())
}

/// True when `lstm` is the standard configuration the fused op computes.
fn fusable<B: Backend>(lstm: &Lstm<B>) -> bool {
    lstm.batch_first
        && !lstm.reverse
        && lstm.clip.is_none()
        && !lstm.input_forget
        && matches!(lstm.gate_activation, Activation::Sigmoid(_))
        && matches!(lstm.cell_activation, Activation::Tanh(_))
        && matches!(lstm.hidden_activation, Activation::Tanh(_))
}

/// `W_x` `[D, 4H]`, `b` `[4H]` (if any) and `W_h` `[H, 4H]` with gates in the order `i, f, g, o`.
fn packed_weights<B: Backend>(
    lstm: &Lstm<B>,
) -> (Tensor<B, 2>, Option<Tensor<B, 1>>, Tensor<B, 2>) {
    let gates = [
        &lstm.input_gate,
        &lstm.forget_gate,
        &lstm.cell_gate,
        &lstm.output_gate,
    ];
    let w_x = Tensor::cat(
        gates
            .iter()
            .map(|g| g.input_transform.weight.val())
            .collect(),
        1,
    ); // [D, 4H]
    let w_h = Tensor::cat(
        gates
            .iter()
            .map(|g| g.hidden_transform.weight.val())
            .collect(),
        1,
    ); // [H, 4H]
    let biases: Option<Vec<Tensor<B, 1>>> = gates
        .iter()
        .map(|g| {
            match (&g.input_transform.bias, &g.hidden_transform.bias) {
                (Some(a), Some(b)) => Some(a.val() + b.val()),
                (Some(a), None) | (None, Some(a)) => Some(a.val()),
                (None, None) => None,
            } // [H]
        })
        .collect();
    (w_x, biases.map(|b| Tensor::cat(b, 0)), w_h)
}

/// The state an LSTM carries between decoding calls: cell `c` and hidden `h`, each `[B, H]`
/// (zeros before the first token).
#[derive(Debug, Clone)]
pub struct LstmCarry<B: Backend> {
    /// Cell state `c` `[B, H]`.
    pub cell: Tensor<B, 2>,
    /// Hidden state `h` `[B, H]`.
    pub hidden: Tensor<B, 2>,
}

/// A residual LSTM block: the crate's one [`Residual`] block around Burn's [`Lstm`] (run by
/// the fused kernel of this module), `x + lstm(norm(x))`. Its hidden size is the model width.
pub type LstmBlock<B> = Residual<B, Lstm<B>>;

/// Builds a pre-norm [`LstmBlock`] of width `d_model` with `norm` (biases on, Burn's default
/// initialization drawn now).
pub(crate) fn init_block<B: Backend>(
    norm: Norm<B>,
    d_model: usize,
    device: &B::Device,
) -> LstmBlock<B> {
    let lstm = materialize(burn::nn::LstmConfig::new(d_model, d_model, true).init(device));
    Residual::new(norm, lstm, NormPlacement::Pre)
}

/// Burn's LSTM as a sequence mixer, through [`lstm_forward`] (the fused kernel where it
/// applies). As a [`Residual`] mixer its input and hidden widths must both be `D`.
impl<B: Backend> Mixer<B> for Lstm<B> {
    type State = LstmCarry<B>;

    /// The input width `D`.
    fn d_model(&self) -> usize {
        self.input_gate.input_transform.weight.val().dims()[0] // W_x [D, H]
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        lstm_forward(self, x, None).0
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        Ok(try_lstm_forward(self, x, None)?.0)
    }

    fn init_state(&self, batch: usize, device: &B::Device) -> LstmCarry<B> {
        LstmCarry {
            cell: Tensor::zeros([batch, self.d_hidden], device),
            hidden: Tensor::zeros([batch, self.d_hidden], device),
        }
    }

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: LstmCarry<B>,
    ) -> Result<(Tensor<B, 3>, LstmCarry<B>)> {
        let state = LstmState::new(state.cell, state.hidden);
        let (h, s) = try_lstm_forward(self, x, Some(state))?; // [B, T, H]
        Ok((
            h,
            LstmCarry {
                cell: s.cell,
                hidden: s.hidden,
            },
        ))
    }
}
