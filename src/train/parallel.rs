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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
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
    /// burn-collective's all-reduce between the peers of this process (tree, ring or
    /// centralized; the same result up to rounding), re-exported as
    /// `seqlayers::burn::collective::AllReduceStrategy`.
    pub strategy: AllReduceStrategy,
}

impl ParallelConfig {
    /// `peers` peers, a 120 s timeout, and burn-collective's default tree all-reduce.
    pub fn new(peers: usize) -> Self {
        Self {
            peers,
            timeout: Duration::from_secs(120),
            strategy: AllReduceStrategy::Tree(2),
        }
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
    if peers.checked_mul(config.batch_size).is_none() {
        return Err(SeqError::PeerCount {
            peers,
            problem: "peers · batch_size overflows".into(),
        });
    }
    config.validate()?;
    let mut test_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x7E57));
    let test_batch = task.test_batch(&mut test_rng, config.test_batch)?;
    let _turn = RUN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

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
            let strategy = parallel.strategy;
            scope.spawn(move || {
                let _ = tx.send(Message::Joined(peer));
                if go_rx.recv() != Ok(true) {
                    return;
                }
                let peer_ctx = Peer::<B, M> {
                    peer,
                    peers,
                    device,
                    tx: tx.clone(),
                };
                let result = catch_unwind(AssertUnwindSafe(|| {
                    peer_ctx.run(model, task, config, test_batch, strategy)
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
        coordinate::<B, M>(&rx, &go, peers, parallel.timeout, observer)
    })
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
/// loss), a panic as-is, anything else wrapped with the peer's number.
fn peer_error(peer: usize, e: SeqError) -> SeqError {
    match e {
        SeqError::Diverged { .. } | SeqError::PeerPanicked { .. } => e,
        e => SeqError::PeerFailed {
            peer,
            source: Box::new(e),
        },
    }
}

/// One peer's thread: who it is, its device, and its channel to the coordinator.
struct Peer<B: AutodiffBackend, M> {
    peer: usize,
    peers: usize,
    device: B::Device,
    tx: Sender<Message<M>>,
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

    fn collective(
        &self,
        operation: &'static str,
    ) -> impl Fn(burn_collective::CollectiveError) -> SeqError {
        let peer = self.peer;
        move |e| collective_error(operation, peer, e)
    }

    /// The peers' reduction (`op`) of a scalar.
    fn reduce_scalar(
        &self,
        value: f64,
        op: ReduceOperation,
        what: &'static str,
    ) -> crate::Result<f64> {
        let t = Tensor::<B::InnerBackend, 1>::from_floats([value as f32], &self.device); // [1]
        let reduced =
            all_reduce::<B::InnerBackend>(PeerId::from(self.peer), t.into_primitive().tensor(), op)
                .map_err(self.collective(what))?;
        let t = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced)); // [1]
        Ok(t.into_scalar().elem())
    }

    /// Registers, trains, and leaves the collective; peer 0 evaluates and reports.
    fn run<T: Task + ?Sized>(
        &self,
        mut model: M,
        task: &T,
        config: &TrainConfig,
        test_batch: &Batch,
        strategy: AllReduceStrategy,
    ) -> crate::Result<Option<(M, TrainReport)>> {
        let id = PeerId::from(self.peer);
        let collective = CollectiveConfig::default()
            .with_num_devices(self.peers)
            .with_local_all_reduce_strategy(strategy);
        register::<B::InnerBackend>(id, self.device.clone(), collective)
            .map_err(self.collective("register"))?;
        let leader = self.peer == 0;
        let mut stepper = TrainStep::<B, M>::new(config)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let metric = task.metric();
        let evaluate = |model: &M| -> crate::Result<(f64, f64)> {
            let scores =
                evaluate_batch::<B::InnerBackend, _>(&model.valid(), test_batch, &self.device)?;
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
        let mut sync = MeanSync::<B> {
            peer: self.peer,
            peers: self.peers,
            device: self.device.clone(),
        };

        for step in 1..=config.steps {
            let full = task.train_batch(&mut rng, self.peers * rows)?;
            full.validate()?;
            let shard = rows_of(&full, self.peer * rows, rows)?;
            shard.validate()?;
            let started = Instant::now();
            let loss_value = match stepper.step_synced(model, &shard, &self.device, &mut sync) {
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
                    if let Some(reason) = stop.update(config, &point) {
                        verdict = stop_code(reason);
                    }
                }
                (loss_sum, loss_count) = (0.0, 0);
                // Peer 0's verdict, shared: every peer stops at the same step.
                let shared =
                    self.reduce_scalar(verdict, ReduceOperation::Sum, "all_reduce (stop)")?;
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
        finish_collective::<B::InnerBackend>(id).map_err(self.collective("finish"))?;
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
struct MeanSync<B: AutodiffBackend> {
    peer: usize,
    peers: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> StepSync for MeanSync<B> {
    fn loss(&mut self, loss: f64) -> crate::Result<f64> {
        if self.peers == 1 {
            return Ok(loss);
        }
        let t = Tensor::<B::InnerBackend, 1>::from_floats([loss as f32], &self.device); // [1]
        let reduced = all_reduce::<B::InnerBackend>(
            PeerId::from(self.peer),
            t.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| collective_error("all_reduce (loss)", self.peer, e))?;
        let t = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced)); // [1]
        Ok(t.into_scalar().elem())
    }

    fn grads(&mut self, grads: GradientsParams) -> crate::Result<GradientsParams> {
        if self.peers == 1 {
            return Ok(grads);
        }
        grads
            .all_reduce::<B::InnerBackend>(PeerId::from(self.peer), ReduceOperation::Mean)
            .map_err(|e| collective_error("all_reduce (gradients)", self.peer, e))
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
