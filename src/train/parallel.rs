//! Data-parallel training: N peers, one thread each, average their gradients through
//! burn-collective before every optimizer step (the `collective` feature).
//!
//! Every peer holds a copy of the model and draws the *whole* minibatch of `N · B` rows from
//! the run's seeded stream, exactly as [`train`](super::train) with batch `N · B` would, then
//! keeps its own rows `[p·B, (p+1)·B)`. The peers all-reduce (mean) the loss and the gradients,
//! so each applies the same update to the same parameters, and the run follows the one-process
//! run with batch `N · B` to f32 rounding (the test suite checks this). Peer 0 evaluates on the
//! fixed test batch and reports to the observer; the early-stop and plateau decisions it takes
//! are shared with the other peers through one more all-reduce at every evaluation step.
//!
//! **The mean of the shards' means.** The loss of a batch is the mean over its scored
//! positions. For label tasks, and token tasks that score the same number of positions in every
//! row, the mean of the peers' losses (and gradients) is the loss of the whole batch. For token
//! tasks whose rows score different numbers of positions (e.g. copying strings of several
//! lengths), it weighs every shard equally instead: an unbiased but different estimate.
//!
//! **Failures end the run.** A peer that returns an error or panics stops the run: the others
//! are released from the collective ([`reset_collective`]) and the run returns
//! [`SeqError::PeerFailed`] (or [`SeqError::Diverged`] as-is, which every peer sees at the same
//! step, since they check the shared loss) or [`SeqError::PeerPanicked`]. A peer that does not
//! start, or a run in which no peer reports within [`ParallelConfig::timeout`], ends with
//! [`SeqError::PeerTimeout`] instead of waiting.
//!
//! burn-collective keeps one collective per backend type and process, so data-parallel runs in
//! one process take turns (a process-wide lock); several runs at once need several processes.
//!
//! **Several processes or machines.** With [`ParallelConfig::with_nodes`] this process is one
//! node of a run through burn-collective's global orchestrator ([`serve_orchestrator`]); node
//! `n` of `M` takes the rows of global peers `n·N .. (n+1)·N`. burn-collective 0.21 completes
//! only the first global all-reduce of a process (its node barrier never resets), so such runs
//! pass their start-up check and then end with [`SeqError::PeerTimeout`] at the first step
//! until that is fixed upstream (docs/SCALING.md).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use burn_collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective,
    register, reset_collective,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::objective::{SequenceModel, evaluate_batch};
use super::trainer::{
    CurvePoint, StepSync, StopReason, TrainConfig, TrainEvent, TrainObserver, TrainReport,
    TrainStep,
};
use crate::data::{Batch, Source, Targets, Task};
use crate::error::SeqError;

/// How a data-parallel run is split and watched.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelConfig {
    /// Number of peers (threads); each takes `TrainConfig::batch_size` rows of every step's
    /// `peers · batch_size` rows.
    pub peers: usize,
    /// How long the run waits for a peer to start, and for any progress (a step, an
    /// evaluation) once started, before it ends with [`SeqError::PeerTimeout`]. It must exceed
    /// one step plus one evaluation on the test batch.
    pub timeout: Duration,
    /// burn-collective's all-reduce between the peers of this process and, on a multi-node
    /// run, between the nodes (tree, ring or centralized; the same result up to rounding),
    /// re-exported as
    /// `seqlayers::burn::collective::AllReduceStrategy`.
    pub strategy: AllReduceStrategy,
    /// `None`: every peer is a thread of this process. `Some`: this process is one node of a
    /// multi-node run through burn-collective's global orchestrator ([`NodeConfig`]).
    pub nodes: Option<NodeConfig>,
}

impl ParallelConfig {
    /// `peers` peers, a 120 s timeout, and burn-collective's default tree all-reduce.
    pub fn new(peers: usize) -> Self {
        Self {
            peers,
            timeout: Duration::from_secs(120),
            strategy: AllReduceStrategy::Tree(2),
            nodes: None,
        }
    }

