//! Data-parallel training through burn-collective (feature `collective`, on for the test suite
//! through the crate's dev-dependency on itself): N peers with batch B follow the one-process
//! run with batch N·B, and a failing peer ends the run with a typed error instead of a hang.

#![cfg(feature = "collective")]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use rand::rngs::StdRng;
use seqlayers::SeqError;
use seqlayers::backend::CpuAutodiff;
use seqlayers::data::{AssociativeRecall, Batch, Metric, RecallConfig, Task};
use seqlayers::model::{ClassifierConfig, StackClassifier};
use seqlayers::presets::RecallModel;
use seqlayers::train::{
    NodeConfig, OptimizerKind, ParallelConfig, Silent, TrainConfig, TrainEvent, serve_orchestrator,
    train, train_data_parallel,
};

use crate::common::{dev, seeded};

/// Every parameter value, in visiting order.
fn parameters<M: Module<CpuAutodiff>>(model: &M) -> Vec<f32> {
    crate::common::parameter_values::<CpuAutodiff, M>(model)
}

fn task() -> AssociativeRecall {
    AssociativeRecall::new(RecallConfig::new(1).with_train_len(12)).unwrap()
}

/// The Mamba → attention recall classifier at width 8 (the task's embedding), drawn under the init lock.
fn classifier(task: &AssociativeRecall) -> StackClassifier<CpuAutodiff> {
    seeded(3, || {
        ClassifierConfig::new(RecallModel::HybridA.stack_config(8, 12), 16)
            .try_init::<CpuAutodiff>(task.embedding(&dev()), &dev())
            .unwrap()
    })
}

/// `steps` steps, `batch` rows per peer, evaluated every 2 steps, no early stop.
fn config(steps: usize, batch: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: batch,
        eval_every: 2,
        test_batch: 16,
        lr: 3e-3,
        optimizer: OptimizerKind::AdamW { weight_decay: 0.01 },
        grad_clip: Some(1.0),
        early_stop: None,
        ..TrainConfig::default()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// N peers with batch B against one run with batch N·B: the same parameters (f32 rounding of
/// the mean's order), the same loss curve, and the parameters moved.
fn peers_match_one_run(peers: usize) {
    let task = task();
    let model = classifier(&task);
    let before = parameters(&model);
    let steps = 4;
    let (single, single_report) = train(
        model.clone(),
        &task,
        &config(steps, 4 * peers),
        &dev(),
        &mut Silent,
    )
    .unwrap();
    let mut events = Vec::new();
    let mut record = |e: TrainEvent| events.push(e);
    let (parallel, report) = train_data_parallel(
        model,
        &task,
        &config(steps, 4),
        &ParallelConfig::new(peers).with_timeout(Duration::from_secs(60)),
        &[dev()],
        &mut record,
    )
    .unwrap();
    let (a, b) = (parameters(&single), parameters(&parallel));
    let moved = max_diff(&before, &a);
    let diff = max_diff(&a, &b);
    assert!(
        moved > 1e-3,
        "training did not move the parameters ({moved})"
    );
    assert!(
        diff < 1e-5,
        "{peers} peers differ from one run by {diff} (the step moved them by {moved})"
    );
    assert_eq!(report.steps_run, steps);
    assert_eq!(report.curve.len(), single_report.curve.len());
    for (p, q) in report.curve.iter().zip(&single_report.curve).skip(1) {
        assert!((p.loss - q.loss).abs() < 1e-5, "{p:?} vs {q:?}");
        assert!((p.test_loss - q.test_loss).abs() < 1e-4, "{p:?} vs {q:?}");
    }
    let step_events = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert_eq!(step_events, steps, "peer 0 alone reports each step");
}

#[test]
fn two_peers_with_batch_b_equal_one_run_with_batch_2b() {
    peers_match_one_run(2);
}

#[test]
fn three_peers_with_batch_b_equal_one_run_with_batch_3b() {
    peers_match_one_run(3);
}

/// What the faulty task does at its `fail_at`-th training batch.
#[derive(Clone, Copy)]
enum Fault {
    /// Returns an error.
    Error,
    /// Panics.
    Panic,
    /// Sleeps this long first (a peer that stops making progress).
    Stall(Duration),
}

/// Recall, except that the `fail_at`-th training batch (counted over all peers) fails.
struct Faulty {
    inner: AssociativeRecall,
    calls: AtomicUsize,
    fail_at: usize,
    fault: Fault,
}

impl Task for Faulty {
    fn train_len(&self) -> usize {
        Task::train_len(&self.inner)
    }

    fn sample(&self, rng: &mut StdRng, batch: usize, len: usize) -> seqlayers::Result<Batch> {
        Task::sample(&self.inner, rng, batch, len)
    }

    fn train_batch(&self, rng: &mut StdRng, batch: usize) -> seqlayers::Result<Batch> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.fail_at {
            match self.fault {
                Fault::Error => return Err(SeqError::InvalidConfig("injected failure".into())),
                Fault::Panic => panic!("injected panic"),
                Fault::Stall(pause) => std::thread::sleep(pause),
            }
        }
        Task::train_batch(&self.inner, rng, batch)
    }

    fn test_batch(&self, rng: &mut StdRng, batch: usize) -> seqlayers::Result<Batch> {
        Task::test_batch(&self.inner, rng, batch)
    }

    fn metric(&self) -> Metric {
        Task::metric(&self.inner)
    }
}

