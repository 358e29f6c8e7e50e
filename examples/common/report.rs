//! Markdown summaries of recall runs: a results table and findings computed from the numbers;
//! and [`percent`], the one percentage formatter of every example's report.

use std::fmt::Write as _;

use super::recall::RecallOutcome;

/// Accuracy at or above which a length counts as "solved" in the findings.
pub const SOLVED: f64 = 0.9;

/// How far a model length-generalizes: the longest evaluated `n ≥ L` such that every evaluated
/// length in `[L, n]` has accuracy ≥ [`SOLVED`] (`None` if the training length `L` itself fails
/// or was not evaluated). Short lengths below `L` do not count: a model may miss some of them
/// (e.g. a hybrid whose convolution needs context) and still extrapolate far beyond `L`.
pub fn solved_up_to(outcome: &RecallOutcome) -> Option<usize> {
    let train_len = outcome.run.task.train_len;
    outcome.accuracy_at(train_len)?;
    let mut longest = None;
    for l in outcome.lengths.iter().filter(|l| l.len >= train_len) {
        if l.score >= SOLVED {
            longest = Some(l.len);
        } else {
            break;
        }
    }
    longest
}

/// Fractions as a percentage with `decimals` decimals: one value as `"m%"`, several as their
/// mean and range `"m% (lo–hi)"` (the seeds of one configuration), none as `"–"`.
pub fn percent(values: &[f64], decimals: usize) -> String {
    let p = |x: f64| format!("{:.*}", decimals, 100.0 * x);
    match values {
        [] => "–".into(),
        [x] => format!("{}%", p(*x)),
        _ => {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{}% ({}–{})", p(mean), p(lo), p(hi))
        }
    }
}

/// A fraction (or none: `"–"`) with one decimal, as in most tables: [`percent`] of one value.
pub fn pct(x: impl Into<Option<f64>>) -> String {
    percent(x.into().as_slice(), 1)
}

/// A markdown table with one row per run.
pub fn results_table(outcomes: &[RecallOutcome]) -> String {
    let mut s = String::from(
        "| model | M | τ | d | seed | params | steps | ended by | converged at | ms/step | acc @ L | mean acc (L, 2L] | mean acc (2L, 3L] | ≥ 90% from L up to |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let t = &o.run.task;
        let l = t.train_len;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            o.run.model,
            t.n_queries,
            t.delay,
            t.dim,
            o.run.train.seed,
            o.params,
            o.report.steps_run,
            o.report.stop,
            o.report
                .converged_at
                .map_or("not reached".into(), |s| s.to_string()),
            o.report.ms_per_step,
            pct(o.accuracy_at(l)),
            pct(o.mean_accuracy(l + 1..=2 * l)),
            pct(o.mean_accuracy(2 * l + 1..=3 * l)),
            solved_up_to(o).map_or("–".into(), |n| n.to_string()),
        );
    }
    s
}

/// The runs grouped by (model, M, τ, d) — the seeds of one configuration together — in order
/// of first appearance.
fn seed_groups(outcomes: &[RecallOutcome]) -> Vec<Vec<&RecallOutcome>> {
    let key = |o: &RecallOutcome| {
        let t = &o.run.task;
        (o.run.model, t.n_queries, t.delay, t.dim, t.train_len)
    };
    let mut groups: Vec<Vec<&RecallOutcome>> = Vec::new();
    for o in outcomes {
        match groups.iter_mut().find(|g| key(g[0]) == key(o)) {
            Some(g) => g.push(o),
            None => groups.push(vec![o]),
        }
    }
    groups
}

