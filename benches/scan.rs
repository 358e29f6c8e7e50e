//! Scan comparison: `cargo bench --bench scan`.
//!
//! Groups `forward` (CPU backend) and `forward_backward` (CPU autodiff backend, loss = Σ y),
//! one benchmark id per method (`sequential`, `parallel`, `log_space`, `fused`) and length
//! `L ∈ {64, 256, 1024, 4096}`, with `B = 8`, `E = 64`, `N = 16`, Mamba-like inputs
//! (Δ ∈ [0.001, 0.1], A = −(n+1)) and the simplified discretization.
//!
//! The tensor-op parallel and log-space scans are very slow on burn-ndarray at long lengths
//! (seconds to tens of seconds per iteration, criterion needs ≥ 10), so by default they are
//! measured up to `L = 1024` (forward) and `L = 256` (forward_backward); set
//! `SCAN_BENCH_FULL=1` for the whole grid (takes far longer than 10 minutes on 2 cores).

use burn::tensor::{Distribution, ElementConversion, Tensor, backend::Backend};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use seqlayers::backend::{Cpu, CpuAutodiff, CpuDevice};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};
use std::time::Duration;

const B: usize = 8;
const E: usize = 64;
const N: usize = 16;
const LENGTHS: [usize; 4] = [64, 256, 1024, 4096];
const METHODS: [(&str, ScanKind); 4] = [
    ("sequential", ScanKind::Sequential),
    ("parallel", ScanKind::Parallel),
    ("log_space", ScanKind::LogSpace),
    ("fused", ScanKind::Fused),
];

fn input<Bk: Backend>(l: usize, grad: bool) -> SelectiveScanInput<Bk> {
    let device = Default::default();
    let g = |t: Tensor<Bk, 3>| if grad { t.require_grad() } else { t };
    let a_vals: Vec<f32> = (0..E * N).map(|i| -((i % N) as f32 + 1.0)).collect();
    let a = Tensor::<Bk, 2>::from_data(burn::tensor::TensorData::new(a_vals, [E, N]), &device);
    SelectiveScanInput {
        x: g(Tensor::random(
            [B, l, E],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        )),
        delta: g(Tensor::random(
            [B, l, E],
            Distribution::Uniform(0.001, 0.1),
            &device,
        )),
        a: if grad { a.require_grad() } else { a },
        b: g(Tensor::random(
            [B, l, N],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        )),
        c: g(Tensor::random(
            [B, l, N],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        )),
        d: Some(Tensor::ones([E], &device)),
        h0: None,
    }
}

fn run_forward<Bk: Backend>(kind: ScanKind, inp: &SelectiveScanInput<Bk>) -> f32 {
    let (y, _) =
        selective_scan(kind, Discretization::Simplified, inp.clone()).expect("valid input");
    y.sum().into_scalar().elem::<f32>()
}

/// Whether `(method, L)` is measured in this run (see the module docs).
fn included(kind: ScanKind, l: usize, backward: bool) -> bool {
    let full = std::env::var("SCAN_BENCH_FULL").is_ok_and(|v| v == "1");
    let cheap = matches!(kind, ScanKind::Sequential | ScanKind::Fused);
    full || cheap || l <= if backward { 256 } else { 1024 }
}

fn bench(c: &mut Criterion) {
    let _device = CpuDevice::default();
    println!("{}", seqlayers::simd::report());
    let mut fwd = c.benchmark_group("forward");
    fwd.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for l in LENGTHS {
        let inp = input::<Cpu>(l, false);
        for (name, kind) in METHODS.into_iter().filter(|m| included(m.1, l, false)) {
            fwd.bench_with_input(BenchmarkId::new(name, l), &l, |bch, _| {
                bch.iter(|| run_forward(kind, &inp))
            });
        }
    }
    fwd.finish();

    let mut fb = c.benchmark_group("forward_backward");
    fb.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for l in LENGTHS {
        let inp = input::<CpuAutodiff>(l, true);
        for (name, kind) in METHODS.into_iter().filter(|m| included(m.1, l, true)) {
            fb.bench_with_input(BenchmarkId::new(name, l), &l, |bch, _| {
                bch.iter(|| {
                    let (y, _) = selective_scan(kind, Discretization::Simplified, inp.clone())
                        .expect("valid input");
                    let grads = y.sum().backward();
                    let gx = inp.x.grad(&grads).expect("x gradient");
                    gx.sum().into_scalar().elem::<f32>()
                })
            });
        }
    }
    fb.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
