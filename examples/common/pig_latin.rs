//! The Pig-Latin experiments of seed 002: an encoder–decoder transformer and a Mamba translator
//! at two widths on the small and large word lists, Mamba's discretizations, latency, sample
//! mistakes and interpretability plots; CSV files and a report computed from the numbers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use seqlayers::backend::Cpu;
use seqlayers::burn::module::{AutodiffModule, Module};
use seqlayers::burn::prelude::Backend;
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::burn::tensor::{Int, Tensor, TensorData};
use seqlayers::data::{
    PigLatinTask, PigLatinVocab, Seq2SeqLayout, WordPair, pairs_from_words, parse_pairs,
    split_pairs,
};
use seqlayers::decode::{GenerateConfig, generate_greedy};
use seqlayers::model::{EncoderDecoder, EncoderDecoderConfig, LanguageModel, LanguageModelConfig};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::ssm::{Discretization, MambaConfig, StateMatrix, StepSize};
use seqlayers::stack::{StackConfig, parse_layers};
use seqlayers::train::{
    LrSchedule, OptimizerKind, Scores, TrainConfig, TrainReport, evaluate_batch,
};
use seqlayers::{Result, SeqError};

use super::cli::{
    CliError, RunArgs, at_least_one_each, distinct, positive_list, positive_number, read_text_file,
};
use super::driver::{Experiment, execute};
use super::parallel::{init_locked, run_parallel};
use super::plot::{MAX_CURVES, Series, heatmap, labelled_points, line_plot, panels};
use super::progress::Progress;
use super::report::pct;
use super::warn_on_error;

/// Flags of the `pig_latin` example (every one optional).
#[derive(clap::Parser, Debug)]
#[command(about = "Pig-Latin translation: encoder–decoder transformer vs Mamba (seed 002)")]
pub struct PigLatinArgs {
    /// Comma-separated translators: transformer, mamba.
    #[arg(long = "model", value_delimiter = ',')]
    pub models: Vec<Translator>,
    /// Comma-separated widths (the homework: 32, 64).
    #[arg(long = "hidden", value_delimiter = ',')]
    pub hiddens: Vec<usize>,
    /// Comma-separated word lists: small, large.
    #[arg(long = "data", value_delimiter = ',')]
    pub data: Vec<DataSize>,
    /// Discretization of the grid's Mamba runs.
    #[arg(long, value_enum)]
    pub discretization: Option<Disc>,
    /// Extra Mamba discretizations at the largest width and list (comma-separated; `none`
    /// for no sweep).
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<String>,
    /// Folder with pig_latin_small.txt and pig_latin_large.txt.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Build the pairs from this word list with the rule instead of the files.
    #[arg(long)]
    pub words: Option<PathBuf>,
    /// Passes over the training words instead of a step count (`--steps`, default 3000).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<f64>,
    /// Blocks of the transformer's encoder and of its decoder.
    #[arg(long)]
    pub transformer_layers: Option<usize>,
    /// Mamba blocks.
    #[arg(long)]
    pub mamba_layers: Option<usize>,
    /// Comma-separated transformer head counts, each dividing every `--hidden` (default
    /// hidden/16: heads of width 16; the homework's base, hidden 64, has 4).
    #[arg(long = "heads", value_delimiter = ',')]
    pub heads: Vec<usize>,
    /// Comma-separated positional encodings of the transformer: none, sinusoidal (default),
    /// learned (a trained table).
    #[arg(long = "positions", value_delimiter = ',')]
    pub positions: Vec<Positions>,
    /// Comma-separated state matrices of the Mamba runs: learned (default, A = −exp(A_log)
    /// trained) or fixed-identity (A = −1 for every channel and state, not trained).
    #[arg(long = "mamba-a", value_delimiter = ',')]
    pub mamba_a: Vec<MambaA>,
    /// Comma-separated step sizes of the Mamba runs: learned (default, the selective
    /// Δ = softplus(dt_proj(·))) or constant:<value> (the same Δ > 0 for every token and
    /// channel), e.g. `learned,constant:0.1`.
    #[arg(long = "mamba-dt", value_delimiter = ',')]
    pub mamba_dt: Vec<String>,
    /// Optimizer of every run: adamw (default, weight decay 0.01), adam, sgd (momentum 0.9),
    /// rmsprop, adagrad (PyTorch's defaults otherwise; the rate is `--lr`).
    #[arg(long, value_enum)]
    pub optimizer: Option<Optim>,
    /// Learning-rate schedule of every run: cosine (default: linear warm-up over 5% of the
    /// steps, then cosine decay to 5% of `--lr`) or constant.
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// The shared flags ([`RunArgs`]; `--batch` counts words, one seed: it draws the split,
    /// the data order and the initialization).
    #[command(flatten)]
    pub run: RunArgs,
}

impl PigLatinArgs {
    /// The options of these flags (defaults where a flag is missing); only `--sweep`,
    /// `--mamba-dt` and the one seed are checked here, see [`pig_latin_options`].
    pub fn options(&self) -> std::result::Result<PigLatinOptions, CliError> {
        let mut o = PigLatinOptions::default();
        if self.run.quick {
            o = o.quick();
        }
        if !self.models.is_empty() {
            o.models = self.models.clone();
        }
        if !self.hiddens.is_empty() {
            o.hiddens = self.hiddens.clone();
        }
        if !self.data.is_empty() {
            o.data = self.data.clone();
        }
        o.discretization = self.discretization.unwrap_or(o.discretization);
        if !self.sweep.is_empty() {
            o.discretization_sweep = self
                .sweep
                .iter()
                .filter(|s| s.as_str() != "none")
                .map(|s| {
                    <Disc as clap::ValueEnum>::from_str(s, true)
                        .map_err(|_| CliError::usage(format!("--sweep: unknown discretization `{s}` (approx-zoh, exact-zoh, bilinear, none)")))
                })
                .collect::<std::result::Result<_, _>>()?;
        }
        if let Some(d) = &self.data_dir {
            o.data_dir = d.clone();
        }
        o.words = self.words.clone();
        if self.words.is_some() && self.data.is_empty() {
            // One word list replaces both files: train on it once.
            o.data = vec![DataSize::Small];
        }
        o.steps = self.run.steps.unwrap_or(o.steps);
        o.epochs = self.epochs.or(o.epochs);
        o.batch = self.run.batch.unwrap_or(o.batch);
        o.lr = self.run.lr.unwrap_or(o.lr);
        o.transformer_layers = self.transformer_layers.unwrap_or(o.transformer_layers);
        o.mamba_layers = self.mamba_layers.unwrap_or(o.mamba_layers);
        if !self.heads.is_empty() {
            o.heads = self.heads.clone();
        }
        if !self.positions.is_empty() {
            o.positions = self.positions.clone();
        }
        if !self.mamba_a.is_empty() {
            o.mamba_a = self.mamba_a.iter().map(|a| a.state_matrix()).collect();
        }
        if !self.mamba_dt.is_empty() {
            o.mamba_dt = self
                .mamba_dt
                .iter()
                .map(|s| parse_step_size(s))
                .collect::<std::result::Result<_, _>>()?;
        }
        o.optimizer = self.optimizer.unwrap_or(o.optimizer);
        o.schedule = self.schedule.unwrap_or(o.schedule);
        o.seed = self.run.one_seed("pig_latin")?;
        o.jobs = self.run.jobs;
        o.out_dir = self.run.out_dir("pig_latin");
        Ok(o)
    }
}

