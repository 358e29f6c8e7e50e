//! Data-parallel training through burn-collective (feature `collective`, on for the test suite
//! through the crate's dev-dependency on itself): N peers with batch B follow the one-process
//! run with batch N·B, and a failing peer ends the run with a typed error instead of a hang.

#![cfg(feature = "collective")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use seqlayers::SeqError;
use seqlayers::backend::CpuAutodiff;
use seqlayers::data::{AssociativeRecall, Batch, Metric, RecallConfig, Task};
use seqlayers::model::{ClassifierConfig, StackClassifier};
use seqlayers::presets::RecallModel;
use seqlayers::train::{
    OptimizerKind, ParallelConfig, Silent, TrainConfig, TrainEvent, train, train_data_parallel,
};

use crate::common::{dev, seeded};

/// Every parameter value, in visiting order.
fn parameters<M: Module<CpuAutodiff>>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<CpuAutodiff> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<CpuAutodiff, D>>) {
            self.0
                .extend(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
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
