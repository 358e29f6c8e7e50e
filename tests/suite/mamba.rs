//! Mamba mixer/block: initialisation, validation, forward numbers against an independent f64
//! implementation, causality, the residual block, gradients, and the `A = −I` / constant-`Δ`
//! variants (forward = f64 reference, step = full pass, no gradient to what is fixed, typed
//! errors, older configurations still load).

use crate::common::{fresh_leaves, seeded};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::ssm::Discretization;
use seqlayers::ssm::ScanKind;
use seqlayers::ssm::{Mamba, MambaConfig, StateMatrix, StepSize};

fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn softplus(v: f64) -> f64 {
    if v > 20.0 { v } else { v.exp().ln_1p() }
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

// ---------------------------------------------------------------- initialisation

#[test]
fn init_dt_bias_is_inverse_softplus_of_log_uniform_dt() {
    let device = Default::default();
    let cfg = MambaConfig::new(1024).with_d_state(2); // E = 2048
    let m: Mamba<Cpu> = seeded(7, || cfg.try_init(&device).unwrap());
    let bias = vec_of(m.dt_proj.bias.as_ref().unwrap().val());
    assert_eq!(bias.len(), 2048);
    let dts: Vec<f64> = bias.iter().map(|&b| softplus(b)).collect();
    for &dt in &dts {
        assert!(
            (0.001 * (1.0 - 1e-4)..=0.1 * (1.0 + 1e-4)).contains(&dt),
            "softplus(bias) = {dt} outside [dt_min, dt_max]"
        );
    }
    // ln Δ₀ ~ U(ln 0.001, ln 0.1): mean (ln .001 + ln .1)/2, sd 4.605/sqrt(12) = 1.33,
    // standard error of the mean 1.33/sqrt(2048) = 0.03.
    let logs: Vec<f64> = dts.iter().map(|d| d.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let want_mean = (0.001f64.ln() + 0.1f64.ln()) / 2.0;
    assert!(
        (mean - want_mean).abs() < 0.15,
        "mean ln dt {mean} vs {want_mean}"
    );
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
    let want_var = (0.1f64.ln() - 0.001f64.ln()).powi(2) / 12.0;
    assert!(
        (var / want_var - 1.0).abs() < 0.1,
        "var ln dt {var} vs {want_var}"
    );
}

#[test]
fn init_dt_floor_clamps_small_dt() {
    let device = Default::default();
    let cfg = MambaConfig::new(256)
        .with_dt_min(1e-6)
        .with_dt_max(1e-3)
        .with_dt_init_floor(1e-4);
    let m: Mamba<Cpu> = seeded(3, || cfg.try_init(&device).unwrap());
    let dts: Vec<f64> = vec_of(m.dt_proj.bias.as_ref().unwrap().val())
        .into_iter()
        .map(softplus)
        .collect();
    let min = dts.iter().copied().fold(f64::INFINITY, f64::min);
    // About 2/3 of the log-uniform draws fall below 1e-4 and are clamped to exactly the floor.
    assert!((min - 1e-4).abs() < 1e-4 * 1e-3, "min dt {min}");
    let at_floor = dts.iter().filter(|&&d| (d - 1e-4).abs() < 1e-7).count();
    assert!(at_floor > dts.len() / 2, "only {at_floor} at the floor");
}

#[test]
fn init_a_log_d_and_weight_bounds_follow_the_reference() {
    let device = Default::default();
    let cfg = MambaConfig::new(40).with_d_state(5).with_dt_scale(2.0); // E = 80, R = 3
    let m: Mamba<Cpu> = seeded(11, || cfg.try_init(&device).unwrap());
    assert_eq!(m.dt_rank(), 3);
    let a_log = vec_of(m.a_log.val());
    assert_eq!(m.a_log.val().dims(), [80, 5]);
    for (i, v) in a_log.iter().enumerate() {
        let n = i % 5;
        assert!((v - ((n + 1) as f64).ln()).abs() < 1e-6, "A_log[{i}] = {v}");
    }
    assert!(vec_of(m.d.val()).iter().all(|&v| v == 1.0));
    let bound_dt = 2.0 / 3f64.sqrt();
    let w = vec_of(m.dt_proj.weight.val());
    assert_eq!(m.dt_proj.weight.val().dims(), [3, 80]);
    assert!(w.iter().all(|v| v.abs() <= bound_dt));
    assert!(
        w.iter().any(|v| v.abs() > 0.8 * bound_dt),
        "dt_proj.weight not spread"
    );
    let conv = vec_of(m.conv1d.weight.val());
    assert_eq!(m.conv1d.weight.val().dims(), [80, 4]);
    assert!(conv.iter().all(|v| v.abs() <= 0.5)); // 1/sqrt(K)
    assert!(m.in_proj.bias.is_none() && m.out_proj.bias.is_none());
    assert!(m.conv1d.bias.is_some());
    assert_eq!(m.in_proj.weight.val().dims(), [40, 160]);
    assert_eq!(m.x_proj.weight.val().dims(), [80, 3 + 10]);
    assert_eq!(m.out_proj.weight.val().dims(), [80, 40]);
}

#[test]
fn default_dt_rank_is_ceil_d_model_over_16() {
    assert_eq!(MambaConfig::new(8).resolved_dt_rank(), 1);
    assert_eq!(MambaConfig::new(16).resolved_dt_rank(), 1);
    assert_eq!(MambaConfig::new(17).resolved_dt_rank(), 2);
    assert_eq!(MambaConfig::new(768).resolved_dt_rank(), 48);
    assert_eq!(
        MambaConfig::new(8).with_dt_rank(Some(5)).resolved_dt_rank(),
        5
    );
    assert_eq!(MambaConfig::new(8).d_inner(), 16);
}

// ---------------------------------------------------------------- validation

#[test]
fn try_init_rejects_every_bad_field() {
    let device = Default::default();
    let bad = |cfg: MambaConfig| cfg.try_init::<Cpu>(&device).unwrap_err();
    let zero = |name: &'static str| SeqError::ZeroSize { name };
    assert_eq!(bad(MambaConfig::new(0)), zero("d_model"));
    assert_eq!(bad(MambaConfig::new(8).with_d_state(0)), zero("d_state"));
    assert_eq!(bad(MambaConfig::new(8).with_d_conv(0)), zero("d_conv"));
    assert_eq!(bad(MambaConfig::new(8).with_expand(0)), zero("expand"));
    assert_eq!(
        bad(MambaConfig::new(8).with_dt_rank(Some(0))),
        zero("dt_rank")
    );
    for (cfg, name) in [
        (MambaConfig::new(8).with_dt_min(0.0), "dt_min"),
        (MambaConfig::new(8).with_dt_min(-1e-3), "dt_min"),
        (MambaConfig::new(8).with_dt_max(0.0), "dt_max"),
        (MambaConfig::new(8).with_dt_max(f64::NAN), "dt_max"),
        (MambaConfig::new(8).with_dt_scale(0.0), "dt_scale"),
        (
            MambaConfig::new(8).with_dt_init_floor(-1.0),
            "dt_init_floor",
        ),
        (MambaConfig::new(8).with_norm_eps(0.0), "norm_eps"),
    ] {
        match bad(cfg) {
            SeqError::OutOfRange { name: got, .. } => assert_eq!(got, name),
            e => panic!("expected OutOfRange for {name}, got {e:?}"),
        }
    }
    assert!(matches!(
        bad(MambaConfig::new(8).with_dt_min(0.5).with_dt_max(0.1)),
        SeqError::InvalidConfig(msg) if msg.contains("dt_min")
    ));
    assert!(matches!(
        bad(MambaConfig::new(usize::MAX).with_expand(2)),
        SeqError::InvalidConfig(msg) if msg.contains("overflows")
    ));
    for alpha in [-0.1, 1.5, f64::NAN] {
        let cfg = MambaConfig::new(8).with_discretization(Discretization::Generalized { alpha });
        // The discretization's own check, for the mixer and the block alike (not, say, a
        // NaN caught later by a finiteness check, or only the mixer validating it).
        let mixer = bad(cfg.clone());
        assert!(
            matches!(mixer, SeqError::OutOfRange { name: "alpha", .. }),
            "alpha {alpha}: {mixer:?}"
        );
        let block = cfg.try_init_block::<Cpu>(&device).map(|_| ()).unwrap_err();
        assert!(
            matches!(block, SeqError::OutOfRange { name: "alpha", .. }),
            "alpha {alpha}: {block:?}"
        );
    }
    assert!(
        MambaConfig::new(8)
            .with_dt_init_floor(0.0)
            .try_init::<Cpu>(&device)
            .is_ok()
    );
}

#[test]
fn forward_with_state_rejects_bad_shapes() {
    let device = Default::default();
    let m: Mamba<Cpu> = seeded(1, || MambaConfig::new(4).try_init(&device).unwrap());
    let x = Tensor::<Cpu, 3>::zeros([2, 3, 5], &device);
    assert!(matches!(
        crate::common::from_zero(&m, x),
        Err(SeqError::ShapeMismatch { .. })
    ));
    let x = Tensor::<Cpu, 3>::zeros([2, 3, 4], &device);
    let wrong_state = m.init_state(3, &device);
    // Each input is checked against its own shape: a batch-3 state fails on the state (its
    // first field, the convolution window), a [2, 4] mask on the mask.
    let err = m.forward_with_state(x.clone(), wrong_state).unwrap_err();
    assert!(
        matches!(
            err,
            SeqError::ShapeMismatch {
                what: "MambaState::conv [B, E, K-1]",
                ..
            }
        ),
        "{err:?}"
    );
    let wrong_mask = Tensor::<Cpu, 2>::ones([2, 4], &device).greater_elem(0.5);
    let err = m
        .forward_padded(x, m.init_state(2, &device), wrong_mask)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SeqError::ShapeMismatch {
                what: "padding mask [B, L]",
                ..
            }
        ),
        "{err:?}"
    );
    let empty = Tensor::<Cpu, 3>::zeros([2, 0, 4], &device);
    assert_eq!(
        crate::common::from_zero(&m, empty).unwrap_err(),
        SeqError::ZeroSize {
            name: "sequence length"
        }
    );
}

