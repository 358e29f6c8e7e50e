//! [`MambaConfig`]: every option of the Mamba mixer/block, its validation and `try_init`.

use burn::config::Config;
use burn::tensor::backend::Backend;

use super::block::MambaBlock;
use super::conv::CausalConv1d;
use super::init;
use super::mixer::Mamba;
use crate::error::{SeqError, ensure_nonzero, ensure_positive};
use crate::init::materialize;
use crate::nn::{NormKind, NormPlacement, Residual};
use crate::ssm::discretization::Discretization;
use crate::ssm::scan::ScanKind;

/// How a [`Mamba`] mixer gets its diagonal state matrix `A` `[E, N]`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum StateMatrix {
    /// `A = −exp(A_log)`, `A_log` trained from the S4D-real init (`A = −(1, 2, …, N)` in every
    /// channel): the reference Mamba.
    Learned,
    /// `A = −I`: `A = −1` for every channel and state, never trained. `a_log` is kept (zeros,
    /// not trainable) so that checkpoints have the same tensors; the mixer does not read it.
    /// With `Ā = exp(ΔA)` the state keeps `exp(−Σ Δ)` of an input: the step sizes alone decide
    /// what is remembered.
    FixedNegIdentity,
}

impl StateMatrix {
    /// Short name for tables and flags: `learned`, `fixed-identity`.
    pub fn name(&self) -> &'static str {
        match self {
            StateMatrix::Learned => "learned",
            StateMatrix::FixedNegIdentity => "fixed-identity",
        }
    }
}

/// How a [`Mamba`] mixer gets its step sizes `Δ` `[B, L, E]`.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum StepSize {
    /// The selective `Δ = softplus(dt_proj(δ))` of the input: the reference Mamba.
    Selective,
    /// The same `Δ = value` for every token, channel and input (an LTI step size, no
    /// selectivity in `Δ`). `dt_proj` is kept (same checkpoint tensors) but unused and not
    /// trainable; the `δ` columns of `x_proj` are unused (zero gradient).
    Constant {
        /// The step size, finite and `> 0`.
        value: f64,
    },
}

impl StepSize {
    /// Short name for tables and flags: `learned` (selective) or `constant:<value>`.
    pub fn name(&self) -> String {
        match self {
            StepSize::Selective => "learned".to_string(),
            StepSize::Constant { value } => format!("constant:{value}"),
        }
    }

    /// Errors unless a constant step size is finite and `> 0`.
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            StepSize::Selective => Ok(()),
            StepSize::Constant { value } => ensure_positive("step_size constant Δ", value),
        }
    }
}

/// Configuration of a [`Mamba`] mixer and of a [`MambaBlock`].
///
/// Defaults follow the reference implementation (`mamba_simple.py`): `d_state = 16`,
/// `d_conv = 4`, `expand = 2`, `dt_rank = ceil(d_model / 16)`, `dt_min = 0.001`,
/// `dt_max = 0.1`, `dt_init_floor = 1e-4`, `dt_scale = 1`, convolution bias on, projection
/// bias off, the fused scan and Mamba's simplified discretization (`Ā = exp(ΔA)`, `B̄ = ΔB`).
#[derive(Config, Debug)]
pub struct MambaConfig {
    /// Model width `D` (input and output features).
    pub d_model: usize,
    /// State size `N` per channel.
    #[config(default = 16)]
    pub d_state: usize,
    /// Width `K` of the depthwise causal convolution.
    #[config(default = 4)]
    pub d_conv: usize,
    /// Expansion factor: the inner width is `E = expand · d_model`.
    #[config(default = 2)]
    pub expand: usize,
    /// Rank `R` of the Δ projection; `None` means `ceil(d_model / 16)`.
    pub dt_rank: Option<usize>,
    /// Smallest initial step size Δ.
    #[config(default = 0.001)]
    pub dt_min: f64,
    /// Largest initial step size Δ.
    #[config(default = 0.1)]
    pub dt_max: f64,
    /// Lower clamp of the sampled initial Δ.
    #[config(default = 1e-4)]
    pub dt_init_floor: f64,
    /// Scale of the uniform init of `dt_proj.weight` (`U(±dt_scale / sqrt(R))`).
    #[config(default = 1.0)]
    pub dt_scale: f64,
    /// Whether the depthwise convolution has a bias.
    #[config(default = true)]
    pub conv_bias: bool,
    /// Whether `in_proj` and `out_proj` have a bias.
    #[config(default = false)]
    pub bias: bool,
    /// Which selective-scan implementation runs the recurrence.
    #[config(default = "ScanKind::Fused")]
    pub scan: ScanKind,
    /// How the continuous `(Δ, A, B)` become the discrete `(Ā, B̄)`.
    #[config(default = "Discretization::Simplified")]
    pub discretization: Discretization,
    /// The state matrix `A`; `None` means [`StateMatrix::Learned`] (the reference). An
    /// `Option` so that configurations saved before this field existed still load.
    pub state_matrix: Option<StateMatrix>,
    /// The step sizes `Δ`; `None` means [`StepSize::Selective`] (the reference). An `Option`
    /// so that configurations saved before this field existed still load.
    pub step_size: Option<StepSize>,
    /// Epsilon of the block's RMSNorm (only used by [`MambaConfig::try_init_block`]).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
}

