//! Seed 003, "Repeat After Me": copying and prefix/suffix n-gram lookup with transformers
//! (RoPE, NoPE, ALiBi, Hard-ALiBi), Mamba and an LSTM, on the CPU.
//!
//! ```sh
//! cargo run --release --example copying -- --quick            # seconds
//! cargo run --release --example copying -- --jobs 2           # the full comparison
//! cargo run --release --example copying -- --task copy --models T_rope,mamba --seeds 0,1,2
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `lengths.csv`, PNG plots (sample efficiency, exact match
//! against string length per task, Mamba state sizes) and `report.md` to `--out`
//! (default `results/copying`).

mod common;

use std::time::Instant;

use clap::Parser;
use common::cli::or_exit;
use common::copying::{
    CopyOutcome, CopyingArgs, CopyingOptions, copying, copying_options, in_sweep,
};
use common::plot::{Series, line_plot};
use common::warn_on_error;

fn plots(options: &CopyingOptions, outcomes: &[CopyOutcome]) {
    let dir = &options.out_dir;
    let seed = options.seeds[0];
    for &kind in &options.tasks {
        let group: Vec<&CopyOutcome> = outcomes
            .iter()
            .filter(|o| !o.run.sweep && o.run.task.kind == kind && o.run.train.seed == seed)
            .collect();
        let curves: Vec<Series> = group
            .iter()
            .map(|o| Series {
                name: o.run.model.to_string(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| (p.step as f64 * o.examples_per_step, p.test_score))
                    .collect(),
            })
            .collect();
        warn_on_error(line_plot(
            &dir.join(format!("sample_efficiency_{kind}.png")),
            &format!("{kind}: exact match at training lengths vs examples seen (seed {seed})"),
            "training examples seen",
            "string exact match",
            &curves,
            true,
        ));
        let lengths: Vec<Series> = group
            .iter()
            .map(|o| Series {
                name: o.run.model.to_string(),
                points: o.lengths.iter().map(|l| (l.len as f64, l.exact)).collect(),
            })
            .collect();
        warn_on_error(line_plot(
            &dir.join(format!("length_{kind}.png")),
            &format!(
                "{kind}: exact match vs string length (trained on {}–{})",
                options.train_len.0, options.train_len.1
            ),
            "string length",
            "string exact match",
            &lengths,
            true,
        ));
    }
    let sweep: Vec<Series> = outcomes
        .iter()
        .filter(|o| in_sweep(o) && o.run.train.seed == seed)
        .map(|o| Series {
            name: format!("N = {}", o.run.size.d_state),
            points: o.lengths.iter().map(|l| (l.len as f64, l.exact)).collect(),
        })
        .collect();
    if sweep.len() > 1 {
        warn_on_error(line_plot(
            &dir.join("state_size.png"),
            "copy: Mamba exact match vs string length for several state sizes N",
            "string length",
            "string exact match",
            &sweep,
            true,
        ));
    }
}

fn main() {
    let args = CopyingArgs::parse();
    let options = or_exit(copying_options(&args));
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.run.jobs);
    let started = Instant::now();
    let outcomes = with_backend!(args.run.device.as_str(), |B, device| {
        copying::<B>(&options, &device)
    });
    let outcomes = or_exit(outcomes);
    plots(&options, &outcomes);
    common::print_report(&options.out_dir, started);
}
