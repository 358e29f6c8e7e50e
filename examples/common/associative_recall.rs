//! Problems 2 and 3 of seeds 000/001: associative recall with M = 4, 8, 16 queries, as an
//! [`Experiment`] (the `associative_recall` example).
//!
//! - Problem 2: K = 16, d = 8, τ = 1; Mamba, RoPE transformer and both hybrids.
//! - Problem 3: d = 64 Mamba for M = 4, 8, 16 (τ = 1), and M = 16 with τ = 10.

use std::fmt::Write as _;
use std::path::Path;

use seqlayers::burn::tensor::backend::AutodiffBackend;

use seqlayers::presets::RecallModel;
use seqlayers::{Result, SeqError};

use super::cli::{CliError, RecallArgs};
use super::driver::{Experiment, execute};
use super::experiments::{ExperimentOptions, recall_options, run_all};
use super::plot::line_plot;
use super::recall::{RecallOutcome, RecallRun, csv_files};
use super::report::{findings, pct, results_table, seed_summary};
use super::{convergence_series, length_series, seeds_note, warn_on_error};

/// The models of Problem 2.
pub const PROBLEM2_MODELS: [RecallModel; 4] = [
    RecallModel::Mamba,
    RecallModel::TransformerRope,
    RecallModel::HybridA,
    RecallModel::HybridB,
];

/// The runs of Problems 2 and 3. `options.dims` is `[d of P2, d of P3]` (default `[8, 64]`),
/// `options.n_queries` the list of M (default 4, 8, 16), `options.delays` `[τ of P2/P3, τ of the
/// extra M = 16 run]` (default `[1, 10]`; a single τ leaves the extra run out).
pub fn associative_recall_runs(options: &ExperimentOptions) -> Vec<RecallRun> {
    let models = if options.models.is_empty() {
        PROBLEM2_MODELS.to_vec()
    } else {
        options.models.clone()
    };
    let ms = if options.n_queries.is_empty() {
        vec![4, 8, 16]
    } else {
        options.n_queries.clone()
    };
    let d2 = options.dims.first().copied().unwrap_or(8);
    let d3 = options.dims.get(1).copied().unwrap_or(64);
    let tau = options.delays.first().copied().unwrap_or(1);
    let long_tau = match options.delays.len() {
        0 => Some(10),
        1 => None,
        _ => Some(options.delays[1]),
    };
    let task = |m: usize, d: usize, delay: usize| options.task(m, d, delay);
    let wanted = |p: usize| options.problems.is_empty() || options.problems.contains(&p);
    let mut runs = Vec::new();
    if wanted(2) {
        for &model in &models {
            for &m in &ms {
                runs.extend(options.runs_for(model, task(m, d2, tau)));
            }
        }
    }
    if wanted(3) {
        for &m in &ms {
            runs.extend(options.runs_for(RecallModel::Mamba, task(m, d3, tau)));
        }
        if let Some(long_tau) = long_tau {
            let m_max = ms.iter().copied().max().unwrap_or(16);
            runs.extend(options.runs_for(RecallModel::Mamba, task(m_max, d3, long_tau)));
        }
    }
    runs
}

/// The options of the `associative_recall` command line, checked: every flag value, then every run
/// (task, budget, model) before any training starts.
pub fn associative_recall_options(
    args: &RecallArgs,
) -> std::result::Result<ExperimentOptions, CliError> {
    recall_options(args, "associative_recall", associative_recall_runs)
}

/// Trains and evaluates Problems 2 and 3, writes CSV files and `report.md` to
/// `options.out_dir`, and returns the outcomes.
pub fn associative_recall<B: AutodiffBackend>(
    options: &ExperimentOptions,
    device: &B::Device,
) -> Result<Vec<RecallOutcome>> {
    execute::<AssociativeRecall, B>(options, device)
}

/// Problems 2 and 3, the `associative_recall` example.
pub struct AssociativeRecall;

impl Experiment for AssociativeRecall {
    type Args = RecallArgs;
    type Options = ExperimentOptions;
    type Outcome = Vec<RecallOutcome>;

    fn options(args: &RecallArgs) -> std::result::Result<ExperimentOptions, CliError> {
        associative_recall_options(args)
    }

    fn out_dir(options: &ExperimentOptions) -> &Path {
        &options.out_dir
    }