    /// The same as one node of a multi-node run: `peers` threads here, the same number on
    /// every other node.
    pub fn with_nodes(self, nodes: NodeConfig) -> Self {
        Self {
            nodes: Some(nodes),
            ..self
        }
    }

    /// Peers over all nodes.
    pub fn total_peers(&self) -> usize {
        self.peers * self.nodes.as_ref().map_or(1, |n| n.nodes)
    }

    /// Whether this process writes the run's metrics and checkpoints: node 0 (or the only
    /// process). Every node ends with the same parameters.
    pub fn is_writer(&self) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.node == 0)
    }

    /// The same with another timeout.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// The same with another all-reduce strategy.
    pub fn with_strategy(self, strategy: AllReduceStrategy) -> Self {
        Self { strategy, ..self }
    }
}

/// Where this process sits in a multi-node run: burn-collective's global orchestrator
/// ([`serve_orchestrator`]) matches the nodes, and each node opens a tensor data service that
/// the others download gradient slices from. Every node runs the same program with the same
/// seed, model and [`TrainConfig`]; only `node` and `address` / `data_port` differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's index, `0..nodes`: it takes rows `[node · peers · B, (node + 1) · peers · B)`
    /// of every step's batch. Node 0's first peer decides early stops for all.
    pub node: usize,
    /// Number of nodes (processes) in the run.
    pub nodes: usize,
    /// The orchestrator's address, e.g. `ws://10.0.0.1:3000`.
    pub orchestrator: String,
    /// Where the other nodes reach this node's data service, e.g. `ws://10.0.0.2:3001`.
    pub address: String,
    /// The port this node's data service listens on (all interfaces): the port of `address`.
    pub data_port: u16,
}

impl NodeConfig {
    /// Node `node` of `nodes`, reaching the orchestrator at `orchestrator` and reached by the
    /// others at `address` (`ws://host:port`; the data service listens on that port).
    pub fn new(
        node: usize,
        nodes: usize,
        orchestrator: impl Into<String>,
        address: impl Into<String>,
    ) -> crate::Result<Self> {
        let orchestrator = orchestrator.into();
        let address = address.into();
        if nodes == 0 || node >= nodes {
            return Err(SeqError::PeerCount {
                peers: nodes,
                problem: format!("node index {node} is not below the node count {nodes}"),
            });
        }
        let port_of = |url: &str, what: &str| -> crate::Result<u16> {
            let rest = url.strip_prefix("ws://").ok_or_else(|| {
                SeqError::InvalidConfig(format!(
                    "{what} `{url}` must start with ws:// (e.g. ws://127.0.0.1:3000)"
                ))
            })?;
            rest.rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port))
                .and_then(|port| port.trim_end_matches('/').parse::<u16>().ok())
                .filter(|&port| port != 0)
                .ok_or_else(|| {
                    SeqError::InvalidConfig(format!(
                        "{what} `{url}` needs a host and a non-zero port, e.g. ws://127.0.0.1:3001"
                    ))
                })
        };
        port_of(&orchestrator, "the orchestrator address")?;
        let data_port = port_of(&address, "the node address")?;
        Ok(Self {
            node,
            nodes,
            orchestrator,
            address,
            data_port,
        })
    }
}

/// Runs burn-collective's global orchestrator on `port` (all interfaces) until the process
/// gets Ctrl-C or SIGTERM: the meeting point of a multi-node run's nodes ([`NodeConfig`]).
/// Start it once, on any machine the nodes reach, before or after the nodes.
///
/// Errors: [`SeqError::Collective`] when its runtime cannot start.
pub fn serve_orchestrator(port: u16) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SeqError::Collective {
            operation: "start the orchestrator",
            peer: 0,
            message: e.to_string(),
        })?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

