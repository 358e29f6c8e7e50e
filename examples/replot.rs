//! Redraws an experiment's PNG plots from the CSV files its driver wrote, without training.
//!
//! Why: the plots under `docs/results` were drawn by older plotting code (issue 25 item 5: 36
//! convergence curves in one panel, legends over the curves, Pig-Latin losses against epochs,
//! no context-length ticks at 32 and 64), and regenerating them by rerunning the drivers would
//! take hours of training. The numbers are all in the committed CSVs, so this example reads them
//! and draws the same figures as the fixed drivers in `examples/common/` (same panels, titles,
//! legends, axes and file names, through the same `examples/common/plot.rs`), so a driver run and
//! a replot give the same figures (up to the rounding of the CSV columns).
//!
//! ```text
//! cargo run --release --example replot -- induction-head docs/results/induction_head/seeds
//! cargo run --release --example replot -- associative-recall docs/results/associative_recall/seeds_p2
//! cargo run --release --example replot -- pig-latin docs/results/pig_latin
//! cargo run --release --example replot -- tiny-gpt docs/results/tiny_gpt
//! ```
//!
//! What each kind reads from `<dir>` and writes into it:
//!
//! - `induction-head` (`examples/common/induction_head.rs`): `lengths.csv`, `curves.csv` and the
//!   training length `L` from `summary.csv` → `accuracy_vs_length_tau{τ}.png` and
//!   `convergence_tau{τ}_seed{s}.png` (one panel per seed; `convergence_tau{τ}.png` with one seed).
//! - `associative-recall` (`examples/common/associative_recall.rs`): the same CSVs →
//!   `p2_accuracy_vs_length_M{M}.png`, `p3_accuracy_vs_length.png` and
//!   `convergence_p{2,3}_M{M}_seed{s}.png`. Runs with `d = --p2-dim` (the driver's default 8)
//!   are Problem 2, the others Problem 3.
//! - `pig-latin` (`examples/common/pig_latin.rs`): `curves.csv` → `train_loss.png`,
//!   `val_loss.png`, `val_accuracy.png` against optimizer steps. (The attention and Mamba-state
//!   plots need `probes.csv` and are left as they are.)
//! - `tiny-gpt` (`examples/common/tiny_gpt.rs`): `curves.csv`, `lengths.csv` → `val_ppl.png`,
//!   `train_loss.png`, `context_length.png` (log₂ context axis).
//!
//! A missing file or column, or a value that does not parse, is an error message naming the file
//! (and line and column) with exit status 1.

#[allow(dead_code)]
#[path = "common/plot.rs"]
mod plot;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use plot::{Series, line_plot, line_plot_log2_x};

/// Redraw an experiment's plots from the CSV files in its results folder.
#[derive(Parser, Debug)]
struct Args {
    /// Which experiment wrote the folder.
    kind: Kind,
    /// The results folder: holds the CSVs, receives the PNGs.
    dir: PathBuf,
    /// Size of the fixed test batch named in the recall convergence titles (the recall drivers
    /// always use 256).
    #[arg(long, default_value_t = 256)]
    test_batch: usize,
    /// Training length L named in the recall accuracy-vs-length titles (default: the `L` column
    /// of `<dir>/summary.csv`).
    #[arg(long)]
    train_len: Option<usize>,
    /// associative-recall: the d of Problem 2 (the driver's first `--d`, default 8); runs at any
    /// other d are Problem 3.
    #[arg(long, default_value_t = 8)]
    p2_dim: usize,
}

/// The experiment drivers whose plots can be redrawn.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum Kind {
    /// `examples/induction_head.rs` (Problem 1).
    InductionHead,
    /// `examples/associative_recall.rs` (Problems 2 and 3).
    AssociativeRecall,
    /// `examples/pig_latin.rs` (loss and accuracy curves).
    PigLatin,
    /// `examples/tiny_gpt.rs` (perplexity, loss, context length).
    TinyGpt,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.kind {
        Kind::InductionHead => induction_head(&args),
        Kind::AssociativeRecall => associative_recall(&args),
        Kind::PigLatin => pig_latin(&args.dir),
        Kind::TinyGpt => tiny_gpt(&args.dir),
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180)
// ---------------------------------------------------------------------------------------------

