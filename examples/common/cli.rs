//! The flags every experiment example shares ([`RunArgs`], with the one meaning of `--seed` and
//! `--seeds`), the recall examples' flags, and how every experiment example checks its flags and
//! input files and turns errors into exit codes.
//!
//! A bad command line (a flag value, a missing or unreadable input file) ends the example with
//! a message that says what to change and exit code [`EXIT_USAGE`] (2, clap's own code for a
//! flag it cannot parse); a run that fails after its inputs were accepted (training diverged,
//! an I/O error) ends with [`EXIT_FAILURE`] (1). No bad input may panic.

use std::fmt;
use std::path::{Path, PathBuf};

use super::experiments::ExperimentOptions;
use clap::Parser;
use seqlayers::SeqError;
use seqlayers::presets::RecallModel;

/// Exit code of a command line the example cannot run: a bad flag value or input file.
pub const EXIT_USAGE: i32 = 2;

/// Exit code of a run that failed after its inputs were accepted.
pub const EXIT_FAILURE: i32 = 1;

/// Why an example stops before or while running.
#[derive(Debug, Clone, PartialEq)]
pub enum CliError {
    /// A flag value or input file the example cannot use; the message says what to change.
    Usage(String),
    /// An error of the library (its exit code depends on what went wrong, see
    /// [`CliError::exit_code`]).
    Run(SeqError),
}

impl CliError {
    /// A [`CliError::Usage`] with `message`.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// [`EXIT_USAGE`] for a bad flag or file (every configuration, range, data, read, write and
    /// checkpoint error of the library), [`EXIT_FAILURE`] for a run that failed on its own
    /// (diverged training, an I/O or internal shape error, any other kind).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Run(e) => match e {
                SeqError::ZeroSize { .. }
                | SeqError::HeadsDoNotDivide { .. }
                | SeqError::OddRopeDim { .. }
                | SeqError::TooManyWindowedHeads { .. }
                | SeqError::SequenceTooLong { .. }
                | SeqError::OutOfRange { .. }
                | SeqError::InvalidConfig(_)
                | SeqError::Read { .. }
                | SeqError::BadData { .. }
                | SeqError::Checkpoint { .. }
                | SeqError::Write { .. } => EXIT_USAGE,
                // Diverged training, I/O and internal shape errors (and any kind added later).
                _ => EXIT_FAILURE,
            },
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Run(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<SeqError> for CliError {
    fn from(e: SeqError) -> Self {
        CliError::Run(e)
    }
}

/// The value of `result`, or: prints `error: <message>` to stderr and exits with the error's
/// [`CliError::exit_code`] (how every experiment example's `main` ends on an error).
pub fn or_exit<T, E: Into<CliError>>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        let e = e.into();
        eprintln!("error: {e}");
        std::process::exit(e.exit_code())
    })
}

/// `Ok` when `value ≥ 1`; otherwise an error naming `flag`.
pub fn at_least_one(flag: &str, value: usize) -> Result<(), CliError> {
    if value == 0 {
        return Err(CliError::usage(format!(
            "{flag} must be at least 1 (got 0); give a positive whole number"
        )));
    }
    Ok(())
}

/// `Ok` when every value given is at least 1; `None` (a flag left out) passes. The first
/// `(flag, Some(0))` is the error, naming its flag.
pub fn at_least_one_each(flags: &[(&str, Option<usize>)]) -> Result<(), CliError> {
    for &(flag, value) in flags {
        if let Some(v) = value {
            at_least_one(flag, v)?;
        }
    }
    Ok(())
}

/// `Ok` when every entry of the comma-separated `values` is at least 1 and none repeats.
pub fn positive_list(flag: &str, values: &[usize]) -> Result<(), CliError> {
    for &v in values {
        at_least_one(flag, v).map_err(|_| {
            CliError::usage(format!(
                "{flag} lists 0; every value must be at least 1 (e.g. {flag} 4,8)"
            ))
        })?;
    }
    distinct(flag, values)
}

/// `Ok` when no entry of `values` repeats.
pub fn distinct<T: PartialEq + fmt::Display>(flag: &str, values: &[T]) -> Result<(), CliError> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(CliError::usage(format!(
                "{flag} lists `{v}` twice; give each value once"
            )));
        }
    }
    Ok(())
}

/// `Ok` when `value` is finite and above 0 (learning rates, temperatures, epochs).
pub fn positive_number(flag: &str, value: f64) -> Result<(), CliError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(CliError::usage(format!(
            "{flag} must be a number above 0 (got {value})"
        )));
    }
    Ok(())
}