/// The options of the `pig_latin` command line, checked before any training: every flag value,
/// every word list the runs read (present, UTF-8 text, usable pairs or words) and every model
/// (built once on the CPU and dropped).
pub fn pig_latin_options(args: &PigLatinArgs) -> std::result::Result<PigLatinOptions, CliError> {
    args.run.check()?;
    at_least_one_each(&[
        ("--transformer-layers", args.transformer_layers),
        ("--mamba-layers", args.mamba_layers),
    ])?;
    if let Some(epochs) = args.epochs {
        positive_number("--epochs", epochs)?;
    }
    positive_list("--hidden", &args.hiddens)?;
    let models: Vec<&str> = args.models.iter().map(|m| m.name()).collect();
    distinct("--model", &models)?;
    let lists: Vec<&str> = args.data.iter().map(|d| d.name()).collect();
    distinct("--data", &lists)?;
    if args.words.is_some() && args.data.len() > 1 {
        return Err(CliError::usage(
            "--words replaces the word lists: give at most one --data with it (or none)",
        ));
    }
    if let Some(dir) = &args.data_dir
        && args.words.is_none()
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!(
            "--data-dir `{}` is not a folder; give the folder with pig_latin_small.txt and \
             pig_latin_large.txt",
            dir.display()
        )));
    }
    positive_list("--heads", &args.heads)?;
    distinct("--heads", &args.heads)?;
    let positions: Vec<&str> = args.positions.iter().map(|p| p.name()).collect();
    distinct("--positions", &positions)?;
    let mamba_a: Vec<&str> = args.mamba_a.iter().map(|a| a.name()).collect();
    distinct("--mamba-a", &mamba_a)?;
    let o = args.options()?;
    let mamba_dt: Vec<String> = o.mamba_dt.iter().map(StepSize::name).collect();
    distinct("--mamba-dt", &mamba_dt)?;
    if o.models.contains(&Translator::Transformer) {
        for &hidden in &o.hiddens {
            let heads = default_heads(hidden);
            if o.heads.is_empty() && !hidden.is_multiple_of(heads) {
                return Err(CliError::usage(format!(
                    "--hidden {hidden}: the transformer has hidden/16 = {heads} heads, which must \
                     divide the width; use a width below 32 or a multiple of 16 (or give --heads)"
                )));
            }
            if let Some(&h) = o.heads.iter().find(|&&h| !hidden.is_multiple_of(h)) {
                return Err(CliError::usage(format!(
                    "--heads {h} does not divide --hidden {hidden}; give head counts that divide \
                     every width (e.g. 1, 2, 4, 8 or 16 for 64)"
                )));
            }
        }
    } else if !args.heads.is_empty() || !args.positions.is_empty() {
        return Err(CliError::usage(
            "--heads and --positions set the transformer, which --model leaves out; add \
             transformer to --model or drop them",
        ));
    }
    if !o.models.contains(&Translator::Mamba)
        && (!args.mamba_a.is_empty() || !args.mamba_dt.is_empty())
    {
        return Err(CliError::usage(
            "--mamba-a and --mamba-dt set the Mamba translator, which --model leaves out; add \
             mamba to --model or drop them",
        ));
    }
    let runs = o.runs();
    let mut read: Vec<DataSize> = Vec::new();
    for run in &runs {
        if !read.contains(&run.data) {
            read.push(run.data);
            o.pairs(run.data)?;
        }
    }
    let device = Default::default();
    for run in &runs {
        match run.model {
            Translator::Transformer => {
                let config = transformer_config(&o, run);
                init_locked(|| config.try_init::<Cpu>(&device))?;
            }
            Translator::Mamba => {
                let config = mamba_run_config(&o, run)?;
                init_locked(|| config.try_init::<Cpu>(&device))?;
            }
        }
    }
    Ok(o)
}

/// Errors with the first word of `text` (a `--words` list) that has a letter outside a–z: the
/// rule translates English words, and splitting `naïve` into `na` and `ve` would train on
/// made-up words.
pub fn check_ascii_words(text: &str, origin: &str) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        if let Some(word) = line
            .split(|c: char| !c.is_alphabetic() && c != '-')
            .find(|w| w.chars().any(|c| c.is_alphabetic() && !c.is_ascii()))
        {
            return Err(SeqError::BadData {
                origin: origin.into(),
                line: i + 1,
                message: format!(
                    "`{word}` has a letter outside a–z; the Pig-Latin rule needs English words \
                     of the letters a–z: spell it without accents or remove it"
                ),
            });
        }
    }
    Ok(())
}

/// The two translators of the homework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Translator {
    /// Encoder–decoder transformer with cross-attention.
    Transformer,
    /// A Mamba stack over `english SOS piglatin`.
    Mamba,
}

impl Translator {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Translator::Transformer => "transformer",
            Translator::Mamba => "mamba",
        }
    }
}

/// Which word list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataSize {
    /// 3,198 words of "Sense and Sensibility".
    Small,
    /// 22,402 words (adds Norvig's 20,000 most common words).
    Large,
}

impl DataSize {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            DataSize::Small => "small",
            DataSize::Large => "large",
        }
    }
}

/// Mamba's discretization, by the homework's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Disc {
    /// Mamba's simplified rule (`B̄ = ΔB`), the homework's "approximate ZOH".
    ApproxZoh,
    /// Exact zero-order hold.
    ExactZoh,
    /// Bilinear (Tustin, S4).
    Bilinear,
}

impl Disc {
    /// The library value.
    pub fn discretization(self) -> Discretization {
        match self {
            Disc::ApproxZoh => Discretization::Simplified,
            Disc::ExactZoh => Discretization::ZeroOrderHold,
            Disc::Bilinear => Discretization::bilinear(),
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Disc::ApproxZoh => "approx-zoh",
            Disc::ExactZoh => "exact-zoh",
            Disc::Bilinear => "bilinear",
        }
    }

    /// `Ā` of one step for `ΔA` (scalar), for the retention plot.
    pub fn a_bar(self, delta_a: f64) -> f64 {
        match self {
            Disc::ApproxZoh | Disc::ExactZoh => delta_a.exp(),
            Disc::Bilinear => (1.0 + 0.5 * delta_a) / (1.0 - 0.5 * delta_a),
        }
    }
}

/// Heads of the transformer at width `hidden` when `--heads` is not given: heads of width 16
/// (at least one).
pub fn default_heads(hidden: usize) -> usize {
    (hidden / 16).max(1)
}

/// Rows of the learned position table: longer than any word of the homework's lists (at most
/// 22 letters, 25 tokens on the target side); positions past it reuse the last row.
pub const LEARNED_POSITIONS: usize = 64;

/// The transformer's positional encoding (`--positions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Positions {
    /// No positional encoding (attention alone; the decoder still has its causal mask).
    None,
    /// Fixed sinusoids of "Attention Is All You Need" (the homework's default).
    Sinusoidal,
    /// A trained table of [`LEARNED_POSITIONS`] rows (GPT-2's `N(0, 0.02²)` init; the
    /// homework's trained encodings started from the sinusoids instead).
    Learned,
}

impl Positions {
    /// The library value.
    pub fn encoding(self) -> PositionEncoding {
        match self {
            Positions::None => PositionEncoding::None,
            Positions::Sinusoidal => PositionEncoding::sinusoidal(),
            Positions::Learned => PositionEncoding::learned_clamped(LEARNED_POSITIONS),
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Positions::None => "none",
            Positions::Sinusoidal => "sinusoidal",
            Positions::Learned => "learned",
        }
    }
}

/// Mamba's state matrix `A` (`--mamba-a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MambaA {
    /// `A = −exp(A_log)`, trained (the reference).
    Learned,
    /// `A = −I`, not trained.
    FixedIdentity,
}

impl MambaA {
    /// The library value.
    pub fn state_matrix(self) -> StateMatrix {
        match self {
            MambaA::Learned => StateMatrix::Learned,
            MambaA::FixedIdentity => StateMatrix::FixedNegIdentity,
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        self.state_matrix().name()
    }
}

/// Parses one `--mamba-dt` value: `learned` or `constant:<value>` with a finite value above 0.
pub fn parse_step_size(text: &str) -> std::result::Result<StepSize, CliError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("learned") {
        return Ok(StepSize::Selective);
    }
    let Some(value) = text.strip_prefix("constant:") else {
        return Err(CliError::usage(format!(
            "--mamba-dt: unknown step size `{text}`; write learned or constant:<value>, e.g. \
             constant:0.1"
        )));
    };
    let value: f64 = value.parse().map_err(|_| {
        CliError::usage(format!(
            "--mamba-dt: `{value}` in `{text}` is not a number; write constant:<value>, e.g. \
             constant:0.1"
        ))
    })?;
    let step = StepSize::Constant { value };
    if step.validate().is_err() {
        return Err(CliError::usage(format!(
            "--mamba-dt {text}: the constant step size must be a finite number above 0 (Δ = 0 \
             would freeze the state); e.g. constant:0.1"
        )));
    }
    Ok(step)
}

/// The optimizer of every run (`--optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Optim {
    /// AdamW, weight decay 0.01 (the default).
    Adamw,
    /// Adam without weight decay.
    Adam,
    /// SGD with heavy-ball momentum 0.9.
    Sgd,
    /// RMSprop with PyTorch's defaults.
    Rmsprop,
    /// AdaGrad with PyTorch's defaults.
    Adagrad,
}

impl Optim {
    /// The library value.
    pub fn kind(self) -> OptimizerKind {
        match self {
            Optim::Adamw => OptimizerKind::AdamW { weight_decay: 0.01 },
            Optim::Adam => OptimizerKind::Adam,
            Optim::Sgd => OptimizerKind::sgd(0.9),
            Optim::Rmsprop => OptimizerKind::rms_prop(),
            Optim::Adagrad => OptimizerKind::ada_grad(),
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            Optim::Adamw => "AdamW (weight decay 0.01)",
            Optim::Adam => "Adam (no weight decay)",
            Optim::Sgd => "SGD (momentum 0.9)",
            Optim::Rmsprop => "RMSprop (α 0.99, ε 1e-8)",
            Optim::Adagrad => "AdaGrad (ε 1e-10)",
        }
    }
}

/// The learning-rate schedule of every run (`--schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// Linear warm-up over 5% of the steps, then cosine decay to 5% of the peak (the default).
    Cosine,
    /// The peak rate at every step.
    Constant,
}

