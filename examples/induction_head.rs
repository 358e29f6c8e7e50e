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

use clap::Parser;
use common::cli::RecallArgs;
use common::driver::drive;
use common::induction_head::InductionHead;

fn main() {
    let args = RecallArgs::parse();
    drive::<InductionHead>(&args, &args.run);
}
