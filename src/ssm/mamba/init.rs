//! The reference initialisations of the Mamba parameters (`mamba_simple.py`).
//!
//! - `in_proj`, `x_proj`, `out_proj`: PyTorch's `nn.Linear` default, `U(±1/sqrt(fan_in))`
//!   (Burn's default `KaimingUniform { gain: 1/sqrt(3) }` is the same bound).
//! - `dt_proj.weight ~ U(±dt_scale / sqrt(R))`.
//! - `dt_proj.bias = softplus⁻¹(Δ₀)` with `Δ₀ = exp(U(0,1)·(ln dt_max − ln dt_min) + ln dt_min)`
//!   clamped below at `dt_init_floor`, so that `softplus(bias) = Δ₀ ∈ [dt_min, dt_max]`.
//! - `A_log[e, n] = ln(n + 1)` (S4D-real: `A = −(1, 2, …, N)` in every channel).
//! - `D = 1`.
//! - With `A` fixed to `−I`: `A_log = 0`, not trainable; with a constant `Δ`, `dt_proj` is
//!   drawn as usual but not trainable.
//!
//! Nothing in this crate re-initialises the Δ bias afterwards (one popular port zeroes all
//! Linear biases after construction, which silently destroys this init).

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

/// Inverse of `softplus(v) = ln(1 + eᵛ)` for `y > 0`: `y + ln(−expm1(−y))`, computed in f64.
pub fn inverse_softplus(y: f64) -> f64 {
    y + (-(-y).exp_m1()).ln()
}

/// A Linear layer with PyTorch's default init `U(±1/sqrt(d_input))`.
pub fn linear_default<B: Backend>(
    d_input: usize,
    d_output: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    LinearConfig::new(d_input, d_output)
        .with_bias(bias)
        .init(device)
}

/// `dt_proj`: Linear `R → E` with weight `U(±dt_std)` and the inverse-softplus Δ bias.
pub fn dt_proj<B: Backend>(
    dt_rank: usize,
    d_inner: usize,
    dt_std: f64,
    dt_min: f64,
    dt_max: f64,
    dt_init_floor: f64,
    device: &B::Device,
) -> Linear<B> {
    let mut linear = LinearConfig::new(dt_rank, d_inner)
        .with_bias(true)
        .with_initializer(Initializer::Uniform {
            min: -dt_std,
            max: dt_std,
        })
        .init(device);
    linear.bias = Some(Param::from_tensor(dt_bias(
        d_inner,
        dt_min,
        dt_max,
        dt_init_floor,
        device,
    )));
    linear
}

/// The Δ bias `[E]`: `softplus⁻¹(Δ₀)`, `Δ₀` log-uniform in `[dt_min, dt_max]`, floored at
/// `dt_init_floor`. Uses the backend's (seedable) RNG for the uniform draw.
pub fn dt_bias<B: Backend>(
    d_inner: usize,
    dt_min: f64,
    dt_max: f64,
    dt_init_floor: f64,
    device: &B::Device,
) -> Tensor<B, 1> {
    let u = Tensor::<B, 1>::random([d_inner], Distribution::Uniform(0.0, 1.0), device); // [E]
    let (ln_min, ln_max) = (dt_min.ln(), dt_max.ln());
    // Host round-trip at initialization only: the inverse softplus is computed in f64 on the
    // host, as the reference implementation does.
    let bias: Vec<f32> = u
        .into_data()
        .iter::<f64>()
        .map(|u| {
            let dt = (u * (ln_max - ln_min) + ln_min).exp().max(dt_init_floor);
            inverse_softplus(dt) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(bias, [d_inner]), device) // [E]
}

/// S4D-real `A_log [E, N]` with `A_log[e, n] = ln(n + 1)`, as a trainable parameter.
pub fn s4d_real_a_log<B: Backend>(
    d_inner: usize,
    d_state: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    let row: Vec<f32> = (1..=d_state).map(|n| (n as f32).ln()).collect();
    let data: Vec<f32> = row
        .iter()
        .copied()
        .cycle()
        .take(d_inner * d_state)
        .collect();
    Param::from_tensor(Tensor::from_data(
        TensorData::new(data, [d_inner, d_state]),
        device,
    )) // [E, N]
}

/// `A_log [E, N]` of zeros (`A = −exp(0) = −1`) that is not trainable: the parameter of
/// [`StateMatrix::FixedNegIdentity`](super::StateMatrix::FixedNegIdentity), kept so that
/// checkpoints hold the same tensors.
pub fn fixed_a_log<B: Backend>(
    d_inner: usize,
    d_state: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::zeros([d_inner, d_state], device)).set_require_grad(false) // [E, N]
}

/// `linear` with its weight and bias made non-trainable (`dt_proj` under a constant `Δ`).
pub fn frozen_linear<B: Backend>(mut linear: Linear<B>) -> Linear<B> {
    linear.weight = linear.weight.set_require_grad(false);
    linear.bias = linear.bias.map(|b| b.set_require_grad(false));
    linear
}

/// A trainable `[len]` vector of ones (the skip `D`).
pub fn ones_param<B: Backend>(len: usize, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::ones([len], device)) // [E]
}

/// A trainable tensor drawn from `U(±bound)`.
pub fn uniform_param<B: Backend, const D: usize>(
    shape: [usize; D],
    bound: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Uniform(-bound, bound),
        device,
    ))
}
