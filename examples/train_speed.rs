//! Training speed of the recall models (K = 16, L = 64, batch 64, 2 layers): milliseconds per
//! optimizer step (forward + backward + Adam) for attention (NoPE, RoPE, learned positions),
//! the hybrid Mamba → attention, Mamba and the LSTM at d = 8 and d = 64. Writes
//! `train_speed.md` to `--out` (default `results/`).
//!
//! ```text
//! cargo run --release --example train_speed
//! cargo run --release --example train_speed -- --peers 2 --only d=64
//! ```
//!
//! `--peers N` trains data-parallel (`train_data_parallel`, burn-collective): N peer threads of
//! batch 64/N each, all-reducing their gradients, so the step is still one step of batch 64
//! and the milliseconds compare directly with `--peers 1` (docs/SCALING.md).
//!
//! The side-by-side comparison with PyTorch + mambapy (same machine, same invocation) is
//! `python3 bench/pytorch/compare.py`, which runs this example with `--tsv`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::model::ClassifierConfig;
use seqlayers::presets::RecallModel;
use seqlayers::simd::SimdLevel;
use seqlayers::ssm::ScanKind;
use seqlayers::train::{ParallelConfig, Silent, TrainConfig, train, train_data_parallel};

#[derive(Parser, Debug)]
struct Args {
    /// Timed steps per model (after 5 warm-up steps).
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Output directory for `train_speed.md`.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Measure only the cases whose label contains this text (e.g. `RoPE`, `d=64`); the table
    /// is then printed but not written.
    #[arg(long)]
    only: Option<String>,
    /// Print `key<TAB>d<TAB>ms` lines only (for `bench/pytorch/compare.py`); writes no file.
    #[arg(long)]
    tsv: bool,
    /// Data-parallel peers (threads) sharing each batch of 64; it must divide 64.
    #[arg(long, default_value_t = 1)]
    peers: usize,
}

type B = seqlayers::backend::CpuAutodiff;

/// (key shared with `bench/pytorch/train_speed.py`, label, model, d, scan)
const CASES: [(&str, &str, RecallModel, usize, ScanKind); 13] = [
    (
        "attention-nope",
        "attention (NoPE)",
        RecallModel::TransformerNope,
        8,
        ScanKind::Fused,
    ),
    (
        "attention-rope",
        "attention (RoPE)",
        RecallModel::TransformerRope,
        8,
        ScanKind::Fused,
    ),
    (
        "attention-learned",
        "attention (learned PE)",
        RecallModel::TransformerLearned,
        8,
        ScanKind::Fused,
    ),
    (
        "hybrid",
        "hybrid Mamba→attention",
        RecallModel::HybridA,
        8,
        ScanKind::Fused,
    ),
    (
        "mamba",
        "Mamba (fused scan)",
        RecallModel::Mamba,
        8,
        ScanKind::Fused,
    ),
    (
        "mamba-sequential",
        "Mamba (sequential scan)",
        RecallModel::Mamba,
        8,
        ScanKind::Sequential,
    ),
    (
        "lstm",
        "LSTM (fused)",
        RecallModel::Lstm,
        8,
        ScanKind::Fused,
    ),
    (
        "attention-nope",
        "attention (NoPE)",
        RecallModel::TransformerNope,
        64,
        ScanKind::Fused,
    ),
    (
        "attention-rope",
        "attention (RoPE)",
        RecallModel::TransformerRope,
        64,
        ScanKind::Fused,
    ),
    (
        "attention-learned",
        "attention (learned PE)",
        RecallModel::TransformerLearned,
        64,
        ScanKind::Fused,
    ),
    (
        "hybrid",
        "hybrid Mamba→attention",
        RecallModel::HybridA,
        64,
        ScanKind::Fused,
    ),
    (
        "mamba",
        "Mamba (fused scan)",
        RecallModel::Mamba,
        64,
        ScanKind::Fused,
    ),
    (
        "lstm",
        "LSTM (fused)",
        RecallModel::Lstm,
        64,
        ScanKind::Fused,
    ),
];

fn measure(model: RecallModel, d: usize, scan: ScanKind, steps: usize, peers: usize) -> f64 {
    let device = Default::default();
    let task = AssociativeRecall::new(RecallConfig::new(16).with_dim(d)).expect("valid task");
    let mut stack = model.stack_config(d, 64);
    stack.mamba = stack.mamba.clone().with_scan(scan);
    let classifier = ClassifierConfig::new(stack, 16)
        .try_init::<B>(task.embedding(&device), &device)
        .expect("valid model");
    let config = |steps| TrainConfig {
        steps,
        early_stop: None,
        eval_every: 1_000_000,
        ..TrainConfig::default()
    };
    let (warm, _) = train(classifier, &task, &config(5), &device, &mut Silent).expect("warm-up");
    if peers > 1 {
        let per_peer = TrainConfig {
            batch_size: 64 / peers,
            ..config(steps)
        };
        let (_, report) = train_data_parallel(
            warm,
            &task,
            &per_peer,
            &ParallelConfig::new(peers),
            &[device],
            &mut Silent,
        )
        .expect("timed data-parallel run");
        return report.ms_per_step;
    }
    let (_, report) = train(warm, &task, &config(steps), &device, &mut Silent).expect("timed run");
    report.ms_per_step
}

fn main() {
    let args = Args::parse();
    if args.peers == 0 || 64 % args.peers != 0 {
        eprintln!("--peers must divide the batch of 64 (1, 2, 4, 8, ...)");
        std::process::exit(2);
    }
    if args.peers > 1 && !args.tsv {
        println!(
            "{} data-parallel peers, batch {} each (not written to train_speed.md)",
            args.peers,
            64 / args.peers
        );
    }
    let threads = rayon::current_num_threads();
    let simd = SimdLevel::active().name();
    if args.tsv {
        println!("# seqlayers, {threads} threads, SIMD {simd}");
        println!("# {}", seqlayers::simd::report());
    }
    let mut table = String::from(
        "| model (K=16, L=64, batch 64, 2 layers) | d | seqlayers ms/step |\n|---|---|---|\n",
    );
    for (key, label, model, d, scan) in CASES {
        if args
            .only
            .as_ref()
            .is_some_and(|only| !format!("{label} d={d}").contains(only.as_str()))
        {
            continue;
        }
        let ms = measure(model, d, scan, args.steps, args.peers);
        let _ = writeln!(table, "| {label} | {d} | {ms:.2} |");
        if args.tsv {
            println!("{key}\t{d}\t{ms:.3}");
        } else {
            println!("{label:<28} d={d:<3} {ms:>9.2} ms/step");
        }
    }
    if args.tsv {
        return;
    }
    let doc = format!(
        "# Training speed\n\nCommand: `cargo run --release --example train_speed -- --steps {}` on \
         {threads} threads (burn-ndarray, f32, kernels at SIMD level {simd}). Mean of {} optimizer \
         steps after 5 warm-up steps; evaluation excluded.\n\n{table}",
        args.steps, args.steps
    );
    if args.only.is_none() && args.peers == 1 {
        std::fs::create_dir_all(&args.out).expect("create output directory");
        std::fs::write(args.out.join("train_speed.md"), &doc).expect("write train_speed.md");
    }
    println!("\n{doc}");
    println!(
        "Side by side with PyTorch + mambapy on this machine: `python3 bench/pytorch/compare.py` \
         (needs `python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy`)."
    );
}
