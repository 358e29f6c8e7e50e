//! Times one Mamba training step (forward + backward, no optimizer) on the CPU backend.
//!
//! Workload of the associative-recall task: 2 residual Mamba blocks, batch 64, length 64,
//! `N = 16`, `K = 4`, `expand = 2`, at `d_model` 8 (E = 16) and 64 (E = 128), with the fused and
//! the sequential scans. Prints the median and minimum milliseconds per step.
//!
//! ```text
//! cargo run --release --example mamba_speed                                # all cases
//! cargo run --release --example mamba_speed -- --d-model 8 --scan fused    # one case
//! ```
//! (Without `--release`, `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example mamba_speed`
//! avoids a release build of Burn, but the dev profile keeps debug assertions in the
//! dependencies and runs about 2× slower.)
//!
//! Timings depend heavily on machine load; report them with `uptime`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::ssm::{MambaBlock, MambaConfig, ScanKind};

const BATCH: usize = 64;
const LEN: usize = 64;
const LAYERS: usize = 2;

fn step(blocks: &[MambaBlock<CpuAutodiff>], x: Tensor<CpuAutodiff, 3>) {
    let mut h = x;
    for block in blocks {
        h = block.forward(h); // [B, L, D]
    }
    let loss = h.powf_scalar(2.0).mean(); // [1]
    let grads = loss.backward();
    std::hint::black_box(grads);
}

fn time_case(d_model: usize, scan: ScanKind, iters: usize) -> (f64, f64) {
    let device = Default::default();
    <CpuAutodiff as burn::tensor::backend::Backend>::seed(&device, 0);
    let cfg = MambaConfig::new(d_model).with_scan(scan);
    let blocks: Vec<MambaBlock<CpuAutodiff>> = (0..LAYERS)
        .map(|_| cfg.try_init_block(&device).expect("valid config"))
        .collect();
    let x = Tensor::<Cpu, 3>::random(
        [BATCH, LEN, d_model],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let x = Tensor::<CpuAutodiff, 3>::from_inner(x).require_grad();
    for _ in 0..3 {
        step(&blocks, x.clone());
    }
    let mut ms: Vec<f64> = (0..iters)
        .map(|_| {
            let t0 = Instant::now();
            step(&blocks, x.clone());
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

/// Times one Mamba training step on the CPU backend.
#[derive(clap::Parser, Debug)]
#[command(about = "Times one Mamba training step (forward + backward) on the CPU backend")]
struct Args {
    /// Model widths `d_model` to time.
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 64])]
    d_model: Vec<usize>,
    /// Scans to time.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Scan::Fused, Scan::Sequential])]
    scan: Vec<Scan>,
}

/// A scan implementation, as a flag value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Fused,
    Sequential,
    Parallel,
}

impl Scan {
    fn kind(self) -> ScanKind {
        match self {
            Scan::Fused => ScanKind::Fused,
            Scan::Sequential => ScanKind::Sequential,
            Scan::Parallel => ScanKind::Parallel,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scan::Fused => "fused",
            Scan::Sequential => "sequential",
            Scan::Parallel => "parallel",
        }
    }
}

fn main() {
    use clap::Parser;
    let args = Args::parse();
    if let Some(&d) = args.d_model.iter().find(|&&d| d == 0) {
        eprintln!("error: --d-model must be at least 1 (got {d})");
        std::process::exit(2);
    }
    let dims = args.d_model;
    let scans: Vec<(&str, ScanKind)> = args.scan.iter().map(|s| (s.name(), s.kind())).collect();
    println!("{}", seqlayers::simd::report());
    println!(
        "Mamba training step (fwd+bwd), {LAYERS} blocks, batch {BATCH}, L {LEN}, N 16, K 4, expand 2"
    );
    println!(
        "{:>8} {:>11} {:>12} {:>10}",
        "d_model", "scan", "median ms", "min ms"
    );
    for &d in &dims {
        for &(name, scan) in &scans {
            let iters = if d >= 64 || scan == ScanKind::Sequential {
                10
            } else {
                30
            };
            let (median, min) = time_case(d, scan, iters);
            println!("{d:>8} {name:>11} {median:>12.2} {min:>10.2}");
        }
    }
}
