//! How distinguishable are the K tokens under the homework's fixed random embedding? Prints the
//! most similar pairs of rows (cosine) of `V` `[K, d]` for each width d, with the seed the
//! recall examples use.
//!
//! ```text
//! cargo run --release --example embedding_geometry -- --d 8,64
//! ```

use clap::Parser;
use seqlayers::data::{closest_pairs, random_unit_embedding};

#[derive(Parser, Debug)]
#[command(about = "The most similar token pairs of the recall examples' fixed random embedding")]
struct Args {
    /// Vocabulary size K.
    #[arg(long, default_value_t = 16)]
    vocab: usize,
    /// Comma-separated widths d.
    #[arg(long = "d", value_delimiter = ',', default_value = "8,64")]
    dims: Vec<usize>,
    /// The `--seed` of the recall run whose embedding to show (the embedding is drawn from
    /// the run's base seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pairs to list per width.
    #[arg(long, default_value_t = 5)]
    pairs: usize,
}

fn main() {
    let args = Args::parse();
    println!("| d | most similar token pairs (cos) | pairs with cos > 0.8 |\n|---|---|---|");
    for &d in &args.dims {
        let table = random_unit_embedding(args.vocab, d, args.seed);
        let all = closest_pairs(&table, d, usize::MAX);
        let listed: Vec<String> = all
            .iter()
            .take(args.pairs)
            .map(|(i, j, c)| format!("{i}–{j}: {c:.2}"))
            .collect();
        let close = all.iter().filter(|p| p.2 > 0.8).count();
        println!("| {d} | {} | {close} |", listed.join(", "));
    }
}