impl Schedule {
    /// The library value for a run of `steps` optimizer steps.
    pub fn schedule(self, steps: usize) -> LrSchedule {
        match self {
            Schedule::Cosine => LrSchedule::WarmupCosine {
                warmup_steps: (steps / 20).max(1),
                min_ratio: 0.05,
            },
            Schedule::Constant => LrSchedule::Constant,
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Cosine => "cosine",
            Schedule::Constant => "constant",
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            Schedule::Cosine => "warm-up + cosine",
            Schedule::Constant => "constant rate",
        }
    }
}

/// Everything the `pig_latin` example can change.
#[derive(Debug, Clone)]
pub struct PigLatinOptions {
    /// Translators of the main grid.
    pub models: Vec<Translator>,
    /// Widths of the main grid.
    pub hiddens: Vec<usize>,
    /// Word lists of the main grid.
    pub data: Vec<DataSize>,
    /// Discretization of the main grid's Mamba runs.
    pub discretization: Disc,
    /// Extra Mamba runs, one per discretization, at the largest width on the largest list.
    pub discretization_sweep: Vec<Disc>,
    /// Folder with `pig_latin_small.txt` and `pig_latin_large.txt`.
    pub data_dir: PathBuf,
    /// A word list to translate with the rule instead of the files (`--words`).
    pub words: Option<PathBuf>,
    /// Optimizer steps of every run (the same budget for both word lists).
    pub steps: usize,
    /// Passes over the training words instead of `steps` (the homework counts epochs).
    pub epochs: Option<f64>,
    /// Words per minibatch.
    pub batch: usize,
    /// Peak learning rate (of `optimizer` under `schedule`, clip 1).
    pub lr: f64,
    /// Points on each curve.
    pub curve_points: usize,
    /// Validation words in the curve's fixed batch.
    pub curve_batch: usize,
    /// Fraction of words held out.
    pub validation_fraction: f64,
    /// Transformer blocks on each side.
    pub transformer_layers: usize,
    /// Mamba blocks.
    pub mamba_layers: usize,
    /// Mamba state size `N`.
    pub d_state: usize,
    /// Transformer head counts (a grid axis; empty: [`default_heads`] of each width).
    pub heads: Vec<usize>,
    /// Transformer positional encodings (a grid axis).
    pub positions: Vec<Positions>,
    /// Mamba state matrices (a grid axis).
    pub mamba_a: Vec<StateMatrix>,
    /// Mamba step sizes (a grid axis).
    pub mamba_dt: Vec<StepSize>,
    /// Optimizer of every run.
    pub optimizer: Optim,
    /// Learning-rate schedule of every run.
    pub schedule: Schedule,
    /// Seed of split, data order and initialization.
    pub seed: u64,
    /// Trainings at the same time.
    pub jobs: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for PigLatinOptions {
    fn default() -> Self {
        Self {
            models: vec![Translator::Transformer, Translator::Mamba],
            hiddens: vec![32, 64],
            data: vec![DataSize::Small, DataSize::Large],
            discretization: Disc::Bilinear,
            discretization_sweep: vec![Disc::ApproxZoh, Disc::ExactZoh],
            data_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/piglatin")),
            words: None,
            steps: 3000,
            epochs: None,
            batch: 64,
            lr: 3e-3,
            curve_points: 40,
            curve_batch: 512,
            validation_fraction: 0.1,
            transformer_layers: 2,
            mamba_layers: 2,
            d_state: 16,
            heads: Vec::new(),
            positions: vec![Positions::Sinusoidal],
            mamba_a: vec![StateMatrix::Learned],
            mamba_dt: vec![StepSize::Selective],
            optimizer: Optim::Adamw,
            schedule: Schedule::Cosine,
            seed: 0,
            jobs: 1,
            out_dir: PathBuf::from("results/pig_latin"),
            progress: true,
        }
    }
}

impl PigLatinOptions {
    /// A smoke-test budget: the small list, width 16, a fraction of an epoch.
    pub fn quick(mut self) -> Self {
        self.hiddens = vec![16];
        self.data = vec![DataSize::Small];
        self.discretization_sweep = vec![Disc::ApproxZoh];
        self.steps = 36;
        self.batch = 16;
        self.curve_points = 3;
        self.curve_batch = 32;
        self.transformer_layers = 1;
        self.mamba_layers = 1;
        self.d_state = 4;
        self
    }

    /// The transformer's head counts at width `hidden`: `heads`, or [`default_heads`].
    pub fn heads_at(&self, hidden: usize) -> Vec<usize> {
        if self.heads.is_empty() {
            vec![default_heads(hidden)]
        } else {
            self.heads.clone()
        }
    }

