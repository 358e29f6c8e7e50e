//! Training speed of the recall models (K = 16, L = 64, batch 64, 2 layers): milliseconds per
//! optimizer step (forward + backward + Adam), printed beside the PyTorch/mambapy figures from
//! the project brief. Writes `train_speed.md` to `--out` (default `results/`).
//!
//! ```text
//! cargo run --release --example train_speed
//! ```

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::model::{ClassifierConfig, ModelKind};
use seqlayers::ssm::ScanKind;
use seqlayers::train::{Silent, TrainConfig, train};

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
}

type B = seqlayers::backend::CpuAutodiff;

/// (label, model, d, scan, PyTorch ms/step from the brief)
const CASES: [(&str, ModelKind, usize, ScanKind); 7] = [
    (
        "attention (RoPE) d=8",
        ModelKind::TransformerRope,
        8,
        ScanKind::Fused,
    ),
    (
        "attention (learned PE) d=8",
        ModelKind::TransformerLearned,
        8,
        ScanKind::Fused,
    ),
    (
        "hybrid Mamba→attention d=8",
        ModelKind::HybridA,
        8,
        ScanKind::Fused,
    ),
    (
        "Mamba d=8 (fused scan)",
        ModelKind::Mamba,
        8,
        ScanKind::Fused,
    ),
    (
        "Mamba d=8 (sequential scan)",
        ModelKind::Mamba,
        8,
        ScanKind::Sequential,
    ),
    (
        "Mamba d=64 (fused scan)",
        ModelKind::Mamba,
        64,
        ScanKind::Fused,
    ),
    ("LSTM d=8", ModelKind::Lstm, 8, ScanKind::Fused),
];

fn measure(model: ModelKind, d: usize, scan: ScanKind, steps: usize) -> f64 {
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
    let (_, report) = train(warm, &task, &config(steps), &device, &mut Silent).expect("timed run");
    report.ms_per_step
}

fn main() {
    let args = Args::parse();
    let mut table =
        String::from("| model (K=16, L=64, batch 64, 2 layers) | seqlayers ms/step |\n|---|---|\n");
    for (label, model, d, scan) in CASES {
        if args
            .only
            .as_ref()
            .is_some_and(|only| !label.contains(only.as_str()))
        {
            continue;
        }
        let ms = measure(model, d, scan, args.steps);
        // No PyTorch column: a comparison is only valid when both run on the same machine in
        // the same invocation (the side-by-side runner is the performance issue's work).
        let _ = writeln!(table, "| {label} | {ms:.2} |");
        println!("{label:<32} {ms:>8.2} ms/step");
    }
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let doc = format!(
        "# Training speed\n\nCommand: `cargo run --release --example train_speed -- --steps {}` on {threads} CPU \
         threads (burn-ndarray, f32). Mean of {} optimizer steps after 5 warm-up steps; evaluation excluded.\n\n{table}",
        args.steps, args.steps
    );
    if args.only.is_none() {
        std::fs::create_dir_all(&args.out).expect("create output directory");
        std::fs::write(args.out.join("train_speed.md"), &doc).expect("write train_speed.md");
    }
    println!("\n{doc}");
}
