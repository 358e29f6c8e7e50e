//! The one path of every experiment example: flags → checked options → runs → CSV files and
//! `report.md` → plots → the report printed.
//!
//! An experiment implements [`Experiment`]; its example's `main` is one call of [`drive`], and
//! the test suite calls [`execute`] (through each experiment's entry point, e.g.
//! `copying::copying`) to run the `--quick` versions without plots.

use std::path::Path;
use std::time::Instant;

use seqlayers::Result;
use seqlayers::burn::tensor::backend::AutodiffBackend;

use super::cli::{CliError, RunArgs, or_exit};
use super::experiments::{prepare_out_dir, write_files};

/// One experiment example.
pub trait Experiment {
    /// Its flags (a clap struct that flattens [`RunArgs`]).
    type Args;
    /// Its settings, from the flags or built by a test.
    type Options;
    /// What a run returns: the outcomes (and whatever the report needs besides).
    type Outcome;

    /// The options of `args`, checked before any training: every flag value, the input files
    /// and every run, so that a bad command line fails at once with a message.
    fn options(args: &Self::Args) -> std::result::Result<Self::Options, CliError>;

    /// The output folder.
    fn out_dir(o: &Self::Options) -> &Path;

    /// Checks that cannot wait for the training (run before the output folder is created).
    fn check(_o: &Self::Options) -> Result<()> {
        Ok(())
    }

    /// Trains and evaluates every run.
    fn run<B: AutodiffBackend>(o: &Self::Options, device: &B::Device) -> Result<Self::Outcome>;

    /// The data files, `(name, text)`: `summary.csv`, `curves.csv`, ….
    fn csv(outcome: &Self::Outcome) -> Vec<(&'static str, String)>;

    /// `report.md`: the setting, tables and findings computed from the numbers.
    fn report(o: &Self::Options, outcome: &Self::Outcome) -> String;

    /// The PNG plots (each failure is printed as a warning: the CSV files hold every number).
    fn plots(o: &Self::Options, outcome: &Self::Outcome);
}

/// Runs experiment `E` with `options` on backend `B` and writes its CSV files and `report.md`
/// (the folder is created, and checked to be writable, before any training).
pub fn execute<E: Experiment, B: AutodiffBackend>(
    options: &E::Options,
    device: &B::Device,
) -> Result<E::Outcome> {
    E::check(options)?;
    let dir = E::out_dir(options);
    prepare_out_dir(dir)?;
    let outcome = E::run::<B>(options, device)?;
    let report = E::report(options, &outcome);
    write_files(
        dir,
        E::csv(&outcome).into_iter().chain([("report.md", report)]),
    )?;
    Ok(outcome)
}

/// The `main` of an experiment example: checks `args` (a bad one exits with code 2 and a
/// message), runs on the backend of `flags` (the [`RunArgs`] in `args`) with its `--jobs`,
/// writes the outputs and plots, and prints `report.md` with the wall time.
pub fn drive<E: Experiment>(args: &E::Args, flags: &RunArgs) {
    let options = or_exit(E::options(args));
    super::memory::keep_freed_memory();
    super::parallel::one_core_per_job(flags.jobs);
    let started = Instant::now();
    let outcome = crate::with_backend!(flags.device.as_str(), |B, device| {
        execute::<E, B>(&options, &device)
    });
    let outcome = or_exit(outcome);
    E::plots(&options, &outcome);
    let dir = E::out_dir(&options);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap_or_default();
    println!("{report}");
    println!(
        "total wall time: {:.1} s; outputs in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
}
