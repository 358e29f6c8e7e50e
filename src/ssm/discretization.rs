//! Discretization of the continuous diagonal state-space model.
//!
//! (The glossary and derivations are on [`Discretization`], public as `seqlayers::ssm::Discretization`.)

use burn::tensor::{Tensor, backend::Backend};

use crate::error::SeqError;

/// Below this |ΔA| the ZOH factor `(e^{ΔA} − 1)/(ΔA)` uses its Taylor series (no cancellation).
const ZOH_SERIES_BELOW: f32 = 0.1;

/// How the continuous SSM `(A, B, Δ)` becomes the discrete recurrence `(Ā, B̄)`.
///
/// # Glossary
/// - `A` (`a`): continuous state matrix, diagonal, one value per (channel `e`, state `n`); negative.
/// - `B` (`b`): continuous input matrix (per time step in Mamba, shared by channels).
/// - `C`, `D`: output matrix and skip connection.
/// - `Δ` (`delta`): positive step size, per (batch, time, channel) in Mamba.
/// - `Ā` (`abar`): discrete state transition; `B̄ = F · B` with `F` the *B̄-factor* (`bbar`).
/// - `α` (`alpha`): weight of the explicit end in the generalized bilinear rule.
///
/// # Derivation
/// The continuous model is `h'(t) = A h(t) + B x(t)`, `y(t) = C h(t) + D x(t)`. A discretization
/// turns it into `h_k = Ā h_{k−1} + B̄ x_k`, `y_k = C̄ h_k + D̄ x_k`. Since the output equation has
/// no derivative in it, every rule below keeps **`C̄ = C` and `D̄ = D`**.
///
/// **Zero-order hold (exact).** Hold `x` constant on `[t_{k−1}, t_k]` (length `Δ`). Variation
/// of constants gives `h_k = e^{ΔA} h_{k−1} + (∫₀^Δ e^{sA} ds) B x_k`, and for a diagonal `A`
/// the integral is `(e^{ΔA} − 1)/A`. Hence `Ā = exp(ΔA)`, `B̄ = (exp(ΔA) − 1)/A · B`
/// (→ `ΔB` when `A → 0`).
///
/// **Simplified (Mamba).** Mamba keeps `Ā = exp(ΔA)` but uses the first-order approximation
/// `(e^{ΔA} − 1)/A ≈ Δ`, i.e. `B̄ = ΔB`.
///
/// **Generalized bilinear (α ∈ [0, 1]).** For `x'(t) = f(x(t))` the rule is
/// `x_{k} = x_{k−1} + Δ(α f(x_{k−1}) + (1−α) f(x_k))`. With `f(h) = A h + B x_k` (input held at
/// `x_k` on the step):
/// ```text
/// h_k = h_{k−1} + Δ α (A h_{k−1} + B x_k) + Δ (1−α) (A h_k + B x_k)
/// (1 − (1−α)ΔA) h_k = (1 + αΔA) h_{k−1} + ΔB x_k
/// ```
/// so `Ā = (1 + αΔA)/(1 − (1−α)ΔA)` and `B̄ = ΔB/(1 − (1−α)ΔA)`. `α = 1` is forward Euler
/// (`Ā = 1 + ΔA`, `B̄ = ΔB`), `α = 0` backward Euler (`Ā = 1/(1 − ΔA)`), `α = ½` the bilinear
/// (Tustin) transform used by S4. For `A < 0` the denominator is `≥ 1`, so the rule is always
/// defined; forward Euler can give `Ā < 0` (unstable) when `ΔA < −2`.
///
/// All rules agree to first order as `Δ → 0`: `Ā = 1 + ΔA + O(Δ²)`, `B̄ = ΔB + O(Δ²)`.
///
/// The derivatives of `Ā` and `F` (used by the fused kernel's backward) are in
/// [`Discretization::scalar_grad`].
#[derive(burn::config::Config, Debug, Copy, PartialEq)]
pub enum Discretization {
    /// Exact zero-order hold: `Ā = exp(ΔA)`, `B̄ = (exp(ΔA) − 1)/A · B`.
    ZeroOrderHold,
    /// Mamba's simplified rule: `Ā = exp(ΔA)`, `B̄ = ΔB`.
    Simplified,
    /// Generalized bilinear rule: `Ā = (1 + αΔA)/(1 − (1−α)ΔA)`, `B̄ = ΔB/(1 − (1−α)ΔA)`.
    /// `alpha = 1` forward Euler, `0` backward Euler, `½` bilinear (S4).
    Generalized {
        /// Weight of the explicit (left) end of the step, in `[0, 1]`.
        alpha: f64,
    },
}

#[allow(clippy::derivable_impls)] // `#[derive(Default)]` clashes with `#[derive(Config)]`
impl Default for Discretization {
    fn default() -> Self {
        Discretization::Simplified
    }
}

impl Discretization {
    /// The bilinear (Tustin) transform of S4: [`Discretization::Generalized`] with `α = ½`.
    pub fn bilinear() -> Self {
        Discretization::Generalized { alpha: 0.5 }
    }