// ---------------------------------------------------------------- forward numbers

/// The whole mixer written out in f64 loops from the module's weights (no Burn ops), with its
/// own closed forms of the three discretizations.
fn reference_forward(m: &Mamba<Cpu>, x: &[f64], batch: usize, len: usize) -> Vec<f64> {
    let (d, e, n, k, r) = (
        m.d_model(),
        m.d_inner(),
        m.d_state(),
        m.d_conv(),
        m.dt_rank(),
    );
    let w_in = vec_of(m.in_proj.weight.val()); // [D, 2E]
    let b_in = m.in_proj.bias.as_ref().map(|b| vec_of(b.val()));
    let w_conv = vec_of(m.conv1d.weight.val()); // [E, K]
    let b_conv = m.conv1d.bias.as_ref().map(|b| vec_of(b.val()));
    let w_x = vec_of(m.x_proj.weight.val()); // [E, R+2N]
    let w_dt = vec_of(m.dt_proj.weight.val()); // [R, E]
    let b_dt = vec_of(m.dt_proj.bias.as_ref().unwrap().val());
    // `A = −I` written out here, not read from `a_log`.
    let a: Vec<f64> = match m.state_matrix() {
        StateMatrix::Learned => vec_of(m.a_log.val()).iter().map(|v| -v.exp()).collect(),
        StateMatrix::FixedNegIdentity => vec![-1.0; e * n],
    };
    let dd = vec_of(m.d.val());
    let w_out = vec_of(m.out_proj.weight.val()); // [E, D]
    let b_out = m.out_proj.bias.as_ref().map(|b| vec_of(b.val()));
    let disc = m.discretization();
    let mut out = vec![0.0; batch * len * d];
    for bi in 0..batch {
        let mut xs = vec![vec![0.0; e]; len];
        let mut zs = vec![vec![0.0; e]; len];
        for t in 0..len {
            for j in 0..2 * e {
                let mut s = b_in.as_ref().map_or(0.0, |b| b[j]);
                for i in 0..d {
                    s += x[(bi * len + t) * d + i] * w_in[i * 2 * e + j];
                }
                if j < e {
                    xs[t][j] = s
                } else {
                    zs[t][j - e] = s
                }
            }
        }
        let mut h = vec![0.0; e * n];
        for t in 0..len {
            let mut xc = vec![0.0; e];
            for ch in 0..e {
                let mut s = b_conv.as_ref().map_or(0.0, |b| b[ch]);
                for kk in 0..k {
                    // out[t] = Σ_k w[k] · x[t − (K−1) + k]
                    let src = t as isize - (k as isize - 1) + kk as isize;
                    if src >= 0 {
                        s += w_conv[ch * k + kk] * xs[src as usize][ch];
                    }
                }
                xc[ch] = silu(s);
            }
            let mut proj = vec![0.0; r + 2 * n];
            for (j, p) in proj.iter_mut().enumerate() {
                for ch in 0..e {
                    *p += xc[ch] * w_x[ch * (r + 2 * n) + j];
                }
            }
            let mut y = vec![0.0; e];
            for ch in 0..e {
                let mut pre = b_dt[ch];
                for q in 0..r {
                    pre += proj[q] * w_dt[q * e + ch];
                }
                let delta = match m.step_size() {
                    StepSize::Selective => softplus(pre),
                    StepSize::Constant { value } => value,
                };
                let mut acc = 0.0;
                for s in 0..n {
                    let av = a[ch * n + s];
                    let (abar, bfac) = match disc {
                        Discretization::ZeroOrderHold => {
                            ((delta * av).exp(), ((delta * av).exp() - 1.0) / av)
                        }
                        Discretization::Simplified => ((delta * av).exp(), delta),
                        Discretization::Generalized { alpha } => {
                            let den = 1.0 - (1.0 - alpha) * delta * av;
                            ((1.0 + alpha * delta * av) / den, delta / den)
                        }
                    };
                    let hs = &mut h[ch * n + s];
                    *hs = abar * *hs + bfac * proj[r + s] * xc[ch];
                    acc += *hs * proj[r + n + s];
                }
                y[ch] = (acc + dd[ch] * xc[ch]) * silu(zs[t][ch]);
            }
            for o in 0..d {
                let mut s = b_out.as_ref().map_or(0.0, |b| b[o]);
                for ch in 0..e {
                    s += y[ch] * w_out[ch * d + o];
                }
                out[(bi * len + t) * d + o] = s;
            }
        }
    }
    out
}

