//! [`Mamba`]: the selective-SSM mixer (no norm, no residual) and its recurrent form.
//!
//! Parameter names match the reference checkpoint (`backbone.layers.{i}.mixer.*`) so a
//! safetensors loader maps them 1:1:
//!
//! | checkpoint | here | layout change |
//! |---|---|---|
//! | `in_proj.weight [2E, D]` | `in_proj.weight [D, 2E]` | transpose (Burn Linear is `[in, out]`) |
//! | `conv1d.weight [E, 1, K]` | `conv1d.weight [E, K]` | drop the middle axis |
//! | `conv1d.bias [E]` | `conv1d.bias [E]` | — |
//! | `x_proj.weight [R+2N, E]` | `x_proj.weight [E, R+2N]` | transpose |
//! | `dt_proj.weight [E, R]`, `dt_proj.bias [E]` | `dt_proj.weight [R, E]`, `dt_proj.bias [E]` | transpose weight |
//! | `A_log [E, N]` | `a_log [E, N]` | — |
//! | `D [E]` | `d [E]` | — |
//! | `out_proj.weight [D, E]` | `out_proj.weight [E, D]` | transpose |

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use super::config::{StateMatrix, StepSize};
use super::conv::CausalConv1d;
use super::cpu_conv::causal_conv_silu;
use super::padding::PaddingPlan;
use super::state::MambaState;
use crate::error::{Result, SeqError};
use crate::linear;
use crate::nn::Mixer;
use crate::nn::{silu, softplus};
use crate::ssm::discretization::Discretization;
use crate::ssm::scan::{ScanKind, SelectiveScanInput, selective_scan};

/// The Mamba mixer. Build it with [`MambaConfig::try_init`](super::MambaConfig::try_init).
#[derive(Module, Debug)]
pub struct Mamba<B: Backend> {
    /// `u [.., D]` → `[x ; z] [.., 2E]` (first half `x`, second half the gate `z`).
    pub in_proj: Linear<B>,
    /// Depthwise causal convolution over `x`.
    pub conv1d: CausalConv1d<B>,
    /// `x [.., E]` → `[δ ; B ; C] [.., R + 2N]`.
    pub x_proj: Linear<B>,
    /// `δ [.., R]` → pre-softplus Δ `[.., E]` (bias = inverse-softplus Δ init).
    pub dt_proj: Linear<B>,
    /// `A_log [E, N]`; `A = −exp(A_log)` (with [`StateMatrix::FixedNegIdentity`]: zeros, not
    /// trainable and not read, `A = −1`).
    pub a_log: Param<Tensor<B, 2>>,
    /// Skip `D [E]`.
    pub d: Param<Tensor<B, 1>>,
    /// `[.., E]` → `[.., D]`.
    pub out_proj: Linear<B>,
    pub(crate) d_model: usize,
    pub(crate) d_inner: usize,
    pub(crate) d_state: usize,
    pub(crate) d_conv: usize,
    pub(crate) dt_rank: usize,
    pub(crate) scan: ScanKind,
    pub(crate) discretization: Discretization,
    pub(crate) state_matrix: StateMatrix,
    pub(crate) step_size: StepSize,
}

impl<B: Backend> Mamba<B> {
    /// Model width `D`.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Inner width `E`.
    pub fn d_inner(&self) -> usize {
        self.d_inner
    }

    /// State size `N`.
    pub fn d_state(&self) -> usize {
        self.d_state
    }

    /// Convolution width `K`.
    pub fn d_conv(&self) -> usize {
        self.d_conv
    }

    /// Δ-projection rank `R`.
    pub fn dt_rank(&self) -> usize {
        self.dt_rank
    }

    /// The scan implementation used by [`Mamba::forward`].
    pub fn scan(&self) -> ScanKind {
        self.scan
    }

    /// The discretization used everywhere.
    pub fn discretization(&self) -> Discretization {
        self.discretization
    }

    /// How `A` is made: learned or fixed to `−I`.
    pub fn state_matrix(&self) -> StateMatrix {
        self.state_matrix
    }

    /// How `Δ` is made: selective or constant.
    pub fn step_size(&self) -> StepSize {
        self.step_size
    }

    /// The same mixer running another scan implementation (weights shared).
    pub fn with_scan(mut self, scan: ScanKind) -> Self {
        self.scan = scan;
        self
    }

