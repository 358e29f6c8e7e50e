//! Markdown summaries of recall runs: a results table and findings computed from the numbers.

use std::fmt::Write as _;

use super::RecallOutcome;

/// Accuracy at or above which a length counts as "solved" in the findings.
pub const SOLVED: f64 = 0.9;

/// The longest length `n` such that every evaluated length up to `n` has accuracy ≥ `SOLVED`
/// (`None` if even the shortest fails).
pub fn longest_solved_prefix(outcome: &RecallOutcome) -> Option<usize> {
    let mut longest = None;
    for l in &outcome.lengths {
        if l.accuracy >= SOLVED {
            longest = Some(l.len);
        } else {
            break;
        }
    }
    longest
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |a| format!("{:.1}%", 100.0 * a))
}

/// A markdown table with one row per run.
pub fn results_table(outcomes: &[RecallOutcome]) -> String {
    let mut s = String::from(
        "| model | M | τ | d | params | steps | converged at | ms/step | acc @ L | mean acc (L, 2L] | mean acc (2L, 3L] | solved up to |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let t = &o.run.task;
        let l = t.train_len;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            o.run.model,
            t.n_queries,
            t.delay,
            t.dim,
            o.params,
            o.report.steps_run,
            o.report
                .converged_at
                .map_or("not reached".into(), |s| s.to_string()),
            o.report.ms_per_step,
            pct(o.accuracy_at(l)),
            pct(o.mean_accuracy(l + 1..=2 * l)),
            pct(o.mean_accuracy(2 * l + 1..=3 * l)),
            longest_solved_prefix(o).map_or("–".into(), |n| n.to_string()),
        );
    }
    s
}

/// Findings stated from the numbers: in-distribution accuracy, length generalization and
/// convergence speed for every group of runs that share a task.
pub fn findings(outcomes: &[RecallOutcome]) -> String {
    let mut s = String::new();
    let mut tasks: Vec<_> = outcomes.iter().map(|o| o.run.task.clone()).collect();
    tasks.dedup();
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
                    "  - {} solves L but drops to {} on (L, 2L] and {} on (2L, 3L] (all lengths ≥ 90% only up to {}).",
                    o.run.model,
                    pct(o.mean_accuracy(l + 1..=2 * l)),
                    pct(o.mean_accuracy(2 * l + 1..=3 * l)),
                    longest_solved_prefix(o).map_or("–".into(), |n| n.to_string()),
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
