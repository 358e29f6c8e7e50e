//! The `--quick` run of the `copying` example through its driver (`examples/common/copying.rs`).

use crate::harness::copying::{CopyingOptions, copying};
use seqlayers::SeqError;
use seqlayers::backend::CpuAutodiff;
use seqlayers::data::CopyKind;
use seqlayers::presets::CopyModel;

#[test]
fn copying_quick_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("seqlayers-copy-{}", std::process::id()));
    let options = CopyingOptions {
        out_dir: dir.clone(),
        progress: false,
        ..CopyingOptions::default()
    }
    .quick();
    let outcomes = copying::<CpuAutodiff>(&options, &Default::default()).unwrap();
    // 2 tasks × 2 models + the state sweep on copy (N = 2 and 4, trained on 2–4 letters).
    assert_eq!(outcomes.len(), 6);
    let sweep: Vec<_> = outcomes.iter().filter(|o| o.run.sweep).collect();
    assert_eq!(sweep.len(), 2);
    for o in sweep {
        assert_eq!(o.run.task.train_max, options.sweep_train_len.1);
        let lengths: Vec<usize> = o.lengths.iter().map(|l| l.len).collect();
        assert_eq!(lengths, options.sweep_eval_lengths());
    }
    for o in &outcomes {
        assert!(o.params > 0 && o.examples_per_step >= options.batch as f64);
        assert_eq!(o.report.curve.first().map(|p| p.step), Some(0));
        assert!(
            o.lengths
                .iter()
                .all(|l| (0.0..=1.0).contains(&l.exact) && (0.0..=1.0).contains(&l.chars))
        );
        // The n-gram task is evaluated only at lengths it is defined for (> n).
        let min = if o.run.task.kind == CopyKind::Copy {
            1
        } else {
            4
        };
        assert!(o.lengths.iter().all(|l| l.len >= min));
        assert_eq!(o.samples.len(), 3);
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("summary.csv").lines().count(), 7);
    let report = read("report.md");
    for needle in [
        "## Task `copy`",
        "## Task `suffix`",
        "Mamba state size",
        "## Findings",
        "T_rope",
    ] {
        assert!(report.contains(needle), "report misses {needle}");
    }
    assert!(!report.contains(CopyModel::Lstm.name()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn copying_options_reject_impossible_settings() {
    // Each check is an `InvalidConfig` whose message says which setting: a check that refused
    // every option set (or refused them for another reason) would not say the right thing.
    let invalid = |e: SeqError, needle: &str| {
        assert!(
            matches!(&e, SeqError::InvalidConfig(m) if m.contains(needle)),
            "expected InvalidConfig mentioning {needle:?}, got {e:?}"
        );
    };
    let mut o = CopyingOptions::default().quick();
    o.eval_len = (9, 3);
    invalid(o.runs().unwrap_err(), "MIN ≤ MAX");
    let mut o = CopyingOptions::default().quick();
    o.train_len = (2, 8); // a 2-letter string has no answer after a trigram key
    invalid(o.runs().unwrap_err(), "longer than n");
    let mut o = CopyingOptions::default().quick();
    o.sweep_only = true;
    assert!(o.runs().unwrap().iter().all(|r| r.sweep));
    o.state_sizes.clear();
    invalid(o.runs().unwrap_err(), "nothing to run");
    // Zero parallel jobs: refused by name before any training (a worker pool of zero threads
    // would otherwise return an empty result, or hang on the queue).
    let mut o = CopyingOptions::default().quick();
    o.jobs = 0;
    o.out_dir = std::env::temp_dir().join(format!("seqlayers-copy-jobs0-{}", std::process::id()));
    let err = copying::<CpuAutodiff>(&o, &Default::default()).unwrap_err();
    assert!(
        matches!(err, SeqError::ZeroSize { name } if name.starts_with("jobs")),
        "{err:?}"
    );
    std::fs::remove_dir_all(&o.out_dir).ok();
}