/// A markdown table with one row per configuration across its seeds (mean and min–max), how
/// each seed's run ended, and findings that hold on every seed.
pub fn seed_summary(outcomes: &[RecallOutcome]) -> String {
    let groups = seed_groups(outcomes);
    let mut s = String::from(
        "| model | M | τ | d | seeds | steps run (per seed) | ended by | acc @ L | mean acc (L, 2L] | mean acc (2L, 3L] | ≥ 90% from L up to (per seed) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let per_seed = |g: &[&RecallOutcome], f: &dyn Fn(&RecallOutcome) -> String| {
        g.iter().map(|o| f(o)).collect::<Vec<_>>().join(", ")
    };
    for g in &groups {
        let t = &g[0].run.task;
        let l = t.train_len;
        let vals = |f: &dyn Fn(&RecallOutcome) -> Option<f64>| -> Vec<f64> {
            g.iter().filter_map(|o| f(o)).collect()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            g[0].run.model,
            t.n_queries,
            t.delay,
            t.dim,
            g.len(),
            per_seed(g, &|o| o.report.steps_run.to_string()),
            per_seed(g, &|o| o.report.stop.to_string()),
            percent(&vals(&|o| o.accuracy_at(l)), 1),
            percent(&vals(&|o| o.mean_accuracy(l + 1..=2 * l)), 1),
            percent(&vals(&|o| o.mean_accuracy(2 * l + 1..=3 * l)), 1),
            per_seed(g, &|o| solved_up_to(o)
                .map_or("–".into(), |n| n.to_string())),
        );
    }
    // Findings per task setting (M, τ, d), counting seeds.
    let mut settings: Vec<(usize, usize, usize, usize)> = Vec::new();
    for g in &groups {
        let t = &g[0].run.task;
        let k = (t.n_queries, t.delay, t.dim, t.train_len);
        if !settings.contains(&k) {
            settings.push(k);
        }
    }
    for (m, tau, d, l) in settings {
        let here: Vec<&Vec<&RecallOutcome>> = groups
            .iter()
            .filter(|g| {
                let t = &g[0].run.task;
                (t.n_queries, t.delay, t.dim, t.train_len) == (m, tau, d, l)
            })
            .collect();
        let solved = |o: &RecallOutcome| o.accuracy_at(l).is_some_and(|a| a >= SOLVED);
        let general = |o: &RecallOutcome| {
            solved(o)
                && o.mean_accuracy(2 * l + 1..=3 * l)
                    .is_some_and(|a| a >= SOLVED)
        };
        let classify = |pred: &dyn Fn(&RecallOutcome) -> bool| {
            let (mut all, mut some, mut none) = (Vec::new(), Vec::new(), Vec::new());
            for g in &here {
                let n = g.iter().filter(|o| pred(o)).count();
                let name = g[0].run.model.name();
                if n == g.len() {
                    all.push(name.to_string());
                } else if n > 0 {
                    some.push(format!("{name} ({n}/{})", g.len()));
                } else {
                    none.push(name.to_string());
                }
            }
            let list = |v: Vec<String>| {
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join(", ")
                }
            };
            (list(all), list(some), list(none))
        };
        let _ = writeln!(
            s,
            "\n**M={m}, τ={tau}, d={d}, L={l}** (findings across seeds)\n"
        );
        let (all, some, none) = classify(&solved);
        let _ = writeln!(
            s,
            "- Solved at L (≥ {:.0}%) on every seed: {all}; on some seeds: {some}; on none: {none}.",
            100.0 * SOLVED
        );
        let (all, some, _) = classify(&general);
        let _ = writeln!(
            s,
            "- Length generalization (≥ {:.0}% on (2L, 3L]) on every seed: {all}; on some seeds: {some}.",
            100.0 * SOLVED
        );
        let converged: Vec<String> = here
            .iter()
            .filter(|g| g.iter().all(|o| o.report.converged_at.is_some()))
            .map(|g| {
                let steps: Vec<String> = g
                    .iter()
                    .map(|o| o.report.converged_at.unwrap_or(0).to_string())
                    .collect();
                format!("{} ({})", g[0].run.model, steps.join(", "))
            })
            .collect();
        let _ = writeln!(
            s,
            "- Converged (early stop) on every seed, at steps: {}.",
            if converged.is_empty() {
                "none".into()
            } else {
                converged.join("; ")
            }
        );
    }
    s
}