/// One data-parallel run per process at a time: burn-collective's server is per backend type.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// What the peers tell the coordinating thread.
enum Message<M> {
    /// The peer's thread started and waits for the others.
    Joined(usize),
    /// An event of peer 0, for the observer.
    Event(TrainEvent),
    /// A step done by another peer (the watchdog's heartbeat).
    Progress,
    /// The peer ended: peer 0 with the model and the report, the others with `None`.
    Done(usize, crate::Result<Option<(M, TrainReport)>>),
}

/// Trains `model` on `task` with `parallel.peers` peers and returns peer 0's trained model
/// (every peer ends with the same parameters) and its report.
///
/// `config` is read as for [`train`](super::train), with `config.batch_size` rows *per peer*:
/// every peer draws the step's `peers · batch_size` rows from the seeded stream and keeps its
/// own `batch_size`, and the peers average (all-reduce) the loss and the gradients before the
/// same update. For label tasks, and token tasks that score equally many positions per row, the
/// run follows `train` with batch `peers · batch_size` to f32 rounding (other token tasks weigh
/// the shards equally). Peer 0 evaluates, reports to the observer and decides early stops for
/// all. `devices` holds one device per peer, or one device that every peer shares (the CPU).
/// Runs in one process take turns: burn-collective has one collective per backend type and
/// process. See docs/SCALING.md.
///
/// Errors: [`SeqError::PeerCount`] for zero peers or a device count that is neither 1 nor
/// `peers`; the config's own errors; [`SeqError::PeerFailed`], [`SeqError::PeerPanicked`],
/// [`SeqError::PeerTimeout`] or [`SeqError::Diverged`] when a peer fails, and
/// [`SeqError::Collective`] when burn-collective does.
pub fn train_data_parallel<B, M, T>(
    model: M,
    task: &T,
    config: &TrainConfig,
    parallel: &ParallelConfig,
    devices: &[B::Device],
    observer: &mut dyn TrainObserver,
) -> crate::Result<(M, TrainReport)>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
    M::InnerModule: SequenceModel<B::InnerBackend>,
    T: Task + ?Sized,
{
    let peers = parallel.peers;
    if peers == 0 {
        return Err(SeqError::PeerCount {
            peers,
            problem: "at least one peer is needed".into(),
        });
    }
    if devices.len() != 1 && devices.len() != peers {
        return Err(SeqError::PeerCount {
            peers,
            problem: format!(
                "{} device(s) given; pass one device per peer, or one device for all",
                devices.len()
            ),
        });
    }
    if let Some(nodes) = &parallel.nodes {
        // Re-checks a config built field by field instead of through `NodeConfig::new`.
        let checked = NodeConfig::new(
            nodes.node,
            nodes.nodes,
            nodes.orchestrator.clone(),
            nodes.address.clone(),
        )?;
        if checked.data_port != nodes.data_port {
            return Err(SeqError::InvalidConfig(format!(
                "the node's data port {} differs from its address `{}`",
                nodes.data_port, nodes.address
            )));
        }
    }
    let total = parallel.total_peers();
    if peers
        .checked_mul(parallel.nodes.as_ref().map_or(1, |n| n.nodes))
        .and_then(|t| t.checked_mul(config.batch_size))
        .is_none()
    {
        return Err(SeqError::PeerCount {
            peers,
            problem: "nodes · peers · batch_size overflows".into(),
        });
    }
    config.validate()?;
    let mut test_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x7E57));
    let test_batch = task.test_batch(&mut test_rng, config.test_batch)?;
    let _turn = RUN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let collective = collective_config(parallel, peers)?;
    // burn-optim all-reduces the gradients in the order of their parameter ids, which are
    // random per process: every node numbers them alike instead.
    let model = if parallel.nodes.is_some() {
        model.map(&mut Renumber { next: 0 })
    } else {
        model
    };
    let (tx, rx) = mpsc::channel::<Message<M>>();
    std::thread::scope(|scope| {
        let mut go = Vec::with_capacity(peers);
        for peer in 0..peers {
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            go.push(go_tx);
            let tx = tx.clone();
            let device = devices[peer % devices.len()].clone();
            let model = model.clone().fork(&device);
            let test_batch = &test_batch;
            let link = Link::<B> {
                global: parallel.nodes.as_ref().map_or(0, |n| n.node) * peers + peer,
                total,
                device: device.clone(),
                deadline: parallel.nodes.as_ref().map(|_| parallel.timeout),
                _backend: std::marker::PhantomData,
            };
            let collective = collective.clone();
            scope.spawn(move || {
                let _ = tx.send(Message::Joined(peer));
                if go_rx.recv() != Ok(true) {
                    return;
                }
                let peer_ctx = Peer::<B, M> {
                    peer,
                    link,
                    tx: tx.clone(),
                };
                let result = catch_unwind(AssertUnwindSafe(|| {
                    peer_ctx.run(model, task, config, test_batch, collective)
                }))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-string panic payload".into());
                    Err(SeqError::PeerPanicked { peer, message })
                });
                let _ = tx.send(Message::Done(peer, result));
            });
        }
        drop(tx);
        // On a multi-node run every collective call has its own deadline (`Link::call`), whose
        // error says what the peer waited for; the watchdog waits longer than that.
        let watchdog = match parallel.nodes {
            Some(_) => parallel.timeout * 2 + Duration::from_secs(1),
            None => parallel.timeout,
        };
        coordinate::<B, M>(&rx, &go, peers, watchdog, observer)
    })
}