    fn check(options: &ExperimentOptions) -> Result<()> {
        match options.problems.iter().find(|&&p| p != 2 && p != 3) {
            Some(p) => Err(SeqError::InvalidConfig(format!(
                "--problem {p}: the associative-recall example has Problems 2 and 3"
            ))),
            None => Ok(()),
        }
    }

    fn run<B: AutodiffBackend>(o: &Self::Options, device: &B::Device) -> Result<Self::Outcome> {
        run_all::<B>(&associative_recall_runs(o), device, o.jobs)
    }

    fn csv(outcomes: &Vec<RecallOutcome>) -> Vec<(&'static str, String)> {
        csv_files(outcomes)
    }

    fn report(options: &ExperimentOptions, outcomes: &Vec<RecallOutcome>) -> String {
        report(options, outcomes)
    }

    /// Problem 2: accuracy against length per M; Problem 3: accuracy against length; each
    /// problem's convergence curves.
    fn plots(options: &ExperimentOptions, outcomes: &Vec<RecallOutcome>) {
        let d2 = options.dims.first().copied().unwrap_or(8);
        let (p2, p3): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.run.task.dim == d2);
        let dir = &options.out_dir;
        let several = options.seeds.len() > 1;
        let mut ms: Vec<usize> = p2.iter().map(|o| o.run.task.n_queries).collect();
        ms.sort_unstable();
        ms.dedup();
        for m in ms {
            let group: Vec<_> = p2
                .iter()
                .copied()
                .filter(|o| o.run.task.n_queries == m)
                .collect();
            warn_on_error(line_plot(
                &dir.join(format!("p2_accuracy_vs_length_M{m}.png")),
                &format!(
                    "AR, M = {m}, d = {d2}: accuracy vs length (trained at L = {}{})",
                    options.train_len,
                    seeds_note(&options.seeds)
                ),
                "sequence length",
                "accuracy",
                &length_series(&group, |o| o.series_name(false)),
                false,
            ));
        }
        let label = |o: &RecallOutcome| {
            if several {
                format!("{} (seed {})", o.label(), o.run.train.seed)
            } else {
                o.label()
            }
        };
        if !p3.is_empty() {
            warn_on_error(line_plot(
                &dir.join("p3_accuracy_vs_length.png"),
                "AR, Mamba at larger d: accuracy vs length",
                "sequence length",
                "accuracy",
                &length_series(&p3, label),
                false,
            ));
        }
        // Convergence: one panel per problem, M and seed, so that no panel holds more than one
        // curve per model.
        for (problem, group) in [(2, &p2), (3, &p3)] {
            let mut panels: Vec<(usize, u64)> = group
                .iter()
                .map(|o| (o.run.task.n_queries, o.run.train.seed))
                .collect();
            panels.sort_unstable();
            panels.dedup();
            for (m, seed) in panels {
                let panel: Vec<&RecallOutcome> = group
                    .iter()
                    .copied()
                    .filter(|o| o.run.task.n_queries == m && o.run.train.seed == seed)
                    .collect();
                warn_on_error(line_plot(
                    &dir.join(format!("convergence_p{problem}_M{m}_seed{seed}.png")),
                    &format!(
                        "Problem {problem}, M = {m}, seed {seed}: accuracy on the fixed test batch \
                         ({} sequences)",
                        panel.first().map_or(0, |o| o.run.train.test_batch)
                    ),
                    "optimizer step",
                    "test-batch accuracy",
                    &convergence_series(&panel, |o| o.label()),
                    false,
                ));
            }
        }
    }
}