fn discretizations() -> [Discretization; 3] {
    [
        Discretization::ZeroOrderHold,
        Discretization::Simplified,
        Discretization::bilinear(),
    ]
}

#[test]
fn forward_matches_independent_f64_implementation() {
    let device = Default::default();
    let (batch, len) = (2, 9);
    for disc in discretizations() {
        for scan in [ScanKind::Sequential, ScanKind::Parallel, ScanKind::Fused] {
            // Wider Δ range and biases on, so every term matters.
            let (m, x): (Mamba<Cpu>, _) = seeded(5, || {
                let m = MambaConfig::new(6)
                    .with_d_state(3)
                    .with_d_conv(3)
                    .with_dt_min(0.05)
                    .with_dt_max(0.9)
                    .with_bias(true)
                    .with_scan(scan)
                    .with_discretization(disc)
                    .try_init(&device)
                    .unwrap();
                let x = Tensor::<Cpu, 3>::random(
                    [batch, len, 6],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                (m, x)
            });
            let want = reference_forward(&m, &vec_of(x.clone()), batch, len);
            let got = vec_of(m.forward(x));
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            assert!(scale > 1e-2, "output too small to test");
            let err = max_abs_diff(&got, &want);
            assert!(
                err < 2e-5 * scale.max(1.0),
                "{disc:?}/{scan:?}: max err {err}"
            );
        }
    }
}

#[test]
fn forward_is_causal() {
    let device = Default::default();
    let (batch, len, d) = (2, 12, 8);
    for (i, scan) in [ScanKind::Sequential, ScanKind::Parallel, ScanKind::Fused]
        .into_iter()
        .enumerate()
    {
        let (m, x): (Mamba<Cpu>, _) = seeded(9 + i as u64, || {
            let m = MambaConfig::new(d)
                .with_scan(scan)
                .try_init(&device)
                .unwrap();
            let x =
                Tensor::<Cpu, 3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), &device);
            (m, x)
        });
        let y = m.forward(x.clone());
        for t in [0, 4, 10] {
            let noise = seeded(20 + t as u64, || {
                Tensor::<Cpu, 3>::random(
                    [batch, len - t - 1, d],
                    Distribution::Normal(0.0, 3.0),
                    &device,
                )
            });
            let x2 = Tensor::cat(
                vec![
                    x.clone().narrow(1, 0, t + 1),
                    x.clone().narrow(1, t + 1, len - t - 1) + noise,
                ],
                1,
            );
            let y2 = m.forward(x2);
            let past = max_abs_diff(
                &vec_of(y.clone().narrow(1, 0, t + 1)),
                &vec_of(y2.clone().narrow(1, 0, t + 1)),
            );
            assert!(past < 1e-6, "{scan:?}: y[..={t}] moved by {past}");
            let future = max_abs_diff(
                &vec_of(y.clone().narrow(1, t + 1, len - t - 1)),
                &vec_of(y2.narrow(1, t + 1, len - t - 1)),
            );
            assert!(
                future > 1e-3,
                "{scan:?}: perturbation after {t} had no effect"
            );
        }
    }
}

