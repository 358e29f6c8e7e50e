//! Which path each fused op takes on wgpu, and the one-time warnings of the costly fallbacks.

use std::sync::Mutex;

use burn::nn::LstmConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use seqlayers::attention::AttentionConfig;
use seqlayers::backend::{Wgpu, WgpuAutodiff};
use seqlayers::internals::cubecl_scan_launches;
use seqlayers::ssm::{MambaConfig, ScanKind};
use seqlayers::{FusedOp, KernelPath, kernels};

use crate::gpu;

/// The environment variable that marks the child process of [`child_fallback_warnings`].
const CHILD: &str = "SEQLAYERS_GPU_ROUTING_CHILD";

#[test]
fn every_op_takes_the_path_of_its_backend_on_wgpu() {
    use KernelPath::*;
    let expect = |op: FusedOp, plain: KernelPath, autodiff: KernelPath| {
        let row = |table: [(FusedOp, KernelPath); 10]| {
            table
                .iter()
                .find(|(o, _)| *o == op)
                .expect("one row per op")
                .1
        };
        assert_eq!(row(kernels::<Wgpu>()), plain, "{op} on Wgpu");
        assert_eq!(
            row(kernels::<WgpuAutodiff>()),
            autodiff,
            "{op} on Autodiff<Wgpu>"
        );
    };
    expect(FusedOp::Scan, GpuKernel, GpuKernelNode);
    expect(FusedOp::Attention, GpuKernel, GpuKernelNode);
    for op in [
        FusedOp::Linear,
        FusedOp::ConvSilu,
        FusedOp::Activation,
        FusedOp::Lstm,
        FusedOp::Norm,
        FusedOp::Adam,
        FusedOp::Reshape,
        FusedOp::Add,
    ] {
        expect(op, TensorOps, TensorOps);
    }
}

#[test]
fn a_mamba_layer_on_wgpu_runs_the_cubecl_scan() {
    let device = gpu();
    let before = cubecl_scan_launches();
    let mamba = MambaConfig::new(8)
        .with_scan(ScanKind::Fused)
        .init::<Wgpu>(&device);
    let x = Tensor::<Wgpu, 3>::random([2, 6, 8], Distribution::Default, &device);
    let y = mamba.forward(x);
    assert_eq!(y.dims(), [2, 6, 8]);
    let after = cubecl_scan_launches();
    // At least one: other tests of this binary may launch the kernel at the same time.
    assert!(
        after[0] > before[0],
        "the forward kernel ran: {before:?} → {after:?}"
    );
}

#[test]
fn fallback_warnings_fire_once_per_op_on_wgpu() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            "routing::child_fallback_warnings",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("start the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Collects the `log` warnings of this process.
struct Collect(Mutex<Vec<String>>);

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn && record.args().to_string().contains("seqlayers") {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Collect = Collect(Mutex::new(Vec::new()));

/// The scan, the LSTM and attention on backend `B`.
fn run_ops<B: Backend>(device: &B::Device) {
    let x = Tensor::<B, 3>::random([2, 5, 4], Distribution::Default, device);
    MambaConfig::new(4)
        .with_scan(ScanKind::Fused)
        .init::<B>(device)
        .forward(x.clone());
    let lstm = LstmConfig::new(4, 4, true).init::<B>(device);
    seqlayers::lstm::lstm_forward(&lstm, x.clone(), None);
    AttentionConfig::new(4, 2).init::<B>(device).forward(x);
}

#[test]
#[ignore = "run in a process of its own by fallback_warnings_fire_once_per_op_on_wgpu"]
fn child_fallback_warnings() {
    if std::env::var_os(CHILD).is_none() {
        return; // the log is only this test's when it is alone in its process
    }
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let warnings = || LOGGER.0.lock().unwrap().clone();
    let device = gpu();
    // Wgpu: the scan and attention have kernels (no warning); the LSTM falls back, once.
    run_ops::<Wgpu>(&device);
    run_ops::<Wgpu>(&device);
    let got = warnings();
    assert_eq!(got.len(), 1, "{got:#?}");
    let lstm = format!("no fused {} kernel", FusedOp::Lstm);
    assert!(
        got[0].contains(&lstm) && got[0].contains("CubeBackend"),
        "{}",
        got[0]
    );
    // Autodiff<Wgpu>: the same, once more for this backend type.
    run_ops::<WgpuAutodiff>(&device);
    let got = warnings();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].contains(&lstm) && got[1].contains("Autodiff"),
        "{}",
        got[1]
    );
}
