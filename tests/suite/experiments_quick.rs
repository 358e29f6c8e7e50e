//! The `--quick` runs of the homework examples, through the examples' own drivers
//! (`examples/common`, mounted as `harness`) and the library entry points they call.

use crate::harness::associative_recall::associative_recall;
use crate::harness::experiments::{ExperimentOptions, run_all};
use crate::harness::induction_head::{induction_head, induction_head_runs};
use seqlayers::backend::CpuAutodiff;
use seqlayers::presets::RecallModel;

fn quick(dir: &std::path::Path) -> ExperimentOptions {
    ExperimentOptions {
        out_dir: dir.to_path_buf(),
        progress: false,
        ..ExperimentOptions::default()
    }
    .quick()
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn induction_head_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-ih-{}", std::process::id()));
    let options = quick(&dir);
    let outcomes = induction_head::<CpuAutodiff>(&options, &Default::default()).unwrap();
    // 6 models × τ ∈ {1, 5}
    assert_eq!(outcomes.len(), 12);
    for o in &outcomes {
        let lens: Vec<usize> = o.lengths.iter().map(|l| l.len).collect();
        let t = o.run.task.delay;
        assert_eq!(lens, vec![t + 2, 16, 32, 48]);
        assert!(
            o.lengths
                .iter()
                .all(|l| (0.0..=1.0).contains(&l.score) && l.samples == 32)
        );
        assert_eq!(o.report.curve.first().map(|p| p.step), Some(0));
        assert!(o.report.steps_run <= 20 && o.report.steps_run > 0);
        assert!(o.params > 0);
    }
    let summary = read(&dir, "summary.csv");
    assert_eq!(summary.lines().count(), 13, "{summary}");
    assert_eq!(read(&dir, "lengths.csv").lines().count(), 1 + 12 * 4);
    let report = read(&dir, "report.md");
    for model in RecallModel::ALL.iter().take(6) {
        assert!(report.contains(model.name()), "report misses {model}");
    }
    assert!(report.contains("Effect of the delay"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn associative_recall_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-ar-{}", std::process::id()));
    let mut options = quick(&dir);
    options.dims = vec![8, 16]; // keep the "large d" runs small in the smoke test
    let outcomes = associative_recall::<CpuAutodiff>(&options, &Default::default()).unwrap();
    // P2: 4 models × 3 M; P3: 3 M + the τ = 10 run
    assert_eq!(outcomes.len(), 16);
    assert_eq!(outcomes.iter().filter(|o| o.run.task.dim == 16).count(), 4);
    let long = outcomes.last().unwrap();
    assert_eq!((long.run.task.n_queries, long.run.task.delay), (16, 10));
    let report = read(&dir, "report.md");
    assert!(report.contains("Problem 2") && report.contains("Problem 3"));
    assert!(report.contains("Effect of the width d"));
    // Each task's findings appear once, although its runs are not adjacent (listed by model).
    for m in [4, 8, 16] {
        let heading = format!("**K=16, d=8, M={m}, τ=1, L=16**");
        assert_eq!(
            report.matches(&heading).count(),
            1,
            "{heading} in\n{report}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn associative_recall_runs_select_problems_and_the_long_delay() {
    use crate::harness::associative_recall::associative_recall_runs;
    let mut options = ExperimentOptions {
        seeds: vec![0, 1],
        ..ExperimentOptions::default()
    };
    let describe = |o: &ExperimentOptions| -> Vec<(RecallModel, usize, usize, usize, u64)> {
        associative_recall_runs(o)
            .iter()
            .map(|r| {
                let t = &r.task;
                (r.model, t.n_queries, t.delay, t.dim, r.train.seed)
            })
            .collect()
    };
    // Both problems: (4 models × 3 M + 3 M + the τ = 10 run) per seed.
    assert_eq!(describe(&options).len(), 2 * 16);
    // Problem 3 alone, and with a single τ the long-delay run is left out.
    options.problems = vec![3];
    let p3 = describe(&options);
    assert_eq!(p3.len(), 2 * 4);
    assert!(p3.iter().all(|r| r.0 == RecallModel::Mamba && r.3 == 64));
    assert_eq!(p3.iter().filter(|r| r.2 == 10).count(), 2);
    options.delays = vec![1];
    let p3 = describe(&options);
    assert_eq!(p3.len(), 2 * 3);
    assert!(p3.iter().all(|r| r.2 == 1));
    // Problem 2 alone: only d = 8.
    options.problems = vec![2];
    assert!(describe(&options).iter().all(|r| r.3 == 8));
    // An unknown problem is an error that names the flag.
    options.problems = vec![4];
    let err = associative_recall::<CpuAutodiff>(&options, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("--problem 4"), "{err}");
}

#[test]
fn parallel_runs_give_the_same_results_in_the_same_order() {
    let options = ExperimentOptions {
        models: vec![
            RecallModel::Mamba,
            RecallModel::TransformerRope,
            RecallModel::HybridA,
        ],
        delays: vec![1],
        progress: false,
        ..ExperimentOptions::default()
    }
    .quick();
    let runs = induction_head_runs(&options);
    let device = Default::default();
    let one_by_one = run_all::<CpuAutodiff>(&runs, &device, 1).unwrap();
    let parallel = run_all::<CpuAutodiff>(&runs, &device, 2).unwrap();
    assert_eq!(one_by_one.len(), 3);
    for (a, b) in one_by_one.iter().zip(&parallel) {
        assert_eq!(a.run.model, b.run.model);
        // Same initialization (the backend seed is global, so a race would show here) and the
        // same training bit for bit: the kernels reduce in a fixed order whatever the threads.
        let bits = |o: &seqlayers::train::TrainReport| {
            o.curve
                .iter()
                .map(|p| (p.step, p.loss.to_bits(), p.test_score.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&a.report), bits(&b.report), "{}", a.label());
        let scores = |o: &crate::harness::recall::RecallOutcome| {
            o.lengths
                .iter()
                .map(|l| (l.len, l.score.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(scores(a), scores(b), "{}", a.label());
        assert_eq!(a.params, b.params);
    }
}

#[test]
fn runs_follow_the_options() {
    let options = ExperimentOptions {
        models: vec![RecallModel::Mamba],
        delays: vec![3],
        ..ExperimentOptions::default()
    };
    let runs = induction_head_runs(&options);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        (
            run.task.delay,
            run.task.n_queries,
            run.task.dim,
            run.task.vocab
        ),
        (3, 1, 8, 16)
    );
    assert_eq!(run.eval_lengths.first(), Some(&5));
    assert_eq!(run.eval_lengths.last(), Some(&192));
    assert_eq!(run.eval_lengths.len(), 188);

    // Several seeds: one run each, the seed reaching the data, the embedding and the model.
    let options = ExperimentOptions {
        seeds: vec![0, 7],
        ..options
    };
    let runs = induction_head_runs(&options);
    let seeds: Vec<_> = runs
        .iter()
        .map(|r| (r.train.seed, r.model_seed, r.task.embedding_seed))
        .collect();
    assert_eq!(seeds, vec![(0, 0, 0), (7, 7, 7)]);
    assert!(runs[1].name.ends_with("seed 7"));
}

#[test]
fn induction_head_with_seeds_reports_mean_and_range() {
    let dir = std::env::temp_dir().join(format!("seqlayers-ih-seeds-{}", std::process::id()));
    let options = ExperimentOptions {
        models: vec![RecallModel::Mamba],
        delays: vec![1],
        seeds: vec![1, 2],
        plateau_steps: Some(10),
        progress: false,
        out_dir: dir.clone(),
        ..ExperimentOptions::default()
    }
    .quick();
    let outcomes = induction_head::<CpuAutodiff>(&options, &Default::default()).unwrap();
    assert_eq!(outcomes.len(), 2);
    let report = read(&dir, "report.md");
    assert!(report.contains("## Across seeds"), "{report}");
    assert!(report.contains("findings across seeds"), "{report}");
    let summary = read(&dir, "summary.csv");
    assert!(
        summary
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("mamba,1,1,8,1,"),
        "{summary}"
    );
    assert!(
        summary
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("mamba,1,1,8,2,"),
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
