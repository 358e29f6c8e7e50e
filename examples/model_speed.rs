//! Training speed of real-size models: milliseconds per optimizer step (forward + backward +
//! optimizer update) of a GPT at d = 96 and d = 384, a BERT-style encoder at the MiniLM size and
//! a Mamba language model at d = 384, with tokens per second and the peak resident memory of
//! the process. One case per process (`--only`) gives that case's own peak.
//!
//! ```text
//! cargo run --release --example model_speed -- --only gpt-96
//! ```
//!
//! The side-by-side comparison with PyTorch + mambapy (same machine, same invocation, one
//! process per case and program) is `python3 bench/pytorch/compare_models.py`, which runs this
//! example with `--tsv` and `bench/pytorch/model_speed.py`; both define the same models:
//!
//! | case | model | batch × length | optimizer |
//! |---|---|---|---|
//! | `gpt-96`, `gpt-384` | GPT: learned positions, 3 pre-LayerNorm blocks of causal attention (4 heads, Q/K/V/output projections with biases) and a GELU MLP (4 D), final LayerNorm, head tied to the token embedding; vocabulary 76 | 32 × 64 | Adam 1e-3 |
//! | `encoder-384` | BERT-style post-norm encoder at the MiniLM size (vocabulary 30522, 6 layers, 384 wide, 12 heads, MLP 1536), mean pooling, 2-class head; dropout 0 | 32 × 64 | AdamW 1e-4, decay 0.01 |
//! | `mamba-384` | Mamba LM: 3 blocks `x + mamba(rmsnorm(x))` (N = 16, expand 2, conv 4, fused scan), final RMSNorm, tied head; vocabulary 76 | 32 × 64 | Adam 1e-3 |

use std::time::Instant;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::burn::module::AutodiffModule;
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::data::{Batch, Targets};
use seqlayers::model::{
    BertClassifier, BertClassifierConfig, BertConfig, BertPooling, LanguageModel,
    LanguageModelConfig,
};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::simd::SimdLevel;
use seqlayers::ssm::MambaConfig;
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{OptimizerKind, SequenceModel, TrainConfig, TrainStep};

#[derive(Parser, Debug)]
#[command(about = "Milliseconds per training step of a GPT, a MiniLM-size encoder and a Mamba LM")]
struct Args {
    /// Timed steps per case (after the warm-up steps); at least 1.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    steps: u32,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// The case to run (gpt-96, gpt-384, encoder-384, mamba-384); default: all of them.
    #[arg(long)]
    only: Option<String>,
    /// The CPU backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Ndarray)]
    backend: BackendChoice,
    /// Print `key<TAB>ms<TAB>peak MiB<TAB>parameters` lines only (for `bench/pytorch/compare_models.py`).
    #[arg(long)]
    tsv: bool,
}

/// Which backend runs the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendChoice {
    /// burn-ndarray (f32) with the crate's kernels: the default CPU backend.
    Ndarray,
    /// burn-flex, Burn 0.21's other CPU backend, where every op runs as Burn tensor ops (build
    /// with `--features flex`).
    Flex,
}

/// The cases, in the order of `bench/pytorch/model_speed.py`.
const CASES: [&str; 4] = ["gpt-96", "gpt-384", "encoder-384", "mamba-384"];
const BATCH: usize = 32;
const LENGTH: usize = 64;
const LM_VOCAB: usize = 76;

/// A language model of `layers` (e.g. `"attention+mlp"` × 3) at width `d`.
fn language_model<B: AutodiffBackend>(
    d: usize,
    layers: &str,
    norm: NormKind,
) -> seqlayers::Result<LanguageModel<B>> {
    let position = if layers.contains("attention") {
        PositionEncoding::learned(LENGTH)
    } else {
        PositionEncoding::None
    };
    let stack = StackConfig::new(d, parse_layers(layers)?)
        .with_n_heads(4)
        .with_position(position)
        .with_norm(norm)
        .with_mamba(MambaConfig::new(d));
    LanguageModelConfig::new(stack, LM_VOCAB)
        .with_tie_embeddings(true)
        .try_init::<B>(&Default::default())
}

/// The MiniLM-size encoder with mean pooling and a 2-class head, randomly initialized.
fn encoder<B: AutodiffBackend>() -> seqlayers::Result<BertClassifier<B>> {
    let device = Default::default();
    let config = BertConfig::new(30522, 384, 6, 12, 1536)
        .with_hidden_dropout_prob(0.0)
        .with_pooler(false);
    let encoder = config.try_init::<B>(&device)?;
    BertClassifierConfig::new(2)
        .with_pooling(BertPooling::Mean)
        .try_init(encoder, &device)
}