    /// Checks the rule's parameters: `alpha` must be a finite number in `[0, 1]`.
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            Discretization::Generalized { alpha } if !(0.0..=1.0).contains(&alpha) => {
                Err(SeqError::OutOfRange {
                    name: "alpha",
                    value: alpha,
                    expected: "a number in [0, 1] (1 = forward Euler, 0 = backward Euler, 0.5 = bilinear)",
                })
            }
            _ => Ok(()),
        }
    }

    /// Closed form on scalars: returns `(Ā, F)` with `B̄ = F · B`, for step `delta` and
    /// diagonal entry `a`.
    #[inline]
    pub fn scalar(&self, delta: f32, a: f32) -> (f32, f32) {
        let z = delta * a;
        match *self {
            Discretization::ZeroOrderHold => (z.exp(), delta * phi1(z)),
            Discretization::Simplified => (z.exp(), delta),
            Discretization::Generalized { alpha } => {
                let alpha = alpha as f32;
                let inv_den = 1.0 / (1.0 - (1.0 - alpha) * z);
                ((1.0 + alpha * z) * inv_den, delta * inv_den)
            }
        }
    }

    /// Partial derivatives of the scalar closed form, as
    /// `(∂Ā/∂Δ, ∂Ā/∂A, ∂F/∂Δ, ∂F/∂A)` at `(delta, a)`.
    ///
    /// With `z = ΔA`:
    /// - ZOH: `(A e^z, Δ e^z, e^z, Δ² ψ(z))` with `ψ(z) = (z e^z − e^z + 1)/z²` (→ ½ at 0);
    /// - Simplified: `(A e^z, Δ e^z, 1, 0)`;
    /// - Generalized with `d = 1 − (1−α)z`: `(A/d², Δ/d², 1/d², (1−α)Δ²/d²)` (the numerator of
    ///   `∂Ā/∂Δ` simplifies because `α d + (1−α)(1 + αz) = 1`).
    #[inline]
    pub fn scalar_grad(&self, delta: f32, a: f32) -> (f32, f32, f32, f32) {
        let z = delta * a;
        match *self {
            Discretization::ZeroOrderHold => {
                let ez = z.exp();
                (a * ez, delta * ez, ez, delta * delta * psi(z))
            }
            Discretization::Simplified => {
                let ez = z.exp();
                (a * ez, delta * ez, 1.0, 0.0)
            }
            Discretization::Generalized { alpha } => {
                let alpha = alpha as f32;
                let inv_den = 1.0 / (1.0 - (1.0 - alpha) * z);
                let inv_den2 = inv_den * inv_den;
                (
                    a * inv_den2,
                    delta * inv_den2,
                    inv_den2,
                    (1.0 - alpha) * delta * delta * inv_den2,
                )
            }
        }
    }

    /// Tensor form: `(Ā, F)`, both `[B, L, E, N]`, from `delta` `[B, L, E]` and `a` `[E, N]`,
    /// so that the recurrence input is `b_t = F ⊙ B_t ⊙ x_t`. Differentiable.
    pub fn tensors<B: Backend>(
        &self,
        delta: Tensor<B, 3>,
        a: Tensor<B, 2>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let delta4: Tensor<B, 4> = delta.unsqueeze_dim(3); // [B, L, E, 1]
        let a4: Tensor<B, 4> = a.unsqueeze_dims(&[0, 0]); // [1, 1, E, N]
        let z = delta4.clone() * a4; // [B, L, E, N]
        match *self {
            Discretization::ZeroOrderHold => {
                let abar = z.clone().exp(); // [B, L, E, N]
                let factor = delta4 * phi1_tensor(z); // [B, L, E, N]
                (abar, factor)
            }
            Discretization::Simplified => {
                let abar = z.clone().exp(); // [B, L, E, N]
                let factor = delta4.expand(abar.shape()); // [B, L, E, N]
                (abar, factor)
            }
            Discretization::Generalized { alpha } => {
                // Divisions, not `recip()`: burn-ndarray's SIMD reciprocal is approximate (~5e-5).
                let den = z.clone().mul_scalar(-(1.0 - alpha)).add_scalar(1.0); // [B, L, E, N]
                let abar = z.mul_scalar(alpha).add_scalar(1.0) / den.clone(); // [B, L, E, N]
                let factor = delta4 / den; // [B, L, E, N]
                (abar, factor)
            }
        }
    }
}