    /// The runs: the main grid (per translator, its variant axes: heads × positions for the
    /// transformer, `A` × `Δ` for Mamba), then the discretization sweep with the first Mamba
    /// variant (skipping the grid's own).
    pub fn runs(&self) -> Vec<PigLatinRun> {
        let mut runs = Vec::new();
        let first_a = self
            .mamba_a
            .first()
            .copied()
            .unwrap_or(StateMatrix::Learned);
        let first_dt = self
            .mamba_dt
            .first()
            .copied()
            .unwrap_or(StepSize::Selective);
        for &data in &self.data {
            for &model in &self.models {
                for &hidden in &self.hiddens {
                    let base = PigLatinRun {
                        model,
                        hidden,
                        data,
                        disc: self.discretization,
                        heads: default_heads(hidden),
                        positions: Positions::Sinusoidal,
                        mamba_a: StateMatrix::Learned,
                        mamba_dt: StepSize::Selective,
                    };
                    match model {
                        Translator::Transformer => {
                            for heads in self.heads_at(hidden) {
                                for &positions in &self.positions {
                                    runs.push(PigLatinRun {
                                        heads,
                                        positions,
                                        ..base
                                    });
                                }
                            }
                        }
                        Translator::Mamba => {
                            for &mamba_a in &self.mamba_a {
                                for &mamba_dt in &self.mamba_dt {
                                    runs.push(PigLatinRun {
                                        mamba_a,
                                        mamba_dt,
                                        ..base
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        let (Some(&hidden), Some(&data)) = (
            self.hiddens.iter().max(),
            self.data.iter().max_by_key(|d| **d as usize),
        ) else {
            return runs;
        };
        for &disc in &self.discretization_sweep {
            let run = PigLatinRun {
                model: Translator::Mamba,
                hidden,
                data,
                disc,
                heads: default_heads(hidden),
                positions: Positions::Sinusoidal,
                mamba_a: first_a,
                mamba_dt: first_dt,
            };
            if !runs.contains(&run) {
                runs.push(run);
            }
        }
        runs
    }

    /// The (train, validation) pairs of a word list.
    pub fn pairs(&self, data: DataSize) -> Result<(Vec<WordPair>, Vec<WordPair>)> {
        let pairs = match &self.words {
            Some(path) => {
                let text = read_text_file(path, "word list (--words)")?;
                check_ascii_words(&text, &format!("the word list `{}`", path.display()))?;
                pairs_from_words(&text)?
            }
            None => {
                let path = self.data_dir.join(format!("pig_latin_{}.txt", data.name()));
                let text = read_text_file(&path, "word-pair file")?;
                let origin = format!("the word-pair file `{}`", path.display());
                match parse_pairs(&text, &origin) {
                    Ok(set) => set.pairs,
                    // Not one usable line: the whole file is the problem, not its line 0.
                    Err(SeqError::BadData {
                        line: 0, message, ..
                    }) => return Err(SeqError::InvalidConfig(format!("{origin}: {message}"))),
                    Err(e) => return Err(e),
                }
            }
        };
        split_pairs(
            &pairs,
            self.validation_fraction,
            &mut StdRng::seed_from_u64(self.seed),
        )
    }
}

/// One training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PigLatinRun {
    /// Which translator.
    pub model: Translator,
    /// Width `D`.
    pub hidden: usize,
    /// Which word list.
    pub data: DataSize,
    /// Mamba's discretization (ignored by the transformer).
    pub disc: Disc,
    /// The transformer's heads (ignored by Mamba).
    pub heads: usize,
    /// The transformer's positional encoding (ignored by Mamba).
    pub positions: Positions,
    /// Mamba's state matrix (ignored by the transformer).
    pub mamba_a: StateMatrix,
    /// Mamba's step sizes (ignored by the transformer).
    pub mamba_dt: StepSize,
}

impl PigLatinRun {
    /// Label in tables and plots: model, width, list (and Mamba's discretization), then each
    /// variant setting that differs from the default (`h=8`, `pe=learned`, `A=-I`,
    /// `dt=constant:0.1`).
    pub fn label(&self) -> String {
        let mut label = match self.model {
            Translator::Transformer => {
                format!("transformer d={} {}", self.hidden, self.data.name())
            }
            Translator::Mamba => format!(
                "mamba d={} {} {}",
                self.hidden,
                self.data.name(),
                self.disc.name()
            ),
        };
        for (key, value) in self.variant() {
            let _ = write!(label, " {key}={value}");
        }
        label
    }

    /// The settings of this run that differ from the defaults, as `(short key, value)`.
    pub fn variant(&self) -> Vec<(&'static str, String)> {
        let mut parts = Vec::new();
        match self.model {
            Translator::Transformer => {
                if self.heads != default_heads(self.hidden) {
                    parts.push(("h", self.heads.to_string()));
                }
                if self.positions != Positions::Sinusoidal {
                    parts.push(("pe", self.positions.name().to_string()));
                }
            }
            Translator::Mamba => {
                if self.mamba_a != StateMatrix::Learned {
                    parts.push(("A", "-I".to_string()));
                }
                if self.mamba_dt != StepSize::Selective {
                    parts.push(("dt", self.mamba_dt.name()));
                }
            }
        }
        parts
    }

    /// The CSV columns `heads,positions,mamba_a,mamba_dt` of this run (empty where the setting
    /// does not apply to its model).
    pub fn variant_columns(&self) -> String {
        match self.model {
            Translator::Transformer => format!("{},{},,", self.heads, self.positions.name()),
            Translator::Mamba => format!(",,{},{}", self.mamba_a.name(), self.mamba_dt.name()),
        }
    }

    /// File-name tag of the run's plots: model, width, list (Mamba: discretization) and the
    /// non-default variant settings.
    pub fn tag(&self) -> String {
        let mut tag = format!(
            "{}_d{}_{}",
            self.model.name(),
            self.hidden,
            self.data.name()
        );
        if self.model == Translator::Mamba {
            let _ = write!(tag, "_{}", self.disc.name());
        }
        for (key, value) in self.variant() {
            let value = match key {
                "A" => "fixed-identity".to_string(),
                _ => value.replace(':', "-"),
            };
            let _ = write!(tag, "_{key}-{value}");
        }
        tag
    }
}

/// A validation word the model got wrong.
#[derive(Debug, Clone)]
pub struct Mistake {
    /// English word.
    pub english: String,
    /// Reference translation.
    pub expected: String,
    /// Greedy translation.
    pub got: String,
}

/// What one training produced.
#[derive(Debug, Clone)]
pub struct PigLatinOutcome {
    /// The run.
    pub run: PigLatinRun,
    /// Trainable parameters ([`trainable_params`]).
    pub params: usize,
    /// Training report (curve of word accuracy and losses on the fixed validation batch).
    pub report: TrainReport,
    /// Loss and word accuracy on the whole validation set (teacher-forced arg-max).
    pub validation: Scores,
    /// The same on the whole training set.
    pub training: Scores,
    /// Word accuracy of greedy decoding with caches on the whole validation set.
    pub greedy_accuracy: f64,
    /// Some validation mistakes.
    pub mistakes: Vec<Mistake>,
    /// Greedy decoding latency, ms per word, at batch 1 and batch 64.
    pub latency_ms: (f64, f64),
    /// Training words.
    pub train_words: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Words per minibatch.
    pub batch: usize,
    /// Wall time of the whole run (training, evaluation, latency), seconds.
    pub wall_s: f64,
    /// Interpretability data: per shown word, rows of numbers for the plots.
    pub probes: Vec<Probe>,
    /// The input embedding in 2-D and its similarity summary.
    pub embedding: EmbeddingView,
}

/// The input embedding table `[V, D]` (the encoder's source embedding, or the Mamba model's
/// embedding), without the padding row: each token's first two principal components, and the
/// cosine similarities the seed asks about (do vowels and consonants cluster; are `-` and
/// `</s>` close).
#[derive(Debug, Clone, Default)]
pub struct EmbeddingView {
    /// `(token, group, pc1, pc2)`; groups index [`EMBEDDING_GROUPS`].
    pub points: Vec<(String, usize, f64, f64)>,
    /// Share of the centred table's variance on the first two components.
    pub explained: f64,
    /// Mean cosine similarity over pairs of vowels, of consonants, and vowel–consonant pairs.
    pub cos_vowels: f64,
    /// See `cos_vowels`.
    pub cos_consonants: f64,
    /// See `cos_vowels`.
    pub cos_vowel_consonant: f64,
    /// Cosine similarity of `-` and `</s>`.
    pub cos_dash_eos: f64,
    /// Rank of `</s>` among the tokens nearest to `-` by cosine (1 = nearest), of `others`.
    pub dash_eos_rank: usize,
    /// Tokens compared with `-` for the rank.
    pub others: usize,
}

/// Token groups of the embedding plot.
pub const EMBEDDING_GROUPS: [&str; 4] = ["vowel (a e i o u)", "consonant", "-", "<s> / </s>"];

/// [`EmbeddingView`] of an embedding table `[V, D]` in [`PigLatinVocab`] order.
pub fn embedding_view(table: &[Vec<f64>]) -> EmbeddingView {
    let tokens: Vec<u32> = (0..PigLatinVocab::SIZE as u32)
        .filter(|&t| t != PigLatinVocab::PAD && (t as usize) < table.len())
        .collect();
    let group = |t: u32| match t {
        0 | 4 | 8 | 14 | 20 => 0,
        0..=25 => 1,
        PigLatinVocab::DASH => 2,
        _ => 3,
    };
    let rows: Vec<&Vec<f64>> = tokens.iter().map(|&t| &table[t as usize]).collect();
    let d = rows.first().map_or(0, |r| r.len());
    let n = rows.len();
    if d == 0 || n < 3 {
        return EmbeddingView::default();
    }
    // PCA: top two eigenvectors of the centred table's D × D scatter matrix by power iteration
    // with deflation (plenty for D ≤ 256).
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    let mut scatter = vec![vec![0.0; d]; d];
    for r in &centred {
        for i in 0..d {
            for j in 0..d {
                scatter[i][j] += r[i] * r[j];
            }
        }
    }
    let total: f64 = (0..d).map(|i| scatter[i][i]).sum();
    let mut components = Vec::new();
    let mut explained = 0.0;
    for k in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|i| 1.0 + ((i * 7 + k * 3) % 5) as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| scatter[i][j] * v[j]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            lambda = norm;
            v = w.iter().map(|x| x / norm).collect();
        }
        for i in 0..d {
            for j in 0..d {
                scatter[i][j] -= lambda * v[i] * v[j];
            }
        }
        explained += lambda / total.max(1e-300);
        components.push(v);
    }
    let project = |r: &Vec<f64>, k: usize| r.iter().zip(&components[k]).map(|(x, c)| x * c).sum();
    let points = tokens
        .iter()
        .zip(&centred)
        .map(|(&t, r)| {
            (
                PigLatinVocab::decode(&[t]),
                group(t),
                project(r, 0),
                project(r, 1),
            )
        })
        .collect();
    let cosine = |a: u32, b: u32| {
        let (x, y) = (&table[a as usize], &table[b as usize]);
        let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        let nx = x.iter().map(|p| p * p).sum::<f64>().sqrt();
        let ny = y.iter().map(|q| q * q).sum::<f64>().sqrt();
        dot / (nx * ny).max(1e-300)
    };
    let mean_cos = |pick: &dyn Fn(u32, u32) -> bool| {
        let (mut sum, mut count) = (0.0, 0usize);
        for (i, &a) in tokens.iter().enumerate() {
            for &b in &tokens[i + 1..] {
                if pick(a, b) {
                    sum += cosine(a, b);
                    count += 1;
                }
            }
        }
        sum / count.max(1) as f64
    };
    let cos_dash_eos = cosine(PigLatinVocab::DASH, PigLatinVocab::EOS);
    let others: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|&t| t != PigLatinVocab::DASH)
        .collect();
    let dash_eos_rank = 1 + others
        .iter()
        .filter(|&&t| t != PigLatinVocab::EOS && cosine(PigLatinVocab::DASH, t) > cos_dash_eos)
        .count();
    EmbeddingView {
        points,
        explained,
        cos_vowels: mean_cos(&|a, b| group(a) == 0 && group(b) == 0),
        cos_consonants: mean_cos(&|a, b| group(a) == 1 && group(b) == 1),
        cos_vowel_consonant: mean_cos(&|a, b| {
            (group(a) == 0 && group(b) == 1) || (group(a) == 1 && group(b) == 0)
        }),
        cos_dash_eos,
        dash_eos_rank,
        others: others.len(),
    }
}

fn table_rows<B: Backend>(weight: Tensor<B, 2>) -> Vec<Vec<f64>> {
    to_rows(weight)
}

/// Interpretability numbers for one word.
#[derive(Debug, Clone)]
pub struct Probe {
    /// English word.
    pub english: String,
    /// Reference translation.
    pub target: String,
    /// Transformer: last decoder block's cross-attention averaged over heads, rows = output
    /// positions (`y EOS`), columns = source letters. Mamba: row 0 mean `Δ` of the first block at
    /// each input position, row 1 the weight each source position keeps in the state at SOS.
    pub rows: Vec<Vec<f64>>,
    /// Transformer: the encoder's self-attention, `[block][head][query letter][key letter]`.
    /// Mamba: empty.
    pub encoder: Vec<Vec<Vec<Vec<f64>>>>,
}

fn scores_over(
    batches: &[seqlayers::data::Batch],
    score: impl Fn(&seqlayers::data::Batch) -> Result<Scores>,
) -> Result<Scores> {
    let (mut loss, mut acc, mut exact, mut n, mut tokens) = (0.0, 0.0, 0.0, 0usize, 0.0);
    for b in batches {
        let s = score(b)?;
        let scored = match &b.targets {
            seqlayers::data::Targets::Tokens { loss_mask, .. } => {
                loss_mask.iter().filter(|&&m| m).count() as f64
            }
            _ => b.batch as f64,
        };
        loss += s.loss * scored;
        acc += s.accuracy * scored;
        tokens += scored;
        exact += s.exact_match * b.batch as f64;
        n += b.batch;
    }
    let loss = loss / tokens.max(1.0);
    Ok(Scores {
        loss,
        accuracy: acc / tokens.max(1.0),
        exact_match: exact / n.max(1) as f64,
        perplexity: loss.exp(),
        sequences: n,
    })
}

/// The most common source length among `pairs`, with up to 64 of its words.
fn latency_words(pairs: &[(Vec<u32>, Vec<u32>)]) -> Vec<Vec<u32>> {
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for (s, _) in pairs {
        *counts.entry(s.len()).or_default() += 1;
    }
    let len = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map_or(1, |(l, _)| *l);
    pairs
        .iter()
        .filter(|(s, _)| s.len() == len)
        .take(64)
        .map(|(s, _)| s.clone())
        .collect()
}

/// A translator behind one interface for evaluation.
trait Translate<B: Backend> {
    fn translate(&self, sources: &[Vec<u32>], device: &B::Device) -> Result<Vec<Vec<u32>>>;
}

fn limit(sources: &[Vec<u32>]) -> GenerateConfig {
    let longest = sources.iter().map(Vec::len).max().unwrap_or(1);
    GenerateConfig::new(2 * longest + 6).with_stop_token(PigLatinVocab::EOS)
}

impl<B: Backend> Translate<B> for EncoderDecoder<B> {
    fn translate(&self, sources: &[Vec<u32>], device: &B::Device) -> Result<Vec<Vec<u32>>> {
        self.translate_greedy(sources, PigLatinVocab::SOS, limit(sources), device)
    }
}

impl<B: Backend> Translate<B> for LanguageModel<B> {
    fn translate(&self, sources: &[Vec<u32>], device: &B::Device) -> Result<Vec<Vec<u32>>> {
        let prompts: Vec<Vec<u32>> = sources
            .iter()
            .map(|s| s.iter().copied().chain([PigLatinVocab::SOS]).collect())
            .collect();
        generate_greedy(self, &prompts, limit(sources), device)
    }
}

/// Greedy accuracy, mistakes and latency of a trained translator.
fn evaluate_translator<B: Backend, M: Translate<B>>(
    model: &M,
    task: &PigLatinTask,
    device: &B::Device,
) -> Result<(f64, Vec<Mistake>, (f64, f64))> {
    let pairs = task.validation_pairs();
    let mut right = 0;
    let mut mistakes = Vec::new();
    for chunk in pairs.chunks(256) {
        let sources: Vec<Vec<u32>> = chunk.iter().map(|(s, _)| s.clone()).collect();
        for ((src, tgt), got) in chunk.iter().zip(model.translate(&sources, device)?) {
            if &got == tgt {
                right += 1;
            } else if mistakes.len() < 12 {
                mistakes.push(Mistake {
                    english: PigLatinVocab::decode(src),
                    expected: PigLatinVocab::decode(tgt),
                    got: PigLatinVocab::decode(&got),
                });
            }
        }
    }
    let words = latency_words(&pairs);
    let started = Instant::now();
    for w in &words {
        model.translate(std::slice::from_ref(w), device)?;
    }
    let one = 1e3 * started.elapsed().as_secs_f64() / words.len().max(1) as f64;
    let started = Instant::now();
    model.translate(&words, device)?;
    let batched = 1e3 * started.elapsed().as_secs_f64() / words.len().max(1) as f64;
    Ok((
        right as f64 / pairs.len().max(1) as f64,
        mistakes,
        (one, batched),
    ))
}

fn ids_tensor<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), device)
}

fn to_rows(t: Tensor<impl Backend, 2>) -> Vec<Vec<f64>> {
    let [r, c] = t.dims();
    let v: Vec<f64> = t.into_data().iter::<f64>().collect();
    (0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect()
}

/// Words shown in the interpretability plots.
pub const PROBE_WORDS: [&str; 3] = ["street", "apple", "quiet"];

fn transformer_probes<B: Backend>(
    model: &EncoderDecoder<B>,
    device: &B::Device,
) -> Result<Vec<Probe>> {
    PROBE_WORDS
        .iter()
        .map(|&w| {
            let target = seqlayers::data::pig_latin(w)?;
            let src = PigLatinVocab::encode(w)?;
            let tgt = PigLatinVocab::encode(&target)?;
            let input: Vec<u32> = [PigLatinVocab::SOS].into_iter().chain(tgt).collect();
            let encoder = model
                .encoder_attention_maps(ids_tensor::<B>(std::slice::from_ref(&src), device))?
                .into_iter()
                .map(|map| {
                    let [_, heads, l, _] = map.dims(); // [1, H, Ls, Ls]
                    (0..heads)
                        .map(|h| {
                            to_rows(
                                map.clone()
                                    .slice([0..1, h..h + 1, 0..l, 0..l])
                                    .reshape([l, l]),
                            )
                        })
                        .collect()
                })
                .collect();
            let maps = model.cross_attention_maps(
                ids_tensor::<B>(&[src], device),
                ids_tensor::<B>(&[input], device),
            )?;
            let last = maps
                .last()
                .cloned()
                .ok_or_else(|| SeqError::InvalidConfig("no decoder block".into()))?; // [1, H, Lt, Ls]
            let [_, _, lt, ls] = last.dims();
            let mean = last.mean_dim(1).reshape([lt, ls]); // [Lt, Ls]
            Ok(Probe {
                english: w.into(),
                target,
                rows: to_rows(mean),
                encoder,
            })
        })
        .collect()
}

fn mamba_probes<B: Backend>(
    model: &LanguageModel<B>,
    disc: Disc,
    device: &B::Device,
) -> Result<Vec<Probe>> {
    PROBE_WORDS
        .iter()
        .map(|&w| {
            let target = seqlayers::data::pig_latin(w)?;
            let src = PigLatinVocab::encode(w)?;
            let tokens: Vec<u32> = src
                .iter()
                .copied()
                .chain([PigLatinVocab::SOS])
                .chain(PigLatinVocab::encode(&target)?)
                .collect();
            let sel =
                model.mamba_selectivity(ids_tensor::<B>(std::slice::from_ref(&tokens), device))?;
            let (delta, a) = sel
                .into_iter()
                .next()
                .ok_or_else(|| SeqError::InvalidConfig("no Mamba block".into()))?;
            let [_, l, e] = delta.dims();
            let delta = to_rows(delta.reshape([l, e])); // [L][E]
            let a = to_rows(a); // [E][N]
            let mean_delta: Vec<f64> = delta
                .iter()
                .map(|r| r.iter().sum::<f64>() / e as f64)
                .collect();
            // Weight of input t in the state at the SOS position: mean over (e, n) of
            // Π_{s=t+1}^{sos} Ā_s (e, n).
            let sos = src.len();
            let retention: Vec<f64> = (0..l)
                .map(|t| {
                    if t > sos {
                        return f64::NAN;
                    }
                    let mut total = 0.0;
                    let mut count = 0.0;
                    for (ei, a_row) in a.iter().enumerate() {
                        for &a_en in a_row {
                            let log_keep: f64 = ((t + 1)..=sos)
                                .map(|s| disc.a_bar(delta[s][ei] * a_en).abs().ln())
                                .sum();
                            total += log_keep.exp();
                            count += 1.0;
                        }
                    }
                    total / count
                })
                .collect();
            Ok(Probe {
                english: w.into(),
                target,
                rows: vec![mean_delta, retention],
                encoder: Vec::new(),
            })
        })
        .collect()
}

/// The transformer of a run: `transformer_layers` blocks on each side, the run's width, heads
/// and positional encoding.
pub fn transformer_config(options: &PigLatinOptions, run: &PigLatinRun) -> EncoderDecoderConfig {
    EncoderDecoderConfig::new(PigLatinVocab::SIZE, run.hidden)
        .with_n_heads(run.heads)
        .with_position(run.positions.encoding())
        .with_encoder_layers(options.transformer_layers)
        .with_decoder_layers(options.transformer_layers)
}

/// A Mamba stack of `mamba_layers` blocks read as a language model over `x SOS y`, with the
/// reference `A` and `Δ` (learned, selective).
pub fn mamba_config(
    options: &PigLatinOptions,
    hidden: usize,
    disc: Disc,
) -> Result<LanguageModelConfig> {
    mamba_variant_config(
        options,
        hidden,
        disc,
        StateMatrix::Learned,
        StepSize::Selective,
    )
}

/// [`mamba_config`] with the run's width, discretization, `A` and `Δ`.
pub fn mamba_run_config(
    options: &PigLatinOptions,
    run: &PigLatinRun,
) -> Result<LanguageModelConfig> {
    mamba_variant_config(options, run.hidden, run.disc, run.mamba_a, run.mamba_dt)
}

/// [`mamba_config`] with the state matrix `a` and the step sizes `dt`.
pub fn mamba_variant_config(
    options: &PigLatinOptions,
    hidden: usize,
    disc: Disc,
    a: StateMatrix,
    dt: StepSize,
) -> Result<LanguageModelConfig> {
    let layers = vec!["mamba"; options.mamba_layers].join(",");
    let stack = StackConfig::new(hidden, parse_layers(&layers)?)
        .with_norm(NormKind::Rms)
        .with_position(PositionEncoding::None)
        .with_mamba(
            MambaConfig::new(hidden)
                .with_d_state(options.d_state)
                .with_discretization(disc.discretization())
                .with_state_matrix(Some(a))
                .with_step_size(Some(dt)),
        );
    Ok(LanguageModelConfig::new(stack, PigLatinVocab::SIZE))
}

/// Parameters that training updates (those that require a gradient): all of them in the
/// reference models; `A = −I` leaves out `A_log`, a constant `Δ` leaves out `dt_proj`.
pub fn trainable_params<B: Backend, M: Module<B>>(model: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> seqlayers::burn::module::ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(
            &mut self,
            param: &seqlayers::burn::module::Param<Tensor<B, D>>,
        ) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// Trains and evaluates one run.
pub fn run_pig_latin<B: AutodiffBackend>(
    options: &PigLatinOptions,
    run: &PigLatinRun,
    device: &B::Device,
) -> Result<PigLatinOutcome> {
    let started = Instant::now();
    let (train_pairs, val_pairs) = options.pairs(run.data)?;
    let layout = match run.model {
        Translator::Transformer => Seq2SeqLayout::EncoderDecoder,
        Translator::Mamba => Seq2SeqLayout::Concatenated,
    };
    let task = PigLatinTask::new(&train_pairs, &val_pairs, layout)?;
    let steps = match options.epochs {
        Some(epochs) => ((epochs * task.train_size() as f64) / options.batch as f64)
            .ceil()
            .max(1.0) as usize,
        None => options.steps,
    };
    let train_config = TrainConfig {
        steps,
        batch_size: options.batch,
        lr: options.lr,
        optimizer: options.optimizer.kind(),
        schedule: options.schedule.schedule(steps),
        grad_clip: Some(1.0),
        eval_every: (steps / options.curve_points.max(1)).max(1),
        test_batch: options.curve_batch,
        early_stop: None,
        plateau_stop: None,
        seed: options.seed,
    };
    let label = run.label();
    let mut progress = Progress::new(&label, steps, options.progress);
    macro_rules! finish {
        ($model:expr, $probes:expr) => {{
            let model = $model;
            let params = trainable_params(&model);
            let (model, report) =
                super::driver::fit(model, &task, &train_config, device, &mut progress)?;
            let model = model.valid();
            let inner = device.clone();
            let validation = scores_over(&task.validation_batches(256)?, |b| {
                evaluate_batch(&model, b, &inner)
            })?;
            let training = scores_over(&task.train_batches(256)?, |b| {
                evaluate_batch(&model, b, &inner)
            })?;
            let (greedy_accuracy, mistakes, latency_ms) =
                evaluate_translator(&model, &task, &inner)?;
            let (probes, embedding) = $probes(&model)?;
            Ok(PigLatinOutcome {
                run: *run,
                params,
                report,
                validation,
                training,
                greedy_accuracy,
                mistakes,
                latency_ms,
                train_words: task.train_size(),
                steps,
                batch: options.batch,
                wall_s: started.elapsed().as_secs_f64(),
                probes,
                embedding,
            })
        }};
    }
    match run.model {
        Translator::Transformer => {
            let model = init_locked(|| {
                B::seed(device, options.seed);
                transformer_config(options, run).try_init::<B>(device)
            })?;
            finish!(model, |m: &EncoderDecoder<B::InnerBackend>| -> Result<_> {
                let table = table_rows(m.source_embedding.weight.val());
                Ok((transformer_probes(m, device)?, embedding_view(&table)))
            })
        }
        Translator::Mamba => {
            let config = mamba_run_config(options, run)?;
            let model = init_locked(|| {
                B::seed(device, options.seed);
                config.try_init::<B>(device)
            })?;
            finish!(model, |m: &LanguageModel<B::InnerBackend>| -> Result<_> {
                let table = table_rows(m.embedding.weight.val());
                Ok((mamba_probes(m, run.disc, device)?, embedding_view(&table)))
            })
        }
    }
}

/// Runs every training (`jobs` at a time), writes CSV files and `report.md`, and returns the
/// outcomes.
pub fn pig_latin<B: AutodiffBackend>(
    options: &PigLatinOptions,
    device: &B::Device,
) -> Result<Vec<PigLatinOutcome>> {
    execute::<PigLatin, B>(options, device)
}

/// The `pig_latin` example.
pub struct PigLatin;

impl Experiment for PigLatin {
    type Args = PigLatinArgs;
    type Options = PigLatinOptions;
    type Outcome = Vec<PigLatinOutcome>;

    fn options(args: &PigLatinArgs) -> std::result::Result<PigLatinOptions, CliError> {
        pig_latin_options(args)
    }

    fn out_dir(options: &PigLatinOptions) -> &Path {
        &options.out_dir
    }

    fn run<B: AutodiffBackend>(o: &Self::Options, device: &B::Device) -> Result<Self::Outcome> {
        let cost = |r: &PigLatinRun| {
            let words = match r.data {
                DataSize::Small => 3,
                DataSize::Large => 22,
            };
            let per = match r.model {
                Translator::Transformer => 2,
                Translator::Mamba => 3,
            };
            words * per * r.hidden
        };
        run_parallel(
            &o.runs(),
            o.jobs,
            cost,
            |run| run_pig_latin::<B>(o, run, device),
            |k, total, o: &PigLatinOutcome| {
                eprintln!(
                    "[{k}/{total}] {:<34} {:>7} params  {:>6.1} ms/step  val word acc {:>5.1}%  ({:.0} s)",
                    o.run.label(),
                    o.params,
                    o.report.ms_per_step,
                    100.0 * o.greedy_accuracy,
                    o.wall_s
                );
            },
        )
    }

    fn csv(outcomes: &Vec<PigLatinOutcome>) -> Vec<(&'static str, String)> {
        csv_files(outcomes)
    }

    fn report(options: &PigLatinOptions, outcomes: &Vec<PigLatinOutcome>) -> String {
        report(options, outcomes)
    }

    fn plots(options: &PigLatinOptions, outcomes: &Vec<PigLatinOutcome>) {
        plots(options, outcomes)
    }
}

/// `summary.csv`, `curves.csv`, `mistakes.csv`, `probes.csv` (the numbers behind the
/// interpretability plots: per word, the cross-attention rows or Mamba's Δ and retention rows).
pub fn csv_files(outcomes: &[PigLatinOutcome]) -> Vec<(&'static str, String)> {
    let mut summary = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,params,train_words,steps,ms_per_step,train_loss,train_word_acc,val_loss,val_word_acc_teacher_forced,val_word_acc_greedy,latency_ms_batch1,latency_ms_batch64,wall_s\n",
    );
    let mut curves = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,step,epoch,train_loss,val_loss,val_word_acc\n",
    );
    let mut mistakes = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,english,expected,got\n",
    );
    let mut probes = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,english,row,values\n",
    );
    let mut encoder = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,english,block,head,query,values\n",
    );
    let mut embeddings = String::from(
        "model,hidden,data,discretization,heads,positions,mamba_a,mamba_dt,token,group,pc1,pc2\n",
    );
    for o in outcomes {
        let r = &o.run;
        let key = format!(
            "{},{},{},{},{}",
            r.model.name(),
            r.hidden,
            r.data.name(),
            r.disc.name(),
            r.variant_columns()
        );
        let _ = writeln!(
            summary,
            "{key},{},{},{},{:.2},{:.5},{:.4},{:.5},{:.4},{:.4},{:.3},{:.4},{:.1}",
            o.params,
            o.train_words,
            o.steps,
            o.report.ms_per_step,
            o.training.loss,
            o.training.exact_match,
            o.validation.loss,
            o.validation.exact_match,
            o.greedy_accuracy,
            o.latency_ms.0,
            o.latency_ms.1,
            o.wall_s
        );
        for p in &o.report.curve {
            let epoch = (p.step * o.batch) as f64 / o.train_words as f64;
            let _ = writeln!(
                curves,
                "{key},{},{:.3},{:.5},{:.5},{:.4}",
                p.step, epoch, p.mean_loss, p.test_loss, p.test_score
            );
        }
        for p in &o.probes {
            for (i, row) in p.rows.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:.5}")).collect();
                let _ = writeln!(probes, "{key},{},{i},{}", p.english, cells.join(" "));
            }
            for (b, heads) in p.encoder.iter().enumerate() {
                for (h, map) in heads.iter().enumerate() {
                    for (q, row) in map.iter().enumerate() {
                        let cells: Vec<String> = row.iter().map(|v| format!("{v:.5}")).collect();
                        let _ = writeln!(
                            encoder,
                            "{key},{},{},{},{q},{}",
                            p.english,
                            b + 1,
                            h + 1,
                            cells.join(" ")
                        );
                    }
                }
            }
        }
        for (token, group, x, y) in &o.embedding.points {
            let _ = writeln!(
                embeddings,
                "{key},{token},{},{x:.5},{y:.5}",
                EMBEDDING_GROUPS[*group]
            );
        }
        for m in &o.mistakes {
            let _ = writeln!(mistakes, "{key},{},{},{}", m.english, m.expected, m.got);
        }
    }
    vec![
        ("summary.csv", summary),
        ("curves.csv", curves),
        ("mistakes.csv", mistakes),
        ("probes.csv", probes),
        ("encoder_attention.csv", encoder),
        ("embeddings.csv", embeddings),
    ]
}

