//! Decoding speed: generated tokens per second for one-token steps from the cached state (KV
//! caches for attention, conv window + SSM state for Mamba), batch 1 and 64, with a 2-block
//! language model of width 64 (vocabulary 64, greedy arg-max on the host after every step).
//!
//! ```text
//! cargo run --release --example decode_speed
//! ```
//!
//! The side-by-side comparison with PyTorch + mambapy step functions is
//! `python3 bench/pytorch/compare.py`, which runs this example with `--tsv`.

use std::time::Instant;

use clap::Parser;
use seqlayers::backend::{Cpu, CpuDevice};
use seqlayers::decode::{GenerateConfig, generate_greedy};
use seqlayers::model::LanguageModelConfig;
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::simd::SimdLevel;
use seqlayers::stack::{LayerKind, StackConfig};

#[derive(Parser, Debug)]
#[command(about = "Tokens per second of cached one-token decoding (attention, Mamba).")]
struct Args {
    /// Tokens generated per sequence (after a one-token prompt).
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    /// Print `key<TAB>d<TAB>batch<TAB>tokens_per_s` lines only (for bench/pytorch/compare.py).
    #[arg(long)]
    tsv: bool,
    /// A smoke run: 8 tokens.
    #[arg(long)]
    quick: bool,
}

/// (key shared with `bench/pytorch/decode_speed.py`, mixer, position encoding)
const CASES: [(&str, LayerKind, PositionEncoding); 2] = [
    (
        "attention-nope",
        LayerKind::Attention,
        PositionEncoding::None,
    ),
    ("mamba", LayerKind::Mamba, PositionEncoding::None),
];
const D: usize = 64;
const VOCAB: usize = 64;

fn tokens_per_second(
    mixer: LayerKind,
    position: PositionEncoding,
    batch: usize,
    new: usize,
) -> f64 {
    let device = CpuDevice::default();
    let stack = StackConfig::new(D, vec![mixer.into(), mixer.into()])
        .with_n_heads(4)
        .with_position(position)
        .with_norm(NormKind::Rms);
    let model = LanguageModelConfig::new(stack, VOCAB)
        .try_init::<Cpu>(&device)
        .expect("valid model");
    let prompts: Vec<Vec<u32>> = (0..batch).map(|b| vec![(b % VOCAB) as u32]).collect();
    let config = GenerateConfig::new(new);
    generate_greedy(&model, &prompts, GenerateConfig::new(4), &device).expect("warm-up");
    let started = Instant::now();
    let out = generate_greedy(&model, &prompts, config, &device).expect("decoding");
    let seconds = started.elapsed().as_secs_f64();
    let generated: usize = out.iter().map(Vec::len).sum();
    generated as f64 / seconds
}

fn main() {
    let args = Args::parse();
    let new = if args.quick { 8 } else { args.tokens };
    let threads = rayon::current_num_threads();
    let simd = SimdLevel::active().name();
    if args.tsv {
        println!("# seqlayers decoding, {threads} threads, SIMD {simd}");
        println!("# {}", seqlayers::simd::report());
    } else {
        println!(
            "Decoding {new} tokens after a 1-token prompt, 2 blocks, d = {D}, vocabulary {VOCAB}, \
             {threads} threads, SIMD {simd}\n\n| model | batch | tokens/s |\n|---|---|---|"
        );
    }
    for (key, mixer, position) in CASES {
        for batch in [1, 64] {
            let tps = tokens_per_second(mixer, position.clone(), batch, new);
            if args.tsv {
                println!("{key}\t{D}\t{batch}\t{tps:.1}");
            } else {
                println!("| {key} | {batch} | {tps:.0} |");
            }
        }
    }
}
