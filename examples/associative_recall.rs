//! Problems 2 and 3 of seeds 000/001: associative recall with M = 4, 8, 16 queries for Mamba,
//! the RoPE transformer and both hybrids at d = 8 (Problem 2), and Mamba at d = 64 plus an
//! M = 16, τ = 10 run (Problem 3). Writes CSV files, PNG plots and `report.md` to `--out`
//! (default `results/associative_recall`).
//!
//! ```text
//! cargo run --release --example associative_recall
//! cargo run --release --example associative_recall -- --quick
//! ```

mod common;

use std::time::Instant;

use clap::Parser;
use common::associative_recall::{associative_recall, associative_recall_options};
use common::cli::{RecallArgs, or_exit};
use common::plot::line_plot;
use common::{convergence_series, length_series, warn_on_error};

fn main() {
    let args = RecallArgs::parse();
    let options = or_exit(associative_recall_options(&args));
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.run.jobs);
    let started = Instant::now();
    let outcomes = with_backend!(args.run.device.as_str(), |B, device| {
        associative_recall::<B>(&options, &device)
    });
    let outcomes = or_exit(outcomes);
    let d2 = options.dims.first().copied().unwrap_or(8);
    let (p2, p3): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.run.task.dim == d2);
    let dir = &options.out_dir;
    let mut ms: Vec<usize> = p2.iter().map(|o| o.run.task.n_queries).collect();
    ms.sort_unstable();
    ms.dedup();
    for m in ms {
        let group: Vec<_> = p2
            .iter()
            .copied()
            .filter(|o| o.run.task.n_queries == m)
            .collect();
        warn_on_error(line_plot(
            &dir.join(format!("p2_accuracy_vs_length_M{m}.png")),
            &format!(
                "AR, M = {m}, d = {d2}: accuracy vs length (trained at L = {})",
                options.train_len
            ),
            "sequence length",
            "accuracy",
            &length_series(&group, |o| o.series_name(options.seeds.len() > 1)),
            false,
        ));
    }
    let several = options.seeds.len() > 1;
    let label = |o: &common::recall::RecallOutcome| {
        if several {
            format!("{} (seed {})", o.label(), o.run.train.seed)
        } else {
            o.label()
        }
    };
    if !p3.is_empty() {
        warn_on_error(line_plot(
            &dir.join("p3_accuracy_vs_length.png"),
            "AR, Mamba at larger d: accuracy vs length",
            "sequence length",
            "accuracy",
            &length_series(&p3, label),
            false,
        ));
    }
    if !p2.is_empty() {
        warn_on_error(line_plot(
            &dir.join("convergence_p2.png"),
            &format!(
                "Problem 2: test-batch accuracy (batch size {})",
                options.batch_size
            ),
            "optimizer step",
            "test-batch accuracy",
            &convergence_series(&p2, label),
            false,
        ));
    }
    if !p3.is_empty() {
        warn_on_error(line_plot(
            &dir.join("convergence_p3.png"),
            &format!(
                "Problem 3: test-batch accuracy (batch size {})",
                options.batch_size
            ),
            "optimizer step",
            "test-batch accuracy",
            &convergence_series(&p3, label),
            false,
        ));
    }
    common::print_report(dir, started);
}