/// Renumbers the float parameters 1, 2, … in visiting order, so that the same architecture
/// gets the same [`ParamId`]s in every process.
struct Renumber {
    next: u64,
}

impl<B: Backend> ModuleMapper<B> for Renumber {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        self.next += 1;
        Param::from_mapped_value(ParamId::from(self.next), tensor, mapper)
    }
}

/// A weighted sum of every float parameter (in visiting order), to check that the nodes of a
/// multi-node run start from the same parameters.
struct Fingerprint {
    index: u64,
    sum: f64,
}

impl<B: Backend> ModuleVisitor<B> for Fingerprint {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = param.val().into_data().convert::<f32>();
        for v in values.as_slice::<f32>().unwrap_or(&[]) {
            self.index += 1;
            self.sum += f64::from(*v) * (1 + self.index % 13) as f64;
        }
    }
}

/// burn-collective's settings for this process: `peers` local devices, and on a multi-node run
/// the orchestrator, this node's address and data port, and the node count.
fn collective_config(parallel: &ParallelConfig, peers: usize) -> crate::Result<CollectiveConfig> {
    let config = CollectiveConfig::default()
        .with_num_devices(peers)
        .with_local_all_reduce_strategy(parallel.strategy);
    let Some(nodes) = &parallel.nodes else {
        return Ok(config);
    };
    let address = |url: &str| -> crate::Result<burn_communication::Address> {
        url.parse()
            .map_err(|e: String| SeqError::InvalidConfig(format!("address `{url}`: {e}")))
    };
    let nodes_u32 = u32::try_from(nodes.nodes).map_err(|_| SeqError::PeerCount {
        peers: nodes.nodes,
        problem: "too many nodes".into(),
    })?;
    Ok(config
        .with_num_nodes(nodes_u32)
        .with_global_address(address(&nodes.orchestrator)?)
        .with_node_address(address(&nodes.address)?)
        .with_data_service_port(nodes.data_port)
        .with_global_all_reduce_strategy(parallel.strategy))
}