#[test]
fn block_is_residual_around_rmsnorm_and_mixer() {
    let device = Default::default();
    let (block, x) = seeded(13, || {
        let block = MambaConfig::new(8).try_init_block::<Cpu>(&device).unwrap();
        let x = Tensor::<Cpu, 3>::random([2, 5, 8], Distribution::Normal(0.0, 2.0), &device);
        (block, x)
    });
    let got = vec_of(block.forward(x.clone()));
    // RMSNorm by hand (gamma = 1 at init, eps = 1e-5).
    let xv = vec_of(x.clone());
    let mut normed = vec![0.0; xv.len()];
    for row in 0..10 {
        let r = &xv[row * 8..row * 8 + 8];
        let rms = (r.iter().map(|v| v * v).sum::<f64>() / 8.0 + 1e-5).sqrt();
        for i in 0..8 {
            normed[row * 8 + i] = r[i] / rms;
        }
    }
    let mix = reference_forward(&block.mixer, &normed, 2, 5);
    let want: Vec<f64> = xv.iter().zip(&mix).map(|(a, b)| a + b).collect();
    assert!(max_abs_diff(&got, &want) < 1e-4);
}

// ---------------------------------------------------------------- gradients

fn loss<B: burn::tensor::backend::Backend>(
    m: &Mamba<B>,
    x: Tensor<B, 3>,
    w: Tensor<B, 3>,
) -> Tensor<B, 1> {
    (m.forward(x) * w).sum()
}

