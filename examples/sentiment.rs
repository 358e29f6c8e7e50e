//! Seed 004 §3 on movie-review sentences: fine-tune MiniLM end to end as a sentiment classifier,
//! compare AdamW with SGD (momentum) and RMSprop, search batch size × learning rate × epochs,
//! report the chosen checkpoint's test accuracy, and measure what pretraining buys against a
//! frozen encoder with a linear probe, the same architecture from scratch and the crate's small
//! transformer and Mamba from scratch.
//!
//! ```sh
//! bash scripts/fetch_pretrained.sh                              # MiniLM + the sentences, once
//! cargo run --release --example sentiment                       # the committed grid
//! cargo run --release --example sentiment -- --quick            # tiny fixture, synthetic data
//! cargo run --release --example sentiment -- --grid-lr 5e-5 --grid-batch 32 --epochs 2 \
//!     --optimizers none --baselines probe
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `curves.png` (loss and accuracy per epoch),
//! `optimizers.png`, `search.png`, `baselines.png` and `report.md` (the seed's questions
//! answered with the measured numbers) to `--out` (default `results/sentiment`). Without the
//! downloaded weights and sentences it stops with exit code 2 and says to run
//! `bash scripts/fetch_pretrained.sh`.

mod common;

use clap::Parser;
use common::driver::drive;
use common::sentiment::{Sentiment, SentimentArgs};

fn main() {
    let args = SentimentArgs::parse();
    drive::<Sentiment>(&args, &args.run);
}
