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

use clap::Parser;
use common::associative_recall::AssociativeRecall;
use common::cli::RecallArgs;
use common::driver::drive;

fn main() {
    let args = RecallArgs::parse();
    drive::<AssociativeRecall>(&args, &args.run);
}