/// Fused-scan gradients of every parameter equal the autodiff of the sequential scan, and a
/// few entries match central finite differences.
#[test]
fn gradients_match_sequential_autodiff_and_finite_differences() {
    type AD = CpuAutodiff;
    let device = Default::default();
    for disc in discretizations() {
        let (m, x, w): (Mamba<AD>, _, _) = seeded(21, || {
            let m = MambaConfig::new(4)
                .with_d_state(3)
                .with_dt_min(0.05)
                .with_dt_max(0.5)
                .with_discretization(disc)
                .with_scan(ScanKind::Fused)
                .try_init(&device)
                .unwrap();
            let x = Tensor::<AD, 3>::random([2, 6, 4], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<AD, 3>::random([2, 6, 4], Distribution::Normal(0.0, 1.0), &device);
            (m, x, w)
        });
        let grads_of = |m: &Mamba<AD>| {
            let g = loss(m, x.clone(), w.clone()).backward();
            [
                vec_of(m.a_log.grad(&g).unwrap()),
                vec_of(m.d.grad(&g).unwrap()),
                vec_of(m.dt_proj.bias.as_ref().unwrap().grad(&g).unwrap()),
                vec_of(m.dt_proj.weight.grad(&g).unwrap()),
                vec_of(m.conv1d.weight.grad(&g).unwrap()),
                vec_of(m.x_proj.weight.grad(&g).unwrap()),
                vec_of(m.in_proj.weight.grad(&g).unwrap()),
                vec_of(m.out_proj.weight.grad(&g).unwrap()),
            ]
        };
        let fused = grads_of(&fresh_leaves(&m));
        let m_seq = fresh_leaves(&m).with_scan(ScanKind::Sequential);
        let seq = grads_of(&m_seq);
        for (i, (f, s)) in fused.iter().zip(&seq).enumerate() {
            let scale = s.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-3);
            let err = max_abs_diff(f, s);
            assert!(
                err < 1e-4 * scale,
                "{disc:?} param #{i}: fused vs sequential {err}"
            );
        }
        // Central differences on a_log[e, n] and the Δ bias (in f32: eps 1e-2, loose rtol).
        let base = m.a_log.val().inner();
        let fd_loss = |a_log: Tensor<Cpu, 2>| {
            let mut m2 = m.clone();
            m2.a_log = Param::from_tensor(Tensor::<AD, 2>::from_inner(a_log));
            vec_of(loss(&m2, x.clone(), w.clone()))[0]
        };
        for idx in [0usize, 4, 7] {
            let eps = 1e-2;
            let mut plus = vec_of(base.clone());
            let mut minus = plus.clone();
            plus[idx] += eps;
            minus[idx] -= eps;
            let shape = base.dims();
            let t = |v: Vec<f64>| {
                Tensor::<Cpu, 2>::from_data(
                    TensorData::new(v.into_iter().map(|x| x as f32).collect::<Vec<_>>(), shape),
                    &device,
                )
            };
            let fd = (fd_loss(t(plus)) - fd_loss(t(minus))) / (2.0 * eps);
            let an = fused[0][idx];
            assert!(
                (fd - an).abs() < 2e-2 * an.abs().max(0.05),
                "{disc:?} dL/dA_log[{idx}]: autodiff {an} vs finite diff {fd}"
            );
        }
    }
}

