//! Shared helpers for the scan tests: seeded random Mamba-like inputs and comparisons.
#![allow(dead_code)]

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng, rngs::StdRng};
use seqlayers::ssm::{Discretization, SelectiveScanInput};

/// Sizes of one test case.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub b: usize,
    pub l: usize,
    pub e: usize,
    pub n: usize,
}

/// Uniform samples in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Tensor from a flat vector.
pub fn tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Flat f32 values of a tensor.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Raw input vectors of a Mamba-like case: Δ ∈ [0.001, 0.1) (the dt init range), A = −(n+1)
/// jittered (S4D-real), x, B, C ~ U(−1, 1), D ~ U(0.5, 1.5), h0 ~ U(−1, 1).
#[derive(Debug, Clone)]
pub struct RawCase {
    pub dims: Dims,
    pub x: Vec<f32>,
    pub delta: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    pub d: Vec<f32>,
    pub h0: Vec<f32>,
}

impl RawCase {
    pub fn new(dims: Dims, seed: u64) -> Self {
        let Dims { b, l, e, n } = dims;
        let mut rng = StdRng::seed_from_u64(seed);
        let x = uniform(&mut rng, b * l * e, -1.0, 1.0);
        let delta = uniform(&mut rng, b * l * e, 0.001, 0.1);
        let a = (0..e * n)
            .map(|i| -((i % n) as f32 + 1.0) * rng.random_range(0.8f32..1.2))
            .collect();
        let bm = uniform(&mut rng, b * l * n, -1.0, 1.0);
        let c = uniform(&mut rng, b * l * n, -1.0, 1.0);
        let d = uniform(&mut rng, e, 0.5, 1.5);
        let h0 = uniform(&mut rng, b * e * n, -1.0, 1.0);
        Self {
            dims,
            x,
            delta,
            a,
            b: bm,
            c,
            d,
            h0,
        }
    }

    /// Builds the scan input on backend `B`; `with_d`/`with_h0` select the optional parts.
    pub fn input<B: Backend>(
        &self,
        device: &B::Device,
        with_d: bool,
        with_h0: bool,
    ) -> SelectiveScanInput<B> {
        let Dims { b, l, e, n } = self.dims;
        SelectiveScanInput {
            x: tensor(self.x.clone(), [b, l, e], device),
            delta: tensor(self.delta.clone(), [b, l, e], device),
            a: tensor(self.a.clone(), [e, n], device),
            b: tensor(self.b.clone(), [b, l, n], device),
            c: tensor(self.c.clone(), [b, l, n], device),
            d: with_d.then(|| tensor(self.d.clone(), [e], device)),
            h0: with_h0.then(|| tensor(self.h0.clone(), [b, e, n], device)),
        }
    }
}

/// Largest |a − b| / max(1, |b|) (relative error with an absolute floor at scale 1).
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Independent f64 selective scan with plain loops over `p = [x, Δ, A, B, C, D, h0]` (f64 copies
/// of a [`RawCase`]'s vectors): `(y [B, L, E], h_L [B, E, N])`.
pub fn scan_f64(disc: Discretization, dims: Dims, p: &[Vec<f64>; 7]) -> (Vec<f64>, Vec<f64>) {
    let Dims { b: nb, l, e: ne, n } = dims;
    let [x, delta, a, bm, c, d, h0] = p;
    let mut y = vec![0.0; nb * l * ne];
    let mut h_last = vec![0.0; nb * ne * n];
    for b in 0..nb {
        for e in 0..ne {
            let mut h: Vec<f64> = (0..n).map(|k| h0[(b * ne + e) * n + k]).collect();
            for t in 0..l {
                let (dt, xt) = (delta[(b * l + t) * ne + e], x[(b * l + t) * ne + e]);
                let mut yt = d[e] * xt;
                for k in 0..n {
                    let av = a[e * n + k];
                    let z = dt * av;
                    let (abar, f) = match disc {
                        Discretization::ZeroOrderHold => (z.exp(), z.exp_m1() / av),
                        Discretization::Simplified => (z.exp(), dt),
                        Discretization::Generalized { alpha } => {
                            let den = 1.0 - (1.0 - alpha) * z;
                            ((1.0 + alpha * z) / den, dt / den)
                        }
                    };
                    h[k] = abar * h[k] + f * bm[(b * l + t) * n + k] * xt;
                    yt += c[(b * l + t) * n + k] * h[k];
                }
                y[(b * l + t) * ne + e] = yt;
            }
            h_last[(b * ne + e) * n..(b * ne + e + 1) * n].copy_from_slice(&h);
        }
    }
    (y, h_last)
}

impl RawCase {
    /// The seven input vectors in f64, in the order of [`scan_f64`].
    pub fn f64_params(&self) -> [Vec<f64>; 7] {
        [
            &self.x,
            &self.delta,
            &self.a,
            &self.b,
            &self.c,
            &self.d,
            &self.h0,
        ]
        .map(|v| v.iter().map(|&v| v as f64).collect())
    }
}

/// Every input of `inp` tracked for gradients.
pub fn tracked<B: burn::tensor::backend::AutodiffBackend>(
    inp: SelectiveScanInput<B>,
) -> SelectiveScanInput<B> {
    SelectiveScanInput {
        x: inp.x.require_grad(),
        delta: inp.delta.require_grad(),
        a: inp.a.require_grad(),
        b: inp.b.require_grad(),
        c: inp.c.require_grad(),
        d: inp.d.map(|t| t.require_grad()),
        h0: inp.h0.map(|t| t.require_grad()),
    }
}
