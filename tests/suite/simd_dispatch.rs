//! Which SIMD variant of the CPU kernels actually ran.
//!
//! [`SimdLevel::runs`] counts kernel calls inside the branch of the dispatch that calls each
//! variant. The checks run in a child process of their own (this test binary, started again
//! with one test and one thread), so that no other test's kernel calls move the counters: there
//! the counts are exact. If [`with_max_level`] or `SEQLAYERS_SIMD` were ignored, the kernels
//! would run at the CPU's widest level and the count of the level asked for would not move.

use std::process::Command;

use burn::nn::LstmConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use seqlayers::backend::Cpu;
use seqlayers::simd::{SimdLevel, env_cap, report, with_max_level};
use seqlayers::ssm::{Discretization, ScanKind, SelectiveScanInput, selective_scan};

/// Set in the child process only.
pub const CHILD: &str = "SEQLAYERS_TEST_SIMD_CHILD";

/// Runs the test `path` (e.g. `simd_dispatch::child_counts_each_level`) alone in a new process
/// of this binary, with `SEQLAYERS_SIMD` set to `cap` (or unset), and asserts that it ran and
/// passed. The child finds [`CHILD`] set.
pub fn run_child(path: &str, cap: Option<&str>) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        path,
        "--exact",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(CHILD, "1");
    match cap {
        Some(v) => cmd.env("SEQLAYERS_SIMD", v),
        None => cmd.env_remove("SEQLAYERS_SIMD"),
    };
    let out = cmd.output().expect("start the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {path} (SEQLAYERS_SIMD={cap:?}) failed:\n{stdout}\n{stderr}"
    );
}

fn counts() -> [u64; 3] {
    SimdLevel::ALL.map(SimdLevel::runs)
}

/// One fused-scan forward and one fused-LSTM forward on backend `B` (on the CPU backend both
/// kernels dispatch by SIMD level).
pub fn run_scan_and_lstm<B: Backend>() {
    let device = Default::default();
    let (b, l, e, n) = (2, 5, 3, 4);
    let rand = |shape: [usize; 3]| Tensor::<B, 3>::random(shape, Distribution::Default, &device);
    let input = SelectiveScanInput {
        x: rand([b, l, e]),
        delta: rand([b, l, e]).exp(),
        a: Tensor::<B, 2>::random([e, n], Distribution::Default, &device)
            .exp()
            .neg(),
        b: rand([b, l, n]),
        c: rand([b, l, n]),
        d: None,
        h0: None,
    };
    let (y, _) = selective_scan(ScanKind::Fused, Discretization::Simplified, input).unwrap();
    assert_eq!(y.dims(), [b, l, e]);
    let lstm = LstmConfig::new(e, 4, true).init::<B>(&device);
    let (h, _) = seqlayers::lstm::lstm_forward(&lstm, rand([b, l, e]), None);
    assert_eq!(h.dims(), [b, l, 4]);
}

fn run_kernels() {
    run_scan_and_lstm::<Cpu>();
}

#[test]
fn the_level_asked_for_is_the_level_that_ran() {
    run_child("simd_dispatch::child_counts_each_level", None);
}

#[test]
fn seqlayers_simd_caps_every_kernel_and_a_bad_value_is_reported() {
    run_child("simd_dispatch::child_env_cap_scalar", Some("scalar"));
    run_child("simd_dispatch::child_env_cap_unknown", Some("sse9"));
}

#[test]
#[ignore = "run in a process of its own by the_level_asked_for_is_the_level_that_ran"]
fn child_counts_each_level() {
    if std::env::var_os(CHILD).is_none() {
        return; // counts are only exact when this test is alone in its process
    }
    for level in SimdLevel::available() {
        let before = counts();
        with_max_level(level, run_kernels);
        let after = counts();
        for other in SimdLevel::ALL {
            let ran = after[other as usize] - before[other as usize];
            if other == level {
                // the scan's tasks and the LSTM's rows: at least one call each
                assert!(ran >= 2, "asked for {level}: {level} ran {ran} times");
            } else {
                assert_eq!(ran, 0, "asked for {level}: {other} ran {ran} times");
            }
        }
    }
    // Without a cap the kernels use the widest level the CPU has.
    let top = SimdLevel::detected();
    let before = counts();
    run_kernels();
    assert!(counts()[top as usize] > before[top as usize]);
    assert_eq!(SimdLevel::active(), top);
}

#[test]
#[ignore = "run in a process of its own by seqlayers_simd_caps_every_kernel_and_a_bad_value_is_reported"]
fn child_env_cap_scalar() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert_eq!(env_cap().unwrap(), Some(SimdLevel::Scalar));
    assert_eq!(SimdLevel::active(), SimdLevel::Scalar);
    assert!(
        report().contains("capped by SEQLAYERS_SIMD=scalar"),
        "{}",
        report()
    );
    // A thread cap cannot lift the process cap.
    let before = counts();
    with_max_level(SimdLevel::Avx512, run_kernels);
    let after = counts();
    assert!(after[0] > before[0], "the scalar kernels ran");
    assert_eq!(
        after[1..],
        before[1..],
        "no AVX kernel ran under SEQLAYERS_SIMD=scalar"
    );
}

#[test]
#[ignore = "run in a process of its own by seqlayers_simd_caps_every_kernel_and_a_bad_value_is_reported"]
fn child_env_cap_unknown() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let err = env_cap().unwrap_err().to_string();
    assert!(err.contains("unknown SIMD level `sse9`"), "{err}");
    assert!(report().contains("ignored"), "{}", report());
    assert_eq!(SimdLevel::active(), SimdLevel::detected());
}