/// `Ok` for a backend this build has: `cpu`, and `cuda` with the `cuda` feature.
pub fn check_device(name: &str) -> Result<(), CliError> {
    match name {
        "cpu" => Ok(()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(()),
        other => Err(CliError::usage(format!(
            "--device `{other}` is unknown or not built in: use cpu, or build with --features cuda for cuda"
        ))),
    }
}

/// The text of the input file `path` (`what` names it in messages, e.g. `corpus`): a missing
/// path, a folder, a file that is not UTF-8 (the line and byte offset of the first bad byte)
/// and an empty file are errors that say so.
pub fn read_text_file(path: &Path, what: &str) -> seqlayers::Result<String> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SeqError::InvalidConfig(format!(
                "the {what} `{shown}` does not exist; check the path"
            )));
        }
        Ok(m) if m.is_dir() => {
            return Err(SeqError::InvalidConfig(format!(
                "the {what} `{shown}` is a folder; give the path of a text file"
            )));
        }
        _ => {}
    }
    let bytes = std::fs::read(path).map_err(|e| SeqError::read(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        SeqError::BadData {
            origin: format!("the {what} `{shown}`"),
            line,
            message: format!(
                "not UTF-8 text (byte {at} cannot be decoded; is it a binary file?); give a plain-text file"
            ),
        }
    })?;
    if text.trim().is_empty() {
        return Err(SeqError::InvalidConfig(format!(
            "the {what} `{shown}` is empty; give a file with text in it"
        )));
    }
    Ok(text)
}

/// The seed of a command line without `--seed` or `--seeds`.
pub const DEFAULT_SEED: u64 = 0;

/// The flags every experiment example has (`induction_head`, `associative_recall`, `copying`,
/// `pig_latin`, `tiny_gpt train`), declared and checked ([`RunArgs::check`]) once: each
/// example's flags `#[command(flatten)]` them. An example may reword a flag's help with
/// `mut_arg` (the recall examples do); a flag left out keeps the example's own default.
///
/// **Seeds have one meaning in every example.** `--seed S` is the base seed of a run: every
/// random draw of the run (data, split, order, fixed embedding, initialization, sampling)
/// derives from it, as the example's module docs say; without a seed flag it is
/// [`DEFAULT_SEED`], so a plain command line computes what it always has. `--seeds a,b,c`
/// repeats every run once per seed and reports each configuration's mean and range (min–max)
/// across them; `--seeds S` is `--seed S`. Examples whose report has no across-seed summary
/// (`pig_latin`, `tiny_gpt`) refuse several seeds ([`RunArgs::one_seed`]): run them once per
/// seed instead.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Trainings at the same time (above 1, each runs its kernels and matrix products on one
    /// thread).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// A smoke run that finishes in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Output folder (default: `results/<example>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backend: `cpu` (default) or `cuda` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Base seed of the run: data, split, order, embedding, initialization and sampling all
    /// derive from it (default 0).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Several seeds (comma-separated): every run once per seed, reported as mean and range.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Optimizer steps per training (at most, where the example stops early; default: its
    /// budget).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Examples per optimizer step (sequences, packed rows, words or windows).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Data-parallel peers per training (threads averaging their gradients through
    /// burn-collective; docs/SCALING.md): each takes 1/N of every step's batch, which N must
    /// divide. The result equals one peer's up to f32 rounding.
    #[arg(long, default_value_t = 1)]
    pub peers: usize,
}

impl RunArgs {
    /// `Ok` for a backend this build has (see [`check_device`]), `--jobs`, `--steps` and
    /// `--batch` of at least 1, a positive `--lr` and `--seeds` without repeats.
    pub fn check(&self) -> Result<(), CliError> {
        check_device(&self.device)?;
        at_least_one_each(&[
            ("--jobs", Some(self.jobs)),
            ("--peers", Some(self.peers)),
            ("--steps", self.steps),
            ("--batch", self.batch),
        ])?;
        if let Some(lr) = self.lr {
            positive_number("--lr", lr)?;
        }
        distinct("--seeds", &self.seeds)
    }

    /// The seeds to run: `--seeds`, else `--seed`, else [`DEFAULT_SEED`].
    pub fn seeds(&self) -> Vec<u64> {
        if self.seeds.is_empty() {
            vec![self.seed.unwrap_or(DEFAULT_SEED)]
        } else {
            self.seeds.clone()
        }
    }

    /// The one seed of an `example` without an across-seed report; several are an error.
    pub fn one_seed(&self, example: &str) -> Result<u64, CliError> {
        match self.seeds()[..] {
            [seed] => Ok(seed),
            _ => Err(CliError::usage(format!(
                "--seeds: {example} runs one seed and has no across-seed report; give one seed \
                 (--seed S) and run it once per seed"
            ))),
        }
    }

    /// The output folder: `--out`, else `results/<example>`.
    pub fn out_dir(&self, example: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("results").join(example))
    }
}