/// The coordinating thread's side: starts the peers once all joined, forwards peer 0's events,
/// watches for failures and silence, and releases the peers from the collective when the run
/// fails.
fn coordinate<B: AutodiffBackend, M>(
    rx: &Receiver<Message<M>>,
    go: &[Sender<bool>],
    peers: usize,
    timeout: Duration,
    observer: &mut dyn TrainObserver,
) -> crate::Result<(M, TrainReport)> {
    // Joining: every thread must start before any registers with the collective, whose
    // registration barrier cannot be released.
    let mut joined = vec![false; peers];
    let deadline = Instant::now() + timeout;
    let mut early: Option<SeqError> = None;
    while joined.iter().any(|j| !j) && early.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Message::Joined(p)) => joined[p] = true,
            Ok(Message::Done(p, Err(e))) => early = Some(peer_error(p, e)),
            Ok(_) => {}
            Err(_) => {
                let peer = joined.iter().position(|j| !j).unwrap_or(0);
                early = Some(SeqError::PeerTimeout {
                    peer,
                    what: "never joined",
                    seconds: timeout.as_secs_f64(),
                });
            }
        }
    }
    if let Some(e) = early {
        for g in go {
            let _ = g.send(false);
        }
        return Err(e);
    }
    for g in go {
        let _ = g.send(true);
    }

    // Running.
    let mut done = vec![false; peers];
    let mut first_error: Option<SeqError> = None;
    let mut leader = None;
    while done.iter().any(|d| !d) {
        match rx.recv_timeout(timeout) {
            Ok(Message::Event(e)) => observer.on_event(e),
            Ok(Message::Joined(_)) | Ok(Message::Progress) => {}
            Ok(Message::Done(p, result)) => {
                done[p] = true;
                match result {
                    Ok(Some(out)) => leader = Some(out),
                    Ok(None) => {}
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(peer_error(p, e));
                            // Releases the peers waiting in an all-reduce: they return an error.
                            reset_collective::<B::InnerBackend>();
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let peer = done.iter().position(|d| !d).unwrap_or(0);
                if first_error.is_none() {
                    first_error = Some(SeqError::PeerTimeout {
                        peer,
                        what: "made no progress",
                        seconds: timeout.as_secs_f64(),
                    });
                    reset_collective::<B::InnerBackend>();
                } else {
                    // Already failed and released: a peer stuck outside the collective.
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    leader.ok_or_else(|| SeqError::PeerFailed {
        peer: 0,
        source: Box::new(SeqError::InvalidConfig(
            "peer 0 ended without its model".into(),
        )),
    })
}

/// A peer's error as the run reports it: divergence as-is (every peer checks the same mean
/// loss), a panic or a timeout as-is (both name the peer), anything else wrapped with the
/// peer's number.
fn peer_error(peer: usize, e: SeqError) -> SeqError {
    match e {
        SeqError::Diverged { .. }
        | SeqError::PeerPanicked { .. }
        | SeqError::PeerTimeout { .. } => e,
        e => SeqError::PeerFailed {
            peer,
            source: Box::new(e),
        },
    }
}

/// One peer's thread: its number in this process, its link to the others, and its channel to
/// the coordinator.
struct Peer<B: AutodiffBackend, M> {
    peer: usize,
    link: Link<B>,
    tx: Sender<Message<M>>,
}

/// A peer's side of the collective: its global number (`node · peers + peer`), the peer count
/// over all nodes, its device, and on a multi-node run the longest wait for one collective
/// call.
struct Link<B: AutodiffBackend> {
    global: usize,
    total: usize,
    device: B::Device,
    /// `Some` on a multi-node run: a node that died or never joined leaves burn-collective's
    /// local server waiting for it, where `reset_collective` cannot reach it, so every call runs
    /// on a helper thread and the peer gives up after this long.
    deadline: Option<Duration>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> Link<B> {
    fn id(&self) -> PeerId {
        PeerId::from(self.global)
    }

    /// Runs the collective call `f`, bounded by the deadline on a multi-node run. A call that
    /// runs out of time is left behind on its thread (the process's collective is unusable
    /// after that; end the process).
    fn call<R: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce() -> Result<R, burn_collective::CollectiveError> + Send + 'static,
    ) -> crate::Result<R> {
        self.call_waiting(operation, "got no answer from the other nodes", f)
    }

    /// [`call`](Self::call), whose timeout error says the peer `waited` (what it did not get).
    fn call_waiting<R: Send + 'static>(
        &self,
        operation: &'static str,
        waited: &'static str,
        f: impl FnOnce() -> Result<R, burn_collective::CollectiveError> + Send + 'static,
    ) -> crate::Result<R> {
        let peer = self.global;
        let Some(deadline) = self.deadline else {
            return f().map_err(|e| collective_error(operation, peer, e));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("seqlayers-collective-{peer}"))
            .spawn(move || {
                let _ = tx.send(f());
            })
            .map_err(|e| SeqError::Collective {
                operation,
                peer,
                message: format!("cannot start its thread: {e}"),
            })?;
        match rx.recv_timeout(deadline) {
            Ok(result) => result.map_err(|e| collective_error(operation, peer, e)),
            Err(RecvTimeoutError::Timeout) => Err(SeqError::PeerTimeout {
                peer,
                what: waited,
                seconds: deadline.as_secs_f64(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(SeqError::Collective {
                operation,
                peer,
                message: "the call's thread ended without an answer".into(),
            }),
        }
    }

    /// The peers' reduction (`op`) of a scalar.
    fn reduce_scalar(
        &self,
        value: f64,
        op: ReduceOperation,
        operation: &'static str,
    ) -> crate::Result<f64> {
        // Repeated once per peer: burn-collective's ring all-reduce splits a tensor into one
        // slice per node and refuses a tensor shorter than that.
        let values = vec![value as f32; self.total];
        let t = Tensor::<B::InnerBackend, 1>::from_floats(values.as_slice(), &self.device); // [total]
        let primitive = t.into_primitive().tensor();
        let id = self.id();
        let reduced = self.call(operation, move || {
            all_reduce::<B::InnerBackend>(id, primitive, op)
        })?;
        let t = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced)); // [total]
        Ok(t.slice(0..1).into_scalar().elem())
    }
}

impl<B, M> Peer<B, M>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
    M::InnerModule: SequenceModel<B::InnerBackend>,
{
    fn send(&self, message: Message<M>) {
        let _ = self.tx.send(message);
    }

    /// Registers, trains, and leaves the collective; peer 0 evaluates and reports.
    fn run<T: Task + ?Sized>(
        &self,
        mut model: M,
        task: &T,
        config: &TrainConfig,
        test_batch: &Batch,
        collective: CollectiveConfig,
    ) -> crate::Result<Option<(M, TrainReport)>> {
        let link = &self.link;
        let (id, device) = (link.id(), link.device.clone());
        link.call_waiting("register", "was not joined by the other nodes", move || {
            register::<B::InnerBackend>(id, device, collective)
        })?;
        if link.deadline.is_some() {
            // Nodes built with another seed or config would average unrelated gradients.
            let mut fingerprint = Fingerprint { index: 0, sum: 0.0 };
            model.visit(&mut fingerprint);
            let mine = fingerprint.sum as f32 as f64;
            let mean =
                link.reduce_scalar(mine, ReduceOperation::Mean, "all_reduce (fingerprint)")?;
            if (mean - mine).abs() > 1e-5 * (1.0 + mine.abs()) {
                return Err(SeqError::InvalidConfig(format!(
                    "peer {} starts from other parameters than the mean of the nodes \
                     (fingerprint {mine} against {mean}): build the model with the same seed \
                     and config on every node",
                    link.global
                )));
            }
        }
        // The first peer of every node evaluates and reports to its node's observer; the
        // first peer of node 0 decides early stops for all.
        let leader = self.peer == 0;
        let decides = link.global == 0;
        let device = &link.device;
        let mut stepper = TrainStep::<B, M>::new(config)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let metric = task.metric();
        let evaluate = |model: &M| -> crate::Result<(f64, f64)> {
            let scores = evaluate_batch::<B::InnerBackend, _>(&model.valid(), test_batch, device)?;
            Ok((scores.get(metric), scores.loss))
        };
        let mut curve = Vec::new();
        if leader {
            self.send(Message::Event(TrainEvent::Started {
                steps: config.steps,
            }));
            let (test_score, test_loss) = evaluate(&model)?;
            let first = CurvePoint {
                step: 0,
                loss: f64::NAN,
                mean_loss: f64::NAN,
                test_score,
                test_loss,
            };
            self.send(Message::Event(TrainEvent::Evaluated(first)));
            curve.push(first);
        }
        let mut stop = Stopping::new(
            metric.higher_is_better(),
            curve.first().map(|p| p.test_score),
        );
        let (mut loss_sum, mut loss_count) = (0.0, 0usize);
        let mut train_time = 0.0;
        let mut steps_run = 0;
        let rows = config.batch_size;
        let mut sync = MeanSync { link };

        for step in 1..=config.steps {
            let full = task.train_batch(&mut rng, link.total * rows)?;
            full.validate()?;
            let shard = rows_of(&full, link.global * rows, rows)?;
            shard.validate()?;
            let started = Instant::now();
            let loss_value = match stepper.step_synced(model, &shard, device, &mut sync) {
                Ok((updated, loss)) => {
                    model = updated;
                    loss
                }
                Err(e) => {
                    if leader && matches!(e, SeqError::Diverged { .. }) {
                        self.send(Message::Event(TrainEvent::Finished {
                            steps_run,
                            diverged: true,
                        }));
                    }
                    return Err(e);
                }
            };
            train_time += started.elapsed().as_secs_f64();
            steps_run = step;
            loss_sum += loss_value;
            loss_count += 1;
            if leader {
                self.send(Message::Event(TrainEvent::Step {
                    step,
                    loss: loss_value,
                }));
            } else {
                self.send(Message::Progress);
            }
            if step % config.eval_every == 0 || step == config.steps {
                let mut verdict = 0.0;
                if leader {
                    let (test_score, test_loss) = evaluate(&model)?;
                    let point = CurvePoint {
                        step,
                        loss: loss_value,
                        mean_loss: loss_sum / loss_count.max(1) as f64,
                        test_score,
                        test_loss,
                    };
                    curve.push(point);
                    self.send(Message::Event(TrainEvent::Evaluated(point)));
                    if let Some(reason) = stop.update(config, &point)
                        && decides
                    {
                        verdict = stop_code(reason);
                    }
                }
                (loss_sum, loss_count) = (0.0, 0);
                // Peer 0's verdict, shared: every peer stops at the same step.
                let shared =
                    link.reduce_scalar(verdict, ReduceOperation::Sum, "all_reduce (stop)")?;
                if shared != 0.0 {
                    stop.reason = if shared == stop_code(StopReason::Converged) {
                        StopReason::Converged
                    } else {
                        StopReason::Plateau
                    };
                    break;
                }
            }
        }
        link.call("finish", move || finish_collective::<B::InnerBackend>(id))?;
        if !leader {
            return Ok(None);
        }
        self.send(Message::Event(TrainEvent::Finished {
            steps_run,
            diverged: false,
        }));
        let ms_per_step = 1e3 * train_time / steps_run.max(1) as f64;
        Ok(Some((
            model,
            TrainReport {
                curve,
                metric,
                steps_run,
                converged_at: stop.converged_at,
                stop: stop.reason,
                ms_per_step,
            },
        )))
    }
}

/// How peer 0's stop verdict travels in the shared all-reduce (0: go on).
fn stop_code(reason: StopReason) -> f64 {
    match reason {
        StopReason::Converged => 1.0,
        _ => 2.0,
    }
}

/// The early-stop and plateau bookkeeping of [`train`](super::train), on peer 0.
struct Stopping {
    higher_is_better: bool,
    streak: usize,
    converged_at: Option<usize>,
    best: f64,
    stale: usize,
    reason: StopReason,
}

impl Stopping {
    fn new(higher_is_better: bool, first: Option<f64>) -> Self {
        Self {
            higher_is_better,
            streak: 0,
            converged_at: None,
            best: first.unwrap_or(f64::NAN),
            stale: 0,
            reason: StopReason::Budget,
        }
    }

    /// The evaluation `point`; `Some` when the run should stop there.
    fn update(&mut self, config: &TrainConfig, point: &CurvePoint) -> Option<StopReason> {
        let step = point.step;
        if let Some(stop) = config.early_stop {
            let reached = if self.higher_is_better {
                point.test_score >= stop.target
            } else {
                point.test_score <= stop.target
            };
            if reached {
                self.streak += 1;
                self.converged_at.get_or_insert(step);
                if self.streak >= stop.patience {
                    return Some(StopReason::Converged);
                }
            } else {
                self.streak = 0;
                self.converged_at = None;
            }
        }
        if let Some(plateau) = config.plateau_stop {
            let margin = if self.higher_is_better {
                plateau.min_delta
            } else {
                -plateau.min_delta
            };
            let better = if self.higher_is_better {
                point.test_score > self.best + margin
            } else {
                point.test_score < self.best + margin
            };
            if better || self.best.is_nan() {
                self.best = point.test_score;
                self.stale = 0;
            } else {
                self.stale += 1;
                if self.stale >= plateau.patience && step >= plateau.min_steps {
                    return Some(StopReason::Plateau);
                }
            }
        }
        None
    }
}

/// The peers' mean of each step's loss and gradients.
struct MeanSync<'a, B: AutodiffBackend> {
    link: &'a Link<B>,
}

impl<B: AutodiffBackend> StepSync for MeanSync<'_, B> {
    fn loss(&mut self, loss: f64) -> crate::Result<f64> {
        if self.link.total == 1 {
            return Ok(loss);
        }
        self.link
            .reduce_scalar(loss, ReduceOperation::Mean, "all_reduce (loss)")
    }

    fn grads(&mut self, grads: GradientsParams) -> crate::Result<GradientsParams> {
        if self.link.total == 1 {
            return Ok(grads);
        }
        let id = self.link.id();
        self.link.call("all_reduce (gradients)", move || {
            grads.all_reduce::<B::InnerBackend>(id, ReduceOperation::Mean)
        })
    }
}

fn collective_error(
    operation: &'static str,
    peer: usize,
    e: burn_collective::CollectiveError,
) -> SeqError {
    SeqError::Collective {
        operation,
        peer,
        message: format!("{e:?}"),
    }
}

/// Rows `[start, start + count)` of `batch` (tokens, targets and source alike).
fn rows_of(batch: &Batch, start: usize, count: usize) -> crate::Result<Batch> {
    if start + count > batch.batch {
        return Err(SeqError::ShapeMismatch {
            what: "rows of the full data-parallel batch",
            expected: format!("at least {}", start + count),
            got: batch.batch.to_string(),
        });
    }
    let len = batch.len;
    let cells = start * len..(start + count) * len;
    let targets = match &batch.targets {
        Targets::Labels(labels) => Targets::Labels(labels[start..start + count].to_vec()),
        Targets::Tokens { ids, loss_mask } => Targets::Tokens {
            ids: ids[cells.clone()].to_vec(),
            loss_mask: loss_mask[cells.clone()].to_vec(),
        },
    };
    let source = batch.source.as_ref().map(|s| {
        let cells = start * s.len..(start + count) * s.len;
        Source {
            tokens: s.tokens[cells.clone()].to_vec(),
            len: s.len,
            padding: s.padding[cells].to_vec(),
        }
    });
    Ok(Batch {
        tokens: batch.tokens[cells].to_vec(),
        batch: count,
        len,
        targets,
        source,
    })
}