    /// The state before the first token for a batch of `batch` sequences (zeros).
    pub fn init_state(&self, batch: usize, device: &B::Device) -> MambaState<B> {
        MambaState::zeros(batch, self.d_inner, self.d_conv, self.d_state, device)
    }

    /// `in_proj` as two products with the column halves of its weight
    /// ([`linear::apply_columns`]): `u [B, L, D]` → `(x, z)`, each `[B, L, E]`.
    fn in_proj_split(&self, u: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let e = self.d_inner;
        (
            linear::apply_columns(&self.in_proj, u.clone(), 0, e), // x [B, L, E]
            linear::apply_columns(&self.in_proj, u, e, e),         // z [B, L, E]
        )
    }

    /// `A = −exp(A_log)`, `[E, N]`; with [`StateMatrix::FixedNegIdentity`] the constant `−1`
    /// (no graph to `a_log`, so it gets no gradient).
    fn a(&self) -> Tensor<B, 2> {
        match self.state_matrix {
            StateMatrix::Learned => self.a_log.val().exp().neg(), // [E, N]
            StateMatrix::FixedNegIdentity => {
                Tensor::ones([self.d_inner, self.d_state], &self.a_log.device()).neg() // [E, N]
            }
        }
    }

    /// `Δ` for the conv output `xc` `[B, L, E]`: `softplus(dt_proj(δ))` with `δ` the first `R`
    /// columns of `x_proj(xc)`, or the constant of [`StepSize::Constant`].
    fn delta(&self, xc: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.step_size {
            StepSize::Selective => {
                let dt_low = linear::apply_columns(&self.x_proj, xc, 0, self.dt_rank); // [B, L, R]
                softplus(linear::apply(&self.dt_proj, dt_low)) // [B, L, E]
            }
            StepSize::Constant { value } => {
                let [batch, len, e] = xc.dims();
                Tensor::full([batch, len, e], value, &xc.device()) // [B, L, E]
            }
        }
    }
}