/// Flags of the recall examples (every one optional).
#[derive(Parser, Debug)]
// The shared `RunArgs` keep the recall examples' own help of `--out`, `--quick` and `--jobs`
// (this doc comment is the `--help` header, so the note is a plain comment).
#[command(
    mut_arg("out", |a| a.help("Output directory for CSV files, PNG plots and report.md")),
    mut_arg("quick", |a| a.help(
        "Tiny budget (L = 16, 20 steps, 4 evaluated lengths) that finishes in well under a minute"
    )),
    mut_arg("jobs", |a| a.help(
        "Trainings run at the same time, one thread each; above 1 the kernels and matrix products \
         of each run one thread (results are bit-identical for any value; ms/step then includes \
         the contention between them)"
    )),
)]
pub struct RecallArgs {
    /// Stop a run once its test-batch accuracy has not improved by 0.5 points for this many
    /// steps (besides the early stop at 99% and the step budget).
    #[arg(long)]
    pub plateau_steps: Option<usize>,
    /// No plateau stop before this step (recall runs can sit at chance for thousands of steps
    /// before they rise).
    #[arg(long, default_value_t = 0)]
    pub plateau_after: usize,
    /// Comma-separated models (transformer-learned, transformer-rope, transformer-nope, mamba,
    /// hybrid-a, hybrid-b, lstm).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<RecallModel>,
    /// Comma-separated query-set sizes M.
    #[arg(long = "m", value_delimiter = ',')]
    pub n_queries: Vec<usize>,
    /// Comma-separated delays τ.
    #[arg(long = "tau", value_delimiter = ',')]
    pub delays: Vec<usize>,
    /// Comma-separated embedding widths d.
    #[arg(long = "d", value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// Training length L.
    #[arg(long = "len")]
    pub train_len: Option<usize>,
    /// Longest evaluated length (default 3L), e.g. 4096 to compare with the Mamba paper.
    #[arg(long)]
    pub eval_max: Option<usize>,
    /// Sequences per evaluated length.
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Evaluate the convergence curve every this many steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// associative_recall only: run just these problems (comma-separated, 2 and/or 3).
    #[arg(long, value_delimiter = ',')]
    pub problem: Vec<usize>,
    /// The shared flags ([`RunArgs`]: `--jobs`, `--quick`, `--out`, `--device`, `--seed`,
    /// `--seeds`, `--steps`, `--lr`, `--batch`), with the recall examples' help texts.
    #[command(flatten)]
    pub run: RunArgs,
}

impl RecallArgs {
    /// [`RecallArgs::options`] after checking every flag value; `example` (`induction_head` or
    /// `associative_recall`) decides whether `--problem` applies and the default output folder.
    pub fn checked_options(&self, example: &str) -> Result<ExperimentOptions, CliError> {
        self.run.check()?;
        at_least_one_each(&[
            ("--len", self.train_len),
            ("--eval-max", self.eval_max),
            ("--eval-samples", self.eval_samples),
            ("--heads", self.heads),
            ("--eval-every", self.eval_every),
            ("--plateau-steps", self.plateau_steps),
        ])?;
        distinct("--models", &self.models)?;
        positive_list("--m", &self.n_queries)?;
        positive_list("--tau", &self.delays)?;
        positive_list("--d", &self.dims)?;
        distinct("--problem", &self.problem)?;
        if example == "associative_recall" {
            if let Some(&p) = self.problem.iter().find(|&&p| p != 2 && p != 3) {
                return Err(CliError::usage(format!(
                    "--problem {p}: associative_recall has Problems 2 and 3; give 2, 3 or 2,3"
                )));
            }
        } else if !self.problem.is_empty() {
            return Err(CliError::usage(format!(
                "--problem applies to associative_recall only; {example} runs one problem"
            )));
        }
        Ok(self.options(example))
    }

    /// Experiment options from the flags, starting at the library defaults (output folder
    /// `results/<example>` unless `--out` is given).
    pub fn options(&self, example: &str) -> ExperimentOptions {
        let mut o = ExperimentOptions::default();
        if self.run.quick {
            o = o.quick();
        }
        o.out_dir = self.run.out_dir(example);
        o.seeds = self.run.seeds();
        o.jobs = self.run.jobs;
        o.steps = self.run.steps.unwrap_or(o.steps);
        o.lr = self.run.lr.unwrap_or(o.lr);
        o.batch_size = self.run.batch.unwrap_or(o.batch_size);
        o.plateau_steps = self.plateau_steps;
        o.plateau_after = self.plateau_after;
        o.problems = self.problem.clone();
        o.models = self.models.clone();
        o.n_queries = self.n_queries.clone();
        o.delays = self.delays.clone();
        o.dims = self.dims.clone();
        o.train_len = self.train_len.unwrap_or(o.train_len);
        o.eval_max_len = self.eval_max.or(o.eval_max_len);
        o.eval_samples = self.eval_samples.unwrap_or(o.eval_samples);
        o.n_heads = self.heads.unwrap_or(o.n_heads);
        o.eval_every = self.eval_every.unwrap_or(o.eval_every);
        o
    }
}
