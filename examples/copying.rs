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

use clap::Parser;
use common::copying::{Copying, CopyingArgs};
use common::driver::drive;

fn main() {
    let args = CopyingArgs::parse();
    drive::<Copying>(&args, &args.run);
}
