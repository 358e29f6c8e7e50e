//! Adam and AdamW as one pass over each parameter on the CPU backend.
//!
//! burn-optim 0.21's `Adam`/`AdamW` update a parameter with about fourteen tensor ops (moments,
//! bias corrections, square root, division, decay, step), each allocating and sweeping the
//! whole parameter: on a 22.7 M-parameter encoder that is hundreds of MB of memory traffic and
//! fresh pages per step. [`FusedAdam`] computes the same numbers in one loop on `NdArray<f32>`
//! (three output buffers: `θ`, `m`, `v`), in Burn's order of operations (bit for bit the same
//! result, tested), and keeps Burn's
//! state record ([`AdamWState`]), so optimizer checkpoints do not change. Other backends take
//! burn-optim's `AdamW` itself.
//!
//! # Glossary (Burn's `AdaptiveMomentum` and `AdamW`)
//! - step `t` (1 at the first update), gradient `g`, moments `m`, `v`:
//!   `m = β₁ m + (1 − β₁) g`, `v = β₂ v + (1 − β₂) g²` (at `t = 1`: `(1 − β₁) g`, `(1 − β₂) g²`);
//! - `Δ = (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)`;
//! - `θ ← θ (1 − lr λ) − lr Δ` (decoupled weight decay `λ`; `λ = 0` is Adam without decay).

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::backend::Backend;
use burn::tensor::ops::Device;
use burn::tensor::{Tensor, TensorPrimitive};
use rayon::prelude::*;

use crate::backend::{Cpu, CpuAutodiff, prim};
use crate::dispatch::{FusedOp, Routed, route, same};
use crate::ndarray_io::{into_values, tensor, values};

/// Adam / AdamW with Burn's defaults (`β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-5`), fused on the CPU.
#[derive(Clone)]
pub(crate) struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// burn-optim's AdamW with the same settings: the path of every other backend.
    fallback: AdamW,
}

impl FusedAdam {
    /// Adam (`weight_decay` 0) or AdamW with decoupled decay `weight_decay`.
    pub(crate) fn new(weight_decay: f32) -> Self {
        // burn-optim's defaults (`AdamWConfig::new()`); the test compares the two updates.
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay,
            fallback: AdamWConfig::new().with_weight_decay(weight_decay).build(),
        }
    }
}

/// Elements per parallel task of the update.
const CHUNK: usize = 1 << 15;