// ---------------------------------------------------------------- CPU fast path

// ---------------------------------------------------------------- A = −I and constant Δ

/// The three non-reference combinations of `A` and `Δ`.
fn variants() -> [(StateMatrix, StepSize); 3] {
    let constant = StepSize::Constant { value: 0.3 };
    [
        (StateMatrix::FixedNegIdentity, StepSize::Selective),
        (StateMatrix::Learned, constant),
        (StateMatrix::FixedNegIdentity, constant),
    ]
}

fn variant_mixer<B: Backend>(
    a: StateMatrix,
    dt: StepSize,
    disc: Discretization,
    scan: ScanKind,
    seed: u64,
) -> Mamba<B> {
    seeded(seed, || {
        MambaConfig::new(6)
            .with_d_state(3)
            .with_d_conv(3)
            .with_dt_min(0.05)
            .with_dt_max(0.9)
            .with_bias(true)
            .with_scan(scan)
            .with_discretization(disc)
            .with_state_matrix(Some(a))
            .with_step_size(Some(dt))
            .try_init(&Default::default())
            .unwrap()
    })
}

#[test]
fn variants_forward_matches_independent_f64_implementation() {
    let device = Default::default();
    let (batch, len) = (2, 9);
    for (a, dt) in variants() {
        for disc in discretizations() {
            for scan in [ScanKind::Sequential, ScanKind::Parallel, ScanKind::Fused] {
                let m: Mamba<Cpu> = variant_mixer(a, dt, disc, scan, 5);
                assert_eq!((m.state_matrix(), m.step_size()), (a, dt));
                if a == StateMatrix::FixedNegIdentity {
                    // Same tensors as the reference (checkpoints load), A_log = 0.
                    assert_eq!(m.a_log.val().dims(), [12, 3]);
                    assert!(vec_of(m.a_log.val()).iter().all(|&v| v == 0.0));
                }
                let x = seeded(6, || {
                    Tensor::<Cpu, 3>::random(
                        [batch, len, 6],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    )
                });
                let want = reference_forward(&m, &vec_of(x.clone()), batch, len);
                let got = vec_of(m.forward(x));
                let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                assert!(scale > 1e-2, "output too small to test");
                let err = max_abs_diff(&got, &want);
                assert!(
                    err < 2e-5 * scale.max(1.0),
                    "{a:?}/{dt:?}/{disc:?}/{scan:?}: max err {err}"
                );
            }
        }
    }
}

