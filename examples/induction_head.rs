//! Problem 1 of seeds 000/001: train the six models on the induction-head task (M = 1) for
//! τ = 1 and τ = 5, then plot accuracy against sequence length (up to 3L) and the convergence
//! curves. Writes CSV files, PNG plots and `report.md` to `--out` (default
//! `results/induction_head`).
//!
//! ```text
//! cargo run --release --example induction_head              # full run (~minutes on 2 cores)
//! cargo run --release --example induction_head -- --quick   # smoke run
//! ```

mod common;

use std::time::Instant;

use clap::Parser;
use common::cli::{RecallArgs, or_exit};
use common::induction_head::{induction_head, induction_head_options};
use common::plot::line_plot;
use common::{convergence_series, length_series, warn_on_error};

fn main() {
    let args = RecallArgs::parse();
    let options = or_exit(induction_head_options(&args));
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.run.jobs);
    let started = Instant::now();
    let outcomes = with_backend!(args.run.device.as_str(), |B, device| {
        induction_head::<B>(&options, &device)
    });
    let outcomes = or_exit(outcomes);
    let mut delays: Vec<usize> = outcomes.iter().map(|o| o.run.task.delay).collect();
    delays.dedup();
    for tau in delays {
        let group: Vec<_> = outcomes
            .iter()
            .filter(|o| o.run.task.delay == tau)
            .collect();
        let dir = &options.out_dir;
        warn_on_error(line_plot(
            &dir.join(format!("accuracy_vs_length_tau{tau}.png")),
            &format!(
                "Induction head, τ = {tau}: accuracy vs length (trained at L = {})",
                options.train_len
            ),
            "sequence length",
            "accuracy",
            &length_series(&group, |o| o.series_name(options.seeds.len() > 1)),
            false,
        ));
        warn_on_error(line_plot(
            &dir.join(format!("convergence_tau{tau}.png")),
            &format!(
                "Induction head, τ = {tau}: test-batch accuracy (batch size {})",
                options.batch_size
            ),
            "optimizer step",
            "test-batch accuracy",
            &convergence_series(&group, |o| o.series_name(options.seeds.len() > 1)),
            false,
        ));
    }
    common::print_report(&options.out_dir, started);
}
