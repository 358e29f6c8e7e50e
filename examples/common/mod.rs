//! The experiment drivers of the homework examples (the library stays a library): the shared
//! flags ([`cli::RunArgs`], one meaning of `--seed`/`--seeds`), the one driver
//! ([`driver::Experiment`], [`driver::drive`]: options → runs → CSV → report → plots), the six
//! experiments (`induction_head`, `associative_recall`, `copying`, `pig_latin`, `tiny_gpt`,
//! `sentiment`), the one percentage formatter ([`report::percent`]), a progress display,
//! plotting and backend selection. `tests/suite` mounts this folder to run the `--quick`
//! versions as tests.
//!
//! **A folder, not a workspace member crate** (issue 22, item 5). A `seqlayers-experiments`
//! member would be a real library: compiled once instead of once per example that mounts it and
//! once more in the test suite, with plain visibility instead of `#![allow(dead_code)]` and its
//! own dependencies (clap, plotters, indicatif, libc would leave seqlayers' dev-dependencies).
//! It stays a folder because that is not clearly better today: the drivers have no user besides
//! the examples and the suite, and a member needs a `[workspace]` in the root manifest, a second
//! package in `Cargo.lock`, a dev-dependency cycle (seqlayers → experiments → seqlayers, next to
//! the self dev-dependency that turns on `internals`), `--workspace` in CI's clippy and test
//! commands, and the suite's `#[path]` mount replaced by the dependency. The examples would
//! still have to live in the root package for `cargo run --release --example induction_head`.
//! Worth doing when the drivers' build time matters more than those costs: the move is
//! mechanical (this folder becomes `experiments/src`, `mod common;` becomes `use`).
#![allow(dead_code)]

pub mod associative_recall;
pub mod cli;
pub mod copying;
pub mod driver;
pub mod experiments;
pub mod induction_head;
pub mod memory;
pub mod parallel;
pub mod pig_latin;
pub mod plot;
pub mod progress;
pub mod recall;
pub mod report;
pub mod sentiment;
pub mod tiny_gpt;

use plot::Series;
use recall::RecallOutcome;

/// `""`, or `"; mean of seeds 0, 1, 2"` for a plot title when there are several seeds.
pub fn seeds_note(seeds: &[u64]) -> String {
    if seeds.len() > 1 {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        format!("; mean of seeds {}", list.join(", "))
    } else {
        String::new()
    }
}

/// Accuracy-vs-length curves labelled by `label`: outcomes that share a label (the seeds of one
/// model) are averaged point by point into one curve.
pub fn length_series(
    outcomes: &[&RecallOutcome],
    label: impl Fn(&RecallOutcome) -> String,
) -> Vec<Series> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = outcomes
        .iter()
        .map(|o| {
            let points = o.lengths.iter().map(|l| (l.len as f64, l.score)).collect();
            (label(o), points)
        })
        .collect();
    plot::mean_by_name(curves)
}

/// Test-batch accuracy against optimizer steps, one curve per outcome.
pub fn convergence_series(
    outcomes: &[&RecallOutcome],
    label: impl Fn(&RecallOutcome) -> String,
) -> Vec<Series> {
    outcomes
        .iter()
        .map(|o| Series {
            name: label(o),
            points: o
                .report
                .curve
                .iter()
                .map(|p| (p.step as f64, p.test_score))
                .collect(),
        })
        .collect()
}

/// Prints a plot error as a warning (plots are a convenience; the CSVs hold every number).
pub fn warn_on_error(result: Result<(), String>) {
    if let Err(e) = result {
        eprintln!("warning: {e}");
    }
}

/// Runs `$body` with `$B` bound to the autodiff backend chosen by `--device` and `$device` to
/// its device.
#[macro_export]
macro_rules! with_backend {
    ($name:expr, |$B:ident, $device:ident| $body:block) => {{
        match $name {
            "cpu" => {
                type $B = seqlayers::backend::CpuAutodiff;
                let $device = seqlayers::backend::CpuDevice::default();
                $body
            }
            #[cfg(feature = "cuda")]
            "cuda" => {
                type $B = seqlayers::backend::CudaAutodiff;
                let $device = seqlayers::backend::CudaDevice::default();
                $body
            }
            other => {
                eprintln!("unknown or disabled device `{other}`: use cpu, or build with --features cuda for cuda");
                std::process::exit(2);
            }
        }
    }};
}