/// `report.md`: setting, results table, findings computed from the numbers, mistakes,
/// interpretability notes.
pub fn report(options: &PigLatinOptions, outcomes: &[PigLatinOutcome]) -> String {
    let mut s = String::from("# Pig-Latin translation (seed 002)\n\n");
    let _ = writeln!(
        s,
        "Setting: {} of {}-word minibatches (all words of a minibatch share their length, as in the homework), {} (lr {}, {}, clip 1.0), seed {}, {}% of the words held out for validation. Transformer: encoder–decoder, {} + {} pre-LayerNorm blocks. Mamba: {} Mamba blocks (N = {}, expand 2, conv 4) over `english SOS piglatin`, loss on the Pig-Latin side. Word accuracy is exact match of the whole translation (greedy decoding with caches; teacher-forced arg-max gives the same words).\n",
        match options.epochs {
            Some(e) => format!("{e} epochs"),
            None => format!("{} steps", options.steps),
        },
        options.batch,
        options.optimizer.describe(),
        options.lr,
        options.schedule.describe(),
        options.seed,
        (100.0 * options.validation_fraction).round(),
        options.transformer_layers,
        options.transformer_layers,
        options.mamba_layers,
        options.d_state
    );
    s.push_str(&setting_lines(options));
    s.push_str("\n| model | d | data | discretization | variant | params | steps (epochs) | ms/step | train loss | train acc | val loss | val acc | ms/word batch 1 | ms/word batch 64 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let r = &o.run;
        let disc = if r.model == Translator::Mamba {
            r.disc.name()
        } else {
            "–"
        };
        let variant: Vec<String> = r
            .variant()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} ({:.0}) | {:.1} | {:.3} | {} | {:.3} | {} | {:.2} | {:.3} |",
            r.model.name(),
            r.hidden,
            r.data.name(),
            disc,
            if variant.is_empty() {
                "–".to_string()
            } else {
                variant.join(" ")
            },
            o.params,
            o.steps,
            (o.steps * o.batch) as f64 / o.train_words as f64,
            o.report.ms_per_step,
            o.training.loss,
            pct(o.training.exact_match),
            o.validation.loss,
            pct(o.greedy_accuracy),
            o.latency_ms.0,
            o.latency_ms.1
        );
    }
    s.push_str("\n## Findings (computed from the table)\n\n");
    for model in [Translator::Transformer, Translator::Mamba] {
        let best = outcomes
            .iter()
            .filter(|o| o.run.model == model)
            .max_by(|a, b| a.greedy_accuracy.total_cmp(&b.greedy_accuracy));
        if let Some(b) = best {
            let _ = writeln!(
                s,
                "- Best {}: {} validation word accuracy ({}, {} parameters).",
                model.name(),
                pct(b.greedy_accuracy),
                b.run.label(),
                b.params
            );
        }
    }
    let find = |m: Translator, h: usize, d: DataSize, disc: Disc| {
        outcomes.iter().find(|o| {
            o.run.model == m
                && o.run.hidden == h
                && o.run.data == d
                && (m == Translator::Transformer || o.run.disc == disc)
        })
    };
    for model in [Translator::Transformer, Translator::Mamba] {
        for &h in &options.hiddens {
            if let (Some(a), Some(b)) = (
                find(model, h, DataSize::Small, options.discretization),
                find(model, h, DataSize::Large, options.discretization),
            ) {
                let _ = writeln!(
                    s,
                    "- {} d={h}: small → large data: validation accuracy {} → {}, train−validation gap {} → {} points.",
                    model.name(),
                    pct(a.greedy_accuracy),
                    pct(b.greedy_accuracy),
                    ((a.training.exact_match - a.greedy_accuracy) * 100.0).round(),
                    ((b.training.exact_match - b.greedy_accuracy) * 100.0).round()
                );
            }
        }
    }
    for model in [Translator::Transformer, Translator::Mamba] {
        for &d in &options.data {
            let runs: Vec<&PigLatinOutcome> = options
                .hiddens
                .iter()
                .filter_map(|&h| find(model, h, d, options.discretization))
                .collect();
            if runs.len() > 1 {
                let parts: Vec<String> = runs
                    .iter()
                    .map(|o| {
                        format!(
                            "d={} {} ({} params)",
                            o.run.hidden,
                            pct(o.greedy_accuracy),
                            o.params
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "- {} on the {} list by width: {}.",
                    model.name(),
                    d.name(),
                    parts.join(" → ")
                );
            }
        }
    }
    let variant_groups = {
        let mut groups: Vec<Vec<&PigLatinOutcome>> = Vec::new();
        for o in outcomes {
            let same = |g: &Vec<&PigLatinOutcome>| {
                let r = &g[0].run;
                r.model == o.run.model
                    && r.hidden == o.run.hidden
                    && r.data == o.run.data
                    && r.disc == o.run.disc
            };
            match groups.iter_mut().find(|g| same(g)) {
                Some(g) => g.push(o),
                None => groups.push(vec![o]),
            }
        }
        groups
    };
    for group in variant_groups.iter().filter(|g| g.len() > 1) {
        let parts: Vec<String> = group
            .iter()
            .map(|o| {
                let v: Vec<String> = o
                    .run
                    .variant()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "{} {} (val loss {:.3})",
                    if v.is_empty() {
                        "default".to_string()
                    } else {
                        v.join(" ")
                    },
                    pct(o.greedy_accuracy),
                    o.validation.loss
                )
            })
            .collect();
        let r = &group[0].run;
        let _ = writeln!(
            s,
            "- {} d={} {} variants: {}.",
            r.model.name(),
            r.hidden,
            r.data.name(),
            parts.join("; ")
        );
    }
    let first_a = options.mamba_a.first().copied();
    let first_dt = options.mamba_dt.first().copied();
    let sweep: Vec<&PigLatinOutcome> = outcomes
        .iter()
        .filter(|o| {
            o.run.model == Translator::Mamba
                && Some(o.run.mamba_a) == first_a
                && Some(o.run.mamba_dt) == first_dt
                && Some(o.run.hidden) == options.hiddens.iter().max().copied()
                && Some(o.run.data) == options.data.iter().max_by_key(|d| **d as usize).copied()
        })
        .collect();
    if sweep.len() > 1 {
        let parts: Vec<String> = sweep
            .iter()
            .map(|o| {
                format!(
                    "{} {} (val loss {:.3})",
                    o.run.disc.name(),
                    pct(o.greedy_accuracy),
                    o.validation.loss
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "- Mamba discretizations ({}): {}.",
            sweep[0].run.label().rsplit_once(' ').map_or("", |x| x.0),
            parts.join("; ")
        );
    }
    s.push_str("\n## Sample mistakes (validation)\n\n| run | English | expected | got |\n|---|---|---|---|\n");
    for o in outcomes {
        for m in o.mistakes.iter().take(4) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                o.run.label(),
                m.english,
                m.expected,
                m.got
            );
        }
    }
    s.push_str("\n## Interpretability\n\nPlots `cross_attention_*.png` (transformer: which source letter each output letter reads, last decoder block, mean over heads) and `mamba_state_*.png` (Mamba: mean Δ of the first block at each input position, and the weight each position still has in the state when the Pig-Latin side starts).\n");
    s.push_str("\nPlots `encoder_attention_*_b<block>.png` (transformer: which source letter each source letter reads in one encoder block, the heads side by side, left to right) and `embedding_*.png` (the input embedding's first two principal components; numbers in `encoder_attention.csv` and `embeddings.csv`).\n\n### Embeddings\n\nCosine similarities in the full embedding space (the seed's questions: do vowels and consonants cluster, are `-` and `</s>` close?). Clustering would show as vowel–vowel and consonant–consonant similarities above vowel–consonant ones.\n\n| run | variance on PC1–2 | vowel–vowel | consonant–consonant | vowel–consonant | `-` vs `</s>` | rank of `</s>` near `-` |\n|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let e = &o.embedding;
        let _ = writeln!(
            s,
            "| {} | {:.0}% | {:.3} | {:.3} | {:.3} | {:.3} | {} of {} |",
            o.run.label(),
            100.0 * e.explained,
            e.cos_vowels,
            e.cos_consonants,
            e.cos_vowel_consonant,
            e.cos_dash_eos,
            e.dash_eos_rank,
            e.others
        );
    }
    s.push_str("\n## Scans\n\nThe parallel vs sequential scan comparison in time and precision against sequence length is the crate's `scan_precision` example and `cargo bench --bench scan`; results and commands in [../scan.md](../scan.md).\n");
    s
}

