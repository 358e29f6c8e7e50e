//! The experiment drivers of the homework examples (the library stays a library): flags,
//! the associative-recall runs and their reports, a progress display, plotting and backend
//! selection. `tests/suite` mounts this folder to run the `--quick` versions as tests.
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
pub mod tiny_gpt;

use plot::Series;
use recall::RecallOutcome;

/// Accuracy-vs-length curves, one per outcome, labelled by `label`.
pub fn length_series(
    outcomes: &[&RecallOutcome],
    label: impl Fn(&RecallOutcome) -> String,
) -> Vec<Series> {
    outcomes
        .iter()
        .map(|o| Series {
            name: label(o),
            points: o.lengths.iter().map(|l| (l.len as f64, l.score)).collect(),
        })
        .collect()
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