impl MambaConfig {
    /// Inner width `E = expand · d_model`.
    pub fn d_inner(&self) -> usize {
        self.expand.saturating_mul(self.d_model)
    }

    /// The Δ-projection rank actually used: `dt_rank` or `ceil(d_model / 16)`.
    pub fn resolved_dt_rank(&self) -> usize {
        self.dt_rank.unwrap_or_else(|| self.d_model.div_ceil(16))
    }

    /// The state matrix actually used: `state_matrix` or [`StateMatrix::Learned`].
    pub fn resolved_state_matrix(&self) -> StateMatrix {
        self.state_matrix.unwrap_or(StateMatrix::Learned)
    }

    /// The step sizes actually used: `step_size` or [`StepSize::Selective`].
    pub fn resolved_step_size(&self) -> StepSize {
        self.step_size.unwrap_or(StepSize::Selective)
    }

    /// Checks every field; the error says which one to fix.
    pub fn validate(&self) -> crate::Result<()> {
        ensure_nonzero("d_model", self.d_model)?;
        ensure_nonzero("d_state", self.d_state)?;
        ensure_nonzero("d_conv", self.d_conv)?;
        ensure_nonzero("expand", self.expand)?;
        if let Some(r) = self.dt_rank {
            ensure_nonzero("dt_rank", r)?;
        }
        if self.expand.checked_mul(self.d_model).is_none() {
            return Err(SeqError::InvalidConfig(format!(
                "expand ({}) · d_model ({}) overflows usize; use smaller sizes",
                self.expand, self.d_model
            )));
        }
        ensure_positive("dt_min", self.dt_min)?;
        ensure_positive("dt_max", self.dt_max)?;
        ensure_positive("dt_scale", self.dt_scale)?;
        ensure_positive("norm_eps", self.norm_eps)?;
        if !(self.dt_init_floor.is_finite() && self.dt_init_floor >= 0.0) {
            return Err(SeqError::OutOfRange {
                name: "dt_init_floor",
                value: self.dt_init_floor,
                expected: "a finite value >= 0",
            });
        }
        if self.dt_min > self.dt_max {
            return Err(SeqError::InvalidConfig(format!(
                "dt_min ({}) must not exceed dt_max ({}); swap them or widen the range",
                self.dt_min, self.dt_max
            )));
        }
        self.discretization.validate()?;
        self.resolved_step_size().validate()?;
        Ok(())
    }

    /// Builds the [`Mamba`] mixer (no norm, no residual) with the reference initialisation.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<Mamba<B>> {
        self.validate()?;
        let (d, e, n, k, r) = (
            self.d_model,
            self.d_inner(),
            self.d_state,
            self.d_conv,
            self.resolved_dt_rank(),
        );
        let dt_std = self.dt_scale / (r as f64).sqrt();
        // Drawn in field order, as before the A/Δ variants existed, so that a seed gives the
        // same initial weights (and the committed results stay reproducible).
        let in_proj = init::linear_default(d, 2 * e, self.bias, device);
        let conv1d = CausalConv1d::new(e, k, self.conv_bias, device);
        let x_proj = init::linear_default(e, r + 2 * n, false, device);
        let dt_proj = init::dt_proj(
            r,
            e,
            dt_std,
            self.dt_min,
            self.dt_max,
            self.dt_init_floor,
            device,
        );
        Ok(materialize(Mamba {
            in_proj,
            conv1d,
            x_proj,
            dt_proj: match self.resolved_step_size() {
                StepSize::Selective => dt_proj,
                // Unused: kept (same checkpoint tensors) but not trainable.
                StepSize::Constant { .. } => init::frozen_linear(dt_proj),
            },
            a_log: match self.resolved_state_matrix() {
                StateMatrix::Learned => init::s4d_real_a_log(e, n, device),
                StateMatrix::FixedNegIdentity => init::fixed_a_log(e, n, device),
            },
            d: init::ones_param(e, device),
            out_proj: init::linear_default(e, d, self.bias, device),
            d_model: d,
            d_inner: e,
            d_state: n,
            d_conv: k,
            dt_rank: r,
            scan: self.scan,
            discretization: self.discretization,
            state_matrix: self.resolved_state_matrix(),
            step_size: self.resolved_step_size(),
        }))
    }

    /// Like [`MambaConfig::try_init`] but panics with the validation message.
    ///
    /// # Panics
    /// When [`MambaConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mamba<B> {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("invalid MambaConfig: {e}"))
    }

    /// Builds the residual [`MambaBlock`]: `x + mixer(rmsnorm(x))`.
    pub fn try_init_block<B: Backend>(&self, device: &B::Device) -> crate::Result<MambaBlock<B>> {
        let mixer = self.try_init(device)?;
        let norm = NormKind::Rms.init(self.d_model, self.norm_eps, device);
        Ok(Residual::new(norm, mixer, NormPlacement::Pre))
    }

    /// Like [`MambaConfig::try_init_block`] but panics with the validation message.
    ///
    /// # Panics
    /// When [`MambaConfig::validate`] fails.
    pub fn init_block<B: Backend>(&self, device: &B::Device) -> MambaBlock<B> {
        self.try_init_block(device)
            .unwrap_or_else(|e| panic!("invalid MambaConfig: {e}"))
    }
}