fn report(options: &ExperimentOptions, outcomes: &[RecallOutcome]) -> String {
    let d2 = options.dims.first().copied().unwrap_or(8);
    let (p2, p3): (Vec<_>, Vec<_>) = outcomes.iter().cloned().partition(|o| o.run.task.dim == d2);
    let mut s = String::from("# Problems 2 and 3: associative recall with M queries\n\n");
    let _ = writeln!(
        s,
        "Setting: K = {}, {}\n",
        options.vocab,
        options.training_setting()
    );
    let mut plots = Vec::new();
    if !p2.is_empty() {
        plots.extend([
            "`p2_accuracy_vs_length_M{M}.png`",
            "`convergence_p2_M{M}_seed{seed}.png`",
        ]);
    }
    if !p3.is_empty() {
        plots.extend([
            "`p3_accuracy_vs_length.png`",
            "`convergence_p3_M{M}_seed{seed}.png`",
        ]);
    }
    let _ = writeln!(
        s,
        "Plots: {}. Raw numbers: `summary.csv`, `lengths.csv`, `curves.csv`.\n",
        plots.join(", ")
    );
    let multi = options.seeds.len() > 1;
    let summary = |part: &[RecallOutcome]| {
        if multi {
            format!(
                "{}\nEvery run:\n\n{}",
                seed_summary(part),
                results_table(part)
            )
        } else {
            results_table(part) + &findings(part)
        }
    };
    if !p2.is_empty() {
        let _ = writeln!(s, "## Problem 2 (d = {d2}, τ = 1)\n");
        s.push_str(&summary(&p2));
        if !multi {
            s.push_str(&by_queries(&p2));
        }
    }
    if !p3.is_empty() {
        s.push_str("\n## Problem 3 (Mamba, larger d)\n\n");
        s.push_str(&summary(&p3));
        if !multi && !p2.is_empty() {
            s.push_str(&width_effect(&p2, &p3));
        }
    }
    s.push_str(MECHANISMS);
    s
}

/// Accuracy at L for each model as M grows.
fn by_queries(outcomes: &[RecallOutcome]) -> String {
    let mut ms: Vec<usize> = outcomes.iter().map(|o| o.run.task.n_queries).collect();
    ms.sort_unstable();
    ms.dedup();
    let mut models: Vec<RecallModel> = outcomes.iter().map(|o| o.run.model).collect();
    models.dedup();
    let mut s = String::from("\n### Accuracy at L as the number of queries M grows\n\n| model |");
    for m in &ms {
        let _ = write!(s, " M={m} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(ms.len()));
    s.push('\n');
    for model in models {
        let _ = write!(s, "| {model} |");
        for &m in &ms {
            let acc = outcomes
                .iter()
                .find(|o| o.run.model == model && o.run.task.n_queries == m)
                .and_then(|o| o.accuracy_at(o.run.task.train_len));
            let _ = write!(s, " {} |", pct(acc));
        }
        s.push('\n');
    }
    s
}

/// Mamba at the small and the large width, same M and τ.
fn width_effect(p2: &[RecallOutcome], p3: &[RecallOutcome]) -> String {
    let mut s = String::from(
        "\n### Effect of the width d on Mamba\n\n| M | τ | acc @ L (small d) | acc @ L (large d) | converged at (small d) | converged at (large d) |\n|---|---|---|---|---|---|\n",
    );
    let conv = |o: Option<&RecallOutcome>| {
        o.map_or("–".into(), |o| {
            o.report
                .converged_at
                .map_or("not reached".into(), |c| c.to_string())
        })
    };
    for big in p3 {
        let t = &big.run.task;
        let small = p2.iter().find(|o| {
            o.run.model == RecallModel::Mamba
                && o.run.task.n_queries == t.n_queries
                && o.run.task.delay == t.delay
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            t.n_queries,
            t.delay,
            pct(small.and_then(|o| o.accuracy_at(o.run.task.train_len))),
            pct(big.accuracy_at(t.train_len)),
            conv(small),
            conv(Some(big)),
        );
    }
    s
}

const MECHANISMS: &str = r#"
## Mechanisms to read the tables with

What each architecture has to do to solve the task, stated before looking at the numbers above
(the numbers say which of these limits actually bind at this budget).

- **More queries need more memory in a recurrent model.** Mamba must store, in a state of fixed
  size (E·N numbers per layer), the value of *every* candidate query that has appeared, because
  it cannot know which query the sequence ends with. With M = 1 it stores one association; with
  M = 16 every token is a potential query, so its small state (d = 8 → E = 16 channels) must
  compress many associations and recall degrades with M.
- **Attention retrieves instead of storing**: the final q attends to the earlier q and reads the
  token after it, whatever M is. Its difficulty grows little with M; it is limited by how well the
  previous-token mechanism (RoPE) separates positions.
- **Hybrids** combine both: the Mamba layer shifts the previous token into each position (so no
  positional encoding is needed) and the attention layer does the content lookup, so M should
  matter to them about as little as it does to attention.
- **Width d**: d = 64 gives Mamba E = 128 channels × N = 16 states, eight times the memory of
  d = 8, and embeddings that are nearly orthogonal, so associations interfere less.
- **Delay τ = 10** exceeds the causal convolution (4 tokens): the "q was just seen" signal must be
  held in the SSM state for 10 steps before v arrives, which is harder to learn.
"#;