/// Findings stated from the numbers: in-distribution accuracy, length generalization and
/// convergence speed for every group of runs that share a task.
pub fn findings(outcomes: &[RecallOutcome]) -> String {
    let mut s = String::new();
    // Every distinct task once, in order of first appearance (runs are listed model by model).
    let mut tasks: Vec<_> = Vec::new();
    for o in outcomes {
        if !tasks.contains(&o.run.task) {
            tasks.push(o.run.task.clone());
        }
    }
    for task in &tasks {
        let group: Vec<&RecallOutcome> = outcomes.iter().filter(|o| &o.run.task == task).collect();
        let l = task.train_len;
        let _ = writeln!(
            s,
            "\n**K={}, d={}, M={}, τ={}, L={}**\n",
            task.vocab, task.dim, task.n_queries, task.delay, l
        );
        let (learned, failed): (Vec<_>, Vec<_>) = group
            .iter()
            .partition(|o| o.accuracy_at(l).is_some_and(|a| a >= SOLVED));
        let names = |v: &[&&RecallOutcome]| {
            v.iter()
                .map(|o| o.run.model.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "- Solved at the training length (≥ {:.0}% at L): {}. Not solved: {}.",
            100.0 * SOLVED,
            if learned.is_empty() {
                "none".into()
            } else {
                names(&learned)
            },
            if failed.is_empty() {
                "none".into()
            } else {
                names(&failed)
            },
        );
        let generalizers: Vec<_> = learned
            .iter()
            .filter(|o| {
                o.mean_accuracy(2 * l + 1..=3 * l)
                    .is_some_and(|a| a >= SOLVED)
            })
            .collect();
        let _ = writeln!(
            s,
            "- Length generalization (mean accuracy ≥ {:.0}% on (2L, 3L]): {}.",
            100.0 * SOLVED,
            if generalizers.is_empty() {
                "none".into()
            } else {
                generalizers
                    .iter()
                    .map(|o| o.run.model.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        for o in &learned {
            if !generalizers.iter().any(|g| g.run.model == o.run.model) {
                let _ = writeln!(
                    s,
                    "  - {} solves L but drops to {} on (L, 2L] and {} on (2L, 3L] (≥ 90% from L only up to length {}).",
                    o.run.model,
                    pct(o.mean_accuracy(l + 1..=2 * l)),
                    pct(o.mean_accuracy(2 * l + 1..=3 * l)),
                    solved_up_to(o).map_or("–".into(), |n| n.to_string()),
                );
            }
        }
        let mut by_speed: Vec<_> = group
            .iter()
            .filter(|o| o.report.converged_at.is_some())
            .collect();
        by_speed.sort_by_key(|o| o.report.converged_at);
        if !by_speed.is_empty() {
            let order: Vec<String> = by_speed
                .iter()
                .map(|o| {
                    format!(
                        "{} ({} steps)",
                        o.run.model,
                        o.report.converged_at.unwrap_or(0)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "- Convergence (first step with test-batch accuracy ≥ threshold): {}.",
                order.join(" < ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::recall::RecallRun;
    use super::*;
    use seqlayers::data::RecallConfig;
    use seqlayers::presets::RecallModel;
    use seqlayers::train::{LengthScore, TrainConfig, TrainReport};

    fn outcome(train_len: usize, accuracies: &[(usize, f64)]) -> RecallOutcome {
        let task = RecallConfig::new(1).with_train_len(train_len);
        RecallOutcome {
            run: RecallRun {
                model: RecallModel::Mamba,
                eval_lengths: accuracies.iter().map(|&(n, _)| n).collect(),
                train: TrainConfig::default(),
                eval_samples: 1,
                eval_batch: 1,
                n_heads: 1,
                model_seed: 0,
                task,
                name: String::new(),
                progress: false,
            },
            report: TrainReport {
                metric: seqlayers::data::Metric::Accuracy,
                curve: Vec::new(),
                steps_run: 1,
                converged_at: None,
                stop: seqlayers::train::StopReason::Budget,
                ms_per_step: 1.0,
            },
            lengths: accuracies
                .iter()
                .map(|&(len, score)| LengthScore {
                    len,
                    score,
                    samples: 1,
                })
                .collect(),
            params: 1,
            wall_s: 1.0,
        }
    }

    #[test]
    fn solved_up_to_starts_at_the_training_length() {
        // Fails at a short length, solves 8..=10, fails at 11, solves 12 again.
        let o = outcome(
            8,
            &[
                (3, 0.2),
                (8, 0.95),
                (9, 0.9),
                (10, 1.0),
                (11, 0.5),
                (12, 1.0),
            ],
        );
        assert_eq!(solved_up_to(&o), Some(10));
    }

    #[test]
    fn solved_up_to_is_none_when_the_training_length_fails_or_is_missing() {
        assert_eq!(solved_up_to(&outcome(8, &[(8, 0.89), (9, 1.0)])), None);
        assert_eq!(solved_up_to(&outcome(8, &[(3, 1.0), (9, 1.0)])), None);
    }
}