/// A random batch: next-token targets at every position, or one label per sequence.
fn batch(vocab: usize, classify: bool) -> Batch {
    let mut rng = StdRng::seed_from_u64(0);
    // Real word pieces for the encoder (no [PAD], id 0).
    let low = if classify { 1000 } else { 0 };
    let tokens: Vec<u32> = (0..BATCH * LENGTH)
        .map(|_| rng.random_range(low..vocab) as u32)
        .collect();
    let targets = if classify {
        Targets::Labels((0..BATCH).map(|_| rng.random_range(0..2)).collect())
    } else {
        Targets::Tokens {
            ids: (0..BATCH * LENGTH)
                .map(|_| rng.random_range(0..vocab) as u32)
                .collect(),
            loss_mask: vec![true; BATCH * LENGTH],
        }
    };
    Batch {
        tokens,
        batch: BATCH,
        len: LENGTH,
        targets,
        source: None,
    }
}

/// Mean milliseconds of `steps` training steps after `warmup` untimed ones, and the model's
/// parameter count.
fn time_steps<B: AutodiffBackend, M>(
    model: M,
    optimizer: OptimizerKind,
    lr: f64,
    batch: &Batch,
    args: &Args,
) -> seqlayers::Result<(f64, usize)>
where
    M: SequenceModel<B> + AutodiffModule<B>,
{
    let params = model.num_params();
    let device = Default::default();
    let config = TrainConfig::new()
        .with_steps((args.warmup + args.steps) as usize)
        .with_batch_size(batch.batch)
        .with_lr(lr)
        .with_optimizer(optimizer)
        .with_grad_clip(None)
        .with_early_stop(None);
    let mut stepper = TrainStep::<B, M>::new(&config)?;
    let mut model = model;
    for _ in 0..args.warmup {
        model = stepper.step(model, batch, &device)?.0;
    }
    let start = Instant::now();
    for _ in 0..args.steps {
        model = stepper.step(model, batch, &device)?.0;
    }
    let ms = 1e3 * start.elapsed().as_secs_f64() / f64::from(args.steps);
    Ok((ms, params))
}

/// Peak resident memory of this process in MiB (`VmHWM`), where Linux reports it.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn run<B: AutodiffBackend>(case: &str, args: &Args) -> seqlayers::Result<(f64, usize)> {
    let adam = OptimizerKind::Adam;
    Ok(match case {
        "gpt-96" | "gpt-384" => {
            let d = if case == "gpt-96" { 96 } else { 384 };
            let model = language_model::<B>(
                d,
                "attention+mlp,attention+mlp,attention+mlp",
                NormKind::Layer,
            )?;
            time_steps::<B, _>(model, adam, 1e-3, &batch(LM_VOCAB, false), args)?
        }
        "encoder-384" => {
            let adamw = OptimizerKind::AdamW { weight_decay: 0.01 };
            time_steps::<B, _>(encoder::<B>()?, adamw, 1e-4, &batch(30522, true), args)?
        }
        "mamba-384" => {
            let model = language_model::<B>(384, "mamba,mamba,mamba", NormKind::Rms)?;
            time_steps::<B, _>(model, adam, 1e-3, &batch(LM_VOCAB, false), args)?
        }
        other => {
            return Err(seqlayers::SeqError::InvalidConfig(format!(
                "unknown case `{other}`; use one of {}",
                CASES.join(", ")
            )));
        }
    })
}

fn main() {
    let args = Args::parse();
    let cases: Vec<&str> = match &args.only {
        Some(only) => vec![only.as_str()],
        None => CASES.to_vec(),
    };
    let threads = rayon_threads();
    let backend = match args.backend {
        BackendChoice::Ndarray => "burn-ndarray with the crate's kernels",
        BackendChoice::Flex => "burn-flex, tensor ops",
    };
    println!(
        "# seqlayers, {threads} threads, SIMD {}, {backend}",
        SimdLevel::active().name()
    );
    if !args.tsv {
        println!("| case | ms/step | tokens/s | peak MiB | parameters |\n|---|---|---|---|---|");
    }
    for case in cases {
        let timed = match args.backend {
            BackendChoice::Ndarray => run::<seqlayers::backend::CpuAutodiff>(case, &args),
            #[cfg(feature = "flex")]
            BackendChoice::Flex => {
                run::<seqlayers::burn::backend::Autodiff<burn_flex::Flex>>(case, &args)
            }
            #[cfg(not(feature = "flex"))]
            BackendChoice::Flex => Err(seqlayers::SeqError::InvalidConfig(
                "--backend flex: build with `--features flex`".into(),
            )),
        };
        let (ms, params) = match timed {
            Ok(timed) => timed,
            Err(e) => {
                eprintln!("model_speed: {e}");
                std::process::exit(2);
            }
        };
        let peak = peak_mib().unwrap_or(f64::NAN);
        if args.tsv {
            println!("{case}\t{ms:.3}\t{peak:.0}\t{params}");
        } else {
            let tokens = (BATCH * LENGTH) as f64 / (ms / 1e3);
            println!("| {case} | {ms:.1} | {tokens:.0} | {peak:.0} | {params} |");
        }
    }
}

/// Threads the kernels run on (Rayon's pool; `RAYON_NUM_THREADS` sets it).
fn rayon_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(cores)
}
