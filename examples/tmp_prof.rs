use burn::tensor::{Distribution, Tensor};
use seqlayers::backend::{CpuAutodiff, CpuDevice};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};
fn main() {
    let (b, l, e, n) = (64, 64, 16, 16);
    let dev = CpuDevice::default();
    let inp = SelectiveScanInput::<CpuAutodiff> {
        x: Tensor::random([b, l, e], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        delta: Tensor::random([b, l, e], Distribution::Uniform(0.001, 0.1), &dev).require_grad(),
        a: Tensor::<CpuAutodiff, 2>::random([e, n], Distribution::Uniform(-8.0, -1.0), &dev)
            .require_grad(),
        b: Tensor::random([b, l, n], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        c: Tensor::random([b, l, n], Distribution::Uniform(-1.0, 1.0), &dev).require_grad(),
        d: Some(Tensor::ones([e], &dev).require_grad()),
        h0: None,
    };
    for _ in 0..300 {
        let (y, _) =
            selective_scan(ScanKind::Fused, Discretization::Simplified, inp.clone()).unwrap();
        let g = y.sum().backward();
        let _ = inp.x.grad(&g).unwrap().sum().into_scalar();
    }
}
