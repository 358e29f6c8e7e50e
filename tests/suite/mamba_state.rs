//! Recurrent inference and state: step ≡ forward, chunked prefill ≡ full forward, padded ≡
//! unpadded — for every discretization and scan kind.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Tensor, TensorData};
use seqlayers::backend::Cpu;
use seqlayers::ssm::Discretization;
use seqlayers::ssm::ScanKind;
use seqlayers::ssm::{Mamba, MambaConfig, MambaState};

use crate::common::{dev, next_seed, seeded};

const D_MODEL: usize = 6;

fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn max_abs_diff<const D: usize>(a: Tensor<Cpu, D>, b: Tensor<Cpu, D>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    vec_of(a)
        .iter()
        .zip(vec_of(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn assert_close<const D: usize>(a: Tensor<Cpu, D>, b: Tensor<Cpu, D>, tol: f64, what: &str) {
    let err = max_abs_diff(a, b);
    assert!(err <= tol, "{what}: max abs diff {err} > {tol}");
}

fn assert_state_close(a: &MambaState<Cpu>, b: &MambaState<Cpu>, tol: f64, what: &str) {
    assert_close(
        a.conv.clone(),
        b.conv.clone(),
        tol,
        &format!("{what} conv state"),
    );
    assert_close(
        a.ssm.clone(),
        b.ssm.clone(),
        tol,
        &format!("{what} ssm state"),
    );
}

fn discretizations() -> [Discretization; 3] {
    [
        Discretization::ZeroOrderHold,
        Discretization::Simplified,
        Discretization::bilinear(),
    ]
}

const SCANS: [ScanKind; 4] = [
    ScanKind::Sequential,
    ScanKind::Parallel,
    ScanKind::LogSpace,
    ScanKind::Fused,
];

/// Tolerance for comparisons between two f32 paths of O(1) outputs.
fn tol(scan: ScanKind) -> f64 {
    match scan {
        // Log-space scans lose precision with Σ Δ|A| (documented in the scan module).
        ScanKind::LogSpace => 1e-4,
        _ => 1e-5,
    }
}

fn mixer(disc: Discretization, scan: ScanKind, d_conv: usize, seed: u64) -> Mamba<Cpu> {
    let device = Default::default();
    seeded(seed, || {
        MambaConfig::new(D_MODEL)
            .with_d_state(4)
            .with_d_conv(d_conv)
            .with_dt_min(0.01)
            .with_dt_max(0.5)
            .with_discretization(disc)
            .with_scan(scan)
            .try_init(&device)
            .unwrap()
    })
}

/// A standard-normal input; each call of a test draws other values, the same at every run.
fn input(batch: usize, len: usize) -> Tensor<Cpu, 3> {
    seeded(next_seed(), || {
        Tensor::random(
            [batch, len, D_MODEL],
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        )
    })
}

/// The padding mask (`true` = padding, the crate's convention) of rows of "real token" flags.
fn mask_from(rows: &[Vec<bool>]) -> Tensor<Cpu, 2, Bool> {
    let (b, l) = (rows.len(), rows[0].len());
    let flat: Vec<bool> = rows.iter().flatten().map(|&real| !real).collect();
    Tensor::from_data(TensorData::new(flat, [b, l]), &Default::default())
}

/// Runs `x` token by token through `step` from `state`.
fn run_steps(
    m: &Mamba<Cpu>,
    x: Tensor<Cpu, 3>,
    mut state: MambaState<Cpu>,
) -> (Tensor<Cpu, 3>, MambaState<Cpu>) {
    let [batch, len, d] = x.dims();
    let mut ys = Vec::with_capacity(len);
    for t in 0..len {
        let x_t = x.clone().narrow(1, t, 1).reshape([batch, d]);
        let (y, s) = m.step(x_t, state).unwrap();
        ys.push(y.unsqueeze_dim::<3>(1));
        state = s;
    }
    (Tensor::cat(ys, 1), state)
}

#[test]
fn step_by_step_matches_forward() {
    let device = Default::default();
    for disc in discretizations() {
        for scan in SCANS {
            for d_conv in [1, 2, 4] {
                let m = mixer(disc, scan, d_conv, 1);
                let x = input(3, 11);
                let (y_full, s_full) = crate::common::from_zero(&m, x.clone()).unwrap();
                let (y_step, s_step) = run_steps(&m, x, m.init_state(3, &device));
                let what = format!("{disc:?}/{scan:?}/K={d_conv}");
                assert_close(y_step, y_full, tol(scan), &what);
                assert_state_close(&s_step, &s_full, tol(scan), &what);
            }
        }
    }
}

#[test]
fn chunked_prefill_matches_full_forward() {
    for disc in discretizations() {
        for scan in SCANS {
            let m = mixer(disc, scan, 4, 2);
            let len = 17;
            let x = input(2, len);
            let (y_full, s_full) = crate::common::from_zero(&m, x.clone()).unwrap();
            // Chunk boundaries, including chunks shorter than K − 1 = 3.
            for cuts in [
                vec![8],
                vec![1],
                vec![16],
                vec![1, 3, 5, 12],
                vec![2, 4, 6, 8, 10, 12, 14, 16],
            ] {
                let mut state = m.init_state(x.dims()[0], &x.device());
                let mut ys = Vec::new();
                let mut start = 0;
                for end in cuts.iter().copied().chain([len]) {
                    let (y, s) = m
                        .forward_with_state(x.clone().narrow(1, start, end - start), state)
                        .unwrap();
                    ys.push(y);
                    state = s;
                    start = end;
                }
                let what = format!("{disc:?}/{scan:?}/cuts {cuts:?}");
                assert_close(Tensor::cat(ys, 1), y_full.clone(), tol(scan), &what);
                assert_state_close(&state, &s_full, tol(scan), &what);
            }
        }
    }
}

#[test]
fn prefill_then_step_matches_full_forward() {
    for disc in discretizations() {
        for scan in [ScanKind::Sequential, ScanKind::Fused] {
            let m = mixer(disc, scan, 4, 3);
            let x = input(2, 10);
            let (y_full, s_full) = crate::common::from_zero(&m, x.clone()).unwrap();
            let (y_pre, s_pre) = crate::common::from_zero(&m, x.clone().narrow(1, 0, 6)).unwrap();
            let (y_gen, s_gen) = run_steps(&m, x.narrow(1, 6, 4), s_pre);
            let what = format!("{disc:?}/{scan:?}");
            assert_close(Tensor::cat(vec![y_pre, y_gen], 1), y_full, 1e-5, &what);
            assert_state_close(&s_gen, &s_full, 1e-5, &what);
        }
    }
}

/// Pads each sequence of `seqs` (each `[1, len_i, D]`) into a `[B, L, D]` batch at the
/// positions where `rows[b]` is true, with large garbage at the padded positions.
fn pad(seqs: &[Tensor<Cpu, 3>], rows: &[Vec<bool>]) -> Tensor<Cpu, 3> {
    let device = Default::default();
    let len = rows[0].len();
    let mut out = Vec::new();
    for (seq, row) in seqs.iter().zip(rows) {
        let mut next = 0;
        let mut cols = Vec::new();
        for &real in row {
            if real {
                cols.push(seq.clone().narrow(1, next, 1));
                next += 1;
            } else {
                cols.push(seeded(next_seed(), || {
                    Tensor::random([1, 1, D_MODEL], Distribution::Normal(5.0, 10.0), &device)
                }));
            }
        }
        assert_eq!(next, seq.dims()[1]);
        out.push(Tensor::cat(cols, 1));
    }
    assert_eq!(out[0].dims()[1], len);
    Tensor::cat(out, 0)
}

fn padding_cases() -> Vec<(&'static str, Vec<Vec<bool>>)> {
    let row = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
    vec![
        (
            "right",
            vec![row("111110000"), row("111111111"), row("110000000")],
        ),
        (
            "left",
            vec![row("000011111"), row("111111111"), row("000000011")],
        ),
        (
            "interior",
            vec![row("101100111"), row("011111010"), row("100000001")],
        ),
    ]
}

/// Each padded sequence gives, at its real positions and in its final state, exactly what
/// the unpadded sequence gives alone — from the zero state and from a carried state.
#[test]
fn padded_batch_matches_unpadded_sequences() {
    let device = Default::default();
    for disc in discretizations() {
        for scan in SCANS {
            let m = mixer(disc, scan, 4, 4);
            for (name, rows) in padding_cases() {
                for with_state in [false, true] {
                    let batch = rows.len();
                    let lens: Vec<usize> = rows
                        .iter()
                        .map(|r| r.iter().filter(|&&b| b).count())
                        .collect();
                    let seqs: Vec<Tensor<Cpu, 3>> = lens.iter().map(|&l| input(1, l)).collect();
                    // A non-trivial initial state: the end of some earlier prefix.
                    let init: Option<MambaState<Cpu>> = with_state
                        .then(|| crate::common::from_zero(&m, input(batch, 5)).unwrap().1);
                    let x = pad(&seqs, &rows);
                    let (y, s) = m
                        .forward_padded(
                            x,
                            init.clone().unwrap_or_else(|| m.init_state(batch, &dev())),
                            mask_from(&rows),
                        )
                        .unwrap();
                    let what = format!("{disc:?}/{scan:?}/{name}/state={with_state}");
                    for b in 0..batch {
                        let s_b = init.as_ref().map(|s0| MambaState {
                            conv: s0.conv.clone().narrow(0, b, 1),
                            ssm: s0.ssm.clone().narrow(0, b, 1),
                        });
                        let (y_ref, s_ref) = match s_b {
                            Some(s_b) => m.forward_with_state(seqs[b].clone(), s_b),
                            None => crate::common::from_zero(&m, seqs[b].clone()),
                        }
                        .unwrap();
                        let y_b = y.clone().narrow(0, b, 1);
                        let mut next = 0;
                        for (t, &real) in rows[b].iter().enumerate() {
                            let got = y_b.clone().narrow(1, t, 1);
                            if real {
                                let want = y_ref.clone().narrow(1, next, 1);
                                assert_close(got, want, tol(scan), &format!("{what} b{b} t{t}"));
                                next += 1;
                            } else {
                                assert_close(
                                    got,
                                    Tensor::zeros([1, 1, D_MODEL], &device),
                                    0.0,
                                    &what,
                                );
                            }
                        }
                        let s_got = MambaState {
                            conv: s.conv.clone().narrow(0, b, 1),
                            ssm: s.ssm.clone().narrow(0, b, 1),
                        };
                        assert_state_close(&s_got, &s_ref, tol(scan), &format!("{what} b{b}"));
                    }
                }
            }
        }
    }
}

/// An all-padding chunk is an identity: the state passes through unchanged.
#[test]
fn fully_padded_chunk_keeps_the_state() {
    let m = mixer(Discretization::Simplified, ScanKind::Fused, 4, 6);
    let (_, s0) = crate::common::from_zero(&m, input(2, 7)).unwrap();
    let none = mask_from(&[vec![false; 5], vec![false; 5]]);
    let (y, s1) = m.forward_padded(input(2, 5), s0.clone(), none).unwrap();
    assert_eq!(vec_of(y).iter().fold(0.0f64, |a, v| a.max(v.abs())), 0.0);
    assert_state_close(&s1, &s0, 0.0, "all-padding chunk");
}

#[test]
fn block_step_matches_block_forward() {
    let device = Default::default();
    let block = seeded(8, || {
        MambaConfig::new(D_MODEL)
            .with_scan(ScanKind::Fused)
            .try_init_block::<Cpu>(&device)
            .unwrap()
    });
    let x = input(2, 9);
    let y_full = block.forward(x.clone());
    let mut state = block.init_state(2, &device);
    for t in 0..9 {
        let x_t = x.clone().narrow(1, t, 1).reshape([2, D_MODEL]);
        let (y_t, s) = block.step(x_t, state).unwrap();
        state = s;
        let want = y_full.clone().narrow(1, t, 1).reshape([2, D_MODEL]);
        assert_close(y_t, want, 1e-5, &format!("block t{t}"));
    }
}
