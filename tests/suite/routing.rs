//! The one routing helper of the fused ops (`src/dispatch.rs`): which path each op takes on
//! each backend, that the kernels really run where the table says so, and the one-time
//! warning on a costly fallback.

use std::sync::Mutex;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use burn_ndarray::NdArray;
use seqlayers::attention::AttentionConfig;
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::simd::SimdLevel;
use seqlayers::{FusedOp, KernelPath, kernels};

use crate::simd_dispatch::{CHILD, run_child, run_scan_and_lstm};

type F64 = NdArray<f64>;

fn paths<B: Backend>() -> Vec<KernelPath> {
    let table = kernels::<B>();
    assert_eq!(
        table.map(|(op, _)| op),
        FusedOp::ALL,
        "one row per op, in order"
    );
    table.iter().map(|&(_, path)| path).collect()
}

#[test]
fn every_op_takes_the_path_of_its_backend() {
    assert_eq!(paths::<Cpu>(), [KernelPath::CpuKernel; 10]);
    assert_eq!(paths::<CpuAutodiff>(), [KernelPath::CpuKernelNode; 10]);
    assert_eq!(paths::<F64>(), [KernelPath::TensorOps; 10]);
    assert_eq!(paths::<Autodiff<F64>>(), [KernelPath::TensorOps; 10]);
    // The same CPU backend under another checkpointing strategy has no kernel node.
    type Balanced = Autodiff<Cpu, BalancedCheckpointing>;
    assert_eq!(paths::<Balanced>(), [KernelPath::TensorOps; 10]);
}

#[test]
fn fallback_warnings_fire_once_per_op_and_backend() {
    run_child("routing::child_fallback_warnings", None);
}

/// Collects the `log` records of this process.
struct Collect(Mutex<Vec<String>>);

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Collect = Collect(Mutex::new(Vec::new()));

/// Runs the scan, the LSTM and attention (with its projections) on backend `B`. The routing
/// goes by the backend type; the tensors' dtype is the process default, settled as f32 by the
/// CPU run that comes first (see `seqlayers::backend`).
fn run_ops<B: Backend>() {
    run_scan_and_lstm::<B>();
    let device = Default::default();
    let x = Tensor::<B, 3>::random([2, 5, 4], Distribution::Default, &device);
    AttentionConfig::new(4, 2).init::<B>(&device).forward(x);
}

#[test]
#[ignore = "run in a process of its own by fallback_warnings_fire_once_per_op_and_backend"]
fn child_fallback_warnings() {
    if std::env::var_os(CHILD).is_none() {
        return; // the log and the counts are only this test's when it is alone in its process
    }
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let warnings = || LOGGER.0.lock().unwrap().clone();

    // The CPU backend: kernels, no warning; the scan and LSTM kernels ran (their SIMD counts).
    let runs = || SimdLevel::ALL.map(SimdLevel::runs).iter().sum::<u64>();
    let before = runs();
    run_ops::<Cpu>();
    assert!(runs() > before, "the CPU kernels ran");
    assert_eq!(warnings(), Vec::<String>::new());

    // NdArray<f64>: tensor ops, one warning per costly op, none on the second run.
    let before = runs();
    run_ops::<F64>();
    run_ops::<F64>();
    assert_eq!(runs(), before, "no CPU kernel ran on NdArray<f64>");
    let got = warnings();
    assert_eq!(got.len(), 3, "{got:#?}");
    for (warning, op) in got
        .iter()
        .zip([FusedOp::Scan, FusedOp::Lstm, FusedOp::Attention])
    {
        assert!(
            warning.contains(&format!("no fused {op} kernel"))
                && warning.contains("NdArray<f64")
                && warning.contains("reported once"),
            "{warning}"
        );
    }
    assert!(got[0].contains("[B, L, E, N]"), "{}", got[0]);
}