fn faulty(fault: Fault) -> Faulty {
    Faulty {
        inner: task(),
        calls: AtomicUsize::new(0),
        fail_at: 3, // the second step of one of the two peers
        fault,
    }
}

#[test]
fn a_failing_peer_ends_the_run_with_a_typed_error() {
    let task = faulty(Fault::Error);
    let model = classifier(&task.inner);
    let started = Instant::now();
    let err = train_data_parallel(
        model,
        &task,
        &config(20, 4),
        &ParallelConfig::new(2).with_timeout(Duration::from_secs(60)),
        &[dev()],
        &mut Silent,
    )
    .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        SeqError::PeerFailed { source, .. } => {
            assert!(source.to_string().contains("injected failure"), "{err}")
        }
        other => panic!("expected PeerFailed, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn a_panicking_peer_ends_the_run_with_a_typed_error() {
    let task = faulty(Fault::Panic);
    let model = classifier(&task.inner);
    let started = Instant::now();
    let err = train_data_parallel(
        model,
        &task,
        &config(20, 4),
        &ParallelConfig::new(2).with_timeout(Duration::from_secs(60)),
        &[dev()],
        &mut Silent,
    )
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, SeqError::PeerPanicked { message, .. } if message.contains("injected panic")),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // The collective is usable again after the failed run.
    let task = task.inner;
    let model = classifier(&task);
    train_data_parallel(
        model,
        &task,
        &config(2, 4),
        &ParallelConfig::new(2),
        &[dev()],
        &mut Silent,
    )
    .unwrap();
}