impl<B: Backend> Mamba<B> {
    /// Runs the mixer on a whole sequence from the zero state: `[B, L, D]` → `[B, L, D]`.
    ///
    /// # Panics
    /// If `x` is not `[B, L, d_model]` with `B, L > 0` (use [`Mamba::try_forward`] or
    /// [`Mamba::forward_with_state`] for a `Result`).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.run(x, None, None) {
            Ok((y, _)) => y,
            Err(e) => panic!("Mamba::forward: {e}"),
        }
    }

    /// [`Mamba::forward`] returning an error instead of panicking: [`SeqError::ZeroSize`] on a
    /// batch or length of 0 (there is no empty result), [`SeqError::ShapeMismatch`] when the
    /// last axis is not `d_model`. Non-finite inputs propagate (see
    /// [`Mamba::forward_with_state`]).
    pub fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        Ok(self.run(x, None, None)?.0)
    }

    /// Runs the mixer on `x: [B, L, D]` starting from `state` (from [`Mamba::init_state`] or an
    /// earlier call). Returns the output `[B, L, D]` and the state after the last token, so
    /// that `forward(x[..a])` then `forward(x[a..])` from the returned state equals
    /// `forward(x)`: the crate's state convention (see [`Residual`](crate::nn::Residual)).
    ///
    /// # Errors
    /// - [`SeqError::ZeroSize`] when `B` or `L` is 0 (an empty batch or sequence is rejected,
    ///   not returned empty: there would be no state to return);
    /// - [`SeqError::ShapeMismatch`] when the last axis of `x` is not `d_model`, when `state`
    ///   was made for another batch size or mixer, or when `padding` is not `[B, L]`.
    ///
    /// # Non-finite values
    /// Not checked (that would need a read-back of `x`): a NaN or ±∞ in `x`, even at a padded
    /// position, propagates through the recurrence to the outputs and the state of its batch
    /// row from that position on. Other rows are unaffected. Use
    /// [`ensure_finite`](crate::error::ensure_finite) first for a typed error.
    pub fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: MambaState<B>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        self.run(x, Some(state), None)
    }

    /// [`forward_with_state`](Self::forward_with_state) treating positions where `padding`
    /// `[B, L]` is `true` as padding (identity steps, zero output; the crate's one padding
    /// convention, the same as attention's key padding mask): the returned state is the one
    /// after the last real token. Same errors, and a mask that is not `[B, L]` is a
    /// [`SeqError::ShapeMismatch`].
    pub fn forward_padded(
        &self,
        x: Tensor<B, 3>,
        state: MambaState<B>,
        padding: Tensor<B, 2, Bool>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        self.run(x, Some(state), Some(padding))
    }

    /// The whole forward: from `state` (zeros when `None`), with optional padding.
    fn run(
        &self,
        x: Tensor<B, 3>,
        state: Option<MambaState<B>>,
        padding: Option<Tensor<B, 2, Bool>>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        let [batch, len, d_model] = x.dims();
        self.check_input(batch, len, d_model)?;
        let (e, n, k, r) = (self.d_inner, self.d_state, self.d_conv, self.dt_rank);
        let device = x.device();
        if let Some(s) = &state {
            s.check(batch, e, k, n)?;
        }
        let plan = match padding {
            Some(m) => {
                crate::error::ensure_shape("padding mask [B, L]", &[batch, len], &m.dims())?;
                Some(PaddingPlan::new(m))
            }
            None => None,
        };
        let (conv_prev, h0) = match state {
            Some(s) => (s.conv.swap_dims(1, 2), Some(s.ssm)), // [B, K-1, E], [B, E, N]
            None => (Tensor::zeros([batch, k - 1, e], &device), None),
        };

        let (xs, z) = self.in_proj_split(x); // [B, L, E] each

        // Depthwise causal convolution over [previous K-1 inputs ; this chunk].
        let xs = match &plan {
            Some(p) => p.to_real_first(xs),
            None => xs,
        }; // [B, L, E]
        let x_ext = if k > 1 {
            Tensor::cat(vec![conv_prev, xs], 1) // [B, K-1+L, E]
        } else {
            xs
        };
        let conv_next = match &plan {
            _ if k == 1 => Tensor::zeros([batch, e, 0], &device), // no window to keep
            Some(p) => p.last_window(x_ext.clone(), k - 1).swap_dims(1, 2),
            None => x_ext.clone().narrow(1, len, k - 1).swap_dims(1, 2),
        }; // [B, E, K-1]
        let xc = causal_conv_silu(&self.conv1d, x_ext); // silu(conv(x)) [B, L, E]
        let xc = match &plan {
            Some(p) => p.back_to_time_order(xc),
            None => xc,
        }; // [B, L, E]

        // Input-dependent Δ, B, C.
        // `x_proj` [D_in = E, R+2N] in three column blocks (see `linear::apply_columns`).
        let b = linear::apply_columns(&self.x_proj, xc.clone(), r, n); // [B, L, N]
        let c = linear::apply_columns(&self.x_proj, xc.clone(), r + n, n); // [B, L, N]
        let mut delta = self.delta(xc.clone()); // [B, L, E]
        if let Some(p) = &plan {
            delta = delta * p.mask_bl1(); // padded: Δ = 0 → Ā = 1, B̄ = 0
        }

        let (y, h_last) = selective_scan(
            self.scan,
            self.discretization,
            SelectiveScanInput {
                x: xc,
                delta,
                a: self.a(),
                b,
                c,
                d: Some(self.d.val()),
                h0,
            },
        )?; // [B, L, E], [B, E, N]

        let mut out = linear::apply(&self.out_proj, y * silu(z)); // [B, L, D]
        if let Some(p) = &plan {
            out = out * p.mask_bl1(); // [B, L, D]
        }
        Ok((
            out,
            MambaState {
                conv: conv_next,
                ssm: h_last,
            },
        ))
    }

    /// The step sizes `Δ` `[B, L, E]` the mixer computes for `x` `[B, L, D]` from the zero
    /// state (what it writes into its state at each position; for plots), with `A` `[E, N]`.
    /// `Ā = exp(ΔA)` (or the configured discretization's `Ā`) is how much of the state
    /// survives a step.
    pub fn selectivity(&self, x: Tensor<B, 3>) -> Result<(Tensor<B, 3>, Tensor<B, 2>)> {
        let [batch, len, d_model] = x.dims();
        self.check_input(batch, len, d_model)?;
        let (e, k) = (self.d_inner, self.d_conv);
        let (xs, _) = self.in_proj_split(x); // [B, L, E]
        let x_ext = if k > 1 {
            Tensor::cat(vec![Tensor::zeros([batch, k - 1, e], &xs.device()), xs], 1) // [B, K-1+L, E]
        } else {
            xs
        };
        let xc = causal_conv_silu(&self.conv1d, x_ext); // [B, L, E]
        Ok((self.delta(xc), self.a())) // [B, L, E], [E, N]
    }

    /// One token of recurrent inference: `x_t: [B, D]` → `([B, D], next state)`. Errors when
    /// `x_t` or `state` do not match the mixer's sizes.
    ///
    /// Written with plain tensor ops (no scan): `h ← Ā ⊙ h + B̄ x`, `y = h·C + D x`, using
    /// [`Discretization::tensors`] for `(Ā, B̄)`.
    pub fn step(
        &self,
        x_t: Tensor<B, 2>,
        state: MambaState<B>,
    ) -> Result<(Tensor<B, 2>, MambaState<B>)> {
        let [batch, d_model] = x_t.dims();
        self.check_input(batch, 1, d_model)?;
        let (e, n, k, r) = (self.d_inner, self.d_state, self.d_conv, self.dt_rank);
        state.check(batch, e, k, n)?;

        let xz = self.in_proj.forward(x_t); // [B, 2E]
        let xs = xz.clone().narrow(1, 0, e); // [B, E]
        let z = xz.narrow(1, e, e); // [B, E]

        let (window, conv_next) = if k > 1 {
            let window = Tensor::cat(vec![state.conv, xs.unsqueeze_dim(2)], 2); // [B, E, K]
            let next = window.clone().narrow(2, 1, k - 1); // [B, E, K-1]
            (window, next)
        } else {
            (xs.unsqueeze_dim(2), state.conv) // [B, E, 1], [B, E, 0]
        };
        let xc = silu(self.conv1d.step(window)); // [B, E]

        let proj = self.x_proj.forward(xc.clone()); // [B, R+2N]
        let b = proj.clone().narrow(1, r, n); // [B, N]
        let c = proj.clone().narrow(1, r + n, n); // [B, N]
        let delta = match self.step_size {
            StepSize::Selective => {
                let dt_low = proj.narrow(1, 0, r); // [B, R]
                softplus(self.dt_proj.forward(dt_low)) // [B, E]
            }
            StepSize::Constant { value } => Tensor::full([batch, e], value, &xc.device()), // [B, E]
        };

        let (a_bar, b_fac) = self
            .discretization
            .tensors(delta.unsqueeze_dim::<3>(1), self.a()); // [B, 1, E, N] each
        let a_bar = a_bar.reshape([batch, e, n]); // [B, E, N]
        let b_fac = b_fac.reshape([batch, e, n]); // [B, E, N]
        let h =
            a_bar * state.ssm + b_fac * b.unsqueeze_dim::<3>(1) * xc.clone().unsqueeze_dim::<3>(2); // [B, E, N]
        let y = (h.clone() * c.unsqueeze_dim::<3>(1))
            .sum_dim(2)
            .reshape([batch, e]) // [B, E]
            + xc * self.d.val().unsqueeze::<2>(); // [B, E]
        let out = self.out_proj.forward(y * silu(z)); // [B, D]
        Ok((
            out,
            MambaState {
                conv: conv_next,
                ssm: h,
            },
        ))
    }

    /// Errors unless `batch, len > 0` and `d_model` is the mixer's width.
    pub(crate) fn check_input(&self, batch: usize, len: usize, d_model: usize) -> Result<()> {
        crate::error::ensure_nonzero("batch size", batch)?;
        crate::error::ensure_nonzero("sequence length", len)?;
        if d_model != self.d_model {
            return Err(SeqError::ShapeMismatch {
                what: "Mamba input features (d_model)",
                expected: self.d_model.to_string(),
                got: d_model.to_string(),
            });
        }
        Ok(())
    }
}

impl<B: Backend> Mixer<B> for Mamba<B> {
    type State = MambaState<B>;

    fn d_model(&self) -> usize {
        self.d_model
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        Mamba::forward(self, x)
    }

    fn try_forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        Mamba::try_forward(self, x)
    }

    fn init_state(&self, batch: usize, device: &B::Device) -> MambaState<B> {
        Mamba::init_state(self, batch, device)
    }

    fn forward_with_state(
        &self,
        x: Tensor<B, 3>,
        state: MambaState<B>,
    ) -> Result<(Tensor<B, 3>, MambaState<B>)> {
        Mamba::forward_with_state(self, x, state)
    }

    /// The recurrent step of [`Mamba::step`] (tensor ops, no scan).
    fn step(
        &self,
        x_t: Tensor<B, 2>,
        state: MambaState<B>,
    ) -> Result<(Tensor<B, 2>, MambaState<B>)> {
        Mamba::step(self, x_t, state)
    }
}
