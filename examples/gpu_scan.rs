//! The selective scan's forward + backward per path on the wgpu device and on the CPU: time and
//! peak memory (a measuring example, not a test).
//!
//! ```text
//! cargo run --features wgpu --example gpu_scan -- [--quick] [--out DIR] [--seed S]
//! ```
//!
//! Paths, one scan of `x` `[B, L, E]` with `N` states and its gradients (`Autodiff`):
//! - `wgpu cubecl`: the CubeCL kernels (`ScanKind::Fused` on `Autodiff<Wgpu>`);
//! - `wgpu tensor ops`: the parallel scan in tensor ops on the same device (`ScanKind::Parallel`),
//!   what every GPU user got before the kernel;
//! - `cpu kernel`: the Rust kernel on `Autodiff<NdArray<f32>>` (`ScanKind::Fused`).
//!
//! Each path runs in a process of its own (this program started again with `--path`), so that
//! its peak is its own: on wgpu, the bytes the device's memory pool reserved (a pool only grows
//! while the process runs), on the CPU the growth of the process's peak resident memory
//! (`VmHWM`). On Mesa's software Vulkan device (lavapipe) the GPU is the same two CPU cores, so
//! the times say little; the point is that the kernel path runs and its memory grows with
//! `B·L·E`, not `B·L·E·N`. Writes `gpu_scan.csv` and `gpu_scan.md` to `--out`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use clap::Parser;
use seqlayers::backend::{CpuAutodiff, WgpuAutodiff, WgpuDevice};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Forward + backward time and peak memory of the selective scan per path")]
struct Args {
    /// Smaller sizes and fewer repetitions (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Output folder for gpu_scan.csv and gpu_scan.md.
    #[arg(long, default_value = "docs/results/gpu_scan")]
    out: PathBuf,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run one path in this process and print its line (used by the parent run).
    #[arg(long, hide = true)]
    path: Option<String>,
    /// Sequence length of the one-path run.
    #[arg(long, hide = true, default_value_t = 0)]
    len: usize,
}

const PATHS: [&str; 3] = ["wgpu cubecl", "wgpu tensor ops", "cpu kernel"];
const BATCH: usize = 4;
const WIDTH: usize = 64;
const STATES: usize = 16;

/// Peak resident memory of this process in bytes (`VmHWM`), 0 where unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One forward + backward; returns its seconds.
fn step<B: AutodiffBackend>(kind: ScanKind, inp: &SelectiveScanInput<B>) -> f64 {
    let t0 = Instant::now();
    let (y, h) = selective_scan(kind, Discretization::Simplified, inp.clone()).expect("valid");
    let loss = y.powf_scalar(2.0).sum() + h.sum();
    let grads = loss.backward();
    let dx = inp.x.grad(&grads).expect("∂x");
    // Reading one value waits for the device to finish.
    let _ = dx.sum().into_scalar();
    t0.elapsed().as_secs_f64()
}

fn input<B: AutodiffBackend>(len: usize, device: &B::Device) -> SelectiveScanInput<B> {
    let r =
        |shape: [usize; 3]| Tensor::<B, 3>::random(shape, Distribution::Uniform(-1.0, 1.0), device);
    SelectiveScanInput {
        x: r([BATCH, len, WIDTH]).require_grad(),
        delta: Tensor::<B, 3>::random(
            [BATCH, len, WIDTH],
            Distribution::Uniform(0.001, 0.1),
            device,
        )
        .require_grad(),
        a: Tensor::<B, 2>::random([WIDTH, STATES], Distribution::Uniform(-16.0, -1.0), device)
            .require_grad(),
        b: r([BATCH, len, STATES]).require_grad(),
        c: r([BATCH, len, STATES]).require_grad(),
        d: None,
        h0: None,
    }
}