#[test]
fn a_stalled_peer_ends_the_run_at_the_timeout() {
    // One peer sleeps 3 s in its second step; the other waits in the all-reduce. The 1 s
    // watchdog ends the run and releases the waiting peer; the sleeper's next collective call
    // fails at once, so the run returns soon after it wakes.
    let task = faulty(Fault::Stall(Duration::from_secs(3)));
    let model = classifier(&task.inner);
    let started = Instant::now();
    let err = train_data_parallel(
        model,
        &task,
        &config(20, 4),
        &ParallelConfig::new(2).with_timeout(Duration::from_secs(1)),
        &[dev()],
        &mut Silent,
    )
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            SeqError::PeerTimeout {
                what: "made no progress",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn bad_peer_counts_are_typed_errors() {
    let task = task();
    let model = classifier(&task);
    for (peers, devices) in [(0, 1), (2, 3), (3, 2)] {
        let err = train_data_parallel(
            model.clone(),
            &task,
            &config(2, 4),
            &ParallelConfig::new(peers),
            &vec![dev(); devices],
            &mut Silent,
        )
        .unwrap_err();
        assert!(
            matches!(err, SeqError::PeerCount { peers: p, .. } if p == peers),
            "{peers} peers on {devices} devices: {err:?}"
        );
    }
}

// Multi-node runs through burn-collective's global orchestrator, as separate processes on the
// loopback address. The node processes are this test binary again, running `loopback_node`
// with its settings in `NODE_ENV`: burn-collective keeps one collective per process, and a
// node left waiting for a missing one cannot be released, so no node runs in the test's own
// process.

/// The settings of a node process: `node,nodes,orchestrator_port,data_port,timeout_s,out_file`.
const NODE_ENV: &str = "SEQLAYERS_LOOPBACK_NODE";

/// Steps and rows per node of the loopback runs.
const NODE_STEPS: usize = 4;
const NODE_ROWS: usize = 4;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The settings of an orchestrator process: its port.
const ORCHESTRATOR_ENV: &str = "SEQLAYERS_LOOPBACK_ORCHESTRATOR";

/// An orchestrator process (this binary running `loopback_orchestrator`) on a free port,
/// killed when dropped; returns once it accepts connections.
struct Orchestrator {
    port: u16,
    child: Child,
}

impl Orchestrator {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "collective::loopback_orchestrator", "--ignored"])
            .env(ORCHESTRATOR_ENV, port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the orchestrator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An orchestrator process's body (`serve_orchestrator` until killed). Started by the loopback
/// tests below, which set `ORCHESTRATOR_ENV`; run alone it fails, saying so.
#[test]
#[ignore = "the orchestrator process of the loopback tests, which start it with SEQLAYERS_LOOPBACK_ORCHESTRATOR set"]
fn loopback_orchestrator() {
    let port = std::env::var(ORCHESTRATOR_ENV).unwrap_or_else(|_| {
        panic!("{ORCHESTRATOR_ENV} is not set: this is the orchestrator process of the loopback tests, which start it")
    });
    serve_orchestrator(port.parse().unwrap()).unwrap();
}

/// Starts node `node` of `nodes` as a child process writing its outcome to `out`.
fn spawn_node(node: usize, nodes: usize, orchestrator: u16, timeout_s: u64, out: &Path) -> Child {
    let spec = format!(
        "{node},{nodes},{orchestrator},{},{timeout_s},{}",
        free_port(),
        out.display()
    );
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "collective::loopback_node",
            "--ignored",
            "--test-threads=1",
        ])
        .env(NODE_ENV, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`; kills it past that.
fn wait_for(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node process ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh folder for the node processes' outcomes.
fn scratch() -> PathBuf {
    crate::common::scratch_dir("seqlayers-loopback")
}

/// What a node process wrote: its parameters, or its error's debug text.
fn outcome(path: &Path) -> Result<Vec<f32>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut lines = text.lines();
    match lines.next() {
        Some("ok") => Ok(lines
            .map(|l| f32::from_bits(u32::from_str_radix(l, 16).unwrap()))
            .collect()),
        Some(other) => Err(other.to_string()),
        None => Err("empty".into()),
    }
}

/// A node process's body: trains the suite's classifier as node `node` of `nodes` (one peer
/// each) and writes `ok` and its parameters' bits, or its error and the steps it finished.
/// Started by the loopback tests below, which set `NODE_ENV`; run alone it fails, saying so.
#[test]
#[ignore = "the node process of the loopback tests, which start it with SEQLAYERS_LOOPBACK_NODE set"]
fn loopback_node() {
    let spec = std::env::var(NODE_ENV).unwrap_or_else(|_| {
        panic!(
            "{NODE_ENV} is not set: this is the node process of the loopback tests, which start it"
        )
    });
    let fields: Vec<&str> = spec.splitn(6, ',').collect();
    let num = |i: usize| fields[i].parse::<u64>().unwrap();
    let (node, nodes, orchestrator, data_port, timeout_s) =
        (num(0) as usize, num(1) as usize, num(2), num(3), num(4));
    let out = PathBuf::from(fields[5]);
    let task = task();
    let model = classifier(&task);
    let node_config = NodeConfig::new(
        node,
        nodes,
        format!("ws://127.0.0.1:{orchestrator}"),
        format!("ws://127.0.0.1:{data_port}"),
    )
    .unwrap();
    let parallel = ParallelConfig::new(1)
        .with_nodes(node_config)
        .with_timeout(Duration::from_secs(timeout_s));
    let (mut evaluated, mut steps) = (0, 0);
    let mut count = |e: TrainEvent| match e {
        TrainEvent::Evaluated(_) => evaluated += 1,
        TrainEvent::Step { .. } => steps += 1,
        _ => {}
    };
    let result = train_data_parallel(
        model,
        &task,
        &config(NODE_STEPS, NODE_ROWS),
        &parallel,
        &[dev()],
        &mut count,
    );
    let text = match result {
        Ok((trained, _)) => {
            let mut text = String::from("ok\n");
            for p in parameters(&trained) {
                text.push_str(&format!("{:08x}\n", p.to_bits()));
            }
            text
        }
        Err(e) => format!("{e:?} after {evaluated} evaluations and {steps} steps\n"),
    };
    std::fs::write(&out, text).unwrap();
}

#[test]
fn two_processes_on_loopback_equal_one_run_or_stop_at_the_known_upstream_deadlock() {
    // Two node processes of one peer each, batch B, against one run with batch 2B.
    //
    // burn-collective 0.21 completes only the *first* global all-reduce of a process: its
    // `SyncService::sync` ends every global all-reduce with a barrier that clears a copy of its
    // list of synced nodes instead of the list, so the second barrier never completes (see
    // docs/SCALING.md). Our first global all-reduce is the start-up check that the nodes hold
    // the same parameters; both nodes pass it and evaluate step 0, then wait in step 1's
    // all-reduce until their 10 s deadline, and end with a typed timeout. This test accepts
    // exactly that outcome or the goal (the same parameters as the one-process run), so it
    // fails on anything else: a hang, another error, or different parameters.
    let task = task();
    let model = classifier(&task);
    let before = parameters(&model);
    let (single, _) = train(
        model,
        &task,
        &config(NODE_STEPS, 2 * NODE_ROWS),
        &dev(),
        &mut Silent,
    )
    .unwrap();
    let reference = parameters(&single);
    let moved = max_diff(&before, &reference);
    assert!(
        moved > 1e-3,
        "training did not move the parameters ({moved})"
    );

    let orchestrator = Orchestrator::start();
    let dir = scratch();
    let outs = [dir.join("node0"), dir.join("node1")];
    let mut children: Vec<Child> = (0..2)
        .map(|node| spawn_node(node, 2, orchestrator.port, 10, &outs[node]))
        .collect();
    for child in &mut children {
        assert!(
            wait_for(child, Duration::from_secs(240)),
            "a node process failed"
        );
    }
    let outcomes: Vec<Result<Vec<f32>, String>> = outs.iter().map(|o| outcome(o)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    if outcomes.iter().all(|o| o.is_ok()) {
        for (node, params) in outcomes.iter().enumerate() {
            let diff = max_diff(params.as_ref().unwrap(), &reference);
            assert!(
                diff < 1e-5,
                "node {node} differs from one run with batch 2B by {diff} (the steps moved the parameters by {moved})"
            );
        }
    } else {
        for (node, outcome) in outcomes.iter().enumerate() {
            let error = outcome
                .as_ref()
                .expect_err("one node trained, the other did not");
            assert!(
                error.starts_with("PeerTimeout")
                    && error.contains("\"got no answer from the other nodes\"")
                    && error.ends_with("after 1 evaluations and 0 steps"),
                "node {node} failed otherwise than burn-collective 0.21's second-barrier deadlock: {error}"
            );
        }
    }
}

#[test]
fn a_node_whose_partner_never_joins_ends_with_a_timeout() {
    // Node 0 of 2 starts alone: burn-collective's registration waits for node 1 forever, and
    // the node gives up after its 3 s timeout with a typed error instead of hanging.
    let orchestrator = Orchestrator::start();
    let dir = scratch();
    let out = dir.join("lonely");
    let started = Instant::now();
    let mut child = spawn_node(0, 2, orchestrator.port, 3, &out);
    assert!(wait_for(&mut child, Duration::from_secs(120)));
    let elapsed = started.elapsed();
    let error = outcome(&out).expect_err("a lone node trained");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        error.starts_with("PeerTimeout") && error.contains("\"was not joined by the other nodes\""),
        "{error}"
    );
    assert!(
        elapsed >= Duration::from_secs(3),
        "gave up early: {elapsed:?}"
    );
}

#[test]
fn bad_node_settings_are_typed_errors() {
    for (node, nodes, orchestrator, address) in [
        (2, 2, "ws://127.0.0.1:3000", "ws://127.0.0.1:3001"),
        (0, 0, "ws://127.0.0.1:3000", "ws://127.0.0.1:3001"),
        (0, 2, "127.0.0.1:3000", "ws://127.0.0.1:3001"),
        (0, 2, "ws://127.0.0.1:3000", "ws://127.0.0.1"),
        (0, 2, "ws://127.0.0.1:3000", "ws://:3001"),
        (0, 2, "ws://127.0.0.1:3000", "ws://127.0.0.1:0"),
    ] {
        let err = NodeConfig::new(node, nodes, orchestrator, address).unwrap_err();
        assert!(
            matches!(err, SeqError::PeerCount { .. } | SeqError::InvalidConfig(_)),
            "{node}/{nodes} {orchestrator} {address}: {err:?}"
        );
    }
    let good = NodeConfig::new(1, 2, "ws://10.0.0.1:3000", "ws://10.0.0.2:3001").unwrap();
    assert_eq!(good.data_port, 3001);
    let parallel = ParallelConfig::new(2).with_nodes(good);
    assert_eq!(parallel.total_peers(), 4);
    assert!(!parallel.is_writer());
    assert!(ParallelConfig::new(2).is_writer());
}