/// One task's output slices `((θ, m), v)` and its index.
type UpdateTask<'a> = (((&'a mut [f32], &'a mut [f32]), &'a mut [f32]), usize);

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let amsgrad = state
            .as_ref()
            .is_some_and(|s| s.momentum.max_moment_2.is_some());
        // Optimizers run on the inner backend: `NdArray<f32>` takes the loop, every other
        // backend (an autodiff one included) burn-optim's AdamW.
        let routed = route::<B, _, Tensor<Cpu, D>, Tensor<CpuAutodiff, D>>(FusedOp::Adam, tensor);
        let tensor = match routed {
            Routed::Cpu(t) if !amsgrad => t,
            Routed::Cpu(t) => {
                return SimpleOptimizer::<B>::step(&self.fallback, lr, same(t), grad, state);
            }
            Routed::CpuAutodiff(t) => {
                return SimpleOptimizer::<B>::step(&self.fallback, lr, same(t), grad, state);
            }
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            Routed::Gpu(t) => {
                return SimpleOptimizer::<B>::step(&self.fallback, lr, t, grad, state);
            }
            Routed::Other(t) => {
                return SimpleOptimizer::<B>::step(&self.fallback, lr, t, grad, state);
            }
        };
        let grad: Tensor<Cpu, D> = same(grad);
        let state: Option<AdamWState<Cpu, D>> = state.map(same);
        let (theta, state) = self.update(lr, tensor, grad, state);
        (same(theta), Some(same(state)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

impl FusedAdam {
    /// One update of `θ` on the CPU backend.
    fn update<const D: usize>(
        &self,
        lr: f64,
        theta: Tensor<Cpu, D>,
        grad: Tensor<Cpu, D>,
        state: Option<AdamWState<Cpu, D>>,
    ) -> (Tensor<Cpu, D>, AdamWState<Cpu, D>) {
        let shape = theta.shape();
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        // θ, m and v are updated in their own buffers when nothing else holds them (the usual
        // case after the backward pass), else in copies; see `into_values`.
        let grad = prim(grad);
        let gv = values(&grad);
        let n = gv.len();
        let mut theta_out = into_values(prim(theta));
        let had_moments = state.is_some();
        let (mut m_out, mut v_out) = match state {
            Some(s) => (
                into_values(prim(s.momentum.moment_1)),
                into_values(prim(s.momentum.moment_2)),
            ),
            None => (vec![0.0f32; n], vec![0.0f32; n]),
        };

        // Burn's scalars, rounded to f32 as its `mul_scalar`/`div_scalar` round them.
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let (f1, f2) = (1.0 - b1, 1.0 - b2);
        let (c1, c2) = (1f32 - b1.powi(time as i32), 1f32 - b2.powi(time as i32));
        let decay_rate = lr * self.weight_decay as f64;
        let keep = (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32);
        let lr32 = lr as f32;
        let update = |(((th_out, m_out), v_out), i): UpdateTask<'_>| {
            let start = i * CHUNK;
            for j in 0..th_out.len() {
                let g = gv[start + j];
                let (m, v) = if had_moments {
                    (m_out[j] * b1 + g * f1, v_out[j] * b2 + g * g * f2)
                } else {
                    (g * f1, g * g * f2)
                };
                let delta = (m / c1) / ((v / c2).sqrt() + eps);
                let th = match keep {
                    Some(k) => th_out[j] * k,
                    None => th_out[j],
                };
                th_out[j] = th - delta * lr32;
                m_out[j] = m;
                v_out[j] = v;
            }
        };
        theta_out
            .par_chunks_mut(CHUNK)
            .zip(m_out.par_chunks_mut(CHUNK))
            .zip(v_out.par_chunks_mut(CHUNK))
            .zip(0..n.div_ceil(CHUNK))
            .for_each(update);
        let wrap = |v: Vec<f32>| {
            Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(tensor(v, shape.clone())))
        };
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: wrap(m_out),
            moment_2: wrap(v_out),
            max_moment_2: None,
        };
        (wrap(theta_out), AdamWState::new(momentum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn vec_of<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    /// Four updates of a parameter larger than one parallel task (so several tasks run), with
    /// and without decay, against burn-optim's `AdamW` given the same gradients: bit for bit
    /// (the same f32 operations in the same order), parameters and both moments.
    #[test]
    fn fused_adam_follows_burn_adamw() {
        let device = Default::default();
        let n = CHUNK + 1000;
        let make = |v: Vec<f32>| Tensor::<Cpu, 1>::from_data(TensorData::new(v, [n]), &device);
        for weight_decay in [0.0f32, 0.01] {
            let fused = FusedAdam::new(weight_decay);
            let burn = AdamWConfig::new().with_weight_decay(weight_decay).build();
            let (mut a, mut b) = (make(random(n, 1)), make(random(n, 1)));
            let (mut sa, mut sb) = (None, None);
            for step in 0..4u64 {
                let g = random(n, 10 + step);
                let lr = 1e-3 * (step + 1) as f64;
                (a, sa) = SimpleOptimizer::<Cpu>::step(&fused, lr, a, make(g.clone()), sa);
                (b, sb) = SimpleOptimizer::<Cpu>::step(&burn, lr, b, make(g), sb);
            }
            let (sa, sb) = (sa.unwrap().momentum, sb.unwrap().momentum);
            assert_eq!(sa.time, sb.time);
            for (what, x, y) in [
                ("θ", vec_of(a), vec_of(b)),
                ("m", vec_of(sa.moment_1), vec_of(sb.moment_1)),
                ("v", vec_of(sa.moment_2), vec_of(sb.moment_2)),
            ] {
                for (i, (p, q)) in x.iter().zip(&y).enumerate() {
                    assert!(p == q, "λ = {weight_decay} {what}[{i}]: {p} vs {q}");
                }
            }
        }
    }
}
