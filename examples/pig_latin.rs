//! Seed 002, Pig-Latin: an encoder–decoder transformer and a Mamba translator at hidden 32 and
//! 64 on the small and large word lists, Mamba's discretizations, latency and interpretability.
//!
//! ```sh
//! cargo run --release --example pig_latin -- --quick          # seconds
//! cargo run --release --example pig_latin -- --jobs 2         # the homework's grid
//! cargo run --release --example pig_latin -- --model transformer --hidden 64 --data large
//! cargo run --release --example pig_latin -- --words my_words.txt --quick
//! # ablations (each flag takes a comma-separated list, one run per value):
//! cargo run --release --example pig_latin -- --model transformer --hidden 64 --data small --heads 2,4,8
//! cargo run --release --example pig_latin -- --model transformer --hidden 64 --positions none,sinusoidal,learned
//! cargo run --release --example pig_latin -- --model mamba --hidden 64 --mamba-a learned,fixed-identity --mamba-dt learned,constant:0.1
//! # one optimizer and schedule for every run:
//! cargo run --release --example pig_latin -- --model transformer --optimizer adam --schedule constant
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `mistakes.csv`, loss/accuracy curves, cross-attention
//! heatmaps, Mamba Δ/retention plots and `report.md` to `--out` (default `results/pig_latin`).

mod common;

use clap::Parser;
use common::driver::drive;
use common::pig_latin::{PigLatin, PigLatinArgs};

fn main() {
    let args = PigLatinArgs::parse();
    drive::<PigLatin>(&args, &args.run);
}