#[test]
fn variants_report_a_of_minus_one_and_the_constant_delta() {
    let device = Default::default();
    for (a, dt) in variants() {
        let m: Mamba<Cpu> = variant_mixer(a, dt, Discretization::Simplified, ScanKind::Fused, 9);
        for seed in [1, 2] {
            let x = seeded(seed, || {
                Tensor::<Cpu, 3>::random([2, 5, 6], Distribution::Normal(0.0, 3.0), &device)
            });
            let (delta, a_mat) = m.selectivity(x).unwrap(); // [2, 5, 12], [12, 3]
            let a_mat = vec_of(a_mat);
            let delta = vec_of(delta);
            match a {
                StateMatrix::FixedNegIdentity => assert!(a_mat.iter().all(|&v| v == -1.0)),
                StateMatrix::Learned => assert_eq!(&a_mat[..3], &[-1.0, -2.0, -3.0]),
            }
            match dt {
                StepSize::Constant { value } => {
                    assert!(
                        delta.iter().all(|&d| (d - value).abs() < 1e-7),
                        "Δ = {value}"
                    )
                }
                StepSize::Selective => {
                    let spread = delta.iter().fold(0.0f64, |m, v| m.max(v.abs()))
                        - delta.iter().fold(f64::MAX, |m, v| m.min(v.abs()));
                    assert!(spread > 1e-3, "selective Δ varies");
                }
            }
        }
    }
}

#[test]
fn variants_step_and_chunks_equal_the_full_pass() {
    let device = Default::default();
    let (batch, len) = (2, 7);
    for (a, dt) in variants() {
        for disc in discretizations() {
            let m: Mamba<Cpu> = variant_mixer(a, dt, disc, ScanKind::Fused, 11);
            let x = seeded(12, || {
                Tensor::<Cpu, 3>::random([batch, len, 6], Distribution::Normal(0.0, 1.0), &device)
            });
            let (full, full_state) = m
                .forward_with_state(x.clone(), m.init_state(batch, &device))
                .unwrap();
            let full = vec_of(full);
            // Token by token.
            let mut state = m.init_state(batch, &device);
            let mut stepped = vec![0.0; batch * len * 6];
            for t in 0..len {
                let x_t = x.clone().narrow(1, t, 1).reshape([batch, 6]);
                let (y_t, next) = m.step(x_t, state).unwrap();
                state = next;
                for (bi, row) in vec_of(y_t).chunks(6).enumerate() {
                    stepped[(bi * len + t) * 6..(bi * len + t + 1) * 6].copy_from_slice(row);
                }
            }
            let err = max_abs_diff(&stepped, &full);
            assert!(err < 1e-5, "{a:?}/{dt:?}/{disc:?}: step vs full {err}");
            let err = max_abs_diff(&vec_of(state.ssm), &vec_of(full_state.ssm.clone()));
            assert!(err < 1e-5, "{a:?}/{dt:?}/{disc:?}: final state {err}");
            // Two chunks through the state.
            let (y1, s1) = m
                .forward_with_state(x.clone().narrow(1, 0, 3), m.init_state(batch, &device))
                .unwrap();
            let (y2, s2) = m.forward_with_state(x.narrow(1, 3, len - 3), s1).unwrap();
            let chunked = vec_of(Tensor::cat(vec![y1, y2], 1));
            let err = max_abs_diff(&chunked, &full);
            assert!(err < 1e-5, "{a:?}/{dt:?}/{disc:?}: chunks vs full {err}");
            let err = max_abs_diff(&vec_of(s2.ssm), &vec_of(full_state.ssm));
            assert!(err < 1e-5, "{a:?}/{dt:?}/{disc:?}: chunked state {err}");
        }
    }
}