/// Median seconds of `reps` steps after one warm-up.
fn time<B: AutodiffBackend>(
    kind: ScanKind,
    len: usize,
    reps: usize,
    device: &B::Device,
    seed: u64,
) -> f64 {
    B::seed(device, seed);
    let inp = input::<B>(len, device);
    step(kind, &inp);
    let mut s: Vec<f64> = (0..reps).map(|_| step(kind, &inp)).collect();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The CPU's model name (`/proc/cpuinfo`), or "unknown CPU".
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Runs `path` at `len` in this process; prints `RESULT <ms> <peak bytes>`, or for the path
/// `adapter`, `ADAPTER <name and driver of the default wgpu adapter>`.
fn run_one(path: &str, len: usize, reps: usize, seed: u64) {
    if path == "adapter" {
        let setup = burn_wgpu::init_setup::<burn_wgpu::graphics::AutoGraphicsApi>(
            &WgpuDevice::default(),
            Default::default(),
        );
        let info = setup.adapter.get_info();
        println!(
            "ADAPTER {} ({}, {:?})",
            info.name, info.driver, info.device_type
        );
        return;
    }
    let base_rss = peak_rss();
    let (secs, peak) = match path {
        "wgpu cubecl" | "wgpu tensor ops" => {
            let device = WgpuDevice::default();
            let kind = if path == "wgpu cubecl" {
                ScanKind::Fused
            } else {
                ScanKind::Parallel
            };
            let secs = time::<WgpuAutodiff>(kind, len, reps, &device, seed);
            let client = <cubecl::wgpu::WgpuRuntime as cubecl::Runtime>::client(&device);
            let usage = client.memory_usage().expect("the device's memory usage");
            (secs, usage.bytes_reserved)
        }
        "cpu kernel" => {
            let device = Default::default();
            let secs = time::<CpuAutodiff>(ScanKind::Fused, len, reps, &device, seed);
            (secs, peak_rss().saturating_sub(base_rss))
        }
        other => panic!("unknown path {other:?}"),
    };
    println!("RESULT {:.3} {}", secs * 1e3, peak);
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let reps = if args.quick { 2 } else { 5 };
    if let Some(path) = &args.path {
        run_one(path, args.len, reps, args.seed);
        return Ok(());
    }
    let lens: &[usize] = if args.quick {
        &[64, 256]
    } else {
        &[256, 1024, 4096]
    };
    let exe = std::env::current_exe()?;
    let probe = Command::new(&exe).args(["--path", "adapter"]).output()?;
    let adapter = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ADAPTER ").map(str::to_string))
        .unwrap_or_else(|| "an unknown adapter".into());
    let cpu = cpu_name();
    println!("B = {BATCH}, E = {WIDTH}, N = {STATES}; wgpu adapter {adapter}; CPU {cpu}");
    println!(
        "{:<16} {:>6} {:>12} {:>14} {:>16}",
        "path", "L", "ms (median)", "peak MiB", "B·L·E·N f32 MiB"
    );
    let mut rows = Vec::new();
    for &len in lens {
        let full = (BATCH * len * WIDTH * STATES * 4) as f64 / (1 << 20) as f64;
        for path in PATHS {
            let out = Command::new(&exe)
                .args([
                    "--path",
                    path,
                    "--len",
                    &len.to_string(),
                    "--seed",
                    &args.seed.to_string(),
                ])
                .args(args.quick.then_some("--quick"))
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with("RESULT"))
                .unwrap_or_else(|| {
                    panic!(
                        "{path} at L = {len} failed:\n{text}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let mut parts = line.split_whitespace().skip(1);
            let ms: f64 = parts.next().and_then(|v| v.parse().ok()).expect("ms");
            let bytes: u64 = parts.next().and_then(|v| v.parse().ok()).expect("bytes");
            let mib = bytes as f64 / (1 << 20) as f64;
            println!("{path:<16} {len:>6} {ms:>12.1} {mib:>14.1} {full:>16.1}");
            rows.push((path, len, ms, mib, full));
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let mut csv = std::fs::File::create(args.out.join("gpu_scan.csv"))?;
    writeln!(
        csv,
        "path,len,batch,width,states,ms,peak_mib,full_state_mib"
    )?;
    for (path, len, ms, mib, full) in &rows {
        writeln!(
            csv,
            "{path},{len},{BATCH},{WIDTH},{STATES},{ms:.3},{mib:.2},{full:.2}"
        )?;
    }
    let mut md = std::fs::File::create(args.out.join("gpu_scan.md"))?;
    writeln!(md, "# Selective scan, forward + backward, per path\n")?;
    writeln!(
        md,
        "`cargo run --features wgpu --example gpu_scan{}` (seed {}); wgpu adapter \
         {adapter}; CPU {cpu}. B = {BATCH}, E = {WIDTH}, N = {STATES}; peak = the wgpu memory pool's \
         reserved bytes, or the CPU process's peak resident growth.\n",
        if args.quick { " -- --quick" } else { "" },
        args.seed
    )?;
    writeln!(
        md,
        "| path | L | ms (median) | peak MiB | one [B, L, E, N] f32 tensor, MiB |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    for (path, len, ms, mib, full) in &rows {
        writeln!(md, "| {path} | {len} | {ms:.1} | {mib:.1} | {full:.1} |")?;
    }
    println!("wrote {}", args.out.join("gpu_scan.md").display());
    Ok(())
}
