use burn::tensor::{Distribution, Tensor};
use seqlayers::backend::{CpuAutodiff, CpuDevice};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};
use std::time::Instant;
fn run(kind: ScanKind, b: usize, l: usize, e: usize, n: usize, iters: usize) {
    let dev = CpuDevice::default();
    let mk = || SelectiveScanInput::<CpuAutodiff> {
        x: Tensor::random([b, l, e], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        delta: Tensor::random([b, l, e], Distribution::Uniform(0.001, 0.1), &dev).require_grad(),
        a: Tensor::<CpuAutodiff, 2>::random([e, n], Distribution::Uniform(-8.0, -1.0), &dev)
            .require_grad(),
        b: Tensor::random([b, l, n], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        c: Tensor::random([b, l, n], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        d: Some(Tensor::ones([e], &dev).require_grad()),
        h0: None,
    };
    let inp = mk();
    let mut best_f = f64::MAX;
    let mut best_fb = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        let (y, _) = selective_scan(kind, Discretization::Simplified, inp.clone()).unwrap();
        let _ = y.clone().sum().into_scalar();
        best_f = best_f.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (y, _) = selective_scan(kind, Discretization::Simplified, inp.clone()).unwrap();
        let g = y.sum().backward();
        let _ = inp.x.grad(&g).unwrap().sum().into_scalar();
        best_fb = best_fb.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{kind:?} b{b} l{l} e{e} n{n}: fwd {:.3} ms, fwd+bwd {:.3} ms",
        best_f * 1e3,
        best_fb * 1e3
    );
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kinds: Vec<ScanKind> = if args.len() > 1 && args[1] == "all" {
        vec![ScanKind::Fused, ScanKind::Parallel, ScanKind::Sequential]
    } else {
        vec![ScanKind::Fused]
    };
    for k in kinds {
        run(k, 64, 64, 16, 16, 10);
        run(k, 64, 64, 128, 16, 3);
        run(k, 8, 1024, 64, 16, 3);
    }
}
