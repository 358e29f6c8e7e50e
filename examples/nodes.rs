//! Data-parallel training across processes or machines through burn-collective's global
//! orchestrator (`train_data_parallel` with a [`NodeConfig`]; docs/SCALING.md).
//!
//! ```text
//! # on one machine (scripts/loopback_nodes.sh runs these four and compares the results)
//! cargo run --release --example nodes -- orchestrator --port 3000
//! cargo run --release --example nodes -- node --node 0 --nodes 2 \
//!     --orchestrator ws://127.0.0.1:3000 --address ws://127.0.0.1:3001 --out node0.txt
//! cargo run --release --example nodes -- node --node 1 --nodes 2 \
//!     --orchestrator ws://127.0.0.1:3000 --address ws://127.0.0.1:3002 --out node1.txt
//! cargo run --release --example nodes -- reference --nodes 2 --out reference.txt
//! ```
//!
//! Every node trains the same recall classifier (Mamba → attention, d = 8, K = 16, L = 12) from
//! the same seed, with `--peers` threads of `--batch` rows each; the nodes average their
//! gradients at every step. `reference` trains the same model in one process with the whole
//! batch (`nodes · peers · batch` rows), which the nodes should match to f32 rounding. Each
//! writes its final parameters to `--out`, one per line. On several machines, give each node
//! an `--address` the others can reach and open its port and the orchestrator's.
//!
//! burn-collective 0.21 completes only the first global all-reduce of a process (its
//! `SyncService::sync` clears a copy of its list of synced nodes), so until it is fixed the
//! nodes pass their start-up check and then end with a timeout error at the first step: see
//! docs/SCALING.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use seqlayers::backend::CpuAutodiff;
use seqlayers::burn::module::{Module, ModuleVisitor, Param};
use seqlayers::burn::tensor::Tensor;
use seqlayers::data::{AssociativeRecall, RecallConfig};
use seqlayers::model::{ClassifierConfig, StackClassifier};
use seqlayers::presets::RecallModel;
use seqlayers::train::{
    NodeConfig, OptimizerKind, ParallelConfig, TrainConfig, TrainEvent, serve_orchestrator, train,
    train_data_parallel,
};

type B = CpuAutodiff;

#[derive(Parser, Debug)]
#[command(about = "Data-parallel training across processes through burn-collective's orchestrator")]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Serve the orchestrator on `--port` until Ctrl-C (start it once, anywhere the nodes reach).
    Orchestrator {
        /// Port to listen on (all interfaces).
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Train as one node of `--nodes`.
    Node {
        /// This node's index, 0 .. nodes.
        #[arg(long)]
        node: usize,
        /// The orchestrator's address, `ws://host:port`.
        #[arg(long)]
        orchestrator: String,
        /// Where the other nodes reach this node, `ws://host:port` (its data service listens
        /// on that port).
        #[arg(long)]
        address: String,
        /// Seconds to wait for the other nodes at any one exchange before giving up.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        run: RunFlags,
    },
    /// Train the same model in one process with the whole batch, for comparison.
    Reference {
        #[command(flatten)]
        run: RunFlags,
    },
}

/// The run's shape: the same on every node and for the reference.
#[derive(clap::Args, Debug)]
struct RunFlags {
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Peer threads per node.
    #[arg(long, default_value_t = 1)]
    peers: usize,
    /// Rows per peer and step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Four steps only (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Seed of the data and the initial parameters (the same on every node).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// File for the final parameters, one per line.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl RunFlags {
    fn config(&self, batch_size: usize) -> TrainConfig {
        TrainConfig {
            steps: if self.quick { 4 } else { self.steps },
            batch_size,
            eval_every: 2,
            test_batch: 16,
            lr: 3e-3,
            optimizer: OptimizerKind::AdamW { weight_decay: 0.01 },
            grad_clip: Some(1.0),
            early_stop: None,
            seed: self.seed,
            ..TrainConfig::default()
        }
    }
}

fn task() -> seqlayers::Result<AssociativeRecall> {
    AssociativeRecall::new(RecallConfig::new(1).with_train_len(12))
}

fn model(task: &AssociativeRecall, seed: u64) -> seqlayers::Result<StackClassifier<B>> {
    let device = Default::default();
    <B as seqlayers::burn::tensor::backend::Backend>::seed(&device, seed);
    ClassifierConfig::new(RecallModel::HybridA.stack_config(8, 12), 16)
        .try_init::<B>(task.embedding(&device), &device)
}

/// Every parameter value, in visiting order.
fn parameters<M: Module<B>>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data();
            self.0.extend(data.iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

fn finish(model: &StackClassifier<B>, out: &Option<PathBuf>) -> seqlayers::Result<()> {
    let params = parameters(model);
    let sum: f64 = params.iter().map(|&p| f64::from(p)).sum();
    println!("{} parameters, sum {sum:.9}", params.len());
    if let Some(path) = out {
        let text: String = params.iter().map(|p| format!("{p:e}\n")).collect();
        std::fs::write(path, text).map_err(seqlayers::SeqError::from)?;
        println!("parameters written to {}", path.display());
    }
    Ok(())
}

fn run(args: Args) -> seqlayers::Result<()> {
    let device = Default::default();
    match args.role {
        Role::Orchestrator { port } => {
            println!("orchestrator on port {port} (Ctrl-C to stop)");
            serve_orchestrator(port)
        }
        Role::Node {
            node,
            orchestrator,
            address,
            timeout,
            run,
        } => {
            let task = task()?;
            let nodes = NodeConfig::new(node, run.nodes, orchestrator, address)?;
            let parallel = ParallelConfig::new(run.peers)
                .with_nodes(nodes)
                .with_timeout(Duration::from_secs(timeout));
            let mut print = |e: TrainEvent| match e {
                TrainEvent::Step { step, loss } => println!("step {step}: loss {loss:.6}"),
                TrainEvent::Evaluated(p) => println!(
                    "step {}: test accuracy {:.3}, test loss {:.6}",
                    p.step, p.test_score, p.test_loss
                ),
                _ => {}
            };
            let (trained, report) = train_data_parallel(
                model(&task, run.seed)?,
                &task,
                &run.config(run.batch),
                &parallel,
                std::slice::from_ref(&device),
                &mut print,
            )?;
            println!(
                "node {node} of {}: {} steps, {:.1} ms/step",
                run.nodes, report.steps_run, report.ms_per_step
            );
            finish(&trained, &run.out)
        }
        Role::Reference { run } => {
            let task = task()?;
            let whole = run.nodes * run.peers * run.batch;
            let mut print = |e: TrainEvent| {
                if let TrainEvent::Step { step, loss } = e {
                    println!("step {step}: loss {loss:.6}");
                }
            };
            let (trained, report) = train(
                model(&task, run.seed)?,
                &task,
                &run.config(whole),
                &device,
                &mut print,
            )?;
            println!(
                "one process, batch {whole}: {} steps, {:.1} ms/step",
                report.steps_run, report.ms_per_step
            );
            finish(&trained, &run.out)
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