/// Splits `text` into records of fields (RFC 4180): fields separated by commas, records by LF or
/// CRLF; a field in double quotes may hold commas, line breaks and `""` (one quote). Returns each
/// record with the line it starts on.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    // Whether the current field was quoted (then it has ended at its closing quote).
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                        None => {
                            return Err(format!(
                                "line {start_line}: a quoted field is never closed"
                            ));
                        }
                    }
                }
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                quoted = false;
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut record)));
                quoted = false;
                at_field_start = true;
                line += 1;
                start_line = line;
            }
            c if quoted => {
                return Err(format!(
                    "line {line}: `{c}` after the closing quote of a field"
                ));
            }
            '"' => return Err(format!("line {line}: a quote inside an unquoted field")),
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if !at_field_start || !record.is_empty() || quoted {
        record.push(field);
        records.push((start_line, record));
    }
    // Blank lines carry no record.
    records.retain(|(_, r)| !(r.len() == 1 && r[0].is_empty()));
    Ok(records)
}

/// A CSV file with a header row.
struct Table {
    path: PathBuf,
    header: Vec<String>,
    /// (line in the file, fields).
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Reads and parses `path`; every row must have as many fields as the header.
    fn read(path: &Path) -> Result<Table, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut records = parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if records.is_empty() {
            return Err(format!("{}: empty file (no header row)", path.display()));
        }
        let (_, header) = records.remove(0);
        for (line, row) in &records {
            if row.len() != header.len() {
                return Err(format!(
                    "{} line {line}: {} fields, the header has {}",
                    path.display(),
                    row.len(),
                    header.len()
                ));
            }
        }
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows: records,
        })
    }

    /// The index of column `name`, or an error naming the file and its columns.
    fn column(&self, name: &str) -> Result<usize, String> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "{}: no column `{name}` (columns: {})",
                self.path.display(),
                self.header.join(", ")
            )
        })
    }

    /// The index of column `name` when the file has it.
    fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Field `col` of row `row` parsed as `T`, or an error naming file, line and column.
    fn parse<T: std::str::FromStr>(&self, row: usize, col: usize) -> Result<T, String> {
        let (line, fields) = &self.rows[row];
        fields[col].trim().parse().map_err(|_| {
            format!(
                "{} line {line}, column `{}`: cannot parse `{}`",
                self.path.display(),
                self.header[col],
                fields[col]
            )
        })
    }

    /// Field `col` of row `row`.
    fn text(&self, row: usize, col: usize) -> &str {
        &self.rows[row].1[col]
    }
}