#[test]
fn fixed_a_and_constant_delta_get_no_gradient() {
    type AD = CpuAutodiff;
    let device = Default::default();
    let constant = StepSize::Constant { value: 0.3 };
    for scan in [ScanKind::Sequential, ScanKind::Fused] {
        let m: Mamba<AD> = fresh_leaves(&variant_mixer(
            StateMatrix::FixedNegIdentity,
            constant,
            Discretization::bilinear(),
            scan,
            3,
        ));
        let (x, w) = seeded(4, || {
            (
                Tensor::<AD, 3>::random([2, 5, 6], Distribution::Normal(0.0, 1.0), &device),
                Tensor::<AD, 3>::random([2, 5, 6], Distribution::Normal(0.0, 1.0), &device),
            )
        });
        let g = loss(&m, x, w).backward();
        assert!(m.a_log.grad(&g).is_none(), "{scan:?}: A is fixed");
        assert!(
            m.dt_proj.weight.grad(&g).is_none(),
            "{scan:?}: Δ is constant"
        );
        assert!(m.dt_proj.bias.as_ref().unwrap().grad(&g).is_none());
        for (name, grad) in [
            ("d", m.d.grad(&g).map(vec_of)),
            ("x_proj", m.x_proj.weight.grad(&g).map(vec_of)),
            ("in_proj", m.in_proj.weight.grad(&g).map(vec_of)),
        ] {
            let grad = grad.unwrap_or_else(|| panic!("{scan:?}: {name} is trained"));
            assert!(grad.iter().any(|v| v.abs() > 0.0), "{scan:?}: {name}");
        }
    }
    // A freshly built fixed-A mixer does not even ask for a gradient of A_log.
    let m: Mamba<AD> = variant_mixer(
        StateMatrix::FixedNegIdentity,
        StepSize::Selective,
        Discretization::Simplified,
        ScanKind::Fused,
        3,
    );
    assert!(!m.a_log.val().is_require_grad());
    assert!(m.d.val().is_require_grad());
    assert!(m.dt_proj.weight.val().is_require_grad());
    // A constant-Δ mixer does not train its (unused) dt_proj.
    let m: Mamba<AD> = variant_mixer(
        StateMatrix::Learned,
        constant,
        Discretization::Simplified,
        ScanKind::Fused,
        3,
    );
    assert!(m.a_log.val().is_require_grad());
    assert!(!m.dt_proj.weight.val().is_require_grad());
    assert!(!m.dt_proj.bias.as_ref().unwrap().val().is_require_grad());
}

#[test]
fn constant_delta_must_be_finite_and_positive() {
    let device = Default::default();
    for value in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        let err = MambaConfig::new(4)
            .with_step_size(Some(StepSize::Constant { value }))
            .try_init::<Cpu>(&device)
            .unwrap_err();
        assert!(
            matches!(err, SeqError::OutOfRange { name, .. } if name.contains("step_size")),
            "{value}: {err}"
        );
    }
    assert!(
        MambaConfig::new(4)
            .with_step_size(Some(StepSize::Constant { value: 1e-3 }))
            .try_init::<Cpu>(&device)
            .is_ok()
    );
}

#[test]
fn configurations_without_the_variant_fields_still_load() {
    let config = MambaConfig::new(4).with_d_state(3);
    let mut json: serde_json::Value = serde_json::from_str(&config.to_string()).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert!(fields.remove("state_matrix").is_some());
    assert!(fields.remove("step_size").is_some());
    let old: MambaConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.resolved_state_matrix(), StateMatrix::Learned);
    assert_eq!(old.resolved_step_size(), StepSize::Selective);
    // The variants round-trip.
    let variant = config
        .with_state_matrix(Some(StateMatrix::FixedNegIdentity))
        .with_step_size(Some(StepSize::Constant { value: 0.25 }));
    let back: MambaConfig = serde_json::from_str(&variant.to_string()).unwrap();
    assert_eq!(back.state_matrix, Some(StateMatrix::FixedNegIdentity));
    assert_eq!(back.step_size, Some(StepSize::Constant { value: 0.25 }));
}