/// The report's list of the variant settings: heads, positions, Mamba's `A` and `Δ`,
/// optimizer and schedule, each with the values this invocation ran.
fn setting_lines(options: &PigLatinOptions) -> String {
    let heads = if options.heads.is_empty() {
        "hidden/16 (heads of width 16)".to_string()
    } else {
        let h: Vec<String> = options.heads.iter().map(ToString::to_string).collect();
        h.join(", ")
    };
    let positions: Vec<&str> = options
        .positions
        .iter()
        .map(|p| match p {
            Positions::None => "none (no positional encoding)",
            Positions::Sinusoidal => "sinusoidal (fixed)",
            Positions::Learned => "learned (a trained table, N(0, 0.02²) init)",
        })
        .collect();
    let a: Vec<&str> = options
        .mamba_a
        .iter()
        .map(|a| match a {
            StateMatrix::Learned => "learned (A = −exp(A_log), S4D-real init)",
            StateMatrix::FixedNegIdentity => "fixed A = −I (not trained, not counted in params)",
        })
        .collect();
    let dt: Vec<String> = options
        .mamba_dt
        .iter()
        .map(|d| match d {
            StepSize::Selective => "learned (selective Δ = softplus(dt_proj(·)))".to_string(),
            StepSize::Constant { value } => {
                format!("constant Δ = {value} (dt_proj unused, not counted in params)")
            }
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(s, "- Transformer heads: {heads}.");
    let _ = writeln!(s, "- Transformer positions: {}.", positions.join("; "));
    let _ = writeln!(s, "- Mamba A: {}.", a.join("; "));
    let _ = writeln!(s, "- Mamba Δ: {}.", dt.join("; "));
    let _ = writeln!(s, "- Optimizer: {}.", options.optimizer.describe());
    let _ = writeln!(
        s,
        "- Schedule: {}.",
        match options.schedule {
            Schedule::Cosine =>
                "linear warm-up over 5% of the steps, then cosine to 5% of the peak",
            Schedule::Constant => "constant rate",
        }
    );
    s
}

/// Loss and accuracy curves against optimizer steps (the runs share a step budget; in epochs the
/// large-list runs would fill only the first few percent of the axis); per probed word, the cross-attention heatmap
/// (transformer) or the mean Δ and state retention (Mamba).
fn plots(options: &PigLatinOptions, outcomes: &[PigLatinOutcome]) {
    let dir = &options.out_dir;
    // The learning rate of every optimizer step (the runs share the schedule and the peak).
    if let Some(steps) = outcomes.first().map(|o| o.steps) {
        let schedule = options.schedule.schedule(steps);
        let points = (1..=steps)
            .map(|step| (step as f64, schedule.rate(options.lr, step, steps)))
            .collect();
        warn_on_error(line_plot(
            &dir.join("lr_schedule.png"),
            "Pig-Latin: learning rate per optimizer step",
            "optimizer step",
            "learning rate",
            &[Series {
                name: format!("{} (peak {})", options.schedule.name(), options.lr),
                points,
            }],
            false,
        ));
    }
    for (what, file, pick) in [
        ("training loss", "train_loss.png", 0),
        ("validation loss", "val_loss.png", 1),
        (
            "validation word accuracy (fixed batch)",
            "val_accuracy.png",
            2,
        ),
    ] {
        let series: Vec<Series> = outcomes
            .iter()
            .map(|o| Series {
                name: o.run.label(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| {
                        let y = [p.mean_loss, p.test_loss, p.test_score][pick];
                        (
                            p.step as f64,
                            if pick < 2 { y.max(1e-4).log10() } else { y },
                        )
                    })
                    .collect(),
            })
            .collect();
        let y_label = if pick < 2 {
            format!("log10 {what}")
        } else {
            what.to_string()
        };
        for (path, panel, part) in panels(&dir.join(file), &series, MAX_CURVES) {
            warn_on_error(line_plot(
                &path,
                &format!("Pig-Latin: {what}{part}"),
                "optimizer step",
                &y_label,
                &panel,
                false,
            ));
        }
    }
    for o in outcomes {
        let tag = o.run.tag();
        let points: Vec<(f64, f64, String, usize)> = o
            .embedding
            .points
            .iter()
            .map(|(token, group, x, y)| (*x, *y, token.clone(), *group))
            .collect();
        warn_on_error(labelled_points(
            &dir.join(format!("embedding_{tag}.png")),
            &format!(
                "{}: input embedding, PCA ({:.0}% of the variance)",
                o.run.label(),
                100.0 * o.embedding.explained
            ),
            "PC 1",
            "PC 2",
            &points,
            &EMBEDDING_GROUPS,
        ));
        for p in &o.probes {
            let letters: Vec<String> = p.english.chars().map(String::from).collect();
            match o.run.model {
                Translator::Transformer => {
                    let outputs: Vec<String> = p
                        .target
                        .chars()
                        .map(String::from)
                        .chain(["</s>".to_string()])
                        .collect();
                    warn_on_error(heatmap(
                        &dir.join(format!("cross_attention_{tag}_{}.png", p.english)),
                        &format!("{} → {}: cross-attention (last block)", p.english, p.target),
                        &outputs,
                        &letters,
                        &p.rows,
                    ));
                    for (b, heads) in p.encoder.iter().enumerate() {
                        // The heads side by side, a blank column between two.
                        let rows: Vec<Vec<f64>> = (0..letters.len())
                            .map(|q| {
                                heads
                                    .iter()
                                    .enumerate()
                                    .flat_map(|(h, map)| {
                                        let gap = (h > 0).then_some(0.0);
                                        gap.into_iter().chain(map[q].iter().copied())
                                    })
                                    .collect()
                            })
                            .collect();
                        let columns: Vec<String> = (0..heads.len())
                            .flat_map(|h| {
                                let gap = (h > 0).then(String::new);
                                gap.into_iter().chain(letters.iter().cloned())
                            })
                            .collect();
                        warn_on_error(heatmap(
                            &dir.join(format!(
                                "encoder_attention_{tag}_{}_b{}.png",
                                p.english,
                                b + 1
                            )),
                            &match heads.len() {
                                1 => format!(
                                    "{}: encoder self-attention, block {}",
                                    p.english,
                                    b + 1
                                ),
                                n => format!(
                                    "{}: encoder self-attention, block {}, heads 1–{n} left to right",
                                    p.english,
                                    b + 1
                                ),
                            },
                            &letters,
                            &columns,
                            &rows,
                        ));
                    }
                }
                Translator::Mamba => {
                    let n = p.english.len();
                    let series = vec![
                        Series {
                            name: "mean Δ, block 1 (x SOS y)".into(),
                            points: p.rows[0]
                                .iter()
                                .enumerate()
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                        Series {
                            name: "weight kept in the state at SOS".into(),
                            points: p.rows[1]
                                .iter()
                                .enumerate()
                                .take(n + 1)
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                    ];
                    warn_on_error(line_plot(
                        &dir.join(format!("mamba_state_{tag}_{}.png", p.english)),
                        &format!(
                            "{} → {}: Δ and state retention (positions 0..{} are the English letters, {} = SOS)",
                            p.english,
                            p.target,
                            n - 1,
                            n
                        ),
                        "position",
                        "value",
                        &series,
                        false,
                    ));
                }
            }
        }
    }
}