/// Draws through `plot.rs` and records the written path.
fn draw(
    written: &mut Vec<PathBuf>,
    path: PathBuf,
    draw: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    draw(&path)?;
    written.push(path);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recall experiments (induction head, associative recall)
// ---------------------------------------------------------------------------------------------

/// One recall run as `summary.csv`/`curves.csv`/`lengths.csv` key it, with its two curves.
struct RecallRun {
    model: String,
    m: usize,
    tau: usize,
    d: usize,
    seed: u64,
    /// (step, test-batch accuracy).
    curve: Vec<(f64, f64)>,
    /// (length, accuracy).
    lengths: Vec<(f64, f64)>,
}

impl RecallRun {
    /// `RecallOutcome::label`: `mamba M=4 τ=1 d=8`.
    fn label(&self) -> String {
        format!("{} M={} τ={} d={}", self.model, self.m, self.tau, self.d)
    }

    /// `RecallOutcome::series_name`: the model, plus the seed when there are several.
    fn series_name(&self, several_seeds: bool) -> String {
        if several_seeds {
            format!("{} (seed {})", self.model, self.seed)
        } else {
            self.model.clone()
        }
    }
}

/// The runs of `curves.csv` and `lengths.csv` in the order they first appear (the drivers' run
/// order), and the training length (from `--train-len` or `summary.csv`).
fn recall_runs(args: &Args) -> Result<(Vec<RecallRun>, usize), String> {
    let mut runs: Vec<RecallRun> = Vec::new();
    for (file, value, x) in [
        ("curves.csv", "test_accuracy", "step"),
        ("lengths.csv", "accuracy", "len"),
    ] {
        let t = Table::read(&args.dir.join(file))?;
        let cols = ["model", "M", "tau", "d", "seed", x, value]
            .iter()
            .map(|c| t.column(c))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..t.rows.len() {
            let model = t.text(r, cols[0]).to_string();
            let m: usize = t.parse(r, cols[1])?;
            let tau: usize = t.parse(r, cols[2])?;
            let d: usize = t.parse(r, cols[3])?;
            let seed: u64 = t.parse(r, cols[4])?;
            let point = (t.parse::<f64>(r, cols[5])?, t.parse::<f64>(r, cols[6])?);
            let i = match runs.iter().position(|o| {
                o.model == model && o.m == m && o.tau == tau && o.d == d && o.seed == seed
            }) {
                Some(i) => i,
                None => {
                    runs.push(RecallRun {
                        model,
                        m,
                        tau,
                        d,
                        seed,
                        curve: Vec::new(),
                        lengths: Vec::new(),
                    });
                    runs.len() - 1
                }
            };
            if file == "curves.csv" {
                runs[i].curve.push(point);
            } else {
                runs[i].lengths.push(point);
            }
        }
    }
    if runs.is_empty() {
        return Err(format!(
            "{}: curves.csv and lengths.csv hold no runs",
            args.dir.display()
        ));
    }
    let train_len = match args.train_len {
        Some(l) => l,
        None => {
            let t = Table::read(&args.dir.join("summary.csv"))
                .map_err(|e| format!("{e} (or pass --train-len)"))?;
            let col = t.column("L")?;
            if t.rows.is_empty() {
                return Err(format!(
                    "{}: no rows to read L from (pass --train-len)",
                    t.path.display()
                ));
            }
            t.parse(0, col)?
        }
    };
    Ok((runs, train_len))
}

/// As `length_series` of `examples/common/mod.rs`: runs sharing a label are averaged.
fn length_series(runs: &[&RecallRun], label: impl Fn(&RecallRun) -> String) -> Vec<Series> {
    plot::mean_by_name(runs.iter().map(|o| (label(o), o.lengths.clone())).collect())
}

/// As `seeds_note` of `examples/common/mod.rs`.
fn seeds_note(runs: &[&RecallRun]) -> String {
    let seeds = distinct_seeds(runs);
    if seeds.len() > 1 {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        format!("; mean of seeds {}", list.join(", "))
    } else {
        String::new()
    }
}

fn convergence_series(runs: &[&RecallRun]) -> Vec<Series> {
    runs.iter()
        .map(|o| Series {
            name: o.label(),
            points: o.curve.clone(),
        })
        .collect()
}

/// Values in order of first appearance.
fn unique<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn distinct_seeds(runs: &[&RecallRun]) -> Vec<u64> {
    runs.iter()
        .map(|o| o.seed)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `InductionHead::plots` of `examples/common/induction_head.rs`.
fn induction_head(args: &Args) -> Result<Vec<PathBuf>, String> {
    let (runs, train_len) = recall_runs(args)?;
    let all: Vec<&RecallRun> = runs.iter().collect();
    let dir = &args.dir;
    let mut written = Vec::new();
    for tau in unique(runs.iter().map(|o| o.tau)) {
        let group: Vec<&RecallRun> = runs.iter().filter(|o| o.tau == tau).collect();
        let series = length_series(&group, |o| o.series_name(false));
        let note = seeds_note(&all);
        draw(
            &mut written,
            dir.join(format!("accuracy_vs_length_tau{tau}.png")),
            |p| {
                line_plot(
                    p,
                    &format!(
                        "Induction head, τ = {tau}: accuracy vs length (trained at L = {train_len}{note})"
                    ),
                    "sequence length",
                    "accuracy",
                    &series,
                    false,
                )
            },
        )?;
        let seeds = distinct_seeds(&group);
        for &seed in &seeds {
            let panel: Vec<&RecallRun> = group.iter().copied().filter(|o| o.seed == seed).collect();
            let (file, title_seed) = if seeds.len() > 1 {
                (
                    format!("convergence_tau{tau}_seed{seed}.png"),
                    format!(", seed {seed}"),
                )
            } else {
                (format!("convergence_tau{tau}.png"), String::new())
            };
            draw(&mut written, dir.join(file), |p| {
                line_plot(
                    p,
                    &format!(
                        "Induction head, τ = {tau}{title_seed}: accuracy on the fixed test batch \
                         ({} sequences)",
                        args.test_batch
                    ),
                    "optimizer step",
                    "test-batch accuracy",
                    &convergence_series(&panel),
                    false,
                )
            })?;
        }
    }
    Ok(written)
}

/// `AssociativeRecall::plots` of `examples/common/associative_recall.rs`.
fn associative_recall(args: &Args) -> Result<Vec<PathBuf>, String> {
    let (runs, train_len) = recall_runs(args)?;
    let all: Vec<&RecallRun> = runs.iter().collect();
    let several = distinct_seeds(&all).len() > 1;
    let d2 = args.p2_dim;
    let (p2, p3): (Vec<&RecallRun>, Vec<&RecallRun>) = runs.iter().partition(|o| o.d == d2);
    let dir = &args.dir;
    let mut written = Vec::new();
    let ms: BTreeSet<usize> = p2.iter().map(|o| o.m).collect();
    for m in ms {
        let group: Vec<&RecallRun> = p2.iter().copied().filter(|o| o.m == m).collect();
        draw(
            &mut written,
            dir.join(format!("p2_accuracy_vs_length_M{m}.png")),
            |p| {
                line_plot(
                    p,
                    &format!(
                        "AR, M = {m}, d = {d2}: accuracy vs length (trained at L = {train_len}{})",
                        seeds_note(&all)
                    ),
                    "sequence length",
                    "accuracy",
                    &length_series(&group, |o| o.series_name(false)),
                    false,
                )
            },
        )?;
    }
    let label = |o: &RecallRun| {
        if several {
            format!("{} (seed {})", o.label(), o.seed)
        } else {
            o.label()
        }
    };
    if !p3.is_empty() {
        draw(&mut written, dir.join("p3_accuracy_vs_length.png"), |p| {
            line_plot(
                p,
                "AR, Mamba at larger d: accuracy vs length",
                "sequence length",
                "accuracy",
                &length_series(&p3, label),
                false,
            )
        })?;
    }
    for (problem, group) in [(2, &p2), (3, &p3)] {
        let panels: BTreeSet<(usize, u64)> = group.iter().map(|o| (o.m, o.seed)).collect();
        for (m, seed) in panels {
            let panel: Vec<&RecallRun> = group
                .iter()
                .copied()
                .filter(|o| o.m == m && o.seed == seed)
                .collect();
            draw(
                &mut written,
                dir.join(format!("convergence_p{problem}_M{m}_seed{seed}.png")),
                |p| {
                    line_plot(
                        p,
                        &format!(
                            "Problem {problem}, M = {m}, seed {seed}: accuracy on the fixed test \
                             batch ({} sequences)",
                            args.test_batch
                        ),
                        "optimizer step",
                        "test-batch accuracy",
                        &convergence_series(&panel),
                        false,
                    )
                },
            )?;
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Pig-Latin
// ---------------------------------------------------------------------------------------------

/// One Pig-Latin run of `curves.csv`: its legend label and (step, train loss, val loss, val
/// accuracy) per evaluation.
struct PigLatinRun {
    key: Vec<String>,
    label: String,
    points: Vec<(f64, f64, f64, f64)>,
}

/// `PigLatinRun::label` of `examples/common/pig_latin.rs` from the key columns: model, width,
/// list (Mamba: discretization), then the settings that differ from the defaults (columns
/// `heads`, `positions`, `mamba_a`, `mamba_dt` where the file has them).
fn pig_latin_label(t: &Table, row: usize) -> Result<String, String> {
    let model = t.text(row, t.column("model")?);
    let hidden: usize = t.parse(row, t.column("hidden")?)?;
    let data = t.text(row, t.column("data")?);
    let mut label = if model == "mamba" {
        let disc = t.text(row, t.column("discretization")?);
        format!("mamba d={hidden} {data} {disc}")
    } else {
        format!("{model} d={hidden} {data}")
    };
    let field = |name: &str| t.optional_column(name).map(|c| t.text(row, c).trim());
    if model == "mamba" {
        if field("mamba_a").is_some_and(|a| !a.is_empty() && a != "learned") {
            label.push_str(" A=-I");
        }
        if let Some(dt) = field("mamba_dt").filter(|v| !v.is_empty() && *v != "learned") {
            let _ = write!(label, " dt={dt}");
        }
    } else {
        // The driver's default: heads of width 16.
        if field("heads").is_some_and(|v| !v.is_empty()) {
            let heads: usize = t.parse(row, t.column("heads")?)?;
            if heads != (hidden / 16).max(1) {
                let _ = write!(label, " h={heads}");
            }
        }
        if let Some(pe) = field("positions").filter(|v| !v.is_empty() && *v != "sinusoidal") {
            let _ = write!(label, " pe={pe}");
        }
    }
    Ok(label)
}

/// The loss and accuracy plots of `plots` in `examples/common/pig_latin.rs`, against optimizer
/// steps.
fn pig_latin(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let t = Table::read(&dir.join("curves.csv"))?;
    let step = t.column("step")?;
    let values = [
        t.column("train_loss")?,
        t.column("val_loss")?,
        t.column("val_word_acc")?,
    ];
    let key_cols: Vec<usize> = [
        "model",
        "hidden",
        "data",
        "discretization",
        "heads",
        "positions",
        "mamba_a",
        "mamba_dt",
    ]
    .iter()
    .filter_map(|c| t.optional_column(c))
    .collect();
    let mut runs: Vec<PigLatinRun> = Vec::new();
    for r in 0..t.rows.len() {
        let key: Vec<String> = key_cols.iter().map(|&c| t.text(r, c).to_string()).collect();
        let i = match runs.iter().position(|o| o.key == key) {
            Some(i) => i,
            None => {
                runs.push(PigLatinRun {
                    key,
                    label: pig_latin_label(&t, r)?,
                    points: Vec::new(),
                });
                runs.len() - 1
            }
        };
        let s: f64 = t.parse(r, step)?;
        // The step-0 row has no training loss (NaN); the plots start after it.
        if s > 0.0 {
            runs[i].points.push((
                s,
                t.parse(r, values[0])?,
                t.parse(r, values[1])?,
                t.parse(r, values[2])?,
            ));
        }
    }
    let mut written = Vec::new();
    for (what, file, pick) in [
        ("training loss", "train_loss.png", 0),
        ("validation loss", "val_loss.png", 1),
        (
            "validation word accuracy (fixed batch)",
            "val_accuracy.png",
            2,
        ),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .map(|o| Series {
                name: o.label.clone(),
                points: o
                    .points
                    .iter()
                    .map(|&(s, train, val, acc)| {
                        let y = [train, val, acc][pick];
                        (s, if pick < 2 { y.max(1e-4).log10() } else { y })
                    })
                    .collect(),
            })
            .collect();
        let y_label = if pick < 2 {
            format!("log10 {what}")
        } else {
            what.to_string()
        };
        for (path, panel, part) in plot::panels(&dir.join(file), &series, plot::MAX_CURVES) {
            draw(&mut written, path, |p| {
                line_plot(
                    p,
                    &format!("Pig-Latin: {what}{part}"),
                    "optimizer step",
                    &y_label,
                    &panel,
                    false,
                )
            })?;
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Tiny GPT
// ---------------------------------------------------------------------------------------------

/// Series keyed by column `key` (first-appearance order) with points (`x`, `y`), skipping rows
/// where `keep(x)` is false.
fn series_by(
    t: &Table,
    key: &str,
    x: &str,
    y: &str,
    keep: impl Fn(f64) -> bool,
) -> Result<Vec<Series>, String> {
    let (k, xc, yc) = (t.column(key)?, t.column(x)?, t.column(y)?);
    let mut series: Vec<Series> = Vec::new();
    for r in 0..t.rows.len() {
        let name = t.text(r, k);
        let i = match series.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                series.push(Series {
                    name: name.to_string(),
                    points: Vec::new(),
                });
                series.len() - 1
            }
        };
        let xv: f64 = t.parse(r, xc)?;
        if keep(xv) {
            series[i].points.push((xv, t.parse(r, yc)?));
        }
    }
    Ok(series)
}

/// `plots` of `examples/common/tiny_gpt.rs`.
fn tiny_gpt(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let curves = Table::read(&dir.join("curves.csv"))?;
    let lengths = Table::read(&dir.join("lengths.csv"))?;
    let val_ppl = series_by(&curves, "ablation", "step", "val_ppl", |s| s > 0.0)?;
    let train_loss = series_by(&curves, "ablation", "step", "train_loss", |s| s > 0.0)?;
    let context = series_by(&lengths, "ablation", "context", "val_ppl", |_| true)?;
    let mut written = Vec::new();
    for (file, title, y_label, series) in [
        (
            "val_ppl.png",
            "validation perplexity (full window)",
            "perplexity",
            &val_ppl,
        ),
        (
            "train_loss.png",
            "training loss",
            "mean loss (nats)",
            &train_loss,
        ),
    ] {
        for (path, panel, part) in plot::panels(&dir.join(file), series, plot::MAX_CURVES) {
            draw(&mut written, path, |p| {
                line_plot(p, &format!("{title}{part}"), "step", y_label, &panel, false)
            })?;
        }
    }
    for (path, panel, part) in
        plot::panels(&dir.join("context_length.png"), &context, plot::MAX_CURVES)
    {
        draw(&mut written, path, |p| {
            line_plot_log2_x(
                p,
                &format!("validation perplexity vs context length{part}"),
                "context (tokens)",
                "perplexity",
                &panel,
            )
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn quoted_fields() {
        let r = parse_csv("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\"two\nlines\",\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].1, vec!["x,1", "say \"hi\""]);
        assert_eq!(r[2], (3, vec!["two\nlines".to_string(), String::new()]));
        assert!(parse_csv("\"open").is_err());
        assert!(parse_csv("a\"b").is_err());
    }
}