impl Discretization {
    /// Tensor form of [`Discretization::scalar_grad`]: `(∂Ā/∂Δ, ∂Ā/∂A, ∂F/∂Δ, ∂F/∂A)`, each
    /// `[B, L, E, N]`, from `delta` `[B, L, E]` and `a` `[E, N]`. Used by the tensor-op backward
    /// of the fused scan (the fallback for backends without a kernel).
    pub fn tensor_partials<B: Backend>(
        &self,
        delta: Tensor<B, 3>,
        a: Tensor<B, 2>,
    ) -> [Tensor<B, 4>; 4] {
        let [bs, l, e] = delta.dims();
        let n = a.dims()[1];
        let shape = [bs, l, e, n];
        let delta4: Tensor<B, 4> = delta.unsqueeze_dim::<4>(3).expand(shape); // [B, L, E, N]
        let a4: Tensor<B, 4> = a.unsqueeze_dims::<4>(&[0, 0]).expand(shape); // [B, L, E, N]
        let z = delta4.clone() * a4.clone(); // [B, L, E, N]
        match *self {
            Discretization::ZeroOrderHold => {
                let ez = z.clone().exp(); // [B, L, E, N]
                let d_f_d_a = delta4.clone() * delta4.clone() * psi_tensor(z); // [B, L, E, N]
                [a4 * ez.clone(), delta4 * ez.clone(), ez, d_f_d_a]
            }
            Discretization::Simplified => {
                let ez = z.exp(); // [B, L, E, N]
                let zeros = ez.zeros_like(); // [B, L, E, N]
                let ones = ez.ones_like(); // [B, L, E, N]
                [a4 * ez.clone(), delta4 * ez, ones, zeros]
            }
            Discretization::Generalized { alpha } => {
                let den = z.mul_scalar(-(1.0 - alpha)).add_scalar(1.0); // [B, L, E, N]
                let inv_den2 = den.ones_like() / (den.clone() * den); // [B, L, E, N]
                let d_f_d_a =
                    (delta4.clone() * delta4.clone() * inv_den2.clone()).mul_scalar(1.0 - alpha);
                [
                    a4 * inv_den2.clone(),
                    delta4 * inv_den2.clone(),
                    inv_den2,
                    d_f_d_a,
                ]
            }
        }
    }
}

/// `φ₁(z) = (e^z − 1)/z`, with `φ₁(0) = 1`, accurate near 0.
#[inline]
fn phi1(z: f32) -> f32 {
    if z.abs() < ZOH_SERIES_BELOW {
        // 1 + z/2 + z²/6 + z³/24 + z⁴/120 + z⁵/720 (next term < 2e-10 relative)
        1.0 + z * (0.5 + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (1.0 / 120.0 + z / 720.0))))
    } else {
        z.exp_m1() / z
    }
}

/// `ψ(z) = (z e^z − e^z + 1)/z² = d/dz φ₁(z)`, with `ψ(0) = ½`, computed in f64.
#[inline]
fn psi(z: f32) -> f32 {
    let z = z as f64;
    if z.abs() < 1e-3 {
        (0.5 + z * (1.0 / 3.0 + z / 8.0)) as f32
    } else {
        ((z * z.exp() - z.exp_m1()) / (z * z)) as f32
    }
}

/// Tensor version of [`phi1`]: a Taylor branch near 0 and `(e^z − 1)/z` elsewhere, selected
/// with a mask so that both branches stay finite (no NaN leaks into gradients).
fn phi1_tensor<B: Backend>(z: Tensor<B, 4>) -> Tensor<B, 4> {
    let small = z.clone().abs().lower_elem(ZOH_SERIES_BELOW); // [B, L, E, N]
    let series = z
        .clone()
        .div_scalar(720.0)
        .add_scalar(1.0 / 120.0)
        .mul(z.clone())
        .add_scalar(1.0 / 24.0)
        .mul(z.clone())
        .add_scalar(1.0 / 6.0)
        .mul(z.clone())
        .add_scalar(0.5)
        .mul(z.clone())
        .add_scalar(1.0); // [B, L, E, N]
    let z_safe = z.mask_fill(small.clone(), 1.0); // [B, L, E, N], never 0 in the exact branch
    let exact = (z_safe.clone().exp().sub_scalar(1.0)).div(z_safe); // [B, L, E, N]
    exact.mask_where(small, series)
}

/// Tensor version of [`psi`]: Taylor series `Σ (k+1) z^k/(k+2)!` for `|z| < 0.25` (exact
/// formula cancels there), `(z e^z − e^z + 1)/z²` elsewhere; both branches finite.
fn psi_tensor<B: Backend>(z: Tensor<B, 4>) -> Tensor<B, 4> {
    let small = z.clone().abs().lower_elem(0.25); // [B, L, E, N]
    let series = z
        .clone()
        .div_scalar(840.0)
        .add_scalar(1.0 / 144.0)
        .mul(z.clone())
        .add_scalar(1.0 / 30.0)
        .mul(z.clone())
        .add_scalar(1.0 / 8.0)
        .mul(z.clone())
        .add_scalar(1.0 / 3.0)
        .mul(z.clone())
        .add_scalar(0.5); // [B, L, E, N]
    let z_safe = z.mask_fill(small.clone(), 1.0); // [B, L, E, N]
    let ez = z_safe.clone().exp(); // [B, L, E, N]
    let exact = (z_safe.clone() * ez.clone() - ez).add_scalar(1.0) / (z_safe.clone() * z_safe); // [B, L, E, N]
    exact.mask_where(small, series)
}
